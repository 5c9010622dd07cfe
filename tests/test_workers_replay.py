"""Many workers on one study, with the table replayed in every worker process (`--replay`): the invariants of the
many-worker benchmark (benchmarks/workers_replay.py) on a small case: no trial lost, no architecture trained from
the first epoch twice (promotions resume, duplicates copy), the budget met exactly."""

import pytest

from resnas import records as R
from resnas.cli import main
from resnas.data import DataConfig
from resnas.replay import Table
from resnas.search import SearchConfig, run_search
from resnas.storage import open_study
from resnas.train import TrainConfig


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return Table.synthetic("wrn").save(tmp_path_factory.mktemp("table") / "wrn.json.gz")


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_four_workers_replaying_lose_nothing_and_train_nothing_twice(tmp_path, table, storage, request):
    url = request.getfixturevalue("postgres").url if storage == "postgresql" else None
    config = SearchConfig(space="wrn", budget=60, workers=4, replay=str(table), storage=url, out_dir=str(tmp_path),
                          study=f"replay-{storage}")
    result = run_search(config, TrainConfig(epochs=9), DataConfig(), device="cpu")
    trials = open_study(result.study, out_dir=tmp_path, storage=url).get_trials(deepcopy=False)
    assert R.lost(trials) == [] and R.retrained(trials) == {}
    assert len([t for t in R.budget_trials(trials) if t.state in R.FINISHED]) == 60
    assert result.n_resumed > 0 and result.n_failed == 0  # promotions happened, across workers


@pytest.mark.parametrize("argv, words", [
    (["--space", "resnet"], "records space wrn over 9 epochs; this search is of space resnet over 9"),
    (["--space", "wrn", "--epochs", "3"], "this search is of space wrn over 3"),
])
def test_a_table_of_another_search_is_refused_before_anything_is_written(tmp_path, capsys, table, argv, words):
    code = main(["search", *argv, "--budget", "2", "--replay", str(table), "--out-dir", str(tmp_path / "studies")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not (tmp_path / "studies").exists()
