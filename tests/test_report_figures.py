"""The report's cost figures read the plotly figure data: the error axis is log and fitted to the fully trained
trials, stopped trials neither widen it nor disappear, the front is a staircase, pruning arrows are visible."""

import math
import re

import optuna
import pandas as pd
import pytest
from nets import tiny_search

from resnas.presets import wrn
from resnas.prune import PruneConfig, prune_pareto
from resnas.report import collect, grid
from resnas.report.data import ReportData, split_size
from resnas.report.figures import log_error
from resnas.report.page import cost_figures, render
from resnas.storage import open_storage


@pytest.fixture(scope="module")
def real(tmp_path_factory, tiny_space_text):
    """A real search on digits (216 validation images), with trials stopped at rungs and a pruned front."""
    root = tmp_path_factory.mktemp("figs")
    tiny_search(root, tiny_space_text, budget=8, epochs=4, batch_size=32)
    prune_pareto("tiny", PruneConfig(threshold=1e9, random_draws=1), out_dir=str(root / "studies"), device="cpu")
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root / 'studies' / 'tiny' / 'study.db'}")
    return collect(study)


def mflops_figure(data: ReportData):
    return dict(cost_figures(data, None))["fig-acc-mflops"]


def main_points(fig) -> list[tuple[float, float]]:
    """(x, y) of every point on the upper panel: the one whose axis must fit the fully trained trials."""
    return [(x, y) for tr in fig.data if tr.yaxis in (None, "y") and tr.mode != "lines"
            for x, y in zip(tr.x, tr.y, strict=True)]


def inside(fig, points) -> bool:
    lo, hi = fig.layout.yaxis.range
    xlo, xhi = fig.layout.xaxis.range or (-math.inf, math.inf)
    return all(lo <= math.log10(y) <= hi and xlo <= math.log10(x) <= xhi for x, y in points)


def test_real_study_error_axis_is_log_and_set_by_the_completed_trials(real):
    t = real.trials
    done, stopped = t[t["kind"] == "complete"], t[t["kind"] == "stopped early"]
    assert len(done) >= 2 and len(stopped) >= 1 and not real.pruning.empty  # the study exercises every case
    assert real.val_images == 216  # digits: 0.15 of 1,437, read from the accuracies themselves
    fig = mflops_figure(real)
    axis = fig.layout.yaxis
    assert axis.type == "log"
    errors = log_error(done["val_acc"], real.val_images)
    arrows = [log_error(real.pruning[f"{s}_val_acc"], real.val_images) for s in ("before", "after_recalibration",
                                                                                     "after")]
    drawn = [*errors, *(e for a in arrows for e in a)]
    lo, hi = axis.range
    assert lo < math.log10(min(drawn)) and math.log10(max(drawn)) < hi
    held = math.log10(max(drawn)) - math.log10(min(drawn))
    assert (hi - lo) - held <= 2 * max(0.1 * held, 0.1)  # the points fill the plot: margins are small
    assert [y for _, y in main_points(fig)] and inside(fig, main_points(fig))


def test_real_study_stopped_trials_do_not_widen_the_axis_but_stay_drawn(real):
    fig = mflops_figure(real)
    stopped = real.trials[real.trials["kind"] == "stopped early"]
    assert stopped["last_val_acc"].min() < real.trials["val_acc"].min()  # a stopped trial is worse than any done
    without = ReportData(**{**vars(real), "trials": real.trials[real.trials["kind"] != "stopped early"]})
    assert list(mflops_figure(without).layout.yaxis.range) == list(fig.layout.yaxis.range)
    panel = [tr for tr in fig.data if tr.name == "stopped early"]
    assert len(panel) == 1 and panel[0].visible in (None, True) and panel[0].yaxis == "y2"
    assert sorted(panel[0].x) == sorted(stopped["mflops"]) and fig.layout.yaxis2.type != "log"


