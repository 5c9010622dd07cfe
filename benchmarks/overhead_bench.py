"""The search's own cost per trial (everything but training), by trial number, before and after a change, in one run.

    python benchmarks/overhead_bench.py --trials 300 --before 9073fd5          # old code vs this checkout
    python benchmarks/overhead_bench.py --trials 10000 --rounds 1                # this checkout only, to 10^4 trials

The real `run_search` over the shipped `free` space (12,096 grid points), one worker, SQLite storage (or
`--storage postgresql://...`), with training replayed from a synthetic table (`replay.Table.synthetic`: costs are
the specs' own, curves made up from a hash of the choices) and the recorded latency in place of timing. Everything
else runs as in a real search: sampling, the size guard, costs, duplicate and paused lookups, MO-ASHA, promotion,
checkpoints, artifact uploads, storage writes. A trial's overhead is the wall time between two trials' completions
less the time spent inside `fit` (the replay, which builds the model on the meta device). Each round runs each code
version once, alternating, in its own process (`--before REV` checks that revision out into a temporary worktree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TABLE = HERE / "runs" / "free-synthetic.json.gz"


def child(args: argparse.Namespace) -> None:
    """Runs in a subprocess whose PYTHONPATH picks the code version: one search, then JSON on stdout."""
    from resnas.data import DataConfig
    from resnas.replay import ReplayFit, Table
    from resnas.search import SearchConfig, run_search
    from resnas.storage import open_study
    from resnas.train import TrainConfig

    table = Table.load(args.table)
    replay = ReplayFit(table)
    fits: list[tuple[float, float]] = []  # (end, seconds) of every fit call

    def timed_fit(*a, **k):
        start = time.perf_counter()
        try:
            return replay(*a, **k)
        finally:
            fits.append((time.perf_counter(), time.perf_counter() - start))

    with tempfile.TemporaryDirectory() as out:
        storage = args.storage if args.storage != "sqlite" else None
        config = SearchConfig(space=table.space, budget=args.trials, seed=args.seed, out_dir=out, storage=storage,
                              study=f"overhead-{os.getpid()}", workers=1)
        start = time.perf_counter()
        result = run_search(config, TrainConfig(epochs=table.epochs, seed=table.seed), DataConfig(**table.data),
                            device="cpu", fit=timed_fit, latency=replay.latency)
        wall = time.perf_counter() - start
        trials = open_study(result.study, out_dir=out, storage=storage).get_trials(deepcopy=False)
    ends = sorted(t.datetime_complete.timestamp() for t in trials if t.datetime_complete)
    print(json.dumps({"wall": wall, "fit": sum(s for _, s in fits), "n_trials": len(trials),
                      "n_counted": result.n_complete + result.n_pruned, "ends": ends,
                      "fits": [(time.time() - (time.perf_counter() - e), s) for e, s in fits]}))


def run(src: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", "--table", str(args.table), "--trials", str(args.trials),
           "--storage", args.storage, "--seed", str(args.seed)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=src)
    return json.loads(out.stdout.strip().splitlines()[-1])


def per_bucket(doc: dict, edges: list[int]) -> list[float]:
    """ms of overhead per trial for trials completed in each bucket of trial order (edges: completion indices)."""
    ends, fits = doc["ends"], doc["fits"]
    out = []
    for a, b in zip(edges, edges[1:], strict=False):
        if b > len(ends):
            break
        t0, t1 = ends[a - 1] if a else ends[0], ends[b - 1]
        fit = sum(s for e, s in fits if t0 < e <= t1)
        out.append(1000 * (t1 - t0 - fit) / max(1, b - a - (0 if a else 1)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--before", help="a git revision to compare against (checked out into a temporary worktree)")
    p.add_argument("--storage", default="sqlite", help="sqlite (a file in a temporary folder) or an RDB URL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table", type=Path, default=TABLE)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if not args.table.is_file():
        sys.path.insert(0, str(ROOT))
        from resnas.replay import Table
        args.table.parent.mkdir(parents=True, exist_ok=True)
        Table.synthetic("free").save(args.table)
    versions = {"now": ROOT}
    tmp = None
    if args.before:
        tmp = tempfile.mkdtemp(prefix="resnas-before-")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp, args.before], check=True,
                       capture_output=True)
        versions = {args.before: Path(tmp), "now": ROOT}
    edges = sorted(e for e in {0, 10, 100, *range(0, args.trials + 1, max(100, args.trials // 10)), args.trials}
                   if e <= args.trials)
    results: dict[str, list[dict]] = {v: [] for v in versions}
    try:
        for _ in range(args.rounds):
            for name, src in versions.items():
                results[name].append(run(src, args))
    finally:
        if tmp:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp], check=False)
    print(f"free space, {args.trials} trials, storage {args.storage}, {args.rounds} round(s); ms per trial outside fit")
    header = [f"{a + 1}-{b}" for a, b in zip(edges, edges[1:], strict=False)]
    print("| version | " + " | ".join(header) + " | whole run | trials (counted) |")
    print("|---" * (len(header) + 3) + "|")
    for name, docs in results.items():
        buckets = [statistics.median(col) for col in zip(*(per_bucket(d, edges) for d in docs), strict=False)]
        whole = statistics.median(1000 * (d["wall"] - d["fit"]) / max(1, d["n_trials"]) for d in docs)
        print(f"| {name} | " + " | ".join(f"{b:.1f}" for b in buckets) + f" | {whole:.1f} | "
              f"{docs[0]['n_trials']} ({docs[0]['n_counted']}) |")


if __name__ == "__main__":
    main()
