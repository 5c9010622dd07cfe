"""Search benchmarks on digits, each search a real `run_search` into a throw-away folder.

    python benchmarks/search_bench.py early-stopping            # the same search with and without MO-ASHA
    python benchmarks/search_bench.py samplers --seeds 0,1,2    # NSGA-II and TPE vs random, hypervolume
    python benchmarks/search_bench.py samplers --parallel 9     # searches side by side, one thread each

Hypervolume is taken in (validation error, log10 MFLOPs), bounded by error 1 and 1000 MFLOPs (above every
architecture of the shipped spaces on digits), so all runs share one reference. Overhead is the share of a
completed trial's wall time spent outside train() (sampling, cost, latency, test evaluation, checkpoint,
storage) and outside the training steps (the same plus per-epoch validation).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import optuna
import torch

from resnas.data import DataConfig
from resnas.pareto import hypervolume_2d
from resnas.search import SearchConfig, run_search
from resnas.train import TrainConfig


def one_search(config: SearchConfig, epochs: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        result = run_search(replace(config, out_dir=out), TrainConfig(epochs=epochs), DataConfig(), device="cpu")
        trials = optuna.load_study(study_name=result.study, storage=result.storage).get_trials()
    timings = [t.user_attrs["timing"] for t in trials if "timing" in t.user_attrs]
    total = sum(t["total"] for t in timings)
    return {"sampler": config.sampler, "seed": config.seed, "early_stopping": config.early_stopping,
            "seconds": result.seconds, "epochs": result.epochs_trained, "n_pruned": result.n_pruned,
            "best_val_acc": max((p["val_acc"] for p in result.pareto), default=0.0),
            "front": [(p["val_acc"], p["mflops"]) for p in result.pareto],
            "all_mflops": [t.user_attrs["mflops"] for t in trials if "mflops" in t.user_attrs],
            "outside_train": 1 - sum(t["train"] for t in timings) / total if total else None,
            "outside_steps": 1 - sum(t["steps"] for t in timings) / total if total else None}


def run_all(configs: list[SearchConfig], epochs: int, parallel: int) -> list[dict]:
    if parallel <= 1:
        runs = []
        for c in configs:  # print each run as it ends: a long benchmark shows progress
            runs.append(one_search(c, epochs, torch.get_num_threads()))
            add_hypervolume([runs[-1]], REFERENCE_MFLOPS)
            print(f"  done: {c.sampler} seed {c.seed} early stopping {c.early_stopping}: hypervolume "
                  f"{runs[-1]['hypervolume']:.4f} (reference {REFERENCE_MFLOPS:g} MFLOPs)", flush=True)
        return runs
    with ProcessPoolExecutor(parallel) as pool:
        return list(pool.map(one_search, configs, [epochs] * len(configs), [1] * len(configs)))


REFERENCE_MFLOPS = 1000.0  # above every architecture of the shipped spaces on 8x8 digits


def add_hypervolume(runs: list[dict], ref_mflops: float = REFERENCE_MFLOPS) -> None:
    ref = math.log10(ref_mflops)
    for r in runs:
        r["hypervolume"] = hypervolume_2d([(1 - a, math.log10(m)) for a, m in r["front"]], (1.0, ref))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["early-stopping", "samplers"])
    p.add_argument("--space", default="wrn")
    p.add_argument("--budget", type=int, default=50)
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--seeds", default="0")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--json-out")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = SearchConfig(space=args.space, budget=args.budget)
    if args.what == "early-stopping":
        configs = [replace(base, seed=s, early_stopping=e) for s in seeds for e in (True, False)]
    else:
        configs = [replace(base, seed=s, sampler=m) for s in seeds for m in ("random", "nsga2", "tpe")]
    runs = run_all(configs, args.epochs, args.parallel)
    add_hypervolume(runs)
    for r in runs:
        print(f"sampler {r['sampler']:<6} seed {r['seed']}  early stopping {str(r['early_stopping']):<5}  "
              f"{r['epochs']:4d} epochs  {r['seconds']:7.1f} s  pruned {r['n_pruned']:3d}  best val acc "
              f"{r['best_val_acc']:.4f}  hypervolume {r['hypervolume']:.4f}  outside train() "
              f"{r['outside_train']:.1%}  outside steps {r['outside_steps']:.1%}")
    if args.what == "early-stopping":
        for s in seeds:
            on, off = (next(r for r in runs if r["seed"] == s and r["early_stopping"] is e) for e in (True, False))
            print(f"seed {s}: with / without early stopping: epochs {on['epochs'] / off['epochs']:.2f}x, wall time "
                  f"{on['seconds'] / off['seconds']:.2f}x, best val acc {on['best_val_acc']:.4f} vs "
                  f"{off['best_val_acc']:.4f}, hypervolume {on['hypervolume']:.4f} vs {off['hypervolume']:.4f}")
    else:
        for m in ("random", "nsga2", "tpe"):
            hv = [r["hypervolume"] for r in runs if r["sampler"] == m]
            print(f"{m:<6} hypervolume mean {statistics.mean(hv):.4f}  sd {statistics.pstdev(hv):.4f}  "
                  f"over seeds {seeds}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
