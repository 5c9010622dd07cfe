"""Block families (dense, osa) and heads (gap, flatten): fidelity to torchvision's and timm's models and to the
papers' parameter counts, forward shapes, training, checkpoints, search, evaluation at other sizes, and the errors
bad settings give."""

import itertools
import re

import pytest
import torch
import torchvision

from resnas import checkpoint
from resnas.errors import UserError
from resnas.measure import analytic_cost, count_params
from resnas.models import DenseNet, VoVNet, build
from resnas.presets import densenet, preset
from resnas.prune import PruneConfig, prune, remove_blocks
from resnas.resize import accuracy_at_size, resized
from resnas.search import SearchConfig, run_search
from resnas.spec import ArchSpec, SpecError, describe
from resnas.train import TrainConfig, evaluate, train

# ---- fidelity ----------------------------------------------------------------------------------------------

TORCHVISION_DENSENETS = {"densenet121": 7_978_856, "densenet161": 28_681_000, "densenet169": 14_149_480,
                         "densenet201": 20_013_928}


@pytest.mark.parametrize("name", TORCHVISION_DENSENETS)
def test_densenet_presets_match_torchvision_exactly(name):
    ours = count_params(build(preset(name)))
    theirs = count_params(getattr(torchvision.models, name)(weights=None))
    assert ours == theirs == TORCHVISION_DENSENETS[name]


@pytest.mark.parametrize("name", TORCHVISION_DENSENETS)
def test_densenet_flops_match_torchvision_metadata(name):
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1  # metadata only: nothing is downloaded
    assert analytic_cost(preset(name), 224).mflops / 1e3 == pytest.approx(weights.meta["_ops"], abs=5e-4)


def _torchvision_key(key: str) -> str:
    key = key.replace("classifier.", "fc.").replace("features.norm5.", "head.0.")
    key = key.replace("features.conv0.", "stem.0.").replace("features.norm0.", "stem.1.")
    key = re.sub(r"features\.denseblock(\d+)\.denselayer(\d+)\.",
                 lambda m: f"stages.{int(m[1]) - 1}.layers.{int(m[2]) - 1}.", key)
    return re.sub(r"features\.transition(\d+)\.", lambda m: f"stages.{int(m[1])}.transition.", key)


