"""Will this network fit? A size guard that runs before a model is built, so that a spec too big for the machine
ends in one line instead of an allocator's traceback minutes later.

`footprint` counts, in fp32: the weights (from `analytic_cost`); when training, the gradients, the SGD momentum and
the trainer's copy of the best epoch's weights; and the peak of the tensors one forward pass (and, when training,
its backward) holds at once. That peak is not a formula per block family: the network is built on the `meta` device
(shapes, no memory) and one pass runs under a dispatch mode that adds up each tensor storage when an operator makes
it and takes it off when it is freed, which is what eager PyTorch holds.

`check` compares that, with the allocator's slack, against the memory free on the device less a margin (or what
`RESNAS_MEMORY_LIMIT` declares: bytes, 512M, 64G, 1.5T, or `off`), and raises a one-line `UserError` when it does
not fit. The simulation costs 0.1-0.4 s (meta kernels are Python decompositions), more than a one-epoch search
trial trains on digits, so `check` first tries `bound`, an upper bound from the spec alone: where even that fits,
nothing is simulated, and every decision is still the simulation's.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .counting import count
from .errors import UserError
from .measure import analytic_cost
from .models import build
from .models.residual import stride_position
from .spec import ArchSpec, describe

ENV_LIMIT = "RESNAS_MEMORY_LIMIT"
MARGIN = 0.8  # of the free memory; the rest is for the data, the interpreter, a CUDA context
# glibc's malloc keeps freed activation memory rather than return it: peak RSS above the weights and optimizer state
# measured 1.0-3.2x the activation tensors on CPU (tests/test_guard.py), 1.0-1.2x with MALLOC_MMAP_THRESHOLD_=65536.
# On CUDA, where resnas trains in bf16, counting activations in fp32 already doubles them (not measured: no GPU here).
ALLOCATOR_SLACK = 2.0
FP32 = 4
TRAINING_COPIES = 4  # weights, gradients, SGD momentum, and train()'s copy of the best epoch's weights
SHORT_STAGE = 3  # blocks a stage is simulated with: a first block, then two identical ones
TENSORS_PER_LAYER = 6  # new tensors a pass may make per conv, BatchNorm or linear layer (see `bound`)
INFERENCE_TENSORS = 8  # tensors of the largest layer's size that an inference pass may hold at once (see `bound`)
SHORT_BRANCH = 3  # convolutions a branch is simulated with before its strided one, and as many after
CGROUPS = (("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),  # v2
           ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))  # v1
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class Footprint:
    """What one network needs on its device, in bytes of fp32 tensors."""

    params: int
    weight_bytes: int
    optimizer_bytes: int  # gradients, momentum and the best epoch's copy; 0 when not training
    activation_bytes: int  # peak of the tensors a forward (and backward) pass holds at once, the input included
    exact: bool = True  # False: an upper bound (see `bound`), not the simulated peak

    def peak_bytes(self, device: torch.device | str) -> int:
        """The memory running it on `device` should peak at: its tensors, and on the host the allocator's slack."""
        slack = 1.0 if torch.device(device).type == "cuda" else ALLOCATOR_SLACK
        return self.weight_bytes + self.optimizer_bytes + int(slack * self.activation_bytes)


@functools.lru_cache(maxsize=1024)  # a pure function of its arguments; a search asks again for repeated specs
def footprint(spec: ArchSpec, *, batch_size: int, input_size: int, training: bool,
              eval_batch_size: int | None = None) -> Footprint:
    """What `spec` needs for one forward pass (or, `training`, one SGD step) on `batch_size` images of side
    `input_size`. With `eval_batch_size`, training also covers the no-grad evaluation between epochs, which runs
    while the optimizer's state is held.

    A stage's blocks after its first are identical, so each further block adds the same bytes to what a training
    pass keeps for its backward, and nothing to an inference pass: the simulation runs with at most SHORT_STAGE
    blocks a stage and adds the rest. A stage of 10^4 blocks costs the guard no more time than one of three. The
    same holds inside a long branch (kernels of length l): the convolutions before and after its strided one run
    at most SHORT_BRANCH (and one more) of each, and the rest are added.
    """
    params = analytic_cost(spec, input_size).params
    activations = _activation_bytes(spec, batch_size, input_size, training)
    if training and eval_batch_size is not None:
        activations = max(activations, _activation_bytes(spec, eval_batch_size, input_size, False))
    return Footprint(params=params, weight_bytes=FP32 * params,
                     optimizer_bytes=(TRAINING_COPIES - 1) * FP32 * params if training else 0,
                     activation_bytes=activations)


