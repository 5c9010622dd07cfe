"""build(spec) -> nn.Module: a pure function from an ArchSpec to an untrained network of its block family.

Every family lays its state dict out as `stem.*`, `stages.{s}.*`, `head.*`, `fc.*`; what lies under `stages`
is the family's (see each module). State-dict keys are an API: pruning and checkpoints rely on them.
"""

from __future__ import annotations

from ..spec import ArchSpec
from .common import Network, conv
from .dense import DenseNet, build_dense
from .osa import VoVNet, build_osa
from .residual import Block, ResNet, ZeroPadShortcut, build_residual, last_bn

__all__ = ["build", "Network", "ResNet", "DenseNet", "VoVNet", "Block", "ZeroPadShortcut", "conv", "last_bn"]

_BUILDERS = {"residual": build_residual, "dense": build_dense, "osa": build_osa}


def build(spec: ArchSpec) -> Network:
    """Make the network `spec` describes, on the CPU in fp32. Placement, dtype and compilation are the caller's."""
    return _BUILDERS[spec.family](spec)
