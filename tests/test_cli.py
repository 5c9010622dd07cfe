import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnas import checkpoint
from resnas.cli import main
from resnas.models import build
from resnas.presets import wrn


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_measure_json_keys(capsys):
    code, out, err = run_cli(capsys, "measure", "resnet-20", "--json", "--repeats", "3")
    assert code == 0
    result = json.loads(out)
    assert {"params", "mflops", "latency_ms", "latency_p90_ms", "device", "spec"} <= set(result)
    assert result["params"] == 269_722 and result["mflops"] == pytest.approx(40.55, abs=0.01)


def test_measure_spec_file(capsys, tmp_path):
    path = tmp_path / "net.json"
    path.write_text(wrn(16, 4).to_json())
    code, out, _ = run_cli(capsys, "measure", path, "--json", "--repeats", "2")
    assert code == 0 and json.loads(out)["params"] == 2_748_890


def test_spaces_json(capsys):
    code, out, _ = run_cli(capsys, "spaces", "--json")
    names = {s["name"]: s for s in json.loads(out)["spaces"]}
    assert code == 0 and names["wrn"]["size"] == 256 and "k" in names["wrn"]["choices"]


def test_train_then_eval(capsys, tmp_path):
    ckpt = tmp_path / "m.pt"
    code, out, _ = run_cli(capsys, "train", "--preset", "wrn-10-1", "--epochs", "2", "--out", ckpt, "--json")
    assert code == 0
    trained = json.loads(out)
    assert {"val_acc", "test_acc", "epochs", "seconds", "checkpoint"} <= set(trained)
    assert trained["epochs"] == 2 and 0 <= trained["val_acc"] <= 1 and Path(trained["checkpoint"]).is_file()
    code, out, _ = run_cli(capsys, "eval", ckpt, "--json")
    evaluated = json.loads(out)
    assert code == 0 and evaluated["val_acc"] == pytest.approx(trained["val_acc"])
    assert evaluated["test_acc"] == pytest.approx(trained["test_acc"]) and {"params", "mflops"} <= set(evaluated)


def test_search_json(capsys, tmp_path):
    space = tmp_path / "s.toml"
    space.write_text("[fixed]\nwidths = [4, 8]\nstem_width = 4\n[choices]\nk = [1, 2]\nblocks = [1]\n")
    # both architectures trained to the end whatever the sampler's order (MO-ASHA stops the second if the first,
    # cheaper, leads it at epoch 1, as the EHVI sampler's cheapest-first order makes it do)
    code, out, _ = run_cli(capsys, "search", "--space", space, "--budget", "2", "--epochs", "2", "--out-dir",
                           tmp_path / "st", "--no-early-stopping", "--json")
    result = json.loads(out)
    assert code == 0 and result["n_complete"] == 2 and result["study"] == "s"
    assert {"trial", "val_acc", "test_acc", "mflops", "params", "latency_ms", "checkpoint", "spec"} <= \
        set(result["pareto"][0])


def _write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    return p


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _evil(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "resnas-checkpoint", "version": 1, "spec": Evil()}, p)
    return p


def _future(tmp_path):
    p = tmp_path / "future.pt"
    checkpoint.save(checkpoint.from_model(build(wrn(10, 1))), p)
    payload = torch.load(p, weights_only=True)
    payload["version"] = 7
    torch.save(payload, p)
    return p


def _foreign(tmp_path):
    p = tmp_path / "foreign.pt"
    torch.save(build(wrn(10, 1)).state_dict(), p)
    return p


BATTERY = [
    ("unknown preset", lambda t: ["measure", "resnet19"], "unknown preset 'resnet19'"),
    ("invalid spec json", lambda t: ["measure", _write(t, "a.json", "{blocks: 1")], "not valid JSON"),
    ("spec fails validation", lambda t: ["measure", _write(t, "b.json", '{"blocks": [0], "widths": [4]}')],
     "stage 0 has 0 blocks"),
    ("unknown space", lambda t: ["search", "--space", "wnr"], "unknown space 'wnr'"),
    ("space syntax error", lambda t: ["search", "--space", _write(t, "s.toml", "[choices\n")], "not valid TOML"),
    ("space unknown key", lambda t: ["search", "--space", _write(t, "u.toml", "[choices]\ndepth = [1]\n")],
     "unknown key choices.depth"),
    ("space empty choice", lambda t: ["search", "--space", _write(t, "e.toml", "[choices]\nk = []\n")],
     "choices.k must be a non-empty list"),
    ("space wrong type", lambda t: ["search", "--space", _write(t, "w.toml", "[choices]\nk = ['x']\n")],
     "has the wrong type"),
    ("budget <= 0", lambda t: ["search", "--budget", "0"], "budget must be an integer >= 1"),
    ("epochs <= 0", lambda t: ["train", "--preset", "wrn-10-1", "--epochs", "0"], "epochs must be an integer >= 1"),
    ("malformed storage", lambda t: ["search", "--storage", "notadb://x", "--budget", "1"], "cannot open storage"),
    ("study with separator", lambda t: ["search", "--study", "../x"], "no path separators"),
    ("unknown dataset", lambda t: ["train", "--preset", "wrn-10-1", "--dataset", "mnist"], "unknown dataset"),
    ("cifar offline", lambda t: ["train", "--preset", "wrn-10-1", "--dataset", "cifar10", "--data-dir", t],
     "pass --download"),
    ("missing checkpoint", lambda t: ["eval", t / "nope.pt"], "no such file"),
    ("truncated checkpoint", lambda t: ["eval", _write(t, "trunc.pt", b"PK\x03\x04" + b"\0" * 50)],
     "unreadable, truncated or corrupted"),
    ("foreign checkpoint", lambda t: ["eval", _foreign(t)], "not a resnas checkpoint"),
    ("code-running pickle", lambda t: ["eval", _evil(t)], "refused"),
    ("future checkpoint", lambda t: ["eval", _future(t)], "format version 7 is newer"),
    ("bad objective", lambda t: ["search", "--objectives", "val_acc,flops"], "objectives must be distinct names"),
    ("unknown command option", lambda t: ["search", "--budgte", "3"], "unrecognized arguments"),
    ("cuda on a cpu machine", lambda t: ["measure", "resnet-20", "--device", "cuda:7"], "cuda"),
    ("report of a missing study", lambda t: ["report", "nope", "--out-dir", t], "no study 'nope'"),
    ("prune a missing checkpoint", lambda t: ["prune", t / "nope.pt", "--threshold", "0.1"], "no such file"),
    ("prune without a mode", lambda t: ["prune", _foreign(t)], "choose exactly one of --threshold"),
    ("prune a foreign checkpoint", lambda t: ["prune", _foreign(t), "--threshold", "0.1"], "not a resnas checkpoint"),
    ("heartbeat 0", lambda t: ["search", "--heartbeat", "0"], "heartbeat must be"),
]


@pytest.mark.parametrize("case, argv, words", BATTERY, ids=[b[0] for b in BATTERY])
def test_bad_input_battery(capsys, tmp_path, monkeypatch, case, argv, words):
    if case == "cuda on a cpu machine" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(tmp_path)
    args = argv(tmp_path)
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resnas: error: ") and words in lines[0]
    assert "Traceback" not in err and out == ""
    assert snapshot(tmp_path) == before  # nothing on disk changed
    assert not (tmp_path / "PWNED").exists()


def test_console_script_exit_code_and_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "resnas"
    proc = subprocess.run([str(exe), "measure", "wrn-17-2"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "resnas: error: WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got 17"
