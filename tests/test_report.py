import json
import re
import subprocess
import tempfile

import optuna
import pytest
from nets import chromium_or_fail

from resnas.cli import main
from resnas.data import DataConfig
from resnas.errors import UserError
from resnas.presets import wrn
from resnas.prune import PruneConfig, prune_pareto
from resnas.records import pareto_trials
from resnas.report import collect, render, write_report
from resnas.report.browser import headless_flags
from resnas.report.figures import plotted
from resnas.search import SearchConfig, run_search
from resnas.storage import open_storage
from resnas.train import TrainConfig


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_space_text):
    root = tmp_path_factory.mktemp("rep")
    (root / "tiny.toml").write_text(tiny_space_text)
    config = SearchConfig(space=str(root / "tiny.toml"), out_dir=str(root / "studies"), budget=7, sampler="random",
                          eta=2, max_mflops=0.09)
    run_search(config, TrainConfig(epochs=3, batch_size=128), DataConfig(), device="cpu")
    return root / "studies"


def load(study_dir, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / name / 'study.db'}")


def test_collect_one_row_per_trial(study_dir):
    study = load(study_dir)
    data = collect(study)
    t = data.trials
    assert len(t) == len(study.trials) and list(t["trial"]) == [x.number for x in study.trials]
    assert {"choice_blocks", "choice_k", "choice_kernels"} <= set(t.columns)
    assert set(t["kind"]) <= {"complete", "stopped early", "failed", "rejected", "duplicate"}
    done = t[t["kind"] == "complete"]
    assert done["val_acc"].between(0, 1).all() and done["test_acc"].between(0, 1).all()
    assert set(t.loc[t["on_front"], "trial"]) == {p["trial"] for p in pareto_trials(study.trials, data.objectives)}
    for trial, g in data.curves.groupby("trial"):
        assert len(g) == t.set_index("trial").loc[trial, "epochs"]
    stopped = t[t["kind"] == "stopped early"]
    assert (stopped["epochs"] == stopped["stopped_at"]).all()


def test_report_files_and_json(study_dir, tmp_path, capsys):
    code = main(["report", "tiny", "--out-dir", str(study_dir), "--reports-dir", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and set(out) == {"html", "csv", "n_trials", "pareto_size"}
    assert out["n_trials"] == len(load(study_dir).trials) and out["pareto_size"] >= 1
    page = (tmp_path / "tiny.html").read_text()
    assert "plotly" in page and 'id="fig-acc-mflops"' in page and "Pareto front" in page
    assert "cdn.plot.ly" not in page.split("<script", 2)[1][:200]  # plotly.js embedded, not fetched
    import pandas as pd
    csv = pd.read_csv(tmp_path / "tiny.csv")
    assert len(csv) == out["n_trials"] and {"state", "val_acc", "test_acc", "mflops", "params", "latency_ms",
                                            "epochs", "seconds", "checkpoint", "choice_k"} <= set(csv.columns)


def test_unknown_study_lists_existing(study_dir):
    with pytest.raises(UserError, match="no study 'nope' under .*; studies there: tiny"):
        write_report("nope", out_dir=str(study_dir))


def make_study(tmp_path, trials):
    storage = open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    study = optuna.create_study(study_name="x", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("resnas", {"objectives": ["val_acc", "mflops"]})
    study.add_trials(trials)
    return study


def test_empty_study_says_so(tmp_path):
    page = render(collect(make_study(tmp_path, [])))
    assert "This study has no trials yet." in page and "The Pareto front is empty" in page


def test_only_failed_trials_say_so(tmp_path):
    dist = {"k": optuna.distributions.CategoricalDistribution([1, 2])}
    failed = [optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"k": k}, distributions=dist,
                                        user_attrs={"arch": "net", "mflops": 1.0, "params": 10,
                                                    "error": "TrainingFailed: loss became nan"}) for k in (1, 2)]
    data = collect(make_study(tmp_path, failed))
    page = render(data)
    assert "No trial has completed yet (2 failed)" in page and "loss became nan" in page
    assert len(plotted(data)) == 2


def test_without_latency_leaves_figure_out(tmp_path):
    dist = {"k": optuna.distributions.CategoricalDistribution([1, 2, 3])}
    done = [optuna.trial.create_trial(values=[0.5 + 0.1 * k, float(k)], params={"k": k}, distributions=dist,
                                      user_attrs={"arch": f"net{k}", "mflops": float(k), "params": 10 * k,
                                                  "val_acc": 0.5 + 0.1 * k, "test_acc": 0.5, "curve": [0.5],
                                                  "spec": wrn(10, k).to_json(), "checkpoint": f"c{k}.pt"})
            for k in (1, 2, 3)]
    data = collect(make_study(tmp_path, done))
    page = render(data)
    assert "No latency was measured" in page and 'id="fig-acc-latency"' not in page
    assert data.trials["on_front"].all()




def test_page_renders_in_headless_chromium(study_dir, tmp_path):
    chromium = chromium_or_fail()
    prune_pareto("tiny", PruneConfig(threshold=1e9, random_draws=1), out_dir=str(study_dir), device="cpu")
    result = write_report("tiny", out_dir=str(study_dir), reports_dir=str(tmp_path))
    data = collect(load(study_dir))
    assert not data.pruning.empty  # the pruning arrows have something to draw
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium, *headless_flags(profile), "--enable-logging=stderr", "--v=0",
                               "--virtual-time-budget=20000", "--dump-dom", f"file://{result['html']}"],
                              capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    assert 'data-errors' not in dom.split(">", 2)[0]  # no uncaught page error
    assert "Uncaught" not in proc.stderr
    expected = int(re.search(r'data-expected-figures="(\d+)"', dom)[1])
    assert expected >= 4 and re.search(r'data-rendered-figures="(\d+)"', dom)[1] == str(expected)
    block = dom.split('id="fig-acc-mflops"', 1)[1].split('id="fig-acc-latency"', 1)[0]
    points = block.split('class="scatterlayer', 1)[1]
    n_points = len(re.findall(r'class="point"', points))
    n_pruning = 3 * len(data.pruning)  # each pruning record draws before, recalibrated and fine-tuned points
    assert n_points == len(plotted(data)) + n_pruning


def test_png_export(study_dir, tmp_path):
    chromium_or_fail()
    result = write_report("tiny", out_dir=str(study_dir), reports_dir=str(tmp_path), png=True)
    png = (tmp_path / "tiny.png").read_bytes()
    assert result["png"].endswith("tiny.png") and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_baselines_trained_once_with_the_studys_recipe(study_dir, tmp_path):
    from resnas.report import baseline_frame

    folder = tmp_path / "baselines"
    frame = baseline_frame(load(study_dir), folder, device="cpu")
    assert list(frame["name"]) == ["wrn-16-4", "resnet-20"] and frame["val_acc"].between(0, 1).all()
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = baseline_frame(load(study_dir), folder, device="cpu")  # reused, not retrained
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert list(again["val_acc"]) == list(frame["val_acc"])
    from resnas import checkpoint as ck
    assert ck.load(folder / "wrn-16-4.pt").train_config.epochs == 3  # the study's recipe
