import hashlib
import json

import pytest
import torch

from resnas import checkpoint
from resnas.cli import main
from resnas.data import DataConfig
from resnas.errors import UserError
from resnas.importance import BNScale, BranchNorm, Gate
from resnas.measure import analytic_cost
from resnas.models import build
from resnas.prune import PruneConfig, prune_checkpoint
from resnas.spec import ArchSpec
from resnas.surgery import recalibrate_bn, removable, remove_blocks
from resnas.train import TrainConfig, train

SPEC = ArchSpec(blocks=(3, 3), widths=(8, 16), stem_width=8, in_channels=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    torch.manual_seed(0)
    model = build(SPEC)
    result = train(model, digits, TrainConfig(epochs=3))
    path = tmp_path_factory.mktemp("ck") / "net.pt"
    checkpoint.save(checkpoint.from_model(model, train_config=TrainConfig(epochs=3), data_config=DataConfig(),
                                          metrics={"val_acc": result.best_val_acc}), path)
    return path


def zero_branch(model, s, i):
    """Make block (s, i)'s learned branch output exactly zero."""
    last_conv = [m for m in model.stages[s][i].branch if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last_conv.weight)
    for m in list(model.stages[s][i].branch)[::-1]:  # post-act: the BN after the last conv must output 0 too
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.zeros_(m.bias)
            break


@pytest.mark.parametrize("criterion", [BranchNorm(), BNScale()])
def test_importance_ranks_zeroed_branch_least(trained, digits, criterion):
    model = checkpoint.load(trained).model()
    zero_branch(model, 1, 2)
    if isinstance(criterion, BNScale):
        from resnas.models import last_bn
        torch.nn.init.zeros_(last_bn(model.stages[1][2].branch).weight)
    scores = criterion.scores(model, digits.calibration_batches(64, 2))
    assert min(scores, key=scores.get) == (1, 2)
    assert scores[(1, 2)] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("preact", [True, False])
def test_removal_equals_original_with_branches_zeroed(preact):
    torch.manual_seed(0)
    model = build(SPEC.replace(preact=preact)).eval()
    for m in model.modules():  # non-trivial BN statistics, so the check is not vacuous
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    drop = {(0, 1), (1, 2)}
    pruned = remove_blocks(model, drop).eval()
    assert pruned.spec.blocks == (2, 2)
    for s, i in drop:
        model.stages[s][i].branch.register_forward_hook(lambda mod, inp, out: torch.zeros_like(out))
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(pruned(x), model(x), atol=1e-5)


def test_shape_changing_blocks_are_kept():
    model = build(SPEC)
    # (0, 0) keeps shape (stem and stage 0 both have 8 channels); (1, 0) strides and widens
    assert removable(model) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2)]
    assert (0, 0) not in removable(build(SPEC.replace(k=2)))  # 8 -> 16 channels: shape changes
    with pytest.raises(UserError, match="cannot be removed"):
        remove_blocks(model, {(1, 0)})
    assert removable(build(SPEC.replace(shortcut="C"))) == []
    assert removable(build(SPEC.replace(shortcut="none"))) == []


def test_recalibration_restores_statistics(trained, digits):
    model = checkpoint.load(trained).model()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    reference = bn.running_mean.clone()
    bn.reset_running_stats()
    recalibrate_bn(model, digits.calibration_batches(256, 4))
    assert torch.allclose(bn.running_mean, reference, atol=0.3) and bn.momentum == 0.1


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("mode", [{"threshold": 0.5}, {"target_mflops": 0.2}, {"target_ratio": 0.25},
                                  {"max_acc_drop": 0.05}])
