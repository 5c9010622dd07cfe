"""Plain-text tables the commands print when `--json` is not given."""

from __future__ import annotations

from typing import Any


def pareto_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "Pareto front: empty (no trial finished)"
    lines = ["Pareto front (validation accuracy vs cost):",
             f"{'trial':>5}  {'val acc':>7}  {'test acc':>8}  {'MFLOPs':>8}  {'params':>9}  {'latency ms':>10}  "
             "architecture / checkpoint"]
    for r in rows:
        lat = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "-"
        lines.append(f"{r['trial']:>5}  {r['val_acc']:>7.4f}  {r['test_acc']:>8.4f}  {r['mflops']:>8.2f}  "
                     f"{r['params']:>9,}  {lat:>10}  {r['arch']}  {r['checkpoint']}")
    return "\n".join(lines)


def search_summary(result: dict[str, Any]) -> str:
    resumed = f" ({result['n_resumed']} resumed from a pause)" if result.get("n_resumed") else ""
    return (f"study {result['study']}: {result['n_complete']} complete{resumed}, {result['n_pruned']} stopped early, "
            f"{result['n_failed']} failed, {result['n_rejected']} rejected, {result['n_duplicates']} duplicates; "
            f"{result['epochs_trained']} epochs in {result['seconds']:.0f}s{_overhead(result)}\n"
            f"storage {result['storage']}")


def _overhead(result: dict[str, Any]) -> str:
    share = result.get("overhead_share")
    return "" if share is None else f" ({share:.1%} of trial time outside training)"


def block_table(r: dict[str, Any]) -> str:
    rows = [(b["stage"], b["index"], f"{b['importance']:.4f}", "removed") for b in r["removed"]]
    rows += [(b["stage"], b["index"], f"{b['importance']:.4f}",
              "kept (changes shape)" if {"stage": b["stage"], "index": b["index"]} in r["fixed"] else "kept")
             for b in r["kept"]]
    lines = [f"{'stage':>5}  {'block':>5}  {'importance':>10}  "]
    lines += [f"{s:>5}  {i:>5}  {imp:>10}  {what}" for s, i, imp, what in sorted(rows)]
    return "\n".join(lines)


def prune_line(r: dict[str, Any]) -> str:
    b, a, recal = r["before"], r["after"], r["after_recalibration"]
    base = r["random_baseline"]
    rnd = f" (random removal of as many blocks: {base['val_acc_mean']:.4f})" if base.get("val_acc_mean") else ""
    tuned = f", after fine-tuning {a['val_acc']:.4f}" if r.get("after_finetune") else ""
    return (f"removed {len(r['removed'])} blocks: MFLOPs {b['mflops']:.3f} -> {a['mflops']:.3f}, params "
            f"{b['params']:,} -> {a['params']:,}, latency {b['latency_ms']:.3f} -> {a['latency_ms']:.3f} ms, "
            f"val acc {b['val_acc']:.4f} -> {recal['val_acc']:.4f} with BN recalibrated{rnd}{tuned}, test acc "
            f"{b['test_acc']:.4f} -> {a['test_acc']:.4f}; -> {r['checkpoint']}")


def spaces_listing(spaces: list[dict[str, Any]], presets: str) -> str:
    lines = []
    for s in spaces:
        lines.append(f"{s['name']}  ({s['size']} architectures)  {s['path']}\n  {s['description']}")
        lines += [f"    {k:<18} {v}" for k, v in s["choices"].items()]
        lines.append(f"    fixed: {', '.join(f'{k}={v}' for k, v in s['fixed'].items())}")
    lines.append(f"presets: {presets}")
    return "\n".join(lines)


def import_line(r: dict[str, Any]) -> str:
    data = r["dataset"] or "none named (give --dataset to prune, fine-tune or evaluate it)"
    return (f"{r['arch']}: layers {r['layers']}, params {r['params']:,}, MFLOPs {r['mflops']:.2f} at "
            f"{r['input_size']}x{r['input_size']}; data {data} -> {r['checkpoint']}")


def export_line(r: dict[str, Any]) -> str:
    line = f"{r['format']} -> {r['out']}  ({r['arch']}, params {r['params']:,}, MFLOPs {r['mflops']:.2f} at " \
           f"{r['input_size']}x{r['input_size']}"
    line += f", opset {r['opset']}, dynamic batch)" if "opset" in r else ")"
    if "constructor" in r:
        load = "safetensors.torch.load_file" if r["out"].endswith(".safetensors") else "torch.load"
        swaps = "".join(f"; model.{path} = {module}" for path, module in r["replace"].items())
        line += (f"\nload it with: model = {r['constructor']}{swaps}\n"
                 f"              model.load_state_dict({load}({r['out']!r}), strict=True)"
                 + ("   # from torch import nn" if swaps else ""))
    return line
