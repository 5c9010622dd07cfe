"""Block surgery: which residual blocks can go without changing any shape downstream, a new network without them
(every other weight copied exactly), and BatchNorm statistics re-estimated after the cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .errors import UserError
from .importance import BlockId
from .models import ResNet, build


def check_family(model: ResNet) -> None:
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


def greedy(model: ResNet, order: Sequence[BlockId]) -> list[BlockId]:
    """`order` filtered so that no stage loses its last block (a stage needs one to exist)."""
    chosen: list[BlockId] = []
    for b in order:
        if _keeps_every_stage(model, [*chosen, b]):
            chosen.append(b)
    return chosen


def remove_blocks(model: ResNet, drop: set[BlockId]) -> ResNet:
    """A new, smaller network without the blocks in `drop`; every other weight is copied exactly."""
    check_family(model)
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
