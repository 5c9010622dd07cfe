import json
import os

import numpy as np
import pytest
import torch
import torchvision
from nets import randomise
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from resnas import checkpoint
from resnas.data import DataConfig
from resnas.errors import UserError
from resnas.importer import checkpoint_from_state_dict, import_file, read_state_dict
from resnas.measure import flop_counter_mflops
from resnas.models import build
from resnas.presets import preset, wrn
from resnas.prune import PruneConfig, prune_checkpoint


def same_outputs(ours: nn.Module, theirs: nn.Module, channels: int = 3, size: int = 32) -> None:
    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)


TORCHVISION = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "wide_resnet50_2": lambda: torchvision.models.wide_resnet50_2(weights=None),
    "custom-1-2-3-1": lambda: ResNet(BasicBlock, [1, 2, 3, 1], num_classes=7),
}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_import_matches_torchvision_exactly(name):
    torch.manual_seed(0)
    theirs = randomise(TORCHVISION[name]())
    ckpt = checkpoint_from_state_dict(theirs.state_dict(), source=name)
    if name in ("resnet18", "resnet50", "wide_resnet50_2"):
        assert ckpt.spec == preset(name)
    else:
        assert ckpt.spec.blocks == (1, 2, 3, 1) and ckpt.spec.num_classes == 7 and ckpt.spec.block == "basic"
    same_outputs(ckpt.model(), theirs)


def test_infers_layers_of_a_pruned_torchvision_model():
    torch.manual_seed(0)
    theirs = randomise(ResNet(Bottleneck, [3, 3, 5, 2], num_classes=5))
    ckpt = checkpoint_from_state_dict(theirs.state_dict(), arch=None)
    assert ckpt.spec == preset("resnet50").replace(blocks=(3, 3, 5, 2), num_classes=5)
    same_outputs(ckpt.model(), theirs)


@pytest.fixture
def r18_file(tmp_path):
    torch.manual_seed(0)
    model = randomise(torchvision.models.resnet18(weights=None, num_classes=3))
    path = tmp_path / "r18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_import_file_writes_a_checkpoint_resnas_rebuilds(r18_file, tmp_path):
    model, path = r18_file
    record = import_file(path, out=tmp_path / "r18.pt")
    assert record["arch"].startswith("ResNet-18") and record["layers"] == [2, 2, 2, 2]
    assert record["dataset"] is None and record["input_size"] == 224 and record["source"] == str(path)
    assert record["params"] == sum(p.numel() for p in model.parameters())
    assert record["mflops"] == pytest.approx(flop_counter_mflops(model, 224, 3))
    json.dumps(record)
    ckpt = checkpoint.load(tmp_path / "r18.pt")
    assert ckpt.data_config is None and ckpt.extra["imported_from"] == str(path)
    same_outputs(ckpt.model(), model)


def test_wrapped_prefixed_and_safetensors_files_import(r18_file, tmp_path):
    from safetensors.torch import save_file

    model, _ = r18_file
    wrapped = tmp_path / "wrapped.pt"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "model_state_dict": state, "optimizer": {"lr": 0.1}}, wrapped)
    safe = tmp_path / "r18.safetensors"
    save_file({k: v for k, v in model.state_dict().items() if "num_batches" not in k}, safe)
    for path in (wrapped, safe):
        import_file(path, out=tmp_path / f"{path.stem}-imported.pt")
        same_outputs(checkpoint.load(tmp_path / f"{path.stem}-imported.pt").model(), model)


def test_arch_checks_the_inference(r18_file, tmp_path):
    model, path = r18_file
    assert import_file(path, out=tmp_path / "a.pt", arch="resnet18")["arch"].startswith("ResNet-18")
    with pytest.raises(UserError, match=r"--arch resnet34 does not match the file: blocks is \[3, 4, 6, 3\] in "
                                        r"resnet34 but \[2, 2, 2, 2\] in the file"):
        import_file(path, out=tmp_path / "b.pt", arch="resnet34")
    assert not (tmp_path / "b.pt").exists()


def test_cifar_stem_imports_when_a_spec_file_says_so(tmp_path):
    """The usual CIFAR change to torchvision's ResNet: a 3x3 stride-1 conv1 and no max pool."""
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(weights=None, num_classes=10)
    theirs.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    theirs.maxpool = nn.Identity()
    randomise(theirs)
    with pytest.raises(UserError, match="3x3 conv, whose stride and following max pool are not in the state_dict"):
        checkpoint_from_state_dict(theirs.state_dict())
    spec_file = tmp_path / "cifar-r18.json"
    spec_file.write_text(preset("resnet18").replace(stem="cifar", num_classes=10).to_json())
    ckpt = checkpoint_from_state_dict(theirs.state_dict(), arch=str(spec_file))
    assert ckpt.spec.stem == "cifar"
    same_outputs(ckpt.model(), theirs, size=32)


