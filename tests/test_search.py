"""Real, small searches on digits: a 2-stage space of tiny nets, 3 epochs per trial."""

import json
import threading
from collections import Counter

import optuna
import pytest
import torch
from optuna.trial import TrialState

from resnas import checkpoint
from resnas.data import DataConfig
from resnas.errors import UserError
from resnas.search import SearchConfig, run_search
from resnas.search.study import create_study, storage_url
from resnas.search.trial import TrialRunner
from resnas.spaces import load_space
from resnas.train import TrainConfig

TRAIN = TrainConfig(epochs=3, batch_size=128)


@pytest.fixture
def space(tmp_path, tiny_space_text):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_space_text)
    return str(path)


def run(tmp_path, space, **kw):
    config = SearchConfig(space=space, out_dir=str(tmp_path / "studies"), **{"budget": 4, "sampler": "random", **kw})
    return run_search(config, TRAIN, DataConfig(), device="cpu")


def load_trials(result):
    return optuna.load_study(study_name=result.study, storage=result.storage).get_trials()


def test_search_finishes_budget_with_front_and_checkpoints(tmp_path, space):
    result = run(tmp_path, space, budget=4, early_stopping=False)
    assert result.n_complete == 4 and result.n_pruned == result.n_failed == 0
    assert result.epochs_trained == 12 and result.pareto
    trials = load_trials(result)
    for p in result.pareto:
        ckpt = checkpoint.load(p["checkpoint"])
        assert ckpt.metrics["val_acc"] == pytest.approx(p["val_acc"]) and 0 <= p["test_acc"] <= 1
        assert ckpt.spec.to_dict() == p["spec"]
    # the front is non-dominated over (val_acc max, mflops min)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    for p in result.pareto:
        assert not any(t.user_attrs["val_acc"] > p["val_acc"] and t.user_attrs["mflops"] < p["mflops"] for t in done)
    assert all(len(t.user_attrs["curve"]) == 3 for t in done)  # learning curves recorded per epoch


def test_resumes_to_a_larger_budget(tmp_path, space):
    first = run(tmp_path, space, budget=3, early_stopping=False)
    before = {t.number: t.values for t in load_trials(first)}
    second = run(tmp_path, space, budget=5, early_stopping=False)
    after = load_trials(second)
    assert second.n_complete == 5
    assert all(after[n].values == v for n, v in before.items())  # finished trials untouched
    with pytest.raises(UserError, match="different train"):
        run_search(SearchConfig(space=space, out_dir=str(tmp_path / "studies"), budget=6),
                   TrainConfig(epochs=2, batch_size=128), DataConfig(), device="cpu")


def test_mo_asha_stops_trials_at_rungs(tmp_path, space):
    result = run(tmp_path, space, budget=8, eta=2)
    trials = load_trials(result)
    pruned = [t for t in trials if "stopped_at" in t.user_attrs and "duplicate_of" not in t.user_attrs]
    assert result.n_pruned >= 2 and len(pruned) == result.n_pruned
    # a stopped trial completes with its accuracy at the rung, so the sampler learns from it; it has no
    # checkpoint and never makes the front
    assert all(t.state == TrialState.COMPLETE and t.values[0] == t.user_attrs["curve"][-1] for t in pruned)
    assert all("checkpoint" not in t.user_attrs for t in pruned)
    assert not {p["trial"] for p in result.pareto} & {t.number for t in pruned}
    # eta 2 over 3 epochs: rungs at epochs 1 and 2; a stopped trial's curve ends at its rung
    assert all(len(t.user_attrs["curve"]) == t.user_attrs["stopped_at"] in (1, 2) for t in pruned)
    assert result.epochs_trained < 3 * 8


def test_constraints_reject_before_training(tmp_path, space):
    result = run(tmp_path, space, budget=3, max_mflops=0.05, early_stopping=False)
    trials = load_trials(result)
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    assert rejected and result.n_rejected == len(rejected)
    for t in rejected:
        assert t.user_attrs["mflops"] > 0.05 and "curve" not in t.user_attrs and "checkpoint" not in t.user_attrs
        assert "mflops" in t.user_attrs["rejected"] and t.user_attrs["constraint"][0] > 0
    assert all(p["mflops"] <= 0.05 for p in result.pareto)


