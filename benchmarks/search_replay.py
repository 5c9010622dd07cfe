"""Search methods compared on a recorded table of a space (see record_table.py): each method's decisions replayed,
over many sampler seeds, the cost counted in two currencies: training epochs, and training seconds.

    python benchmarks/search_replay.py resnas                      # the default search, 10 seeds, table seed 1
    python benchmarks/search_replay.py resnas --set paused=drop    # resnas 0.1 (a stopped trial stays stopped)
    python benchmarks/search_replay.py optuna-nsga2 --seeds 10     # a peer; `--list` names them all
    python benchmarks/search_replay.py all --markdown              # every method: the tables in benchmarks/README.md
    python benchmarks/search_replay.py peers > peers.jsonl         # every method but resnas, as JSON lines
    python benchmarks/search_replay.py --render a.jsonl b.jsonl    # the markdown tables of rows printed before

resnas methods run the real search (`run_search`) with a `ReplayFit`: only training is replayed. Peers run plain
Optuna loops (each trial trains its architecture for the table's epochs, a repeated architecture is paid again),
Syne Tune's schedulers (search_peers.py, optional) or NePS's optimizers (search_peers_neps.py, optional). Score:
hypervolume of the fully trained architectures in (val_acc, log10 MFLOPs), reference (0.5, log10 1000), as a
fraction of the hypervolume of every architecture in the table, at fixed budgets; and the cost of reaching a fraction.

Seconds: every epoch a method trains is charged at its architecture's recorded seconds per epoch (the table's
training seconds of that architecture / the table's epochs), whoever trains it, so an epoch of WRN-13-8 costs about
50 of WRN-7-1. Seconds budgets are fractions of the enumeration's seconds (the sum over the table's rows: what
training every architecture to the end cost). A search runs until it has spent both its epoch limit and its seconds
limit, and each currency's budgets are read off the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing as mp
import statistics
import sys
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
from resnas.pareto import hypervolume_2d, pareto_front
from resnas.replay import ReplayFit, Row, Table
from resnas.search import SearchConfig, ehvi, run_search, study
from resnas.spaces import load_space
from resnas.storage import open_study
from resnas.train import EpochRecord, TrainConfig

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # the peers and the markdown beside this file, when it is loaded by path (tests)
    sys.path.insert(0, str(HERE))
BUDGETS = (100, 182, 400, 1000)  # epochs
SECONDS_BUDGETS = (0.01, 0.025, 0.05, 0.12)  # fractions of the enumeration's training seconds
CURRENCIES = {"epochs": BUDGETS, "seconds": SECONDS_BUDGETS}
WORST_AT = {"epochs": 182, "seconds": 0.05}  # the budget whose unluckiest seed the markdown shows
TARGETS = (0.95, 0.98, 0.99)  # fractions of the true front's hypervolume
REFERENCE = (0.5, math.log10(1000.0))  # (val_acc, log10 MFLOPs)

Point = tuple[float, float]  # (val_acc, mflops) of a fully trained architecture
Event = tuple[int, float, Point | None]  # (epochs spent so far, seconds spent so far, what the evaluation added)


def enumeration_seconds(table: Table) -> float:
    return sum(r.seconds for r in table.rows)


class Meter:
    """What a replayed search has spent, in epochs and in seconds, and its events. Each peer charges the epochs it
    trains as it trains them and records an Event when an evaluation ends; it stops once `spent`. (A plain class,
    not a dataclass: tests load this file by path, outside sys.modules, where dataclasses cannot resolve it.)"""

    def __init__(self, table: Table, max_epochs: int, max_seconds: float = 0.0) -> None:
        self.table, self.max_epochs, self.max_seconds = table, max_epochs, max_seconds  # max_seconds: seconds
        self.epochs, self.seconds = 0, 0.0
        self.events: list[Event] = []

    def charge(self, row: Row, epochs: int = 1) -> None:
        self.epochs += epochs
        self.seconds += epochs * row.seconds / self.table.epochs

    def record(self, point: Point | None) -> None:
        self.events.append((self.epochs, self.seconds, point))

    @property
    def spent(self) -> bool:
        return self.epochs >= self.max_epochs and self.seconds >= self.max_seconds


def hv(points: list[Point]) -> float:
    """Hypervolume in (val_acc, log10 MFLOPs), maximising accuracy and minimising cost, bounded by REFERENCE."""
    return hypervolume_2d([(-a, math.log10(m)) for a, m in points], (-REFERENCE[0], REFERENCE[1]))


def trajectory(events: list[Event], table: Table, currency: str = "epochs") -> list[tuple[float, float]]:
    """(cost, fraction of the true front's hypervolume) after each evaluation; the cost in epochs, or in seconds as
    a fraction of the enumeration's."""
    best, total = hv(table.true_front_points()), enumeration_seconds(table)
    found: list[Point] = []
    out = []
    for epochs, seconds, point in events:
        if point is not None:
            found.append(point)
        out.append((epochs if currency == "epochs" else seconds / total, hv(found) / best))
    return out


def at(traj: list[tuple[float, float]], budget: float) -> float:
    """The fraction reached within `budget` (a search that ended earlier keeps its last value)."""
    return max((f for e, f in traj if e <= budget + 1e-12), default=0.0)


def reach(traj: list[tuple[float, float]], target: float, limit: float = math.inf) -> float:
    """The cost at which `target` was first reached; inf if not within `limit`."""
    cost = next((e for e, f in traj if f >= target - 1e-12), math.inf)
    return cost if cost <= limit + 1e-12 else math.inf


def oracle(table: Table, target: float, currency: str = "epochs") -> float:
    """The least a search can pay to reach `target`: train to the end only architectures of the true front, the
    cheapest set of them whose hypervolume reaches it (seconds as a fraction of the enumeration's)."""
    front = [table.rows[i] for i in pareto_front([(-r.val_acc, r.mflops) for r in table.rows])]
    best, costs = hv(table.true_front_points()), []
    for n in range(1, len(front) + 1):
        for chosen in itertools.combinations(front, n):
            if hv([(r.val_acc, r.mflops) for r in chosen]) >= target * best - 1e-12:
                costs.append(n * table.epochs if currency == "epochs"
                             else sum(r.seconds for r in chosen) / enumeration_seconds(table))
    return min(costs)


# ---- resnas: the real search, training replayed ----------------------------------------------------------------

class _MeteredFit(ReplayFit):
    """ReplayFit charging the meter each epoch, and interrupting the search (as Ctrl-C does) once it is spent."""

    def __init__(self, table: Table, meter: Meter) -> None:
        super().__init__(table)
        self.meter = meter

    def __call__(self, spec, data, config, *, on_epoch=None, **kwargs):
        row = self.table.row(spec)

        def charged(record: EpochRecord) -> bool:
            if self.meter.spent:
                raise KeyboardInterrupt(f"replayed {self.meter.epochs} epochs")
            self.meter.charge(row)
            return bool(on_epoch and on_epoch(record))
        return super().__call__(spec, data, config, on_epoch=charged, **kwargs)


def resnas_events(table: Table, seed: int, budget: int | Meter, **overrides) -> list[Event]:
    """`budget`: a Meter, or an epoch limit alone. The meter counts what the search spent, the trial it interrupted
    included; the events come from the study's trials in the order they ended, each charged the epochs it trained
    itself (a resumed trial pays only its new epochs), so they leave the interrupted trial out."""
    meter = budget if isinstance(budget, Meter) else Meter(table, budget)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as out:
        config = SearchConfig(space=table.space, seed=seed, out_dir=out, artifacts="none",
                              storage=f"memory:{uuid.uuid4()}",
                              **{"budget": 10**5, "workers": 1, **overrides})
        fit = _MeteredFit(table, meter)
        result = run_search(config, TrainConfig(epochs=table.epochs, seed=table.seed), DataConfig(**table.data),
                            device="cpu", fit=fit, latency=fit.latency)
        trials = open_study(result.study, storage=result.storage).get_trials(deepcopy=False)
    rows, ended = {_params_key(r.params): r for r in table.rows}, Meter(table, meter.max_epochs, meter.max_seconds)
    for t in sorted(trials, key=lambda t: t.datetime_complete or t.datetime_start):
        if t.state == TrialState.RUNNING or not R.counts(t):
            continue
        ended.charge(rows[_params_key(t.params)], R.epochs_trained(t))
        ended.record((t.user_attrs[R.VAL_ACC], t.user_attrs[R.MFLOPS]) if R.fully_trained(t) else None)
    meter.events = ended.events
    return meter.events


def _params_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


Method = Callable[..., list[Event]]  # (table, seed, meter, **overrides) -> events


def methods() -> dict[str, Method]:
    """Every method; the peers live beside this script (imported here: they import it)."""
    from search_peers_optuna import PEERS as OPTUNA
    out: dict[str, Method] = {"resnas": resnas_events, **OPTUNA}
    try:
        from search_peers import PEERS  # optional: needs syne-tune (pip install -r benchmarks/requirements.txt)
        out.update(PEERS)
    except ImportError:
        pass
    try:
        from search_peers_neps import PEERS as NEPS  # optional: needs neural-pipeline-search (requirements-neps.txt)
        out.update(NEPS)
    except ImportError:
        pass
    return out


def summarise(events: list[list[Event]], table: Table, limits: dict[str, float]) -> dict:
    """Per currency: the fraction at each budget within the limit (q1, median, q3, worst seed) and the median cost
    of reaching each target (inf: not within the limit)."""
    def quart(xs: list[float]) -> list[float]:
        xs = sorted(xs)
        q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
        return [q[0], statistics.median(xs), q[2], xs[0]]  # q1, median, q3, worst
    out: dict = {}
    for currency, budgets in CURRENCIES.items():
        trajs, limit = [trajectory(e, table, currency) for e in events], limits[currency]
        suffix = "" if currency == "epochs" else "_seconds"
        out["hv" + suffix] = {b: quart([at(t, b) for t in trajs]) for b in budgets if b <= limit + 1e-12}
        out["reach" + suffix] = {f: statistics.median([reach(t, f, limit) for t in trajs]) for f in TARGETS}
    total = enumeration_seconds(table)
    out["epochs_run"] = statistics.median([e[-1][0] if e else 0 for e in events])
    out["seconds_run"] = statistics.median([e[-1][1] / total if e else 0.0 for e in events])
    return out


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


def _one(args: tuple) -> list[Event]:
    method, table, seed, max_epochs, max_seconds, overrides = args
    meter = Meter(table, max_epochs, max_seconds * enumeration_seconds(table))
    return methods()[method](table, seed, meter, **overrides)


def run(method: str, table: Table, seeds: int, max_epochs: int, jobs: int = 1,
        max_seconds: float = max(SECONDS_BUDGETS), **overrides) -> dict:
    """`max_seconds`: a fraction of the enumeration's seconds. Each search runs until it has spent both limits."""
    start = time.perf_counter()
    work = [(method, table, seed, max_epochs, max_seconds, overrides) for seed in range(seeds)]
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs) as pool:  # forked: the warmed caches come along
            events = pool.map(_one, work)
    else:
        events = [_one(w) for w in work]
    limits = {"epochs": max_epochs, "seconds": max_seconds}
    return {"method": method, **({"overrides": overrides} if overrides else {}), "table": f"{table.space} "
            f"seed {table.seed}", "seeds": seeds, "max_epochs": max_epochs, "max_seconds": max_seconds,
            **summarise(events, table, limits), "seconds_per_search": (time.perf_counter() - start) / seeds}


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word: a string


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", nargs="*", default=["resnas"],
                   help="methods (see --list), all, or peers (every method but resnas)")
    p.add_argument("--table", default=str(HERE / "tables" / "wrn-seed1.json.gz"))
    p.add_argument("--seeds", type=int, default=10, help="sampler seeds 0..N-1")
    p.add_argument("--max-epochs", type=int, default=max(BUDGETS))
    p.add_argument("--max-seconds", type=float, default=max(SECONDS_BUDGETS),
                   help="a fraction of the enumeration's training seconds (default %(default)s)")
    p.add_argument("--markdown", action="store_true", help="both currencies' tables once every method has run")
    p.add_argument("--render", nargs="+", metavar="JSONL", help="print the markdown tables of saved JSON lines")
    p.add_argument("--jobs", type=int, default=1, help="searches side by side (forked processes)")
    p.add_argument("--population", type=int, help="resnas only: NSGA-II's generation size (default: resnas's, 10)")
    p.add_argument("--slow-starters", type=float, help="resnas only: the EHVI sampler's chance that a paused curve "
                   "is a slow starter's (default: resnas's, search.ehvi.SLOW_STARTERS)")
    p.add_argument("--list", action="store_true")
    p.add_argument("--oracle", action="store_true", help="the oracle's cost to reach each target, per currency")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="resnas only: a SearchConfig field, e.g. --set paused=drop --set eta=4")
    args = p.parse_args()
    if args.list:
        print("\n".join(methods()))
        return
    from replay_markdown import load_rows, markdown  # beside this script; it imports this one
    if args.render:
        rows = [r for path in args.render for r in load_rows(path)]
        print(markdown(rows, ", ".join(sorted({r["table"] for r in rows}))))
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = Table.load(args.table)
    if args.oracle:
        print(json.dumps({c: {f: oracle(table, f, c) for f in TARGETS} for c in CURRENCIES}))
        return
    if args.population:
        study.POPULATION = args.population
    if args.slow_starters is not None:
        ehvi.SLOW_STARTERS = args.slow_starters
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    every = list(methods())
    names = [n for m in args.method for n in ({"all": every, "peers": every[1:]}.get(m) or [m])]
    if any(n.startswith("resnas") for n in names):
        warm(table)
    rows = []
    for name in names:
        r = run(name, table, args.seeds, args.max_epochs, args.jobs, args.max_seconds,
                **(overrides if name == "resnas" else {}))
        if args.population and name == "resnas":
            r["method"] += f" --population {args.population}"
        if args.slow_starters is not None and name == "resnas":
            r["method"] += f" --slow-starters {args.slow_starters:g}"
        rows.append(r)
        if not args.markdown:
            print(json.dumps(r), flush=True)
    if args.markdown:
        print(markdown(rows, f"table {args.table}, {args.seeds} seeds"))


if __name__ == "__main__":
    main()
