"""Paused states travel like checkpoints: a trial one worker paused is promoted and resumed by a worker on another
machine (its own --out-dir; one PostgreSQL study and one S3 bucket between them), which fetches the state and
trains only the remaining epochs; a state that cannot be fetched means training from the start, recorded as such."""

import os
import shutil
import subprocess
import sys

import optuna
import pytest

from resnas import records as R
from resnas.storage import open_study

STUDY = "paused-shared"


def _worker(tmp_path, space, url, env, folder, budget, paused):
    cmd = [sys.executable, "-m", "resnas", "search", "--space", str(space), "--study", STUDY, "--budget", str(budget),
           "--epochs", "3", "--eta", "3", "--sampler", "grid", "--paused", paused, "--storage", url,
           "--artifacts", "s3://ckpts", "--out-dir", str(tmp_path / folder / "studies"), "--quiet", "--workers", "1"]
    done = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    shutil.rmtree(tmp_path / folder)  # that machine is gone: only the storage and the bucket remain


def _promote(url, trial):
    """What the search loop does when ASHA promotes a paused trial (search.loop._optimize)."""
    optuna.load_study(study_name=STUDY, storage=url).enqueue_trial(trial.params, user_attrs={R.PROMOTED: trial.number})


@pytest.mark.slow
def test_a_paused_trial_resumes_on_another_worker_from_the_bucket(tmp_path, tiny_space_text, s3, postgres):
    env, client = s3
    url, space = postgres.url, tmp_path / "tiny.toml"
    space.write_text(tiny_space_text)
    _worker(tmp_path, space, url, env, "a", budget=8, paused="revisit")  # pauses; the grid samples nothing again
    trials = open_study(STUDY, storage=url).get_trials()
    paused = [t for t in trials if R.PAUSED_ARTIFACT in t.user_attrs]
    assert paused, [(t.number, t.user_attrs.get(R.STOPPED_AT)) for t in trials]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="ckpts")["Contents"]}
    resumed_from = {t.user_attrs[R.RESUMED]["trial"] for t in trials if t.user_attrs.get(R.RESUMED)}
    for t in paused:  # in the bucket until a trial resumed it (the sampler proposed it again), then deleted
        assert (t.user_attrs[R.PAUSED_ARTIFACT]["id"] in keys) == (t.number not in resumed_from)
    paused = [t for t in paused if t.number not in resumed_from]
    assert len(paused) >= 2, [t.number for t in paused]

    first = paused[0]
    _promote(url, first)
    _worker(tmp_path, space, url, env, "b", budget=9, paused="promote")
    trials = open_study(STUDY, storage=url).get_trials()
    resumed = [t for t in trials if t.user_attrs.get(R.PROMOTED) == first.number]
    assert len(resumed) == 1 and R.RESUME_FAILED not in resumed[0].user_attrs, resumed[0].user_attrs
    t = resumed[0]
    assert t.user_attrs[R.RESUMED] == {"trial": first.number, "epoch": first.user_attrs[R.STOPPED_AT]}
    assert R.epochs_trained(t) == 3 - first.user_attrs[R.STOPPED_AT]  # only the remaining epochs
    assert t.user_attrs[R.CURVE][:first.user_attrs[R.STOPPED_AT]] == first.user_attrs[R.CURVE]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="ckpts").get("Contents", [])}
    assert first.user_attrs[R.PAUSED_ARTIFACT]["id"] not in keys  # superseded: deleted from the bucket

    lost = next(p for p in paused[1:] if p.user_attrs[R.PAUSED_ARTIFACT]["id"] in keys)
    client.delete_object(Bucket="ckpts", Key=lost.user_attrs[R.PAUSED_ARTIFACT]["id"])
    _promote(url, lost)
    _worker(tmp_path, space, url, env, "c", budget=10, paused="promote")
    again = [t for t in open_study(STUDY, storage=url).get_trials() if t.user_attrs.get(R.PROMOTED) == lost.number]
    assert len(again) == 1 and again[0].user_attrs[R.RESUMED] is None
    assert f"paused state of trial {lost.number} could not be fetched" in again[0].user_attrs[R.RESUME_FAILED]
    assert R.epochs_trained(again[0]) >= 1 and again[0].user_attrs[R.CURVE][0] is not None  # trained from epoch 1
