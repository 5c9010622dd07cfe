"""Bring a ResNet trained elsewhere into resnas: a state_dict in torchvision's layout becomes a resnas checkpoint.

torchvision's ResNets and timm's plain ones (`resnet18` ... `resnet152`, `resnet26`, `wide_resnet50_2`) share one
layout: `conv1`, `bn1`, `layer{1..}.{b}.conv{j}` / `bn{j}`, `downsample.0/1`, `fc`. The architecture is read off
those keys and shapes, then every tensor is checked against the network that spec builds, so a file that does not
fit is named by its first key or shape that does not.

What a state_dict cannot show: the stride and pooling around a 3x3 `conv1`, dilation (torchvision's
`replace_stride_with_dilation`) and anti-aliased downsampling (timm's `resnetaa*`, `resnetblur*`) add no tensors.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint
from .data import DataConfig, load_data
from .errors import UserError
from .measure import analytic_cost, default_input_size
from .models import ResNet, build
from .presets import resolve
from .spec import BOTTLENECK_EXPANSION, BOTTLENECK_KERNELS, ArchSpec, SpecError, describe

WRAPPERS = ("state_dict", "model_state_dict", "model")  # {"state_dict": ...} and the like from training loops
PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel / DDP, torch.compile, Lightning-style wrappers
LAYOUT = "conv1.weight, bn1.*, layer1.0.conv1.weight, ..., layerN.B.downsample.0/1.*, fc.weight, fc.bias"
_STEMS = {7: "imagenet", 3: "cifar"}


class StateDictError(UserError):
    """A state_dict file that cannot be read safely, or is not a ResNet resnas can express."""


# ---- reading a file safely ------------------------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.pt`/`.pth` (unpickled with `weights_only=True`) or `.safetensors` file, unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise StateDictError(f"{path}: no such file")
    raw = _load_safetensors(path) if path.suffix == ".safetensors" else _load_torch(path)
    return _unwrap(raw, path)


def _load_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None:
            raise StateDictError(f"{path}: unreadable, truncated or corrupted (not a torch file)") from None
        hint = "save model.state_dict() instead" if re.match(r"(torch|torchvision|timm)\.", found[1]) else \
            "a state_dict holds only tensors"
        raise StateDictError(f"{path}: refused, it holds Python objects that could run code when unpickled "
                             f"(GLOBAL {found[1]}); {hint}") from None
    except Exception as e:  # random bytes also raise IndexError and KeyError from inside the weights-only unpickler
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise StateDictError(f"{path}: unreadable, truncated or corrupted ({first})") from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise StateDictError(f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)"
                             ) from None
    try:
        return load_file(path, device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError, a bare Exception subclass
        raise StateDictError(f"{path}: unreadable, truncated or corrupted safetensors file ({str(e)[:120]})") from None


def _unwrap(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(raw, dict) and raw.get("format") == checkpoint.FORMAT:
        raise StateDictError(f"{path}: already a resnas checkpoint; eval, prune and export take it as it is")
    if isinstance(raw, dict):
        raw = next((raw[k] for k in WRAPPERS if isinstance(raw.get(k), dict)), raw)
    if not isinstance(raw, dict) or not raw:
        what = "an empty dict" if isinstance(raw, dict) else f"a {type(raw).__name__}"
        raise StateDictError(f"{path}: holds {what}, not a state_dict (a dict of parameter name -> tensor)")
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise StateDictError(f"{path}: {key!r} is not a tensor ({type(value).__name__}); expected a "
                                 "state_dict, or a dict with one under 'state_dict', 'model_state_dict' or 'model'")
    state = dict(raw)
    while (prefix := next((p for p in PREFIXES if all(k.startswith(p) for k in state)), None)) is not None:
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


# ---- torchvision's names for resnas's modules ---------------------------------------------------------------

def torchvision_keys(model: ResNet) -> dict[str, str]:
    """resnas state_dict key -> torchvision's key for the same tensor. A gate, a pre-activation projection or a
    head BN has no torchvision name and is left out."""
    names = {"stem.0": "conv1", "stem.1": "bn1", "fc": "fc"}
    for s, i, blk in model.blocks():
        here, there = f"stages.{s}.{i}", f"layer{s + 1}.{i}"
        for kind, tv in ((nn.Conv2d, "conv"), (nn.BatchNorm2d, "bn")):
            layers = [n for n, m in blk.branch.named_children() if isinstance(m, kind)]
            names.update({f"{here}.branch.{n}": f"{there}.{tv}{j + 1}" for j, n in enumerate(layers)})
        if isinstance(blk.shortcut, nn.Sequential):
            names.update({f"{here}.shortcut.{j}": f"{there}.downsample.{j}" for j in (0, 1)})
    out = {}
    for key in model.state_dict():
        module, param = key.rsplit(".", 1)
        if module in names:
            out[key] = f"{names[module]}.{param}"
    return out


# ---- inference ------------------------------------------------------------------------------------------

def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ")"


def _need(state: dict[str, torch.Tensor], key: str, ndim: int, source: str) -> torch.Tensor:
    if key not in state:
        raise StateDictError(f"{source}: no {key}; {_foreign(state, key)}")
    t = state[key]
    if t.ndim != ndim:
        raise StateDictError(f"{source}: {key} has shape {_shape(t)}; a ResNet's has {ndim} dimensions")
    return t


def _foreign(state: dict[str, torch.Tensor], missing: str) -> str:
    """Why a key resnas needs is absent, in the words of the variant the file most likely is."""
    keys = list(state)
    if missing == "conv1.weight" and "conv1.0.weight" in state:
        return ("conv1.0.weight is a deep stem of three 3x3 convs (ResNet-C/D: timm's resnet*d, *c, *s, *t); "
                "resnas imports the single-conv stem only")
    if not any(k.startswith(("conv1.", "layer1.")) for k in keys):
        return f"not a ResNet in torchvision's layout (its first key is {keys[0]!r}; expected {LAYOUT})"
    return f"expected torchvision's ResNet layout ({LAYOUT})"


def _stage_blocks(state: dict[str, torch.Tensor]) -> list[int]:
    found: dict[int, int] = {}
    for key in state:
        if m := re.match(r"layer(\d+)\.(\d+)\.", key):
            s, b = int(m[1]), int(m[2])
            found[s] = max(found.get(s, 0), b + 1)
    return [found.get(s, 0) for s in range(1, max(found, default=0) + 1)]


def infer_spec(state: dict[str, torch.Tensor], source: str) -> ArchSpec:
    """The ArchSpec whose network has this state_dict's keys and shapes (checked in full by `check_layout`)."""
    stem = _need(state, "conv1.weight", 4, source)
    fc = _need(state, "fc.weight", 2, source)
    blocks = _stage_blocks(state)
    if not blocks:
        raise StateDictError(f"{source}: no layer1.0.* keys; {_foreign(state, 'layer1.0.conv1.weight')}")
    if 0 in blocks:
        raise StateDictError(f"{source}: layer{blocks.index(0) + 1} has no blocks; ResNet stages are layer1..layerN")
    if stem.shape[-1] not in _STEMS:
        raise StateDictError(f"{source}: conv1.weight has shape {_shape(stem)}; resnas imports a 7x7 stem "
                             "(or a 3x3 one with --arch naming a spec whose stem is cifar)")
    bottleneck = "layer1.0.conv3.weight" in state
    last = "conv3" if bottleneck else "conv2"
    widths, ks = [], []
    for s in range(len(blocks)):
        out = _need(state, f"layer{s + 1}.0.{last}.weight", 4, source).shape[0]
        inner = _need(state, f"layer{s + 1}.0.conv1.weight", 4, source).shape[0]
        if bottleneck and (out < BOTTLENECK_EXPANSION or out % BOTTLENECK_EXPANSION
                           or inner % (out // BOTTLENECK_EXPANSION)):
            raise StateDictError(f"{source}: layer{s + 1}.0 expands {inner} -> {out} channels; a bottleneck expands "
                                 f"4x its base width (and widens its inner convs by an integer k)")
        widths.append(out // BOTTLENECK_EXPANSION if bottleneck else out)
        ks.append(inner // widths[-1] if bottleneck else 1)
    if len(set(ks)) > 1:
        s = next(i for i, k in enumerate(ks) if k != ks[0])
        raise StateDictError(f"{source}: layer{s + 1} is widened {ks[s]}x but layer1 {ks[0]}x; resnas widens every "
                             "stage by one factor k")
    try:
        return ArchSpec(blocks=tuple(blocks), widths=tuple(widths), k=ks[0],
                        block="bottleneck" if bottleneck else "basic",
                        kernels=BOTTLENECK_KERNELS if bottleneck else (3, 3), shortcut="B", preact=False,
                        stem=_STEMS[stem.shape[-1]], stem_width=stem.shape[0], in_channels=stem.shape[1],
                        num_classes=fc.shape[0])
    except SpecError as e:
        raise StateDictError(f"{source}: {e} (from conv1.weight {_shape(stem)}, fc.weight {_shape(fc)})") from None


def _hint(key: str, t: torch.Tensor, want: torch.Size | None = None) -> str:
    """What a misfit key most likely is, for the variants of timm's ResNet family that resnas cannot express."""
    if ".se." in key:
        return " (squeeze-and-excitation, timm's seresnet*/resnetrs*, is not a resnas block)"
    if "downsample.2" in key or (key.endswith("downsample.1.weight") and t.ndim == 4):
        return " (an avg-pool downsample, ResNet-D, is not resnas's projection shortcut)"
    if key.endswith("running_mean") or key.endswith("running_var"):
        return " (a norm layer without running statistics, e.g. GroupNorm, is not the BatchNorm resnas has)"
    grouped = want is not None and key.endswith(".conv2.weight") and t.ndim == 4 and t.shape[0] == want[0] \
        and t.shape[1] < want[1] and want[1] % t.shape[1] == 0
    return " (grouped convolutions, ResNeXt, are not a resnas block)" if grouped else ""


def check_layout(state: dict[str, torch.Tensor], spec: ArchSpec, source: str) -> dict[str, str]:
    """Every tensor where `spec`'s network has it, with its shape; returns torchvision key -> resnas key."""
    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        model = build(spec)
    shapes = model.state_dict()
    to_resnas = {tv: key for key, tv in torchvision_keys(model).items()}
    for key, t in state.items():
        if key not in to_resnas:
            raise StateDictError(f"{source}: unexpected key {key}{_hint(key, t, None)}; {describe(spec)} in "
                                 f"torchvision's layout has no such tensor")
        want = shapes[to_resnas[key]].shape
        if t.shape != want:
            hint = _hint(key, t, want if spec.block == "bottleneck" else None)
            raise StateDictError(f"{source}: {key} has shape {_shape(t)} but {describe(spec)} needs "
                                 f"({', '.join(map(str, want))}){hint}")
    missing = [k for k in to_resnas if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise StateDictError(f"{source}: {missing[0]} is missing{_hint(missing[0], torch.empty(0))}; "
                             f"{describe(spec)} needs it")
    return to_resnas


def _matched(spec: ArchSpec, arch: str, source: str) -> ArchSpec:
    """`spec` if the architecture the user named (a preset or an ArchSpec JSON file) agrees with it."""
    want = resolve(arch, in_channels=spec.in_channels, num_classes=spec.num_classes)
    for field, value in want.to_dict().items():
        got = spec.to_dict()[field]
        if got != value and field not in ("zero_init_residual", "dropout"):
            raise StateDictError(f"{source}: --arch {arch} does not match the file: {field} is {value} in {arch} "
                                 f"but {got} in the file")
    return want.replace(zero_init_residual=False)


def checkpoint_from_state_dict(state: dict[str, torch.Tensor], *, source: str = "state_dict",
                               arch: str | None = None) -> checkpoint.Checkpoint:
    """A resnas checkpoint holding exactly the network and weights of a torchvision-layout state_dict."""
    spec = infer_spec(state, source)
    if arch is not None:
        spec = _matched(spec, arch, source)
    elif spec.stem == "cifar":
        raise StateDictError(f"{source}: conv1.weight is a 3x3 conv, whose stride and following max pool are not in "
                             "the state_dict; if it runs at stride 1 without max pool (the usual CIFAR change), pass "
                             "--arch SPEC.json with \"stem\": \"cifar\"")
    to_resnas = check_layout(state, spec, source)
    weights = {}
    for tv, key in to_resnas.items():
        t = state.get(tv, torch.zeros((), dtype=torch.long))  # num_batches_tracked may be absent; it is unused
        weights[key] = t.float().contiguous() if t.is_floating_point() else t.clone()
    return checkpoint.Checkpoint(spec=spec, state_dict=weights, source=source)


# ---- file -> checkpoint -----------------------------------------------------------------------------------

def check_out(out: Path, *, source: Path) -> None:
    """Refuse an output path before anything is computed or written: nothing is created on any failure."""
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist; create it or name another")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name a file in it")
    if out.resolve() == source.resolve():
        raise UserError(f"--out {out} is the input file; write to a new file")


def _check_data(spec: ArchSpec, config: DataConfig, source: str) -> int:
    """The image side the data comes at, once its channels and classes are known to fit the model."""
    data = load_data(config, "cpu")
    if (data.in_channels, data.num_classes) != (spec.in_channels, spec.num_classes):
        raise StateDictError(f"{source}: the model takes {spec.in_channels}-channel images and predicts "
                             f"{spec.num_classes} classes, but {config.dataset} has {data.in_channels}-channel images "
                             f"in {data.num_classes} classes; name the data it was trained on")
    return data.image_size


def import_file(path: str | Path, *, out: str | Path, arch: str | None = None,
                data_config: DataConfig | None = None) -> dict[str, Any]:
    """Read a torchvision-layout state_dict file and write it as a resnas checkpoint at `out`; returns the record
    `resnas import --json` prints. `data_config` names the data pruning, fine-tuning and eval will use later."""
    path, out = Path(path), Path(out)
    check_out(out, source=path)
    ckpt = checkpoint_from_state_dict(read_state_dict(path), source=str(path), arch=arch)
    spec = ckpt.spec
    size = _check_data(spec, data_config, str(path)) if data_config else default_input_size(spec)
    cost = analytic_cost(spec, size)
    ckpt.data_config = data_config
    ckpt.metrics = {"params": cost.params, "mflops": cost.mflops, "input_size": size}
    ckpt.extra = {"imported_from": str(path), "layout": "torchvision"}
    checkpoint.save(ckpt, out)
    return {"checkpoint": str(out), "source": str(path), "arch": describe(spec), "spec": spec.to_dict(),
            "layers": list(spec.blocks), "params": cost.params, "mflops": cost.mflops, "input_size": size,
            "dataset": data_config.dataset if data_config else None}
