"""Paused trials: training resumes exactly where it stopped, MO-ASHA's stopped trials are promoted instead of lost,
and a search replayed from recorded curves takes the same decisions as the real one."""

import itertools
import math
import pickle

import optuna
import pytest
import torch
from optuna.trial import TrialState

from resnas import checkpoint
from resnas import records as R
from resnas.asha import MOASHA
from resnas.data import DataConfig
from resnas.fit import fit
from resnas.measure import analytic_cost
from resnas.replay import ReplayFit, Row, Table
from resnas.search import SearchConfig, run_search
from resnas.search.ledger import Ledger
from resnas.search.promotion import next_promotion
from resnas.spaces import load_space
from resnas.train import TrainConfig

TRAIN = TrainConfig(epochs=4, batch_size=128)  # MO-ASHA's rungs at epochs 1 and 3


@pytest.fixture
def space(tmp_path, tiny_space_text):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_space_text)
    return str(path)


def tiny_spec(space, **params):
    return load_space(space).sample(optuna.trial.FixedTrial(params), in_channels=1, num_classes=10)


def test_training_resumes_exactly_where_it_paused(tmp_path, space, digits):
    spec = tiny_spec(space, blocks=2, k=2, kernels="3,3").replace(dropout=0.3)  # dropout: the global RNG matters
    config = TrainConfig(epochs=3, batch_size=128)
    straight = fit(spec, digits, config)
    paused = fit(spec, digits, config, on_epoch=lambda r: r.epoch == 1)
    assert paused.stopped_early and paused.result.state is not None and len(paused.result.history) == 1
    path = checkpoint.save_paused(paused.result.state, tmp_path / "paused.pt")
    torch.manual_seed(123)  # whatever happened in between
    resumed = fit(spec, digits, config, resume=checkpoint.load_paused(path))
    assert [r.val_acc for r in resumed.result.history] == [r.val_acc for r in straight.result.history]
    assert [r.train_loss for r in resumed.result.history] == [r.train_loss for r in straight.result.history]
    assert resumed.result.best_epoch == straight.result.best_epoch and resumed.test_acc == straight.test_acc
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_paused_state_that_cannot_be_read_means_starting_over(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": checkpoint.PAUSED_FORMAT, "state": object()}, f)  # refused by weights_only
    for name in ("missing.pt", "garbage.pt", "evil.pt"):
        assert checkpoint.load_paused(tmp_path / name) is None


def synthetic_table(space: str, slow: dict) -> Table:
    """Every architecture of the tiny space with made-up curves: accuracy grows with cost, except `slow`, the most
    accurate of all at the end but the worst at epoch 1 (a slow starter)."""
    loaded, rows = load_space(space), []
    for i, values in enumerate(itertools.product(*loaded.grid().values())):
        params = dict(zip(loaded.grid(), values, strict=True))
        cost = analytic_cost(tiny_spec(space, **params), 8)
        final = 0.999 if params == slow else 0.9 + 0.05 * math.log10(1 + cost.mflops) + 0.001 * i
        first = 0.1 if params == slow else final - 0.3
        curve = tuple(first + (final - first) * min(1.0, e / 3) for e in range(1, 5))
        rows.append(Row(params, cost.mflops, cost.params, 1.0, curve, final, 1.0))
    return Table(space, 0, 4, {"dataset": "digits"}, rows)


def replay(table: Table, out, **kw) -> list[optuna.trial.FrozenTrial]:
    replayed = ReplayFit(table)
    config = SearchConfig(space=table.space, out_dir=str(out), workers=1, artifacts="none", **kw)
    result = run_search(config, TRAIN, DataConfig(), device="cpu", fit=replayed, latency=replayed.latency)
    return optuna.load_study(study_name=result.study, storage=result.storage).get_trials()


def trained_to_the_end(trials) -> set[str]:
    return {t.user_attrs[R.ARCH] for t in trials if R.fully_trained(t)}


def test_a_slow_starter_stopped_at_the_first_rung_is_promoted_later(tmp_path, space):
    slow = {"blocks": 2, "k": 3, "kernels": "3,3"}
    table = synthetic_table(space, slow)
    budget = 12 * 3  # enough trials to promote everything that deserves it
    dropped = replay(table, tmp_path / "drop", budget=budget, sampler="random", seed=1, paused="drop")
    promoted = replay(table, tmp_path / "promote", budget=budget, sampler="random", seed=1)
    slow_name = next(t.user_attrs[R.ARCH] for t in promoted if t.params == {**slow})
    assert slow_name not in trained_to_the_end(dropped)  # stopped at epoch 1 for good: lost
    # ... and with every architecture tried and nothing to resume, the search ends: no copying up to its cap
    assert len(R.budget_trials(dropped)) == 12 and len(dropped) < 20 * budget
    assert slow_name in trained_to_the_end(promoted)
    again = [t for t in promoted if t.params == slow and t.user_attrs.get(R.RESUMED)]
    assert again and all(R.counts(t) for t in again)  # a resumed trial trains, so it counts against the budget
    first = [t for t in promoted if t.params == slow and t.user_attrs.get(R.STOPPED_AT) == 1]
    assert first and again[0].user_attrs[R.RESUMED] == {"trial": first[0].number, "epoch": 1}
    assert sum(R.epochs_trained(t) for t in promoted if t.params == slow) == 4  # resumed, never retrained
    assert any(R.PROMOTED in t.user_attrs for t in promoted)


def decisions(trials) -> list[tuple]:
    """What a search decided, trial by trial: which architecture, how far it trained, what it went on from."""
    return [(t.number, t.params, t.state.name, len(t.user_attrs.get(R.CURVE, [])), t.user_attrs.get(R.STOPPED_AT),
             t.user_attrs.get(R.RESUMED), t.user_attrs.get(R.DUPLICATE_OF), t.user_attrs.get(R.PROMOTED))
            for t in sorted(trials, key=lambda t: t.number)]


def test_a_replayed_search_takes_the_real_searchs_decisions(tmp_path, space):
    """The real search trains; its observed curves become a table; the same search replayed on that table asks for
    no epoch the real one did not train (a replay past a recorded curve fails) and decides the same, trial by trial."""
    kw = {"space": space, "budget": 12, "seed": 0}
    config = SearchConfig(out_dir=str(tmp_path / "real"), artifacts="none", workers=1, **kw)
    result = run_search(config, TRAIN, DataConfig(), device="cpu")
    real = optuna.load_study(study_name=result.study, storage=result.storage).get_trials()
    assert any(t.user_attrs.get(R.RESUMED) for t in real) and any(R.PAUSED in t.user_attrs for t in real)
    rows = [Row(t.params, t.user_attrs[R.MFLOPS], t.user_attrs[R.PARAMS], t.user_attrs[R.LATENCY_MS],
                tuple(t.user_attrs[R.CURVE]), t.user_attrs.get(R.TEST_ACC, math.nan), 0.0)
            for t in R.furthest(real).values()]
    table = Table(space, TRAIN.seed, TRAIN.epochs, {"dataset": "digits"}, rows)
    kw.pop("space")
    replayed = replay(table, tmp_path / "replay", **kw)
    assert decisions(replayed) == decisions(real)
    assert trained_to_the_end(replayed) == trained_to_the_end(real)


def _trial(number, spec, curve, state=TrialState.COMPLETE, **attrs):
    t = optuna.trial.create_trial(state=state, values=[curve[-1], 1.0] if state == TrialState.COMPLETE else None,
                                  user_attrs={R.SPEC: spec, R.TRAINING: {}, R.CURVE: curve, R.MFLOPS: 1.0, **attrs})
    t.number = number
    return t


def test_a_paused_trial_is_promoted_once_and_running_trials_count_at_its_rung():
    asha = MOASHA(9, 3, 1)
    paused = _trial(0, "a", [0.5], stopped_at=1, paused="/x")
    others = [_trial(i, f"b{i}", [0.1 * i, 0.2]) for i in range(1, 6)]  # weaker at epoch 1, all cost 1 MFLOP
    assert next_promotion(Ledger(("mflops",)).update([paused, *others]), asha) is paused
    strong = [_trial(i, f"c{i}", [0.9], state=TrialState.RUNNING) for i in range(6, 12)]  # passed the rung, training
    assert next_promotion(Ledger(("mflops",)).update([paused, *others, *strong]), asha) is None
    failed_promotion = _trial(20, "a", [0.5], state=TrialState.FAIL, promoted=0)
    assert next_promotion(Ledger(("mflops",)).update([paused, *others, failed_promotion]), asha) is None
