"""One search trial: sample an architecture, check its cost, reuse a duplicate's result (or resume a paused one),
time it, fit it under MO-ASHA (or an Optuna pruner), and record everything on the Optuna trial (names in `records`).

The trainer and the latency measurement are parameters (`fit`, `latency`), so a benchmark can replay recorded
learning curves through this same code (see `replay`).
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from .. import estimate, guard, paused
from .. import records as R
from ..artifacts import CACHE, upload
from ..asha import MOASHA
from ..data import Data, DataConfig, load_data
from ..errors import UserError
from ..fit import Fit, Fitted, fit, save
from ..measure import Latency, analytic_cost, spec_latency
from ..pareto import to_minimise
from ..prune import prune_curve
from ..resize import accuracy_at_size
from ..spaces import Space
from ..spec import ArchSpec, describe
from ..train import EpochRecord, TrainConfig, TrainState
from ..writes import claim, set_attrs
from .config import SearchConfig
from .ledger import Ledger

Values = float | list[float]


def fail_stale(study: optuna.Study) -> None:
    """Fail the running trials whose workers stopped sending heartbeats (they are retried)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class TrialRunner:
    """The objective function: one trial = sample, check cost, dedup, time, fit, evaluate, checkpoint."""

    def __init__(self, config: SearchConfig, train_config: TrainConfig, data_config: DataConfig, space: Space,
                 device: torch.device, *, fit: Fit = fit, latency: Callable[..., Latency] = spec_latency,
                 data: Data | None = None, ledger: Ledger | None = None) -> None:
        self.config, self.train_config, self.data_config, self.space = config, train_config, data_config, space
        self.device, self.fit, self.latency = device, fit, latency
        self.data = data if data is not None else load_data(data_config, device)
        self.asha = MOASHA(train_config.epochs, config.eta, config.min_epochs) \
            if config.mode == "pareto" and config.early_stopping else None
        self.ckpt_dir = (config.study_dir(data_config.dataset) / "checkpoints").resolve()  # trials link absolutely
        self.paused_dir = self.ckpt_dir.parent / "paused"
        self.paused_cache = self.ckpt_dir.parent / CACHE
        self.artifacts = config.artifact_store(data_config.dataset)
        self.ledger = ledger if ledger is not None else Ledger(config.costs)

    def __call__(self, trial: optuna.Trial) -> Values:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr(R.ERROR, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500])
            raise

    def _values(self, attrs: dict[str, Any]) -> Values:
        if self.config.mode == "scalar":
            return self._reward(attrs[R.VAL_ACC], attrs[R.MFLOPS])
        return [attrs[o] for o in self.config.objectives]

    def _reward(self, acc: float, mflops: float) -> float:
        return acc * (mflops / self.config.target_mflops) ** self.config.reward_exponent

    def _run(self, trial: optuna.Trial) -> Values:
        clock = _Clock()
        c = self.config
        ledger = self.ledger  # as the search loop read the study just before this trial (see _optimize)
        finished, running = ledger.budget(excluding=trial.number)
        if finished + running >= c.budget:  # other workers have taken the last slots meanwhile
            trial.set_user_attr(R.SURPLUS, True)
            raise optuna.TrialPruned("budget already reached")
        spec = self.space.sample(trial, in_channels=self.data.in_channels, num_classes=self.data.num_classes)
        training = self.space.training(trial)
        if c.seeds:
            training["seed"] = trial.suggest_categorical("seed", list(c.seeds))
        train_config = replace(self.train_config, **training)
        cost = analytic_cost(spec, self.data.image_size)
        attrs: dict[str, Any] = {R.SPEC: spec.to_json(), R.ARCH: describe(spec), R.MFLOPS: cost.mflops,
                                 R.PARAMS: cost.params, R.TRAINING: training}
        set_attrs(trial, attrs)  # first, so that another worker sampling this architecture waits for this one
        violation = [cost.mflops - c.max_mflops if c.max_mflops else 0.0,
                     cost.params - c.max_params if c.max_params else 0.0, 0.0, 0.0]
        if violation[0] > 0 or violation[1] > 0:
            return self._reject(trial, attrs, violation, clock)
        prior = self._prior(trial, attrs[R.SPEC], training)
        resume = None
        if prior is not None:
            promoted = trial.user_attrs.get(R.PROMOTED)
            if not (self.asha and c.paused != "drop" and R.PAUSED in prior.user_attrs) or \
                    (promoted is not None and promoted != prior.number) or \
                    claim(trial, json.dumps([attrs[R.SPEC], training, prior.number])) != trial.number:
                return self._copy(trial, prior, clock)  # not paused, or another trial resumes it (promoted first)
            # a paused architecture proposed again (by the sampler, or by ASHA's promotion) goes on where it stopped;
            # where its state can be neither read here nor fetched from the artifact store, it trains from the start
            resume, why = paused.load(prior, self.paused_cache)
            lat_attrs = {k: prior.user_attrs[k] for k in (R.LATENCY_MS, R.LATENCY_P90_MS, R.LATENCY_DEVICE)}
            attrs.update(lat_attrs)
            note = {R.RESUMED: {"trial": prior.number, "epoch": len(resume.history)} if resume else None,
                    R.CURVE: [r.val_acc for r in resume.history] if resume else []}
            if why:
                note[R.RESUME_FAILED] = why
            set_attrs(trial, {**lat_attrs, **note, **self._constraint(violation)}, _constraints(violation))
        else:
            try:  # a network the device cannot hold is infeasible, like one over a limit: never built, never trained
                guard.check(spec, batch_size=train_config.batch_size, input_size=self.data.image_size,
                            device=self.device, training=True, eval_batch_size=train_config.eval_batch_size)
                estimate.check_epoch(spec, input_size=self.data.image_size, batch_size=train_config.batch_size,
                                     train_images=self.data.split_size("train"),
                                     eval_images=self.data.split_size("val"), device=self.device)
            except UserError as e:
                return self._reject(trial, attrs, [*violation[:3], 1.0], clock, why=str(e))
            lat = self.latency(spec, input_size=self.data.image_size, batch_size=c.latency_batch_size,
                               device=self.device)
            lat_attrs = {R.LATENCY_MS: lat.latency_ms, R.LATENCY_P90_MS: lat.latency_p90_ms,
                         R.LATENCY_DEVICE: lat.device}
            attrs.update(lat_attrs)
            if c.max_latency_ms and lat.latency_ms > c.max_latency_ms:
                violation[2] = lat.latency_ms - c.max_latency_ms
                return self._reject(trial, attrs, violation, clock, extra=lat_attrs)
            set_attrs(trial, {**lat_attrs, **self._constraint(violation)}, _constraints(violation))
        with clock.fitting():
            fitted = self._fit(trial, spec, attrs, train_config, resume)
        if resume is not None:  # superseded by this trial's own result (or its own pause)
            paused.discard(prior)
        if fitted.stopped_early:
            record = {R.STOPPED_AT: len(fitted.result.history), R.CURVE: _curve(fitted)}
            if self.asha and c.paused != "drop" and fitted.result.state is not None:
                record.update(paused.save(trial, fitted.result.state, self.paused_dir, self.artifacts))
            set_attrs(trial, {**record, R.TIMING: clock.timing(fitted)})
            # The trial completes with what it measured (its accuracy at the rung), so that the sampler learns from
            # it: NSGA-II and TPE build on completed trials only, and with most trials pruned (no values) NSGA-II
            # never left its random first generation. Only fully trained trials make the front.
            return self._values({**attrs, R.VAL_ACC: fitted.result.history[-1].val_acc})
        record: dict[str, Any] = {}
        with clock.fitting():  # evaluations of the trained model are part of what training costs
            if c.other_sizes and spec.head == "gap":  # a flatten head takes one input size only
                record[R.ACC_AT_SIZE] = {str(s): accuracy_at_size(fitted.model, self.data, "test", s)
                                         for s in c.other_sizes}
            if c.prune_ratios:
                record[R.PRUNE] = prune_curve(fitted.model, self.data, c.prune_ratios,
                                              criterion_name=c.prune_criterion)
        path = save(fitted, self.ckpt_dir / f"trial-{trial.number:05d}.pt", train_config=train_config,
                    data_config=self.data_config, metrics={R.LATENCY_MS: attrs[R.LATENCY_MS],
                                                           R.LATENCY_DEVICE: attrs[R.LATENCY_DEVICE]},
                    extra={"study": trial.study.study_name, "trial": trial.number})
        if self.artifacts:
            record[R.CHECKPOINT_ARTIFACT] = upload(trial, path, self.artifacts)
        attrs[R.VAL_ACC] = fitted.val_acc
        record.update({R.CURVE: _curve(fitted), R.VAL_ACC: fitted.val_acc, R.TEST_ACC: fitted.test_acc,
                       R.TRAIN_ACC: fitted.train_acc,
                       R.TRAIN_LOSS: fitted.result.history[fitted.result.best_epoch - 1].train_loss,
                       R.CHECKPOINT: str(path), R.SECONDS: sum(r.seconds for r in fitted.result.history),
                       R.TIMING: clock.timing(fitted)})
        set_attrs(trial, record)
        return self._values(attrs)

    def _reject(self, trial: optuna.Trial, attrs: dict[str, Any], violation: list[float], clock: _Clock,
                why: str | None = None, extra: dict[str, Any] | None = None) -> Values:
        why = why or ", ".join(f"{n} {attrs[n]:.4g} over the limit by {v:.4g}"
                               for n, v in zip(R.CONSTRAINED, violation, strict=True) if v > 0)
        set_attrs(trial, {**(extra or {}), R.REJECTED: why, **self._constraint(violation), R.TIMING: clock.timing()},
                  _constraints(violation))
        return self._values({**attrs, R.VAL_ACC: 0.0, R.LATENCY_MS: attrs.get(R.LATENCY_MS, 0.0)})

    @staticmethod
    def _constraint(violation: list[float]) -> dict[str, Any]:
        """How far each limit is exceeded, recorded with the trial; the sampler sees it too (`_constraints`) and
        learns to avoid infeasible regions. Trials of older studies carry none, which Optuna reads as feasible."""
        return {R.CONSTRAINT: _padded(violation)}

    def _prior(self, trial: optuna.Trial, key: str, training: dict[str, Any]) -> FrozenTrial | None:
        """The furthest-trained earlier trial of this architecture (with the same seed and training settings), once
        it has finished: an architecture is never trained from the start twice in one study."""
        study, me = trial.study, (key, json.dumps(training, sort_keys=True))
        ledger = self.ledger  # as read just before this trial: the claim below settles any race since
        while True:
            # Wait only for an *earlier* running trial of the same architecture: two workers that sampled it at the
            # same moment would otherwise each wait for the other, forever (both alive, so neither goes stale).
            if not any(t.number < trial.number and R.counts(t) and R.SPEC in t.user_attrs and R.arch_key(t) == me
                       for t in ledger.running()):
                if (done := ledger.done.get(me)) is not None:
                    return done
                holder = claim(trial, json.dumps(me))  # nothing to go on from: train it, unless another trial is
                if holder == trial.number:
                    return None
                held = ledger.trial(holder)
                if held is not None and held.state.is_finished() and claim(  # a failed attempt (a crashed worker,
                        trial, json.dumps(me), instead_of=holder) == trial.number:  # a rejection) is worth a retry
                    return None
            time.sleep(1.0)  # another worker is training it right now: wait for its result
            fail_stale(study)  # ... unless that worker has died
            ledger = self.ledger.update(study.get_trials(deepcopy=False))

    def _copy(self, trial: optuna.Trial, prior: FrozenTrial, clock: _Clock) -> Values:
        """This trial repeats `prior`'s architecture: its result is copied, nothing is trained."""
        copied = {k: prior.user_attrs[k] for k in R.RESULT if k in prior.user_attrs}
        constraints = _constraints(prior.user_attrs[R.CONSTRAINT]) if R.CONSTRAINT in prior.user_attrs else None
        if constraints:
            copied[R.CONSTRAINT] = _padded(prior.user_attrs[R.CONSTRAINT])
        set_attrs(trial, {R.DUPLICATE_OF: prior.number, **copied, R.TIMING: clock.timing()}, constraints)
        if prior.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"duplicate of trial {prior.number}, which was stopped early")
        return prior.values[0] if self.config.mode == "scalar" else list(prior.values)

    def _fit(self, trial: optuna.Trial, spec: ArchSpec, attrs: dict[str, Any], train_config: TrainConfig,
             resume: TrainState | None) -> Fitted:
        curve: list[float] = [r.val_acc for r in resume.history] if resume else []
        me = (attrs[R.SPEC], json.dumps(attrs[R.TRAINING], sort_keys=True))
        costs = self.config.costs

        def on_epoch(record: EpochRecord) -> bool:
            curve.append(record.val_acc)
            epoch = record.epoch
            if self.config.mode == "scalar":
                set_attrs(trial, {R.CURVE: curve})
                trial.report(self._reward(record.val_acc, attrs[R.MFLOPS]), epoch)
                if trial.should_prune():
                    trial.set_user_attr(R.STOPPED_AT, epoch)
                    raise optuna.TrialPruned(f"stopped at epoch {epoch}")
                return False
            if self.asha and epoch in self.asha.rungs():
                mine = to_minimise([record.val_acc] + [attrs[o] for o in costs], [True] + [False] * len(costs))
                ledger = self.ledger.update(trial.study.get_trials(deepcopy=False))
                others, _, order = ledger.rung(epoch, skip=me)
                if not self.asha.continues(mine, others, order):
                    return True  # stop training; _run records where, and the curve, and completes the trial
            if epoch < train_config.epochs:  # the last epoch's curve is written with the trial's result (_run)
                set_attrs(trial, {R.CURVE: curve})
            return False

        return self.fit(spec, self.data, train_config, on_epoch=on_epoch, train_acc=True, resume=resume)


def _curve(fitted: Fitted) -> list[float]:
    """The validation accuracy of every epoch, those before a resume included (what on_epoch wrote as it went)."""
    return [r.val_acc for r in fitted.result.history]


def _padded(violation: list[float]) -> list[float]:
    return [*violation, *[0.0] * (len(R.CONSTRAINED) - len(violation))]  # older studies recorded three


def _constraints(violation: list[float]) -> dict[str, float]:
    """Optuna 5's constraints (`Trial.set_constraint`), by name."""
    return dict(zip(R.CONSTRAINED, _padded(violation), strict=True))


class _Clock:
    """Where a trial's time goes: inside `fit` (training, its evaluations) and the rest, the search's own cost."""

    def __init__(self) -> None:
        self.start, self.fit = time.perf_counter(), 0.0

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.fit += time.perf_counter() - start

    def timing(self, fitted: Fitted | None = None) -> dict[str, float]:
        steps = sum(r.seconds for r in fitted.result.history) if fitted else 0.0
        return {"total": time.perf_counter() - self.start, "train": self.fit, "steps": steps}
