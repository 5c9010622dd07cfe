"""Where studies live: Optuna RDB storage (SQLite by default, PostgreSQL to share a study between machines).

RDB rather than Optuna's journal file, because only RDB storage has heartbeats: with them, a trial whose worker
died is failed and retried by another worker. Workers that open a new database at once take turns creating its
tables: a PostgreSQL advisory lock, or a lock on `<database>.lock` beside a SQLite file.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import json
import os
import warnings
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
import sqlalchemy.event
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.distributions import check_distribution_compatibility as _check_compatible
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models as _models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.trial import FrozenTrial, TrialState

from .errors import UserError

MEMORY = "memory:"  # memory:NAME, an Optuna InMemoryStorage in this process: throw-away searches (replays), one worker
_memory: dict[str, optuna.storages.InMemoryStorage] = {}


def open_storage(url: str, heartbeat: int = 10) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so a trial whose worker died is failed and retried by another worker (or, for
    memory:NAME, the process's in-memory storage of that name)."""
    if url.startswith(MEMORY):
        return _memory.setdefault(url, optuna.storages.InMemoryStorage())
    sqlite = url.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    try:
        with _one_initialiser(url), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = _Storage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))
        if sqlite:
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
            sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
            storage.engine.dispose()  # the connections Optuna opened to set up the tables predate the listeners
        return storage
    except Exception as e:  # sqlalchemy raises many kinds for a bad URL or an unreachable server
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot open storage {url!r}: {first[:200]}; give an Optuna RDB URL such as "
                        "sqlite:///path/study.db or postgresql://user:pass@host/db") from None


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """Synced at checkpoints rather than at every commit, in write-ahead logging (`prepare`): a trial
    writes its records in a dozen transactions, and with SQLite's default rollback journal each one waited for an
    fsync (11 ms apiece on this project's machine, half a search's own time). A WAL database survives a killed
    process intact; a power cut may lose the last transactions before a checkpoint, never the database
    (https://sqlite.org/wal.html)."""
    connection.isolation_level = None  # transactions begin where SQLAlchemy says (_begin_immediate), not later
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def prepare(storage: optuna.storages.BaseStorage) -> None:
    """Ready a study's database for a search, once it is about to write to it (a study only read, or refused, is
    left byte for byte as it was): the claims table (`claim`), and for SQLite write-ahead-log mode, kept in the file
    for every process that opens it."""
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, _Storage):
        return
    # SQLite's BEGIN IMMEDIATE serialises the creation between processes; PostgreSQL needs the advisory lock.
    with _advisory_lock(backend.url) if backend.engine.name == "postgresql" else contextlib.nullcontext(), \
            backend.engine.begin() as conn:
        _CLAIMS.create(conn, checkfirst=True)
    if backend.engine.name == "sqlite":
        raw = backend.engine.raw_connection()  # outside a transaction, which SQLite requires of this pragma
        try:
            with contextlib.suppress(Exception):  # a read-only folder cannot hold the -wal file; another process
                raw.cursor().execute("PRAGMA journal_mode=WAL")  # holding the file: the next one switches it
        finally:
            raw.close()


