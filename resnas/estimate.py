"""How long a network will take on this device, estimated before it is built, so that a valid but enormous network
ends in one line instead of minutes (or hours) of silence.

The probe is the network itself, shrunk: the same stem, widths, resolutions and head, with one block a stage and
at most three convolutions a branch (dense and OSA stages: two units, three convolutions a module). A few passes of
it are timed on the device, and its seconds per multiply-accumulate are scaled to the whole network's MACs, which
`analytic_cost` counts from the spec alone. Where even a pessimistic machine (SLOW_MACS multiply-accumulates and
SLOW_LAYER seconds a layer) would finish inside the bound, nothing is probed at all: the networks of a search
cost it no time.

`check_latency` guards `resnas measure` (a bound of LATENCY_BOUND seconds for the timing); `check_epoch` guards
`resnas train` and search trials against a network whose one epoch would take longer than RESNAS_EPOCH_LIMIT
(default an hour; `2h`, `90m`, seconds, or `off`).
"""

from __future__ import annotations

import functools
import math
import os
import re
import statistics
import time
from dataclasses import dataclass

import torch

from .errors import UserError
from .measure import analytic_cost, device_name
from .models import build
from .spec import ArchSpec, describe

LATENCY_BOUND = 60.0  # seconds `resnas measure` may spend timing before it asks for --time-anyway
ENV_EPOCH = "RESNAS_EPOCH_LIMIT"
EPOCH_LIMIT = 3600.0  # seconds one training epoch may be estimated to take
SLOW_MACS = 1e9  # multiply-accumulates a second of a slow device (one idle core here ran small convs at 14-36e9)
SLOW_LAYER = 1e-4  # seconds a layer costs beyond its arithmetic (Python dispatch is ~1e-5 on a CPU)
PROBE_PASSES = 3  # timed passes of the miniature at least, after one warm-up; the median counts
PROBE_SECONDS = 0.25  # ... and as many more (up to 100) as fit in this, so that it sees the machine's load
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Estimate:
    seconds: float
    macs: float  # multiply-accumulates of the forward passes estimated (a training step's backward adds ~2x)
    rate: float | None  # multiply-accumulates a second the miniature ran at; None where it was not probed

    def words(self) -> str:
        rate = f" at the {self.rate / 1e9:.3g} GMAC/s a shrunken copy ran at here" if self.rate else ""
        return f"about {duration(self.seconds)} ({self.macs / 1e9:,.4g} GMAC{rate})"


def miniature(spec: ArchSpec) -> ArchSpec:
    """The network with its stages cut short: what the probe times."""
    if spec.family == "residual":
        return spec.replace(blocks=(1,) * len(spec.blocks), kernels=spec.kernels[:3])
    if spec.family == "dense":
        return spec.replace(blocks=tuple(min(n, 2) for n in spec.blocks))
    return spec.replace(blocks=(1,) * len(spec.blocks), osa_convs=min(spec.osa_convs, 3))


def _layers(spec: ArchSpec) -> int:
    """Operators one forward pass runs, generously: a conv, a norm, an activation and a join per weighted layer."""
    return 4 * spec.depth