def test_densenet_loads_torchvision_weights_by_name_and_computes_the_same():
    # torchvision's DenseNet class at a small size (densenet121's layout, fewer and thinner layers)
    torch.manual_seed(0)
    theirs = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 3, 1, 2), num_init_features=16,
                                         num_classes=7).eval()
    ours = build(ArchSpec(blocks=(2, 3, 1, 2), widths=(8,) * 4, family="dense", stem="imagenet", stem_width=16,
                          num_classes=7)).eval()
    ours.load_state_dict({_torchvision_key(k): v for k, v in theirs.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, 67, 67)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


# DenseNet paper, table 2 (CIFAR): DenseNet L=40 k=12 1.0M, DenseNet-BC L=100 k=12 0.8M, L=250 k=24 15.3M,
# L=190 k=40 25.6M parameters
@pytest.mark.parametrize("name, millions", [("densenet-40-12", 1.0), ("densenet-bc-100-12", 0.8),
                                            ("densenet-bc-250-24", 15.3), ("densenet-bc-190-40", 25.6)])
def test_cifar_densenets_match_paper(name, millions):
    spec = preset(name)
    assert analytic_cost(spec, 32).params / 1e6 == pytest.approx(millions, abs=0.05)
    if millions < 2:
        assert count_params(build(spec)) == analytic_cost(spec, 32).params


TIMM_VOVNETS = {"vovnet39": ("vovnet39a", 22_600_296), "vovnet57": ("vovnet57a", 36_640_296),
                "ese-vovnet39": ("ese_vovnet39b", 24_568_936), "ese-vovnet57": ("ese_vovnet57b", 38_608_936)}


@pytest.mark.parametrize("name", TIMM_VOVNETS)
def test_vovnet_presets_match_recorded_counts(name):
    assert count_params(build(preset(name))) == TIMM_VOVNETS[name][1]


@pytest.mark.parametrize("name", TIMM_VOVNETS)
def test_vovnet_presets_match_timm_exactly(name):
    timm = pytest.importorskip("timm")
    theirs = timm.create_model(TIMM_VOVNETS[name][0], pretrained=False)
    assert count_params(build(preset(name))) == count_params(theirs) == TIMM_VOVNETS[name][1]


@pytest.mark.parametrize("v2", [False, True])
def test_vovnet_loads_timm_weights_by_name_and_computes_the_same(v2):
    pytest.importorskip("timm")
    from timm.models.vovnet import VovNet

    # timm's VovNet class at a small size (ese_vovnet39b's layout with V2 on, vovnet39a's with it off)
    torch.manual_seed(0)
    theirs = VovNet(dict(stem_chs=[8, 8, 16], stage_conv_chs=[8, 8, 12, 12], stage_out_chs=[16, 24, 32, 32],
                         layer_per_block=3, block_per_stage=[1, 2, 1, 3], residual=v2, depthwise=False,
                         attn="ese" if v2 else ""), num_classes=7).eval()
    ours = build(ArchSpec(blocks=(1, 2, 1, 3), widths=(16, 24, 32, 32), inner_widths=(8, 8, 12, 12), family="osa",
                          osa_convs=3, identity=v2, ese=v2, stem="vovnet", stem_width=16, num_classes=7)).eval()
    ours.load_state_dict({k.replace("head.fc.", "fc."): v for k, v in theirs.state_dict().items()}, strict=True)
    x = torch.randn(2, 3, 67, 67)  # odd sizes exercise the ceil-mode pooling
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_key_layouts():
    dense = build(ArchSpec(blocks=(2, 1), widths=(4, 4), family="dense", stem_width=8)).state_dict()
    assert {"stages.0.layers.1.conv2.weight", "stages.1.transition.conv.weight", "head.0.weight"} <= set(dense)
    assert "stages.0.transition.conv.weight" not in dense
    plain = build(ArchSpec(blocks=(1,), widths=(4,), family="dense", dense_bottleneck=False)).state_dict()
    assert "stages.0.layers.0.conv1.weight" in plain and plain["stages.0.layers.0.conv1.weight"].shape[-1] == 3
    osa = build(ArchSpec(blocks=(2,), widths=(8,), family="osa", osa_convs=2, identity=True, ese=True))
    keys = set(osa.state_dict())
    assert {"stages.0.blocks.1.conv_mid.1.conv.weight", "stages.0.blocks.0.conv_concat.bn.weight",
            "stages.0.blocks.1.attn.fc.bias"} <= keys
    assert "stages.0.blocks.0.attn.fc.weight" not in keys  # eSE on a stage's last module only (timm)
    assert [b.identity for b in osa.stages[0].blocks] == [False, True]


# ---- shapes, training, checkpoints ------------------------------------------------------------------------------

FAMILIES = {
    "residual": {},
    "dense": {"family": "dense"},
    "dense-plain": {"family": "dense", "dense_bottleneck": False, "compression": 1.0, "dropout": 0.2},
    "osa": {"family": "osa", "osa_convs": 2},
    "osa-v2": {"family": "osa", "osa_convs": 3, "identity": True, "ese": True, "inner_widths": (4, 6)},
}


def small(family: str, **changes) -> ArchSpec:
    fields = {"blocks": (2, 2), "widths": (4, 4) if "dense" in family else (8, 8), "stem_width": 8,
              "in_channels": 1, "num_classes": 5}
    return ArchSpec(**{**fields, **FAMILIES[family], **changes})


@pytest.mark.parametrize("family, head, stem", list(itertools.product(FAMILIES, ["gap", "flatten"],
                                                                       ["cifar", "imagenet", "vovnet"])))
def test_forward_shapes_for_every_family_head_and_stem(family, head, stem):
    size = 8 if stem == "cifar" else 32
    spec = small(family, stem=stem, head=head, input_size=size if head == "flatten" else None)
    model = build(spec).eval()
    assert model(torch.randn(2, 1, size, size)).shape == (2, 5)
    assert count_params(model) == analytic_cost(spec, size).params
    assert isinstance(model, {"dense": DenseNet, "osa": VoVNet}.get(spec.family, torch.nn.Module))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_checkpoints_and_reloads_strictly(family, digits, tmp_path):
    spec = small(family, num_classes=10)
    torch.manual_seed(0)
    model = build(spec)
    result = train(model, digits, TrainConfig(epochs=1, batch_size=256))
    assert result.history and result.history[0].train_loss == result.history[0].train_loss  # finite
    path = checkpoint.save(checkpoint.from_model(model, train_config=TrainConfig(epochs=1)), tmp_path / "m.pt")
    again = checkpoint.load(path)
    assert again.spec == spec
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(again.model()(x), model.eval()(x))


def test_flatten_head_trains_and_reloads(digits, tmp_path):
    spec = small("residual", head="flatten", input_size=8, num_classes=10)
    model = build(spec)
    train(model, digits, TrainConfig(epochs=1, batch_size=256))
    path = checkpoint.save(checkpoint.from_model(model), tmp_path / "f.pt")
    assert checkpoint.load(path).spec.input_size == 8
    assert model.fc.in_features == 8 * 4 * 4  # the last 4x4 map of 8 channels, flattened


# ---- heads and other input sizes ------------------------------------------------------------------------------

def test_flatten_head_refuses_another_input_size():
    spec = small("osa", head="flatten", input_size=8)
    model = build(spec).eval()
    with pytest.raises(SpecError, match=r"flatten head takes 8x8 inputs \(spec input_size\), got 12x12"):
        model(torch.randn(1, 1, 12, 12))
    with pytest.raises(SpecError, match=r"flatten head takes 8x8 inputs .* not 12x12"):
        analytic_cost(spec, 12)


def test_flatten_costs_more_parameters_than_gap():
    gap, flat = small("residual"), small("residual", head="flatten", input_size=16)
    assert analytic_cost(flat, 16).params - analytic_cost(gap, 16).params == 8 * (8 * 8 - 1) * 5


def test_accuracy_at_size(digits):
    torch.manual_seed(0)
    model = build(small("residual", num_classes=10))
    train(model, digits, TrainConfig(epochs=1, batch_size=256))
    model.train()
    same = accuracy_at_size(model, digits, "val", 8)
    assert same == evaluate(model, digits, "val")[0]
    assert model.training  # left as it was
    for size in (6, 12):
        assert 0.0 <= accuracy_at_size(model, digits, "val", size) <= 1.0
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert resized(x, 8).shape == (1, 1, 8, 8) and resized(x, 4) is x
    assert torch.allclose(resized(torch.ones(2, 3, 8, 8), 5), torch.ones(2, 3, 5, 5))
    flat = build(small("residual", head="flatten", input_size=8, num_classes=10))
    with pytest.raises(SpecError, match="flatten head"):
        accuracy_at_size(flat, digits, "val", 12)


def test_inputs_too_small_are_a_clear_error():
    with pytest.raises(SpecError, match="input size 1x1 is too small for this network: stage 1"):
        analytic_cost(small("dense"), 1)
    with pytest.raises(SpecError, match="too small"):
        analytic_cost(preset("vovnet39"), 8)
    with pytest.raises(SpecError, match="too small"):
        small("osa", head="flatten", input_size=1)


# ---- validation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, words", [
    ({"family": "dense", "widths": (12, 0)}, "widths: stage 1 has growth rate 0; widths must be integers >= 1"),
    ({"family": "dense", "compression": 0.0}, "compression must be in (0, 1]"),
    ({"family": "dense", "compression": 1.5}, "compression must be in (0, 1]"),
    ({"family": "dense", "compression": 0.01}, "compression 0.01 leaves stage 1 with no channels"),
    ({"family": "osa", "osa_convs": 0}, "osa_convs must be an integer >= 1"),
    ({"family": "osa", "inner_widths": (4,)}, "inner_widths must give one width per stage (2 stages)"),
    ({"family": "mlp"}, "family must be one of residual, dense, osa"),
    ({"head": "max"}, "head must be one of gap, flatten"),
    ({"head": "flatten"}, "input_size must be an integer >= 1 with head flatten"),
    ({"input_size": 8}, "input_size = 8 applies to head flatten only (head is gap)"),
    ({"family": "dense", "kernels": (3, 1)}, "kernels = (3, 1) does not apply to family dense (only to residual)"),
    ({"family": "osa", "dropout": 0.2}, "dropout = 0.2 does not apply to family osa (only to residual, dense)"),
    ({"compression": 0.7}, "compression = 0.7 does not apply to family residual (only to dense); leave it out"),
    ({"ese": True}, "ese = True does not apply to family residual (only to osa)"),
    ({"family": "osa", "stem": "vovnet", "stem_width": 1}, "stem_width must be >= 2 for the vovnet stem"),
])
def test_bad_family_settings_are_one_line_errors_naming_the_field(changes, words):
    base = {"blocks": (2, 2), "widths": (8, 8)}
    with pytest.raises(SpecError) as err:
        ArchSpec(**{**base, **changes})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_from_dict_rejects_fields_of_other_families_even_at_their_default():
    with pytest.raises(SpecError, match=r"f\.json: shortcut = 'B' does not apply to family dense"):
        ArchSpec.from_dict({"blocks": [2], "widths": [12], "family": "dense", "shortcut": "B"}, source="f.json")
    with pytest.raises(SpecError, match="f.json: input_size = 8 applies to head flatten only"):
        ArchSpec.from_dict({"blocks": [2], "widths": [12], "input_size": 8}, source="f.json")
    with pytest.raises(SpecError, match="f.json: compression must be a number in"):
        ArchSpec.from_dict({"blocks": [2], "widths": [12], "family": "dense", "compression": "half"},
                           source="f.json")


