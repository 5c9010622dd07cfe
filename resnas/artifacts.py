"""Checkpoints in Optuna's artifact store, so that workers on machines that share no filesystem still leave every
checkpoint where `report`, `prune` and `eval` can fetch it.

A search writes each trial's checkpoint to its own study folder (the path users see) and uploads it with
`optuna.artifacts.upload_artifact` to the study's store: a `FileSystemArtifactStore` under the study folder by
default, another folder, or an S3 bucket (`s3://BUCKET`, through `Boto3ArtifactStore`; boto3 reads the endpoint
and credentials from the usual AWS_* variables). Readers use the local file where it exists and otherwise download
the artifact once into a cache beside their own study folder.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from . import records as R
from .errors import UserError
from .storage import open_study

NONE = "none"  # --artifacts none: keep checkpoints in the study folder only
CACHE = "artifact-cache"  # beside a reader's study folder: checkpoints downloaded from the store


def default_url(study_dir: Path) -> str:
    return str((study_dir / "artifacts").resolve())


def check_url(url: str) -> None:
    """Refuse a malformed store URL up front, before anything is trained for it."""
    if url.startswith("s3://"):
        bucket = url.removeprefix("s3://").strip("/")
        if not bucket or "/" in bucket:
            raise UserError(f"artifact store {url!r}: give s3://BUCKET (a bucket name, no key prefix)")
    elif "://" in url and not url.startswith("file://"):
        raise UserError(f"artifact store {url!r}: give a folder, file://PATH, s3://BUCKET or none")


def open_store(url: str) -> Any:
    """The artifact store named by `url`: a folder path (or file://PATH) or s3://BUCKET."""
    check_url(url)
    if url.startswith("s3://"):
        bucket = url.removeprefix("s3://").strip("/")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return Boto3ArtifactStore(bucket)
        except ImportError:
            raise UserError("an S3 artifact store needs boto3: pip install 'resnas[s3]'") from None
    path = Path(url.removeprefix("file://")).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"artifact store {url!r}: cannot create the folder ({e.strerror or e})") from None
    return FileSystemArtifactStore(path)


def upload(trial: optuna.Trial, path: Path, url: str) -> dict[str, str]:
    """Upload a file of a trial's (its checkpoint, its paused state) and return where it went, as the trial records
    it (`checkpoint_artifact`, `paused_artifact`)."""
    artifact_id = upload_artifact(artifact_store=open_store(url), file_path=str(path), study_or_trial=trial)
    return {"store": url, "id": artifact_id, "filename": path.name}


def remove(artifact: dict[str, str]) -> None:
    """Delete an uploaded file from its store (a superseded paused state); one already gone is no error."""
    with contextlib.suppress(ArtifactNotFound, OSError):
        open_store(artifact["store"]).remove(artifact["id"])


def fetch(artifact: dict[str, str], cache_dir: Path) -> Path:
    """The uploaded file, downloaded into `cache_dir` once (atomically: a cut-off download leaves no file)."""
    target = cache_dir / f"{artifact['id']}-{artifact['filename']}"
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        partial.unlink(missing_ok=True)  # left by a download that was cut off
        download_artifact(artifact_store=open_store(artifact["store"]), artifact_id=artifact["id"],
                          file_path=str(partial))
        partial.replace(target)
    return target


def local_checkpoint(trial: FrozenTrial, cache_dir: Path) -> Path:
    """A path on this machine holding the trial's checkpoint: the file the worker wrote, if it is here, else the
    artifact downloaded into `cache_dir` (once)."""
    written = trial.user_attrs.get(R.CHECKPOINT)
    if written and Path(written).is_file():
        return Path(written)
    artifact = trial.user_attrs.get(R.CHECKPOINT_ARTIFACT)
    if not artifact:
        raise UserError(f"trial {trial.number}: checkpoint {written} is not on this machine and the trial has no "
                        "artifact to fetch (its search ran with --artifacts none); copy the file here")
    try:
        return fetch(artifact, cache_dir)
    except ArtifactNotFound:
        raise UserError(f"trial {trial.number}: artifact {artifact['id']} is not in {artifact['store']}") from None


def trial_checkpoint(study_name: str, trial: int, *, out_dir: str | Path = "studies",
                     storage: str | None = None) -> Path:
    """The checkpoint of trial `trial` of a study, on this machine (fetched into `<out_dir>/<study>/artifact-cache`
    if need be)."""
    study = open_study(study_name, out_dir=out_dir, storage=storage)
    found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
    if not found or R.CHECKPOINT not in found[0].user_attrs:
        done = [t.number for t in study.get_trials(deepcopy=False) if R.CHECKPOINT in t.user_attrs]
        raise UserError(f"study {study_name!r} has no checkpoint for trial {trial}; trials with one: "
                        f"{', '.join(map(str, done)) or 'none'}")
    return local_checkpoint(found[0], Path(out_dir) / study_name / CACHE)
