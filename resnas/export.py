"""Export a resnas checkpoint for serving outside resnas: torchvision state_dict, ONNX or TorchScript.

Every format is produced in memory, then written atomically; the output's folder is checked before any work, so a
failure leaves nothing behind.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from . import checkpoint, to_torchvision
from .errors import UserError
from .files import atomic_write_bytes
from .importer import check_out
from .measure import analytic_cost, count_params
from .models import ResNet
from .spec import describe

FORMATS = ("torchvision", "onnx", "torchscript")
_OTHERS = "export --format onnx or torchscript instead, which take any resnas network"


class ExportError(UserError):
    """A checkpoint that the chosen format cannot hold, or a format whose packages are missing."""


# ---- torchvision ----------------------------------------------------------------------------------------

@torch.no_grad()
def _torchvision_bytes(model: ResNet, example: torch.Tensor, out: Path) -> tuple[bytes, int]:
    """The state_dict file, once torchvision's ResNet built as the export says loads it strictly and computes what
    `model` does; and that network's parameter count."""
    state = to_torchvision.state_dict(model)
    theirs = to_torchvision.rebuilt(model, state)
    mine, got = model.eval()(example), theirs(example)
    if not torch.allclose(got, mine, rtol=1e-4, atol=1e-4 * float(mine.abs().max())):
        raise RuntimeError(f"torchvision's ResNet as exported differs from the network by "
                           f"{float((got - mine).abs().max()):.3g}; please report it with the checkpoint")
    return _state_bytes(state, out), count_params(theirs)


def _state_bytes(state: dict[str, torch.Tensor], out: Path) -> bytes:
    if out.suffix == ".safetensors":
        from safetensors.torch import save

        return save(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


# ---- ONNX and TorchScript ----------------------------------------------------------------------------------

def _onnx_bytes(model: ResNet, example: torch.Tensor, opset: int | None, source: str) -> tuple[bytes, int]:
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise ExportError(f"exporting to onnx needs the {package} package: pip install 'resnas[export]'"
                              ) from None
    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                        input_names=["input"], output_names=["logits"], opset_version=opset,
                                        verbose=False)
    except Exception as e:  # the exporter wraps its failures in several types; say which step failed
        raise ExportError(f"{source}: the ONNX exporter failed{f' at opset {opset}' if opset else ''} "
                          f"({str(e).strip().splitlines()[0][:160]})") from None
    proto = program.model_proto
    version = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return proto.SerializeToString(), version


def _torchscript_bytes(model: ResNet, example: torch.Tensor) -> bytes:
    with warnings.catch_warnings():  # torch >= 2.10 marks torch.jit deprecated; the format is what was asked for
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    return buf.getvalue()


# ---- checkpoint -> file -------------------------------------------------------------------------------------

def export_checkpoint(path: str | Path, *, format: str, out: str | Path, opset: int | None = None) -> dict[str, Any]:
    """Write the network of checkpoint `path` to `out` in `format`; returns the record `resnas export --json`
    prints (`format`, `out`, `params`, `mflops`; `opset` for onnx; for torchvision `constructor`, `replace`
    (the modules to swap in after constructing it: Python path -> `nn` expression) and `layers`)."""
    path, out = Path(path), Path(out)
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if opset is not None and format != "onnx":
        raise ExportError(f"--opset applies to onnx only, not {format}")
    check_out(out, source=path)
    ckpt = checkpoint.load(path)
    spec, size = ckpt.spec, ckpt.input_size()
    if format == "torchvision" and (why := to_torchvision.blocker(spec)):
        raise ExportError(f"checkpoint {path}: torchvision's ResNet class cannot express {describe(spec)}: {why}; "
                          f"{_OTHERS}")
    model = ckpt.model("cpu")
    cost = analytic_cost(spec, size)
    record: dict[str, Any] = {"format": format, "out": str(out), "source": str(path), "arch": describe(spec),
                              "params": cost.params, "mflops": cost.mflops, "input_size": size,
                              "input_shape": ["batch", spec.in_channels, size, size]}
    example = torch.randn(2, spec.in_channels, size, size)  # batch 2: torch.export specialises a batch of 1
    if format == "torchvision":
        data, record["params"] = _torchvision_bytes(model, example, out)  # gates are folded into BatchNorms
        record.update(constructor=to_torchvision.constructor(spec), replace=to_torchvision.replacements(model),
                      layers=list(spec.blocks))
    elif format == "onnx":
        data, record["opset"] = _onnx_bytes(model, example, opset, f"checkpoint {path}")
    else:
        data = _torchscript_bytes(model, example)
    try:
        atomic_write_bytes(out, data)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    return record
