"""`resnas` command line: parse, call the library, print. `--json` prints one JSON object on stdout, nothing else.

User errors end in one line on stderr and exit code 2; a training failure exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UserError

Handler = Callable[[argparse.Namespace], dict[str, Any]]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        raise UserError(f"{self.prog}: {message}")


def _arch(args: argparse.Namespace, *, in_channels: int | None = None, num_classes: int | None = None):
    """The spec named by --preset / --spec / a positional ARCH; presets adapt to the dataset's shape."""
    from .presets import resolve

    return resolve(args.spec or getattr(args, "arch", None) or args.preset or "", in_channels=in_channels,
                   num_classes=num_classes)


def _data_config(args: argparse.Namespace):
    from .data import DataConfig

    return DataConfig(dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                      val_fraction=args.val_fraction, resize=args.resize)


def _train_config(args: argparse.Namespace, **overrides: Any):
    from .train import TrainConfig

    kw = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
              schedule=args.schedule, label_smoothing=args.label_smoothing, seed=args.seed, compile=args.compile)
    kw.update(overrides)
    return TrainConfig(**{k: v for k, v in kw.items() if v is not None})


# ---- commands -----------------------------------------------------------------------------------------------

def cmd_spaces(args: argparse.Namespace) -> dict[str, Any]:
    from .presets import PRESET_PATTERNS
    from .spaces import load_space, shipped

    spaces = [load_space(n) for n in (args.names or shipped())]
    out = {"spaces": [{"name": s.name, "path": str(s.path), "description": s.description, "size": s.size(),
                       "fixed": s.fixed, "choices": dict(s.describe_choices())} for s in spaces],
           "presets": PRESET_PATTERNS}
    if not args.json:
        for s in spaces:
            print(f"{s.name}  ({s.size()} architectures)  {s.path}\n  {s.description}")
            for k, v in s.describe_choices():
                print(f"    {k:<18} {v}")
            print(f"    fixed: {', '.join(f'{k}={v}' for k, v in s.fixed.items())}")
        print(f"presets: {PRESET_PATTERNS}")
    return out


def cmd_measure(args: argparse.Namespace) -> dict[str, Any]:
    from .measure import analytic_cost, count_params, default_input_size, measure_latency, thop_mflops
    from .models import build
    from .train import pick_device

    spec = _arch(args, in_channels=args.in_channels, num_classes=args.num_classes)
    size = args.input_size or default_input_size(spec)
    model = build(spec)
    mflops = thop_mflops(model, size, spec.in_channels)
    lat = measure_latency(model, in_channels=spec.in_channels, input_size=size, batch_size=args.batch_size,
                          device=pick_device(args.device), repeats=args.repeats)
    out = {"params": count_params(model), "mflops": mflops, "analytic_mflops": analytic_cost(spec, size).mflops,
           **lat.to_dict(), "spec": spec.to_dict()}
    if not args.json:
        from .spec import describe

        print(f"{describe(spec)}  input {spec.in_channels}x{size}x{size}")
        print(f"params {out['params']:,}   MFLOPs (conv+linear MACs) {mflops:.2f}")
        print(f"latency {lat.latency_ms:.3f} ms median, {lat.latency_p90_ms:.3f} ms p90  "
              f"(batch {lat.batch_size}, {lat.dtype}, {lat.device})")
    return out


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from . import checkpoint
    from .data import load_data
    from .measure import analytic_cost
    from .models import build
    from .train import evaluate, pick_device, train

    data_config = _data_config(args)
    data = load_data(data_config, pick_device(args.device))
    spec = _arch(args, in_channels=data.in_channels, num_classes=data.num_classes)
    if args.block_sparsity and not spec.gates:
        spec = spec.replace(gates=True)
    config = _train_config(args, block_sparsity=args.block_sparsity)
    torch.manual_seed(config.seed)
    model = build(spec)
    log = None if args.json or args.quiet else (lambda line: print(line, file=sys.stderr))
    result = train(model, data, config, progress=log)
    test_acc, _ = evaluate(model, data, "test")
    cost = analytic_cost(spec, data.image_size)
    metrics = {"val_acc": result.best_val_acc, "test_acc": test_acc, "params": cost.params, "mflops": cost.mflops}
    out_path = Path(args.out)
    checkpoint.save(checkpoint.from_model(model, train_config=config, data_config=data_config,
                                          history=[r.to_dict() for r in result.history], metrics=metrics), out_path)
    seconds = sum(r.seconds for r in result.history)
    out = {"val_acc": result.best_val_acc, "test_acc": test_acc, "epochs": len(result.history),
           "best_epoch": result.best_epoch, "seconds": seconds, "checkpoint": str(out_path),
           "params": cost.params, "mflops": cost.mflops}
    if not args.json:
        print(f"val acc {result.best_val_acc:.4f} (epoch {result.best_epoch})  test acc {test_acc:.4f}  "
              f"{seconds:.1f}s  -> {out_path}")
    return out


def cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    from . import checkpoint
    from .data import load_data
    from .measure import analytic_cost, count_params
    from .train import evaluate, pick_device

    ckpt = checkpoint.load(args.checkpoint)
    if ckpt.data_config is None:
        raise UserError(f"checkpoint {args.checkpoint}: it records no dataset, so it cannot be evaluated")
    device = pick_device(args.device)
    data = load_data(ckpt.data_config, device)
    model = ckpt.model(device)
    val_acc, _ = evaluate(model, data, "val")
    test_acc, _ = evaluate(model, data, "test")
    out = {"val_acc": val_acc, "test_acc": test_acc, "params": count_params(model),
           "mflops": analytic_cost(ckpt.spec, data.image_size).mflops, "dataset": ckpt.data_config.dataset}
    if not args.json:
        print(f"val acc {val_acc:.4f}  test acc {test_acc:.4f}  params {out['params']:,}  MFLOPs {out['mflops']:.2f}")
    return out


# search flag -> (SearchConfig field, how to read the flag's value)
_SEARCH_FLAGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "objectives": ("objectives", lambda v: tuple(o.strip() for o in v.split(","))),
    "objective": ("mode", str), "no_early_stopping": ("early_stopping", lambda v: not v),
    "seeds": ("seeds", lambda v: _int_list(v, "--seeds")),
    **{k: (k, lambda v: v) for k in ("space", "budget", "study", "out_dir", "storage", "sampler", "seed", "eta",
                                     "min_epochs", "pruner", "target_mflops", "max_mflops", "max_params",
                                     "max_latency_ms", "timeout", "workers", "heartbeat")}}
_TRAIN_FLAGS = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "label_smoothing", "seed", "compile")
_DATA_FLAGS = ("dataset", "data_dir", "download", "val_fraction", "resize")


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{flag} takes a comma list of integers such as 0,1,2; got {text!r}") from None


def _search_settings(args: argparse.Namespace, given: set[str]) -> tuple[dict, dict, dict]:
    """(search, train, data) settings from the flags in `given`, as config field -> value."""
    search = {field: read(getattr(args, flag)) for flag, (field, read) in _SEARCH_FLAGS.items()
              if flag in given and getattr(args, flag) is not None}
    train = {k: getattr(args, k) for k in _TRAIN_FLAGS if k in given and getattr(args, k) is not None}
    data = {k: getattr(args, k) for k in _DATA_FLAGS if k in given}
    return search, train, data


def cmd_search(args: argparse.Namespace) -> dict[str, Any]:
    from .data import DataConfig
    from .search import SearchConfig, run_search
    from .studies import load_study_config
    from .train import TrainConfig

    if args.config:  # the file's settings, with the flags given on the command line on top
        search, train, data = _search_settings(args, args.given)
        study = load_study_config(args.config).overridden(search=search, train=train, data=data)
        config, train_config, data_config, info = study.search, study.train, study.data, study.info
    else:
        search, train, data = _search_settings(args, set(vars(args)))
        config, train_config, data_config, info = SearchConfig(**search), TrainConfig(**train), DataConfig(**data), None
    result = run_search(config, train_config, data_config, device=args.device, progress=not (args.json or args.quiet),
                        info=info)
    out = result.to_dict()
    if not args.json:
        print(f"study {result.study}: {result.n_complete} complete, {result.n_pruned} stopped early, "
              f"{result.n_failed} failed, {result.n_rejected} rejected, {result.n_duplicates} duplicates; "
              f"{result.epochs_trained} epochs in {result.seconds:.0f}s")
        print(f"storage {result.storage}")
        print(_grid_table(result.study, result.storage) if config.sampler == "grid" else
              _pareto_table(result.pareto))
        for e in result.errors or []:
            print(f"failed: {e}")
    if result.interrupted:
        raise KeyboardInterrupt
    return out


