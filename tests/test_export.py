import sys

import pytest
import torch
import torchvision
from nets import randomise
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from resnas import checkpoint
from resnas.data import DataConfig
from resnas.errors import UserError
from resnas.export import export_checkpoint
from resnas.importer import import_file
from resnas.models import build
from resnas.presets import imagenet_resnet, preset, resnet, wrn
from resnas.prune import PruneConfig, prune_checkpoint


def x(batch: int, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(batch))


def saved(spec, path, data_config=None):
    torch.manual_seed(0)
    model = randomise(build(spec))
    checkpoint.save(checkpoint.from_model(model, data_config=data_config), path)
    return model


def load_torchvision(record) -> nn.Module:
    """torchvision's ResNet built as the record says: the constructor, then each module swapped in as written."""
    model = eval(record["constructor"], {"torchvision": torchvision})
    for path, module in record["replace"].items():
        exec(f"model.{path} = {module}", {"model": model, "nn": nn})
    model.load_state_dict(torch.load(record["out"], weights_only=True), strict=True)
    return model.eval()


def trained_grey_resnet18(steps: int = 4) -> nn.Module:
    """The issue's model: torchvision's resnet18 with the usual MNIST-style stem for grey images, trained a few
    steps on scikit-learn's digits by a plain PyTorch loop."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    labels = torch.tensor(digits.target)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(steps):  # the BatchNorms' running statistics move away from their initial values too
        batch = slice(64 * step, 64 * (step + 1))
        with torch.enable_grad():  # the test runs under no_grad
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            opt.zero_grad()
            loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def test_grey_resnet18_imports_prunes_and_exports_back_to_torchvision(tmp_path, capsys):
    """The issue's round trip through the CLI: the 1-channel conv1 the user swapped in travels back out as the one
    module to swap in after the constructor, and the rebuilt torchvision model computes what resnas's does."""
    import json

    from resnas.cli import main

    theirs = trained_grey_resnet18()
    torch.save(theirs.state_dict(), tmp_path / "r18.pth")

    def run(*argv):
        assert main([*map(str, argv), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    imported = run("import", tmp_path / "r18.pth", "--dataset", "digits", "--out", tmp_path / "r18.pt")
    assert imported["spec"]["in_channels"] == 1 and imported["layers"] == [2, 2, 2, 2]
    pruned = run("prune", tmp_path / "r18.pt", "--target-ratio", "0.2", "--random-draws", "0", "--out",
                 tmp_path / "p.pt")
    layers = pruned["spec"]["blocks"]
    assert sum(layers) < 8
    record = run("export", tmp_path / "p.pt", "--format", "torchvision", "--out", tmp_path / "p.pth")
    assert record["constructor"] == ("torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, "
                                     f"{layers}, num_classes=10)")
    assert record["replace"] == {"conv1": "nn.Conv2d(1, 64, 7, 2, 3, bias=False)"}
    tv = load_torchvision(record)
    assert record["params"] == sum(p.numel() for p in tv.parameters())
    images = x(5, channels=1, size=8)
    torch.testing.assert_close(tv(images), checkpoint.load(tmp_path / "p.pt").model()(images))
    # the text form: one line of Python makes the model, the next loads the file
    assert main(["export", str(tmp_path / "p.pt"), "--format", "torchvision", "--out", str(tmp_path / "q.pth")]) == 0
    made, loads = capsys.readouterr().out.splitlines()[1:]
    assert made.startswith("load it with: model = torchvision.models.resnet.ResNet(") and \
        made.endswith("; model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)")
    scope = {"torch": torch, "torchvision": torchvision, "nn": nn}
    exec(made.removeprefix("load it with: ") + "\n" + loads.split("#")[0].strip(), scope)
    torch.testing.assert_close(scope["model"].eval()(images), tv(images))


# Networks torchvision's ResNet holds once modules are swapped in (what an import of a user's changed model sees)
SWAPPED = {
    "cifar-stem": (imagenet_resnet("resnet18").replace(stem="cifar"), 16, ["conv1", "maxpool"]),
    "narrow-stem": (imagenet_resnet("resnet18").replace(stem_width=32), 64,
                    ["conv1", "bn1", "layer1[0].conv1", "layer1[0].downsample"]),
    "shortcut-C": (imagenet_resnet("resnet18").replace(shortcut="C", blocks=(2, 1, 1, 1)), 64,
                   ["layer1[0].downsample", "layer1[1].downsample"]),
    "flatten-head": (imagenet_resnet("resnet18").replace(head="flatten", input_size=64), 64, ["avgpool", "fc"]),
    "bottleneck-grey-stem": (imagenet_resnet("resnet50", num_classes=3).replace(in_channels=1, stem_width=32), 64,
                             ["conv1", "bn1", "layer1[0].conv1", "layer1[0].downsample"]),
    "bottleneck-wide-stem": (imagenet_resnet("resnet50", num_classes=3).replace(stem_width=256), 64,
                             ["conv1", "bn1", "layer1[0].conv1", "layer1[0].downsample"]),
}


@torch.no_grad()
@pytest.mark.parametrize("case", list(SWAPPED))
def test_networks_torchvision_holds_with_swapped_modules_round_trip(case, tmp_path):
    spec, size, paths = SWAPPED[case]
    spec = spec.replace(blocks=spec.blocks if case == "shortcut-C" else (1, 1, 1, 1))
    torch.manual_seed(0)
    ours = randomise(build(spec))
    checkpoint.save(checkpoint.from_model(ours, metrics={"input_size": size}), tmp_path / "m.pt")
    record = export_checkpoint(tmp_path / "m.pt", format="torchvision", out=tmp_path / "m.pth")
    assert list(record["replace"]) == paths
    tv = load_torchvision(record)
    images = x(2, channels=spec.in_channels, size=size)
    torch.testing.assert_close(tv(images), ours(images))
    assert record["params"] == sum(p.numel() for p in tv.parameters())


@torch.no_grad()
def test_import_prune_export_torchvision_round_trip(tmp_path):
    torch.manual_seed(0)
    theirs = randomise(torchvision.models.resnet18(weights=None, num_classes=10))
    torch.save(theirs.state_dict(), tmp_path / "r18.pth")
    data = DataConfig(dataset="synthetic", synthetic_size=128, synthetic_shape=(3, 16, 16))
    import_file(tmp_path / "r18.pth", out=tmp_path / "r18.pt", data_config=data)
    config = PruneConfig(target_ratio=0.2, random_draws=0, calibration_batches=2, calibration_batch_size=32)
    pruned = prune_checkpoint(tmp_path / "r18.pt", config)
    layers = pruned["spec"]["blocks"]
    assert sum(layers) < 8
    record = export_checkpoint(pruned["checkpoint"], format="torchvision", out=tmp_path / "r18-pruned.pth")
    assert record["constructor"] == f"torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, " \
                                    f"{layers}, num_classes=10)"
    assert record["layers"] == layers and record["input_size"] == 16
    ours = checkpoint.load(pruned["checkpoint"]).model()
    tv = load_torchvision(record)
    assert record["params"] == sum(p.numel() for p in tv.parameters())
    torch.testing.assert_close(tv(x(4)), ours(x(4)))


@torch.no_grad()
def test_gates_fold_exactly_into_the_last_batchnorm(tmp_path):
    spec = imagenet_resnet("resnet18", num_classes=10).replace(blocks=(1, 2, 1, 1), gates=True)
    ours = saved(spec, tmp_path / "gated.pt")
    record = export_checkpoint(tmp_path / "gated.pt", format="torchvision", out=tmp_path / "gated.pth")
    tv = load_torchvision(record)
    assert record["params"] == sum(p.numel() for p in tv.parameters())
    torch.testing.assert_close(tv(x(3)), ours(x(3)))


@torch.no_grad()
def test_wide_bottleneck_exports_with_width_per_group_and_safetensors(tmp_path):
    from safetensors.torch import load_file

    spec = imagenet_resnet("wide_resnet50_2", num_classes=5).replace(blocks=(1, 1, 1, 1))
    ours = saved(spec, tmp_path / "w.pt")
    record = export_checkpoint(tmp_path / "w.pt", format="torchvision", out=tmp_path / "w.safetensors")
    assert record["constructor"].endswith("Bottleneck, [1, 1, 1, 1], num_classes=5, width_per_group=128)")
    tv = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=5, width_per_group=128)
    tv.load_state_dict(load_file(tmp_path / "w.safetensors"), strict=True)
    torch.testing.assert_close(tv.eval()(x(2)), ours(x(2)))


@pytest.fixture
def imported_tiny(tmp_path):
    """A torchvision ResNet as a user brings it: imported, no data named."""
    torch.manual_seed(0)
    theirs = randomise(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=4))
    torch.save(theirs.state_dict(), tmp_path / "tiny.pth")
    import_file(tmp_path / "tiny.pth", out=tmp_path / "tiny.pt")
    return tmp_path / "tiny.pt", theirs


