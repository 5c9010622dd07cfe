"""Start-up time: `resnas --version`, `resnas spaces`, a spec error (`resnas measure BAD.json`) and a search worker
process made ready to train, each as a ratio to `python -c "import torch"` measured in the same run.

    python benchmarks/startup_bench.py --rounds 7
    python benchmarks/startup_bench.py --rounds 7 --before /tmp/resnas-0.2   # a source tree of another version

Each round runs, for every case, `import torch` and then the case once per tree (the trees' order flips every
round); each case's time is divided by the `import torch` just before it, so that a change in the machine's load
between cases cancels out. The table gives median seconds and the median of those ratios. Commands run as `python -m
resnas ...` (what the `resnas` script runs) with PYTHONPATH set to the tree. The worker is spawned the way
resnas.search.loop starts one (a "spawn" context, the same arguments, a study the main process already made) and
timed until it reaches `_optimize`, where its first trial would begin; the spawned child first imports resnas.cli,
as it does when the parent is the `resnas` script (spawn re-imports the parent's main module). Only the standard
library is imported at the top of this file, because the spawned child imports it too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAD_SPEC = '{"family": "resnet", "widths": [16]}'  # no `blocks`: the spec fails validation
CASES = ("--version", "spaces", "spec error", "worker")


def _seconds(cmd: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}, expected {expect}: {done.stderr[-500:]}")
    return elapsed


def _env(tree: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def run_case(case: str, tree: Path, work: Path, out_dir: Path) -> float:
    """Seconds `case` takes with the resnas of `tree`, run from `work` (so that `-m` finds no other resnas)."""
    env, py = _env(tree), sys.executable
    if case == "--version":
        return _seconds([py, "-m", "resnas", "--version"], env, work)
    if case == "spaces":
        return _seconds([py, "-m", "resnas", "spaces"], env, work)
    if case == "spec error":
        return _seconds([py, "-m", "resnas", "measure", "bad.json"], env, work, expect=2)
    out = subprocess.run([py, __file__, "--worker-once", str(out_dir)], env=env, cwd=work, capture_output=True,
                         text=True)
    if out.returncode:
        raise SystemExit(f"worker timing failed in {tree}: {out.stderr[-800:]}")
    return json.loads(out.stdout.splitlines()[-1])["seconds"]


def _child(conn, args: tuple) -> None:
    """The spawned worker: resnas.search.loop._worker_main, its `_optimize` replaced by a signal that it is ready."""
    import resnas.cli  # noqa: F401  the `resnas` script's import, re-run by spawn as __mp_main__
    from resnas.search import loop

    loop._optimize = lambda *a, **k: conn.send("ready")
    loop._worker_main(*args)


def worker_once(out_dir: str) -> float:
    """Seconds from starting a spawned worker until it could train (in this tree, in a fresh study under out_dir)."""
    from resnas.data import DataConfig
    from resnas.search import EPOCHS, SearchConfig
    from resnas.search.study import create_study, storage_url
    from resnas.spaces import load_space
    from resnas.train import TrainConfig

    config, train, data = SearchConfig(out_dir=out_dir, workers=2), TrainConfig(epochs=EPOCHS), DataConfig()
    url = storage_url(config, data)
    create_study(config, train, data, load_space(config.space), url)  # as run_search does before its workers
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, (config, train, data, url, 1, "cpu", 1)), daemon=True)
    start = time.perf_counter()
    proc.start()
    if not parent.poll(600):
        raise SystemExit("the worker did not get ready in 600 s")
    parent.recv()
    elapsed = time.perf_counter() - start
    proc.join(60)
    return elapsed


def table(times: dict[str, dict[str, list[float]]], torch_s: dict[str, list[float]]) -> str:
    every = [t for ts in torch_s.values() for t in ts]
    lines = [f"`python -c \"import torch\"`: median {statistics.median(every):.2f} s over {len(every)} runs", "",
             "| case | " + " | ".join(f"{t} s | {t} / torch" for t in times) + " |",
             "|---|" + "---:|---:|" * len(times)]
    for case in CASES:
        cells = []
        for per_case in times.values():
            ratios = [s / t for s, t in zip(per_case[case], torch_s[case], strict=True)]
            cells += [f"{statistics.median(per_case[case]):.2f}", f"{statistics.median(ratios):.2f}x"]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--before", type=Path, help="a source tree of another resnas version, measured alongside")
    p.add_argument("--worker-once", metavar="OUT_DIR", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker_once:
        print(json.dumps({"seconds": worker_once(args.worker_once)}))
        return
    trees = {"before": args.before.resolve(), "after": ROOT} if args.before else {"after": ROOT}
    times = {name: {case: [] for case in CASES} for name in trees}
    torch_s: dict[str, list[float]] = {case: [] for case in CASES}  # the `import torch` run just before each case
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bad.json").write_text(BAD_SPEC)
        for r in range(args.rounds):
            order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
            for case in CASES:
                torch_s[case].append(_seconds([sys.executable, "-c", "import torch"], _env(None), work))
                for name, tree in order:
                    times[name][case].append(run_case(case, tree, work, work / f"{name}-{r}"))
            print(f"round {r + 1}: torch " + " ".join(f"{torch_s[c][-1]:.2f}" for c in CASES) + "; " + "; ".join(
                f"{name} " + " ".join(f"{times[name][c][-1]:.2f}" for c in CASES) for name in trees), flush=True)
    print(table(times, torch_s))


if __name__ == "__main__":
    main()