@functools.lru_cache(maxsize=64)
def probe(spec: ArchSpec, *, input_size: int, batch_size: int, device: str, training: bool) -> float:
    """Seconds per multiply-accumulate of `spec`'s miniature on `device`, on the threads the real work will have:
    forward passes, or when `training` a forward and backward pass (per forward MAC). The median of a quarter of a
    second of passes counts: a machine busy with other work slows the estimate as it will slow the work (on this
    project's shared 2-core machine a two-thread 3x3 convolution took 25 ms while other jobs ran, 0.06 ms alone),
    and a single pass is at the mercy of the moment."""
    mini = miniature(spec)
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build(mini).to(dev).train(training)
    x = torch.randn(batch_size, spec.in_channels, input_size, input_size, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def one_pass() -> float:
        sync()
        start = time.perf_counter()
        with torch.set_grad_enabled(training):
            out = model(x)
            if training:
                out.float().sum().backward()
        sync()
        return time.perf_counter() - start

    warm_until = time.perf_counter() + PROBE_SECONDS / 2
    one_pass()  # warm-up: kernels chosen, memory allocated, threads woken (a CPU's first passes are slow)
    while time.perf_counter() < warm_until:
        one_pass()
    times = [one_pass() for _ in range(PROBE_PASSES)]
    while sum(times) < PROBE_SECONDS and len(times) < 100:
        times.append(one_pass())
    return statistics.median(times) / (analytic_cost(mini, input_size).mflops * 1e6 * batch_size)


def _estimate(spec: ArchSpec, *, input_size: int, batch_size: int, passes: float, training: bool,
              device: torch.device, bound: float) -> Estimate:
    macs = analytic_cost(spec, input_size).mflops * 1e6 * batch_size * passes
    backward = 3 if training else 1  # a backward pass costs about twice the forward
    if macs * backward / SLOW_MACS + passes * backward * _layers(spec) * SLOW_LAYER < bound:
        return Estimate(seconds=0.0, macs=macs, rate=None)  # inside the bound on any device
    per_mac = probe(spec, input_size=input_size, batch_size=batch_size, device=str(device), training=training)
    return Estimate(seconds=macs * per_mac, macs=macs, rate=1 / per_mac)


def latency_estimate(spec: ArchSpec, *, input_size: int, batch_size: int, passes: int,
                     device: torch.device | str) -> Estimate:
    """What `passes` forward passes at `batch_size` take (the latency timing's warm-up and repeats)."""
    return _estimate(spec, input_size=input_size, batch_size=batch_size, passes=passes, training=False,
                     device=torch.device(device), bound=LATENCY_BOUND)


def check_latency(spec: ArchSpec, *, input_size: int, batch_size: int, passes: int,
                  device: torch.device | str) -> Estimate:
    """The estimate, or a one-line UserError when timing would take over LATENCY_BOUND seconds."""
    est = latency_estimate(spec, input_size=input_size, batch_size=batch_size, passes=passes, device=device)
    if est.seconds > LATENCY_BOUND:
        raise UserError(f"{describe(spec)}: timing its latency ({passes} forward passes at batch {batch_size} on "
                        f"{input_size}x{input_size} inputs on {device_name(torch.device(device))}) would take "
                        f"{est.words()}, over the {LATENCY_BOUND:.0f} s bound; pass --time-anyway to time it, or "
                        "--no-latency for its parameters and MFLOPs alone")
    return est


def epoch_estimate(spec: ArchSpec, *, input_size: int, batch_size: int, train_images: int, eval_images: int,
                   device: torch.device | str) -> Estimate:
    """One training epoch: its SGD steps on `train_images`, then the evaluation of `eval_images` (a forward pass,
    counted as a third of a step)."""
    passes = math.ceil(train_images / batch_size) + eval_images / batch_size / 3
    return _estimate(spec, input_size=input_size, batch_size=batch_size, passes=passes, training=True,
                     device=torch.device(device), bound=epoch_limit()[0] or math.inf)


def check_epoch(spec: ArchSpec, *, input_size: int, batch_size: int, train_images: int, eval_images: int,
                device: torch.device | str) -> Estimate | None:
    """The estimate of one epoch, or a one-line UserError when it is over the limit (see `epoch_limit`); None
    when the limit is off."""
    limit, source = epoch_limit()
    if limit is None:
        return None
    est = epoch_estimate(spec, input_size=input_size, batch_size=batch_size, train_images=train_images,
                         eval_images=eval_images, device=device)
    if est.seconds > limit:
        raise UserError(f"{describe(spec)}: one training epoch ({train_images:,} images at batch {batch_size} on "
                        f"{input_size}x{input_size} inputs, then {eval_images:,} evaluated, on "
                        f"{device_name(torch.device(device))}) would take {est.words()}, over the "
                        f"{duration(limit)} limit ({source}); to train it anyway set {ENV_EPOCH}=TIME (e.g. 12h) or "
                        f"{ENV_EPOCH}=off")
    return est


def epoch_limit() -> tuple[float | None, str]:
    """Seconds one epoch may take (None: unchecked) and where the figure comes from."""
    declared = os.environ.get(ENV_EPOCH, "").strip()
    if declared.lower() == "off":
        return None, f"{ENV_EPOCH}=off"
    if not declared:
        return EPOCH_LIMIT, "the default"
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh]?)", declared, flags=re.IGNORECASE)
    if not m or float(m[1]) <= 0:
        raise UserError(f"{ENV_EPOCH} must be a time such as 2h, 90m or 600 (seconds), or off; got {declared!r}")
    return float(m[1]) * _UNITS[m[2].lower()], f"{ENV_EPOCH}={declared}"


def duration(seconds: float) -> str:
    """Seconds in the unit a person reads them in: 45 s, 3.5 min, 2.1 h, 40 days."""
    for unit, size in (("days", 2 * 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{_number(seconds / (86400 if unit == 'days' else size))} {unit}"
    return f"{_number(seconds)} s"


def _number(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"