def _folder(root, classes=3, per_class=10, size=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"class{c}/{i}.png")
    return root


def test_data_is_recorded_and_checked_against_the_model(r18_file, tmp_path):
    _, path = r18_file
    folder = _folder(tmp_path / "images")
    config = DataConfig(dataset=f"imagefolder:{folder}", resize=32)
    record = import_file(path, out=tmp_path / "r18.pt", data_config=config)
    assert record["dataset"] == config.dataset and record["input_size"] == 32
    assert checkpoint.load(tmp_path / "r18.pt").data_config == config
    with pytest.raises(UserError, match="the model takes 3-channel images and predicts 3 classes, but digits has "
                                        "1-channel images in 10 classes"):
        import_file(path, out=tmp_path / "digits.pt", data_config=DataConfig(dataset="digits"))
    assert not (tmp_path / "digits.pt").exists()


def test_an_import_without_data_is_refused_by_prune_clearly(r18_file, tmp_path):
    _, path = r18_file
    import_file(path, out=tmp_path / "r18.pt")
    with pytest.raises(UserError, match="records no dataset.*--dataset") as e:
        prune_checkpoint(tmp_path / "r18.pt", PruneConfig(target_ratio=0.2))
    assert "\n" not in str(e.value)


# ---- timm ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "resnet26"])
def test_timm_plain_resnets_import_exactly(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    theirs = randomise(timm.create_model(name, pretrained=False, num_classes=10))
    ckpt = checkpoint_from_state_dict(theirs.state_dict(), source=f"timm {name}")
    same_outputs(ckpt.model(), theirs)


@pytest.mark.parametrize("name", ["resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2"])
def test_timm_and_torchvision_share_the_layout(name):
    """The larger plain ResNets of timm hold torchvision's keys and shapes, so the exact-output tests above cover
    them; compared on the meta device, without allocating their weights."""
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        ours = timm.create_model(name, pretrained=False).state_dict()
        theirs = torchvision.models.get_model(name, weights=None).state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in theirs.items()]
    assert checkpoint_from_state_dict(ours).spec == preset(name)


@pytest.mark.parametrize("name, words", [
    ("resnet26d", "conv1.0.weight is a deep stem of three 3x3 convs"),
    ("resnet10t", "conv1.0.weight is a deep stem of three 3x3 convs"),
    ("seresnet18", "unexpected key layer1.0.se.fc1.weight (squeeze-and-excitation"),
    ("resnext50_32x4d", "layer1.0.conv2.weight has shape (128, 4, 3, 3) but ResNet-50 bottleneck blocks 3-4-6-3 "
                        "k=2 (B shortcut, post-act) needs (128, 128, 3, 3) (grouped convolutions, ResNeXt"),
    ("resnet50_gn", "bn1.running_mean is missing (a norm layer without running statistics, e.g. GroupNorm"),
])
def test_timm_variants_resnas_cannot_express_are_named(name, words):
    timm = pytest.importorskip("timm")
    state = timm.create_model(name, pretrained=False).state_dict()
    with pytest.raises(UserError) as e:
        checkpoint_from_state_dict(state, source=f"timm {name}")
    assert words in str(e.value) and "\n" not in str(e.value)


# ---- bad input: one line, nothing written -------------------------------------------------------------------

class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _write_bad(case: str, tmp_path, good) -> tuple[str, dict]:
    """The input file (or --out / --arch / data) for one bad case."""
    model, path = good
    state = model.state_dict()
    bad = tmp_path / f"{case}.pth"
    kw: dict = {}
    if case == "truncated":
        bad.write_bytes(path.read_bytes()[:4000])
    elif case == "garbage":
        bad.write_bytes(os.urandom(3000))
    elif case == "garbage-that-breaks-the-unpickler":  # raises IndexError inside torch's weights-only unpickler
        bad.write_bytes(b"\x80\x02" + b"e" * 64)
    elif case == "hostile-pickle":
        torch.save({"conv1.weight": Evil()}, bad)
    elif case == "whole-model":
        torch.save(model, bad)
    elif case == "non-resnet":
        torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), bad)
    elif case == "wrong-shape":
        torch.save({**state, "layer3.1.conv1.weight": torch.zeros(256, 128, 3, 3)}, bad)
    elif case == "missing-tensor":
        torch.save({k: v for k, v in state.items() if k != "fc.bias"}, bad)
    elif case == "extra-tensor":
        torch.save({**state, "aux.weight": torch.zeros(3)}, bad)
    elif case == "not-a-dict":
        torch.save([torch.zeros(3)], bad)
    elif case == "resnas-checkpoint":
        checkpoint.save(checkpoint.from_model(build(wrn(10, 1))), bad)
    elif case == "truncated-safetensors":
        from safetensors.torch import save_file

        bad = tmp_path / "cut.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, bad)
        bad.write_bytes(bad.read_bytes()[:3000])
    elif case == "missing-file":
        bad = tmp_path / "nothing-here.pth"
    elif case == "out-in-missing-folder":
        bad, kw = path, {"out": tmp_path / "no" / "such" / "dir" / "m.pt"}
    elif case == "out-is-input":
        bad, kw = path, {"out": path}
    elif case == "unknown-arch":
        bad, kw = path, {"arch": "resnet19"}
    return str(bad), kw


