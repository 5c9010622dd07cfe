"""A resnas study in optuna-dashboard (the `dashboard` extra, #12), for real: the dashboard's own CLI serves a study
this module makes, its JSON API is read as the page reads it, and headless Chromium draws the page."""

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from nets import chromium_or_fail, tiny_search
from optuna.trial import TrialState

from resnas import records
from resnas.data import DataConfig
from resnas.report.browser import headless_flags
from resnas.search import SearchConfig
from resnas.search.study import create_study
from resnas.spaces import load_space
from resnas.train import TrainConfig

pytestmark = pytest.mark.slow
pytest.importorskip("optuna_dashboard")

OLD = Path(__file__).parent / "data" / "study-0.1"  # written before resnas named its objectives


@pytest.fixture(scope="module")
def study_db(tmp_path_factory, tiny_space_text):
    return tiny_search(tmp_path_factory.mktemp("dash"), tiny_space_text, budget=3, epochs=2, batch_size=128)


@pytest.fixture(scope="module")
def study(study_db):
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_db}")


@contextlib.contextmanager
def serve(url: str):
    """`optuna-dashboard URL` on a free loopback port, as a user starts it; stopped on the way out."""
    cli = Path(sys.executable).with_name("optuna-dashboard")
    if not cli.exists():
        cli = shutil.which("optuna-dashboard")
    assert cli, "optuna_dashboard is importable but its optuna-dashboard command is not installed"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([str(cli), url, "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError):
                    get(base, "/api/meta")
                    break
                log.seek(0)
                assert proc.poll() is None, f"optuna-dashboard exited: {log.read().decode()[-2000:]}"
                assert time.monotonic() < deadline, f"optuna-dashboard never answered: {log.read().decode()[-2000:]}"
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def dashboard(study_db):
    with serve(f"sqlite:///{study_db}") as base:
        yield base


@pytest.fixture(scope="module")
def study_id(dashboard, study):
    (summary,) = get(dashboard, "/api/studies")["study_summaries"]
    assert summary["study_name"] == study.study_name
    return summary["study_id"]


@pytest.fixture(scope="module")
def detail(dashboard, study_id):
    return get(dashboard, f"/api/studies/{study_id}")


def readable(text: str, value) -> bool:
    """Does the dashboard's text for an attribute give back what resnas stored? Strings are shown as they are, and
    numbers and JSON (lists, dicts) must parse back whole: the dashboard cuts JSON at 1024 characters."""
    if isinstance(value, str | bool):
        return text == str(value)
    return json.loads(text) == value


def test_api_names_objectives_and_directions(dashboard, study, detail):
    (summary,) = get(dashboard, "/api/studies")["study_summaries"]
    assert summary["directions"] == detail["directions"] == ["maximize", "minimize"]
    assert detail["objective_names"] == ["val_acc", "mflops"]
    assert {s["name"] for s in detail["intersection_search_space"]} == {"blocks", "k", "kernels"}
    attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
    assert attrs.keys() == study.user_attrs.keys() >= {records.IDENTITY, records.SEARCH_CONFIG, records.SPLIT_SIZES}
    assert all(readable(attrs[k], v) for k, v in study.user_attrs.items())
    assert json.loads(attrs[records.IDENTITY])["objectives"] == ["val_acc", "mflops"]


def test_api_trials_carry_readable_user_attrs(study, detail):
    served = detail["trials"]
    trials = study.get_trials(deepcopy=False)
    assert [t["number"] for t in served] == [t.number for t in trials]
    kinds = [records.trial_kind(t) for t in trials]
    assert "complete" in kinds and "stopped early" in kinds
    for trial, t in zip(trials, served, strict=True):
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        assert attrs.keys() == trial.user_attrs.keys()
        assert all(readable(attrs[k], v) for k, v in trial.user_attrs.items()), trial.number
        assert t["state"] == "Complete" and t["values"] == trial.values
        assert json.loads(attrs[records.SPEC])["widths"] == [4, 8]
        assert len(json.loads(attrs[records.CURVE])) == trial.user_attrs.get(records.STOPPED_AT, 2)
    done = next(t for t in trials if records.fully_trained(t))
    attrs = {a["key"]: a["value"] for a in served[done.number]["user_attrs"]}
    assert Path(attrs[records.CHECKPOINT]).is_file() and attrs[records.ARCH].startswith("ResNet-")
    sortable = {a["key"] for a in detail["union_user_attrs"] if a["sortable"]}
    assert sortable >= {"val_acc", "test_acc", "mflops", "params", "latency_ms", "stopped_at"}


def test_api_front_holds_resnas_front(study, detail):
    """The dashboard's front is every completed trial's values, stopped-early ones included (they complete with
    their rung accuracy so the sampler learns from them); resnas's front, of fully trained trials, lies within."""
    best = {t["number"] for t in detail["best_trials"]}
    assert {p["trial"] for p in records.pareto_trials(study.trials, ("val_acc", "mflops"))} <= best


# ---- the page, drawn by headless Chromium ------------------------------------------------------------------

class Subtree(HTMLParser):
    """The elements (tag, attributes) and texts inside the element with a given id."""

    VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self, dom: str, id_: str) -> None:
        super().__init__()
        self.id, self.depth, self.elements, self.texts = id_, 0, [], []
        self.feed(dom)
        assert self.elements, f"nothing with id {id_!r} was drawn"

    def handle_starttag(self, tag, attrs):
        if self.depth or dict(attrs).get("id") == self.id:
            self.elements.append((tag, dict(attrs)))
            self.depth += tag not in self.VOID

    def handle_endtag(self, tag):
        if self.depth and tag not in self.VOID:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth and data.strip():
            self.texts.append(data.strip())

    def points_per_trace(self) -> list[int]:
        """Plotly's markers, counted per scatter trace."""
        counts: list[int] = []
        for _, attrs in self.elements:
            cls = attrs.get("class", "")
            if cls.startswith("trace scatter"):
                counts.append(0)
            elif cls == "point":
                counts[-1] += 1
        return counts




def dump_dom(url: str) -> str:
    chromium = chromium_or_fail()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium, *headless_flags(profile), "--enable-logging=stderr", "--v=0",
                               "--window-size=1400,2200", "--virtual-time-budget=20000", "--dump-dom", url],
                              capture_output=True, text=True, timeout=180)
    assert "Uncaught" not in proc.stderr, proc.stderr[-2000:]
    return proc.stdout


