import os
import pickle

import pytest
import torch

from resnas import checkpoint
from resnas.checkpoint import CheckpointError
from resnas.data import DataConfig
from resnas.models import build
from resnas.presets import wrn
from resnas.train import TrainConfig


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build(wrn(10, 2).replace(in_channels=1, gates=True))
    ckpt = checkpoint.from_model(model, train_config=TrainConfig(epochs=3), data_config=DataConfig(),
                                 history=[{"epoch": 1, "val_acc": 0.5}], metrics={"val_acc": 0.5, "test_acc": 0.4})
    path = checkpoint.save(ckpt, tmp_path / "m.pt")
    return model, path


def test_round_trip_rebuilds_same_model(saved):
    model, path = saved
    ckpt = checkpoint.load(path)
    assert ckpt.spec == model.spec and ckpt.train_config == TrainConfig(epochs=3)
    assert ckpt.data_config == DataConfig() and ckpt.metrics["test_acc"] == 0.4 and ckpt.history[0]["epoch"] == 1
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(ckpt.model()(x), model.eval()(x))


def test_save_is_atomic(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(CheckpointError, match="No space left on device"):
        checkpoint.save(checkpoint.from_model(model), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temp file left behind


def test_unwritable_directory_is_clear_error(saved, tmp_path):
    model, _ = saved
    target = tmp_path / "file-not-dir"
    target.write_text("x")
    with pytest.raises((CheckpointError, OSError)):
        checkpoint.save(checkpoint.from_model(model), target / "m.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("case, words", [
    ("missing", "no such file"),
    ("truncated", "unreadable, truncated or corrupted"),
    ("garbage", "unreadable, truncated or corrupted"),
    ("foreign", "not a resnas checkpoint (it holds a plain state_dict)"),
    ("pickle", "refused, it holds Python objects that could run code"),
    ("future", "format version 99 is newer"),
    ("mismatch", "weights do not match"),
])
def test_bad_checkpoints_are_refused_clearly(saved, tmp_path, monkeypatch, case, words):
    monkeypatch.chdir(tmp_path)
    _, good = saved
    bad = tmp_path / f"{case}.pt"
    if case == "truncated":
        bad.write_bytes(good.read_bytes()[:2000])
    elif case == "garbage":
        bad.write_bytes(os.urandom(3000))
    elif case == "foreign":
        torch.save(build(wrn(10, 1)).state_dict(), bad)
    elif case == "pickle":
        torch.save({"format": "resnas-checkpoint", "version": 1, "spec": Evil()}, bad)
    elif case in ("future", "mismatch"):
        payload = torch.load(good, weights_only=True)
        if case == "future":
            payload["version"] = 99
        else:
            payload["state_dict"].pop("fc.weight")
        torch.save(payload, bad)
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(bad).model()
    assert words in str(err.value) and str(bad.name) in str(err.value)
    assert not (tmp_path / "PWNED").exists()  # the malicious pickle never ran


def test_plain_pickle_file_is_refused(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        checkpoint.load(bad)
