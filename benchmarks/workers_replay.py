"""Many workers on one study, simulated: N worker processes replay a table on one storage.

    python benchmarks/workers_replay.py --trials 5000 --workers 1,4,16 --storage sqlite,postgresql

The real `run_search` with `replay=TABLE` (`resnas search --replay TABLE`): the main process is worker 0 and spawns
N-1 more, each of which loads the table and replays its curves instead of training, so every other line of the
search (sampling, guard, duplicates, MO-ASHA, promotion, storage, checkpoints) runs in N processes against one
storage: a SQLite file, or a throw-away PostgreSQL server on a local port (as the tests start one). The table is
`replay.Table.synthetic("free")` (12,096 grid points of the shipped `free` space; costs are the specs' own, curves
made up from a hash of the choices), saved once under benchmarks/runs/.

Reported per run: ms of wall time per trial by trial number (the study's throughput: all workers together), trials
lost (failed without a retry, or left unfinished: must be 0), architectures trained from the first epoch by more
than one trial (must be 0; resuming a paused trial is no retraining), and the front's hypervolume at equal epochs
against one worker (fraction of the table's true front, in val_acc x log10 MFLOPs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))  # the throw-away PostgreSQL server the tests use
sys.path.insert(0, str(HERE))

import sqlalchemy  # noqa: E402
from conftest import Postgres  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from search_replay import at, hv  # noqa: E402

from resnas import records as R  # noqa: E402
from resnas.data import DataConfig  # noqa: E402
from resnas.replay import Table  # noqa: E402
from resnas.search import SearchConfig, run_search  # noqa: E402
from resnas.storage import open_study  # noqa: E402
from resnas.train import TrainConfig  # noqa: E402

TABLE = HERE / "runs" / "free-synthetic.json.gz"


def trajectory(trials, table: Table) -> list[tuple[int, float]]:
    """(epochs trained so far, fraction of the true front's hypervolume) in order of completion."""
    best, found, epochs, out = hv(table.true_front_points()), [], 0, []
    for t in sorted((t for t in trials if t.datetime_complete and R.counts(t)), key=lambda t: t.datetime_complete):
        epochs += R.epochs_trained(t)
        if R.fully_trained(t):
            found.append((t.user_attrs[R.VAL_ACC], t.user_attrs[R.MFLOPS]))
        out.append((epochs, hv(found) / best))
    return out


def one_run(table_path: Path, url: str | None, workers: int, trials: int, out: str) -> dict:
    table = Table.load(table_path)
    config = SearchConfig(space=table.space, budget=trials, workers=workers, storage=url, out_dir=out,
                          study=f"workers-{workers}", replay=str(table_path))
    start = time.perf_counter()
    result = run_search(config, TrainConfig(epochs=table.epochs, seed=table.seed), DataConfig(**table.data),
                        device="cpu")
    wall = time.perf_counter() - start
    study = open_study(result.study, out_dir=out, storage=url)
    done = study.get_trials(deepcopy=False)
    ends = sorted(t.datetime_complete.timestamp() for t in done if t.datetime_complete)
    return {"workers": workers, "wall": wall, "trials": len(done), "ends": ends,
            "lost": R.lost(done), "retrained": R.retrained(done), "traj": trajectory(done, table),
            "failed": sum(t.state == TrialState.FAIL for t in done), "overhead": result.overhead_share}


def buckets(ends: list[float], edges: list[int]) -> list[str]:
    out = []
    for a, b in zip(edges, edges[1:], strict=False):
        if b > len(ends):
            break
        out.append(f"{1000 * (ends[b - 1] - ends[max(a, 1) - 1]) / max(1, b - max(a, 1)):.1f}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=5000)
    p.add_argument("--workers", default="1,4,16")
    p.add_argument("--storage", default="sqlite,postgresql")
    p.add_argument("--table", type=Path, default=TABLE)
    args = p.parse_args()
    if not args.table.is_file():
        args.table.parent.mkdir(parents=True, exist_ok=True)
        Table.synthetic("free").save(args.table)
    edges = sorted({0, 100, *range(0, args.trials + 1, max(100, args.trials // 5)), args.trials})
    print(f"free space (synthetic table), budget {args.trials}; ms per trial (all workers) by trial number")
    print("| storage | workers | " + " | ".join(f"{a + 1}-{b}" for a, b in zip(edges, edges[1:], strict=False))
          + " | wall s | trials | lost | trained twice | HV at 1 worker's 25% / 50% / 100% epochs |")
    for storage in args.storage.split(","):
        server = None
        if storage == "postgresql":
            server = Postgres()
        try:
            runs = []
            for n in (int(w) for w in args.workers.split(",")):
                with tempfile.TemporaryDirectory() as out:
                    url = None if server is None else server.url
                    if server is not None:  # a fresh database per run
                        url = _fresh_database(server, f"w{n}")
                    runs.append(one_run(args.table, url, n, args.trials, out))
            base = runs[0]["traj"][-1][0]
            for r in runs:
                hvs = " / ".join(f"{at(r['traj'], int(f * base)):.3f}" for f in (0.25, 0.5, 1.0))
                print(f"| {storage} | {r['workers']} | " + " | ".join(buckets(r["ends"], edges))
                      + f" | {r['wall']:.0f} | {r['trials']} | {len(r['lost'])} | {len(r['retrained'])} | {hvs} |",
                      flush=True)
                if r["retrained"]:
                    print(f"  trained twice: {list(r['retrained'].values())[:5]}")
        finally:
            if server is not None:
                server.stop()


def _fresh_database(server, name: str) -> str:
    engine = sqlalchemy.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


if __name__ == "__main__":
    main()