def _begin_immediate(connection: Any) -> None:
    """Each transaction takes the write lock when it begins. Python's sqlite3 otherwise begins one only at the first
    write, so Optuna's read-then-write steps were not atomic between processes: two workers could both pop the same
    enqueued trial (a promotion) and train it twice, the second failing with "Cannot tell a COMPLETE trial"."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def set_attrs(trial: optuna.Trial, attrs: dict[str, Any], constraints: dict[str, float] | None = None) -> None:
    """Set a running trial's user attributes and Optuna 5 constraints (`Trial.set_constraint`) together: in one
    transaction on resnas's RDB storage, where each `set_user_attr` is a transaction of its own and each
    `set_constraint` a read and a write; one call each on any other storage. The same rows are written either way,
    so every reader of a study, old or new, reads them alike."""
    backend = getattr(trial.storage, "_backend", None)
    if not isinstance(backend, _Storage):
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
    if isinstance(backend, _Storage) and isinstance(storage, _CachedStorage):
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
_CLAIMS = sqlalchemy.Table("resnas_claims", sqlalchemy.MetaData(),
                           sqlalchemy.Column("study_id", sqlalchemy.Integer, primary_key=True),
                           sqlalchemy.Column("key", sqlalchemy.String(64), primary_key=True),
                           sqlalchemy.Column("trial", sqlalchemy.Integer, nullable=False))


def claim(trial: optuna.Trial, key: str, *, instead_of: int | None = None) -> int:
    """The number of the trial that holds `key` (an architecture) in the study: the first to claim it, or this one
    where it takes over from `instead_of` (a holder that failed or never trained). On storages without the table
    (in memory: one process), every trial holds its own claims."""
    backend = getattr(trial.storage, "_backend", None)
    if not isinstance(backend, _Storage) or backend.engine.name not in _UPSERTS:
        return trial.number
    study_id, digest = trial.study._study_id, hashlib.sha256(key.encode()).hexdigest()
    where = (_CLAIMS.c.study_id == study_id) & (_CLAIMS.c.key == digest)
    with backend.engine.begin() as conn:
        if instead_of is None:
            conn.execute(_UPSERTS[backend.engine.name](_CLAIMS).values(study_id=study_id, key=digest,
                                                                        trial=trial.number).on_conflict_do_nothing())
        else:
            conn.execute(_CLAIMS.update().where(where & (_CLAIMS.c.trial == instead_of)).values(trial=trial.number))
        return conn.execute(sqlalchemy.select(_CLAIMS.c.trial).where(where)).scalar_one()


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


class _Storage(optuna.storages.RDBStorage):
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


class _TrialCache(_CachedStorage):
    """Optuna's cache of an RDB study in this process, keeping the study's trials in a list in number order as they
    arrive: Optuna's sorts every trial of the study at each read, and a search reads its study several times a
    trial (at 10^4 trials those sorts were what grew). A read of running or waiting trials looks among the
    unfinished ones only. The same trials in the same order as Optuna's `get_all_trials` (tests compare them)."""

    def __init__(self, backend: optuna.storages.RDBStorage) -> None:
        super().__init__(backend)
        self._listed: dict[int, list[FrozenTrial]] = {}

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        super()._add_trials_to_cache(study_id, trials)
        listed = self._listed.setdefault(study_id, [])
        for t in sorted(trials, key=lambda t: t.number):
            if t.number < len(listed) and listed[t.number].number == t.number:
                listed[t.number] = t
            elif t.number == len(listed):
                listed.append(t)
            else:  # numbers with a gap (another process's trial not read yet): listed as Optuna lists them
                listed[:] = sorted(self._studies[study_id].trials.values(), key=lambda t: t.number)
                return

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            study = self._studies[study_id]
            if states is not None and not any(s in states for s in _FINISHED):
                numbers = sorted(self._trial_id_to_study_id_and_number[i][1] for i in study.unfinished_trial_ids)
                trials = [t for t in (study.trials[n] for n in numbers) if t.state in states]
            else:
                trials = [t for t in self._listed.get(study_id, []) if states is None or t.state in states]
            return copy.deepcopy(trials) if deepcopy else trials


_FINISHED = [s for s in TrialState if s.is_finished()]


def cached(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """What a study is opened on: an RDB storage behind resnas's cache (_TrialCache), any other as it is."""
    return _TrialCache(storage) if isinstance(storage, optuna.storages.RDBStorage) else storage


def _one_initialiser(url: str) -> contextlib.AbstractContextManager:
    """Workers started together on a new database race to create its tables and stamp its schema version; the
    loser fails (SQLite: "UNIQUE constraint failed: alembic_version"), or on PostgreSQL its half-done transaction
    can block its own retry forever. So they take turns: a server-wide advisory lock on PostgreSQL, an exclusive
    flock on the folder holding the database for SQLite (whose own locks cover one statement, not the whole set-up).
    Not on the database file: closing any descriptor of an open SQLite file drops every POSIX lock this process
    holds on it, so a process that opened its study a second time corrupted it ("database disk image is
    malformed")."""
    if url.startswith("postgresql"):
        return _advisory_lock(url)
    database = sqlalchemy.engine.make_url(url).database if url.startswith("sqlite") else None
    if database and database != ":memory:":
        return _folder_lock(Path(database).parent)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(7346)"))
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(7346)"))
    finally:
        engine.dispose()


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # no folder yet: SQLite will fail to create the database and say so
        yield
        return
    try:
        with contextlib.suppress(OSError):  # a filesystem without locks: go unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def existing_studies(out_dir: str | Path) -> list[str]:
    return sorted(p.parent.name for p in Path(out_dir).glob("*/study.db"))


def open_study(name: str, *, out_dir: str | Path = "studies", storage: str | None = None) -> optuna.Study:
    """An existing study, by name under `out_dir` or in `storage`; a clear error lists the ones that exist."""
    if storage is None:
        path = Path(out_dir) / name / "study.db"
        if not path.is_file():
            found = existing_studies(out_dir)
            raise UserError(f"no study {name!r} under {out_dir}/; studies there: {', '.join(found) or 'none'}")
        storage = f"sqlite:///{path.resolve()}"
    store = cached(open_storage(storage))
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store)]
        raise UserError(f"no study {name!r} in {storage}; studies there: {', '.join(names) or 'none'}") from None
