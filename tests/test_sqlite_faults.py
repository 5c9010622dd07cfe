"""Process faults on the default storage, SQLite, driving the real command line in subprocesses: two searches started
at the same moment on a new study, a worker killed mid-trial, and the disk filling up while the study is written.
Each ends with the budget reached on resume, no trial lost and no architecture trained twice."""

import contextlib
import os
import shutil
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

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # this checkout's resnas, from any folder
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# The command line's own `main`, entered by every process at once: each waits after its imports (which take seconds,
# and would otherwise spread the starts) until all have arrived, as workers of a job array would reach the storage.
TOGETHER = """
import glob, os, sys, time
from resnas.cli import main
barrier, n = sys.argv[1], int(sys.argv[2])
open(f"{barrier}.{os.getpid()}", "w").close()
while len(glob.glob(f"{barrier}.*")) < n:
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def space(tmp_path, tiny_space_text):
    path = tmp_path / "space.toml"
    path.write_text(tiny_space_text)
    return path


def search_args(space, out_dir, study, budget, epochs, heartbeat=5):
    """Heartbeats are short only where a test waits for a dead worker: on a loaded 2-core machine a trainer can
    miss a 1 s beat, and another worker would fail its live trial as stale."""
    return ["search", "--space", str(space), "--study", study, "--budget", str(budget), "--out-dir", str(out_dir),
            "--epochs", str(epochs), "--heartbeat", str(heartbeat), "--sampler", "random", "--no-early-stopping",
            "--quiet", "--workers", "1"]


def start(cwd, args, prefix=("-m", "resnas")):
    return subprocess.Popen([sys.executable, *prefix, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=180):
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


class Study:
    """Reads a study's SQLite file from the test, with one connection pool."""

    def __init__(self, db: Path, name: str) -> None:
        self.db, self.name, self.storage = db, name, None

    def trials(self):
        if not self.db.exists():
            return []
        self.storage = self.storage or open_storage(f"sqlite:///{self.db}")
        try:
            return optuna.load_study(study_name=self.name, storage=self.storage).get_trials()
        except KeyError:  # the file is there, the study not yet
            return []

    def close(self):
        if self.storage is not None:
            self.storage.engine.dispose()


def wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def assert_budget_exact(trials, budget):
    """The budget finished exactly, nothing left running, and no architecture trained twice."""
    counted = budget_trials(trials)
    assert sum(t.state in FINISHED for t in counted) == budget
    assert all(t.state == TrialState.COMPLETE for t in counted)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert max(Counter(t.user_attrs["spec"] for t in counted).values()) == 1
    for t in counted:
        assert checkpoint.load(t.user_attrs["checkpoint"]).metrics["val_acc"] == t.user_attrs["val_acc"]


def test_two_searches_started_together_on_a_new_study(tmp_path, space):
    args = search_args(space, tmp_path / "studies", "two", 4, epochs=1)
    procs = [start(tmp_path, ["2", *args], prefix=("-c", TOGETHER, str(tmp_path / "ready"))) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [code for code, _ in results] == [0, 0], [err[-800:] for _, err in results]
    study = Study(tmp_path / "studies/two/study.db", "two")
    assert_budget_exact(study.trials(), 4)
    study.close()


def test_worker_killed_mid_trial_is_retried_on_resume(tmp_path, space):
    args = search_args(space, tmp_path / "studies", "kill", 2, epochs=10, heartbeat=1)
    study = Study(tmp_path / "studies/kill/study.db", "kill")
    worker = start(tmp_path, args)
    wait_for(lambda: any(t.state == TrialState.RUNNING and t.user_attrs.get("curve") for t in study.trials()))
    victim = next(t for t in study.trials() if t.state == TrialState.RUNNING)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    time.sleep(4)  # past the 3 s grace (3 heartbeats): the resumed worker finds the trial stale at once
    code, err = finish(start(tmp_path, args))
    assert code == 0, err[-800:]
    trials = study.trials()
    assert trials[victim.number].state == TrialState.FAIL  # failed through its stale heartbeat
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == victim.number)
    counted = budget_trials(trials)
    assert retry.params == victim.params and victim.number not in {t.number for t in counted}
    # Its architecture trained to the end exactly once: by the retry, or (when the resumed worker's seeded sampler
    # drew it again before the trial went stale) by that sample, whose result the retry then reused.
    assert sum(t.params == victim.params for t in counted) == 1
    assert_budget_exact(trials, 2)
    study.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, where the machine lets the test mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb", buffering=0) as f:
        for block in (2**20, 2**12):  # to the last page
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * block)


def test_disk_full_while_writing_the_study_then_resume(tmp_path, space, small_disk):
    args = search_args(space, small_disk, "full", 3, epochs=12, heartbeat=1)
    study = Study(small_disk / "full/study.db", "full")
    worker = start(tmp_path, args)
    wait_for(lambda: any(t.state == TrialState.COMPLETE for t in study.trials())
             and any(t.state == TrialState.RUNNING and t.user_attrs.get("curve") for t in study.trials()))
    fill(small_disk)
    code, err = finish(worker)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("resnas: error: out of disk space: (sqlite3.OperationalError) database or disk is full; "
                          "free some and run the same command again")
    before = {t.number: t.values for t in study.trials() if t.state == TrialState.COMPLETE}
    assert before
    (small_disk / "filler").unlink()
    code, err = finish(start(tmp_path, args))
    assert code == 0, err[-800:]
    trials = study.trials()
    assert all(trials[n].values == v for n, v in before.items())  # every earlier trial intact
    assert_budget_exact(trials, 3)
    study.close()