def test_real_study_hover_and_front_table_tell_images_apart(real):
    fig = mflops_figure(real)
    texts = [s for tr in fig.data if tr.yaxis in (None, "y") and tr.text is not None for s in tr.text]
    done = real.trials[real.trials["kind"] == "complete"]
    for acc in done["val_acc"]:
        assert any(f"val {acc:.4f} ({round((1 - acc) * 216)} of 216 wrong)" in s for s in texts)
    assert any(re.search(r"test \d\.\d{4}", s) for s in texts)
    page = render(real)
    front = page.split("<h2>Pareto front</h2>", 1)[1]
    assert re.search(r"<td>\d\.\d{4} \(\d+ of 216 wrong\)</td>", front)
    assert "one image is 0.0046 of accuracy" in page


def make_study(tmp_path, rows, *, prune=None, objectives=("val_acc", "mflops")):
    """A study of hand-made trials: (val_acc or None when stopped at a rung, rung accuracy, MFLOPs, latency)."""
    storage = open_storage(f"sqlite:///{tmp_path / 'x.db'}")
    study = optuna.create_study(study_name="x", storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("resnas", {"objectives": list(objectives)})
    dist = {"k": optuna.distributions.CategoricalDistribution(list(range(len(rows))))}
    trials = []
    for k, (val, rung, mflops, latency) in enumerate(rows):
        attrs = {"arch": f"net{k}", "mflops": mflops, "params": 100 * k + 1, "spec": wrn(10, 1).to_json(),
                 "latency_ms": latency, "latency_device": "cpu"}
        if val is None:
            trials.append(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={"k": k},
                                                    distributions=dist, user_attrs={**attrs, "curve": [rung],
                                                                                    "stopped_at": 1}))
        else:
            trials.append(optuna.trial.create_trial(values=[val, mflops], params={"k": k}, distributions=dist,
                                                    user_attrs={**attrs, "curve": [rung, val], "val_acc": val,
                                                                "test_acc": val, "checkpoint": f"c{k}.pt"}))
    study.add_trials(trials)
    for trial, record in (prune or {}).items():
        study.set_user_attr(f"prune:{trial}", record)
    return collect(study)


def acc(k):  # a count of 216 digits validation images right
    return k / 216


ROWS = [(acc(200), acc(150), 0.5, 0.2), (acc(209), acc(160), 2.0, 0.3), (acc(211), acc(170), 8.0, 1.5),
        (acc(214), acc(180), 30.0, 0.9), (acc(205), acc(175), 20.0, 2.0),
        (None, acc(22), 1.0, 0.4), (None, acc(40), 40.0, 3.0)]


def test_front_is_a_staircase_of_error_falling_with_cost(tmp_path):
    data = make_study(tmp_path, ROWS)
    assert data.val_images == 216 and list(data.front["trial"]) == [0, 1, 2, 3]
    fig = mflops_figure(data)
    step = [tr for tr in fig.data if tr.name == "Pareto front"]
    assert len(step) == 1 and step[0].line.shape == "hv"
    xs, ys = list(step[0].x), list(step[0].y)
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True) and len(set(ys)) == 4
    # each step of a few images spans a visible share of the axis, not a flat line in the top 3%
    lo, hi = fig.layout.yaxis.range
    assert min(math.log10(a) - math.log10(b) for a, b in zip(ys, ys[1:], strict=False)) / (hi - lo) > 0.05
    done = [tr for tr in fig.data if tr.name == "complete"]  # no --color-by: one trace of the completed trials
    assert len(done) == 1 and list(done[0].marker.line.width).count(2.0) == 4  # the front's members, ringed


def test_latency_figure_rings_the_front_but_draws_no_staircase_off_its_objectives(tmp_path):
    data = make_study(tmp_path, ROWS)
    fig = dict(cost_figures(data, None))["fig-acc-latency"]
    assert fig.layout.yaxis.type == "log" and not [tr for tr in fig.data if tr.name == "Pareto front"]


def test_a_perfect_score_sits_half_an_image_below_one_error(tmp_path):
    data = make_study(tmp_path, [(acc(216), acc(101), 4.0, 1.0), (acc(211), acc(120), 1.0, 0.5),
                                 (acc(190), acc(90), 0.5, 0.3)])
    assert data.val_images == 216
    fig = mflops_figure(data)
    assert any(y == pytest.approx(0.5 / 216) for _, y in main_points(fig)) and inside(fig, main_points(fig))
    assert any("val 1.0000 (0 of 216 wrong)" in s for tr in fig.data for s in tr.text or ())


