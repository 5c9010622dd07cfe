"""The main job (`resnas search --space wrn --budget 50`, digits, CPU) as resnas 0.1 ran it and as it runs now, in
alternating rounds of one run: wall time, epochs trained, the front's hypervolume as a fraction of the true
front's (the recorded table of the space, training seed 0, is the main job's own world), and the share of the trials'
wall time spent outside training (the summary's `overhead_share`: sampling, the size guard, latency timing, storage,
checkpoints; resnas 0.1 did not record it).

    python benchmarks/main_job.py --rounds 1

resnas 0.1: one 2-thread process, a trial MO-ASHA stopped is stopped for good (--workers 1 --paused drop).
Now: the defaults (one 1-thread worker per core, stopped trials paused and promoted).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search_replay import hv

from resnas.replay import Table

VARIANTS = {"0.1": ["--workers", "1", "--paused", "drop"], "now": []}


def one_run(extra: list[str], seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "resnas", "search", "--space", "wrn", "--budget", "50", "--seed",
                               str(seed), "--out-dir", out, "--json", *extra], check=True, capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
    result = json.loads(done.stdout)
    return {"wall_s": wall, "epochs": result["epochs_trained"], "overhead": result.get("overhead_share"),
            "front": [(p["val_acc"], p["mflops"]) for p in result["pareto"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="the search's sampler seed")
    p.add_argument("--table", default=str(Path(__file__).parent / "tables" / "wrn-seed0.json.gz"))
    p.add_argument("--variants", default=",".join(VARIANTS), help="which of " + ", ".join(VARIANTS))
    args = p.parse_args()
    variants = {v: VARIANTS[v] for v in args.variants.split(",")}
    best = hv(Table.load(args.table).true_front_points())
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for name, extra in variants.items():
            run = one_run(extra, args.seed)
            run["hv_fraction"] = hv(run["front"]) / best
            runs[name].append(run)
            print(f"round {r} {name}: {run['wall_s']:.0f} s, {run['epochs']} epochs, front {len(run['front'])} "
                  f"nets, hypervolume {run['hv_fraction']:.4f} of the true front"
                  + (f", {run['overhead']:.1%} of trial time outside training" if run["overhead"] is not None else ""),
                  flush=True)
    if len(runs) == 2:
        ratio = [n["wall_s"] / o["wall_s"] for n, o in zip(runs["now"], runs["0.1"], strict=True)]
        print(f"wall time now / 0.1: {', '.join(f'{x:.2f}' for x in ratio)}")


if __name__ == "__main__":
    main()
