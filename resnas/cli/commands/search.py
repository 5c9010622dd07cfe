"""`resnas search`: run (or resume) a study, then print its summary and Pareto front (a grid study: its cell table)."""

from __future__ import annotations

import argparse
from typing import Any

from ...data import DataConfig
from ...errors import TrainingFailed, UserError
from ...records import OBJECTIVES
from ...report import collect, grid
from ...search import EPOCHS, MODES, PAUSED, PRUNERS, SAMPLERS, SearchConfig, run_search
from ...storage import open_study
from ...studies import load_study_config
from ...train import TrainConfig
from .. import text
from ..flags import GIVEN, add_common, add_data, add_train, comma_list, default, given, int_list


def arguments(s: argparse.ArgumentParser) -> None:
    d = SearchConfig
    s.add_argument("--config", help="a study config (studies/NAME.toml, or a shipped study's name): its settings, "
                   "with the flags given here on top")
    s.add_argument("--space", default=GIVEN, help=f"shipped space name (see `resnas spaces`) or a .toml file; "
                   f"{default(d, 'space')}")
    s.add_argument("--budget", type=int, default=GIVEN, help=f"architectures to evaluate; {default(d, 'budget')}")
    s.add_argument("--timeout", type=float, default=GIVEN, help="wall-clock bound in seconds")
    s.add_argument("--study", default=GIVEN, help="study name; default derived from space and dataset")
    s.add_argument("--out-dir", default=GIVEN, help=f"folder of study folders; {default(d, 'out_dir')}")
    s.add_argument("--storage", default=GIVEN, help="Optuna RDB URL (postgresql://...); default sqlite in the "
                   "study folder")
    s.add_argument("--artifacts", default=GIVEN, help="where checkpoints are uploaded (Optuna's artifact store): a "
                   "folder, s3://BUCKET (boto3 reads AWS_ENDPOINT_URL and credentials), or none; default "
                   "OUT_DIR/STUDY/artifacts")
    s.add_argument("--objectives", type=comma_list, default=GIVEN,
                   help=f"comma list from {', '.join(OBJECTIVES)}; default {','.join(d.objectives)}")
    s.add_argument("--objective", dest="mode", choices=MODES, default=GIVEN,
                   help="pareto (multi-objective, MO-ASHA early stopping) or scalar (reward acc*(mflops/target)^w, "
                   f"Optuna's pruners); {default(d, 'mode')}")
    s.add_argument("--sampler", choices=SAMPLERS, default=GIVEN,
                   help=f"grid: every architecture of the space once per seed (see --seeds); {default(d, 'sampler')}")
    s.add_argument("--seeds", type=int_list, default=GIVEN,
                   help="comma list of training seeds; each architecture is trained once per seed")
    s.add_argument("--no-early-stopping", dest="early_stopping", action="store_false", default=GIVEN)
    s.add_argument("--eta", type=int, default=GIVEN, help=f"successive-halving reduction factor; {default(d, 'eta')}")
    s.add_argument("--min-epochs", type=int, default=GIVEN, help=f"first rung; {default(d, 'min_epochs')}")
    s.add_argument("--paused", choices=PAUSED, default=GIVEN,
                   help="a trial MO-ASHA stopped is promoted from its saved state once it ranks in its rung's top "
                   "1/eta (promote), resumed only when the sampler proposes it again (revisit), or stopped for good "
                   f"(drop); {default(d, 'paused')}")
    s.add_argument("--pruner", choices=PRUNERS, default=GIVEN, help=f"scalar mode's Optuna pruner; "
                   f"{default(d, 'pruner')}")
    s.add_argument("--target-mflops", type=float, default=GIVEN, help=f"scalar mode's reward target; "
                   f"{default(d, 'target_mflops')}")
    s.add_argument("--max-mflops", type=float, default=GIVEN)
    s.add_argument("--max-params", type=float, default=GIVEN)
    s.add_argument("--max-latency-ms", type=float, default=GIVEN)
    s.add_argument("--workers", type=int, default=GIVEN, help="trial processes on this machine; default one per "
                   "CPU core (at most 8, one thread each) on the CPU, one per GPU on CUDA")
    s.add_argument("--heartbeat", type=int, default=GIVEN, help="seconds between a running trial's heartbeats; a "
                   f"trial silent for 3 is failed and retried by another worker; {default(d, 'heartbeat')}")
    s.add_argument("--replay", metavar="TABLE", default=GIVEN, help="replay the learning curves of a recorded table "
                   "(.json.gz, benchmarks/record_table.py) instead of training: benchmarks of the search itself")
    add_common(s)
    add_data(s)
    add_train(s, epochs=EPOCHS)


def run(args: argparse.Namespace) -> dict[str, Any]:
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
