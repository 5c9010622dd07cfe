import itertools

import pytest
import torch
import torchvision

from resnas.measure import count_params
from resnas.models import Block, Network, ResNet, ZeroPadShortcut, build, last_bn
from resnas.presets import densenet, preset, resnet, wrn
from resnas.spec import ArchSpec

TORCHVISION = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
}


@pytest.mark.parametrize("name", TORCHVISION)
def test_imagenet_presets_match_torchvision_exactly(name):
    ours = count_params(build(preset(name)))
    theirs = count_params(getattr(torchvision.models, name)(weights=None))
    assert ours == theirs == TORCHVISION[name]


@pytest.mark.parametrize("name, millions, tol", [
    ("wrn-28-10", 36.5, 0.05), ("wrn-16-4", 2.7, 0.05), ("wrn-40-4", 8.9, 0.05),
    ("resnet-20", 0.27, 0.005), ("resnet-56", 0.85, 0.005), ("resnet-110", 1.7, 0.03),
])
def test_cifar_presets_match_papers(name, millions, tol):
    assert count_params(build(preset(name))) / 1e6 == pytest.approx(millions, abs=tol)


BLOCK_KERNELS = [(3, 3), (3, 1, 3), (1, 3, 1), (1, 3), (3, 1), (3, 1, 1), (3,), (3, 3, 3, 3)]


@pytest.mark.parametrize("kernels, shortcut, preact", list(itertools.product(BLOCK_KERNELS, "ABC", [True, False])))
def test_forward_shapes_for_every_basic_block(kernels, shortcut, preact):
    spec = ArchSpec(blocks=(1, 2, 1), widths=(4, 8, 16), k=2, kernels=kernels, shortcut=shortcut, preact=preact,
                    dropout=0.2, stem_width=4, in_channels=1, num_classes=5)
    model = build(spec).eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 5)
    assert len(model.stages[1][0].branch) > 0
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.stages[0][0].branch)
    assert n_convs == len(kernels)


@pytest.mark.parametrize("shortcut, preact, stem", list(itertools.product(["A", "B", "C", "none"], [True, False],
                                                                           ["cifar", "imagenet"])))
def test_bottleneck_and_stems(shortcut, preact, stem):
    spec = ArchSpec(blocks=(1, 1), widths=(4, 8), k=2, block="bottleneck", kernels=(1, 3, 1), shortcut=shortcut,
                    preact=preact, stem=stem, stem_width=8, num_classes=3)
    x = torch.randn(2, 3, 64 if stem == "imagenet" else 16, 64 if stem == "imagenet" else 16)
    assert build(spec).eval()(x).shape == (2, 3)


@pytest.mark.parametrize("stages", [(1, 1), (2, 1, 1, 3)])
def test_two_and_four_stage_networks(stages):
    spec = ArchSpec(blocks=stages, widths=tuple(8 * 2**i for i in range(len(stages))), stem_width=8)
    assert build(spec)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_blocks_expose_branch_and_shortcut():
    model = build(resnet(20))
    blocks = model.blocks()
    assert len(blocks) == 9
    s, i, first = blocks[3]
    assert (s, i) == (1, 0) and isinstance(first, Block)
    assert isinstance(first.shortcut, ZeroPadShortcut)
    assert isinstance(blocks[4][2].shortcut, torch.nn.Identity)
    keys = model.state_dict().keys()
    assert "stages.1.0.branch.0.weight" in keys and "fc.weight" in keys
    plain = build(resnet(20, shortcut="none"))
    assert all(b.shortcut is None for _, _, b in plain.blocks())
    proj = build(wrn(16, 2))
    assert isinstance(proj.stages[0][0].shortcut, torch.nn.Conv2d)
    assert isinstance(proj.stages[0][1].shortcut, torch.nn.Identity)


def test_zero_pad_shortcut_subsamples_and_pads():
    x = torch.arange(2 * 4 * 4, dtype=torch.float).reshape(1, 2, 4, 4)
    y = ZeroPadShortcut(2, 3)(x)
    assert y.shape == (1, 5, 2, 2)
    assert torch.equal(y[:, :2], x[:, :, ::2, ::2]) and not y[:, 2:].any()


@pytest.mark.parametrize("preact", [True, False])
def test_zero_init_residual_makes_blocks_identity(preact):
    spec = ArchSpec(blocks=(2,), widths=(8,), stem_width=8, preact=preact, zero_init_residual=True)
    model = build(spec).eval()
    blk = model.stages[0][1]
    x = torch.randn(2, 8, 6, 6).relu()  # post-act blocks see ReLU outputs
    assert torch.allclose(blk(x), x)
    assert not last_bn(blk.branch).weight.any()


def test_build_is_pure_and_deterministic_under_seed():
    torch.manual_seed(0)
    a = build(wrn(10, 1)).state_dict()
    torch.manual_seed(0)
    b = build(wrn(10, 1)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.device.type == "cpu" and (not v.is_floating_point() or v.dtype == torch.float32) for v in a.values())


def test_gates_are_parameters():
    model = build(wrn(10, 1).replace(gates=True))
    assert count_params(model) == count_params(build(wrn(10, 1))) + 3
    assert "stages.2.0.gate" in model.state_dict()


def test_every_family_shares_the_network_layout():
    for spec in (wrn(10, 1), densenet(40, 12), preset("vovnet39")):
        model = build(spec)
        assert isinstance(model, Network) and [n for n, _ in model.named_children()] == ["stem", "stages", "head", "fc"]
    assert type(build(wrn(10, 1))) is ResNet
