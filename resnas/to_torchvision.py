"""A resnas ResNet as torchvision's `ResNet` holds it: the constructor call, the modules to swap in after it, and
the state_dict under torchvision's names.

torchvision's constructor fixes a 3-channel 7x7 stem of 64 channels, stage widths 64-512, projections only where
shapes change, and an average-pooled classifier. A network resnas imported from a model whose user swapped one of
those (a 1-channel `conv1`, a CIFAR stem without max pool, a stem of other width) or that projects on every block
(shortcut C) still fits once the same modules are swapped: they are found by comparing the network module by
module with what the constructor builds, and each is written as the `nn` expression that builds it.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet

from .importer import torchvision_keys
from .models import ResNet, last_bn
from .spec import ArchSpec

WIDTHS = (64, 128, 256, 512)


def blocker(spec: ArchSpec) -> str | None:
    """What of this network torchvision's `ResNet` cannot hold, whatever modules are swapped in, or None."""
    checks = [
        (spec.family != "residual", f"it is a {spec.family} network, not a ResNet"),
        (spec.preact, "it is pre-activation (BN-ReLU-conv); torchvision's blocks are post-activation"),
        (spec.shortcut == "A", "its shortcut is A (zero-padding, no parameters); torchvision's shortcuts project"),
        (spec.shortcut == "none", "it has no shortcuts (a plain network); every torchvision block adds one"),
        (spec.block == "basic" and len(spec.kernels) != 2,
         f"its blocks have l = {len(spec.kernels)} convs; torchvision's BasicBlock has two"),
        (spec.block == "basic" and spec.kernels != (3, 3),
         f"its blocks' kernels are {list(spec.kernels)}; torchvision's BasicBlock has two 3x3"),
        (spec.block == "basic" and spec.k != 1,
         f"its basic blocks are widened k = {spec.k}; torchvision widens only bottlenecks (width_per_group)"),
        (len(spec.blocks) != 4, f"it has {len(spec.blocks)} stages; torchvision's ResNet has 4"),
        (spec.widths != WIDTHS, f"its stage widths are {list(spec.widths)}; torchvision's are {list(WIDTHS)}"),
        (spec.stem == "vovnet", "its stem is VoVNet's three 3x3 convs; torchvision's is one conv"),
    ]
    return next((why for bad, why in checks if bad), None)


def constructor_args(spec: ArchSpec) -> tuple[type[nn.Module], list[int], dict[str, int]]:
    block = Bottleneck if spec.block == "bottleneck" else BasicBlock
    kw = {"num_classes": spec.num_classes}
    if spec.block == "bottleneck" and spec.k != 1:
        kw["width_per_group"] = 64 * spec.k
    return block, list(spec.blocks), kw


def constructor(spec: ArchSpec) -> str:
    block, layers, kw = constructor_args(spec)
    args = ", ".join([f"torchvision.models.resnet.{block.__name__}", str(layers), *(f"{k}={v}" for k, v in kw.items())])
    return f"torchvision.models.resnet.ResNet({args})"


def swaps(model: ResNet, theirs: nn.Module) -> dict[str, nn.Module | None]:
    """torchvision module path -> the module of `model` to put there (None: torchvision's projection goes), in
    torchvision's module order: every module whose type, shape, stride or padding differs from `theirs`."""
    mine = dict(model.named_modules())
    there = dict(theirs.named_modules())
    units: dict[str, str] = {}  # torchvision path -> resnas path, a projection shortcut as one unit
    for ours, tv in torchvision_keys(model).items():
        ours, tv = ours.rsplit(".", 1)[0], tv.rsplit(".", 1)[0]
        if ".downsample." in tv:
            ours, tv = ours.rsplit(".", 1)[0], tv.rsplit(".", 1)[0]
        units[tv] = ours
    out: dict[str, nn.Module | None] = {tv: mine[ours] for tv, ours in units.items()
                                        if tv not in there or repr(there[tv]) != repr(mine[ours])}
    out.update({tv: None for tv in there if tv.endswith(".downsample") and tv not in units})
    if model.spec.stem == "cifar":  # a 3x3 conv at stride 1 without max pool: the pooling has no tensors to show
        out["maxpool"] = nn.Identity()
    if model.spec.head == "flatten":  # the linear layer sees every position; ResNet's forward flattens after avgpool
        out["avgpool"] = nn.Identity()
    order = {name: i for i, name in enumerate(there)}

    def position(path: str) -> float:  # a projection torchvision lacks goes after the rest of its block
        block = path.rsplit(".", 1)[0]
        return order[path] if path in order else max(i for n, i in order.items() if n.startswith(block)) + 0.5

    return dict(sorted(out.items(), key=lambda kv: position(kv[0])))


def code(module: nn.Module | None) -> str:
    """The `nn` expression that builds a module of this shape (torch.nn imported as nn)."""
    if module is None:
        return "None"
    if isinstance(module, nn.Conv2d):
        assert module.bias is None and module.groups == 1 and len(set(module.kernel_size)) == 1
        return (f"nn.Conv2d({module.in_channels}, {module.out_channels}, {module.kernel_size[0]}, {module.stride[0]}, "
                f"{module.padding[0]}, bias=False)")
    if isinstance(module, nn.BatchNorm2d):
        return f"nn.BatchNorm2d({module.num_features})"
    if isinstance(module, nn.Linear):
        return f"nn.Linear({module.in_features}, {module.out_features})"
    if isinstance(module, nn.Identity):
        return "nn.Identity()"
    assert isinstance(module, nn.Sequential), type(module)
    return f"nn.Sequential({', '.join(code(m) for m in module)})"


def python_path(path: str) -> str:
    """`layer1.0.downsample` as Python reaches it from the model: `layer1[0].downsample`."""
    return re.sub(r"\.(\d+)", r"[\1]", path)


def replacements(model: ResNet) -> dict[str, str]:
    """Python path -> `nn` expression of every module to swap into the constructor's network."""
    block, layers, kw = constructor_args(model.spec)
    with torch.device("meta"):  # shapes only
        theirs = TorchvisionResNet(block, layers, **kw)
    return {python_path(p): code(m) for p, m in swaps(model, theirs).items()}


@torch.no_grad()
def state_dict(model: ResNet) -> dict[str, torch.Tensor]:
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


@torch.no_grad()
def rebuilt(model: ResNet, state: dict[str, torch.Tensor]) -> nn.Module:
    """torchvision's ResNet made as the export tells the user to: constructed, modules swapped, `state` loaded
    strictly; in eval mode."""
    block, layers, kw = constructor_args(model.spec)
    theirs = TorchvisionResNet(block, layers, **kw)
    for path, module in swaps(model, theirs).items():
        parent, _, name = path.rpartition(".")
        setattr(theirs.get_submodule(parent) if parent else theirs, name, copy.deepcopy(module))
    theirs.load_state_dict(state, strict=True)
    return theirs.eval()
