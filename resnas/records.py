"""What a study stores, and how to read it: the names of every trial and study user attribute, and the questions
search, prune, report and the CLI ask of them ("did this trial count against the budget?", "which fully trained
trials are on the front?"). Optuna's storage is the one source of truth; this module is its schema.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .pareto import pareto_front, to_minimise
from .spec import ArchSpec

# ---- trial user attributes ------------------------------------------------------------------------------------
SPEC = "spec"  # ArchSpec JSON
ARCH = "arch"  # spec.describe()
MFLOPS, PARAMS = "mflops", "params"
TRAINING = "training"  # TrainConfig fields the space varied (e.g. seed, block_sparsity)
LATENCY_MS, LATENCY_P90_MS, LATENCY_DEVICE = "latency_ms", "latency_p90_ms", "latency_device"
CONSTRAINT = "constraint"  # [mflops, params, latency_ms, memory] over their limits (<= 0: feasible)
MEMORY = "memory"  # 1.0 where the size guard found the network cannot fit on the device
CONSTRAINED = (MFLOPS, PARAMS, LATENCY_MS, MEMORY)  # the order of CONSTRAINT's values (Optuna's constraint names)
REJECTED = "rejected"  # why a constraint rejected it (not trained)
DUPLICATE_OF = "duplicate_of"  # the trial whose result this one copied
SURPLUS = "surplus"  # started after other workers filled the budget
STOPPED_AT = "stopped_at"  # the rung epoch at which early stopping ended it
CURVE = "curve"  # validation accuracy after each epoch (a resumed trial's includes the epochs it went on from)
PAUSED = "paused"  # path of the training state saved where MO-ASHA stopped it: a later trial may resume it
PAUSED_ARTIFACT = "paused_artifact"  # {"store", "id", "filename"}: that state in the artifact store (any machine)
RESUME_FAILED = "resume_failed"  # why a paused state could not be read or fetched (the trial trained from scratch)
RESUMED = "resumed"  # {"trial": N, "epoch": E}: went on from trial N's paused state after epoch E
PROMOTED = "promoted"  # proposed by ASHA's promotion of a paused trial (not by the sampler)
VAL_ACC, TEST_ACC, TRAIN_ACC, TRAIN_LOSS = "val_acc", "test_acc", "train_acc", "train_loss"
CHECKPOINT = "checkpoint"  # absolute path of the best-epoch checkpoint, on the worker that trained it
CHECKPOINT_ARTIFACT = "checkpoint_artifact"  # {"store": URL, "id": artifact id, "filename": ...} (see artifacts)
SECONDS = "seconds"  # training steps of a fully trained trial
TIMING = "timing"  # {"total": the trial's seconds, "train": inside fit (training, its evaluations), "steps": steps}
PRUNE = "prune"  # pruning curve: one record per FLOPs cut (study configs with [prune])
ACC_AT_SIZE = "acc_at_size"  # {side: test accuracy on images resized to side x side} (gap heads; search.other_sizes)
ERROR = "error"  # first line of the exception that failed it

# what a duplicate copies from the trial it repeats
RESULT = (LATENCY_MS, LATENCY_P90_MS, LATENCY_DEVICE, VAL_ACC, TEST_ACC, TRAIN_ACC, TRAIN_LOSS, CHECKPOINT,
          CHECKPOINT_ARTIFACT, CURVE, CONSTRAINT, STOPPED_AT, PRUNE, ACC_AT_SIZE)

# ---- study user attributes --------------------------------------------------------------------------------------
IDENTITY = "resnas"  # what makes two invocations the same study: space, objectives, mode, data, train (and seeds)
SEARCH_CONFIG = "search_config"
STUDY_CONFIG = "study_config"  # a study config's description, claim, report settings and published numbers
SPLIT_SIZES = "split_sizes"  # images in each split: {"train": n, "val": n, "test": n}
PRUNE_PREFIX = "prune:"  # prune:<trial>: the record of pruning that Pareto checkpoint

OBJECTIVES = {VAL_ACC: True, MFLOPS: False, PARAMS: False, LATENCY_MS: False}  # name -> maximise?
DEFAULT_OBJECTIVES = (VAL_ACC, MFLOPS)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
KINDS = ("complete", "stopped early", "failed", "rejected", "duplicate", "surplus", "running")


# ---- trials ----------------------------------------------------------------------------------------------------

def counts(t: FrozenTrial) -> bool:
    """Does this trial count against the budget (it evaluated a new architecture)?"""
    return not any(k in t.user_attrs for k in (DUPLICATE_OF, REJECTED, SURPLUS))


def budget_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count against the budget: new architectures, less failed attempts that were retried
    (a trial whose worker died is failed through heartbeats and re-run as a copy; only the copy counts)."""
    done_again = retried(trials)
    return [t for t in trials if counts(t) and not (t.state == TrialState.FAIL and t.number in done_again)]