def cmd_prune(args: argparse.Namespace) -> dict[str, Any]:
    from .prune import PruneConfig, prune_checkpoint, prune_pareto

    config = PruneConfig(criterion=args.criterion, threshold=args.threshold, target_mflops=args.target_mflops,
                         target_ratio=args.target_ratio, max_acc_drop=args.max_acc_drop,
                         finetune_epochs=args.finetune, random_draws=args.random_draws)
    if args.study or args.pareto:
        if not (args.study and args.pareto) or args.checkpoint:
            raise UserError("prune a study's front with --study NAME --pareto (and no CHECKPOINT)")
        records = prune_pareto(args.study, config, out_dir=args.out_dir, storage=args.storage, device=args.device)
        if not args.json:
            for r in records:
                print(f"trial {r['trial']}: " + (f"error: {r['error']}" if "error" in r else _prune_line(r)))
        return {"study": args.study, "results": records}
    if not args.checkpoint:
        raise UserError("name a CHECKPOINT to prune, or --study NAME --pareto")
    record = prune_checkpoint(args.checkpoint, config, out=args.out, device=args.device)
    if not args.json:
        print(_block_table(record))
        print(_prune_line(record))
    return record


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from .report import write_report

    name = args.study_name or args.study
    if not name:
        raise UserError("name a study: resnas report STUDY (or --storage URL --study NAME)")
    result = write_report(name, out_dir=args.out_dir, storage=args.storage, reports_dir=args.reports_dir,
                          color_by=args.color_by, png=args.format == "png", baselines=args.baselines,
                          device=args.device)
    if not args.json:
        print(result["markdown"])
        for note in result["notes"]:
            print(f"note: {note}")
        print("wrote " + ", ".join(result[k] for k in ("html", "csv", "cells_csv", "png") if k in result))
    return {k: result[k] for k in ("html", "csv", "cells_csv", "n_trials", "pareto_size", "png") if k in result}


def _block_table(r: dict) -> str:
    rows = [(b["stage"], b["index"], f"{b['importance']:.4f}", "removed") for b in r["removed"]]
    rows += [(b["stage"], b["index"], f"{b['importance']:.4f}",
              "kept (changes shape)" if {"stage": b["stage"], "index": b["index"]} in r["fixed"] else "kept")
             for b in r["kept"]]
    lines = [f"{'stage':>5}  {'block':>5}  {'importance':>10}  "]
    lines += [f"{s:>5}  {i:>5}  {imp:>10}  {what}" for s, i, imp, what in sorted(rows)]
    return "\n".join(lines)


def _prune_line(r: dict) -> str:
    b, a, recal = r["before"], r["after"], r["after_recalibration"]
    base = r["random_baseline"]
    rnd = f" (random removal of as many blocks: {base['val_acc_mean']:.4f})" if base.get("val_acc_mean") else ""
    tuned = f", after fine-tuning {a['val_acc']:.4f}" if r.get("after_finetune") else ""
    return (f"removed {len(r['removed'])} blocks: MFLOPs {b['mflops']:.3f} -> {a['mflops']:.3f}, params "
            f"{b['params']:,} -> {a['params']:,}, latency {b['latency_ms']:.3f} -> {a['latency_ms']:.3f} ms, "
            f"val acc {b['val_acc']:.4f} -> {recal['val_acc']:.4f} with BN recalibrated{rnd}{tuned}, test acc "
            f"{b['test_acc']:.4f} -> {a['test_acc']:.4f}; -> {r['checkpoint']}")


def _grid_table(name: str, storage: str) -> str:
    from .report import collect, grid
    from .storage import open_study

    data = collect(open_study(name, storage=storage))
    table = grid.cell_table(data)
    return "no cell has a fully trained trial yet" if table.empty else grid.table_markdown(data, table)