def test_to_dict_writes_only_what_the_family_uses_and_round_trips():
    for family in FAMILIES:
        spec = small(family, head="flatten", input_size=8)
        data = spec.to_dict()
        assert ArchSpec.from_dict(data) == spec and data["head"] == "flatten"
        assert ("kernels" in data) == (spec.family == "residual")
        assert ("compression" in data) == (spec.family == "dense")
        assert ("osa_convs" in data) == (spec.family == "osa")
    residual = small("residual").to_dict()
    assert not {"family", "head", "input_size"} & set(residual)  # as before families existed


OLD_CHECKPOINT_SPEC = {"blocks": [1, 1, 1], "widths": [16, 32, 64], "k": 2, "block": "basic", "kernels": [3, 3],
                       "shortcut": "B", "preact": True, "dropout": 0.0, "stem": "cifar", "stem_width": 16,
                       "in_channels": 1, "num_classes": 10, "gates": False, "zero_init_residual": False}


def test_old_spec_dicts_load_as_residual_gap_networks_and_write_back_the_same():
    spec = ArchSpec.from_dict(OLD_CHECKPOINT_SPEC)
    assert spec.family == "residual" and spec.head == "gap" and spec.input_size is None
    assert spec.to_dict() == OLD_CHECKPOINT_SPEC


