"""The `resnas` argument parser. Flags that set a config field have that field's name as their destination and no
argparse default (SUPPRESS), so the namespace holds exactly the flags the user gave; defaults, choices and ranges
are read from the config dataclasses, where they are stated once."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from .. import __version__
from ..data import DATASETS, DataConfig
from ..errors import UserError
from ..export import FORMATS
from ..importance import CRITERIA
from ..presets import PRESET_PATTERNS
from ..records import OBJECTIVES
from ..search import EPOCHS, MODES, PAUSED, PRUNERS, SAMPLERS, SearchConfig
from ..train import COMPILE_MODES, SCHEDULES, TrainConfig

GIVEN = argparse.SUPPRESS  # a config flag the user did not give is absent from the namespace


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        raise UserError(f"{self.prog}: {message}")


def given(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of config dataclass `cls` that the command line set."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(","))


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a comma list of integers such as 0,1,2; got {text!r}") from None


def _default(cls: type, name: str) -> str:
    return f"default {getattr(cls, name)}"


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")


def add_data(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=GIVEN, help=f"one of {DATASETS} ({_default(DataConfig, 'dataset')}, "
                   "embedded)")
    g.add_argument("--data-dir", default=GIVEN, help="folder holding (or receiving, with --download) CIFAR's "
                   "python batches")
    g.add_argument("--download", action="store_true", default=GIVEN, help="download CIFAR if it is not there")
    g.add_argument("--val-fraction", type=float, default=GIVEN, help="share of training data held out for "
                   f"validation (model selection); {_default(DataConfig, 'val_fraction')}")
    g.add_argument("--resize", type=int, default=GIVEN, help="imagefolder: side in pixels images are resized to "
                   "(default 32)")


def add_train(p: argparse.ArgumentParser, epochs: int) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=GIVEN, help=f"(maximum) epochs per model; default {epochs}")
    g.add_argument("--batch-size", type=int, default=GIVEN, help=_default(TrainConfig, "batch_size"))
    g.add_argument("--lr", type=float, default=GIVEN, help=f"peak SGD learning rate; {_default(TrainConfig, 'lr')}")
    g.add_argument("--weight-decay", type=float, default=GIVEN, help=_default(TrainConfig, "weight_decay"))
    g.add_argument("--schedule", choices=SCHEDULES, default=GIVEN, help=_default(TrainConfig, "schedule"))
    g.add_argument("--label-smoothing", type=float, default=GIVEN, help=_default(TrainConfig, "label_smoothing"))
    g.add_argument("--seed", type=int, default=GIVEN, help=_default(TrainConfig, "seed"))
    g.add_argument("--compile", nargs="?", const="default", metavar="MODE", default=GIVEN,
                   help=f"torch.compile the model; MODE one of {', '.join(m for m in COMPILE_MODES if m)}")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def add_trial_ref(p: argparse.ArgumentParser) -> None:
    """--study/--trial: a search trial's checkpoint, fetched from the study's artifact store if it is elsewhere."""
    g = p.add_argument_group("a search trial's checkpoint instead of a file")
    g.add_argument("--study", help="the study's name")
    g.add_argument("--trial", type=int, help="the trial's number")
    g.add_argument("--out-dir", default=SearchConfig.out_dir, help="folder of study folders (and of the download "
                   "cache)")
    g.add_argument("--storage", help="Optuna RDB URL; default the study's sqlite file under --out-dir")


def _arch_args(p: argparse.ArgumentParser, positional: bool) -> None:
    if positional:
        p.add_argument("arch", nargs="?", help=f"a preset ({PRESET_PATTERNS}), an ArchSpec .json file or a "
                       "checkpoint")
    p.add_argument("--preset", help="a preset name, e.g. wrn-16-2 (adapted to the dataset's channels and classes)")
    p.add_argument("--spec", help="ArchSpec JSON file")


def _search(sub: Any) -> argparse.ArgumentParser:
    d = SearchConfig
    s = sub.add_parser("search", help="multi-objective architecture search with early stopping")
    s.add_argument("--config", help="a study config (studies/NAME.toml, or a shipped study's name): its settings, "
                   "with the flags given here on top")
    s.add_argument("--space", default=GIVEN, help=f"shipped space name (see `resnas spaces`) or a .toml file; "
                   f"{_default(d, 'space')}")
    s.add_argument("--budget", type=int, default=GIVEN, help=f"architectures to evaluate; {_default(d, 'budget')}")
    s.add_argument("--timeout", type=float, default=GIVEN, help="wall-clock bound in seconds")
    s.add_argument("--study", default=GIVEN, help="study name; default derived from space and dataset")
    s.add_argument("--out-dir", default=GIVEN, help=f"folder of study folders; {_default(d, 'out_dir')}")
    s.add_argument("--storage", default=GIVEN, help="Optuna RDB URL (postgresql://...); default sqlite in the "
                   "study folder")
    s.add_argument("--artifacts", default=GIVEN, help="where checkpoints are uploaded (Optuna's artifact store): a "
                   "folder, s3://BUCKET (boto3 reads AWS_ENDPOINT_URL and credentials), or none; default "
                   "OUT_DIR/STUDY/artifacts")
    s.add_argument("--objectives", type=_comma_list, default=GIVEN,
                   help=f"comma list from {', '.join(OBJECTIVES)}; default {','.join(d.objectives)}")
    s.add_argument("--objective", dest="mode", choices=MODES, default=GIVEN,
                   help="pareto (multi-objective, MO-ASHA early stopping) or scalar (reward acc*(mflops/target)^w, "
                   f"Optuna's pruners); {_default(d, 'mode')}")
    s.add_argument("--sampler", choices=SAMPLERS, default=GIVEN,
                   help=f"grid: every architecture of the space once per seed (see --seeds); {_default(d, 'sampler')}")
    s.add_argument("--seeds", type=_int_list, default=GIVEN,
                   help="comma list of training seeds; each architecture is trained once per seed")
    s.add_argument("--no-early-stopping", dest="early_stopping", action="store_false", default=GIVEN)
    s.add_argument("--eta", type=int, default=GIVEN, help=f"successive-halving reduction factor; {_default(d, 'eta')}")
    s.add_argument("--min-epochs", type=int, default=GIVEN, help=f"first rung; {_default(d, 'min_epochs')}")
    s.add_argument("--paused", choices=PAUSED, default=GIVEN,
                   help="a trial MO-ASHA stopped is promoted from its saved state once it ranks in its rung's top "
                   "1/eta (promote), resumed only when the sampler proposes it again (revisit), or stopped for good "
                   f"(drop); {_default(d, 'paused')}")
    s.add_argument("--pruner", choices=PRUNERS, default=GIVEN, help=f"scalar mode's Optuna pruner; "
                   f"{_default(d, 'pruner')}")
    s.add_argument("--target-mflops", type=float, default=GIVEN, help=f"scalar mode's reward target; "
                   f"{_default(d, 'target_mflops')}")
    s.add_argument("--max-mflops", type=float, default=GIVEN)
    s.add_argument("--max-params", type=float, default=GIVEN)
    s.add_argument("--max-latency-ms", type=float, default=GIVEN)
    s.add_argument("--workers", type=int, default=GIVEN, help="trial processes on this machine; default one per "
                   "CPU core (at most 8, one thread each) on the CPU, one per GPU on CUDA")
    s.add_argument("--heartbeat", type=int, default=GIVEN, help="seconds between a running trial's heartbeats; a "
                   f"trial silent for 3 is failed and retried by another worker; {_default(d, 'heartbeat')}")
    add_common(s)
    add_data(s)
    add_train(s, epochs=EPOCHS)
    return s


def _prune(sub: Any) -> argparse.ArgumentParser:
    s = sub.add_parser("prune", help="remove residual blocks whose learned branches are near zero")
    s.add_argument("checkpoint", nargs="?", help="a checkpoint from resnas train or search")
    s.add_argument("--criterion", default="norm", choices=list(CRITERIA),
                   help="norm (||F(x)||/||x||, default), bn (last BN scale of the branch), gate (learned gate)")
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
    s.add_argument("--out-dir", default=SearchConfig.out_dir)
    s.add_argument("--storage")
    add_common(s)
    return s


def _interop(sub: Any) -> None:
    s = sub.add_parser("import", help="a torchvision/timm ResNet state_dict (.pth, .pt, .safetensors) as a resnas "
                       "checkpoint")
    s.add_argument("file", help="a state_dict in torchvision's ResNet layout (conv1, bn1, layer1.0.conv1, ..., fc)")
    s.add_argument("--out", required=True, help="the resnas checkpoint to write")
    s.add_argument("--arch", help="a preset or ArchSpec .json file the inferred architecture must match")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")
    add_data(s)

    s = sub.add_parser("export", help="a checkpoint as a torchvision state_dict, ONNX or TorchScript file")
    s.add_argument("checkpoint", nargs="?", help="a checkpoint file (or name a study's trial instead)")
    add_trial_ref(s)
    s.add_argument("--format", required=True, choices=FORMATS)
    s.add_argument("--out", required=True, help="the file to write (.pth or .safetensors for torchvision)")
    s.add_argument("--opset", type=int, help="onnx: the ONNX opset to target; default the exporter's")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else there")


def build_parser(commands: dict[str, Any]) -> Parser:
    """The whole parser; `commands` maps each subcommand's name to the function that runs it."""
    p = Parser(prog="resnas", description="Search and prune residual networks.")
    p.add_argument("--version", action="version", version=f"resnas {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    s = sub.add_parser("spaces", help="list the shipped search spaces, their choices and sizes")
    s.add_argument("names", nargs="*", help="spaces to show (names or .toml paths); default all shipped")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("measure", help="params, MFLOPs and latency of a preset, a spec JSON file or a checkpoint")
    _arch_args(s, positional=True)
    s.add_argument("--input-size", type=int, help="image side; default 32 (CIFAR stem) or 224 (ImageNet stem)")
    s.add_argument("--in-channels", type=int)
    s.add_argument("--num-classes", type=int)
    s.add_argument("--batch-size", type=int, default=1)
    s.add_argument("--repeats", type=int, default=30)
    s.add_argument("--max-params", type=float, help="refuse a network with more parameters (the memory guard "
                   "always applies; RESNAS_MEMORY_LIMIT=64G declares the memory it may assume, =off lifts it)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--time-anyway", action="store_true", help="time the latency even where it is estimated to take "
                   "over a minute")
    g.add_argument("--no-latency", action="store_true", help="parameters and MFLOPs only, from the spec: nothing is "
                   "built or timed")
    add_common(s)

    s = sub.add_parser("train", help="train one architecture and write a checkpoint")
    _arch_args(s, positional=False)
    s.add_argument("--out", default="model.pt", help="checkpoint path (default model.pt)")
    s.add_argument("--block-sparsity", type=float, default=GIVEN,
                   help="L1 weight on a learnable gate per residual branch (SSS), for pruning later")
    add_common(s)
    add_data(s)
    add_train(s, epochs=TrainConfig.epochs)

    s = sub.add_parser("eval", help="evaluate a checkpoint on its dataset's validation and test splits")
    s.add_argument("checkpoint", nargs="?", help="a checkpoint file (or name a study's trial instead)")
    add_trial_ref(s)
    add_common(s)

    _search(sub)
    _prune(sub)
    _interop(sub)

    s = sub.add_parser("report", help="HTML report (plotly, self-contained) and CSV of a study")
    s.add_argument("study_name", nargs="?", metavar="STUDY", help="a study under --out-dir")
    s.add_argument("--study", help="the study's name in --storage")
    s.add_argument("--storage", help="Optuna RDB URL; default the study's sqlite file under --out-dir")
    s.add_argument("--out-dir", default=SearchConfig.out_dir)
    s.add_argument("--reports-dir", default="reports")
    s.add_argument("--color-by", help="colour points by this choice (default the space's first)")
    s.add_argument("--format", choices=["html", "png"], default="html",
                   help="png: also a screenshot of the page (needs Chromium)")
    s.add_argument("--baselines", action="store_true",
                   help="train (or reuse) WRN-16-4 and ResNet-20 with the study's recipe as reference points")
    add_common(s)
    for name, parser in sub.choices.items():
        parser.set_defaults(func=commands[name])
    return p
