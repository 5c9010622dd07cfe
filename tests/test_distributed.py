"""Several worker processes on one study in a real PostgreSQL server; crashes and interruptions.

A throw-away cluster is started for the session (as the unprivileged `postgres` user when run as root). Under CI
a missing server fails the tests; elsewhere they skip.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from resnas import checkpoint
from resnas.records import budget_trials
from resnas.storage import open_storage

pytestmark = pytest.mark.slow

@pytest.fixture(autouse=True)
def space_file(tmp_path, tiny_space_text):
    (tmp_path / "space.toml").write_text(tiny_space_text)


def worker(tmp_path, storage, study, budget, *extra, heartbeat=5):
    """A `resnas search` process. Heartbeats are short only where a test waits for a dead worker: on a loaded
    2-core machine a trainer can miss a 1 s beat, and its live trial would be failed as stale."""
    cmd = [sys.executable, "-m", "resnas.cli", "search", "--space", str(tmp_path / "space.toml"), "--study", study,
           "--budget", str(budget), "--out-dir", str(tmp_path / "studies"), "--sampler", "random",
           "--no-early-stopping", "--quiet", "--heartbeat", str(heartbeat), "--workers", "1", *extra]
    if storage:
        cmd += ["--storage", storage]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def storage_of(url):
    """One storage (one connection pool) per URL for the whole module: opening one per poll leaked pools until
    the server ran out of connections and the workers under test could no longer reach it."""
    if url not in _STORAGES:
        _STORAGES[url] = open_storage(url)
    return _STORAGES[url]


def trials_of(storage, study):
    return optuna.load_study(study_name=study, storage=storage_of(storage)).get_trials()


def wait_for(predicate, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(1.0)
    raise AssertionError("timed out waiting")


def complete(trials):
    return [t for t in trials if t.state == TrialState.COMPLETE]


def test_three_workers_finish_exactly_the_budget(postgres, tmp_path):
    procs = [worker(tmp_path, postgres.url, "three", 6, "--epochs", "2") for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outs]
    trials = trials_of(postgres.url, "three")
    counted = budget_trials(trials)
    assert len([t for t in counted if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]) == 6
    assert len(complete(counted)) == 6 and not [t for t in trials if t.state == TrialState.RUNNING]
    assert max(Counter(t.user_attrs["spec"] for t in counted).values()) == 1  # no architecture trained twice
    for t in complete(counted):
        assert checkpoint.load(t.user_attrs["checkpoint"]).metrics["val_acc"] == t.user_attrs["val_acc"]


def test_killed_worker_trial_is_retried(postgres, tmp_path):
    slow = worker(tmp_path, postgres.url, "kill", 3, "--epochs", "40", heartbeat=2)
    wait_for(lambda: any(t.state == TrialState.RUNNING and len(t.user_attrs.get("curve", [])) >= 2
                         for t in trials_of(postgres.url, "kill")) if _exists(postgres.url, "kill") else False)
    victim = next(t for t in trials_of(postgres.url, "kill") if t.state == TrialState.RUNNING)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    killed_at = time.time()
    survivor = worker(tmp_path, postgres.url, "kill", 3, "--epochs", "40", heartbeat=2)
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-800:]
    trials = trials_of(postgres.url, "kill")
    assert trials[victim.number].state == TrialState.FAIL  # failed through its stale heartbeat
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params
    counted = budget_trials(trials)
    assert victim.number not in {t.number for t in counted} and len(complete(counted)) == 3
    print(f"\nworker killed -> its trial retried after {retry.datetime_start.timestamp() - killed_at:.1f} s")


def _exists(url, name):
    return name in [s.study_name for s in optuna.get_all_study_summaries(storage_of(url))]


def test_database_restart_while_workers_run(postgres, tmp_path):
    procs = [worker(tmp_path, postgres.url, "restart", 6, "--epochs", "12") for _ in range(2)]
    wait_for(lambda: _exists(postgres.url, "restart") and len(complete(trials_of(postgres.url, "restart"))) >= 1,
             timeout=300)
    before = {t.number: t.values for t in complete(trials_of(postgres.url, "restart"))}
    postgres.restart()
    for p in procs:
        try:
            p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            pytest.fail(f"a worker hung after the database restart: {err[-2000:]}")
    # a worker reconnects, or fails its current trial cleanly; a rerun then reaches the budget
    again = worker(tmp_path, postgres.url, "restart", 6, "--epochs", "12")
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-800:]
    trials = trials_of(postgres.url, "restart")
    assert all(trials[n].values == v for n, v in before.items())  # finished trials intact
    assert len(complete(budget_trials(trials))) >= 6 - sum(t.state == TrialState.FAIL for t in budget_trials(trials))
    assert sum(t.state != TrialState.RUNNING for t in budget_trials(trials)) >= 6


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_keeps_finished_trials_and_resumes(tmp_path, sig):
    storage = f"sqlite:///{tmp_path / 'studies' / 'int' / 'study.db'}"
    proc = worker(tmp_path, None, "int", 4, "--epochs", "15")
    wait_for(lambda: (tmp_path / "studies/int/study.db").exists() and _exists(storage, "int")
             and len(complete(trials_of(storage, "int"))) >= 1, timeout=300)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err
    trials = trials_of(storage, "int")
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # the running trial was recorded as failed
    done = {t.number: t.values for t in complete(trials)}
    assert all(Path(t.user_attrs["checkpoint"]).is_file() for t in complete(trials))
    rerun = worker(tmp_path, None, "int", 4, "--epochs", "15")
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-800:]
    after = trials_of(storage, "int")
    assert all(after[n].values == v for n, v in done.items())
    assert sum(t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED) for t in budget_trials(after)) == 4
