"""The EHVI sampler's incremental reading of a study (search.evidence.Reader) gives, at every proposal of a real
replayed search (promotions, pauses, duplicates, rejections), what reading every trial afresh gives."""

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from resnas import records as R
from resnas.data import DataConfig
from resnas.replay import ReplayFit, Table
from resnas.search import SearchConfig, evidence, run_search
from resnas.train import TrainConfig


def plain(trials, index, chosen, me):
    """Every trial read afresh: the definition the Reader keeps up to date."""
    ev = evidence.Evidence()
    for t in trials:
        if (R.REJECTED in t.user_attrs or t.state == TrialState.FAIL) and R.arch_key(t) in index:
            ev.blocked.add(index[R.arch_key(t)])
        elif t.state == TrialState.RUNNING and t.number != me:
            marked = t.system_attrs.get(evidence.CHOSEN) or evidence.params_id(t.system_attrs.get("fixed_params") or {})
            i = index.get(R.arch_key(t)) if R.SPEC in t.user_attrs else chosen.get(marked)
            if i is not None:
                ev.running.add(i)
    for key, t in R.furthest([t for t in trials if t.number != me], running=True).items():
        if key not in index or index[key] in ev.running:
            continue
        i, curve = index[key], list(t.user_attrs.get(R.CURVE, []))
        if R.fully_trained(t):
            ev.full[i] = (t.user_attrs[R.VAL_ACC], curve)
        elif curve:
            ev.partial[i] = curve
            if R.PAUSED in t.user_attrs:
                ev.resumable.add(i)
    return ev


def test_the_incremental_reading_is_the_plain_one_at_every_proposal(tmp_path, monkeypatch):
    read, checked = evidence.Reader.read, []

    def both(self, trials, me):
        got, want = read(self, trials, me), plain(trials, self.index, self.chosen, me)
        assert list(got.full.items()) == list(want.full.items())  # in the same order: the surrogate's inputs
        assert list(got.partial.items()) == list(want.partial.items())
        assert (got.resumable, got.running, got.blocked) == (want.resumable, want.running, want.blocked)
        checked.append((len(got.full), len(got.partial), len(got.blocked)))
        return got

    monkeypatch.setattr(evidence.Reader, "read", both)
    table = Table.synthetic("wrn")
    replay = ReplayFit(table)
    config = SearchConfig(space="wrn", budget=80, workers=1, out_dir=str(tmp_path), max_mflops=20.0)
    run_search(config, TrainConfig(epochs=table.epochs), DataConfig(), device="cpu", fit=replay,
               latency=replay.latency)
    assert len(checked) >= 60
    assert max(f for f, _, _ in checked) > 3 and max(p for _, p, _ in checked) > 3  # both kinds of evidence grew


def _trial(number, state, attrs, system=None):
    return FrozenTrial(number=number, state=state, value=None, values=[0.5, 1.0] if state.is_finished() else None,
                       datetime_start=None, datetime_complete=None, params={}, distributions={}, user_attrs=attrs,
                       system_attrs=system or {}, intermediate_values={}, trial_id=number)


def _history(rng, n, epochs=4):
    """n trials of 8 architectures: how each one ends, and when (trials overlap, as under several workers, so they
    finish out of order and an architecture's later trial may finish before its earlier one)."""
    out = []
    for k in range(n):
        arch = int(rng.integers(8))
        attrs = {R.SPEC: f"arch-{arch}", R.TRAINING: {}}
        kind = rng.choice(["full", "paused", "stopped", "pruned", "failed", "rejected", "duplicate", "unrecorded"])
        state = {"pruned": TrialState.PRUNED, "failed": TrialState.FAIL}.get(kind, TrialState.COMPLETE)
        curve = [float(x) for x in np.sort(rng.random(epochs))][:epochs if kind == "full" else int(rng.integers(1, 4))]
        if kind == "rejected":
            attrs[R.REJECTED] = "over the limit"
        elif kind == "duplicate":
            attrs[R.DUPLICATE_OF] = 0
        elif kind != "unrecorded":
            attrs[R.CURVE] = curve
            if kind == "full":
                attrs[R.VAL_ACC] = curve[-1]
            elif kind in ("paused", "stopped"):
                attrs[R.STOPPED_AT] = len(curve)
                attrs.update({R.PAUSED: "paused/trial.pt"} if kind == "paused" else {})
        running = {k: v for k, v in attrs.items() if k in (R.SPEC, R.TRAINING, R.REJECTED)}
        if kind == "unrecorded":  # proposed, not yet recorded its architecture: known by its chosen params
            running = {}
        out.append((k + int(rng.integers(0, 12)), state, attrs, running, {evidence.CHOSEN: f"p{arch}"}))
    return out


def test_trials_finishing_out_of_order_read_as_the_plain_reading():
    """Under several workers trials finish out of their numbers' order: the Reader keeps its candidates in the
    order of their first trials all the same, and a later finish of an architecture's earlier trial moves it."""
    index = {(f"arch-{a}", "{}"): a for a in range(8)}
    chosen = {f"p{a}": a for a in range(8)}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        history, reader, moved = _history(rng, 40), evidence.Reader(index, chosen), 0
        for step in range(60):
            started = min(len(history), step + 4)
            trials = [_trial(k, state, attrs) if end <= step else _trial(k, TrialState.RUNNING, running, system)
                      for k, (end, state, attrs, running, system) in enumerate(history[:started])]
            me = started - 1 if trials[-1].state == TrialState.RUNNING else -1
            if me >= 0:  # the trial being proposed has recorded nothing yet
                trials[me] = _trial(me, TrialState.RUNNING, {})
            got, want = reader.read(trials, me), plain(trials, index, chosen, me)
            assert list(got.full.items()) == list(want.full.items()), (seed, step)
            assert list(got.partial.items()) == list(want.partial.items()), (seed, step)
            assert (got.resumable, got.running, got.blocked) == (want.resumable, want.running, want.blocked)
            moved += any(end > history[k + 1][0] for k, (end, *_) in enumerate(history[:started - 1]))
        assert moved  # some trials did finish after later ones
