"""Block importance criteria: small interchangeable objects, each scoring every residual block of a model.

The lower a block's score, the closer it is to the identity and the sooner pruning removes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .errors import UserError
from .models import Block, ResNet, last_bn

BlockId = tuple[int, int]  # (stage, index within stage)


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
