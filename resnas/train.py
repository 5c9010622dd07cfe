"""The training engine: one model, one dataset, a per-epoch callback, a returned history.

It knows nothing of Optuna: the search turns `on_epoch` into reporting and early stopping.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import Data
from .errors import TrainingFailed, UserError

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 64
    lr: float = 0.1  # peak SGD learning rate, for batch_size
    momentum: float = 0.9  # Nesterov
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine": per-step cosine decay to 0; "step": x0.2 at 30%, 60%, 80% of epochs (WRN)
    warmup_epochs: float = 1.0  # linear warm-up of the learning rate, in epochs
    label_smoothing: float = 0.0
    seed: int = 0
    bf16: bool | None = None  # None: on CUDA only
    channels_last: bool | None = None  # None: on CUDA only
    compile: str | None = None  # torch.compile mode for the training model: "default", "reduce-overhead", ...
    block_sparsity: float = 0.0  # L1 weight on the branch gates (Huang & Wang 2018), proximal; needs gates
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        rules = [
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 2, "an integer >= 2 (BatchNorm needs two images)"),
            ("lr", self.lr > 0, "> 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("schedule", self.schedule in SCHEDULES, " or ".join(SCHEDULES)),
            ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("block_sparsity", self.block_sparsity >= 0, ">= 0"),
            ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
            ("compile", self.compile in COMPILE_MODES, f"one of {', '.join(map(str, COMPILE_MODES))}"),
        ]
        for name, ok, allowed in rules:
            if not ok:
                raise UserError(f"{name} must be {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    val_acc: float  # fraction in [0, 1]
    val_loss: float
    lr: float  # at the end of the epoch
    seconds: float  # training steps of this epoch, evaluation excluded
    images_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainState:
    """Where a run stopped, to go on from there (ASHA's promotion of a paused trial): the current weights and the
    optimiser's momentum, the step (the learning-rate schedule's position), both random streams, the history and
    the best epoch's weights. Only tensors, numbers and lists: it loads with torch.load(weights_only=True)."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict
    rng: torch.Tensor  # torch's global generator on the device (dropout)
    generator: torch.Tensor  # the data order and augmentation
    history: list[EpochRecord]
    best_epoch: int
    best_model: dict[str, torch.Tensor]

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in ("step", "model", "optimizer", "rng", "generator", "best_epoch",
                                                 "best_model")}, "history": [r.to_dict() for r in self.history]}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        return cls(**{**d, "history": [EpochRecord(**r) for r in d["history"]]})


@dataclass
class TrainResult:
    history: list[EpochRecord]
    best_epoch: int  # the model holds this epoch's weights when train() returns
    stopped_early: bool  # on_epoch asked to stop before config.epochs
    state: TrainState | None = None  # where it stopped, when stopped early: train(resume=state) goes on from there

    @property
    def best_val_acc(self) -> float:
        return self.history[self.best_epoch - 1].val_acc


OnEpoch = Callable[[EpochRecord], bool | None]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu")
    return device


