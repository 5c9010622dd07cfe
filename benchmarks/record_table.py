"""Record a space's table: every architecture trained to the end once (a grid study without early stopping, each
epoch's validation accuracy kept), written as benchmarks/tables/SPACE-seedN.json.gz for search_replay.py.

    python benchmarks/record_table.py --space wrn --seed 0      # about 75 minutes on 2 cores (two seeds at once:
    python benchmarks/record_table.py --space wrn --seed 1      # one thread each, OMP_NUM_THREADS=1)

Resumable: run the same command again after an interruption and the study goes on where it stopped (the trial that
was running is retried). The grid study lives in --out-dir (default benchmarks/runs, not kept in git).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna

from resnas.data import DataConfig
from resnas.replay import Table
from resnas.search import EPOCHS, SearchConfig, run_search
from resnas.train import TrainConfig

HERE = Path(__file__).parent


def record(space: str, seed: int, out_dir: str, epochs: int = EPOCHS) -> Path:
    config = SearchConfig(space=space, sampler="grid", early_stopping=False, budget=10**6, out_dir=out_dir,
                          study=f"{space}-grid-seed{seed}", artifacts="none")
    result = run_search(config, TrainConfig(epochs=epochs, seed=seed), DataConfig(), progress=True)
    table = Table.from_study(optuna.load_study(study_name=result.study, storage=result.storage))
    return table.save(HERE / "tables" / f"{space}-seed{seed}.json.gz")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="wrn")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--out-dir", default=str(HERE / "runs"))
    args = p.parse_args()
    print(record(args.space, args.seed, args.out_dir))


if __name__ == "__main__":
    main()