def test_each_mode_meets_its_target_and_checkpoint_rebuilds(trained, tmp_path, mode):
    before = md5(trained)
    out = tmp_path / "pruned.pt"
    record = prune_checkpoint(trained, PruneConfig(**mode, random_draws=2), out=out, device="cpu")
    assert md5(trained) == before  # input untouched
    ckpt = checkpoint.load(out)
    model = ckpt.model()
    assert list(ckpt.spec.blocks) == record["after"]["blocks"]
    assert sum(ckpt.spec.blocks) == sum(SPEC.blocks) - len(record["removed"])
    b, a = record["before"], record["after"]
    if "threshold" in mode:
        assert all(r["importance"] < 0.5 for r in record["removed"])
        fixed = [(f["stage"], f["index"]) for f in record["fixed"]]
        assert all(k["importance"] >= 0.5 for k in record["kept"] if (k["stage"], k["index"]) not in fixed)
    if "target_mflops" in mode:
        assert a["mflops"] <= 0.2 < b["mflops"]
    if "target_ratio" in mode:
        assert a["mflops"] <= 0.75 * b["mflops"]
    if "max_acc_drop" in mode:
        assert b["val_acc"] - record["after_recalibration"]["val_acc"] <= 0.05 + 1e-9
    assert a["mflops"] == pytest.approx(analytic_cost(model.spec, 8).mflops)
    assert json.loads(out.with_suffix(".json").read_text())["checkpoint"] == str(out)


def test_finetune_and_random_baseline(trained, tmp_path):
    record = prune_checkpoint(trained, PruneConfig(target_ratio=0.25, finetune_epochs=1, random_draws=3),
                              out=tmp_path / "p.pt", device="cpu")
    assert record["after_finetune"] is not None and record["after"] == record["after_finetune"]
    assert record["random_baseline"]["draws"] == 3 and len(record["random_baseline"]["val_acc"]) == 3


@pytest.mark.parametrize("setup, config, words", [
    ("missing", {"threshold": 0.1}, "no such file"),
    ("foreign", {"threshold": 0.1}, "not a resnas checkpoint"),
    ("trained", {"target_mflops": 0.01}, "cannot reach 0.010 MFLOPs"),
    ("trained", {"criterion": "gate", "threshold": 0.1}, "criterion gate needs a model trained with gates"),
])
def test_bad_input_leaves_input_untouched(trained, tmp_path, setup, config, words):
    path = {"missing": tmp_path / "nope.pt", "trained": trained, "foreign": tmp_path / "foreign.pt"}[setup]
    if setup == "foreign":
        torch.save(build(SPEC).state_dict(), path)
    before = md5(path) if path.exists() else None
    with pytest.raises(UserError, match=words):
        prune_checkpoint(path, PruneConfig(**config), out=tmp_path / "out.pt", device="cpu")
    assert (md5(path) if path.exists() else None) == before
    assert not (tmp_path / "out.pt").exists()


def test_config_needs_exactly_one_mode():
    with pytest.raises(UserError, match="choose exactly one"):
        PruneConfig()
    with pytest.raises(UserError, match="choose exactly one"):
        PruneConfig(threshold=0.1, target_ratio=0.2)
    with pytest.raises(UserError, match="unknown criterion"):
        PruneConfig(threshold=0.1, criterion="taylor")


def test_gate_criterion_after_sparsity_training(digits):
    torch.manual_seed(0)
    model = build(SPEC.replace(gates=True))
    train(model, digits, TrainConfig(epochs=2, block_sparsity=0.05))
    scores = Gate().scores(model, [])
    assert set(scores) == {(s, i) for s, i, _ in model.blocks()}
    assert all(v == pytest.approx(abs(model.stages[s][i].gate.item())) for (s, i), v in scores.items())


def test_cli_prune_json(trained, tmp_path, capsys):
    code = main(["prune", str(trained), "--target-ratio", "0.2", "--random-draws", "1", "--out",
                 str(tmp_path / "c.pt"), "--json", "--device", "cpu"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"removed", "kept", "before", "after", "checkpoint"} <= set(out)
    assert {"val_acc", "test_acc", "params", "mflops", "latency_ms"} <= set(out["before"])
    assert all({"stage", "index", "importance"} <= set(r) for r in out["removed"])