def _lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at optimiser step `step` (0-based)."""
    total = config.epochs * steps_per_epoch
    warm = int(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    epoch = step / steps_per_epoch
    return 0.2 ** sum(epoch >= f * config.epochs for f in (0.3, 0.6, 0.8))


def _gates(model: nn.Module) -> list[torch.Tensor]:
    return [p for name, p in model.named_parameters() if name.endswith(".gate")]


@torch.no_grad()
def _shrink_gates(gates: list[torch.Tensor], amount: float) -> None:
    """The proximal step of the L1 penalty (soft-thresholding), as in Sparse Structure Selection: unlike a
    subgradient step, it sets a gate exactly to zero once the data stop holding it up, and keeps it there."""
    for g in gates:
        g.copy_(g.sign() * (g.abs() - amount).clamp_min(0.0))


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, split: str, *, batch_size: int = 1024, bf16: bool = False,
             channels_last: bool = False) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on one split, in eval mode."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    loss_sum = torch.zeros((), device=data.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=bf16):
        for x, y in data.eval_batches(split, batch_size):
            logits = model(x.contiguous(memory_format=fmt)).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = data.split_size(split)
    return correct.item() / n, loss_sum.item() / n


def train(model: nn.Module, data: Data, config: TrainConfig, *, on_epoch: OnEpoch | None = None,
          progress: Callable[[str], None] | None = None, resume: TrainState | None = None) -> TrainResult:
    """Train `model` in place on `data.device`; return the per-epoch history.

    With `resume` (the state of an earlier run of this model and config that was stopped early), training goes on
    from the epoch after it stopped, exactly as if it had never stopped (same weights, schedule, data order).

    `on_epoch` is called after each epoch's validation; a truthy return stops training (exceptions it raises,
    such as optuna.TrialPruned, propagate). When train() returns, the model holds the weights of the epoch with
    the best validation accuracy. Raises TrainingFailed if the loss stops being finite or memory runs out.
    """
    device = data.device
    cuda = device.type == "cuda"
    bf16 = cuda if config.bf16 is None else config.bf16
    channels_last = cuda if config.channels_last is None else config.channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if config.block_sparsity and not _gates(model):
        raise UserError("block_sparsity needs a gated architecture (spec gates = true)")
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    if cuda:
        torch.backends.cudnn.benchmark = True
    model.to(device, memory_format=fmt)
    step_model = torch.compile(model, mode=config.compile) if config.compile else model
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # BN affine, biases, gates
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    n_train = data.split_size("train")
    steps_per_epoch = max(1, n_train // config.batch_size)
    gates = _gates(model)
    history: list[EpochRecord] = []
    best_epoch, best_state, step = 0, None, 0
    if resume is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        torch.cuda.set_rng_state(resume.rng, device) if cuda else torch.set_rng_state(resume.rng)
        generator.set_state(resume.generator)
        history, best_epoch, best_state, step = list(resume.history), resume.best_epoch, resume.best_model, resume.step
    state = None
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            model.train()
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            seen = 0
            for x, y in data.train_batches(config.batch_size, generator):
                lr = config.lr * _lr_factor(config, step, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = step_model(x.contiguous(memory_format=fmt))
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if config.block_sparsity:
                    _shrink_gates(gates, lr * config.block_sparsity)
                loss_sum += loss.detach() * len(y)
                seen += len(y)
                step += 1
            if cuda:
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            train_loss = loss_sum.item() / max(1, seen)
            if not math.isfinite(train_loss):
                raise TrainingFailed(f"training loss became {train_loss} in epoch {epoch} (lr {config.lr}); "
                                     "lower the learning rate")
            val_acc, val_loss = evaluate(model, data, "val", batch_size=config.eval_batch_size, bf16=bf16,
                                         channels_last=channels_last)
            record = EpochRecord(epoch, train_loss, val_acc, val_loss, lr, seconds, seen / max(seconds, 1e-9))
            history.append(record)
            if best_state is None or val_acc > history[best_epoch - 1].val_acc:
                best_epoch = epoch
                best_state = _copy(model.state_dict())
            if progress:
                progress(f"epoch {epoch}/{config.epochs}  loss {train_loss:.4f}  val acc {val_acc:.4f}  "
                         f"{seconds:.1f}s  {record.images_per_s:.0f} img/s")
            if on_epoch is not None and on_epoch(record):
                if epoch < config.epochs:
                    state = TrainState(step, _copy(model.state_dict()), copy.deepcopy(optimizer.state_dict()),
                                       torch.cuda.get_rng_state(device) if cuda else torch.get_rng_state(),
                                       generator.get_state(), list(history), best_epoch,
                                       best_state)
                break
    except torch.OutOfMemoryError as e:
        raise TrainingFailed(f"out of memory on {device} (batch size {config.batch_size}): "
                             f"{str(e).splitlines()[0]}") from None
    finally:
        if best_state is not None:
            model.load_state_dict(best_state)
    return TrainResult(history, best_epoch, stopped_early=len(history) < config.epochs, state=state)


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}
