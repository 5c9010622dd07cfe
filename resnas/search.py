"""The search: Optuna samples architectures from a space, each is trained with early stopping, and the study keeps
the Pareto front of validation accuracy against cost (MFLOPs, parameters, measured latency).

Everything a trial learns is stored on the Optuna trial (user attributes), so reports, resumption and several
workers all read one source: the storage.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
import torch
from optuna.trial import FrozenTrial, TrialState

from . import checkpoint
from .asha import MOASHA
from .data import DataConfig, load_data
from .errors import UserError
from .measure import analytic_cost, measure_latency
from .models import build
from .pareto import pareto_front, to_minimise
from .prune import criterion, prune_curve
from .spaces import Space, load_space
from .spec import ArchSpec, describe
from .storage import open_storage
from .train import TrainConfig, TrainResult, evaluate, pick_device, train

OBJECTIVES = {"val_acc": True, "mflops": False, "params": False, "latency_ms": False}  # name -> maximise?
SAMPLERS = ("nsga2", "tpe", "random", "grid")
PRUNERS = ("sha", "hyperband", "median", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class SearchConfig:
    space: str = "wrn"
    budget: int = 50  # architectures evaluated (duplicates and constraint rejections do not count)
    study: str | None = None  # default: derived from the space and dataset
    out_dir: str = "studies"
    storage: str | None = None  # an Optuna RDB URL; default sqlite under out_dir/study
    objectives: tuple[str, ...] = ("val_acc", "mflops")
    mode: str = "pareto"  # "pareto": multi-objective; "scalar": MnasNet reward acc * (mflops / target) ** w
    sampler: str = "nsga2"  # "grid": every architecture of the space (times `seeds`), in random order
    seed: int = 0
    seeds: tuple[int, ...] = ()  # training seeds: each architecture is trained once per seed (repeats)
    early_stopping: bool = True
    eta: int = 3
    min_epochs: int = 1
    pruner: str = "sha"  # scalar mode only: Optuna's own pruners
    target_mflops: float = 10.0  # scalar mode
    reward_exponent: float = -0.07  # scalar mode (MnasNet's w)
    max_mflops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    timeout: float | None = None  # seconds of wall time for this invocation
    workers: int = 1
    latency_batch_size: int = 1
    heartbeat: int = 10  # seconds between a running trial's heartbeats; stale after 3 missed
    prune_ratios: tuple[float, ...] = ()  # prune each fully trained model at these FLOPs cuts (and record it)
    prune_criterion: str = "norm"

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise UserError(f"budget must be an integer >= 1 (trials to evaluate), got {self.budget}")
        if self.heartbeat < 1:
            raise UserError(f"heartbeat must be an integer >= 1 (seconds), got {self.heartbeat}")
        if self.workers < 1:
            raise UserError(f"workers must be >= 1, got {self.workers}")
        if self.mode not in ("pareto", "scalar"):
            raise UserError(f"objective mode must be pareto or scalar, got {self.mode!r}")
        if self.sampler not in SAMPLERS:
            raise UserError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise UserError(f"pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds must be distinct, got {list(self.seeds)}")
        if not all(0 < r < 1 for r in self.prune_ratios):
            raise UserError(f"prune ratios are FLOPs cuts in (0, 1), got {list(self.prune_ratios)}")
        criterion(self.prune_criterion)
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise UserError(f"objectives must be distinct names from {', '.join(OBJECTIVES)}, got "
                            f"{','.join(self.objectives)!s}")
        if "val_acc" not in self.objectives:
            raise UserError("objectives must include val_acc (a search for the cheapest untrained net is pointless)")
        if self.study is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.study):
            raise UserError(f"study name {self.study!r} is not allowed; use letters, digits, '.', '_' and '-' "
                            "(no path separators)")
        for name in ("max_mflops", "max_params", "max_latency_ms", "timeout", "target_mflops"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UserError(f"{name.replace('_', '-')} must be > 0, got {v}")

    def study_name(self, dataset: str) -> str:
        if self.study:
            return self.study
        space = Path(self.space).stem if self.space.endswith(".toml") else self.space
        data = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset.replace("imagefolder:", "folder-")).strip("-")
        return space if dataset == "digits" else f"{space}-{data}"


# ---- storage ----------------------------------------------------------------------------------------------

def study_dir(config: SearchConfig, data_config: DataConfig) -> Path:
    return Path(config.out_dir) / config.study_name(data_config.dataset)


def storage_url(config: SearchConfig, data_config: DataConfig) -> str:
    if config.storage:
        return config.storage
    path = study_dir(config, data_config) / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    return tuple(study.user_attrs.get("resnas", {}).get("objectives", ("val_acc", "mflops")))


# ---- what one trial does ------------------------------------------------------------------------------------

def _counts(t: FrozenTrial) -> bool:
    """Does this trial count against the budget (it evaluated a new architecture)?"""
    return not any(k in t.user_attrs for k in ("duplicate_of", "rejected", "surplus"))


def budget_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count against the budget: new architectures, less failed attempts that were retried
    (a trial whose worker died is failed through heartbeats and re-run as a copy; only the copy counts)."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [t for t in trials if _counts(t) and not (t.state == TrialState.FAIL and t.number in retried)]


def stopped_early(t: FrozenTrial) -> bool:
    """Stopped by MO-ASHA (completed with its rung accuracy) or by an Optuna pruner (scalar mode)."""
    return t.state == TrialState.PRUNED or "stopped_at" in t.user_attrs


def constraint_values(t: FrozenTrial) -> list[float]:
    return list(t.user_attrs.get("constraint", [0.0, 0.0, 0.0]))


class TrialRunner:
    """The objective function: one trial = sample, check cost, dedup, time, train, evaluate, checkpoint."""

    def __init__(self, config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, space: Space,
                 device: torch.device) -> None:
        self.config, self.train_config, self.data_config, self.space = config, train_config, data_config, space
        self.device = device
        self.data = load_data(data_config, device)
        self.asha = MOASHA(train_config.epochs, config.eta, config.min_epochs) \
            if config.mode == "pareto" and config.early_stopping else None
        self.ckpt_dir = (study_dir(config, data_config) / "checkpoints").resolve()  # trials link absolute paths

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500])
            raise

    def _values(self, attrs: dict[str, Any]) -> float | list[float]:
        if self.config.mode == "scalar":
            return self._reward(attrs["val_acc"], attrs["mflops"])
        return [attrs[o] for o in self.config.objectives]

    def _reward(self, acc: float, mflops: float) -> float:
        return acc * (mflops / self.config.target_mflops) ** self.config.reward_exponent

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        t_start = time.perf_counter()
        c = self.config
        study = trial.study
        done = [t for t in budget_trials(study.get_trials(deepcopy=False))
                if t.number != trial.number and t.state != TrialState.WAITING]
        if len(done) >= c.budget:  # other workers have taken the last slots meanwhile
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned("budget already reached")
        spec = self.space.sample(trial, in_channels=self.data.in_channels, num_classes=self.data.num_classes)
        training = self.space.training(trial)
        if c.seeds:
            training["seed"] = trial.suggest_categorical("seed", list(c.seeds))
        train_config = replace(self.train_config, **training)
        cost = analytic_cost(spec, self.data.image_size)
        attrs: dict[str, Any] = {"spec": spec.to_json(), "arch": describe(spec), "mflops": cost.mflops,
                                 "params": cost.params, "training": training}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        violation = [cost.mflops - c.max_mflops if c.max_mflops else 0.0,
                     cost.params - c.max_params if c.max_params else 0.0, 0.0]
        if violation[0] > 0 or violation[1] > 0:
            return self._reject(trial, attrs, violation)
        if (reused := self._reuse(trial, attrs["spec"], training)) is not None:
            return reused
        lat = measure_latency(build(spec), in_channels=spec.in_channels, input_size=self.data.image_size,
                              batch_size=c.latency_batch_size, device=self.device, repeats=20, warmup=3)
        attrs.update(latency_ms=lat.latency_ms, latency_p90_ms=lat.latency_p90_ms)
        trial.set_user_attr("latency_ms", lat.latency_ms)
        trial.set_user_attr("latency_p90_ms", lat.latency_p90_ms)
        trial.set_user_attr("latency_device", lat.device)
        if c.max_latency_ms and lat.latency_ms > c.max_latency_ms:
            violation[2] = lat.latency_ms - c.max_latency_ms
            return self._reject(trial, attrs, violation)
        trial.set_user_attr("constraint", violation)
        t_train = time.perf_counter()
        model, result = self._train(trial, spec, attrs, train_config)
        if "stopped_at" in trial.user_attrs:
            # Early-stopped: the trial completes with what it measured (its accuracy at the rung), so that the
            # sampler learns from it: NSGA-II and TPE build on completed trials only, and with most trials pruned
            # (no values) NSGA-II never left its random first generation. Only fully trained trials make the front.
            return self._values({**attrs, "val_acc": result.history[-1].val_acc})
        t_test = time.perf_counter()
        test_acc, _ = evaluate(model, self.data, "test")  # reported beside validation, never searched on
        train_acc, _ = evaluate(model, self.data, "train")  # eval mode, no augmentation: for degradation studies
        attrs.update(val_acc=result.best_val_acc, test_acc=test_acc)
        if c.prune_ratios:
            trial.set_user_attr("prune", prune_curve(model, self.data, c.prune_ratios,
                                                     criterion_name=c.prune_criterion))
        path = self.ckpt_dir / f"trial-{trial.number:05d}.pt"
        checkpoint.save(checkpoint.from_model(
            model, train_config=train_config, data_config=self.data_config,
            history=[r.to_dict() for r in result.history],
            metrics={"val_acc": result.best_val_acc, "test_acc": test_acc, "params": cost.params,
                     "mflops": cost.mflops, "latency_ms": lat.latency_ms, "latency_device": lat.device},
            extra={"study": study.study_name, "trial": trial.number}), path)
        # where the trial's time went: train() (steps + per-epoch validation) against everything around it
        timing = {"total": time.perf_counter() - t_start, "train": t_test - t_train,
                  "steps": sum(r.seconds for r in result.history)}
        for k, v in {"val_acc": result.best_val_acc, "test_acc": test_acc, "train_acc": train_acc,
                     "train_loss": result.history[result.best_epoch - 1].train_loss, "checkpoint": str(path),
                     "seconds": timing["steps"], "timing": timing}.items():
            trial.set_user_attr(k, v)
        return self._values(attrs)

    def _reject(self, trial: optuna.Trial, attrs: dict[str, Any], violation: list[float]) -> float | list[float]:
        names = ["mflops", "params", "latency_ms"]
        why = ", ".join(f"{n} {attrs[n]:.4g} over the limit by {v:.4g}" for n, v in zip(names, violation, strict=True)
                        if v > 0)
        trial.set_user_attr("rejected", why)
        trial.set_user_attr("constraint", violation)
        # the sampler sees an infeasible trial (constraints_func) and learns to avoid its region
        return self._values({**attrs, "val_acc": 0.0, "latency_ms": attrs.get("latency_ms", 0.0)})

    def _reuse(self, trial: optuna.Trial, key: str, training: dict[str, Any]) -> float | list[float] | None:
        """An architecture already trained in this study (with the same seed and training settings) is not trained
        again: its result is copied."""
        study = trial.study
        while True:
            same = [t for t in study.get_trials(deepcopy=False, states=FINISHED + (TrialState.RUNNING,))
                    if t.number != trial.number and t.user_attrs.get("spec") == key and _counts(t)
                    and t.user_attrs.get("training", {}) == training]
            if not same:
                return None
            done = [t for t in same if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            if done:
                break
            if all(t.state == TrialState.FAIL for t in same):
                return None  # a failed attempt is worth another try (a crashed worker, say)
            time.sleep(1.0)  # another worker is training it right now: wait for its result
            _fail_stale(study)  # ... unless that worker has died
        first = min(done, key=lambda t: t.number)
        trial.set_user_attr("duplicate_of", first.number)
        for k in ("latency_ms", "latency_p90_ms", "latency_device", "val_acc", "test_acc", "train_acc", "train_loss",
                  "checkpoint", "curve", "constraint", "stopped_at", "prune"):
            if k in first.user_attrs:
                trial.set_user_attr(k, first.user_attrs[k])
        if first.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"duplicate of trial {first.number}, which was stopped early")
        return first.values[0] if self.config.mode == "scalar" else list(first.values)

    def _train(self, trial: optuna.Trial, spec: ArchSpec, attrs: dict[str, Any],
               train_config: TrainConfig) -> tuple[Any, TrainResult]:
        curve: list[float] = []
        costs = [o for o in self.config.objectives if o != "val_acc"]

        def on_epoch(record) -> bool:
            curve.append(record.val_acc)
            trial.set_user_attr("curve", curve)
            epoch = record.epoch
            if self.config.mode == "scalar":
                trial.report(self._reward(record.val_acc, attrs["mflops"]), epoch)
                if trial.should_prune():
                    trial.set_user_attr("stopped_at", epoch)
                    raise optuna.TrialPruned(f"stopped at epoch {epoch}")
            elif self.asha and epoch in self.asha.rungs():
                maximise = [True] + [False] * len(costs)
                mine = to_minimise([record.val_acc] + [attrs[o] for o in costs], maximise)
                others = [to_minimise([t.user_attrs["curve"][epoch - 1]] + [t.user_attrs[o] for o in costs], maximise)
                          for t in trial.study.get_trials(deepcopy=False) if t.number != trial.number and _counts(t)
                          and len(t.user_attrs.get("curve", [])) >= epoch and all(o in t.user_attrs for o in costs)]
                if not self.asha.continues(mine, others):
                    trial.set_user_attr("stopped_at", epoch)
                    return True  # stop training; _run completes the trial with its rung accuracy
            return False

        torch.manual_seed(train_config.seed)
        model = build(spec)
        return model, train(model, self.data, train_config, on_epoch=on_epoch)


# ---- the study --------------------------------------------------------------------------------------------

def _sampler(config: SearchConfig, worker: int, n_objectives: int, space: Space) -> optuna.samplers.BaseSampler:
    seed = config.seed + 1000 * worker
    constraints = constraint_values if any((config.max_mflops, config.max_params, config.max_latency_ms)) else None
    if config.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(config.seeds), seed=seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, config.budget // 5)),
                                          constraints_func=constraints, multivariate=True)
    if n_objectives == 1:  # NSGA-II is a multi-objective method; scalar mode falls back to TPE
        return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(6, config.budget // 5)),
                                         constraints_func=constraints)


def _pruner(config: SearchConfig, epochs: int) -> optuna.pruners.BasePruner:
    if config.mode != "scalar" or not config.early_stopping or config.pruner == "none":
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=config.min_epochs, max_resource=epochs,
                                              reduction_factor=config.eta)
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=config.eta, n_warmup_steps=config.min_epochs)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=config.min_epochs, reduction_factor=config.eta)


def _identity(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, space: Space) -> dict:
    """What makes two invocations the same study: resuming with any of it changed would mix incomparable trials."""
    data = data_config.to_dict()
    data.pop("download")
    identity = {"space": {"fixed": space.fixed, "choices": space.choices}, "objectives": list(config.objectives),
                "mode": config.mode, "data": data, "train": train_config.to_dict()}
    if space.cells:  # only where used, so that studies created before cells and seeds existed still resume
        identity["space"]["cells"] = list(space.cells)
    if config.seeds:
        identity["seeds"] = list(config.seeds)
    return identity


def _create_study(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, space: Space,
                  url: str, worker: int = 0, info: dict[str, Any] | None = None) -> optuna.Study:
    storage = open_storage(url, config.heartbeat)
    name = config.study_name(data_config.dataset)
    n_obj = 1 if config.mode == "scalar" else len(config.objectives)
    directions = ["maximize"] if n_obj == 1 else \
        ["maximize" if OBJECTIVES[o] else "minimize" for o in config.objectives]
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True,
                                    sampler=_sampler(config, worker, n_obj, space),
                                    pruner=_pruner(config, train_config.epochs))
    except ValueError as e:  # directions differ from the stored study's
        raise UserError(f"study {name!r} exists with other objectives ({e}); pass --study NEW_NAME") from None
    identity = _identity(config, train_config, data_config, space)
    stored = study.user_attrs.get("resnas")
    if stored is None:
        study.set_user_attr("resnas", identity)
        study.set_user_attr("search_config", asdict(config))
        if info:
            study.set_user_attr("study_config", info)
    elif stored != identity:
        key = next(k for k in identity if stored.get(k) != identity[k])
        raise UserError(f"study {name!r} was created with a different {key} ({stored.get(key)!r}); resume it "
                        "with the same settings, or pass --study NEW_NAME")
    return study


def _worker_main(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, url: str,
                 worker: int, device: str, threads: int) -> None:
    """Entry point of an extra worker process (spawned): the same loop as the main process, quietly."""
    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(config.space)
    config = fit_budget(config, space)
    study = _create_study(config, train_config, data_config, space, url, worker)
    runner = TrialRunner(config, train_config, data_config, space, pick_device(device))
    with contextlib.suppress(KeyboardInterrupt):
        _optimize(study, runner, config, None, config.timeout)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _optimize(study: optuna.Study, runner: TrialRunner, config: SearchConfig,
              on_trial: Callable[[list[FrozenTrial]], None] | None, timeout: float | None = None) -> None:
    """Run trials until the budget is met. While the last slots are being trained elsewhere, wait (failing stale
    trials, so that a dead worker's trial is retried) rather than start a trial that would be surplus."""
    deadline = None if timeout is None else time.monotonic() + timeout
    cap = 20 * config.budget  # duplicates and rejections do not count: an exhausted space still ends
    hiccups = 0
    while deadline is None or time.monotonic() < deadline:
        try:
            trials = study.get_trials(deepcopy=False)
            if on_trial:
                on_trial(trials)
            counted = budget_trials(trials)
            finished = sum(t.state in FINISHED for t in counted)
            running = sum(t.state == TrialState.RUNNING for t in counted)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if finished >= config.budget or len(trials) >= cap:
                return
            if finished + running >= config.budget and not waiting:
                time.sleep(min(5.0, config.heartbeat))
                _fail_stale(study)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(runner, n_trials=1, catch=(Exception,))
            hiccups = 0
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # our trial was failed as stale (we were cut off from the storage) and is retried elsewhere
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as e:
            # the database went away (a restart, a network blip): the pool reconnects on the next use; the trial
            # that was running is failed through its heartbeat and retried
            hiccups += 1
            if hiccups > 8:
                raise UserError(f"lost the study's storage: {str(e).splitlines()[0][:200]}") from None
            time.sleep(min(30.0, 2.0 ** hiccups))


@dataclass
class SearchResult:
    study: str
    storage: str
    n_complete: int
    n_pruned: int
    n_failed: int
    n_rejected: int
    n_duplicates: int
    epochs_trained: int
    seconds: float
    pareto: list[dict]
    interrupted: bool = False
    errors: list[str] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(study: optuna.Study, objectives: tuple[str, ...], storage: str, seconds: float) -> SearchResult:
    trials = study.get_trials(deepcopy=False)
    counted = budget_trials(trials)
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    return SearchResult(
        study=study.study_name, storage=storage,
        n_complete=sum(t.state == TrialState.COMPLETE and not stopped_early(t) for t in counted),
        n_pruned=sum(stopped_early(t) for t in counted),
        n_failed=sum(t.state == TrialState.FAIL for t in counted),
        n_rejected=len(rejected),
        n_duplicates=sum("duplicate_of" in t.user_attrs for t in trials),
        epochs_trained=sum(len(t.user_attrs.get("curve", [])) for t in counted),
        seconds=seconds, pareto=pareto_trials(trials, objectives),
        errors=[f"trial {t.number}: {t.user_attrs['error']}" for t in counted if "error" in t.user_attrs][:10])


def pareto_trials(trials: list[FrozenTrial], objectives: tuple[str, ...]) -> list[dict]:
    """The non-dominated completed, feasible, trained trials (duplicates collapse onto their first trial)."""
    pool = [t for t in trials if t.state == TrialState.COMPLETE and _counts(t) and "val_acc" in t.user_attrs
            and all(v <= 0 for v in constraint_values(t)) and all(o in t.user_attrs for o in objectives)]
    points = [to_minimise([t.user_attrs[o] for o in objectives], [OBJECTIVES[o] for o in objectives]) for t in pool]
    front = sorted((pool[i] for i in pareto_front(points)), key=lambda t: t.user_attrs["mflops"])
    return [{"trial": t.number, "arch": t.user_attrs["arch"], "val_acc": t.user_attrs["val_acc"],
             "test_acc": t.user_attrs.get("test_acc"), "mflops": t.user_attrs["mflops"],
             "params": t.user_attrs["params"], "latency_ms": t.user_attrs.get("latency_ms"),
             "latency_device": t.user_attrs.get("latency_device"), "checkpoint": t.user_attrs.get("checkpoint"),
             "spec": ArchSpec.from_json(t.user_attrs["spec"]).to_dict()} for t in front]


def fit_budget(config: SearchConfig, space: Space) -> SearchConfig:
    """A grid study ends with its grid: its budget is at most the grid's size (times the seeds)."""
    if config.sampler != "grid":
        return config
    return replace(config, budget=min(config.budget, space.size() * max(1, len(config.seeds))))


def run_search(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, *,
               device: str = "auto", progress: bool = False, info: dict[str, Any] | None = None) -> SearchResult:
    """Run (or resume) a study until `config.budget` architectures have been evaluated or time runs out.
    `info` (a study config's description, claim, report settings and published numbers) is kept with the study."""
    start = time.perf_counter()
    space = load_space(config.space)
    config = fit_budget(config, space)
    dev = pick_device(device)
    url = storage_url(config, data_config)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = _create_study(config, train_config, data_config, space, url, info=info)
    runner = TrialRunner(config, train_config, data_config, space, dev)
    procs: list[mp.Process] = []
    if config.workers > 1:
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        torch.set_num_threads(threads)
        n_gpu = torch.cuda.device_count() if dev.type == "cuda" else 0
        ctx = mp.get_context("spawn")
        for w in range(1, config.workers):
            worker_device = f"cuda:{w % n_gpu}" if n_gpu else str(dev)
            procs.append(ctx.Process(target=_worker_main, daemon=True,
                                     args=(config, train_config, data_config, url, w, worker_device, threads)))
        for p in procs:
            p.start()
    bar = _progress_bar(config.budget, study) if progress else None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    interrupted = False
    try:
        _optimize(study, runner, config, bar.update_from if bar else None, config.timeout)
        for p in procs:
            p.join(None if config.timeout is None else max(1.0, config.timeout - (time.perf_counter() - start)))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(30)
        if bar:
            bar.close()
    result = summarise(study, config.objectives, url, time.perf_counter() - start)
    result.interrupted = interrupted
    return result


class _progress_bar:  # noqa: N801  (a tqdm bar wearing the callback's shape)
    def __init__(self, budget: int, study: optuna.Study) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=budget, desc=f"search {study.study_name}", unit="trial", dynamic_ncols=True)
        self.update_from(study.get_trials(deepcopy=False))

    def update_from(self, trials: list[FrozenTrial]) -> None:
        counted = [t for t in budget_trials(trials) if t.state in FINISHED]
        accs = [t.user_attrs["val_acc"] for t in counted if "val_acc" in t.user_attrs]
        self.bar.n = len(counted)
        self.bar.set_postfix(pruned=sum(stopped_early(t) for t in counted),
                             failed=sum(t.state == TrialState.FAIL for t in counted),
                             rejected=sum("rejected" in t.user_attrs for t in trials),
                             best=f"{max(accs):.4f}" if accs else "-", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
