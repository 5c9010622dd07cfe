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

from . import checkpoint
from .errors import UserError
from .files import atomic_write_bytes
from .importer import check_out, torchvision_keys
from .measure import analytic_cost
from .models import ResNet, last_bn
from .spec import ArchSpec, describe

FORMATS = ("torchvision", "onnx", "torchscript")
_TV_WIDTHS = (64, 128, 256, 512)
_OTHERS = "export --format onnx or torchscript instead, which take any resnas network"


class ExportError(UserError):
    """A checkpoint that the chosen format cannot hold, or a format whose packages are missing."""


# ---- torchvision ----------------------------------------------------------------------------------------

def torchvision_blocker(spec: ArchSpec) -> str | None:
    """Why torchvision's `ResNet(block, layers, num_classes, width_per_group)` cannot be this network, or None."""
    checks = [
        (spec.stem != "imagenet", "its stem is the CIFAR 3x3 conv without max pool; torchvision's is 7x7 + max pool"),
        (spec.stem_width != 64, f"its stem is {spec.stem_width} channels wide; torchvision's is 64"),
        (spec.in_channels != 3, f"it takes {spec.in_channels}-channel images; torchvision's conv1 takes 3"),
        (spec.preact, "it is pre-activation (BN-ReLU-conv); torchvision's blocks are post-activation"),
        (spec.shortcut != "B", f"its shortcut is {spec.shortcut}; torchvision projects only where shapes change (B)"),
        (len(spec.blocks) != 4, f"it has {len(spec.blocks)} stages; torchvision's ResNet has 4"),
        (spec.widths != _TV_WIDTHS, f"its stage widths are {list(spec.widths)}; torchvision's are {list(_TV_WIDTHS)}"),
        (spec.block == "basic" and spec.kernels != (3, 3),
         f"its blocks have l = {len(spec.kernels)} convs of kernels {list(spec.kernels)}; torchvision's BasicBlock "
         "has two 3x3"),
        (spec.block == "basic" and spec.k != 1, f"its basic blocks are widened k = {spec.k}; torchvision widens "
         "only bottlenecks (width_per_group)"),
    ]
    return next((why for bad, why in checks if bad), None)


def torchvision_constructor(spec: ArchSpec) -> str:
    block = "Bottleneck" if spec.block == "bottleneck" else "BasicBlock"
    args = f"torchvision.models.resnet.{block}, {list(spec.blocks)}, num_classes={spec.num_classes}"
    if spec.block == "bottleneck" and spec.k != 1:
        args += f", width_per_group={64 * spec.k}"
    return f"torchvision.models.resnet.ResNet({args})"


@torch.no_grad()
def torchvision_state_dict(model: ResNet) -> dict[str, torch.Tensor]:
    """The weights under torchvision's names. A block's gate g is folded into its branch's last BatchNorm, which
    is exact: g * (w * x_hat + b) = (g * w) * x_hat + g * b."""
    state = model.state_dict()
    names = torchvision_keys(model)
    out = {names[k]: v.detach().clone().contiguous() for k, v in state.items() if k in names}
    for s, i, blk in model.blocks():
        if blk.gate is not None:
            bn = last_bn(blk.branch)
            index = next(n for n, m in blk.branch.named_children() if m is bn)
            prefix = names[f"stages.{s}.{i}.branch.{index}.weight"].rsplit(".", 1)[0]
            out[f"{prefix}.weight"] = bn.weight * blk.gate
            out[f"{prefix}.bias"] = bn.bias * blk.gate
    return out


def _torchvision_bytes(model: ResNet, out: Path) -> bytes:
    state = torchvision_state_dict(model)
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
    prints (`format`, `out`, `params`, `mflops`; `opset` for onnx; `constructor` for torchvision)."""
    path, out = Path(path), Path(out)
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if opset is not None and format != "onnx":
        raise ExportError(f"--opset applies to onnx only, not {format}")
    check_out(out, source=path)
    ckpt = checkpoint.load(path)
    spec, size = ckpt.spec, ckpt.input_size()
    if format == "torchvision" and (why := torchvision_blocker(spec)):
        raise ExportError(f"checkpoint {path}: torchvision's ResNet class cannot express {describe(spec)}: {why}; "
                          f"{_OTHERS}")
    model = ckpt.model("cpu")
    cost = analytic_cost(spec, size)
    record: dict[str, Any] = {"format": format, "out": str(out), "source": str(path), "arch": describe(spec),
                              "params": cost.params, "mflops": cost.mflops, "input_size": size,
                              "input_shape": ["batch", spec.in_channels, size, size]}
    example = torch.randn(2, spec.in_channels, size, size)  # batch 2: torch.export specialises a batch of 1
    if format == "torchvision":
        data = _torchvision_bytes(model, out)
        record["params"] -= sum(spec.blocks) if spec.gates else 0  # gates are folded into BatchNorms
        record["constructor"] = torchvision_constructor(spec)
        record["layers"] = list(spec.blocks)
    elif format == "onnx":
        data, record["opset"] = _onnx_bytes(model, example, opset, f"checkpoint {path}")
    else:
        data = _torchscript_bytes(model, example)
    try:
        atomic_write_bytes(out, data)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    return record
