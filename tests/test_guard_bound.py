"""The size guard's upper bound: never below the simulated footprint, and it spares the simulation only where the
simulation would have let the network through."""

import random

import optuna
import pytest

from resnas import guard
from resnas.errors import UserError
from resnas.presets import preset
from resnas.spaces import load_space, shipped

PRESETS = [("resnet-20", 32), ("wrn-16-4", 32), ("resnet50", 64), ("densenet-40-12", 32), ("densenet121", 64),
           ("vovnet39", 64), ("ese-vovnet39", 64), ("resnet-56", 8)]


def _samples(n_per_space: int = 4):
    rng = random.Random(0)
    for name in shipped():
        space = load_space(name)
        grid = space.grid()
        for _ in range(n_per_space):
            params = {k: rng.choice(v) for k, v in grid.items()}
            yield space.sample(optuna.trial.FixedTrial(params), in_channels=1, num_classes=10, image_size=8)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name, size", PRESETS)
def test_the_bound_is_never_below_the_simulation(name, size, training):
    spec = preset(name)
    exact = guard.footprint(spec, batch_size=2, input_size=size, training=training)
    upper = guard.bound(spec, batch_size=2, input_size=size, training=training)
    assert upper.activation_bytes >= exact.activation_bytes
    assert (upper.params, upper.weight_bytes, upper.optimizer_bytes) == (exact.params, exact.weight_bytes,
                                                                        exact.optimizer_bytes)
    assert exact.exact and not upper.exact


def test_the_bound_holds_on_every_shipped_space_with_the_search_settings():
    for spec in _samples():
        exact = guard.footprint(spec, batch_size=128, input_size=8, training=True, eval_batch_size=1024)
        upper = guard.bound(spec, batch_size=128, input_size=8, training=True, eval_batch_size=1024)
        assert upper.activation_bytes >= exact.activation_bytes, spec.to_json()
        # loose, but not so loose that it never spares the simulation: within 60x of the simulated peak
        assert upper.activation_bytes < 60 * exact.activation_bytes, spec.to_json()


def test_a_network_far_under_the_limit_is_not_simulated(monkeypatch):
    def simulate(*args, **kwargs):
        raise AssertionError("simulated although the bound fits")

    monkeypatch.setattr(guard, "_simulate", simulate)
    monkeypatch.setenv(guard.ENV_LIMIT, "16G")
    fp = guard.check(preset("wrn-16-4").replace(in_channels=1), batch_size=128, input_size=8, device="cpu",
                     training=True, eval_batch_size=1024)
    assert not fp.exact and fp.peak_bytes("cpu") <= 16 * 2**30


def test_near_the_limit_the_simulation_decides(monkeypatch):
    """Between the simulated peak and the bound, the network fits: the bound alone would have refused it."""
    spec = preset("wrn-16-4")
    settings = dict(batch_size=64, input_size=32, training=True)
    exact, upper = guard.footprint(spec, **settings), guard.bound(spec, **settings)
    between = (exact.peak_bytes("cpu") + upper.peak_bytes("cpu")) // 2
    monkeypatch.setenv(guard.ENV_LIMIT, str(between))
    fp = guard.check(spec, device="cpu", **settings)
    assert fp.exact and fp.activation_bytes == exact.activation_bytes
    monkeypatch.setenv(guard.ENV_LIMIT, str(exact.peak_bytes("cpu") - 1))
    with pytest.raises(UserError, match="over the"):
        guard.check(spec, device="cpu", **settings)
