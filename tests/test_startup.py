"""Start-up imports only what the command needs: `--version` and `spaces` import neither torch nor optuna, a spec
error nothing beyond torch, and a search worker reaches its first trial without scikit-learn, torchvision, pandas
or plotly. Each case runs in a fresh interpreter, whose sys.modules is the evidence (benchmarks/startup_bench.py
measures the time)."""

import json
import subprocess
import sys
import textwrap

import pytest

from resnas.cli import main
from resnas.cli.commands import COMMANDS, load

HEAVY = ("torch", "optuna", "sqlalchemy", "sklearn", "scipy", "torchvision", "pandas", "plotly", "thop")


def _fresh(code: str, tmp_path) -> dict:
    """Run `code` in a new interpreter (in `tmp_path`); it leaves a dict in `out`, returned with the heavy packages
    it imported, as `loaded`."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        out["loaded"] = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print(json.dumps(out))
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def _cli(argv: list[str]) -> str:
    return f"""
        import contextlib, io
        from resnas.cli import main
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()) as stdout, contextlib.redirect_stderr(err):
            try:
                code = main({argv!r})
            except SystemExit as e:  # argparse's --version
                code = e.code
        out = {{"code": code, "stdout": stdout.getvalue(), "stderr": err.getvalue()}}
        """


@pytest.mark.parametrize("argv", [["--version"], ["spaces", "--json"], ["spaces", "wrn"]])
def test_version_and_spaces_import_neither_torch_nor_optuna(tmp_path, argv):
    out = _fresh(_cli(argv), tmp_path)
    assert out["code"] == 0 and out["loaded"] == []
    if argv[0] == "spaces":
        assert "wrn" in out["stdout"]
    else:
        assert out["stdout"].startswith("resnas ")


def test_spec_error_needs_nothing_but_torch(tmp_path):
    (tmp_path / "bad.json").write_text('{"family": "resnet", "widths": [16]}')
    out = _fresh(_cli(["measure", "bad.json"]), tmp_path)
    assert out["code"] == 2 and out["stderr"].count("\n") == 1 and "blocks" in out["stderr"]
    assert out["loaded"] == ["torch"]


def test_digits_load_without_scikit_learn_or_torchvision(tmp_path):
    out = _fresh("""
        from resnas.data import DataConfig, load_data
        data = load_data(DataConfig())
        out = {"sizes": [len(data.train), len(data.val), len(data.test)]}
        """, tmp_path)
    assert out["sizes"] == [1221, 216, 360] and out["loaded"] == ["torch"]


def test_a_worker_reaches_its_first_trial_without_report_or_dataset_libraries(tmp_path):
    """resnas.search.loop._worker_main up to `_optimize`, where its first trial begins, after importing resnas.cli
    as a spawned worker of the `resnas` script does."""
    out = _fresh(f"""
        import resnas.cli
        from resnas.data import DataConfig
        from resnas.search import EPOCHS, SearchConfig, loop
        from resnas.search.study import create_study, storage_url
        from resnas.spaces import load_space
        from resnas.train import TrainConfig

        config = SearchConfig(out_dir={str(tmp_path / "studies")!r}, workers=2)
        train, data = TrainConfig(epochs=EPOCHS), DataConfig()
        url = storage_url(config, data)
        create_study(config, train, data, load_space(config.space), url)
        out = {{}}

        def ready(study, runner, *args, **kwargs):
            out["train_size"] = runner.data.split_size("train")

        loop._optimize = ready
        loop._worker_main(config, train, data, url, 1, "cpu", 1)
        """, tmp_path)
    assert out["train_size"] == 1221
    assert out["loaded"] == ["optuna", "scipy", "sqlalchemy", "torch"]  # scipy: the default (EHVI) sampler's GP


def test_every_command_is_registered_and_listed(capsys):
    for name in COMMANDS:
        command = load(name)
        assert callable(command.arguments) and callable(command.run), name
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert all(name in listing for name in COMMANDS)


def test_a_mistyped_command_names_the_commands(capsys):
    assert main(["mesure", "wrn-16-4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'mesure'" in err and "measure" in err
