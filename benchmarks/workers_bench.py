"""Trials per minute with 1 vs N local workers on one study (digits, the wrn space, SQLite storage).

    python benchmarks/workers_bench.py --workers 1,3 --budget 12

On a 2-core machine expect roughly flat throughput: the point of several workers there is correctness (the
budget is shared exactly); the speed-up comes with one worker per GPU or machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", default="1,3")
    p.add_argument("--budget", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    for n in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "resnas.cli", "search", "--space", "wrn", "--budget",
                            str(args.budget), "--epochs", str(args.epochs), "--no-early-stopping", "--workers", str(n),
                            "--out-dir", out, "--quiet", "--sampler", "random"], check=True)
            minutes = (time.perf_counter() - start) / 60
        print(f"{n} worker(s): {args.budget} trials in {minutes * 60:.0f} s = {args.budget / minutes:.1f} trials/min")


if __name__ == "__main__":
    main()
