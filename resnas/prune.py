"""Pruning: remove residual blocks whose learned branches are near zero, physically.

A block computes shortcut(x) + F(x). Where the shortcut is the identity and F ~ 0, the block is ~ the identity
and can go: the pruned network is rebuilt from a spec with fewer blocks per stage and the kept blocks' weights
carried over exactly, so before BatchNorm recalibration its outputs equal the original's with those branches
zeroed (Veit et al. 2016; Huang & Wang 2018).

Blocks that change shape (the first block of a stage that strides or widens) are never removed: without them
every later layer would see another resolution or channel count. Keeping only their shortcut would need a
branch-less block type in the spec; resnas keeps the whole block and reports it as fixed.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import Data
from .errors import UserError
from .files import atomic_write_text
from .measure import analytic_cost
from .models import Block, ResNet, build, last_bn
from .train import TrainConfig

BlockId = tuple[int, int]  # (stage, index within stage)


# ---- importance criteria: small objects, each returning one score per block ------------------------------

class Criterion:
    name = ""

    def scores(self, model: ResNet, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[BlockId, float]:
        raise NotImplementedError


class BranchNorm(Criterion):
    """Mean over calibration images of ||g F(x)|| / ||x||: how much a block changes what passes through it."""

    name = "norm"

    @torch.no_grad()
    def scores(self, model, batches):
        sums: dict[BlockId, float] = {}
        count = 0
        hooks = []
        for s, i, blk in model.blocks():
            def hook(module: Block, inputs: tuple[torch.Tensor], _out, key=(s, i)) -> None:
                x = inputs[0]
                f = module.branch(x) * (module.gate if module.gate is not None else 1)
                ratio = f.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-12)
                sums[key] = sums.get(key, 0.0) + ratio.sum().item()
            hooks.append(blk.register_forward_hook(hook))
        was_training = model.training
        model.eval()
        try:
            for x, _ in batches:
                model(x)
                count += len(x)
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
        return {k: v / count for k, v in sums.items()}


class BNScale(Criterion):
    """Mean |gamma| of the branch's last BatchNorm (Liu et al. 2017's network-slimming signal, per block)."""

    name = "bn"

    def scores(self, model, batches):
        gate = lambda b: abs(b.gate.item()) if b.gate is not None else 1.0  # noqa: E731
        return {(s, i): last_bn(b.branch).weight.detach().abs().mean().item() * gate(b) for s, i, b in model.blocks()}


class Gate(Criterion):
    """|gate| of a model trained with block sparsity (`resnas train --block-sparsity`)."""

    name = "gate"

    def scores(self, model, batches):
        if not model.spec.gates:
            raise UserError("criterion gate needs a model trained with gates (resnas train --block-sparsity ...); "
                            "use --criterion norm or bn")
        return {(s, i): abs(b.gate.item()) for s, i, b in model.blocks()}


CRITERIA: dict[str, Callable[[], Criterion]] = {"norm": BranchNorm, "bn": BNScale, "gate": Gate}


def criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise UserError(f"unknown criterion {name!r}; choose one of {', '.join(CRITERIA)}")
    return CRITERIA[name]()


# ---- removal ----------------------------------------------------------------------------------------------

def _check_family(model: ResNet) -> None:
    if model.spec.family != "residual":
        raise UserError(f"cannot prune a {model.spec.family} network: pruning removes residual blocks with identity "
                        "shortcuts, and only the residual family has them (dense layers are concatenated, not added; "
                        "OSA modules are not supported)")


def removable(model: ResNet) -> list[BlockId]:
    """Blocks whose shortcut is the identity: removing one leaves every shape downstream as it was."""
    spec = model.spec
    if spec.shortcut == "none":
        return []
    return [(s, i) for s, i, _ in model.blocks() if not spec.changes_shape(s, i) and spec.shortcut != "C"]


def _keeps_every_stage(model: ResNet, drop: Sequence[BlockId]) -> bool:
    return all(n > sum(s == stage for s, _ in drop) for stage, n in enumerate(model.spec.blocks))


def _greedy(model: ResNet, order: Sequence[BlockId]) -> list[BlockId]:
    """`order` filtered so that no stage loses its last block (a stage needs one to exist)."""
    chosen: list[BlockId] = []
    for b in order:
        if _keeps_every_stage(model, [*chosen, b]):
            chosen.append(b)
    return chosen


def remove_blocks(model: ResNet, drop: set[BlockId]) -> ResNet:
    """A new, smaller network without the blocks in `drop`; every other weight is copied exactly."""
    _check_family(model)
    spec = model.spec
    bad = drop - set(removable(model))
    if bad:
        raise UserError(f"blocks {sorted(bad)} cannot be removed: they change shape or have a projection shortcut")
    kept = {s: [i for i in range(n) if (s, i) not in drop] for s, n in enumerate(spec.blocks)}
    new_spec = spec.replace(blocks=tuple(len(kept[s]) for s in range(len(spec.blocks))))
    state = model.state_dict()
    new_state = {}
    for key, value in state.items():
        if key.startswith("stages."):
            _, s, i, rest = key.split(".", 3)
            s, i = int(s), int(i)
            if (s, i) in drop:
                continue
            key = f"stages.{s}.{kept[s].index(i)}.{rest}"
        new_state[key] = value.clone()
    pruned = build(new_spec)
    pruned.load_state_dict(new_state, strict=True)
    return pruned


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Re-estimate every BatchNorm's running statistics on training batches (a cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    for x, _ in batches:
        model(x)
    model.train(was_training)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom


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
    order = _greedy(model, sorted(removable(model), key=lambda b: (scores[b], b)))
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
    from .train import evaluate

    _check_family(model)
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
    draws = [val_acc(set(_greedy(model, rng.sample(pool, len(pool)))[:len(removed)]))
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
    from .train import evaluate

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
    from . import checkpoint
    from .data import load_data
    from .measure import count_params, measure_latency
    from .train import evaluate, pick_device, train

    path = Path(path)
    ckpt = checkpoint.load(path)
    out = Path(out) if out else path.with_name(f"{path.stem}-pruned.pt")
    if out.resolve() == path.resolve():
        raise UserError(f"--out {out} is the input checkpoint; the pruned model goes to a new file")
    if ckpt.data_config is None:
        raise UserError(f"checkpoint {path}: it records no dataset, so there is nothing to calibrate on")
    dev = pick_device(device)
    data = load_data(ckpt.data_config, dev)
    model = ckpt.model(dev)

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
    from .search import pareto_trials, study_objectives
    from .storage import open_study

    study = open_study(study_name, out_dir=out_dir, storage=storage)
    front = pareto_trials(study.get_trials(deepcopy=False), study_objectives(study))
    if not front:
        raise UserError(f"study {study_name!r} has no completed trial on its Pareto front to prune")
    records = []
    for entry in front:
        out = (Path(out_dir) / study_name / "pruned" / f"trial-{entry['trial']:05d}-pruned.pt").resolve()
        try:
            record = prune_checkpoint(entry["checkpoint"], config, out=out, device=device)
        except UserError as e:  # e.g. a target this architecture cannot meet: record it, go on with the others
            record = {"error": str(e)}
        record["trial"] = entry["trial"]
        study.set_user_attr(f"prune:{entry['trial']}", {k: record.get(k) for k in
                                                        ("trial", "checkpoint", "before", "after", "removed",
                                                         "criterion", "error", "after_recalibration")})
        records.append(record)
    return records