@torch.no_grad()
def test_onnx_runs_in_onnxruntime_at_two_batch_sizes(tmp_path, imported_tiny):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path, theirs = imported_tiny
    record = export_checkpoint(path, format="onnx", out=tmp_path / "tiny.onnx")
    assert record["opset"] >= 18 and record["input_shape"] == ["batch", 3, 224, 224]
    onnx.checker.check_model(onnx.load(tmp_path / "tiny.onnx"))
    session = ort.InferenceSession(str(tmp_path / "tiny.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        inputs = x(batch, size=224)
        out = torch.from_numpy(session.run(None, {"input": inputs.numpy()})[0])
        torch.testing.assert_close(out, theirs(inputs), rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_onnx_takes_networks_torchvision_cannot_express(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    ours = saved(wrn(10, 2).replace(gates=True, shortcut="C", kernels=(3, 1, 3)), tmp_path / "wrn.pt")
    record = export_checkpoint(tmp_path / "wrn.pt", format="onnx", out=tmp_path / "wrn.onnx", opset=18)
    assert record["opset"] == 18
    session = ort.InferenceSession(str(tmp_path / "wrn.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        out = torch.from_numpy(session.run(None, {"input": x(batch).numpy()})[0])
        torch.testing.assert_close(out, ours(x(batch)), rtol=1e-4, atol=1e-4)


@torch.no_grad()
@pytest.mark.parametrize("spec", [resnet(8), imagenet_resnet("resnet50", num_classes=3).replace(blocks=(1, 1, 1, 1))],
                         ids=["resnet-8-shortcut-A", "bottleneck"])
def test_torchscript_loads_with_the_same_outputs(tmp_path, spec, recwarn):
    ours = saved(spec, tmp_path / "m.pt")
    record = export_checkpoint(tmp_path / "m.pt", format="torchscript", out=tmp_path / "m.ts")
    assert set(record) >= {"format", "out", "params", "mflops"} and "opset" not in record
    assert not [w for w in recwarn if "torch.jit" in str(w.message)]  # kept out of the user's output
    loaded = torch.jit.load(str(tmp_path / "m.ts"))
    for batch in (1, 4):
        torch.testing.assert_close(loaded(x(batch)), ours(x(batch)))


# ---- bad input: one line, nothing written -------------------------------------------------------------------

UNEXPORTABLE = {
    "wrn": (wrn(10, 1), "it is pre-activation (BN-ReLU-conv)"),
    "shortcut-A": (imagenet_resnet("resnet18").replace(shortcut="A"), "its shortcut is A (zero-padding"),
    "plain": (imagenet_resnet("resnet18").replace(shortcut="none"), "it has no shortcuts"),
    "pre-activation": (imagenet_resnet("resnet18").replace(preact=True), "it is pre-activation"),
    "l=3": (imagenet_resnet("resnet18").replace(kernels=(3, 3, 3)), "its blocks have l = 3 convs"),
    "kernels": (imagenet_resnet("resnet18").replace(kernels=(3, 5)), "its blocks' kernels are [3, 5]"),
    "widened-basic": (imagenet_resnet("resnet18").replace(k=2), "its basic blocks are widened k = 2"),
    "three-stages": (imagenet_resnet("resnet18").replace(blocks=(1, 1, 1), widths=(64, 128, 256)), "it has 3 stages"),
    "widths": (imagenet_resnet("resnet18").replace(widths=(32, 64, 128, 256)), "its stage widths are [32, 64"),
    "densenet": (preset("densenet121"), "it is a dense network, not a ResNet"),
}


@pytest.mark.parametrize("case", list(UNEXPORTABLE))
def test_specs_torchvision_cannot_express_are_refused_clearly(case, tmp_path):
    spec, words = UNEXPORTABLE[case]
    saved(spec.replace(blocks=(1,) * len(spec.blocks)), tmp_path / "m.pt")
    with pytest.raises(UserError) as e:
        export_checkpoint(tmp_path / "m.pt", format="torchvision", out=tmp_path / "m.pth")
    message = str(e.value)
    assert words in message and "export --format onnx or torchscript instead" in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


BAD = {
    "unknown-format": ({"format": "tflite"}, "unknown format 'tflite'; choose one of torchvision, onnx, torchscript"),
    "missing-folder": ({"out": "no/such/dir/m.onnx"}, "folder no/such/dir does not exist"),
    "out-is-checkpoint": ({"out": "m.pt"}, "is the input file"),
    "out-is-folder": ({"out": "."}, "is a folder"),
    "opset-for-torchscript": ({"format": "torchscript", "opset": 17}, "--opset applies to onnx only"),
    "missing-checkpoint": ({"path": "nope.pt"}, "checkpoint nope.pt: no such file"),
    "plain-state-dict": ({"path": "plain.pth"}, "not a resnas checkpoint (it holds a plain state_dict)"),
    "unpickler-breaking-bytes": ({"path": "broken.pt"}, "checkpoint broken.pt: unreadable, truncated or corrupted"),
    "onnx-missing": ({"format": "onnx"}, "exporting to onnx needs the onnxscript package: pip install "
                                         "'resnas[export]'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_export_is_one_line_and_writes_nothing(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved(resnet(8), tmp_path / "m.pt")
    torch.save(build(resnet(8)).state_dict(), tmp_path / "plain.pth")
    (tmp_path / "broken.pt").write_bytes(b"\x80\x02" + b"e" * 64)  # IndexError inside the weights-only unpickler
    if case == "onnx-missing":
        monkeypatch.setitem(sys.modules, "onnxscript", None)  # what an install without the extra looks like
    before = sorted(p.name for p in tmp_path.rglob("*"))
    kw, words = BAD[case]
    with pytest.raises(UserError) as e:
        export_checkpoint(kw.get("path", "m.pt"), **{"format": "onnx", "out": "m.onnx",
                                                     **{k: v for k, v in kw.items() if k != "path"}})
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_cli_export_prints_the_constructor_or_one_error_line(tmp_path, capsys):
    import json

    from resnas.cli import main

    saved(imagenet_resnet("resnet18", num_classes=10).replace(blocks=(1, 1, 2, 1)), tmp_path / "m.pt")
    assert main(["export", str(tmp_path / "m.pt"), "--format", "torchvision", "--out", str(tmp_path / "m.pth")]) == 0
    assert "model = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 2, 1], " \
           "num_classes=10)" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "m.pt"), "--format", "torchscript", "--out", str(tmp_path / "m.ts"),
                 "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"format", "out", "params", "mflops"}
    saved(wrn(10, 1), tmp_path / "w.pt")
    assert main(["export", str(tmp_path / "w.pt"), "--format", "torchvision", "--out", str(tmp_path / "w.pth")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "export --format onnx or torchscript instead" in err
    assert not (tmp_path / "w.pth").exists()
