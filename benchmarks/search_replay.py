"""Search methods compared on a recorded table of a space (see record_table.py): each method's decisions replayed,
cost counted in training epochs, over many sampler seeds.

    python benchmarks/search_replay.py resnas                      # the default search, 10 seeds, table seed 1
    python benchmarks/search_replay.py resnas --set paused=drop    # resnas 0.1 (a stopped trial stays stopped)
    python benchmarks/search_replay.py optuna-nsga2 --seeds 10     # a peer; `--list` names them all
    python benchmarks/search_replay.py all --markdown              # every method: the table in benchmarks/README.md

resnas methods run the real search (`run_search`) with a `ReplayFit`: only training is replayed. Peers run plain
Optuna loops (each trial trains its architecture for the table's epochs, a repeated architecture is paid again) or
Syne Tune's schedulers (search_peers.py, optional). Score: hypervolume of the fully trained architectures in
(val_acc, log10 MFLOPs), reference (0.5, log10 1000), as a fraction of the hypervolume of every architecture in the
table, at fixed epoch budgets; and the epochs each needs to reach a fraction.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from resnas import guard
from resnas import records as R
from resnas.data import DataConfig
from resnas.pareto import hypervolume_2d
from resnas.replay import ReplayFit, Table
from resnas.search import SearchConfig, run_search, study
from resnas.spaces import load_space
from resnas.storage import open_study
from resnas.train import TrainConfig

HERE = Path(__file__).parent
BUDGETS = (100, 182, 400, 1000)  # epochs
TARGETS = (0.95, 0.98, 0.99)  # fractions of the true front's hypervolume
REFERENCE = (0.5, math.log10(1000.0))  # (val_acc, log10 MFLOPs)

Point = tuple[float, float]  # (val_acc, mflops) of a fully trained architecture
Event = tuple[int, Point | None]  # (epochs spent so far, what the evaluation just finished added)


def hv(points: list[Point]) -> float:
    """Hypervolume in (val_acc, log10 MFLOPs), maximising accuracy and minimising cost, bounded by REFERENCE."""
    return hypervolume_2d([(-a, math.log10(m)) for a, m in points], (-REFERENCE[0], REFERENCE[1]))


def trajectory(events: list[Event], table: Table) -> list[tuple[int, float]]:
    """(epochs, fraction of the true front's hypervolume) after each evaluation."""
    best = hv(table.true_front_points())
    found: list[Point] = []
    out = []
    for epochs, point in events:
        if point is not None:
            found.append(point)
        out.append((epochs, hv(found) / best))
    return out


def at(traj: list[tuple[int, float]], budget: int) -> float:
    """The fraction reached within `budget` epochs (a search that ended earlier keeps its last value)."""
    return max((f for e, f in traj if e <= budget), default=0.0)


def reach(traj: list[tuple[int, float]], target: float) -> float:
    return next((e for e, f in traj if f >= target - 1e-12), math.inf)


# ---- resnas: the real search, training replayed ----------------------------------------------------------------

def resnas_events(table: Table, seed: int, max_epochs: int, **overrides) -> list[Event]:
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as out:
        config = SearchConfig(space=table.space, seed=seed, out_dir=out, artifacts="none",
                              storage=f"memory:{uuid.uuid4()}",
                              **{"budget": 10**5, "workers": 1, **overrides})
        fit = ReplayFit(table, max_epochs=max_epochs)
        result = run_search(config, TrainConfig(epochs=table.epochs, seed=table.seed), DataConfig(**table.data),
                            device="cpu", fit=fit, latency=fit.latency)
        trials = open_study(result.study, storage=result.storage).get_trials(deepcopy=False)
    events, epochs = [], 0
    for t in sorted(trials, key=lambda t: t.datetime_complete or t.datetime_start):
        if t.state == TrialState.RUNNING or not R.counts(t):
            continue
        epochs += R.epochs_trained(t)
        full = R.fully_trained(t)
        events.append((epochs, (t.user_attrs[R.VAL_ACC], t.user_attrs[R.MFLOPS]) if full else None))
    return events


# ---- plain Optuna: what a user writes without resnas ----------------------------------------------------------

def _objective_rows(table: Table):
    space = load_space(table.space)
    spec = space.sample(optuna.trial.FixedTrial(table.rows[0].params), in_channels=1, num_classes=10)

    def row(trial: optuna.Trial):
        s = space.sample(trial, in_channels=spec.in_channels, num_classes=spec.num_classes)
        return table.row(s)
    return row


def optuna_events(table: Table, seed: int, max_epochs: int, sampler: str) -> list[Event]:
    """Multi-objective (val_acc, MFLOPs), every trial trained to the end: Optuna has no multi-objective pruner."""
    directions = ["maximize", "minimize"]
    cls = {"default": type(optuna.create_study(directions=directions).sampler),  # Optuna's own choice
           "nsga2": optuna.samplers.NSGAIISampler, "tpe": optuna.samplers.TPESampler,
           "random": optuna.samplers.RandomSampler}[sampler]
    study = optuna.create_study(directions=directions, sampler=cls(seed=seed))
    row_of, events, epochs = _objective_rows(table), [], 0
    while epochs + table.epochs <= max_epochs:
        trial = study.ask()
        row = row_of(trial)
        epochs += table.epochs
        study.tell(trial, [row.val_acc, row.mflops])
        events.append((epochs, (row.val_acc, row.mflops)))
    return events


def optuna_scalar_events(table: Table, seed: int, max_epochs: int, pruner: str, eta: int = 3,
                         target: float = 10.0, w: float = -0.07) -> list[Event]:
    """Single objective, MnasNet's reward acc * (MFLOPs/target)^w reported each epoch, Optuna's pruner stopping."""
    pruners = {"sha": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=eta),
               "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=table.epochs,
                                                           reduction_factor=eta)}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=pruners[pruner])
    row_of, events, epochs = _objective_rows(table), [], 0
    while epochs < max_epochs:
        trial = study.ask()
        row = row_of(trial)
        reward = [a * (row.mflops / target) ** w for a in row.curve]
        for e, r in enumerate(reward, 1):
            epochs += 1
            trial.report(r, e)
            if e < table.epochs and trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                events.append((epochs, None))
                break
        else:
            study.tell(trial, max(reward))
            events.append((epochs, (row.val_acc, row.mflops)))
    return events