BAD = {
    "missing-file": "nothing-here.pth: no such file",
    "truncated": "truncated.pth: unreadable, truncated or corrupted",
    "garbage": "garbage.pth: unreadable, truncated or corrupted",
    "garbage-that-breaks-the-unpickler": "garbage-that-breaks-the-unpickler.pth: unreadable, truncated or corrupted",
    "hostile-pickle": "refused, it holds Python objects that could run code when unpickled (GLOBAL posix.system)",
    "whole-model": "(GLOBAL torchvision.models.resnet.ResNet); save model.state_dict() instead",
    "non-resnet": "no conv1.weight; not a ResNet in torchvision's layout (its first key is 'features.0.weight'",
    "wrong-shape": "layer3.1.conv1.weight has shape (256, 128, 3, 3) but ResNet-18 B(3,3) blocks 2-2-2-2 (B shortcut, "
                   "post-act) needs (256, 256, 3, 3)",
    "missing-tensor": "fc.bias is missing; ResNet-18",
    "extra-tensor": "unexpected key aux.weight; ResNet-18",
    "not-a-dict": "holds a list, not a state_dict",
    "resnas-checkpoint": "already a resnas checkpoint",
    "truncated-safetensors": "cut.safetensors: unreadable, truncated or corrupted safetensors file",
    "out-in-missing-folder": "does not exist; create it or name another",
    "out-is-input": "is the input file; write to a new file",
    "unknown-arch": "unknown preset 'resnet19'",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(case, r18_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source, kw = _write_bad(case, tmp_path, r18_file)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(UserError) as e:
        import_file(source, **{"out": tmp_path / "out.pt", **kw})
    message = str(e.value)
    assert BAD[case] in message and "\n" not in message, message
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "PWNED").exists()


def test_vgg_state_dict_is_not_a_resnet():
    with torch.device("meta"):  # a real VGG-11's keys and shapes, without allocating its 133M parameters
        state = torchvision.models.vgg11(weights=None).state_dict()
    with pytest.raises(UserError, match="not a ResNet in torchvision's layout \\(its first key is 'features.0.weight'"):
        checkpoint_from_state_dict(state, source="vgg11.pth")


def test_read_state_dict_refuses_a_foreign_value(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, path)
    with pytest.raises(UserError, match=r"'epoch' is not a tensor \(int\)"):
        read_state_dict(path)


def test_cli_import_prints_one_json_object_or_one_error_line(tmp_path, capsys):
    from resnas.cli import main

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    assert main(["import", str(path), "--out", str(tmp_path / "r18.pt"), "--dataset", "synthetic", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["dataset"] == "synthetic" and record["layers"] == [2, 2, 2, 2] and record["input_size"] == 32
    assert main(["import", str(path), "--out", str(tmp_path / "again.pt")]) == 0
    assert "data none named (give --dataset" in capsys.readouterr().out
    assert main(["import", str(path), "--out", str(tmp_path / "x.pt"), "--arch", "resnet50"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("resnas: error: ") and err.count("\n") == 1 and "--arch resnet50" in err


def test_cli_measures_an_imported_checkpoint_at_its_data_size(tmp_path, capsys):
    from resnas.cli import main

    torch.save(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10).state_dict(), tmp_path / "tiny.pth")
    import_file(tmp_path / "tiny.pth", out=tmp_path / "tiny.pt", data_config=DataConfig(dataset="synthetic"))
    assert main(["measure", str(tmp_path / "tiny.pt"), "--repeats", "2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["input_size"] == 32 and record["spec"]["blocks"] == [1, 1, 1, 1]
    assert record["mflops"] == pytest.approx(record["analytic_mflops"])
    assert main(["measure", str(tmp_path / "tiny.pth"), "--repeats", "2"]) == 2
    assert "resnas import makes one of a torchvision state_dict" in capsys.readouterr().err
