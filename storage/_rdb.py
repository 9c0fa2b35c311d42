"""Opening the study database: read-write for `run` and workers (WAL, indexes, heartbeats), read-only for the
commands that only look (`status`, `best`, `trials`, ...), and one translation of database errors into messages."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna.storages  # loaded with the errors below anyway: the SQLite storage subclasses Optuna's

from hpsearch.errors import HpsearchError, UsageError, exception_chain
from hpsearch.storage._urls import STORAGE_ENV, check_shareable, mask_url, redact, resolve_url, sqlite_path

T = TypeVar("T")


def _storage_errors() -> tuple[type[BaseException], ...]:
    import optuna.exceptions
    import sqlalchemy.exc

    return (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, optuna.exceptions.StorageInternalError)


# Errors that mean "the database is unreachable right now" (restart, dropped connection, network).
STORAGE_ERRORS = _storage_errors()
# How often a process retries an unreachable storage, and how long it waits in all before giving up: workers, the
# launcher's progress loop and its final reads wait out the same outage.
STORAGE_RETRY_SECONDS = 2.0
STORAGE_OUTAGE_SECONDS = 600.0


def caused_by_storage(exc: BaseException) -> bool:
    """True when a storage error (`STORAGE_ERRORS`) is the exception or stands in its chain (Optuna's trial loop
    can mask a failed commit behind an error of its own)."""
    grpc = sys.modules.get("grpc")  # loaded only by a process on an `hpsearch proxy`
    return any(isinstance(error, STORAGE_ERRORS) or (grpc is not None and isinstance(error, grpc.RpcError)
                                                     and _status_name(error) in _GRPC_OUTAGES)
               for error in exception_chain(exc))


class Outage:
    """A storage outage as one process lives it: any other error goes up; `announce(error)` runs once when the
    storage stops answering and `back(seconds)` once it answers again; after STORAGE_OUTAGE_SECONDS it gives up.
    Workers, the launcher's progress loop and its reads each keep one, so they all wait out the same outage."""

    def __init__(self, announce: Callable[[BaseException], None] | None = None,
                 back: Callable[[float], None] | None = None, advice: str = "") -> None:
        self.announce, self.back, self.advice = announce, back, advice
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        """Re-raises `exc` unless the storage is unreachable; raises HpsearchError once that has lasted too long."""
        if not caused_by_storage(exc):
            raise exc
        if self.since is None:
            self.since = time.monotonic()
            if self.announce is not None:
                self.announce(exc)
        waited = time.monotonic() - self.since
        if waited > STORAGE_OUTAGE_SECONDS:
            advice = f"; {self.advice}" if self.advice else ""
            raise HpsearchError(f"the storage has been unreachable for {waited:.0f}s; giving up "
                                f"({type(exc).__name__}){advice}") from None

    def answered(self) -> None:
        """The storage answered: an outage in progress is over."""
        if self.since is not None:
            if self.back is not None:
                self.back(time.monotonic() - self.since)
            self.since = None

    @staticmethod
    def pause() -> None:
        """The wait before the next attempt."""
        time.sleep(STORAGE_RETRY_SECONDS)

    def wait_out(self, action: Callable[[], T]) -> T:
        """`action()`, retried every STORAGE_RETRY_SECONDS while the storage is unreachable."""
        while True:
            try:
                result = action()
            except Exception as exc:
                self.failed(exc)
                self.pause()
                continue
            self.answered()
            return result


# gRPC statuses of a proxy that is restarting or unreachable (a worker waits them out like a database outage).
_GRPC_OUTAGES = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def _status_name(exc: BaseException) -> str:
    """A gRPC error's status; UNKNOWN carrying a database error of the proxy's counts as UNAVAILABLE."""
    code = getattr(exc, "code", None)
    name = getattr(code(), "name", "") if callable(code) else ""
    details = getattr(exc, "details", None)
    text = str(details() if callable(details) else "")
    if name == "UNKNOWN" and "database unreachable behind the proxy" in text:  # proxy.OUTAGE_MARK
        return "UNAVAILABLE"
    return name


