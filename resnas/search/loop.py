"""The search loop: run trials until the budget is met, in this process and in worker processes, sharing one
study; a worker that dies is noticed through heartbeats and its trial retried."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
import sqlalchemy.exc
import torch
from tqdm import tqdm

from .. import records as R
from ..data import DataConfig
from ..errors import UserError
from ..fit import Fit
from ..fit import fit as default_fit
from ..measure import Latency, spec_latency
from ..replay import ReplayFit, Table
from ..spaces import Space, load_space
from ..storage import MEMORY
from ..train import TrainConfig, pick_device
from .cheapest import cheapest
from .config import SearchConfig
from .ehvi import Shape
from .ledger import Ledger
from .promotion import next_promotion
from .study import create_study, ehvi_sampler, storage_url
from .summary import SearchResult, summarise, why_nothing_trained
from .trial import TrialRunner, fail_stale

MAX_CPU_WORKERS = 8


def run_search(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, *,
               device: str = "auto", progress: bool = False, info: dict[str, Any] | None = None,
               fit: Fit = default_fit, latency: Callable[..., Latency] = spec_latency) -> SearchResult:
    """Run (or resume) a study until `config.budget` architectures have been evaluated or time runs out.
    `info` (a study config's description, claim, report settings and published numbers) is kept with the study;
    `fit` trains one architecture and `latency` times it (a benchmark may pass ones that replay a recorded table)."""
    start = time.perf_counter()
    space = load_space(config.space)
    dev = pick_device(device)
    in_process = bool(config.storage and config.storage.startswith(MEMORY))
    config = replace(config.fitted_to(space), workers=config.workers or (1 if in_process else default_workers(dev)))
    if config.workers > 1 and (fit is not default_fit or latency is not spec_latency):
        raise UserError("a search with its own fit or latency runs in one process (workers=1): worker processes "
                        "would train and time for real (a recorded table replays in every worker: --replay TABLE)")
    fit, latency = _replayed(config, space, train_config.epochs, fit, latency)
    url = storage_url(config, data_config)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = create_study(config, train_config, data_config, space, url, info=info)
    ledger = Ledger(config.costs).update(study.get_trials(deepcopy=False))
    if done(ledger, space, config):  # nothing to do: no data, no workers
        return summarise(study, config.objectives, url, time.perf_counter() - start)
    runner = TrialRunner(config, train_config, data_config, space, dev, fit=fit, latency=latency, ledger=ledger)
    if config.uses_ehvi():  # its sampler costs every candidate at the data's shape, known once the data is loaded
        study.sampler = ehvi_sampler(config, 0, space, train_config.epochs, Shape.of(runner.data), runner.ledger)
    if R.SPLIT_SIZES not in study.user_attrs:
        study.set_user_attr(R.SPLIT_SIZES, {s: runner.data.split_size(s) for s in ("train", "val", "test")})
    procs = _start_workers(config, train_config, data_config, url, dev)
    bar = _ProgressBar(config.budget, study) if progress else None
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
    result.nothing_trained = why_nothing_trained(result, study.get_trials(deepcopy=False),
                                                 lambda: cheapest(space, runner.data, config))
    return result


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(dev: torch.device) -> int:
    """Trial processes when the user names none: one per GPU on CUDA; on the CPU one per core (at most
    MAX_CPU_WORKERS), each with one thread. Most trials of a space are small networks, whose training is bound by
    per-step overhead, not FLOPs: on 2 cores two one-thread processes trained 1.8x (WRN-10-1) and 1.35x (WRN-16-2)
    the images per second of one two-thread process (benchmarks/workers_bench.py)."""
    if dev.type == "cuda":
        return max(1, torch.cuda.device_count())
    return max(1, min(cores(), MAX_CPU_WORKERS))


def _start_workers(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, url: str,
                   dev: torch.device) -> list[mp.Process]:
    """Workers 1..N-1 as spawned processes (this process is worker 0), the cores split between them."""
    if config.workers == 1:
        return []
    threads = max(1, cores() // config.workers)
    torch.set_num_threads(threads)
    n_gpu = torch.cuda.device_count() if dev.type == "cuda" else 0
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, daemon=True,
                         args=(config, train_config, data_config, url, w, f"cuda:{w % n_gpu}" if n_gpu else str(dev),
                               threads))
             for w in range(1, config.workers)]
    for p in procs:
        p.start()
    return procs


def _worker_main(config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, url: str,
                 worker: int, device: str, threads: int) -> None:
    """Entry point of an extra worker process (spawned): the same loop as the main process, quietly."""
    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(config.space)
    config = config.fitted_to(space)
    fit, latency = _replayed(config, space, train_config.epochs, default_fit, spec_latency)
    runner = TrialRunner(config, train_config, data_config, space, pick_device(device), fit=fit, latency=latency)
    study = create_study(config, train_config, data_config, space, url, worker, shape=Shape.of(runner.data),
                         ledger=runner.ledger)
    with contextlib.suppress(KeyboardInterrupt):
        _optimize(study, runner, config, None, config.timeout)


def _replayed(config: SearchConfig, space: Space, epochs: int, fit: Fit,
              latency: Callable[..., Latency]) -> tuple[Fit, Callable[..., Latency]]:
    """The fit and latency a worker uses: the given ones, or a replay of the config's recorded table (checked
    against the search before any trial asks it for an architecture it does not hold)."""
    if not config.replay:
        return fit, latency
    if fit is not default_fit or latency is not spec_latency:
        raise UserError("give a recorded table to replay (replay) or a fit of your own, not both")
    table = Table.load(config.replay)
    if (table.space, table.epochs) != (space.name, epochs):
        raise UserError(f"table {config.replay} records space {table.space} over {table.epochs} epochs; this search "
                        f"is of space {space.name} over {epochs}: replay a table of the same space and --epochs")
    replay = ReplayFit(table)
    return replay, replay.latency


def done(ledger: Ledger, space: Space, config: SearchConfig) -> bool:
    """The search has nothing left to do: its budget is met, or its space exhausted, or it hit its trial cap
    (duplicates and rejections do not count against the budget: 20x it, and an exhausted space still ends)."""
    return ledger.budget()[0] >= config.budget or len(ledger.trials) >= 20 * config.budget \
        or exhausted(ledger, space, config)


def exhausted(ledger: Ledger, space: Space, config: SearchConfig) -> bool:
    """Every architecture of the space has trained as far as it ever will: nothing new to sample, nothing paused
    that could resume (so a search of a small space ends instead of copying duplicates up to its cap)."""
    if ledger.architectures() < space.size() * max(1, len(config.seeds)):
        return False
    resumable = config.early_stopping and config.paused != "drop"
    return not resumable or ledger.n_stopped == 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _optimize(study: optuna.Study, runner: TrialRunner, config: SearchConfig,
              on_trial: Callable[[Ledger], None] | None, timeout: float | None = None) -> None:
    """Run trials until the budget is met. While the last slots are being trained elsewhere, wait (failing stale
    trials, so that a dead worker's trial is retried) rather than start a trial that would be surplus."""
    deadline = None if timeout is None else time.monotonic() + timeout
    hiccups = 0
    while deadline is None or time.monotonic() < deadline:
        try:
            trials = study.get_trials(deepcopy=False)
            ledger = runner.ledger.update(trials)
            if on_trial:
                on_trial(ledger)
            finished, running = ledger.budget()
            if done(ledger, runner.space, config):
                return
            if finished + running >= config.budget and not ledger.waiting():
                time.sleep(min(5.0, config.heartbeat))
                fail_stale(study)
                continue
            if runner.asha and config.paused == "promote" and (t := next_promotion(ledger, runner.asha)):
                study.enqueue_trial(t.params, user_attrs={R.PROMOTED: t.number})
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


class _ProgressBar:
    """A tqdm bar over the budget, with the counts of each kind of trial and the best accuracy so far."""

    def __init__(self, budget: int, study: optuna.Study) -> None:
        self.bar = tqdm(total=budget, desc=f"search {study.study_name}", unit="trial", dynamic_ncols=True)

    def update_from(self, ledger: Ledger) -> None:
        self.bar.n = ledger.budget()[0]
        self.bar.set_postfix(pruned=ledger.kinds.get("stopped early", 0), failed=ledger.kinds.get("failed", 0),
                             rejected=ledger.kinds.get("rejected", 0),
                             best=f"{ledger.best:.4f}" if ledger.best is not None else "-", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
