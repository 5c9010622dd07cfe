"""resnas's trainer vs a minimal hand-written PyTorch loop: the same model, data, batch size and optimiser,
timed in one run, alternating, over training steps only (validation excluded from both).

    python benchmarks/train_throughput.py                      # CPU, digits, WRN-16-2
    python benchmarks/train_throughput.py --device cuda --dataset synthetic --preset wrn-16-4 --precision

With --precision (CUDA) it also compares resnas in fp32 against bf16 autocast + channels_last and reports the
time of one 50,000-image epoch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from resnas.data import DataConfig, augment_batch, load_data
from resnas.models import build
from resnas.presets import preset
from resnas.spec import ArchSpec
from resnas.train import TrainConfig, pick_device, train


def plain_loop(model, data, epochs: int, batch_size: int, augment: bool) -> float:
    """The loop a practitioner would write by hand; returns images/s over training steps.

    With `augment` it applies the same batched crop/flip as resnas (augmented images train measurably slower on
    the CPU whoever feeds them, so a fair comparison feeds both loops the same batches).
    """
    device = data.device
    generator = torch.Generator(device=device).manual_seed(0)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x_all, y_all = data.train.x, data.train.y
    n = len(y_all)
    seen, seconds = 0, 0.0
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(n, device=device)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            x = augment_batch(x_all[idx], data.augment, generator) if augment else x_all[idx]
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += batch_size
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    return seen / seconds


def resnas_loop(model, data, epochs: int, batch_size: int, skip: int = 0, **kw) -> float:
    """images/s over training steps, leaving out the first `skip` epochs (where torch.compile compiles)."""
    result = train(model, data, TrainConfig(epochs=epochs + skip, batch_size=batch_size, lr=0.05, **kw))
    timed = result.history[skip:]
    return sum(r.images_per_s * r.seconds for r in timed) / sum(r.seconds for r in timed)


def fresh(spec):
    torch.manual_seed(0)
    return build(spec)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--preset", default="wrn-16-2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--synthetic-size", type=int, default=50_000)
    p.add_argument("--precision", action="store_true", help="CUDA: fp32 vs bf16 + channels_last")
    p.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                   help="with --precision: also both under torch.compile in this mode")
    args = p.parse_args()
    device = pick_device(args.device)
    data = load_data(DataConfig(dataset=args.dataset, synthetic_size=args.synthetic_size), device)
    spec = preset(args.preset).replace(in_channels=data.in_channels, num_classes=data.num_classes)
    print(f"{args.preset} on {args.dataset} ({data.split_size('train')} training images), batch {args.batch_size}, "
          f"{args.epochs} epochs x {args.rounds} rounds, device {device}")
    # warm-up: first-touch allocations, cuDNN autotuning
    resnas_loop(fresh(spec), data, 1, args.batch_size, bf16=False, channels_last=False)
    ours, plain, bare = [], [], []
    for _ in range(args.rounds):  # alternate so drift on a shared machine hits all alike
        bare.append(plain_loop(fresh(spec), data, args.epochs, args.batch_size, augment=False))
        plain.append(plain_loop(fresh(spec), data, args.epochs, args.batch_size, augment=True))
        ours.append(resnas_loop(fresh(spec), data, args.epochs, args.batch_size, bf16=False, channels_last=False))
    o, q, b = statistics.median(ours), statistics.median(plain), statistics.median(bare)
    print(f"plain loop, no augmentation:       {b:10.0f} images/s")
    print(f"plain loop, same augmentation:     {q:10.0f} images/s")
    print(f"resnas train(), fp32:              {o:10.0f} images/s")
    print(f"ratio resnas / plain (same batches): {o / q:.3f}   (resnas / plain without augmentation: {o / b:.3f})")
    print(f"  per-round ratios: {', '.join(f'{x / y:.3f}' for x, y in zip(ours, plain, strict=True))}")
    # The model's own cost varies with the weights' trajectory (denormals on CPU), which differs between the two
    # recipes. A near-zero-cost model isolates what the trainer itself adds per step.
    tiny = ArchSpec(blocks=(1,), widths=(2,), stem_width=2, in_channels=data.in_channels,
                    num_classes=data.num_classes)
    t_plain = statistics.median(plain_loop(fresh(tiny), data, args.epochs, args.batch_size, augment=True)
                                for _ in range(args.rounds))
    t_ours = statistics.median(resnas_loop(fresh(tiny), data, args.epochs, args.batch_size, bf16=False,
                                           channels_last=False) for _ in range(args.rounds))
    extra_ms = (args.batch_size / t_ours - args.batch_size / t_plain) * 1e3
    step_ms = args.batch_size / o * 1e3
    print(f"trainer overhead per step: {extra_ms:.3f} ms ({extra_ms / step_ms:.2%} of a {args.preset} step)")
    if args.precision and device.type == "cuda":
        fast = [resnas_loop(fresh(spec), data, args.epochs, args.batch_size, bf16=True, channels_last=True)
                for _ in range(args.rounds)]
        f = statistics.median(fast)
        n = data.split_size("train")
        print(f"resnas bf16 + channels_last: {f:10.0f} images/s  ({f / o:.2f}x fp32)")
        print(f"one 50,000-image epoch: fp32 {50_000 / o:.2f} s, bf16 + channels_last {50_000 / f:.2f} s "
              f"(training set here: {n} images)")
        if args.compile:  # one compiled run each; the first epoch (compilation) is left out
            cf = resnas_loop(fresh(spec), data, args.epochs, args.batch_size, skip=1, compile=args.compile,
                             bf16=False, channels_last=False)
            cb = resnas_loop(fresh(spec), data, args.epochs, args.batch_size, skip=1, compile=args.compile,
                             bf16=True, channels_last=True)
            print(f"torch.compile({args.compile}) fp32:                {cf:10.0f} images/s  ({cf / o:.2f}x eager fp32)")
            print(f"torch.compile({args.compile}) bf16 + channels_last:{cb:10.0f} images/s  ({cb / o:.2f}x eager fp32, "
                  f"{cb / cf:.2f}x compiled fp32); 50,000-image epoch {50_000 / cb:.2f} s")


if __name__ == "__main__":
    main()