# Keras trials take minutes: a heartbeat a minute, declared dead after five silent minutes.
DEFAULT_HEARTBEAT_INTERVAL = 60
DEFAULT_GRACE_PERIOD = 300
SQLITE_TIMEOUT_SECONDS = 60
MAX_RETRY = 1
# SQLite's words for a file that is not (or no longer) a database: another file, or a truncated copy.
_NOT_SQLITE = ("file is not a database", "database disk image is malformed")


def engine_kwargs(url: str, read_only: bool = False) -> dict[str, Any]:
    """SQLAlchemy `create_engine` options for the study database.

    Read-only opens a SQLite file with `mode=ro` (never creates it, never changes its journal mode; a WAL
    database is read too) and starts every PostgreSQL transaction read-only.
    """
    if url.startswith("sqlite"):
        db = sqlite_path(url)
        if read_only and db is not None:
            # Through a creator, not a `file:PATH?mode=ro&uri=true` URL: SQLAlchemy decodes %XX in that URL, so a
            # path holding '?', '#' or '%' would lose `mode=ro` and SQLite would create another file.
            uri = f"file:{urllib.parse.quote(str(db.resolve()))}?mode=ro"
            return {"creator": functools.partial(_connect_read_only, uri)}
        # Several local workers write the same file: wait for the lock instead of failing at once.
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
    # Survive a restarted server or a dropped connection by reconnecting; keep each worker's pool small.
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}
    if read_only and url.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        options = make_url(url).query.get("options") or ""
        options = options if isinstance(options, str) else " ".join(options)
        kwargs["connect_args"] = {"options": f"{options} -c default_transaction_read_only=on".strip()}
    return kwargs


def _connect_read_only(uri: str) -> Any:
    """A `mode=ro` connection; a WAL database whose directory we cannot write is opened `immutable`.

    Reading a WAL database needs its `-shm` file. When no writer has it open, that file does not exist and a
    read-only directory (a read-only mount, another user's files) forbids creating it: SQLite answers
    SQLITE_READONLY_DIRECTORY. No writer means nothing changes while we read, so `immutable=1` is then safe.
    """
    import sqlite3

    connection = sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_SECONDS, check_same_thread=False)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return connection
    except sqlite3.OperationalError as exc:
        connection.close()
        if getattr(exc, "sqlite_errorname", "") != "SQLITE_READONLY_DIRECTORY" and "readonly" not in str(exc):
            raise
    except BaseException:
        connection.close()
        raise
    return sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=SQLITE_TIMEOUT_SECONDS, check_same_thread=False)


def check_sqlite_file(url: str, must_exist: bool) -> Path | None:
    """The SQLite file of `url` (None for other databases) once it can be opened as one.

    Args:
        url: a resolved storage URL.
        must_exist: True for read-only commands, which must never create a database.

    Raises:
        UsageError: the path is a directory, the file is missing (`must_exist`), or its directory is missing.
    """
    db = sqlite_path(url)
    if db is None:
        return None
    shown = os.path.abspath(db)
    if db.is_dir():
        raise UsageError(f"{shown} is a directory, not a SQLite file; point --storage at a study database, e.g. "
                         f"sqlite:///{db / 'hpsearch.db'}")
    if must_exist and not db.exists():
        raise UsageError(f"no study database at {shown}; check --storage / ${STORAGE_ENV}, or create a study with "
                         "`hpsearch run`")
    if db.exists() and not db.is_file():
        raise UsageError(f"{shown} is not a regular file, so not a SQLite database; point --storage at a study "
                         "database")
    if not db.resolve().parent.is_dir():
        raise UsageError(f"the directory of SQLite file {db} does not exist; create it or pass another --storage")
    return db


