"""Checkpoints in Optuna's artifact store: the default folder store beside the study, `--artifacts none`, and an
S3 bucket (a moto server on localhost) shared by two workers that share no directory, read back from a third."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resnas import records
from resnas.artifacts import local_checkpoint
from resnas.cli import main
from resnas.storage import open_study


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def space(tmp_path, tiny_space_text):
    path = tmp_path / "space.toml"
    path.write_text(tiny_space_text)
    return path


def _search(capsys, space, out_dir, *extra):
    code, out, err = run_cli(capsys, "search", "--space", space, "--budget", 2, "--epochs", 1, "--sampler", "random",
                             "--out-dir", out_dir, "--quiet", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_default_store_holds_every_checkpoint(capsys, tmp_path, space):
    _search(capsys, space, tmp_path / "studies")
    study = open_study("space", out_dir=tmp_path / "studies")
    done = [t for t in study.get_trials() if records.CHECKPOINT in t.user_attrs]
    assert len(done) == 2
    for t in done:
        artifact = t.user_attrs[records.CHECKPOINT_ARTIFACT]
        stored = tmp_path / "studies" / "space" / "artifacts" / artifact["id"]
        written = t.user_attrs[records.CHECKPOINT]
        assert stored.read_bytes() == Path(written).read_bytes()
        Path(written).unlink()  # the worker's copy is gone: the reader fetches the artifact
        fetched = local_checkpoint(t, tmp_path / "cache")
        assert fetched.parent == tmp_path / "cache" and fetched.read_bytes() == stored.read_bytes()
        assert local_checkpoint(t, tmp_path / "cache") == fetched  # downloaded once
    code, out, err = run_cli(capsys, "eval", "--study", "space", "--trial", done[0].number, "--out-dir",
                             tmp_path / "studies", "--json")
    assert code == 0 and json.loads(out)["val_acc"] == pytest.approx(done[0].user_attrs["val_acc"]), err
    code, out, err = run_cli(capsys, "export", "--study", "space", "--trial", done[1].number, "--out-dir",
                             tmp_path / "studies", "--format", "torchscript", "--out", tmp_path / "m.ts", "--json")
    assert code == 0 and (tmp_path / "m.ts").is_file(), err


def test_artifacts_none_keeps_the_study_folder_only(capsys, tmp_path, space):
    _search(capsys, space, tmp_path / "studies", "--artifacts", "none")
    study = open_study("space", out_dir=tmp_path / "studies")
    assert not any(records.CHECKPOINT_ARTIFACT in t.user_attrs for t in study.get_trials())
    assert not (tmp_path / "studies" / "space" / "artifacts").exists()
    trial = next(t for t in study.get_trials() if records.CHECKPOINT in t.user_attrs)
    Path(trial.user_attrs[records.CHECKPOINT]).unlink()
    code, _, err = run_cli(capsys, "eval", "--study", "space", "--trial", trial.number, "--out-dir",
                           tmp_path / "studies")
    assert code == 2 and "is not on this machine" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_workers_share_only_storage_and_bucket(capsys, tmp_path, space, s3, postgres, monkeypatch):
    env, client = s3
    url = postgres.url
    study = "s3-shared"

    def worker(folder):
        cmd = [sys.executable, "-m", "resnas", "search", "--space", str(space), "--study", study, "--budget", "4",
               "--epochs", "1", "--sampler", "random", "--no-early-stopping", "--storage", url, "--artifacts",
               "s3://ckpts", "--out-dir", str(tmp_path / folder / "studies"), "--quiet", "--workers", "1"]
        return subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [worker("a"), worker("b")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="ckpts").get("Contents", [])}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    third = tmp_path / "c" / "studies"
    trials = open_study(study, storage=url).get_trials()
    trained = [t for t in trials if records.CHECKPOINT_ARTIFACT in t.user_attrs and records.counts(t)]
    assert len(records.budget_trials(trials)) == 4 and trained
    assert {t.user_attrs[records.CHECKPOINT_ARTIFACT]["id"] for t in trained} <= keys
    local = [p for w in ("a", "b") for p in (tmp_path / w).rglob("trial-*.pt")]
    assert {str(p) for p in local} == {t.user_attrs[records.CHECKPOINT] for t in trained}
    for w in ("a", "b"):  # the workers' machines are gone: only the storage and the bucket remain
        shutil.rmtree(tmp_path / w, ignore_errors=True)
    code, out, err = run_cli(capsys, "report", "--study", study, "--storage", url, "--out-dir", third,
                             "--reports-dir", tmp_path / "c" / "reports", "--json")
    assert code == 0 and json.loads(out)["n_trials"] == len(trials), err
    code, out, err = run_cli(capsys, "prune", "--study", study, "--pareto", "--storage", url, "--out-dir", third,
                             "--threshold", "0.0001", "--json")
    assert code == 0, err
    pruned = records.prune_records(open_study(study, storage=url))
    front = records.pareto_trials(trials, records.study_objectives(open_study(study, storage=url)))
    assert sorted(pruned) == sorted(p["trial"] for p in front)
    assert all(r.get("error") is None for r in pruned.values()), pruned
    assert len(list((third / study / "artifact-cache").glob("*.pt"))) == len(front)
