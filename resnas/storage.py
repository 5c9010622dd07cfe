"""Where studies live: Optuna RDB storage (SQLite by default, PostgreSQL to share a study between machines).

RDB rather than Optuna's journal file, because only RDB storage has heartbeats: with them, a trial whose worker
died is failed and retried by another worker. Workers that open a new database at once take turns creating its
tables: a PostgreSQL advisory lock, or a lock on the folder that holds a SQLite file. What a process reads of a
study goes through `_TrialCache`, Optuna's cache with the trials kept in order; what a trial writes, through `writes`.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import warnings
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.event
import sqlalchemy.pool
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from .errors import UserError
from .writes import CLAIMS, RecordStorage

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
            storage = RecordStorage(
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
    if not isinstance(backend, RecordStorage):
        return
    # SQLite's BEGIN IMMEDIATE serialises the creation between processes; PostgreSQL needs the advisory lock.
    with _advisory_lock(backend.url) if backend.engine.name == "postgresql" else contextlib.nullcontext(), \
            backend.engine.begin() as conn:
        CLAIMS.create(conn, checkfirst=True)
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
