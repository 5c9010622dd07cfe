"""The "nothing fits" message names the space's cheapest architecture at a cost of a few samples, whatever the
space's size: exact on small grids, one choice at a time on large ones, and the same answer on every shipped space."""

import itertools
import re

import pytest

from resnas.cli import main
from resnas.data import DataConfig, load_data
from resnas.measure import analytic_cost
from resnas.search import SearchConfig
from resnas.search import cheapest as C
from resnas.spaces import load_space, shipped
from resnas.spec import ArchSpec

KERNELS = [[3, 3], [3, 1, 3], [1, 3, 1], [1, 3], [3, 1], [3, 1, 1], [3], [3, 3, 3]]
# The space: 4 stages, 8 block counts and 8 widths each, 8 block types: 8^9 = 1.3e8 architectures.
BIG = f"""
description = "1.3e8 architectures"
[fixed]
shortcut = "B"
[choices]
kernels = {KERNELS}
blocks_per_stage = {[list(range(1, 9))] * 4}
widths_per_stage = {[[8 * i for i in range(1, 9)]] * 4}
"""


@pytest.fixture
def counted(monkeypatch):
    """How many specs the message costs."""
    calls = []

    def cost(spec, size):
        calls.append(spec)
        return analytic_cost(spec, size)

    monkeypatch.setattr(C, "analytic_cost", cost)
    return calls


def test_nothing_fits_in_a_huge_space_ends_with_exit_2_after_a_few_samples(tmp_path, capsys, counted):
    (tmp_path / "big.toml").write_text(BIG)
    space = load_space(str(tmp_path / "big.toml"))
    assert space.size() == 8 ** 9
    code = main(["search", "--space", str(tmp_path / "big.toml"), "--max-mflops", "0.00001", "--budget", "3",
                 "--workers", "1", "--out-dir", str(tmp_path / "studies"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert re.search(r"every architecture sampled \(\d+\) was rejected by the constraints; the cheapest found \(one "
                     r"choice at a time, of 1.34e\+08 architectures\) in space big is ResNet-\d+ B\(", err)
    assert err.endswith("limits: --max-mflops 1e-05\n")
    candidates = sum(len(v) for v in space.grid().values())  # 72
    assert 0 < len(counted) <= 2 * C.MAX_PASSES * candidates
    # block counts and widths only add cost, so the true minimum is one narrowest block a stage with the cheapest
    # kernels, which the message names
    true = min(analytic_cost(ArchSpec(blocks=(1,) * 4, widths=(8,) * 4, kernels=tuple(k), in_channels=1), 8).mflops
               for k in KERNELS)
    assert f"at {true:.4g} MFLOPs" in err


@pytest.mark.parametrize("name", shipped())
def test_one_choice_at_a_time_finds_the_exact_cheapest_of_every_shipped_space(name):
    space, data = load_space(name), load_data(DataConfig(), "cpu")
    grid, price = space.grid(), C._pricer(space, data)
    every = [c for params in itertools.product(*grid.values()) if (c := price(dict(zip(grid, params, strict=True))))]
    for key in (lambda c: c.mflops, lambda c: c.params):
        assert key(C._descend(grid, price, key)[0]) == min(key(c[0]) for c in every)


def test_small_spaces_are_costed_in_full(counted):
    space, data = load_space("resnet"), load_data(DataConfig(), "cpu")
    assert space.size() <= C.EXACT_LIMIT
    message = C.cheapest(space, data, SearchConfig(max_params=10))
    assert message.startswith("the cheapest in space resnet is ") and message.endswith("limits: --max-params 10")
    assert len(counted) == 2 * space.size()