def test_pruning_arrows_have_distinct_points_inside_the_axes(tmp_path):
    record = {"checkpoint": "c3-pruned.pt", "removed": [{"stage": 1, "index": 1, "importance": 0.1}],
              "before": {"val_acc": acc(214), "test_acc": 0.98, "mflops": 30.0},
              "after_recalibration": {"val_acc": acc(160), "test_acc": 0.7, "mflops": 12.0},
              "after": {"val_acc": acc(212), "test_acc": 0.97, "mflops": 12.0}}
    data = make_study(tmp_path, ROWS, prune={3: record})
    fig = mflops_figure(data)
    arrow = [tr for tr in fig.data if tr.legendgroup == "pruned"]
    assert len(arrow) == 1
    points = list(zip(arrow[0].x, arrow[0].y, strict=True))
    assert len(set(points)) == 3 and inside(fig, points)
    before, after = points[0], points[2]
    lo, hi = fig.layout.yaxis.range  # before -> after is an arrow a reader sees, not a dot
    assert abs(math.log10(before[1]) - math.log10(after[1])) / (hi - lo) > 0.03 and after[0] < before[0]
    assert "val 0.7407 (56 of 216 wrong)" in arrow[0].text[1]


@pytest.mark.parametrize(("values", "n"), [([acc(k) for k in (214, 213, 200, 100)], 216), ([0.5, 0.25, 0.75], 4),
                                          ([0.91234567, 0.8123, 0.77], None), ([acc(214), acc(213)], None),
                                          ([1.0, 1.0, 1.0], None), ([acc(k) for k in (214, 212, 210)], 108)])
def test_split_size_is_the_least_common_denominator_of_the_accuracies(values, n):
    """The last case is the known limit: when every count is even, half the split is all the accuracies show."""
    assert split_size(values) == n


def grid_data() -> tuple[ReportData, pd.DataFrame]:
    trials = pd.DataFrame({
        "trial": [0, 1, 2, 3], "kind": ["complete"] * 4, "choice_k": [1, 1, 2, 2], "choice_seed": [0, 1, 0, 1],
        "depth": [10] * 4, "val_acc": [acc(200), acc(202), acc(212), acc(213)],
        "test_acc": [0.95, 0.96, 0.98, 0.985], "train_acc": [1.0, 0.99, 1.0, 1.0],
        "params": [100, 100, 400, 400], "mflops": [1.0, 1.0, 4.0, 4.0]})
    curves = pd.DataFrame({"trial": [0, 1, 2, 3], "ratio": [0.3] * 4, "removed": [1] * 4,
                           "mflops_cut": [0.3, 0.3, 0.32, 0.32], "val_acc_before": trials["val_acc"],
                           "val_acc": [acc(190), acc(195), acc(211), acc(210)], "test_acc": [0.9] * 4,
                           "random_val_acc": [0.2, 0.3, 0.5, 0.4]})
    data = ReportData("g", ("val_acc",), trials, pd.DataFrame(), pd.DataFrame(), {}, ["k", "seed"],
                      prune_curves=curves, grid=True, val_images=216, test_images=200)
    return data, grid.cell_table(data)


def test_grid_sweep_hover_tells_images_apart():
    data, table = grid_data()
    fig = grid.sweep_figure(data, table)
    texts = [s for tr in fig.data for s in tr.text]
    assert any("val acc 0.9838 ± 0.0033 (3.5 of 216 wrong)" in s for s in texts)
    assert "1 of 216 validation images = 0.0046" in fig.layout.yaxis.title.text


def test_grid_prune_figure_is_log_error_fitted_to_its_points():
    data, table = grid_data()
    fig = grid.prune_figure(data, table)
    assert fig.layout.yaxis.type == "log"
    points = [(x + 1, y) for tr in fig.data for x, y in zip(tr.x, tr.y, strict=True)]  # x is linear: shift off 0
    lo, hi = fig.layout.yaxis.range
    ys = [math.log10(y) for _, y in points]
    assert lo < min(ys) and max(ys) < hi and (max(ys) - min(ys)) / (hi - lo) > 0.75
    assert any(re.search(r"val 0\.\d{4}", s) for tr in fig.data for s in tr.text)
