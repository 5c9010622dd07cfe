"""Study configs (studies/*.toml) and grid studies: loading, validation, flag overrides, a real grid run with
seed repeats, and the report's per-cell table."""

import json
from collections import Counter

import optuna
import pandas as pd
import pytest

from resnas.cli import main
from resnas.data import DataConfig
from resnas.models import build
from resnas.report import ReportData, collect, grid, render, write_report
from resnas.search import SearchConfig, run_search
from resnas.spaces import SpaceError
from resnas.storage import open_study
from resnas.studies import StudyConfigError, load_study_config, shipped_studies
from resnas.train import TrainConfig

# 2 named cells x a 2-way choice x 2 seeds = 8 trials of tiny nets, one epoch each
GRID = """
description = "test grid"
claim = "a claim"
[search]
sampler = "grid"
seeds = [0, 1]
early_stopping = false
[train]
epochs = 1
batch_size = 128
[fixed]
widths = [4, 8]
stem_width = 4
[choices]
shortcut = ["A", "B"]
[[cells]]
name = "small"
blocks = 1
[[cells]]
name = "deep"
blocks = 2
[report]
x = "cell"
series = "shortcut"
[[paper]]
where = { cell = "deep", shortcut = "A" }
value = 7.5
metric = "% test error"
data = "CIFAR-10"
source = "A et al., table 1"
"""


def write(tmp_path, text, name="g.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", shipped_studies())
def test_shipped_studies_load_and_every_cell_builds(name):
    config = load_study_config(name)
    space = config.space()
    assert config.search.sampler == "grid" and not config.search.early_stopping
    assert config.search.budget == space.size() * len(config.search.seeds) and len(config.search.seeds) >= 2
    assert config.data.dataset == "digits"
    specs = set()
    for params in _grid_points(space.grid()):
        spec = space.sample(optuna.trial.FixedTrial(params), in_channels=1, num_classes=10)
        build(spec)
        specs.add((spec.to_json(), json.dumps(space.training(optuna.trial.FixedTrial(params)))))
    assert len(specs) == space.size()  # every cell is a distinct experiment
    labels = {k: set(map(str, v)) for k, v in space.grid().items()}
    for entry in config.info["paper"]:  # a published number that matches no cell would never be shown
        assert all(str(v) in labels[k] for k, v in entry["where"].items()), entry


def _grid_points(g):
    points = [{}]
    for key, values in g.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def test_block_type_cells_have_comparable_parameter_counts():
    """The paper compared block types at comparable sizes (1.1M to 1.5M parameters on CIFAR), and deepening factors
    at a fixed size (2.2M)."""
    space = load_study_config("wrn-block-types").space()
    params = {}
    for cell in space.cells:
        spec = space.sample(optuna.trial.FixedTrial({"cell": cell["name"]}), in_channels=3, num_classes=10)
        params[cell["name"]] = sum(p.numel() for p in build(spec).parameters())
    types = [v for k, v in params.items() if k.startswith("B(")]
    depths = [v for k, v in params.items() if k.startswith("l=")]
    assert len(types) == 6 and min(types) > 1.1e6 and max(types) < 1.5e6
    assert len(depths) == 4 and max(depths) / min(depths) < 1.05


