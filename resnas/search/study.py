"""The Optuna study of a search: where it is stored, its sampler and pruner, and the identity that decides whether
a later invocation resumes it or is refused (resuming with other settings would mix incomparable trials)."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from .. import records
from ..config import to_table
from ..data import DataConfig
from ..errors import UserError
from ..spaces import Space
from ..storage import cached, open_storage, prepare
from ..train import TrainConfig
from .config import SearchConfig
from .ehvi import EHVISampler, Shape
from .ledger import Ledger

# NSGA-II's generation size, whatever the budget: on the recorded wrn table (benchmarks/README.md), 10 reached 0.986
# of the true front's hypervolume at 182 epochs (median of 10 seeds; worst 0.959), 20 reached 0.982 (worst 0.842)
# and 50 (resnas 0.1's size for budgets >= 250) 0.965 (worst 0.909).
POPULATION = 10


def storage_url(config: SearchConfig, data_config: DataConfig) -> str:
    if config.storage:
        return config.storage
    path = config.study_dir(data_config.dataset) / "study.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def sampler(config: SearchConfig, worker: int, n_objectives: int, space: Space, epochs: int,
            shape: Shape | None = None, ledger: Ledger | None = None) -> optuna.samplers.BaseSampler:
    """`shape`: the data's, which the EHVI sampler needs to cost every candidate; a study opened without it (to
    read it, or by a test) samples with NSGA-II. `ledger`: the worker's, whose latest read of the study the EHVI
    sampler proposes from."""
    if config.uses_ehvi() and shape is not None:
        return ehvi_sampler(config, worker, space, epochs, shape, ledger)
    seed = config.seed + 1000 * worker
    if config.sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(config.seeds), seed=seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, config.budget // 5)),
                                          multivariate=True)
    if n_objectives == 1:  # NSGA-II is a multi-objective method; scalar mode falls back to TPE
        return optuna.samplers.TPESampler(seed=seed)
    # constraints reach the samplers through Trial.set_constraint (the trial's system attributes)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=POPULATION)


def ehvi_sampler(config: SearchConfig, worker: int, space: Space, epochs: int, shape: Shape,
                 ledger: Ledger | None = None) -> EHVISampler:
    limits = {k: v for k, v in (("mflops", config.max_mflops), ("params", config.max_params)) if v}
    return EHVISampler(space, shape, cost_objective=config.cost_objective(), epochs=epochs,
                       seed=config.seed + 1000 * worker, seeds=config.seeds, limits=limits,
                       resume=config.early_stopping and config.paused != "drop", ledger=ledger)


def pruner(config: SearchConfig, epochs: int) -> optuna.pruners.BasePruner:
    if config.mode != "scalar" or not config.early_stopping or config.pruner == "none":
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=config.min_epochs, max_resource=epochs,
                                              reduction_factor=config.eta)
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=config.eta, n_warmup_steps=config.min_epochs)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=config.min_epochs, reduction_factor=config.eta)


def identity(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, space: Space) -> dict:
    """What makes two invocations the same study: resuming with any of it changed would mix incomparable trials."""
    data = to_table(data_config)
    data.pop("download")
    ident = {"space": {"fixed": space.fixed, "choices": space.choices}, "objectives": list(config.objectives),
             "mode": config.mode, "data": data, "train": to_table(train_config)}
    if space.cells:  # only where used, so that studies created before cells and seeds existed still resume
        ident["space"]["cells"] = list(space.cells)
    if config.seeds:
        ident["seeds"] = list(config.seeds)
    if config.replay:  # a replayed study is not a trained one
        ident["replay"] = config.replay
    return ident


def create_study(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, space: Space,
                 url: str, worker: int = 0, info: dict[str, Any] | None = None,
                 shape: Shape | None = None, ledger: Ledger | None = None) -> optuna.Study:
    """Create the study, or load it if it exists with the same identity. `shape`, `ledger`: see sampler."""
    storage = cached(open_storage(url, config.heartbeat))
    name = config.study_name(data_config.dataset)
    n_obj = 1 if config.mode == "scalar" else len(config.objectives)
    directions = ["maximize"] if n_obj == 1 else \
        ["maximize" if records.OBJECTIVES[o] else "minimize" for o in config.objectives]
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True,
                                    sampler=sampler(config, worker, n_obj, space, train_config.epochs, shape, ledger),
                                    pruner=pruner(config, train_config.epochs))
    except ValueError as e:  # directions differ from the stored study's
        raise UserError(f"study {name!r} exists with other objectives ({e}); pass --study NEW_NAME") from None
    ident = identity(config, train_config, data_config, space)
    stored = records.study_identity(study)
    if stored is None:
        name_objectives(study, config)
        study.set_user_attr(records.IDENTITY, ident)
        study.set_user_attr(records.SEARCH_CONFIG, to_table(config))
        if info:
            study.set_user_attr(records.STUDY_CONFIG, info)
    elif stored != ident:
        key = next(k for k in ident if stored.get(k) != ident[k])
        raise UserError(f"study {name!r} was created with a different {key} ({stored.get(key)!r}); resume it "
                        "with the same settings, or pass --study NEW_NAME")
    elif study.metric_names is None:  # created before resnas named them: optuna-dashboard showed "Objective 0"
        name_objectives(study, config)
    prepare(storage)
    return study


def name_objectives(study: optuna.Study, config: SearchConfig) -> None:
    with warnings.catch_warnings():  # experimental since Optuna 3.2, and what every Optuna tool labels axes by
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["reward"] if config.mode == "scalar" else list(config.objectives))
