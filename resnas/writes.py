"""A trial's records written in as few storage round trips as Optuna allows: its attributes and constraints in one
transaction per step (`set_attrs`), a whole architecture's parameters in one (`set_params`), and which trial trains
an architecture (`claim`). The rows are the ones Optuna's own calls write, so every reader of a study, old or new,
reads them alike. `RecordStorage` is the RDB storage resnas opens (storage.open_storage) that does the writing."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
import sqlalchemy.exc
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.distributions import check_distribution_compatibility as _check_compatible
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models as _models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.trial import FrozenTrial


def set_attrs(trial: optuna.Trial, attrs: dict[str, Any], constraints: dict[str, float] | None = None) -> None:
    """Set a running trial's user attributes and Optuna 5 constraints (`Trial.set_constraint`) together: in one
    transaction on resnas's RDB storage, where each `set_user_attr` is a transaction of its own and each
    `set_constraint` a read and a write; one call each on any other storage. The same rows are written either way,
    so every reader of a study, old or new, reads them alike."""
    backend = getattr(trial.storage, "_backend", None)
    if not isinstance(backend, RecordStorage):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for name, value in (constraints or {}).items():
            trial.set_constraint(name, value)
        return
    system = {f"{_CONSTRAINTS_KEY}:{name}": float(value) for name, value in (constraints or {}).items()}
    backend.set_trial_attrs(trial._trial_id, attrs, system)
    trial._cached_frozen_trial.user_attrs.update(attrs)  # what Trial.set_user_attr keeps for trial.user_attrs
    trial._cached_frozen_trial.system_attrs.update(system)


def set_params(storage: optuna.storages.BaseStorage, trial: FrozenTrial, params: dict[str, Any],
               distributions: dict[str, BaseDistribution], system: dict[str, Any]) -> None:
    """Write a new trial's parameters (all of them, as a sampler that picks a whole architecture knows them before
    the first suggest_* call) and system attributes in one transaction on resnas's RDB storage, where Optuna
    writes each parameter in its own; one call each on any other storage. `trial` is the FrozenTrial Optuna handed
    the sampler's `before_trial` (the trial's own cached copy): given its parameters here, the suggest_* calls then
    read them back instead of writing them (as they do for a parameter already suggested)."""
    backend = getattr(storage, "_backend", None)
    internal = {k: distributions[k].to_internal_repr(v) for k, v in params.items()}
    if isinstance(backend, RecordStorage) and isinstance(storage, _CachedStorage):
        with storage._lock:  # the distribution each parameter was first written with, as Optuna's cache keeps it
            known = storage._studies[storage._trial_id_to_study_id_and_number[trial._trial_id][0]].param_distribution
            backend.set_trial_params(trial._trial_id, internal, distributions, system, known)
            for name in params:
                known.setdefault(name, distributions[name])
    else:
        for name, value in internal.items():
            storage.set_trial_param(trial._trial_id, name, value, distributions[name])
        for key, value in system.items():
            storage.set_trial_system_attr(trial._trial_id, key, value)
    trial.params.update(params)
    trial.distributions.update({k: distributions[k] for k in params})
    trial.system_attrs.update(system)


_UPSERTS = {"sqlite": sqlalchemy.dialects.sqlite.insert, "postgresql": sqlalchemy.dialects.postgresql.insert}
# Which trial trains each architecture from its first epoch: a row per (study, architecture), inserted once, so that
# two workers that sampled it at the same moment cannot both start it (each reads the study before the other wrote).
CLAIMS = sqlalchemy.Table("resnas_claims", sqlalchemy.MetaData(),
                           sqlalchemy.Column("study_id", sqlalchemy.Integer, primary_key=True),
                           sqlalchemy.Column("key", sqlalchemy.String(64), primary_key=True),
                           sqlalchemy.Column("trial", sqlalchemy.Integer, nullable=False))


def claim(trial: optuna.Trial, key: str, *, instead_of: int | None = None) -> int:
    """The number of the trial that holds `key` (an architecture) in the study: the first to claim it, or this one
    where it takes over from `instead_of` (a holder that failed or never trained). On storages without the table
    (in memory: one process), every trial holds its own claims."""
    backend = getattr(trial.storage, "_backend", None)
    if not isinstance(backend, RecordStorage) or backend.engine.name not in _UPSERTS:
        return trial.number
    study_id, digest = trial.study._study_id, hashlib.sha256(key.encode()).hexdigest()
    where = (CLAIMS.c.study_id == study_id) & (CLAIMS.c.key == digest)
    with backend.engine.begin() as conn:
        if instead_of is None:
            conn.execute(_UPSERTS[backend.engine.name](CLAIMS).values(study_id=study_id, key=digest,
                                                                        trial=trial.number).on_conflict_do_nothing())
        else:
            conn.execute(CLAIMS.update().where(where & (CLAIMS.c.trial == instead_of)).values(trial=trial.number))
        return conn.execute(sqlalchemy.select(CLAIMS.c.trial).where(where)).scalar_one()


_TRIALS = _models.TrialModel.__table__
_TRIAL_STATE = sqlalchemy.select(_TRIALS.c.state, _TRIALS.c.study_id, _TRIALS.c.number) \
    .where(_TRIALS.c.trial_id == sqlalchemy.bindparam("trial_id"))


@functools.cache
def _upsert(dialect: str, table: sqlalchemy.Table) -> Any:
    """The upsert Optuna's set_trial_*_attr writes (a row per key), built once: executed with many rows at a time,
    SQLAlchemy compiles it once (a statement with the rows as its values was compiled anew at every write)."""
    insert = _UPSERTS[dialect](table)
    return insert.on_conflict_do_update(index_elements=[table.c.trial_id, table.c.key],
                                        set_={"value_json": insert.excluded.value_json})


class RecordStorage(optuna.storages.RDBStorage):
    def set_trial_attrs(self, trial_id: int, user: dict[str, Any], system: dict[str, Any]) -> None:
        """User and system attributes in one transaction: the check Optuna makes before each write (the trial
        exists and is still running), then one multi-row upsert per table on SQLite and PostgreSQL (the rows Optuna's
        own upserts write), or Optuna's writes one by one on other databases. In SQLAlchemy Core, not its ORM: the
        ORM's query of the trial cost more than the write."""
        if self.engine.name not in _UPSERTS:
            with _create_scoped_session(self.scoped_session, True) as session:
                for model, attrs in ((_models.TrialUserAttributeModel, user),
                                     (_models.TrialSystemAttributeModel, system)):
                    for key, value in attrs.items():
                        self._set_trial_attr_without_commit(session, model, trial_id, key, value)
            return
        with self.engine.begin() as conn:
            self._check_running(conn, trial_id)
            self._upsert_attrs(conn, trial_id, user, system)

    def set_trial_params(self, trial_id: int, params: dict[str, float], distributions: dict[str, BaseDistribution],
                         system: dict[str, Any], known: dict[str, BaseDistribution]) -> None:
        """Parameters (internal values) and system attributes in one transaction, with Optuna's checks: the trial
        is still running, and each distribution is compatible with the one the study first wrote for that name
        (`known`, else read in one query)."""
        if self.engine.name not in _UPSERTS:
            for name, value in params.items():
                self._set_trial_param(trial_id, name, value, distributions[name], known.get(name))
            self.set_trial_attrs(trial_id, {}, system)
            return
        params_table, trials = _models.TrialParamModel.__table__, _TRIALS
        with self.engine.begin() as conn:
            study_id = self._check_running(conn, trial_id)
            if unknown := [k for k in params if k not in known]:
                earlier = conn.execute(sqlalchemy.select(params_table.c.param_name, params_table.c.distribution_json)
                                       .join(trials, trials.c.trial_id == params_table.c.trial_id)
                                       .where(trials.c.study_id == study_id,
                                              params_table.c.param_name.in_(unknown)).distinct())
                for name, text in earlier:
                    _check_compatible(json_to_distribution(text), distributions[name])
            for name in params:
                if name in known:
                    _check_compatible(known[name], distributions[name])
            conn.execute(params_table.insert(), [
                {"trial_id": trial_id, "param_name": k, "param_value": v,
                 "distribution_json": distribution_to_json(distributions[k])} for k, v in params.items()])
            self._upsert_attrs(conn, trial_id, {}, system)

    def _check_running(self, conn: sqlalchemy.Connection, trial_id: int) -> int:
        """The trial's study, once Optuna's check passed: the trial exists and has not finished."""
        row = conn.execute(_TRIAL_STATE, {"trial_id": trial_id}).one_or_none()
        if row is None:
            raise KeyError(f"no trial with trial_id {trial_id} exists")
        if row.state.is_finished():  # Optuna's check_trial_is_updatable would read the trial on a second connection,
            raise optuna.exceptions.UpdateFinishedTrialError(  # which waits for this one's write lock
                f"Trial#{row.number} has already finished and can not be updated.")
        return row.study_id

    @staticmethod
    def _upsert_attrs(conn: sqlalchemy.Connection, trial_id: int, user: dict[str, Any],
                      system: dict[str, Any]) -> None:
        for model, attrs in ((_models.TrialUserAttributeModel, user), (_models.TrialSystemAttributeModel, system)):
            if attrs:
                conn.execute(_upsert(conn.dialect.name, model.__table__),
                             [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()])

    def record_heartbeat(self, trial_id: int) -> None:
        """A heartbeat that cannot be written (a full disk, a database restarting) is skipped: Optuna's heartbeat
        thread would die of the error, printing a traceback, and leave the trial with no heartbeat at all."""
        with contextlib.suppress(optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            super().record_heartbeat(trial_id)