def database_error(exc: BaseException, url: str, doing: str = "connect to") -> HpsearchError:
    """One line for a database error: what is wrong with the storage and what to do, password masked.

    Args:
        exc: a SQLAlchemy error, or Optuna's `StorageInternalError` that wraps one.
        url: the storage URL (printed masked).
        doing: what failed, for an outage: "connect to", "query", "read".

    Returns:
        A `UsageError` (exit 2) for a problem the user fixes (a file that is not SQLite, a PostgreSQL database
        that does not exist, a database without studies), else an `HpsearchError` (exit 1) quoting the reason.
    """
    cause: BaseException | None = exc
    while cause is not None and getattr(cause, "orig", None) is None and cause.__cause__ is not None:
        cause = cause.__cause__
    orig = getattr(cause, "orig", None) or cause or exc
    text = str(orig).strip()
    reason = redact(text.splitlines()[0]) if text else type(orig).__name__
    shown = mask_url(url)
    db = sqlite_path(url)
    if db is not None and any(words in text for words in _NOT_SQLITE):
        return UsageError(f"{os.path.abspath(db)} is not a SQLite database ({reason}); point --storage at a study "
                          "database or move the file away")
    missing = re.search(r'database "([^"]+)" does not exist', text)
    if missing:
        return UsageError(f'database "{missing[1]}" does not exist on the PostgreSQL server of {shown}; create it '
                          f"with `{_createdb(url, missing[1])}` or fix the database name in the URL")
    if "no such table" in text or re.search(r'relation "[^"]+" does not exist', text):
        return UsageError(f"storage {shown} holds no studies yet (run `hpsearch run` first)")
    if db is not None and "unable to open database file" in text:
        return UsageError(f"cannot open SQLite file {os.path.abspath(db)} ({reason}); check the path and its "
                          "permissions")
    return HpsearchError(f"cannot {doing} storage {shown}: {reason}")


def _createdb(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # only a hint: an unparsable URL gets the bare command
        return f"createdb {name}"
    flags = [f"-{flag} {value}" for flag, value in (("h", parsed.host), ("p", parsed.port), ("U", parsed.username))
             if value]
    return " ".join(["createdb", *flags, name])


@contextlib.contextmanager
def storage_errors_as_messages(url: str, doing: str = "read") -> Iterator[None]:
    """Turns a database error raised inside the block into one line naming the problem and the fix.

    Raises:
        HpsearchError: see `database_error`.
    """
    import optuna.exceptions
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError) as exc:
        raise database_error(exc, url, doing) from None


def _malformed(url: str, exc: BaseException) -> UsageError:
    return UsageError(f"storage URL {mask_url(url)} is malformed or names an unknown driver ({type(exc).__name__}); "
                      "expected sqlite:///FILE or postgresql+psycopg://USER:PASSWORD@HOST:5432/DB")


def _enable_wal(storage: optuna.storages.RDBStorage) -> None:
    from sqlalchemy import event, text

    @event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    with storage.engine.connect() as connection:  # WAL is a property of the file: once is enough
        connection.execute(text("PRAGMA journal_mode=WAL"))


def open_storage(url: str | None = None, heartbeat_interval: int | None = DEFAULT_HEARTBEAT_INTERVAL,
                 grace_period: int | None = DEFAULT_GRACE_PERIOD, retry: bool = True, tune: bool = True,
                 pool_size: int | None = None) -> optuna.storages.RDBStorage:
    """Opens the study database for writing (creating it if needed), with heartbeats and one retry of trials whose
    worker died; with `tune`, a SQLite file is switched to WAL and the query indexes are added (a process that
    only serves what is there, the dashboard, passes False and leaves the database as it found it). `pool_size`
    replaces a worker's small PostgreSQL pool for a process that serves many requests at once (`hpsearch proxy`).

    Raises:
        UsageError: the URL is malformed, names an unknown driver or an in-memory database, the SQLite path is a
            directory or not a SQLite database, or the PostgreSQL database does not exist.
        HpsearchError: the database cannot be reached or has an incompatible schema.
    """
    import optuna
    import sqlalchemy.exc

    url = resolve_url(url)
    from hpsearch.storage.proxy import is_proxy_url

    if is_proxy_url(url):
        from hpsearch.storage.proxy import open_proxy

        return open_proxy(url, heartbeat_interval, grace_period, retry)
    check_shareable(url)
    db = check_sqlite_file(url, must_exist=False)
    try:
        with warnings.catch_warnings():  # heartbeats and their retry are stable in use; Optuna flags them experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY) if retry else None
            storage = _create_rdb_storage(url, callback, heartbeat_interval, grace_period, pool_size)
        if db is not None and tune:
            _enable_wal(storage)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise _malformed(url, exc) from None
    except (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError) as exc:
        raise database_error(exc, url) from None
    except RuntimeError as exc:  # Optuna's schema version check
        raise _schema_error(url, exc) from None
    _check_schema(storage, url)
    if tune:
        _ensure_indexes(storage)
    return storage