def retried(trials: list[FrozenTrial]) -> set[int]:
    """Trials whose worker died and that another trial re-ran (Optuna's `retry_history`)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def stopped_early(t: FrozenTrial) -> bool:
    """Stopped by MO-ASHA (completed with its rung accuracy) or by an Optuna pruner (scalar mode)."""
    return t.state == TrialState.PRUNED or STOPPED_AT in t.user_attrs


def constraint_values(t: FrozenTrial) -> list[float]:
    return list(t.user_attrs.get(CONSTRAINT, [0.0] * len(CONSTRAINED)))


def memory_rejection(t: FrozenTrial) -> bool:
    """Rejected by the size guard (the network cannot fit on the device), not by a user's limit."""
    values = constraint_values(t)
    return len(values) == len(CONSTRAINED) and values[CONSTRAINED.index(MEMORY)] > 0


def feasible(t: FrozenTrial) -> bool:
    return all(v <= 0 for v in constraint_values(t))


def fully_trained(t: FrozenTrial) -> bool:
    """Completed to the last epoch, within the constraints, and not a copy: what may stand on the front."""
    return t.state == TrialState.COMPLETE and counts(t) and VAL_ACC in t.user_attrs and feasible(t)


def epochs_trained(t: FrozenTrial) -> int:
    """The epochs this trial trained itself (a resumed trial's curve starts with epochs trained before; a duplicate
    copied its curve and trained nothing)."""
    if not counts(t):
        return 0
    return max(0, len(t.user_attrs.get(CURVE, [])) - resumed_from(t))


def resumed_from(t: FrozenTrial) -> int:
    """The epoch a resumed trial went on from (0: it started from scratch)."""
    return (t.user_attrs.get(RESUMED) or {}).get("epoch", 0)


def arch_key(t: FrozenTrial) -> tuple[str, str]:
    """What makes two trials the same training run: the architecture and the training settings the space varied."""
    return t.user_attrs.get(SPEC, ""), json.dumps(t.user_attrs.get(TRAINING, {}), sort_keys=True)


def furthest(trials: list[FrozenTrial], *, running: bool = False) -> dict[tuple[str, str], FrozenTrial]:
    """For each architecture, its finished (and, with `running`, running) counting trial that trained furthest (the
    earliest of equals): after pauses and resumes one architecture has several trials, and only the furthest tells
    where it stands. Rung comparisons include running trials: those are often the ones that passed the rung."""
    states = (TrialState.COMPLETE, TrialState.PRUNED) + ((TrialState.RUNNING,) if running else ())
    out: dict[tuple[str, str], FrozenTrial] = {}
    for t in trials:
        if t.state in states and counts(t) and SPEC in t.user_attrs:
            k = arch_key(t)
            if further(t, out.get(k)):
                out[k] = t
    return out


def further(t: FrozenTrial, than: FrozenTrial | None) -> bool:
    """Does `t` stand for its architecture instead of `than`: trained further, or as far and earlier?"""
    if than is None:
        return True
    a, b = len(t.user_attrs.get(CURVE, [])), len(than.user_attrs.get(CURVE, []))
    return a > b or (a == b and t.number < than.number)


