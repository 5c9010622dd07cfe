"""A trial's records in one transaction (the same rows Optuna's own calls write), SQLite transactions that cannot
interleave a read and a write, and a study at its budget that resumes without data or worker processes."""

import subprocess
import sys

import optuna
import pytest
import sqlalchemy
import sqlalchemy.event

from resnas import records as R
from resnas.data import DataConfig
from resnas.search import SearchConfig, loop, run_search
from resnas.storage import open_storage, set_attrs
from resnas.train import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
ATTRS = {R.SPEC: "{}", R.CURVE: [0.5, 0.6], R.TIMING: {"total": 1.0, "train": 0.5, "steps": 0.4}}
CONSTRAINTS = {"mflops": 0.0, "params": 2.5, "latency_ms": 0.0, "memory": 0.0}


def _study(storage):
    return optuna.create_study(storage=storage, directions=["maximize", "minimize"])


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_batched_records_are_the_rows_optunas_calls_write(tmp_path, kind):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db") if kind == "sqlite" else optuna.storages.InMemoryStorage()
    study = _study(storage)
    batched, one_by_one = study.ask(), study.ask()
    set_attrs(batched, ATTRS, CONSTRAINTS)
    for k, v in ATTRS.items():
        one_by_one.set_user_attr(k, v)
    for k, v in CONSTRAINTS.items():
        one_by_one.set_constraint(k, v)
    assert batched.user_attrs == one_by_one.user_attrs == ATTRS
    for t in (batched, one_by_one):
        study.tell(t, [0.9, 1.0])
    a, b = study.get_trials()
    assert a.user_attrs == b.user_attrs and a.system_attrs == b.system_attrs
    assert a.constraints == b.constraints == CONSTRAINTS  # what the samplers read


def test_batched_records_are_one_commit_and_refused_on_a_finished_trial(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = _study(storage)
    trial = study.ask()
    commits = []
    sqlalchemy.event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    set_attrs(trial, ATTRS, CONSTRAINTS)
    assert len(commits) == 1
    study.tell(trial, [0.9, 1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_attrs(trial, {R.ERROR: "late"})


def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path):
    """A second process's transaction waits for the first's whole read-then-write (an enqueued trial is popped once)."""
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    _study(storage)
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/s.db", connect_args={"timeout": 0.2})
    with storage.engine.connect() as mine:
        mine.exec_driver_sql("SELECT 1")  # only a read, but the transaction holds the write lock
        with pytest.raises(sqlalchemy.exc.OperationalError, match="locked"), other.begin() as theirs:
            theirs.exec_driver_sql("UPDATE studies SET study_name = study_name")
    other.dispose()


def test_a_study_at_its_budget_resumes_without_data_or_workers(tmp_path, monkeypatch, tiny_space_text):
    space = tmp_path / "tiny.toml"
    space.write_text(tiny_space_text)
    config = SearchConfig(space=str(space), budget=2, out_dir=str(tmp_path), sampler="random", workers=1)
    first = run_search(config, TrainConfig(epochs=1), DataConfig(), device="cpu")

    def refuse(*args, **kwargs):
        raise AssertionError("a finished study started work")

    monkeypatch.setattr(loop, "_start_workers", refuse)
    monkeypatch.setattr(loop, "TrialRunner", refuse)
    again = run_search(SearchConfig(space=str(space), budget=2, out_dir=str(tmp_path), sampler="random", workers=4),
                       TrainConfig(epochs=1), DataConfig(), device="cpu")
    assert (again.n_complete, again.n_pruned, again.pareto) == (first.n_complete, first.n_pruned, first.pareto)
    assert again.overhead_share == first.overhead_share is not None and 0 < first.overhead_share < 1


def test_opening_a_study_again_keeps_the_locks_this_process_holds_on_it(tmp_path):
    """SQLite's locks are POSIX locks, which a process drops when it closes any descriptor of the file: opening the
    storage a second time (the search reopens its study once the data is loaded) must not touch the database file,
    or another process writes under an open transaction and the file is corrupt."""
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    first = open_storage(url)
    with first.engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x)")
        conn.commit()
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")  # inside BEGIN IMMEDIATE: this process holds the write lock
        open_storage(url)
        other = subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], "
                                "timeout=0, isolation_level=None); c.execute('BEGIN IMMEDIATE')", str(db)],
                               capture_output=True, text=True)
        assert other.returncode != 0 and "database is locked" in other.stderr, other.stderr