def _check_schema(storage: optuna.storages.RDBStorage, url: str) -> None:
    """Refuses a schema hpsearch's own SQL was not written against (storage/optuna_compat.py)."""
    import sqlalchemy.exc

    from hpsearch.storage.optuna_compat import check_schema

    try:
        version = storage.get_current_version()
    except (sqlalchemy.exc.DBAPIError, AssertionError):
        return  # no version table yet (nothing to read); Optuna creates the current one
    check_schema(version, mask_url(url))


def open_storage_read_only(url: str | None = None) -> optuna.storages.RDBStorage:
    """Opens an existing study database for reading only: no file, table, index or journal-mode change, no
    heartbeat, no retry callback (see `engine_kwargs` for how SQLite and PostgreSQL are kept read-only).

    Raises:
        UsageError: the URL is malformed or in-memory, the SQLite file is missing, a directory or not a SQLite
            database, the PostgreSQL database does not exist, or it holds no studies yet.
        HpsearchError: the database cannot be reached or has an incompatible schema.
    """
    import optuna
    import sqlalchemy.exc

    url = resolve_url(url)
    from hpsearch.storage.proxy import is_proxy_url

    if is_proxy_url(url):  # what the proxy serves; it never changes anything by itself
        from hpsearch.storage.proxy import open_proxy

        return open_proxy(url)
    check_shareable(url)
    check_sqlite_file(url, must_exist=True)
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url, read_only=True),
                                             skip_table_creation=True)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise _malformed(url, exc) from None
    except (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError) as exc:
        raise database_error(exc, url) from None
    except RuntimeError as exc:
        raise _schema_error(url, exc) from None
    _check_schema(storage, url)
    return storage


def load_study_read_only(study_name: str, url: str | None = None) -> optuna.Study:
    """A study loaded from a read-only storage (`open_storage_read_only`), for commands that only look at it.

    Raises:
        UsageError: the study does not exist (the message lists those that do), or see `open_storage_read_only`.
    """
    import optuna

    url = resolve_url(url)
    storage = open_storage_read_only(url)
    with storage_errors_as_messages(url):
        try:
            return optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
            raise UsageError(f"study {study_name!r} does not exist; existing studies: "
                             f"{', '.join(names) or '(none)'}") from None


def _schema_error(url: str, exc: RuntimeError) -> HpsearchError:
    return HpsearchError(f"storage {mask_url(url)}: {redact(str(exc))} Upgrade it with: optuna storage upgrade "
                         f"--storage '{mask_url(url)}'")


def _create_rdb_storage(url: str, callback: Any, heartbeat_interval: int | None, grace_period: int | None,
                        pool_size: int | None = None) -> optuna.storages.RDBStorage:
    """Optuna creates the tables and stamps the schema version on first use; workers starting at the same instant
    on a new database race for that (SQLite: a duplicate `alembic_version` row; PostgreSQL: duplicate catalog
    entries). On SQLite the creators take turns under a file lock beside the database; on any backend a loser of
    the race retries and finds the tables made."""
    import random
    import time

    import optuna
    import sqlalchemy.exc

    db = sqlite_path(url)
    for attempt in range(6):
        try:
            with _creation_lock(db):
                kwargs = engine_kwargs(url)
                if pool_size and "pool_size" in kwargs:  # one process serving many (the proxy): a pool to match
                    kwargs.update(pool_size=pool_size, max_overflow=0)
                kind = SqliteStorage if db is not None else optuna.storages.RDBStorage
                return kind(
                    url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period, heartbeat_stale_trial_callback=callback if heartbeat_interval else None)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            lost_race = isinstance(exc, sqlalchemy.exc.IntegrityError) or "exist" in str(exc) \
                or "duplicate" in str(exc).lower()
            if attempt == 5 or not lost_race:
                raise
            time.sleep(0.2 + random.random() * 0.5)
    raise AssertionError("unreachable")


class SqliteStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose trial state changes take turns on a SQLite file.

    Optuna reads a trial's state, checks that the change is allowed, then writes the new state, counting on
    SELECT ... FOR UPDATE, which SQLite ignores (and Python's driver begins the transaction only at the write): two
    workers could both take the same queued trial (an enqueued configuration, a retry) and both run it, and two stale
    checks could both fail the same dead trial and both queue its retry. With 4 threads taking 200 queued trials,
    66 were taken twice. Each change holds `<file>.init-lock` (see `_creation_lock`) from the read to the commit, so
    exactly one of them happens; the proxy's server threads and the workers beside the file take the same turns.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        path = sqlite_path(url)
        assert path is not None, url
        self.database_file = path.resolve()  # the same file if the process changes directory

    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState, values: Any = None) -> bool:
        with _creation_lock(self.database_file):
            return super().set_trial_state_values(trial_id, state, values)


@contextlib.contextmanager
def _creation_lock(db: Path | None) -> Iterator[None]:
    """An exclusive flock on `<file>.init-lock` while Optuna opens (and maybe creates) a SQLite database, and while
    a trial's state changes (`SqliteStorage`)."""
    if db is None:
        yield
        return
    from hpsearch.storage.file_lock import FileLock

    lock = FileLock(f"{db}.init-lock")
    try:
        lock.acquire()
    except OSError:  # a read-only directory: nobody can create tables there either
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _ensure_indexes(storage: optuna.storages.RDBStorage) -> None:
    import sqlalchemy.exc

    from hpsearch.storage.queries import ensure_indexes

    try:
        ensure_indexes(storage.engine)
    except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
        pass  # another worker created it at the same instant (PostgreSQL's catalog race); it exists now


def rdb_engine(study: optuna.Study) -> Any:
    """The SQLAlchemy engine under a study's storage, or None (see storage/optuna_compat.py)."""
    from hpsearch.storage.optuna_compat import rdb_engine as engine_of

    return engine_of(study)


# RUNNING trials seen without a heartbeat: (study id, trial id) -> when this process first saw them so.
_HEARTBEATLESS_SINCE: dict[tuple[int, int], float] = {}


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Fails the RUNNING trials that have stayed without a heartbeat for longer than the grace period.

    A worker that dies (or loses the database) between creating its trial and recording the first heartbeat leaves
    a trial Optuna's stale-trial check never fails (it skips trials without a heartbeat), and that trial would hold
    a place in the budget for ever. The grace period is counted on this process's own clock from when it first
    saw the trial without a heartbeat (never from the creating worker's clock: workers on other machines may be
    in other time zones or drift). Only storages with heartbeats are checked: without them every running trial
    lacks one. Returns the numbers of the trials failed; each keeps the reason in `fail_reason`.
    """
    import optuna
    import sqlalchemy

    from hpsearch.storage.optuna_compat import storage_backend, study_id, study_storage

    backend, storage = storage_backend(study), study_storage(study)
    interval = getattr(backend, "heartbeat_interval", None)
    engine = getattr(backend, "engine", None)
    if not interval or engine is None:
        return []
    grace = getattr(backend, "grace_period", None) or 2 * interval
    sid = study_id(study)
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT t.trial_id, t.number FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
            "WHERE t.study_id = :sid AND t.state = 'RUNNING' AND h.trial_id IS NULL"), {"sid": sid}).all()
    now = time.monotonic()
    seen = {(sid, int(trial_id)) for trial_id, _ in rows}
    for key in [k for k in _HEARTBEATLESS_SINCE if k[0] == sid and k not in seen]:
        del _HEARTBEATLESS_SINCE[key]  # it beat, or ended
    failed = []
    for trial_id, number in rows:
        since = _HEARTBEATLESS_SINCE.setdefault((sid, int(trial_id)), now)
        if now - since <= grace:
            continue
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", "its worker stopped before the trial's first "
                                        "heartbeat (killed, or the database went away)")
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it ended meanwhile
        finally:
            _HEARTBEATLESS_SINCE.pop((sid, int(trial_id)), None)
        failed.append(int(number))
    return failed