def retrained(trials: list[FrozenTrial]) -> dict[tuple[str, str], list[int]]:
    """Architectures that more than one trial trained from the first epoch (a trial that went on from a pause, or
    that re-ran one whose worker died, is no retraining): what the search's duplicate handling must prevent."""
    again = retried(trials)
    starts: dict[tuple[str, str], list[int]] = {}
    for t in trials:
        if counts(t) and SPEC in t.user_attrs and epochs_trained(t) and not resumed_from(t) and t.number not in again:
            starts.setdefault(arch_key(t), []).append(t.number)
    return {k: v for k, v in starts.items() if len(v) > 1}


def lost(trials: list[FrozenTrial]) -> list[int]:
    """Trials that neither finished nor were retried: failed without a retry, or left running or waiting."""
    again = retried(trials)
    return [t.number for t in trials if t.number not in again and (t.state == TrialState.FAIL and ERROR not in
                                                                     t.user_attrs or not t.state.is_finished())]


def trial_kind(t: FrozenTrial) -> str:
    """One of KINDS: how the report and the summary classify a trial."""
    if SURPLUS in t.user_attrs:
        return "surplus"
    if DUPLICATE_OF in t.user_attrs:
        return "duplicate"
    if REJECTED in t.user_attrs:
        return "rejected"
    if stopped_early(t):
        return "stopped early"
    return {TrialState.COMPLETE: "complete", TrialState.FAIL: "failed"}.get(t.state, "running")


def pareto_trials(trials: list[FrozenTrial], objectives: tuple[str, ...]) -> list[dict[str, Any]]:
    """The non-dominated fully trained trials, cheapest first, each as the summary a user reads."""
    pool = [t for t in trials if fully_trained(t) and all(o in t.user_attrs for o in objectives)]
    points = [to_minimise([t.user_attrs[o] for o in objectives], [OBJECTIVES[o] for o in objectives]) for t in pool]
    front = sorted((pool[i] for i in pareto_front(points)), key=lambda t: t.user_attrs[MFLOPS])
    return [front_entry(t) for t in front]


def front_entry(t: FrozenTrial) -> dict[str, Any]:
    a = t.user_attrs
    return {"trial": t.number, "arch": a[ARCH], "val_acc": a[VAL_ACC], "test_acc": a.get(TEST_ACC),
            "mflops": a[MFLOPS], "params": a[PARAMS], "latency_ms": a.get(LATENCY_MS),
            "latency_device": a.get(LATENCY_DEVICE), "checkpoint": a.get(CHECKPOINT),
            "spec": ArchSpec.from_json(a[SPEC]).to_dict()}


def overhead_share(trials: list[FrozenTrial]) -> float | None:
    """The share of the trials' wall time spent outside training: sampling, the size guard, latency timing, lookups,
    storage, checkpoints (None before resnas recorded every trial's timing; trials of older studies are left out)."""
    timed = [t.user_attrs[TIMING] for t in trials if "train" in t.user_attrs.get(TIMING, {})]
    total = sum(x["total"] for x in timed)
    return 1.0 - sum(x["train"] for x in timed) / total if total > 0 else None


def at_size_column(side: str | int) -> str:
    """The report's column of test accuracy on images resized to `side` x `side`."""
    return f"test_acc_at_{side}"


def error_lines(trials: list[FrozenTrial], limit: int = 10) -> list[str]:
    return [f"trial {t.number}: {t.user_attrs[ERROR]}" for t in trials if ERROR in t.user_attrs][:limit]


# ---- studies ---------------------------------------------------------------------------------------------------

def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    return tuple(study.user_attrs.get(IDENTITY, {}).get("objectives", DEFAULT_OBJECTIVES))


def study_identity(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(IDENTITY)


def is_grid(study: optuna.Study) -> bool:
    return study.user_attrs.get(SEARCH_CONFIG, {}).get("sampler") == "grid"


def split_sizes(study: optuna.Study) -> dict[str, int]:
    return study.user_attrs.get(SPLIT_SIZES, {})


def prune_records(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """trial -> the record of pruning its Pareto checkpoint (`resnas prune --study ... --pareto`)."""
    return {int(k.removeprefix(PRUNE_PREFIX)): v for k, v in study.user_attrs.items() if k.startswith(PRUNE_PREFIX)}


def set_prune_record(study: optuna.Study, trial: int, record: dict[str, Any]) -> None:
    study.set_user_attr(f"{PRUNE_PREFIX}{trial}", record)