def _pareto_table(rows: list[dict]) -> str:
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


# ---- parser ------------------------------------------------------------------------------------------------

def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")


def _add_data(p: argparse.ArgumentParser) -> None:
    from .data import DATASETS

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits", help=f"one of {DATASETS} (default digits, embedded)")
    g.add_argument("--data-dir", help="folder holding (or receiving, with --download) CIFAR's python batches")
    g.add_argument("--download", action="store_true", help="download CIFAR if it is not under --data-dir")
    g.add_argument("--val-fraction", type=float, default=0.15, help="share of training data held out for "
                   "validation (model selection); default 0.15")
    g.add_argument("--resize", type=int, help="imagefolder: side in pixels images are resized to (default 32)")


def _add_train(p: argparse.ArgumentParser, epochs: int) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs, help=f"(maximum) epochs per model; default {epochs}")
    g.add_argument("--batch-size", type=int, help="default 64")
    g.add_argument("--lr", type=float, help="peak SGD learning rate; default 0.1")
    g.add_argument("--weight-decay", type=float, help="default 5e-4")
    g.add_argument("--schedule", choices=["cosine", "step"], help="default cosine")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                   help="torch.compile the model; MODE default, reduce-overhead (CUDA graphs), max-autotune")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="resnas", description="Search and prune residual networks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("spaces", help="list the shipped search spaces, their choices and sizes")
    s.add_argument("names", nargs="*", help="spaces to show (names or .toml paths); default all shipped")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_spaces)

    s = sub.add_parser("measure", help="params, MFLOPs and latency of a preset or a spec JSON file")
    s.add_argument("arch", nargs="?", help="preset name (wrn-16-4, resnet-56, resnet50, ...) or spec .json file")
    s.add_argument("--preset")
    s.add_argument("--spec", help="ArchSpec JSON file")
    s.add_argument("--input-size", type=int, help="image side; default 32 (CIFAR stem) or 224 (ImageNet stem)")
    s.add_argument("--in-channels", type=int)
    s.add_argument("--num-classes", type=int)
    s.add_argument("--batch-size", type=int, default=1)
    s.add_argument("--repeats", type=int, default=30)
    _add_common(s)
    s.set_defaults(func=cmd_measure)

    s = sub.add_parser("train", help="train one architecture and write a checkpoint")
    s.add_argument("--preset", help="e.g. wrn-16-2 (adapted to the dataset's channels and classes)")
    s.add_argument("--spec", help="ArchSpec JSON file")
    s.add_argument("--out", default="model.pt", help="checkpoint path (default model.pt)")
    s.add_argument("--block-sparsity", type=float, default=0.0,
                   help="L1 weight on a learnable gate per residual branch (SSS), for pruning later")
    _add_common(s)
    _add_data(s)
    _add_train(s, epochs=15)
    s.set_defaults(func=cmd_train, arch=None)

    s = sub.add_parser("eval", help="evaluate a checkpoint on its dataset's validation and test splits")
    s.add_argument("checkpoint")
    _add_common(s)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("search", help="multi-objective architecture search with early stopping")
    s.add_argument("--config", help="a study config (studies/NAME.toml, or a shipped study's name): its settings, "
                   "with the flags given here on top")
    s.add_argument("--space", default="wrn", help="shipped space name (see `resnas spaces`) or a .toml file")
    s.add_argument("--budget", type=int, default=50, help="architectures to evaluate; default 50")
    s.add_argument("--timeout", type=float, help="wall-clock bound in seconds")
    s.add_argument("--study", help="study name; default derived from space and dataset")
    s.add_argument("--out-dir", default="studies", help="folder of study folders; default studies/")
    s.add_argument("--storage", help="Optuna RDB URL (postgresql://...); default sqlite in the study folder")
    s.add_argument("--objectives", help="comma list from val_acc, mflops, params, latency_ms; default "
                   "val_acc,mflops")
    s.add_argument("--objective", choices=["pareto", "scalar"], default="pareto",
                   help="pareto (multi-objective, MO-ASHA early stopping) or scalar (reward acc*(mflops/target)^w, "
                   "Optuna's pruners)")
    s.add_argument("--sampler", choices=["nsga2", "tpe", "random", "grid"], default="nsga2",
                   help="grid: every architecture of the space once per seed (see --seeds)")
    s.add_argument("--seeds", help="comma list of training seeds; each architecture is trained once per seed")
    s.add_argument("--no-early-stopping", action="store_true")
    s.add_argument("--eta", type=int, default=3, help="successive-halving reduction factor; default 3")
    s.add_argument("--min-epochs", type=int, default=1, help="first rung; default 1")
    s.add_argument("--pruner", choices=["sha", "hyperband", "median", "none"], default="sha",
                   help="scalar mode's Optuna pruner; default sha")
    s.add_argument("--target-mflops", type=float, default=10.0, help="scalar mode's reward target")
    s.add_argument("--max-mflops", type=float)
    s.add_argument("--max-params", type=float)
    s.add_argument("--max-latency-ms", type=float)
    s.add_argument("--workers", type=int, default=1, help="trial processes on this machine")
    s.add_argument("--heartbeat", type=int, default=10, help="seconds between a running trial's heartbeats; a "
                   "trial silent for 3 is failed and retried by another worker (default 10)")
    _add_common(s)
    _add_data(s)
    _add_train(s, epochs=9)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("prune", help="remove residual blocks whose learned branches are near zero")
    s.add_argument("checkpoint", nargs="?", help="a checkpoint from resnas train or search")
    s.add_argument("--criterion", default="norm", help="norm (||F(x)||/||x||, default), bn (last BN scale), gate")
    g = s.add_argument_group("how much to remove (exactly one)")
    g.add_argument("--threshold", type=float, help="remove blocks whose importance is below this")
    g.add_argument("--target-mflops", type=float, help="remove least important first until MFLOPs <= this")
    g.add_argument("--target-ratio", type=float, help="... until MFLOPs fell by at least this fraction (0.3)")
    g.add_argument("--max-acc-drop", type=float, help="... while val accuracy stays within this fraction")
    s.add_argument("--finetune", type=int, default=0, metavar="EPOCHS", help="fine-tune the pruned model")
    s.add_argument("--random-draws", type=int, default=5, help="random-removal baseline draws; default 5")
    s.add_argument("--out", help="pruned checkpoint path; default <input>-pruned.pt")
    s.add_argument("--study", help="with --pareto: prune every Pareto-front checkpoint of this study")
    s.add_argument("--pareto", action="store_true")
    s.add_argument("--out-dir", default="studies")
    s.add_argument("--storage")
    _add_common(s)
    s.set_defaults(func=cmd_prune)

    s = sub.add_parser("report", help="HTML report (plotly, self-contained) and CSV of a study")
    s.add_argument("study_name", nargs="?", metavar="STUDY", help="a study under --out-dir")
    s.add_argument("--study", help="the study's name in --storage")
    s.add_argument("--storage", help="Optuna RDB URL; default the study's sqlite file under --out-dir")
    s.add_argument("--out-dir", default="studies")
    s.add_argument("--reports-dir", default="reports")
    s.add_argument("--color-by", help="colour points by this choice (default the space's first)")
    s.add_argument("--format", choices=["html", "png"], default="html",
                   help="png: also a screenshot of the page (needs Chromium)")
    s.add_argument("--baselines", action="store_true",
                   help="train (or reuse) WRN-16-4 and ResNet-20 with the study's recipe as reference points")
    _add_common(s)
    s.set_defaults(func=cmd_report)
    return p


def _given(argv: list[str], command: str) -> set[str]:
    """The options of `command` that `argv` names (rather than leaves at their defaults): a study config's settings
    give way to these only."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for action in sub._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        args.given = _given(argv, args.command)
        out = args.func(args)
    except UserError as e:
        print(f"resnas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("resnas: interrupted; finished trials and checkpoints are kept", file=sys.stderr)
        return 130
    except Exception as e:
        from .train import TrainingFailed

        if isinstance(e, TrainingFailed):
            print(f"resnas: training failed: {e}", file=sys.stderr)
            return 1
        raise
    if getattr(args, "json", False):
        print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