def selected(dom: str, legend: str) -> str:
    """The option a dashboard drop-down shows, found by its legend."""
    after = dom.split(f">{legend}</legend>", 1)[1]
    return after.split('role="combobox"', 1)[1].split(">", 1)[1].split("<", 1)[0]


def test_page_draws_front_and_history_with_objective_names(dashboard, study, study_id, detail):
    dom = dump_dom(f"{dashboard}/dashboard/studies/{study_id}")
    n_complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    n_best = len(detail["best_trials"])
    front = Subtree(dom, "graph-pareto-front")
    assert any("main-svg" in a.get("class", "") for _, a in front.elements)
    assert front.points_per_trace() == [n_complete - n_best, n_best] and "Best Trial" in front.texts
    assert (selected(dom, "Objective X:"), selected(dom, "Objective Y:")) == ("val_acc", "mflops")
    history = Subtree(dom, "plot-history")
    assert sum(history.points_per_trace()) == n_complete
    assert {"Trial", "val_acc"} <= set(history.texts) and selected(dom, "y Axis") == "val_acc"
    assert "Objective 0" not in dom and "Study User Attributes" in dom
    assert all(f">{key}<" in dom for key in study.user_attrs)


def test_trial_page_shows_user_attrs(dashboard, study, study_id):
    best = records.pareto_trials(study.trials, ("val_acc", "mflops"))[0]
    dom = dump_dom(f"{dashboard}/dashboard/studies/{study_id}/trials?numbers={best['trial']}")
    a = study.trials[best["trial"]].user_attrs
    for key in (records.ARCH, records.CHECKPOINT, records.VAL_ACC, records.MFLOPS):
        assert f">{key} {a[key]}<" in dom
    assert f">{records.CURVE} {json.dumps(a[records.CURVE])}<" in dom


def test_old_study_gets_objective_names_when_resumed(tmp_path):
    """Studies made before resnas named their objectives showed "Objective 0" in the dashboard; resuming names
    them (the same settings as tests/test_records.py resumes it with)."""
    shutil.copy(OLD / "study.db", tmp_path / "study.db")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = SearchConfig(space=str(OLD / "tiny.toml"), out_dir=str(tmp_path),
                          objectives=("val_acc", "mflops", "latency_ms"))
    assert optuna.load_study(study_name="tiny", storage=url).metric_names is None
    create_study(config, TrainConfig(epochs=3), DataConfig(), load_space(str(OLD / "tiny.toml")), url)
    with serve(url) as base:
        (summary,) = get(base, "/api/studies")["study_summaries"]
        assert get(base, f"/api/studies/{summary['study_id']}")["objective_names"] == ["val_acc", "mflops",
                                                                                          "latency_ms"]
