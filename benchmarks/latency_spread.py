"""How repeatable is `measure_latency`? Two (or more) runs of the same model, in one process.

    python benchmarks/latency_spread.py                       # CPU: resnet-20 and wrn-16-4 at 32x32, batch 1
    python benchmarks/latency_spread.py --device cuda --batch-size 64
"""

from __future__ import annotations

import argparse

from resnas.measure import measure_latency
from resnas.models import build
from resnas.presets import preset
from resnas.train import pick_device


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--presets", default="resnet-20,wrn-16-4")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    device = pick_device(args.device)
    for name in args.presets.split(","):
        model = build(preset(name))
        runs = [measure_latency(model, in_channels=3, input_size=32, batch_size=args.batch_size, device=device,
                                repeats=args.repeats) for _ in range(args.runs)]
        med = [r.latency_ms for r in runs]
        spread = max(med) / min(med) - 1
        print(f"{name:>10}  batch {args.batch_size}  {runs[0].dtype}  medians {', '.join(f'{m:.3f}' for m in med)} ms"
              f"  p90 {', '.join(f'{r.latency_p90_ms:.3f}' for r in runs)} ms  spread {spread:.1%}  ({runs[0].device})")


if __name__ == "__main__":
    main()
