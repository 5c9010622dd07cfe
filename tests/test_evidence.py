"""The EHVI sampler's incremental reading of a study (search.evidence.Reader) gives, at every proposal of a real
replayed search (promotions, pauses, duplicates, rejections), what reading every trial afresh gives."""

from optuna.trial import TrialState

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