def methods() -> dict[str, Callable[..., list[Event]]]:
    out: dict[str, Callable[..., list[Event]]] = {"resnas": resnas_events}
    for s in ("default", "nsga2", "tpe", "random"):
        out[f"optuna-{s}"] = lambda table, seed, max_epochs, s=s: optuna_events(table, seed, max_epochs, s)
    for p in ("sha", "hyperband"):
        out[f"optuna-scalar-{p}"] = lambda table, seed, max_epochs, p=p: optuna_scalar_events(table, seed,
                                                                                              max_epochs, p)
    try:
        from search_peers import PEERS  # optional: needs syne-tune (pip install -r benchmarks/requirements.txt)
        out.update(PEERS)
    except ImportError:
        pass
    return out


def summarise(trajs: list[list[tuple[int, float]]]) -> dict:
    def quart(xs: list[float]) -> list[float]:
        xs = sorted(xs)
        q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
        return [q[0], statistics.median(xs), q[2], xs[0]]  # q1, median, q3, worst
    return {"hv": {b: quart([at(t, b) for t in trajs]) for b in BUDGETS},
            "reach": {f: statistics.median([reach(t, f) for t in trajs]) for f in TARGETS},
            "epochs_run": statistics.median([t[-1][0] if t else 0 for t in trajs])}


def warm(table: Table) -> None:
    """Fill the per-process caches a replayed search would otherwise fill as it goes (the size guard's simulation of
    each architecture, its meta-device model), so that forked searches share them."""
    replayed, space = ReplayFit(table), load_space(table.space)
    train = TrainConfig(epochs=table.epochs, seed=table.seed)
    for row in table.rows:
        spec = space.sample(optuna.trial.FixedTrial(row.params), in_channels=1, num_classes=10)
        guard.check(spec, batch_size=train.batch_size, input_size=8, device="cpu", training=True,
                    eval_batch_size=train.eval_batch_size)
        replayed(spec, None, train, on_epoch=lambda r: True)


def _one(args: tuple) -> list[tuple[int, float]]:
    method, table, seed, max_epochs, overrides = args
    return trajectory(methods()[method](table, seed, max_epochs, **overrides), table)


def run(method: str, table: Table, seeds: int, max_epochs: int, jobs: int = 1, **overrides) -> dict:
    start = time.perf_counter()
    work = [(method, table, seed, max_epochs, overrides) for seed in range(seeds)]
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs) as pool:  # forked: the warmed caches come along
            trajs = pool.map(_one, work)
    else:
        trajs = [_one(w) for w in work]
    return {"method": method, **({"overrides": overrides} if overrides else {}), "table": f"{table.space} "
            f"seed {table.seed}", "seeds": seeds, **summarise(trajs),
            "seconds_per_search": (time.perf_counter() - start) / seeds}


def row_markdown(r: dict) -> str:
    h = r["hv"]
    cells = [f"{h[b][1]:.3f} [{h[b][0]:.3f}, {h[b][2]:.3f}]" for b in BUDGETS]
    reach_ = [("never" if math.isinf(r["reach"][f]) else f"{r['reach'][f]:.0f}") for f in TARGETS]
    name = r["method"] + "".join(f" --{k.replace('_', '-')} {v}" for k, v in r.get("overrides", {}).items())
    return f"| {name} | " + " | ".join(cells) + f" | {h[182][3]:.3f} | " + " / ".join(reach_) + " |"


HEADER = ("| method | @100 epochs | @182 | @400 | @1000 | worst seed @182 | epochs to 0.95 / 0.98 / 0.99 |\n"
          "|---|---|---|---|---|---|---|")


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word: a string


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", nargs="?", default="resnas", help="a method (see --list) or all")
    p.add_argument("--table", default=str(HERE / "tables" / "wrn-seed1.json.gz"))
    p.add_argument("--seeds", type=int, default=10, help="sampler seeds 0..N-1")
    p.add_argument("--max-epochs", type=int, default=max(BUDGETS))
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--jobs", type=int, default=1, help="searches side by side (forked processes)")
    p.add_argument("--population", type=int, help="resnas only: NSGA-II's generation size (default: resnas's, 10)")
    p.add_argument("--list", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="resnas only: a SearchConfig field, e.g. --set paused=drop --set eta=4")
    args = p.parse_args()
    if args.list:
        print("\n".join(methods()))
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = Table.load(args.table)
    if args.population:
        study.POPULATION = args.population
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    names = list(methods()) if args.method == "all" else [args.method]
    if any(n.startswith("resnas") for n in names):
        warm(table)
    if args.markdown:
        print(f"table {args.table}, {args.seeds} seeds: median [quartiles]\n\n{HEADER}")
    for name in names:
        r = run(name, table, args.seeds, args.max_epochs, args.jobs, **(overrides if name == "resnas" else {}))
        if args.population and name == "resnas":
            r["method"] += f" --population {args.population}"
        print(row_markdown(r) if args.markdown else json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
