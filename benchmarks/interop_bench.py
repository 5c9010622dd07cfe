"""Bring your own ResNet, end to end and offline: a torchvision resnet18 trained on images a user has, imported,
pruned and exported to ONNX, with ONNX Runtime latency on this CPU before and after pruning.

The images are scikit-learn's digits written as 32x32 RGB PNGs in ImageFolder layout. The torchvision model trains
briefly through resnas's data pipeline (so that its normalisation and splits are the ones eval and prune use
later); any training loop would do, as long as it normalises the same way.

    python benchmarks/interop_bench.py --epochs 4 --max-acc-drop 0.01 --finetune 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from resnas import checkpoint
from resnas.data import DataConfig, load_data
from resnas.export import export_checkpoint
from resnas.importer import import_file
from resnas.prune import PruneConfig, prune_checkpoint
from resnas.train import TrainConfig, evaluate, train


def write_digits(root: Path, size: int = 32) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        pixels.convert("RGB").save(folder / f"{i:04d}.png")
    return root


def ort_latency(path: Path, batch: int, warmup: int, repeats: int) -> list[float]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {"input": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {"input": x})
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def ort_accuracy(path: Path, data) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    correct = n = 0
    for x, y in data.eval_batches("test", 256):
        logits = session.run(None, {"input": x.numpy()})[0]
        correct += int((logits.argmax(1) == y.numpy()).sum())
        n += len(y)
    return correct / n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", help="folder for the images and models (default: a temporary one)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-acc-drop", type=float)
    p.add_argument("--target-ratio", type=float)
    p.add_argument("--finetune", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="alternating before/after timing rounds")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per round and batch size")
    args = p.parse_args()
    if args.max_acc_drop is None and args.target_ratio is None:
        args.max_acc_drop = 0.01
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        root = work / "digits-png"
        if not root.is_dir():
            write_digits(root)
        config = DataConfig(dataset=f"imagefolder:{root}", resize=32)
        data = load_data(config, "cpu")

        torch.manual_seed(0)
        user_model = torchvision.models.resnet18(weights=None, num_classes=10)
        t0 = time.perf_counter()
        train(user_model, data, TrainConfig(epochs=args.epochs, lr=0.05))
        user_test = evaluate(user_model, data, "test")[0]
        torch.save(user_model.state_dict(), work / "resnet18_digits.pth")
        print(f"torchvision resnet18 trained {args.epochs} epochs in {time.perf_counter() - t0:.0f}s; "
              f"test acc {user_test:.4f}")

        imported = import_file(work / "resnet18_digits.pth", out=work / "r18.pt", data_config=config)
        imported_test = evaluate(checkpoint.load(work / "r18.pt").model(), data, "test")[0]
        print(f"imported: {imported['arch']}; test acc {imported_test:.4f} (torchvision's: {user_test:.4f})")

        prune = PruneConfig(max_acc_drop=args.max_acc_drop, target_ratio=args.target_ratio,
                            finetune_epochs=args.finetune, random_draws=3)
        t0 = time.perf_counter()
        record = prune_checkpoint(work / "r18.pt", prune, device="cpu")
        removed = [(b["stage"], b["index"]) for b in record["removed"]]
        print(f"pruned in {time.perf_counter() - t0:.0f}s: removed blocks {removed}, layers {record['spec']['blocks']}")

        onnx = {}
        for name, ckpt in (("before", work / "r18.pt"), ("after", Path(record["checkpoint"]))):
            onnx[name] = export_checkpoint(ckpt, format="onnx", out=work / f"{ckpt.stem}.onnx")
        times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in onnx for b in (1, 32)}
        for _ in range(args.rounds):  # alternate, so that drift on a shared machine hits both alike
            for name, rec in onnx.items():
                for batch in (1, 32):
                    times[(name, batch)] += ort_latency(Path(rec["out"]), batch, warmup=5, repeats=args.repeats)

        rows = {"before": record["before"], "after": record["after"]}
        print(f"\nONNX Runtime {__import__('onnxruntime').__version__}, CPUExecutionProvider, fp32, 32x32 input, "
              f"median of {args.rounds * args.repeats} runs after warm-up; opset {onnx['before']['opset']}")
        print("| model | layers | params | MFLOPs | val acc | test acc (torch) | test acc (ONNX) | "
              "latency b1 ms | latency b32 ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, m in rows.items():
            print(f"| {name} pruning | {m['blocks']} | {m['params']:,} | {m['mflops']:.2f} | {m['val_acc']:.4f} | "
                  f"{m['test_acc']:.4f} | {ort_accuracy(Path(onnx[name]['out']), data):.4f} | "
                  f"{med[(name, 1)]:.3f} | {med[(name, 32)]:.2f} |")
        print(f"| after / before | | {rows['after']['params'] / rows['before']['params']:.2f} | "
              f"{rows['after']['mflops'] / rows['before']['mflops']:.2f} | | | | "
              f"{med[('after', 1)] / med[('before', 1)]:.2f} | {med[('after', 32)] / med[('before', 32)]:.2f} |")


if __name__ == "__main__":
    main()
