"""What an architecture costs: parameters, MFLOPs and latency.

Convention: `mflops` is millions of multiply-accumulates (MACs) of the convolution and linear layers, as in the
ResNet paper and the pruning literature (CIFAR ResNet-20 = 40.55). BatchNorm, activations, pooling, the residual
additions, dense concatenations and eSE's gating product are not counted (eSE's 1x1 convolution is).
`torch.utils.flop_counter` reports 2 x MACs; thop reports MACs. Per-family counting lives in counting.py.
"""

from __future__ import annotations

import copy
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .counting import count
from .models import build
from .spec import ArchSpec, SpecError


@dataclass(frozen=True)
class Cost:
    params: int
    mflops: float  # millions of conv + linear multiply-accumulates


@dataclass(frozen=True)
class Latency:
    latency_ms: float  # median over repeats
    latency_p90_ms: float
    device: str
    batch_size: int
    input_size: int
    dtype: str
    mode: str  # "eager", or "cuda-graph": replaying one captured forward, without Python dispatch in the timing

    def to_dict(self) -> dict:
        return asdict(self)


def default_input_size(spec: ArchSpec) -> int:
    if spec.head == "flatten":
        return spec.input_size
    return 224 if spec.stem in ("imagenet", "vovnet") else 32


# ---- analytic cost: the spec alone, no model built ------------------------------------------------------

def analytic_cost(spec: ArchSpec, input_size: int) -> Cost:
    """Parameters and MFLOPs computed from the spec, exactly as `build(spec)` would have them.

    The search uses this to reject an architecture over budget before anything is built or trained. Inputs too
    small for the network, or of another size than a flatten head was built for, are a SpecError.
    """
    if spec.head == "flatten" and input_size != spec.input_size:
        raise SpecError(f"this network's flatten head takes {spec.input_size}x{spec.input_size} inputs (spec "
                        f"input_size), not {input_size}x{input_size}; set input_size to the data's, or use head gap")
    spec.feature_sizes(input_size)
    tally = count(spec, input_size)
    return Cost(params=tally.params, mflops=tally.macs / 1e6)


# ---- counted cost: the built module -----------------------------------------------------------------------

def count_params(model: nn.Module) -> int:
    """From the module tree, so that parameters owned by non-leaf modules (a block's gate) count too."""
    return sum(p.numel() for p in model.parameters())


def _zero_ops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    module.total_ops += torch.zeros(1, dtype=torch.float64)


# Layers thop would count but our convention does not: only conv and linear MACs are reported.
_NOT_COUNTED = (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity)


def thop_mflops(model: nn.Module, input_size: int, in_channels: int) -> float:
    """MFLOPs (conv + linear MACs) counted by thop on a forward pass of one image.

    thop leaves `total_ops`/`total_params` buffers on the modules it profiles, which would break strict
    state_dict loading, so it runs on a copy.
    """
    from thop import profile

    probe = copy.deepcopy(model).cpu().float().eval()
    x = torch.zeros(1, in_channels, input_size, input_size)
    macs, _ = profile(probe, inputs=(x,), custom_ops={t: _zero_ops for t in _NOT_COUNTED}, verbose=False)
    return float(macs) / 1e6


def flop_counter_mflops(model: nn.Module, input_size: int, in_channels: int) -> float:
    """The same quantity from torch's own counter (which reports 2 FLOPs per MAC), for cross-checking."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).cpu().float().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        probe(torch.zeros(1, in_channels, input_size, input_size))
    return counter.get_total_flops() / 2 / 1e6


# ---- latency ----------------------------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    """A human-readable name of the device timings were taken on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu: {cpu} ({torch.get_num_threads()} threads)"


def spec_latency(spec: ArchSpec, *, input_size: int, batch_size: int, device: torch.device) -> Latency:
    """The latency of the network `spec` builds (the search trial's measurement; a replay substitutes its own)."""
    return measure_latency(build(spec), in_channels=spec.in_channels, input_size=input_size, batch_size=batch_size,
                           device=device, repeats=20, warmup=3)


@torch.no_grad()
def measure_latency(model: nn.Module, *, in_channels: int, input_size: int, batch_size: int = 1,
                    device: torch.device | str = "cpu", repeats: int = 30, warmup: int = 10,
                    bf16: bool | None = None, channels_last: bool | None = None,
                    cuda_graph: bool = True) -> Latency:
    """Median and p90 forward latency in eval mode, after a warm-up.

    On CUDA the forward is captured once in a CUDA graph and each replay is bracketed by CUDA events: small
    networks are otherwise bound by the host's Python dispatch, whose jitter moved eager medians by up to 2x
    between runs on an H100, while graph replays agreed within 10%. bf16 autocast and channels_last are the
    CUDA defaults (how resnas trains there); on the CPU the model runs eagerly in fp32.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    bf16 = cuda if bf16 is None else bf16
    channels_last = cuda if channels_last is None else channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    probe = copy.deepcopy(model).to(device, memory_format=fmt).eval()
    x = torch.randn(batch_size, in_channels, input_size, input_size, device=device).to(memory_format=fmt)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        run, mode = (lambda: probe(x)), "eager"
        if cuda and cuda_graph:
            graph = _capture(probe, x)
            if graph is not None:
                run, mode = graph.replay, "cuda-graph"
        for _ in range(warmup):
            run()
        times = _time_cuda(run, repeats) if cuda else _time_cpu(run, repeats)
    times.sort()
    p90 = times[min(len(times) - 1, math.ceil(0.9 * len(times)) - 1)]
    return Latency(latency_ms=statistics.median(times), latency_p90_ms=p90, device=device_name(device),
                   batch_size=batch_size, input_size=input_size, dtype="bf16" if bf16 else "fp32", mode=mode)


def _capture(model: nn.Module, x: torch.Tensor) -> torch.cuda.CUDAGraph | None:
    """One forward captured as a CUDA graph (warmed up on a side stream, as capture requires), or None."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
        return graph
    except RuntimeError:
        return None


def _time_cuda(run, repeats: int) -> list[float]:
    times = []
    torch.cuda.synchronize()
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def _time_cpu(run, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return times
