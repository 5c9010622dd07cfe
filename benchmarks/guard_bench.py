"""How long the size guard and the time estimate take to refuse the hostile networks, and how the estimate of a
latency timing compares with the timing itself. The tests assert what makes them fast (tests/test_guard.py,
tests/test_estimate.py); this times it.

    python benchmarks/guard_bench.py                           # CPU
    python benchmarks/guard_bench.py --compare resnet-20,wrn-16-4,resnet50 --repeats 30
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time

from resnas import estimate, guard
from resnas.cli import main as cli
from resnas.errors import UserError
from resnas.measure import measure_latency
from resnas.models import build
from resnas.presets import preset
from resnas.spec import ArchSpec
from resnas.train import pick_device

DEEP = ArchSpec(blocks=(10000, 10000, 10000), widths=(16, 32, 64), in_channels=1)
WIDE = ArchSpec(blocks=(1,), widths=(100000,), in_channels=1)
LONG = ArchSpec(blocks=(1,), widths=(16,), kernels=(3,) * 5000, in_channels=1)
TRAIN = {"batch_size": 64, "input_size": 8, "training": True, "eval_batch_size": 1024}
MEASURE = {"batch_size": 1, "input_size": 32, "training": False}
GUARD_CASES = [("deep, train", DEEP, TRAIN, "16G"), ("wide, train", WIDE, TRAIN, "16G"),
               ("wide, measure", WIDE, MEASURE, "16G"), ("deep, measure", DEEP, MEASURE, "2G"),
               ("long branch, train", LONG, TRAIN, "2G")]


def seconds(run, *args, **kwargs) -> float:
    start = time.perf_counter()
    run(*args, **kwargs)
    return time.perf_counter() - start


def refused_by_guard(spec: ArchSpec, settings: dict, limit: str) -> None:
    os.environ[guard.ENV_LIMIT] = limit
    guard.footprint.cache_clear()
    with contextlib.suppress(UserError):
        guard.check(spec, device="cpu", **settings)
        raise SystemExit(f"{spec} was not refused")


def measure_refusal(path: str) -> None:
    os.environ[guard.ENV_LIMIT] = "64G"
    estimate.probe.cache_clear()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["measure", "--spec", path, "--device", "cpu"]) == 2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--compare", default="resnet-20,wrn-16-4,resnet50", help="presets whose estimate is compared "
                   "with their timing")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    guard.footprint(preset("resnet-20"), batch_size=2, input_size=8, training=True)  # meta kernels load once
    for name, spec, settings, limit in GUARD_CASES:
        print(f"guard refuses {name:<20} in {seconds(refused_by_guard, spec, settings, limit):.3f} s")
    for name, spec in (("deep", DEEP.replace(in_channels=3)), ("long branch", LONG.replace(in_channels=3))):
        path = f"/tmp/guard-bench-{name.replace(' ', '-')}.json"
        with open(path, "w") as f:
            f.write(spec.to_json())
        print(f"resnas measure refuses {name:<12} in {seconds(measure_refusal, path):.3f} s (in process)")
    os.environ.pop(guard.ENV_LIMIT, None)
    device = pick_device(args.device)
    for name in args.compare.split(","):
        spec = preset(name)
        size = 224 if spec.stem == "imagenet" else 32
        estimate.probe.cache_clear()
        passes = args.repeats + 10
        probe = {"input_size": size, "batch_size": 1, "device": str(device), "training": False}
        probe_s = seconds(estimate.probe, spec, **probe)
        per_mac = estimate.probe(spec, **probe)
        est = estimate.latency_estimate(spec, input_size=size, batch_size=1, passes=passes, device=device)
        predicted = est.macs * per_mac
        model = build(spec)
        timed = seconds(measure_latency, model, in_channels=3, input_size=size, device=device, repeats=args.repeats)
        print(f"{name:>10}: {passes} passes estimated {predicted:.2f} s (probe {probe_s:.2f} s), timed {timed:.2f} s: "
              f"estimate / timing {predicted / timed:.2f}")


if __name__ == "__main__":
    main()
