"""One function per `resnas` command: each reads its parsed arguments, calls the library, prints a human summary
unless `--json`, and returns the command's JSON record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import checkpoint, estimate, guard
from ..artifacts import trial_checkpoint
from ..data import DataConfig
from ..errors import UserError
from ..export import export_checkpoint
from ..fit import evaluate_file, train_file
from ..importer import import_file
from ..measure import analytic_cost, count_params, default_input_size, measure_latency, thop_mflops
from ..models import build
from ..presets import PRESET_PATTERNS, resolve
from ..prune import PruneConfig, prune_checkpoint, prune_pareto
from ..report import collect, grid, write_report
from ..search import EPOCHS, SearchConfig, run_search
from ..spaces import load_space, shipped
from ..spec import ArchSpec, describe
from ..storage import open_study
from ..studies import load_study_config
from ..train import TrainConfig, TrainingFailed, pick_device
from . import text
from .parser import given

Record = dict[str, Any]
LATENCY_WARMUP = 10  # measure_latency's default: passes before the timed ones


def _arch_text(args: argparse.Namespace) -> str:
    return args.spec or getattr(args, "arch", None) or args.preset or ""


def _log(args: argparse.Namespace):
    return None if args.json or args.quiet else (lambda line: print(line, file=sys.stderr))


def spaces(args: argparse.Namespace) -> Record:
    found = [load_space(n) for n in (args.names or shipped())]
    out = {"spaces": [{"name": s.name, "path": str(s.path), "description": s.description, "size": s.size(),
                       "fixed": s.fixed, "choices": dict(s.describe_choices())} for s in found],
           "presets": PRESET_PATTERNS}
    if not args.json:
        print(text.spaces_listing(out["spaces"], PRESET_PATTERNS))
    return out


def _measured(args: argparse.Namespace) -> tuple[ArchSpec, int]:
    """The spec a preset or spec file names, or the one a checkpoint stores (at the image size it was made for)."""
    name = _arch_text(args)
    if Path(name).is_file() and not name.endswith(".json"):
        ckpt = checkpoint.load(name)
        return ckpt.spec, args.input_size or ckpt.input_size()
    spec = resolve(name, in_channels=args.in_channels, num_classes=args.num_classes)
    return spec, args.input_size or default_input_size(spec)


def measure(args: argparse.Namespace) -> Record:
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


def train(args: argparse.Namespace) -> Record:
    out = train_file(_arch_text(args), TrainConfig(**given(TrainConfig, args)), DataConfig(**given(DataConfig, args)),
                     out=args.out, device=args.device, progress=_log(args))
    if not args.json:
        print(f"val acc {out['val_acc']:.4f} (epoch {out['best_epoch']})  test acc {out['test_acc']:.4f}  "
              f"{out['seconds']:.1f}s  -> {out['checkpoint']}")
    return out


def checkpoint_path(args: argparse.Namespace) -> str | Path:
    """The CHECKPOINT argument, or the checkpoint of --study NAME --trial N."""
    if (args.study is None) != (args.trial is None) or bool(args.checkpoint) == (args.study is not None):
        raise UserError("name a CHECKPOINT file, or a search trial with --study NAME --trial N (not both)")
    if args.checkpoint:
        return args.checkpoint
    return trial_checkpoint(args.study, args.trial, out_dir=args.out_dir, storage=args.storage)


def evaluate(args: argparse.Namespace) -> Record:
    out = evaluate_file(checkpoint_path(args), device=args.device)
    if not args.json:
        print(f"val acc {out['val_acc']:.4f}  test acc {out['test_acc']:.4f}  params {out['params']:,}  "
              f"MFLOPs {out['mflops']:.2f}")
    return out


def search(args: argparse.Namespace) -> Record:
    flags = {name: given(cls, args) for name, cls in (("search", SearchConfig), ("train", TrainConfig),
                                                      ("data", DataConfig))}
    if args.config:  # the file's settings, with the flags given on the command line on top
        study = load_study_config(args.config).overridden(**flags)
        config, train_config, data_config, info = study.search, study.train, study.data, study.info
    else:
        config, data_config, info = SearchConfig(**flags["search"]), DataConfig(**flags["data"]), None
        train_config = TrainConfig(**{"epochs": EPOCHS, **flags["train"]})
    result = run_search(config, train_config, data_config, device=args.device, progress=not (args.json or args.quiet),
                        info=info)
    out = result.to_dict()
    if not args.json:
        print(text.search_summary(out))
        print(_grid_table(result.study, result.storage) if config.sampler == "grid" else
              text.pareto_table(result.pareto))
        for e in result.errors or []:
            print(f"failed: {e}")
    if result.interrupted:
        raise KeyboardInterrupt
    if result.nothing_trained:  # the study is kept; a rejected-only search is a user error, failures are not
        why = f"study {result.study}: {result.nothing_trained}"
        raise TrainingFailed(why) if result.n_failed else UserError(why)
    return out


def _grid_table(name: str, storage: str) -> str:
    data = collect(open_study(name, storage=storage))
    table = grid.cell_table(data)
    return "no cell has a fully trained trial yet" if table.empty else grid.table_markdown(data, table)


def prune(args: argparse.Namespace) -> Record:
    config = PruneConfig(criterion=args.criterion, threshold=args.threshold, target_mflops=args.target_mflops,
                         target_ratio=args.target_ratio, max_acc_drop=args.max_acc_drop,
                         finetune_epochs=args.finetune, random_draws=args.random_draws)
    if args.study or args.pareto:
        if not (args.study and args.pareto) or args.checkpoint:
            raise UserError("prune a study's front with --study NAME --pareto (and no CHECKPOINT)")
        records = prune_pareto(args.study, config, out_dir=args.out_dir, storage=args.storage, device=args.device)
        if not args.json:
            for r in records:
                print(f"trial {r['trial']}: " + (f"error: {r['error']}" if "error" in r else text.prune_line(r)))
        return {"study": args.study, "results": records}
    if not args.checkpoint:
        raise UserError("name a CHECKPOINT to prune, or --study NAME --pareto")
    record = prune_checkpoint(args.checkpoint, config, out=args.out, device=args.device)
    if not args.json:
        print(text.block_table(record))
        print(text.prune_line(record))
    return record


def report(args: argparse.Namespace) -> Record:
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


def import_(args: argparse.Namespace) -> Record:
    data = given(DataConfig, args)
    out = import_file(args.file, out=args.out, arch=args.arch, data_config=DataConfig(**data) if data else None)
    if not args.json:
        print(text.import_line(out))
    return out


def export(args: argparse.Namespace) -> Record:
    out = export_checkpoint(checkpoint_path(args), format=args.format, out=args.out, opset=args.opset)
    if not args.json:
        print(text.export_line(out))
    return out


COMMANDS = {"spaces": spaces, "measure": measure, "train": train, "eval": evaluate, "search": search, "prune": prune,
            "report": report, "import": import_, "export": export}
