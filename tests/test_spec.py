import json

import pytest

from resnas.presets import preset, resnet, wrn
from resnas.spec import ArchSpec, SpecError, describe


def test_round_trips_through_json():
    spec = ArchSpec(blocks=(1, 3, 2), widths=(8, 16, 32), k=3, kernels=(3, 1, 3), shortcut="C", preact=False,
                    dropout=0.25, in_channels=1, num_classes=7, gates=True)
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    assert isinstance(again.blocks, tuple) and isinstance(again.kernels, tuple)
    assert json.loads(spec.to_json())["blocks"] == [1, 3, 2]


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "wide_resnet50_2", "wrn-28-10", "resnet-56"])
def test_presets_round_trip(name):
    spec = preset(name)
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    "change, words",
    [
        ({"blocks": (2, 0, 2)}, "stage 1 has 0 blocks"),
        ({"k": 0}, "k (widening factor) must be an integer >= 1"),
        ({"shortcut": "D"}, "shortcut must be one of A, B, C, none"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"dropout": -0.1}, "dropout must be in [0, 1)"),
        ({"widths": (16, 32)}, "one width per stage"),
        ({"block": "dense"}, "block must be one of basic, bottleneck"),
        ({"kernels": (3, 2)}, "odd integers"),
        ({"block": "bottleneck"}, "must be [1, 3, 1] for bottleneck"),
        ({"stem": "vit"}, "stem must be one of cifar, imagenet"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"widths": (64, 32, 16), "shortcut": "A"}, "cannot shrink"),
        ({"shortcut": "none", "gates": True}, "plain network"),
    ],
)
def test_rejects_impossible_specs_naming_field(change, words):
    with pytest.raises(SpecError) as err:
        wrn(16, 2).replace(**change)
    assert words in str(err.value)


@pytest.mark.parametrize("name", ["densenet121", "densenet-bc-100-12", "densenet-40-12", "vovnet39", "vovnet57",
                                  "ese-vovnet39", "ese-vovnet57"])
def test_family_presets_round_trip_and_parse(name):
    spec = preset(name)
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.family in ("dense", "osa")


def test_depth_counts_each_familys_layers_as_its_paper():
    assert preset("densenet-bc-100-12").depth == 100 and preset("densenet-40-12").depth == 40
    assert preset("densenet121").depth == 121 and preset("densenet201").depth == 201
    assert preset("vovnet39").depth - 1 == 39 and preset("vovnet57").depth - 1 == 57  # VoVNet omits the classifier


def test_from_dict_names_source_and_key():
    with pytest.raises(SpecError, match=r"my\.json: unknown field 'depth'; allowed: blocks"):
        ArchSpec.from_dict({"blocks": [1], "widths": [4], "depth": 3}, source="my.json")
    with pytest.raises(SpecError, match=r"my\.json: blocks must be a list of integers"):
        ArchSpec.from_dict({"blocks": "3", "widths": [4]}, source="my.json")
    with pytest.raises(SpecError, match="missing required field 'widths'"):
        ArchSpec.from_dict({"blocks": [1]})
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchSpec.from_json("{blocks: 1")
    with pytest.raises(SpecError, match="preact must be true or false"):
        ArchSpec.from_dict({"blocks": [1], "widths": [4], "preact": 1})


def test_preset_parsing_and_errors():
    assert preset("wrn-28-10") == wrn(28, 10)
    assert preset("resnet-110") == resnet(110)
    assert preset("wrn-16-4").blocks == (2, 2, 2)
    assert preset("resnet-20").blocks == (3, 3, 3)
    with pytest.raises(SpecError, match="unknown preset 'resnet19'"):
        preset("resnet19")
    with pytest.raises(SpecError, match="6n\\+4"):
        preset("wrn-17-2")
    with pytest.raises(SpecError, match="6n\\+2"):
        preset("resnet-21")


def test_describe_uses_papers_names():
    assert describe(wrn(16, 4)) == "WRN-16-4 B(3,3)"
    assert describe(wrn(28, 10, dropout=0.3)) == "WRN-28-10 B(3,3) dropout 0.3"
    assert describe(resnet(20)).startswith("ResNet-20 B(3,3) blocks 3-3-3 (A shortcut, post-act)")
    assert describe(resnet(20, shortcut="none")).startswith("Plain-20")
