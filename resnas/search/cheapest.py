"""The cheapest architecture of a space, named when a search's limits rejected every architecture it sampled.

Spaces multiply: 4 stages of 8 block counts and 8 widths each, times 8 block types, is 1.3e8 architectures, so the
grid is costed in full only up to EXACT_LIMIT of them. A larger one is searched one choice at a time: from every
choice's first candidate, each candidate of one choice is costed with the others held and the cheapest kept, pass
after pass until a pass changes nothing (at most MAX_PASSES). That costs the sum of the choices' candidates per
pass, not their product. Parameters and MFLOPs grow with every block count and width whatever the other choices
are, so along those the walk reaches the true minimum; where choices interact (a block type with the widths) it is
the cheapest found, and the message says so. Everything is costed from the specs alone: nothing is built.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import optuna

from ..data import Data
from ..measure import Cost, analytic_cost
from ..spaces import Space
from ..spec import ArchSpec, SpecError, describe
from .config import SearchConfig

EXACT_LIMIT = 256
MAX_PASSES = 4

Costed = tuple[Cost, ArchSpec]


def cheapest(space: Space, data: Data, config: SearchConfig) -> str:
    """The space's cheapest architecture and its costs beside the limits, in words for the one-line error."""
    grid = space.grid()
    price = _pricer(space, data)
    exact = space.size() <= EXACT_LIMIT
    search = _exact if exact else _descend
    by_mflops, by_params = (search(grid, price, key) for key in (lambda c: c.mflops, lambda c: c.params))
    found = "the cheapest" if exact else f"the cheapest found (one choice at a time, of {space.size():.3g} " \
                                         "architectures)"
    (mflops_min, best_m), (params_min, best_p) = by_mflops, by_params
    limits = ", ".join(f"{n} {v:g}" for n, v in (("--max-mflops", config.max_mflops),
                                                  ("--max-params", config.max_params),
                                                  ("--max-latency-ms", config.max_latency_ms)) if v)
    return (f"{found} in space {space.name} is {describe(best_m)} at {mflops_min.mflops:.4g} MFLOPs"
            + (f" ({describe(best_p)} has the fewest parameters, {params_min.params:,})" if best_p != best_m else
               f" and {params_min.params:,} parameters") + f"; limits: {limits}")


def _pricer(space: Space, data: Data) -> Callable[[dict[str, Any]], Costed | None]:
    """The cost and spec of one assignment of the space's choices; None where it makes no valid network."""
    def price(params: dict[str, Any]) -> Costed | None:
        try:
            spec = space.sample(optuna.trial.FixedTrial(params), in_channels=data.in_channels,
                                num_classes=data.num_classes)
            return analytic_cost(spec, data.image_size), spec
        except SpecError:  # e.g. a stage whose feature maps vanish at this image size
            return None
    return price


def _exact(grid: dict[str, list[Any]], price: Callable[[dict[str, Any]], Costed | None],
           key: Callable[[Cost], float]) -> Costed:
    every = (price(dict(zip(grid, params, strict=True))) for params in itertools.product(*grid.values()))
    return _valid(min((c for c in every if c), key=lambda c: key(c[0]), default=None))


def _descend(grid: dict[str, list[Any]], price: Callable[[dict[str, Any]], Costed | None],
             key: Callable[[Cost], float]) -> Costed:
    """Coordinate descent over the choices from their first candidates (see the module's note)."""
    point = {name: values[0] for name, values in grid.items()}
    best = price(point)
    for _ in range(MAX_PASSES):
        moved = False
        for name, values in grid.items():
            for value in values:
                if value == point[name]:
                    continue
                tried = price({**point, name: value})
                if tried and (best is None or key(tried[0]) < key(best[0])):
                    point, best, moved = {**point, name: value}, tried, True
        if not moved:
            break
    return _valid(best)


def _valid(best: Costed | None) -> Costed:
    if best is None:
        raise SpecError("no architecture of the space makes a valid network at the data's image size")
    return best
