"""What a search reports when it ends: counts of each kind of trial, the epochs it cost, and the Pareto front."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from .. import records as R


@dataclass
class SearchResult:
    study: str
    storage: str
    n_complete: int
    n_pruned: int
    n_failed: int
    n_rejected: int
    n_duplicates: int
    epochs_trained: int
    seconds: float
    pareto: list[dict]
    interrupted: bool = False
    errors: list[str] | None = None
    nothing_trained: str | None = None  # why no architecture trained, when every one was rejected or failed
    n_resumed: int = 0  # trials that went on from a paused one (promoted, or proposed again)
    overhead_share: float | None = None  # of the trials' wall time, the share outside training (records.TIMING)

    def to_dict(self) -> dict:
        return asdict(self)


def why_nothing_trained(result: SearchResult, trials: list[FrozenTrial], cheapest: Callable[[], str]) -> str | None:
    """None when some architecture trained (even if only to a rung); otherwise the reason, in one line. `cheapest`
    names the space's cheapest architecture (computed only when limits rejected everything)."""
    if result.n_complete or result.n_pruned or result.interrupted:
        return None
    if result.n_failed:
        first = (result.errors or ["no error recorded"])[0]
        return f"every architecture tried failed ({result.n_failed}); the first: {first}"
    if result.n_rejected:
        reasons = [t.user_attrs[R.REJECTED] for t in trials if R.REJECTED in t.user_attrs]
        if all(R.memory_rejection(t) for t in trials if R.REJECTED in t.user_attrs):
            return f"no architecture sampled ({result.n_rejected}) fits on this device; the first: {reasons[0]}"
        return f"every architecture sampled ({result.n_rejected}) was rejected by the constraints; {cheapest()}"
    return None


def summarise(study: optuna.Study, objectives: tuple[str, ...], storage: str, seconds: float) -> SearchResult:
    trials = study.get_trials(deepcopy=False)
    counted = R.budget_trials(trials)
    return SearchResult(
        study=study.study_name, storage=storage,
        n_complete=sum(t.state == TrialState.COMPLETE and not R.stopped_early(t) for t in counted),
        n_pruned=sum(R.stopped_early(t) for t in counted),
        n_failed=sum(t.state == TrialState.FAIL for t in counted),
        n_rejected=sum(R.REJECTED in t.user_attrs for t in trials),
        n_duplicates=sum(R.DUPLICATE_OF in t.user_attrs for t in trials),
        epochs_trained=sum(R.epochs_trained(t) for t in counted),
        n_resumed=sum(R.resumed_from(t) > 0 for t in counted),
        seconds=seconds, pareto=R.pareto_trials(trials, objectives), errors=R.error_lines(counted),
        overhead_share=R.overhead_share(trials))
