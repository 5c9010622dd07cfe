import pytest
import torch

from resnas.errors import UserError
from resnas.models import build
from resnas.presets import wrn
from resnas.train import TrainConfig, TrainingFailed, _lr_factor, evaluate, train


def small(gates=False):
    torch.manual_seed(0)
    return build(wrn(10, 1).replace(in_channels=1, gates=gates))


def test_trains_digits_and_keeps_best_epoch(digits):
    model = small()
    result = train(model, digits, TrainConfig(epochs=4))
    assert len(result.history) == 4 and not result.stopped_early
    rec = result.history[-1]
    assert rec.train_loss < result.history[0].train_loss and rec.images_per_s > 0 and rec.seconds > 0
    assert result.best_val_acc > 0.85
    assert result.best_val_acc == max(r.val_acc for r in result.history)
    assert evaluate(model, digits, "val")[0] == pytest.approx(result.best_val_acc)  # model holds the best weights


def test_on_epoch_can_stop_and_raise(digits):
    seen = []
    result = train(small(), digits, TrainConfig(epochs=5), on_epoch=lambda r: seen.append(r.epoch) or r.epoch == 2)
    assert seen == [1, 2] and len(result.history) == 2 and result.stopped_early

    class Stop(Exception):
        pass

    def boom(record):
        raise Stop

    with pytest.raises(Stop):
        train(small(), digits, TrainConfig(epochs=3), on_epoch=boom)


def test_cpu_runs_repeat_exactly(digits):
    a = train(small(), digits, TrainConfig(epochs=2)).history
    b = train(small(), digits, TrainConfig(epochs=2)).history
    assert [r.train_loss for r in a] == [r.train_loss for r in b]
    assert [r.val_acc for r in a] == [r.val_acc for r in b]


def test_divergence_is_a_clear_failure(digits):
    with pytest.raises(TrainingFailed, match="training loss became (nan|inf)"):
        train(small(), digits, TrainConfig(epochs=3, lr=1e30, warmup_epochs=0))


def test_block_sparsity_shrinks_gates(digits):
    with pytest.raises(UserError, match="gated architecture"):
        train(small(), digits, TrainConfig(epochs=1, block_sparsity=0.01))
    model = small(gates=True)
    train(model, digits, TrainConfig(epochs=3, block_sparsity=0.5))
    gates = torch.stack([p.detach().abs() for n, p in model.named_parameters() if n.endswith("gate")])
    assert gates.mean() < 0.9  # from 1.0 at init


def test_proximal_gates_reach_exactly_zero(digits):
    """The L1 penalty's proximal step sets gates to 0.0 exactly (a subgradient step would leave them oscillating)."""
    torch.manual_seed(0)
    model = small(gates=True)
    train(model, digits, TrainConfig(epochs=3, block_sparsity=4.0))
    gates = [p.item() for n, p in model.named_parameters() if n.endswith("gate")]
    assert 0.0 in gates and all(g >= 0 for g in gates)


def test_schedules():
    c = TrainConfig(epochs=10, warmup_epochs=1)
    assert _lr_factor(c, 0, 10) == pytest.approx(0.1)
    assert _lr_factor(c, 9, 10) == pytest.approx(1.0)
    assert _lr_factor(c, 99, 10) < 0.01
    s = TrainConfig(epochs=10, warmup_epochs=0, schedule="step")
    assert [_lr_factor(s, e * 10, 10) for e in (0, 3, 6, 8)] == pytest.approx([1, 0.2, 0.04, 0.008])


@pytest.mark.parametrize("kw, words", [({"epochs": 0}, "epochs must be"), ({"batch_size": 1}, "batch_size"),
                                       ({"schedule": "linear"}, "cosine or step"), ({"lr": -1}, "lr must be")])
def test_config_validation(kw, words):
    with pytest.raises(UserError, match=words):
        TrainConfig(**kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_channels_last(digits):
    data = digits.to("cuda")
    result = train(small(), data, TrainConfig(epochs=3))
    assert result.best_val_acc > 0.8
