"""`resnas measure`: parameters, MFLOPs and latency of a preset, an ArchSpec JSON file or a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ... import checkpoint, estimate, guard
from ...measure import analytic_cost, count_params, default_input_size, measure_latency, thop_mflops
from ...models import build
from ...presets import resolve
from ...spec import ArchSpec, describe
from ...train import pick_device
from ..flags import add_arch, add_common, arch_text

LATENCY_WARMUP = 10  # measure_latency's default: passes before the timed ones


def arguments(p: argparse.ArgumentParser) -> None:
    add_arch(p, positional=True)
    p.add_argument("--input-size", type=int, help="image side; default 32 (CIFAR stem) or 224 (ImageNet stem)")
    p.add_argument("--in-channels", type=int)
    p.add_argument("--num-classes", type=int)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--max-params", type=float, help="refuse a network with more parameters (the memory guard "
                   "always applies; RESNAS_MEMORY_LIMIT=64G declares the memory it may assume, =off lifts it)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--time-anyway", action="store_true", help="time the latency even where it is estimated to take "
                   "over a minute")
    g.add_argument("--no-latency", action="store_true", help="parameters and MFLOPs only, from the spec: nothing is "
                   "built or timed")
    add_common(p)


def _measured(args: argparse.Namespace) -> tuple[ArchSpec, int]:
    """The spec a preset or spec file names, or the one a checkpoint stores (at the image size it was made for)."""
    name = arch_text(args)
    if Path(name).is_file() and not name.endswith(".json"):
        ckpt = checkpoint.load(name)
        return ckpt.spec, args.input_size or ckpt.input_size()
    spec = resolve(name, in_channels=args.in_channels, num_classes=args.num_classes)
    return spec, args.input_size or default_input_size(spec)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The analytic figures as soon as the size guard passes, then the latency, once its timing is estimated to
    fit the bound."""
    spec, size = _measured(args)
    device = pick_device(args.device)
    guard.check(spec, batch_size=args.batch_size, input_size=size, device=device, training=False,
                max_params=args.max_params)
    cost = analytic_cost(spec, size)
    if not args.json:
        print(f"{describe(spec)}  input {spec.in_channels}x{size}x{size}", flush=True)
        print(f"params {cost.params:,}   MFLOPs (conv+linear MACs) {cost.mflops:.2f}", flush=True)
    out = {"params": cost.params, "mflops": cost.mflops, "analytic_mflops": cost.mflops, "latency_ms": None,
           "latency_p90_ms": None, "device": None, "batch_size": args.batch_size, "input_size": size, "dtype": None,
           "mode": None, "spec": spec.to_dict()}
    if args.no_latency:
        return out
    if not args.time_anyway:  # the passes measure_latency runs (warm-up and repeats), and thop's one
        estimate.check_latency(spec, input_size=size, batch_size=args.batch_size, device=device,
                               passes=args.repeats + LATENCY_WARMUP + 1)
    model = build(spec)
    lat = measure_latency(model, in_channels=spec.in_channels, input_size=size, batch_size=args.batch_size,
                          device=device, repeats=args.repeats, warmup=LATENCY_WARMUP)
    out.update(params=count_params(model), mflops=thop_mflops(model, size, spec.in_channels), **lat.to_dict())
    if not args.json:
        print(f"latency {lat.latency_ms:.3f} ms median, {lat.latency_p90_ms:.3f} ms p90  "
              f"(batch {lat.batch_size}, {lat.dtype}, {lat.device})")
    return out