def test_duplicates_are_not_retrained(tmp_path, tiny_space_text):
    path = tmp_path / "two.toml"
    path.write_text(tiny_space_text.replace("k = [1, 2, 3]", "k = [1]").replace("kernels = [[3], [3, 3]]",
                                                                               "kernels = [[3]]"))
    result = run(tmp_path, str(path), budget=2, early_stopping=False)
    trials = load_trials(result)
    trained = Counter(t.user_attrs["spec"] for t in trials if "duplicate_of" not in t.user_attrs)
    assert set(trained.values()) == {1} and len(trained) == 2  # each architecture trained exactly once
    dups = [t for t in trials if "duplicate_of" in t.user_attrs]
    for t in dups:
        first = trials[t.user_attrs["duplicate_of"]]
        assert t.values == first.values and t.user_attrs["spec"] == first.user_attrs["spec"]


def test_failing_architecture_does_not_stop_the_search(tmp_path, tiny_space_text):
    path = tmp_path / "bad.toml"
    path.write_text(tiny_space_text.replace("widths = [4, 8]\n", "").replace("[choices]", "shortcut = 'A'\n[choices]\n"
                    "widths_per_stage = [[4], [8, 2]]"))
    result = run(tmp_path, str(path), budget=6, early_stopping=False, sampler="random")
    assert result.n_failed >= 1 and result.n_complete >= 1
    assert any("cannot shrink" in e for e in result.errors)


def test_scalar_mode_uses_optunas_pruner(tmp_path, space):
    result = run(tmp_path, space, budget=6, mode="scalar", pruner="sha", eta=2)
    study = optuna.load_study(study_name=result.study, storage=result.storage)
    assert len(study.directions) == 1
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(t.intermediate_values for t in complete)
    assert result.n_pruned >= 1


@pytest.mark.slow
def test_two_workers_finish_the_budget_without_loss_or_repeats(tmp_path, space):
    result = run(tmp_path, space, budget=6, workers=2, early_stopping=False)
    trials = load_trials(result)
    counted = [t for t in trials if not {"duplicate_of", "rejected", "surplus"} & set(t.user_attrs)]
    assert len([t for t in counted if t.state == TrialState.COMPLETE]) == 6
    assert all(t.state != TrialState.RUNNING for t in trials)
    specs = Counter(t.user_attrs["spec"] for t in counted)
    assert max(specs.values()) == 1  # no architecture trained twice
    assert all(checkpoint.load(t.user_attrs["checkpoint"]) for t in counted)


def test_config_validation():
    for kw, words in [({"budget": 0}, "budget must be"), ({"study": "a/b"}, "no path separators"),
                      ({"objectives": ("mflops",)}, "must include val_acc"),
                      ({"objectives": ("val_acc", "flops")}, "objectives must be distinct names")]:
        with pytest.raises(UserError, match=words):
            SearchConfig(**kw)


def test_summary_is_json_serialisable(tmp_path, space):
    result = run(tmp_path, space, budget=2, early_stopping=False)
    text = json.dumps(result.to_dict())
    assert {"study", "storage", "n_complete", "n_pruned", "n_failed", "n_rejected", "epochs_trained", "seconds",
            "pareto"} <= set(json.loads(text))


def test_disk_full_while_saving_a_checkpoint_fails_only_that_trial(tmp_path, space, monkeypatch):
    import os as os_module

    from resnas import files

    real_replace = os_module.replace
    calls = {"n": 0}

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint hits a full disk
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky_replace)
    result = run(tmp_path, space, budget=4, early_stopping=False)
    trials = load_trials(result)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "No space left on device" in failed[0].user_attrs["error"]
    assert "cannot write checkpoint" in failed[0].user_attrs["error"]
    assert result.n_complete == 3  # the study went on
    ckpts = list((tmp_path / "studies" / "tiny" / "checkpoints").iterdir())
    assert len(ckpts) == 3 and not [p for p in ckpts if p.name.startswith(".")]  # no partial file


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_two_trials_of_one_architecture_never_wait_for_each_other(tmp_path, space, digits):
    """Workers that sample one architecture at the same moment: the earlier trial trains, the later one waits for
    it. (Both used to wait for each other, forever: a hang seen once in CI's three-worker test.)"""
    config = SearchConfig(space=space, out_dir=str(tmp_path / "studies"), budget=4)
    loaded = load_space(space)
    study = create_study(config, TRAIN, DataConfig(), loaded, storage_url(config, DataConfig()))
    runner = TrialRunner(config, TRAIN, DataConfig(), loaded, torch.device("cpu"), data=digits)
    first, second = study.ask(), study.ask()
    for t in (first, second):
        t.set_user_attr("spec", "same")
    runner.ledger.update(study.get_trials(deepcopy=False))  # as the search loop does before each trial
    done = threading.Event()
    worker = threading.Thread(target=lambda: (runner._prior(first, "same", {}), done.set()), daemon=True)
    worker.start()
    worker.join(10)
    assert done.is_set()  # the earlier trial does not wait for the later one: it goes on to train
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.RUNNING]
