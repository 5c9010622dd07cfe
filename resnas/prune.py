"""Pruning: remove residual blocks whose learned branches are near zero, physically.

A block computes shortcut(x) + F(x). Where the shortcut is the identity and F ~ 0, the block is ~ the identity
and can go: the pruned network is rebuilt from a spec with fewer blocks per stage and the kept blocks' weights
carried over exactly, so before BatchNorm recalibration its outputs equal the original's with those branches
zeroed (Veit et al. 2016; Huang & Wang 2018).

Blocks that change shape (the first block of a stage that strides or widens) are never removed: without them
every later layer would see another resolution or channel count. Keeping only their shortcut would need a
branch-less block type in the spec; resnas keeps the whole block and reports it as fixed.

Scores come from `importance`, the cut itself from `surgery`; this module selects, measures and records.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import checkpoint, records
from .artifacts import CACHE, local_checkpoint
from .data import Data
from .errors import UserError
from .files import atomic_write_text
from .fit import load_with_data
from .importance import BlockId, criterion
from .measure import analytic_cost, count_params, measure_latency
from .models import ResNet
from .storage import open_study
from .surgery import check_family, greedy, recalibrate_bn, removable, remove_blocks
from .train import TrainConfig, evaluate, train

# ---- selection modes -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PruneConfig:
    criterion: str = "norm"
    threshold: float | None = None  # remove blocks scoring below this
    target_mflops: float | None = None  # remove least important first until the model costs at most this
    target_ratio: float | None = None  # ... until MFLOPs fell by at least this fraction
    max_acc_drop: float | None = None  # ... while validation accuracy stays within this of the original
    finetune_epochs: int = 0
    calibration_batches: int = 8
    calibration_batch_size: int = 128
    random_draws: int = 5  # baseline: the same number of blocks removed at random
    seed: int = 0

    def __post_init__(self) -> None:
        modes = [m for m in ("threshold", "target_mflops", "target_ratio", "max_acc_drop")
                 if getattr(self, m) is not None]
        if len(modes) != 1:
            raise UserError("choose exactly one of --threshold, --target-mflops, --target-ratio, --max-acc-drop"
                            + (f" (got {', '.join(modes)})" if modes else ""))
        if self.target_ratio is not None and not 0 < self.target_ratio < 1:
            raise UserError(f"target ratio must be in (0, 1), got {self.target_ratio}")
        if self.target_mflops is not None and self.target_mflops <= 0:
            raise UserError(f"target MFLOPs must be > 0, got {self.target_mflops}")
        if self.max_acc_drop is not None and not 0 <= self.max_acc_drop < 1:
            raise UserError(f"max accuracy drop must be a fraction in [0, 1), got {self.max_acc_drop}")
        if self.finetune_epochs < 0:
            raise UserError(f"finetune epochs must be >= 0, got {self.finetune_epochs}")
        criterion(self.criterion)


def _mflops(model: ResNet, size: int) -> float:
    return analytic_cost(model.spec, size).mflops


def select(model: ResNet, scores: dict[BlockId, float], config: PruneConfig, image_size: int,
           val_acc: Callable[[set[BlockId]], float] | None = None) -> list[BlockId]:
    """Which removable blocks go, least important first, under the configured mode."""
    order = greedy(model, sorted(removable(model), key=lambda b: (scores[b], b)))
    if config.threshold is not None:
        return [b for b in order if scores[b] < config.threshold]
    base = _mflops(model, image_size)
    if config.target_mflops is not None or config.target_ratio is not None:
        target = config.target_mflops if config.target_mflops is not None else (1 - config.target_ratio) * base
        spec, chosen = model.spec, []
        for b in order:
            if analytic_cost(spec, image_size).mflops <= target:
                break
            chosen.append(b)
            spec = spec.replace(blocks=tuple(n - (s == b[0]) for s, n in enumerate(spec.blocks)))
        left = analytic_cost(spec, image_size).mflops
        if left > target:
            raise UserError(f"cannot reach {target:.3f} MFLOPs: removing every removable block "
                            f"({len(order)} of {sum(model.spec.blocks)}; shape-changing blocks and one per stage "
                            f"stay) leaves {left:.3f} MFLOPs")
        return chosen
    assert val_acc is not None and config.max_acc_drop is not None
    reference = val_acc(set())
    chosen: list[BlockId] = []
    for b in order:
        if reference - val_acc({*chosen, b}) > config.max_acc_drop:
            break
        chosen.append(b)
    return chosen


# ---- the whole operation --------------------------------------------------------------------------------------

@dataclass
class PruneResult:
    scores: dict[BlockId, float]
    removed: list[BlockId]
    fixed: list[BlockId]  # blocks that change shape: never removed
    model: ResNet
    before: dict[str, Any]
    after: dict[str, Any]  # BN recalibrated, before fine-tuning
    finetuned: dict[str, Any] | None = None
    random_baseline: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "removed": [{"stage": s, "index": i, "importance": self.scores[(s, i)]} for s, i in self.removed],
            "kept": [{"stage": s, "index": i, "importance": v} for (s, i), v in sorted(self.scores.items())
                     if (s, i) not in self.removed],
            "fixed": [{"stage": s, "index": i} for s, i in self.fixed],
            "before": self.before, "after": self.finetuned or self.after, "after_recalibration": self.after,
            "after_finetune": self.finetuned, "random_baseline": self.random_baseline,
            "spec": self.model.spec.to_dict(),
        }


def prune(model: ResNet, data: Data, config: PruneConfig, *,
          measure: Callable[[ResNet], dict[str, Any]],
          finetune: Callable[[ResNet], None] | None = None) -> PruneResult:
    """Score, select, remove, recalibrate, measure, and optionally fine-tune. `model` is not modified.

    `measure(model)` returns the metrics of a model on `data` (val/test accuracy, params, mflops, latency);
    `finetune(model)` trains it in place.
    """
    check_family(model)
    device = data.device
    model = copy.deepcopy(model).to(device).eval()
    batches = data.calibration_batches(config.calibration_batch_size, config.calibration_batches, config.seed)
    scores = criterion(config.criterion).scores(model, batches)

    def candidate(drop: set[BlockId]) -> ResNet:
        pruned = remove_blocks(model, drop).to(device)
        recalibrate_bn(pruned, batches)
        return pruned.eval()

    def val_acc(drop: set[BlockId]) -> float:
        return evaluate(candidate(drop) if drop else model, data, "val")[0]

    removed = select(model, scores, config, data.image_size, val_acc)
    before = measure(model)
    pruned = candidate(set(removed))
    after = measure(pruned)
    finetuned = None
    if finetune and config.finetune_epochs:
        finetune(pruned)
        finetuned = measure(pruned)
    pool = removable(model)
    rng = random.Random(config.seed)
    draws = [val_acc(set(greedy(model, rng.sample(pool, len(pool)))[:len(removed)]))
             for _ in range(config.random_draws)] if removed else []
    baseline = {"draws": len(draws), "val_acc": draws,
                "val_acc_mean": sum(draws) / len(draws) if draws else None}
    fixed = [(s, i) for s, i, _ in model.blocks() if (s, i) not in pool]
    return PruneResult(scores, removed, fixed, pruned.cpu(), before, after, finetuned, baseline)


def prune_curve(model: ResNet, data: Data, ratios: Sequence[float], *, criterion_name: str = "norm",
                random_draws: int = 3) -> list[dict[str, Any]]:
    """Accuracy kept against FLOPs removed: prune `model` (left as it is) at each FLOPs cut in `ratios`, with BN
    recalibrated and no fine-tuning, beside random removal of as many blocks. A cut the architecture cannot reach
    (too few removable blocks) is recorded with its error."""
    def measure(m: ResNet) -> dict[str, Any]:
        return {"val_acc": evaluate(m, data, "val")[0], "test_acc": evaluate(m, data, "test")[0],
                "mflops": _mflops(m, data.image_size)}

    points = []
    for ratio in ratios:
        config = PruneConfig(criterion=criterion_name, target_ratio=ratio, random_draws=random_draws)
        try:
            result = prune(model, data, config, measure=measure)
        except UserError as e:
            points.append({"ratio": ratio, "error": str(e)})
            continue
        points.append({"ratio": ratio, "removed": len(result.removed),
                       "mflops_cut": 1 - result.after["mflops"] / result.before["mflops"],
                       "val_acc_before": result.before["val_acc"], "val_acc": result.after["val_acc"],
                       "test_acc": result.after["test_acc"], "random_val_acc": result.random_baseline["val_acc_mean"]})
    return points


# ---- checkpoint -> checkpoint ---------------------------------------------------------------------------------

def prune_checkpoint(path: str | Path, config: PruneConfig, *, out: str | Path | None = None,
                     device: str = "auto") -> dict[str, Any]:
    """Prune the model in checkpoint `path` into a new checkpoint (default `<stem>-pruned.pt` beside it) and a JSON
    record of the run (`<out>.json`). The input file is only read."""
    path = Path(path)
    out = Path(out) if out else path.with_name(f"{path.stem}-pruned.pt")
    if out.resolve() == path.resolve():
        raise UserError(f"--out {out} is the input checkpoint; the pruned model goes to a new file")
    ckpt, data, model = load_with_data(path, device, why="there is nothing to calibrate on")
    dev = data.device

    def measure(m: ResNet) -> dict[str, Any]:
        lat = measure_latency(m, in_channels=m.spec.in_channels, input_size=data.image_size, device=dev)
        return {"val_acc": evaluate(m, data, "val")[0], "test_acc": evaluate(m, data, "test")[0],
                "params": count_params(m), "mflops": _mflops(m, data.image_size), "blocks": list(m.spec.blocks),
                "latency_ms": lat.latency_ms, "latency_device": lat.device}

    base = ckpt.train_config or TrainConfig()
    tune = replace(base, epochs=max(1, config.finetune_epochs), lr=base.lr / 10, warmup_epochs=0.0,
                   block_sparsity=0.0)

    def finetune(m: ResNet) -> None:
        train(m, data, tune)
        m.eval()

    result = prune(model, data, config, measure=measure, finetune=finetune)
    record = {**result.record(), "source": str(path), "checkpoint": str(out), "criterion": config.criterion,
              "config": asdict(config)}
    checkpoint.save(checkpoint.from_model(
        result.model, train_config=tune if result.finetuned else ckpt.train_config, data_config=ckpt.data_config,
        history=ckpt.history, metrics=record["after"], extra={"pruned_from": str(path), "prune": record}), out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=1, default=str))
    return record


def prune_pareto(study_name: str, config: PruneConfig, *, out_dir: str = "studies", storage: str | None = None,
                 device: str = "auto") -> list[dict[str, Any]]:
    """Prune every Pareto-front checkpoint of a study; records go to the study (user attribute `prune:<trial>`)
    and beside the pruned checkpoints in `<out_dir>/<study>/pruned/`."""
    study = open_study(study_name, out_dir=out_dir, storage=storage)
    front = records.pareto_trials(study.get_trials(deepcopy=False), records.study_objectives(study))
    if not front:
        raise UserError(f"study {study_name!r} has no completed trial on its Pareto front to prune")
    results = []
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for entry in front:
        out = (Path(out_dir) / study_name / "pruned" / f"trial-{entry['trial']:05d}-pruned.pt").resolve()
        try:
            source = local_checkpoint(trials[entry["trial"]], Path(out_dir) / study_name / CACHE)
            record = prune_checkpoint(source, config, out=out, device=device)
        except UserError as e:  # e.g. a target this architecture cannot meet: record it, go on with the others
            record = {"error": str(e)}
        record["trial"] = entry["trial"]
        records.set_prune_record(study, entry["trial"], {k: record.get(k) for k in
                                                        ("trial", "checkpoint", "before", "after", "removed",
                                                         "criterion", "error", "after_recalibration")})
        results.append(record)
    return results
