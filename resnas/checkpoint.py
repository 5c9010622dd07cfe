"""One file per trained model: spec, weights, training and data config, history and metrics.

The file is a `torch.save` of plain data and tensors only, so loading uses `weights_only=True`: a file that
would need arbitrary unpickling (and could run code) is refused, never executed.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from . import guard
from .config import from_table, to_table
from .data import DataConfig, image_size
from .errors import UserError
from .files import atomic_write_bytes
from .measure import default_input_size
from .models import ResNet, build
from .spec import ArchSpec, SpecError
from .train import TrainConfig, TrainState

T = TypeVar("T")
FORMAT = "resnas-checkpoint"
VERSION = 1


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable, foreign, unsafe or from a newer resnas."""


@dataclass
class Checkpoint:
    spec: ArchSpec
    state_dict: dict[str, torch.Tensor]
    train_config: TrainConfig | None = None
    data_config: DataConfig | None = None
    history: list[dict] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # val_acc, test_acc, params, mflops, ...
    extra: dict[str, Any] = field(default_factory=dict)  # provenance, e.g. {"pruned_from": ..., "trial": 3}
    source: str = "checkpoint"  # where it was loaded from, for error messages

    def input_size(self) -> int:
        """The image side the model was trained (or imported) for."""
        if isinstance(self.metrics.get("input_size"), int):
            return self.metrics["input_size"]
        if self.data_config is not None:
            return image_size(self.data_config)
        return self.spec.input_size or default_input_size(self.spec)

    def model(self, device: torch.device | str = "cpu") -> ResNet:
        """Rebuild the network from the stored spec (if it fits on `device`) and load the weights strictly."""
        guard.check(self.spec, batch_size=1, input_size=self.input_size(), device=device, training=False)
        model = build(self.spec)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{self.source}: weights do not match the stored spec: {str(e).splitlines()[0]}"
                                  ) from None
        return model.to(device).eval()


def from_model(model: ResNet, **kw: Any) -> Checkpoint:
    # a model on the meta device (a replayed trial, see replay) is kept as shapes without weights
    state = {k: v.detach() if v.is_meta else v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return Checkpoint(spec=model.spec, state_dict=state, **kw)


def save(ckpt: Checkpoint, path: str | Path) -> Path:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "spec": ckpt.spec.to_dict(),
        "state_dict": ckpt.state_dict,
        "train_config": to_table(ckpt.train_config) if ckpt.train_config else None,
        "data_config": to_table(ckpt.data_config) if ckpt.data_config else None,
        "history": ckpt.history,
        "metrics": ckpt.metrics,
        "extra": ckpt.extra,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    try:
        return atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


def load(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; every failure names the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), None)
        if detail is None:  # not a forbidden object: the bytes are simply not a torch file
            raise CheckpointError(f"checkpoint {path}: unreadable, truncated or corrupted (not a torch file)") from None
        raise CheckpointError(f"checkpoint {path}: refused, it holds Python objects that could run code when "
                              f"unpickled ({detail[:160]}); resnas checkpoints hold only tensors and plain data"
                              ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path}: unreadable, truncated or corrupted "
                              f"({str(e).splitlines()[0][:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        what = "a plain state_dict" if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path}: not a resnas checkpoint (it holds {what}); "
                              "resnas train, search and prune write them; resnas import makes one of a torchvision "
                              "state_dict")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {version} is newer than this resnas reads "
                              f"(up to {VERSION}); upgrade resnas")
    try:
        where = f"checkpoint {path}"
        spec = ArchSpec.from_dict(payload["spec"], source=where)
        tc, dc = payload.get("train_config"), payload.get("data_config")
        return Checkpoint(spec=spec, state_dict=payload["state_dict"],
                          train_config=_config(TrainConfig, tc, where, "train_config"),
                          data_config=_config(DataConfig, dc, where, "data_config"),
                          history=payload.get("history") or [], metrics=payload.get("metrics") or {},
                          extra=payload.get("extra") or {}, source=where)
    except (SpecError, CheckpointError):
        raise
    except (KeyError, TypeError, UserError) as e:
        raise CheckpointError(f"checkpoint {path}: malformed ({e})") from None


def _config(cls: type[T], table: dict[str, Any] | None, where: str, section: str) -> T | None:
    return None if table is None else from_table(cls, table, where=where, section=section, error=CheckpointError)


PAUSED_FORMAT = "resnas-paused"


def save_paused(state: TrainState, path: str | Path) -> Path:
    """Where a paused search trial stopped (see train.TrainState), for a later trial to resume from."""
    buf = io.BytesIO()
    torch.save({"format": PAUSED_FORMAT, "state": state.to_dict()}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_paused(path: str | Path) -> TrainState | None:
    """A paused trial's training state, or None where it cannot be read (written on another machine, deleted,
    damaged): the caller then trains the architecture from the start."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return TrainState.from_dict(payload["state"]) if payload.get("format") == PAUSED_FORMAT else None
    except (OSError, pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError,
            TypeError, AttributeError):
        return None