def bound(spec: ArchSpec, *, batch_size: int, input_size: int, training: bool,
          eval_batch_size: int | None = None) -> Footprint:
    """An upper bound on `footprint`, from the spec alone: no tensor is larger than the largest a layer reads or
    writes (`counting`), a pass makes at most TENSORS_PER_LAYER tensors a layer, training holds them all and adds two
    gradients each, and without autograd a block holds at most INFERENCE_TENSORS at once (its input, intermediates,
    shortcut or concatenated features). tests/test_guard_bound.py checks it against the simulation."""
    tally = count(spec, input_size)
    tensors = TENSORS_PER_LAYER * tally.layers + TENSORS_PER_LAYER

    def peak(batch: int, train: bool) -> int:
        return (3 * tensors if train else INFERENCE_TENSORS) * batch * tally.largest * FP32

    activations = peak(batch_size, training)
    if training and eval_batch_size is not None:
        activations = max(activations, peak(eval_batch_size, False))
    return Footprint(params=tally.params, weight_bytes=FP32 * tally.params,
                     optimizer_bytes=(TRAINING_COPIES - 1) * FP32 * tally.params if training else 0,
                     activation_bytes=activations, exact=False)


def check(spec: ArchSpec, *, batch_size: int, input_size: int, device: torch.device | str, training: bool,
          eval_batch_size: int | None = None, max_params: float | None = None) -> Footprint:
    """The footprint of `spec` (or its `bound`, where that fits), or a one-line `UserError` when it has more than
    `max_params` parameters or does not fit in the memory limit (see `memory_limit`)."""
    params = analytic_cost(spec, input_size).params
    if max_params is not None and params > max_params:
        raise UserError(f"{describe(spec)} has {params:,} parameters, over max-params {max_params:,.0f}")
    limit, source = memory_limit(device)
    state = (TRAINING_COPIES if training else 1) * FP32 * params
    if limit is not None and state > limit:  # the weights settle it, before a meta build (whose shapes could overflow)
        raise UserError(_refusal(spec, params, training, batch_size, input_size,
                                 f"at least {_size(state)} for its {_state_words(training)}", limit, source))
    upper = bound(spec, batch_size=batch_size, input_size=input_size, training=training,
                  eval_batch_size=eval_batch_size)
    if limit is not None and upper.peak_bytes(device) <= limit:
        return upper
    try:
        fp = footprint(spec, batch_size=batch_size, input_size=input_size, training=training,
                       eval_batch_size=eval_batch_size)
    except RuntimeError as e:  # a meta tensor past 2^63 bytes (torch: "Storage size calculation overflowed")
        if "overflow" not in str(e):
            raise
        raise UserError(f"{describe(spec)} at batch {batch_size} on {input_size}x{input_size} inputs has tensors of "
                        "more than 2^63 bytes, which no machine holds") from None
    need = fp.peak_bytes(device)
    if limit is not None and need > limit:
        parts = f"{_state_words(training)} {_size(state)}, activations {_size(need - state)}"
        raise UserError(_refusal(spec, params, training, batch_size, input_size, f"{_size(need)} ({parts})", limit,
                                 source))
    return fp


def memory_limit(device: torch.device | str) -> tuple[int | None, str]:
    """The bytes a network may use on `device` (None: unchecked) and where that figure comes from: MARGIN of the
    free memory, or what RESNAS_MEMORY_LIMIT declares."""
    declared = os.environ.get(ENV_LIMIT, "").strip()
    if declared.lower() == "off":
        return None, f"{ENV_LIMIT}=off"
    if declared:
        return _parse_size(declared), f"{ENV_LIMIT}={declared}"
    device = torch.device(device)
    free = available_bytes(device)
    where = str(device) if device.type == "cuda" else "the host"
    return int(MARGIN * free), f"{MARGIN:.0%} of the {_size(free)} free on {where}"


