"""One spec trained on one dataset with one recipe: seed, build, train, evaluate, and (optionally) save.

Every caller that turns an architecture into a trained model goes through `fit`: `resnas train`, each search trial,
the report's baselines and the benchmarks. The search takes it as a parameter (the `Fit` seam), so a benchmark can
replay recorded learning curves through the real search code instead of training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from . import checkpoint, estimate, guard
from .data import Data, DataConfig, load_data
from .errors import UserError
from .measure import Cost, analytic_cost, count_params
from .models import build
from .presets import resolve
from .spec import ArchSpec
from .train import OnEpoch, TrainConfig, TrainResult, TrainState, evaluate, pick_device, train


@dataclass
class Fitted:
    """A trained model with what was measured of it. `test_acc` is None when training was stopped early: the test
    split is evaluated once, on models that trained to the end, and never used for selection."""

    spec: ArchSpec
    model: nn.Module
    result: TrainResult
    cost: Cost
    test_acc: float | None
    train_acc: float | None = None  # eval mode, no augmentation (the degradation question)

    @property
    def val_acc(self) -> float:
        return self.result.best_val_acc

    @property
    def stopped_early(self) -> bool:
        return self.result.stopped_early

    def metrics(self) -> dict[str, Any]:
        return {"val_acc": self.val_acc, "test_acc": self.test_acc, "params": self.cost.params,
                "mflops": self.cost.mflops}


class Fit(Protocol):
    def __call__(self, spec: ArchSpec, data: Data, config: TrainConfig, *, on_epoch: OnEpoch | None = None,
                 train_acc: bool = False, resume: TrainState | None = None) -> Fitted: ...


def fit(spec: ArchSpec, data: Data, config: TrainConfig, *, on_epoch: OnEpoch | None = None,
        train_acc: bool = False, resume: TrainState | None = None,
        progress: Callable[[str], None] | None = None) -> Fitted:
    """Build `spec` from `config.seed`, train it on `data` (holding its best-validation epoch), then evaluate the
    test split (and, with `train_acc`, the training split in eval mode) unless `on_epoch` stopped it early.
    With `resume`, training goes on from where an earlier fit of this spec and config stopped early."""
    torch.manual_seed(config.seed)
    model = build(spec)
    result = train(model, data, config, on_epoch=on_epoch, progress=progress, resume=resume)
    full = not result.stopped_early
    return Fitted(spec, model, result, analytic_cost(spec, data.image_size),
                  test_acc=evaluate(model, data, "test")[0] if full else None,
                  train_acc=evaluate(model, data, "train")[0] if full and train_acc else None)


def save(fitted: Fitted, path: str | Path, *, train_config: TrainConfig, data_config: DataConfig,
         metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write the fitted model as a resnas checkpoint (atomically); `metrics` add to the fitted ones."""
    return checkpoint.save(checkpoint.from_model(
        fitted.model, train_config=train_config, data_config=data_config,
        history=[r.to_dict() for r in fitted.result.history], metrics={**fitted.metrics(), **(metrics or {})},
        extra=extra or {}), path)


def train_file(arch: str, config: TrainConfig, data_config: DataConfig, *, out: str | Path, device: str = "auto",
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`resnas train`: the architecture a user named (a preset, adapted to the dataset, or a spec file), trained and
    saved to `out`; returns the command's record."""
    data = load_data(data_config, pick_device(device))
    spec = resolve(arch, in_channels=data.in_channels, num_classes=data.num_classes)
    if config.block_sparsity and not spec.gates:
        spec = spec.replace(gates=True)
    guard.check(spec, batch_size=config.batch_size, input_size=data.image_size, device=data.device, training=True,
                eval_batch_size=config.eval_batch_size)
    estimate.check_epoch(spec, input_size=data.image_size, batch_size=config.batch_size,
                         train_images=data.split_size("train"), eval_images=data.split_size("val"), device=data.device)
    fitted = fit(spec, data, config, progress=progress)
    path = save(fitted, out, train_config=config, data_config=data_config)
    return {**fitted.metrics(), "epochs": len(fitted.result.history), "best_epoch": fitted.result.best_epoch,
            "seconds": sum(r.seconds for r in fitted.result.history), "checkpoint": str(path)}


def load_with_data(path: str | Path, device: str, *, why: str) -> tuple[checkpoint.Checkpoint, Data, nn.Module]:
    """A checkpoint, the dataset it records (on `device`) and its model there; `why` the data is needed."""
    ckpt = checkpoint.load(path)
    if ckpt.data_config is None:
        raise UserError(f"checkpoint {path}: it records no dataset, so {why}; name the data the model was trained "
                        "on when importing it (resnas import FILE --dataset ...)")
    dev = pick_device(device)
    return ckpt, load_data(ckpt.data_config, dev), ckpt.model(dev)


def evaluate_file(path: str | Path, *, device: str = "auto") -> dict[str, Any]:
    """`resnas eval`: a checkpoint evaluated on the validation and test splits it was trained with."""
    ckpt, data, model = load_with_data(path, device, why="it cannot be evaluated")
    return {"val_acc": evaluate(model, data, "val")[0], "test_acc": evaluate(model, data, "test")[0],
            "params": count_params(model), "mflops": analytic_cost(ckpt.spec, data.image_size).mflops,
            "dataset": ckpt.data_config.dataset}
