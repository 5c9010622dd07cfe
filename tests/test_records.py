"""The study schema (`resnas.records`) read on a study written by resnas 0.1 before the house was reshaped
(tests/data/study-0.1: the tiny space, budget 6, 3 epochs, objectives val_acc, mflops, latency_ms, its front
pruned with --target-ratio 0.1). It must still report and resume."""

import shutil
from pathlib import Path

import pytest

from resnas import records
from resnas.data import DataConfig
from resnas.report import collect, write_report
from resnas.search import SearchConfig, run_search
from resnas.storage import open_study
from resnas.train import TrainConfig

OLD = Path(__file__).parent / "data" / "study-0.1"


@pytest.fixture
def old_study(tmp_path):
    (tmp_path / "studies" / "tiny").mkdir(parents=True)
    shutil.copy(OLD / "study.db", tmp_path / "studies" / "tiny" / "study.db")
    shutil.copy(OLD / "tiny.toml", tmp_path / "tiny.toml")
    return tmp_path


def test_old_study_reads(old_study):
    study = open_study("tiny", out_dir=old_study / "studies")
    trials = study.get_trials(deepcopy=False)
    assert records.study_objectives(study) == ("val_acc", "mflops", "latency_ms")
    assert len(records.budget_trials(trials)) == 6
    kinds = [records.trial_kind(t) for t in trials]
    assert kinds.count("complete") == 4 and kinds.count("stopped early") == 2 and kinds.count("duplicate") == 2
    front = records.pareto_trials(trials, records.study_objectives(study))
    assert [p["trial"] for p in front] == [3, 7, 1]
    assert all(records.fully_trained(trials[p["trial"]]) for p in front)
    pruned = records.prune_records(study)
    assert sorted(pruned) == [1, 3, 7] and sum(r.get("error") is not None for r in pruned.values()) == 1


def test_old_study_reports(old_study):
    data = collect(open_study("tiny", out_dir=old_study / "studies"))
    assert set(data.front["trial"]) == {1, 3, 7} and len(data.pruning) == 2
    assert (data.val_images, data.test_images) == (216, 360)  # not recorded then: read off the accuracies
    result = write_report("tiny", out_dir=str(old_study / "studies"), reports_dir=str(old_study / "reports"))
    assert result["n_trials"] == 8 and result["pareto_size"] == 3 and Path(result["html"]).is_file()


def test_old_study_resumes(old_study, monkeypatch):
    monkeypatch.chdir(old_study)
    config = SearchConfig(space=str(old_study / "tiny.toml"), budget=8, out_dir=str(old_study / "studies"),
                          objectives=("val_acc", "mflops", "latency_ms"))
    result = run_search(config, TrainConfig(epochs=3), DataConfig())
    study = open_study("tiny", out_dir=old_study / "studies")
    assert len(records.budget_trials(study.get_trials())) == 8
    assert result.n_complete + result.n_pruned + result.n_failed == 8
    assert records.split_sizes(study) == {"train": 1221, "val": 216, "test": 360}  # recorded from now on