def available_bytes(device: torch.device | str) -> int:
    """Free memory on a CUDA device, or on the host for any other device."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    host, cgroup = _meminfo_available(), _cgroup_available()
    return host if cgroup is None else min(host, cgroup)


def _meminfo_available() -> int:
    with contextlib.suppress(OSError, StopIteration):
        return next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemAvailable:"))
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup_available() -> int | None:
    """Room under this container's (or Slurm job's) memory limit, which /proc/meminfo does not show: the kernel
    kills a process there long before the host runs out. Page cache it could reclaim counts as room."""
    for root, limit_file, usage_file, cache_key in CGROUPS:
        try:
            limit = (Path(root) / limit_file).read_text().strip()
            usage = int((Path(root) / usage_file).read_text())
            stat = dict(line.split() for line in (Path(root) / "memory.stat").read_text().splitlines())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:  # no limit set
            return None
        return max(0, int(limit) - usage + int(stat.get(cache_key, 0)))
    return None


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, flags=re.IGNORECASE)
    if not m or float(m[1]) <= 0:
        raise UserError(f"{ENV_LIMIT} must be a size such as 64G, 512M or 1.5T (binary units), a number of bytes, "
                        f"or off; got {text!r}")
    return int(float(m[1]) * _UNITS[m[2].upper()])


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:,.3g} TiB"


def _state_words(training: bool) -> str:
    return "weights, gradients and momentum" if training else "weights"


def _refusal(spec: ArchSpec, params: int, training: bool, batch_size: int, input_size: int, need: str, limit: int,
             source: str) -> str:
    task = "training" if training else "a forward pass"
    return (f"{describe(spec)} has {params:,} parameters; {task} at batch {batch_size} on {input_size}x{input_size} "
            f"inputs needs {need}, over the {_size(limit)} limit ({source}); to go past it set {ENV_LIMIT}=SIZE "
            f"(e.g. 64G) or {ENV_LIMIT}=off")


# ---- the simulation ----------------------------------------------------------------------------------------------

def _activation_bytes(spec: ArchSpec, batch_size: int, input_size: int, training: bool) -> int:
    if spec.family != "residual":  # a dense layer or OSA module sees more channels than the one before: no repeats
        return _simulate(spec, batch_size=batch_size, input_size=input_size, training=training)[0]
    # A branch's convolutions between its first and its strided one, and between that and its last, map inner
    # channels to inner channels at one resolution whatever their kernels: in each run every one adds the same
    # bytes, so branches of at most SHORT_BRANCH of each (and one more) extrapolate exactly.
    kernels, strided = spec.kernels, stride_position(spec.kernels)
    before, after = max(0, strided - 1), max(0, len(kernels) - 2 - strided)

    def short(b: int, a: int) -> int:
        keep = [0, *range(1, 1 + b), *([strided] if strided else []), *range(strided + 1, strided + 1 + a),
                *([len(kernels) - 1] if len(kernels) - 1 > strided else [])]
        return _short_stages(spec.replace(kernels=tuple(kernels[i] for i in keep)), batch_size, input_size, training)

    b0, a0 = min(before, SHORT_BRANCH), min(after, SHORT_BRANCH)
    base = total = short(b0, a0)
    if before > SHORT_BRANCH:
        total += (before - SHORT_BRANCH) * (short(b0 + 1, a0) - base)
    if after > SHORT_BRANCH:
        total += (after - SHORT_BRANCH) * (short(b0, a0 + 1) - base)
    return total


def _short_stages(spec: ArchSpec, batch_size: int, input_size: int, training: bool) -> int:
    short = spec.replace(blocks=tuple(min(n, SHORT_STAGE) for n in spec.blocks))
    peak, per_block = _simulate(short, batch_size=batch_size, input_size=input_size, training=training)
    return peak + sum(max(0, n - SHORT_STAGE) * per_block[s] for s, n in enumerate(spec.blocks))


class _LiveBytes(TorchDispatchMode):
    """Bytes of tensor storage alive, and their peak, over the operators run under it; storages that existed
    before (the weights) are not counted."""

    def __init__(self, existing: list[torch.Tensor]) -> None:
        super().__init__()
        self.existing = {t.untyped_storage()._cdata for t in existing}
        self.alive: dict[int, weakref.ref] = {}
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        if key in self.existing or key in self.alive:  # a view, or an in-place result
            return
        n = storage.nbytes()
        # A storage's Python object lives exactly as long as the storage, so a weakref to it says when it is freed.
        self.alive[key] = weakref.ref(storage, lambda _, key=key, n=n: self._free(key, n))
        self.live += n
        self.peak = max(self.peak, self.live)

    def _free(self, key: int, n: int) -> None:
        self.alive.pop(key, None)
        self.live -= n


def _simulate(spec: ArchSpec, *, batch_size: int, input_size: int, training: bool) -> tuple[int, list[int]]:
    """Peak activation bytes of one pass of `spec` built on `meta`, and for each stage of at least three blocks
    what its last block added to the bytes held (what a further identical block adds)."""
    with torch.device("meta"):
        model = build(spec)
    model.train(training)
    live = _LiveBytes([*model.parameters(), *model.buffers()])
    held: dict[tuple[int, int], int] = {}
    for s, i, block in model.blocks() if spec.family == "residual" else []:
        block.register_forward_hook(lambda *_, key=(s, i): held.__setitem__(key, live.live))
    with live, torch.set_grad_enabled(training):
        x = torch.empty(batch_size, spec.in_channels, input_size, input_size, device="meta", requires_grad=training)
        out = model(x)
        if training:  # the input's gradient runs every layer's backward; the weights' gradients are counted apart
            torch.autograd.grad(out.sum(), x)
        del x, out
    per_block = [max(0, held[s, 2] - held[s, 1]) if n >= 3 and held else 0 for s, n in enumerate(spec.blocks)]
    return live.peak, per_block