@pytest.mark.parametrize("text, match", [
    ("[search]\nsampler = 'grid'\nbogus = 1\n[fixed]\nwidths = [4]\nblocks = 1\n[choices]\nk = [1]\n",
     "unknown key search.bogus; allowed: space"),
    ("[search]\nbudget = 'many'\nspace = 'wrn'\n", r"search.budget = 'many' should be an integer"),
    ("[search]\nspace = 'wrn'\n[train]\nepochs = 0\n", r"\[train\] epochs must be an integer >= 1"),
    ("[search]\nspace = 'wrn'\n[choices]\nk = [1]\n", "either as search.space or as"),
    ("[search]\nspace = 'wrn'\n[report]\ncolour = 'k'\n", "unknown key report.colour; allowed: x, series"),
    ("[search]\nsampler = 'grid'\n[fixed]\nwidths = [4]\nblocks = 1\n[choices]\nk = [1]\n[report]\nx = 'depht'\n",
     "report.x = 'depht' is not a choice of this grid; choose from k, seed, depth, params, mflops"),
    ("[search]\nspace = 'wrn'\n[[paper]]\nwhere = {k = 1}\nvalue = 5\n", "needs metric, data and source"),
    ("[search]\nspace = 'wrn'\nseeds = [1, 1]\n", "seeds must be distinct"),
    ("[search]\nspace = 'wrn'\n[prune]\nratios = [1.5]\n", r"prune ratios are FLOPs cuts in \(0, 1\)"),
    ("[serch]\nspace = 'wrn'\n", "unknown key 'serch'"),
    ("[search]\nsampler = 'grid'\n[fixed]\nwidths = [4]\n[[cells]]\nblocks = 1\n", r"cells\[0\] needs a name"),
    ("[search]\nsampler = 'grid'\n[fixed]\nwidths = [4]\n[choices]\nblocks = [1]\n[[cells]]\nname = 'a'\n"
     "blocks = 2\n", "cell 'a' sets blocks, which .fixed. or .choices. also sets"),
    ("[search]\nsampler = 'grid'\n[fixed]\nwidths = [4]\n[[cells]]\nname = 'a'\nblocks = 1\n[[cells]]\n"
     "name = 'a'\nblocks = 2\n", "two cells share a name"),
    ("[search]\nsampler = 'grid'\n[fixed]\nwidths = [4]\nblocks = 1\n[choices]\nblock_sparsity = [0.0, 0.1]\n",
     "set fixed.gates = true"),
    ("[search]\nsampler = 'grid'\n[fixed]\nwidths = [4, 8]\n[[cells]]\nname = 'bad'\nblocks = 1\nkernels = [2]\n",
     "cell 'bad' makes an invalid architecture .* kernel sizes are odd integers"),
])
def test_bad_configs_name_the_file_and_key(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises((StudyConfigError, SpaceError), match=match) as err:
        load_study_config(str(path))
    assert str(path) in str(err.value)


def test_overrides_keep_a_grid_study_whole():
    config = load_study_config("shortcuts")
    assert config.search.budget == 4 * 3
    assert config.overridden(search={"seeds": (0, 1, 2, 3)}).search.budget == 4 * 4  # more seeds: more trials
    assert config.overridden(search={"seeds": (5,), "budget": 2}).search.budget == 2  # unless the budget is given
    assert config.overridden(train={"epochs": 3}).train.epochs == 3 and config.train.epochs == 15


def test_unknown_study_lists_the_shipped_ones(capsys):
    assert main(["search", "--config", "nonesuch", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "degradation" in err and "Traceback" not in err


def test_grid_study_with_seeds_report_and_flag_overrides(tmp_path, capsys):
    path = write(tmp_path, GRID)
    out_dir = tmp_path / "studies"
    # flags override the file: --epochs 2 (file: 1); the file's seeds, grid and early_stopping stay
    assert main(["search", "--config", str(path), "--epochs", "2", "--out-dir", str(out_dir), "--device", "cpu",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_complete"] == 8 and result["n_duplicates"] == 0 and result["n_pruned"] == 0
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{out_dir / 'g' / 'study.db'}")
    assert study.user_attrs["resnas"]["train"]["epochs"] == 2 and study.user_attrs["resnas"]["seeds"] == [0, 1]
    trials = study.get_trials()
    cells = Counter((t.params["cell"], t.params["shortcut"], t.params["seed"]) for t in trials)
    assert len(cells) == 8 and set(cells.values()) == {1}  # every cell once per seed, nothing repeated
    assert all(t.user_attrs["training"] == {"seed": t.params["seed"]} and len(t.user_attrs["curve"]) == 2
               and 0 <= t.user_attrs["train_acc"] <= 1 for t in trials)
    by_seed = {}  # the same architecture trained with two seeds gives two different results
    for t in trials:
        by_seed.setdefault((t.params["cell"], t.params["shortcut"]), []).append(t.user_attrs["curve"])
    assert any(a != b for a, b in by_seed.values())

    data = collect(study)
    table = grid.cell_table(data)
    assert len(table) == 4 and set(table["n"]) == {2}
    for _, row in table.iterrows():
        mine = [t.user_attrs["val_acc"] for t in trials
                if (t.params["cell"], t.params["shortcut"]) == (row["choice_cell"], row["choice_shortcut"])]
        assert row["val_acc_mean"] == pytest.approx(sum(mine) / 2)
        assert row["val_acc_std"] == pytest.approx(pd.Series(mine).std())
    paper = dict(zip(zip(table["choice_cell"], table["choice_shortcut"], strict=True), table["paper"], strict=True))
    assert paper[("deep", "A")].startswith("7.5 % test error (CIFAR-10; A et al., table 1)")
    assert paper[("deep", "B")] == paper[("small", "A")] == ""
    page = render(data)
    assert "fig-grid-sweep" in page and "a claim" in page and "their data, not ours" in page

    written = write_report("g", out_dir=str(out_dir), reports_dir=str(tmp_path / "reports"))
    cells_csv = pd.read_csv(written["cells_csv"])
    assert len(cells_csv) == 4 and "| deep | A | 2 |" in written["markdown"]
    # resuming with the same file adds nothing and prints the per-cell table; other seeds make a different study
    capsys.readouterr()
    assert main(["search", "--config", str(path), "--epochs", "2", "--out-dir", str(out_dir), "--device", "cpu",
                 "--quiet"]) == 0
    assert len(study.get_trials()) == 8 and "| deep | A | 2 |" in capsys.readouterr().out
    assert main(["search", "--config", str(path), "--seeds", "0,1,2", "--out-dir", str(out_dir), "--json"]) == 2
    assert "different" in capsys.readouterr().err


def test_a_shipped_study_runs_on_cifar10_files(tmp_path, cifar_files, capsys):
    """The same file takes --dataset cifar10: a study of its own, 3-channel 32x32 nets, CIFAR read from disk."""
    data_dir = cifar_files(tmp_path / "data", n_train=60)
    code = main(["search", "--config", "shortcuts", "--dataset", "cifar10", "--data-dir", str(data_dir),
                 "--val-fraction", "0.25", "--budget", "2", "--epochs", "1", "--out-dir", str(tmp_path / "studies"),
                 "--device", "cpu", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["study"] == "shortcuts-cifar10" and result["n_complete"] == 2
    study = optuna.load_study(study_name="shortcuts-cifar10", storage=result["storage"])
    assert study.user_attrs["resnas"]["data"]["dataset"] == "cifar10"
    assert all(json.loads(t.user_attrs["spec"])["in_channels"] == 3 for t in study.trials)
    assert study.user_attrs["study_config"]["paper"][0]["data"] == "ImageNet"


def test_prune_study_records_curves_per_trial(tmp_path):
    text = GRID.replace('[choices]\nshortcut = ["A", "B"]', '[choices]\nblock_sparsity = [0.0, 0.5]').replace(
        'stem_width = 4', 'stem_width = 4\ngates = true\nshortcut = "B"').replace('seeds = [0, 1]', 'seeds = [0]')
    text = text.replace('series = "shortcut"', 'series = "block_sparsity"').replace(
        '[train]', '[prune]\nratios = [0.1, 0.99]\n[train]')
    text = text.replace('name = "deep"\nblocks = 2', 'name = "deep"\nblocks = 3').replace(
        'where = { cell = "deep", shortcut = "A" }', 'where = { cell = "deep" }')
    config = load_study_config(str(write(tmp_path, text)))
    config = config.overridden(search={"out_dir": str(tmp_path / "studies")})
    result = run_search(config.search, config.train, config.data, device="cpu", info=config.info)
    assert result.n_complete == 4
    study = optuna.load_study(study_name="g", storage=result.storage)
    for t in study.trials:
        assert t.user_attrs["training"]["block_sparsity"] == t.params["block_sparsity"]
        ok, unreachable = t.user_attrs["prune"]
        assert "cannot reach" in unreachable["error"]  # 99% fewer FLOPs: more than the removable blocks hold
        if t.params["cell"] == "small":  # one block per stage: nothing is removable
            assert "error" in ok
        else:
            assert ok["mflops_cut"] >= 0.1 and ok["removed"] >= 1 and 0 <= ok["random_val_acc"] <= 1
    data = collect(study)
    table = grid.cell_table(data)
    assert {"cut@0.1", "pruned@0.1", "random@0.1"} <= set(table.columns)
    assert table.loc[table["choice_cell"] == "deep", "cut@0.1"].notna().all()
    assert "fig-grid-prune" in render(data)


def test_cell_table_on_a_hand_made_frame():
    trials = pd.DataFrame({
        "trial": [0, 1, 2, 3, 4], "kind": ["complete"] * 4 + ["failed"],
        "choice_k": [1, 1, 2, 2, 2], "choice_seed": [0, 1, 0, 1, 2], "depth": [10] * 5,
        "val_acc": [0.5, 0.7, 0.9, 0.9, None], "test_acc": [0.4, 0.6, 0.8, 1.0, None],
        "train_acc": [None] * 5, "params": [100, 100, 400, 400, 400], "mflops": [1.0, 1.0, 4.0, 4.0, 4.0]})
    data = ReportData("s", ("val_acc",), trials, pd.DataFrame(), pd.DataFrame(), {}, ["k", "seed"],
                      info={"paper": [{"where": {"k": 2}, "value": 4.0, "metric": "err", "data": "C", "source": "S"}]})
    table = grid.cell_table(data).set_index("choice_k")
    assert list(table["n"]) == [2, 2]  # the failed trial is left out
    assert table.loc[1, "val_acc_mean"] == pytest.approx(0.6) and table.loc[1, "val_acc_std"] == pytest.approx(0.1414,
                                                                                                               abs=1e-4)
    assert table.loc[2, "test_acc_std"] == pytest.approx(0.1414, abs=1e-4)
    assert table.loc[2, "paper"] == "4 err (C; S)" and table.loc[1, "paper"] == ""
    assert "| 2 | 2 | 10 | 400 | 4.000 | 0.9000 ± 0.0000 |" in grid.table_markdown(data, grid.cell_table(data))


def test_other_sizes_recorded_for_gap_heads_and_tabled(tmp_path):
    space = tmp_path / "heads.toml"
    space.write_text("[fixed]\nwidths = [4, 8]\nstem_width = 4\nblocks = 1\ninput_size = 8\n"
                     "[choices]\nhead = ['gap', 'flatten']\n")
    config = SearchConfig(space=str(space), sampler="grid", budget=2, out_dir=str(tmp_path / "st"),
                          early_stopping=False, other_sizes=(6, 12))
    run_search(config, TrainConfig(epochs=1), DataConfig())
    study = open_study("heads", out_dir=tmp_path / "st")
    at_size = {t.params["head"]: t.user_attrs.get("acc_at_size") for t in study.get_trials()}
    assert set(at_size["gap"]) == {"6", "12"} and all(0 <= v <= 1 for v in at_size["gap"].values())
    assert at_size["flatten"] is None  # a flatten head takes 8x8 inputs only
    data = collect(study)
    table = grid.cell_table(data)
    gap = table[table["choice_head"] == "gap"].iloc[0]
    assert gap["test_acc_at_12_mean"] == pytest.approx(at_size["gap"]["12"])
    assert "test acc at 6x6 px" in grid.table_markdown(data, table).splitlines()[0]
