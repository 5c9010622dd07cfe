"""One search trial: sample an architecture, check its cost, reuse a duplicate's result (or resume a paused one),
time it, fit it under MO-ASHA (or an Optuna pruner), and record everything on the Optuna trial (names in `records`).

The trainer and the latency measurement are parameters (`fit`, `latency`), so a benchmark can replay recorded
learning curves through this same code (see `replay`).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from .. import checkpoint, estimate, guard
from .. import records as R
from ..artifacts import upload
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
from .config import SearchConfig

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
                 data: Data | None = None) -> None:
        self.config, self.train_config, self.data_config, self.space = config, train_config, data_config, space
        self.device, self.fit, self.latency = device, fit, latency
        self.data = data if data is not None else load_data(data_config, device)
        self.asha = MOASHA(train_config.epochs, config.eta, config.min_epochs) \
            if config.mode == "pareto" and config.early_stopping else None
        self.ckpt_dir = (config.study_dir(data_config.dataset) / "checkpoints").resolve()  # trials link absolutely
        self.paused_dir = self.ckpt_dir.parent / "paused"
        self.artifacts = config.artifact_store(data_config.dataset)

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
        t_start = time.perf_counter()
        c = self.config
        done = [t for t in R.budget_trials(trial.study.get_trials(deepcopy=False))
                if t.number != trial.number and t.state != TrialState.WAITING]
        if len(done) >= c.budget:  # other workers have taken the last slots meanwhile
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
        _record(trial, attrs)
        violation = [cost.mflops - c.max_mflops if c.max_mflops else 0.0,
                     cost.params - c.max_params if c.max_params else 0.0, 0.0, 0.0]
        if violation[0] > 0 or violation[1] > 0:
            return self._reject(trial, attrs, violation)
        prior = self._prior(trial, attrs[R.SPEC], training)
        resume = None
        if prior is not None:
            promoted = trial.user_attrs.get(R.PROMOTED)
            if not (self.asha and c.paused != "drop" and R.PAUSED in prior.user_attrs) or \
                    (promoted is not None and promoted != prior.number):  # another worker promoted it first
                return self._copy(trial, prior)
            # a paused architecture proposed again (by the sampler, or by ASHA's promotion) goes on where it stopped;
            # where its state cannot be read (saved on another machine), it trains from the start
            resume = checkpoint.load_paused(prior.user_attrs[R.PAUSED])
            lat_attrs = {k: prior.user_attrs[k] for k in (R.LATENCY_MS, R.LATENCY_P90_MS, R.LATENCY_DEVICE)}
            attrs.update(lat_attrs)
            _record(trial, {**lat_attrs, R.RESUMED: {"trial": prior.number, "epoch": len(resume.history)}
                            if resume else None, R.CURVE: [r.val_acc for r in resume.history] if resume else []})
        else:
            try:  # a network the device cannot hold is infeasible, like one over a limit: never built, never trained
                guard.check(spec, batch_size=train_config.batch_size, input_size=self.data.image_size,
                            device=self.device, training=True, eval_batch_size=train_config.eval_batch_size)
                estimate.check_epoch(spec, input_size=self.data.image_size, batch_size=train_config.batch_size,
                                     train_images=self.data.split_size("train"),
                                     eval_images=self.data.split_size("val"), device=self.device)
            except UserError as e:
                return self._reject(trial, attrs, [*violation[:3], 1.0], why=str(e))
            lat = self.latency(spec, input_size=self.data.image_size, batch_size=c.latency_batch_size,
                               device=self.device)
            attrs.update({R.LATENCY_MS: lat.latency_ms, R.LATENCY_P90_MS: lat.latency_p90_ms,
                          R.LATENCY_DEVICE: lat.device})
            _record(trial, {k: attrs[k] for k in (R.LATENCY_MS, R.LATENCY_P90_MS, R.LATENCY_DEVICE)})
            if c.max_latency_ms and lat.latency_ms > c.max_latency_ms:
                violation[2] = lat.latency_ms - c.max_latency_ms
                return self._reject(trial, attrs, violation)
        self._constrain(trial, violation)
        t_fit = time.perf_counter()
        fitted = self._fit(trial, spec, attrs, train_config, resume)
        if resume is not None:  # superseded by this trial's own result (or its own pause)
            Path(prior.user_attrs[R.PAUSED]).unlink(missing_ok=True)
        if fitted.stopped_early:
            if self.asha and c.paused != "drop" and fitted.result.state is not None:
                path = checkpoint.save_paused(fitted.result.state, self.paused_dir / f"trial-{trial.number:05d}.pt")
                trial.set_user_attr(R.PAUSED, str(path))
            # The trial completes with what it measured (its accuracy at the rung), so that the sampler learns from
            # it: NSGA-II and TPE build on completed trials only, and with most trials pruned (no values) NSGA-II
            # never left its random first generation. Only fully trained trials make the front.
            return self._values({**attrs, R.VAL_ACC: fitted.result.history[-1].val_acc})
        t_fitted = time.perf_counter()
        if c.other_sizes and spec.head == "gap":  # a flatten head takes one input size only
            trial.set_user_attr(R.ACC_AT_SIZE, {str(s): accuracy_at_size(fitted.model, self.data, "test", s)
                                                for s in c.other_sizes})
        if c.prune_ratios:
            trial.set_user_attr(R.PRUNE, prune_curve(fitted.model, self.data, c.prune_ratios,
                                                     criterion_name=c.prune_criterion))
        path = save(fitted, self.ckpt_dir / f"trial-{trial.number:05d}.pt", train_config=train_config,
                    data_config=self.data_config, metrics={R.LATENCY_MS: attrs[R.LATENCY_MS],
                                                           R.LATENCY_DEVICE: attrs[R.LATENCY_DEVICE]},
                    extra={"study": trial.study.study_name, "trial": trial.number})
        if self.artifacts:
            upload(trial, path, self.artifacts)
        # where the trial's time went: fit() (steps, per-epoch validation, final evaluation) against the rest
        timing = {"total": time.perf_counter() - t_start, "train": t_fitted - t_fit,
                  "steps": sum(r.seconds for r in fitted.result.history)}
        attrs[R.VAL_ACC] = fitted.val_acc
        _record(trial, {R.VAL_ACC: fitted.val_acc, R.TEST_ACC: fitted.test_acc, R.TRAIN_ACC: fitted.train_acc,
                        R.TRAIN_LOSS: fitted.result.history[fitted.result.best_epoch - 1].train_loss,
                        R.CHECKPOINT: str(path), R.SECONDS: timing["steps"], R.TIMING: timing})
        return self._values(attrs)

    def _reject(self, trial: optuna.Trial, attrs: dict[str, Any], violation: list[float],
                why: str | None = None) -> Values:
        why = why or ", ".join(f"{n} {attrs[n]:.4g} over the limit by {v:.4g}"
                               for n, v in zip(R.CONSTRAINED, violation, strict=True) if v > 0)
        trial.set_user_attr(R.REJECTED, why)
        self._constrain(trial, violation)
        return self._values({**attrs, R.VAL_ACC: 0.0, R.LATENCY_MS: attrs.get(R.LATENCY_MS, 0.0)})

    def _constrain(self, trial: optuna.Trial, violation: list[float]) -> None:
        """Record how far each limit is exceeded; the sampler sees it too (Optuna 5's `Trial.set_constraint`) and
        learns to avoid infeasible regions. Trials of older studies carry none, which Optuna reads as feasible."""
        violation = [*violation, *[0.0] * (len(R.CONSTRAINED) - len(violation))]  # older studies recorded three
        trial.set_user_attr(R.CONSTRAINT, violation)
        for name, value in zip(R.CONSTRAINED, violation, strict=True):
            trial.set_constraint(name, value)

    def _prior(self, trial: optuna.Trial, key: str, training: dict[str, Any]) -> FrozenTrial | None:
        """The furthest-trained earlier trial of this architecture (with the same seed and training settings), once
        it has finished: an architecture is never trained from the start twice in one study."""
        study = trial.study
        while True:
            # Wait only for an *earlier* running trial of the same architecture: two workers that sampled it at the
            # same moment would otherwise each wait for the other, forever (both alive, so neither goes stale).
            same = [t for t in study.get_trials(deepcopy=False, states=R.FINISHED + (TrialState.RUNNING,))
                    if t.number != trial.number and t.user_attrs.get(R.SPEC) == key and R.counts(t)
                    and t.user_attrs.get(R.TRAINING, {}) == training
                    and (t.state != TrialState.RUNNING or t.number < trial.number)]
            if not same:
                return None
            if not any(t.state == TrialState.RUNNING for t in same):
                done = [t for t in same if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
                # a failed attempt is worth another try (a crashed worker, say)
                return R.furthest(done).popitem()[1] if done else None
            time.sleep(1.0)  # another worker is training it right now: wait for its result
            fail_stale(study)  # ... unless that worker has died

    def _copy(self, trial: optuna.Trial, prior: FrozenTrial) -> Values:
        """This trial repeats `prior`'s architecture: its result is copied, nothing is trained."""
        trial.set_user_attr(R.DUPLICATE_OF, prior.number)
        _record(trial, {k: prior.user_attrs[k] for k in R.RESULT if k in prior.user_attrs})
        if R.CONSTRAINT in prior.user_attrs:
            self._constrain(trial, prior.user_attrs[R.CONSTRAINT])
        if prior.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"duplicate of trial {prior.number}, which was stopped early")
        return prior.values[0] if self.config.mode == "scalar" else list(prior.values)

    def _fit(self, trial: optuna.Trial, spec: ArchSpec, attrs: dict[str, Any], train_config: TrainConfig,
             resume: TrainState | None) -> Fitted:
        curve: list[float] = [r.val_acc for r in resume.history] if resume else []
        me = (attrs[R.SPEC], json.dumps(attrs[R.TRAINING], sort_keys=True))
        costs = [o for o in self.config.objectives if o != R.VAL_ACC]

        def on_epoch(record: EpochRecord) -> bool:
            curve.append(record.val_acc)
            trial.set_user_attr(R.CURVE, curve)
            epoch = record.epoch
            if self.config.mode == "scalar":
                trial.report(self._reward(record.val_acc, attrs[R.MFLOPS]), epoch)
                if trial.should_prune():
                    trial.set_user_attr(R.STOPPED_AT, epoch)
                    raise optuna.TrialPruned(f"stopped at epoch {epoch}")
            elif self.asha and epoch in self.asha.rungs():
                maximise = [True] + [False] * len(costs)
                mine = to_minimise([record.val_acc] + [attrs[o] for o in costs], maximise)
                others = [to_minimise([t.user_attrs[R.CURVE][epoch - 1]] + [t.user_attrs[o] for o in costs],
                                      maximise)
                          for k, t in R.furthest(trial.study.get_trials(deepcopy=False), running=True).items()
                          if k != me
                          and len(t.user_attrs.get(R.CURVE, [])) >= epoch and all(o in t.user_attrs for o in costs)]
                if not self.asha.continues(mine, others):
                    trial.set_user_attr(R.STOPPED_AT, epoch)
                    return True  # stop training; _run completes the trial with its rung accuracy
            return False

        return self.fit(spec, self.data, train_config, on_epoch=on_epoch, train_acc=True, resume=resume)


def _record(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
