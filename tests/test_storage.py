"""A trial's records in one transaction (the same rows Optuna's own calls write), SQLite transactions that cannot
interleave a read and a write, and a study at its budget that resumes without data or worker processes."""

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
