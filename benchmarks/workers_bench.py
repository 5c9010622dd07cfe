"""Training throughput of the machine's cores as one process or as one process per core (the search's default
worker layout on the CPU): images per second summed over processes, digits, real training steps.

    python benchmarks/workers_bench.py --presets wrn-10-1,wrn-16-2 --epochs 3

Each layout trains the same preset for the same epochs, one layout at a time (alternating rounds), so the ratio is
taken within one run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics

import torch

from resnas.data import DataConfig, load_data
from resnas.fit import fit
from resnas.presets import resolve
from resnas.train import TrainConfig


def images_per_s(preset: str, epochs: int, threads: int) -> float:
    torch.set_num_threads(threads)
    data = load_data(DataConfig(), torch.device("cpu"))
    spec = resolve(preset, in_channels=data.in_channels, num_classes=data.num_classes)
    fitted = fit(spec, data, TrainConfig(epochs=epochs))
    history = fitted.result.history[1:] or fitted.result.history  # the first epoch warms up
    return statistics.mean(r.images_per_s for r in history)


def layout(preset: str, epochs: int, processes: int, cores: int) -> float:
    with mp.get_context("spawn").Pool(processes) as pool:
        return sum(pool.starmap(images_per_s, [(preset, epochs, cores // processes)] * processes))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="wrn-10-1,wrn-16-2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    for preset in args.presets.split(","):
        ratios = []
        for _ in range(args.rounds):
            one = layout(preset, args.epochs, 1, cores)
            split = layout(preset, args.epochs, cores, cores)
            ratios.append(split / one)
            print(f"{preset}: one {cores}-thread process {one:.0f} img/s, {cores} one-thread processes "
                  f"{split:.0f} img/s in all: {split / one:.2f}x", flush=True)
        print(f"{preset}: {cores} one-thread processes / one {cores}-thread process: "
              f"{', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