@pytest.mark.parametrize("name, text", [
    ("densenet-bc-100-12", "DenseNet-BC-100 k=12"), ("densenet-40-12", "DenseNet-40 k=12"),
    ("densenet121", "DenseNet-BC-121 k=32 layers 6-12-24-16"), ("vovnet39", "VoVNet-39"),
    ("vovnet57", "VoVNet-57"), ("ese-vovnet39", "VoVNetV2-39 eSE"),
])
def test_describe_names_families_as_papers_do(name, text):
    assert describe(preset(name)) == text


def test_describe_osa_and_flatten():
    assert describe(small("osa-v2", head="flatten", input_size=8)) == \
        "OSA-18 modules 2-2 x3 convs (identity, eSE) flatten head (8x8)"
    assert describe(densenet(100, 12).replace(compression=0.7)).endswith("theta=0.7")


def test_preset_errors():
    with pytest.raises(SpecError, match="DenseNet-BC depth must be 6n\\+4"):
        preset("densenet-bc-101-12")
    with pytest.raises(SpecError, match="DenseNet depth must be 3n\\+4"):
        preset("densenet-41-12")


# ---- pruning and search ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["dense", "osa-v2"])
def test_pruning_refuses_other_families_in_one_line(family, digits):
    model = build(small(family, num_classes=10))
    with pytest.raises(UserError, match=f"cannot prune a {small(family).family} network: .* only the residual"):
        prune(model, digits, PruneConfig(target_ratio=0.2), measure=lambda m: {})
    with pytest.raises(UserError, match="cannot prune"):
        remove_blocks(model, set())


def test_search_over_families_runs_end_to_end(tmp_path):
    import optuna

    from resnas.data import DataConfig

    # the cap keeps the trained networks tiny; architectures over it are rejected without training
    config = SearchConfig(space="families", out_dir=str(tmp_path / "studies"), budget=3, sampler="random",
                          early_stopping=False, max_params=120_000)
    result = run_search(config, TrainConfig(epochs=1, batch_size=256), DataConfig(), device="cpu")
    assert result.n_failed == 0 and result.n_complete == 3
    trials = optuna.load_study(study_name=result.study, storage=result.storage).get_trials()
    assert {t.params["cell"] for t in trials} == {"residual", "dense", "osa"}
    trained = [t for t in trials if "checkpoint" in t.user_attrs]
    assert len(trained) == 3
    for t in trained:  # every trained network reloads from its checkpoint with strict loading
        assert describe(checkpoint.load(t.user_attrs["checkpoint"]).model().spec) == t.user_attrs["arch"]
