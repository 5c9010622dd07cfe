"""Bad input, second table (the first is in test_cli.py): sizes, the memory guard, encodings, paths, studies made by
another space or version, and the import/export/eval-by-trial commands. Each row: one line on stderr naming what is
wrong, the documented exit code, no traceback, nothing on stdout, and every file that existed before unchanged."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from resnas import checkpoint
from resnas.cli import main
from resnas.data import DataConfig
from resnas.models import build
from resnas.presets import preset, wrn

OLD_STUDY = Path(__file__).parent / "data" / "study-0.1"


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _write(tmp: Path, name: str, content) -> Path:
    p = tmp / name
    p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    return p


def _spec(tmp: Path, name: str, **fields) -> Path:
    return _write(tmp, name, json.dumps({"blocks": [1], "widths": [4], "in_channels": 1, **fields}))


def _ckpt(tmp: Path, name: str, spec, **kw) -> Path:
    return checkpoint.save(checkpoint.from_model(build(spec), **kw), tmp / name)


def _old_study(tmp: Path) -> Path:
    (tmp / "studies" / "tiny").mkdir(parents=True)
    shutil.copy(OLD_STUDY / "study.db", tmp / "studies" / "tiny" / "study.db")
    return tmp / "studies"


class Evil:
    def __reduce__(self):
        return (print, ("PWNED",))


def _evil_state_dict(tmp: Path) -> Path:
    torch.save({"conv1.weight": Evil()}, tmp / "evil.pth")
    return tmp / "evil.pth"


def _vgg_like(tmp: Path) -> Path:
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3), "classifier.0.weight": torch.zeros(10, 8)},
               tmp / "vgg.pth")
    return tmp / "vgg.pth"


def _symlink(tmp: Path) -> Path:
    (tmp / "gone.json").symlink_to(tmp / "nowhere.json")
    return tmp / "gone.json"


TINY = "[fixed]\nwidths = [4, 8]\nstem_width = 4\n[choices]\nk = [1, 2]\nblocks = [1]\n"

# (case, argv from the tmp folder, words the one line must contain, exit code, environment)
BATTERY = [
    ("width past 10^5", lambda t: ["measure", _spec(t, "w.json", widths=[200000])], "at most 100,000 are allowed", 2,
     {}),
    ("blocks past 10^4", lambda t: ["measure", _spec(t, "b.json", blocks=[20000])], "at most 10,000 a stage", 2, {}),
    ("kernel past 31", lambda t: ["measure", _spec(t, "k.json", kernels=[33, 3])], "odd integers >= 1 and <= 31", 2,
     {}),
    ("3 x 10^4 blocks to train", lambda t: ["train", "--spec", _spec(t, "big.json", blocks=[10000, 10000, 10000],
                                                                     widths=[16, 32, 64]), "--epochs", "1"],
     "over the 2 GiB limit", 2, {"RESNAS_MEMORY_LIMIT": "2G"}),
    ("max-params", lambda t: ["measure", "resnet-20", "--max-params", "1000"], "over max-params 1,000", 2, {}),
    ("bad memory limit", lambda t: ["measure", "resnet-20"], "RESNAS_MEMORY_LIMIT", 2, {"RESNAS_MEMORY_LIMIT": "lots"}),
    ("spec file not UTF-8", lambda t: ["measure", _write(t, "bin.json", b"\xff\xfe\x00{")], "bin.json", 2, {}),
    ("spec path is a folder", lambda t: ["measure", (t / "d.json").mkdir() or t / "d.json"], "no such file", 2, {}),
    ("dangling symlink", lambda t: ["measure", _symlink(t)], "no such file", 2, {}),
    ("flatten head at another size", lambda t: ["measure", _spec(t, "f.json", head="flatten", input_size=8),
                                                "--input-size", "12"], "flatten head takes 8x8 inputs", 2, {}),
    ("field of another family", lambda t: ["measure", _spec(t, "d2.json", family="dense", kernels=[3])],
     "does not apply to family dense", 2, {}),
    ("seeds not integers", lambda t: ["search", "--seeds", "0,a"], "comma list of integers", 2, {}),
    ("bad s3 url", lambda t: ["search", "--space", _write(t, "s.toml", TINY), "--artifacts", "s3://b/k", "--budget",
                              "1"], "give s3://BUCKET", 2, {}),
    ("unmeetable constraint", lambda t: ["search", "--space", _write(t, "s.toml", TINY), "--max-mflops", "0.0001",
                                         "--budget", "1", "--json"], "the cheapest in space s is", 2, {}),
    ("no architecture fits", lambda t: ["search", "--space", _write(t, "h.toml", TINY.replace("[4, 8]", "[90000, 8]")
                                                                    .replace("[1, 2]", "[1]")),
                                        "--budget", "1", "--json"], "fits on this device", 2, {}),
    ("study of another space", lambda t: ["search", "--space", _write(t, "tiny.toml", TINY), "--out-dir",
                                          _old_study(t), "--budget", "9"], "was created with a different space", 2,
     {}),
    ("report colour of no choice", lambda t: ["report", "tiny", "--out-dir", _old_study(t), "--color-by", "depth"],
     "is not a choice of this study", 2, {}),
    ("corrupt study.db", lambda t: ["report", "x", "--out-dir", (t / "x").mkdir() or
                                    _write(t / "x", "study.db", b"not sqlite" * 100).parent.parent],
     "cannot open storage", 2, {}),
    ("import a VGG", lambda t: ["import", _vgg_like(t), "--out", t / "m.pt"], "not a ResNet", 2, {}),
    ("import a code-running pickle", lambda t: ["import", _evil_state_dict(t), "--out", t / "m.pt"], "refused", 2, {}),
    ("import into a missing folder", lambda t: ["import", _vgg_like(t), "--out", t / "no" / "m.pt"], "does not exist",
     2, {}),
    ("export what torchvision cannot hold", lambda t: ["export", _ckpt(t, "w.pt", wrn(10, 1)), "--format",
                                                       "torchvision", "--out", t / "w.pth"], "cannot express", 2, {}),
    ("opset for torchscript", lambda t: ["export", _ckpt(t, "r.pt", wrn(10, 1)), "--format", "torchscript", "--out",
                                         t / "r.ts", "--opset", "17"], "--opset applies to onnx only", 2, {}),
    ("eval half a trial reference", lambda t: ["eval", "--study", "tiny"], "--study NAME --trial N", 2, {}),
    ("eval a trial whose file is gone", lambda t: ["eval", "--study", "tiny", "--trial", "3", "--out-dir",
                                                   _old_study(t)], "is not on this machine", 2, {}),
    ("eval a trial stopped early", lambda t: ["eval", "--study", "tiny", "--trial", "4", "--out-dir", _old_study(t)],
     "has no checkpoint for trial 4; trials with one: 0, 1, 2, 3, 7", 2, {}),
    ("prune a dense network", lambda t: ["prune", _ckpt(t, "d.pt", preset("densenet-40-12").replace(in_channels=1),
                                               data_config=DataConfig()), "--threshold", "0.1"],
     "cannot prune a dense network", 2, {}),
]


@pytest.mark.parametrize("case, argv, words, code, env", BATTERY, ids=[b[0] for b in BATTERY])
def test_bad_input_battery(capsys, tmp_path, monkeypatch, case, argv, words, code, env):
    monkeypatch.chdir(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = [str(a) for a in argv(tmp_path)]
    before = snapshot(tmp_path)
    exit_code = main(args)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert exit_code == code, err
    assert len(lines) == 1 and lines[0].startswith("resnas: error: ") and words in lines[0], err
    assert "Traceback" not in err and out == ""
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # every file that was there is there, unchanged
    if not case.startswith(("unmeetable", "no architecture")):  # those two keep the study they made
        assert after == before
