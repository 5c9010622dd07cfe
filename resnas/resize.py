"""Accuracy on inputs of another size than a network was trained on: what a global-average-pooling head allows and
a flatten head does not (Lin et al. 2014, Network in Network: GAP makes the classifier independent of the map size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data import Data
from .errors import UserError


@torch.no_grad()
def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square images `x` (N, C, H, W) resampled to `size` x `size`, bilinearly, antialiased when shrinking.

    Normalised images resample as the raw ones would: interpolation is linear, so it commutes with the per-channel
    affine normalisation."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < max(x.shape[-2:])
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


@torch.no_grad()
def accuracy_at_size(model: nn.Module, data: Data, split: str, size: int, *, batch_size: int = 1024) -> float:
    """Top-1 accuracy of `model` (in eval mode, left as it was) on `split` with every image resized to `size`."""
    if size < 1:
        raise UserError(f"size must be an integer >= 1, got {size}")
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    try:
        for x, y in data.eval_batches(split, batch_size):
            correct += (model(resized(x, size)).argmax(1) == y).sum()
    finally:
        model.train(was_training)
    return correct.item() / data.split_size(split)
