"""Paused trials' training states, kept where every worker of a study can reach them.

A trial MO-ASHA stops saves its `TrainState` to its study folder (`paused/trial-N.pt`) and, where the study has an
artifact store, uploads it there as it does checkpoints. A trial that resumes it reads the local file where this
worker has it, and otherwise fetches the upload (a worker on another machine, with another `--out-dir`); a state
that can be neither read nor fetched means training from the start, and the trial records why. Once resumed, the
state is superseded (by the resumed trial's result, or its own pause) and both copies are deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from . import checkpoint
from . import records as R
from .artifacts import fetch, remove, upload
from .train import TrainState


def save(trial: optuna.Trial, state: TrainState, folder: Path, store: str | None) -> dict[str, Any]:
    """Save (and upload) a paused trial's state; returns the trial's records of where it is."""
    path = checkpoint.save_paused(state, folder / f"trial-{trial.number:05d}.pt")
    record: dict[str, Any] = {R.PAUSED: str(path)}
    if store:
        record[R.PAUSED_ARTIFACT] = upload(trial, path, store)
    return record


def load(paused: FrozenTrial, cache_dir: Path) -> tuple[TrainState | None, str | None]:
    """The paused trial's state and None, or None and why it could not be had (the caller trains from scratch)."""
    local = Path(paused.user_attrs[R.PAUSED])
    if local.is_file():
        state = checkpoint.load_paused(local)
        if state is not None:
            return state, None
    artifact = paused.user_attrs.get(R.PAUSED_ARTIFACT)
    if not artifact:
        return None, f"paused state of trial {paused.number} ({local}) is not on this machine and was not uploaded"
    try:
        path = fetch(artifact, cache_dir)
    except Exception as e:  # a store that is down, a bucket gone: any of it means starting over
        return None, f"paused state of trial {paused.number} could not be fetched from {artifact['store']}: " \
                     f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
    state = checkpoint.load_paused(path)
    path.unlink(missing_ok=True)  # read once: the resuming trial supersedes it
    if state is None:
        return None, f"paused state of trial {paused.number} fetched from {artifact['store']} could not be read"
    return state, None


def discard(paused: FrozenTrial) -> None:
    """Delete a superseded paused state: this worker's file, if it has it, and the upload."""
    Path(paused.user_attrs[R.PAUSED]).unlink(missing_ok=True)
    if artifact := paused.user_attrs.get(R.PAUSED_ARTIFACT):
        remove(artifact)
