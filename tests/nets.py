"""Helpers shared by test files (pytest puts this folder on sys.path)."""

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from resnas.data import DataConfig
from resnas.report.browser import find_chromium
from resnas.search import SearchConfig, run_search
from resnas.train import TrainConfig


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, affine parameters and gates, so that equal outputs mean equal networks."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.25)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            if getattr(m, "gate", None) is not None:
                m.gate.copy_(torch.rand((), generator=g) * 1.5 + 0.1)
    return model.eval()


def chromium_or_fail() -> str:
    """Debian's Chromium: the tests skip without it, except under CI, which installs it."""
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing under CI: .ci/run installs Debian's chromium package")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return path


def tiny_search(root: Path, space_text: str, *, budget: int, epochs: int, batch_size: int) -> Path:
    """A real random search of the tiny test space under `root` (MO-ASHA with eta 2, so trials stop at rungs);
    returns its SQLite file. The study is named "tiny" and lives in root/studies."""
    (root / "tiny.toml").write_text(space_text)
    config = SearchConfig(space=str(root / "tiny.toml"), out_dir=str(root / "studies"), budget=budget,
                          sampler="random", eta=2)
    run_search(config, TrainConfig(epochs=epochs, batch_size=batch_size), DataConfig(), device="cpu")
    return root / "studies" / "tiny" / "study.db"
