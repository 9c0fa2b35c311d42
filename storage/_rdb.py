from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.storage._urls import mask_url, resolve_url, sqlite_path

if TYPE_CHECKING:
    import optuna

def _storage_errors() -> tuple[type[BaseException], ...]:
    import optuna.exceptions
    import sqlalchemy.exc

    return (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, optuna.exceptions.StorageInternalError)


# Errors that mean "the database is unreachable right now" (restart, dropped connection, network).
STORAGE_ERRORS = _storage_errors()

# Keras trials take minutes: a heartbeat a minute, declared dead after five silent minutes.
DEFAULT_HEARTBEAT_INTERVAL = 60
DEFAULT_GRACE_PERIOD = 300
SQLITE_TIMEOUT_SECONDS = 60
MAX_RETRY = 1


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several local workers write the same file: wait for the lock instead of failing at once.
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
    # Survive a restarted server or a dropped connection by reconnecting; keep each worker's pool small.
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}


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
                 grace_period: int | None = DEFAULT_GRACE_PERIOD, retry: bool = True) -> optuna.storages.RDBStorage:
    """Opens the study database with heartbeats and one retry of trials whose worker died.

    Raises:
        UsageError: the URL is malformed or names an unknown driver.
        HpsearchError: the database cannot be reached or has an incompatible schema.
    """
    import optuna
    import sqlalchemy.exc

    url = resolve_url(url)
    db = sqlite_path(url)
    if db is not None and not db.resolve().parent.is_dir():
        raise UsageError(f"the directory of SQLite file {db} does not exist; create it or pass another --storage")
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY) if retry else None
    try:
        storage = _create_rdb_storage(url, callback, heartbeat_interval, grace_period)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise UsageError(f"storage URL {mask_url(url)} is malformed or names an unknown driver ({type(exc).__name__});"
                         " expected sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB") from None
    except sqlalchemy.exc.OperationalError as exc:
        reason = str(exc.orig).replace(url, mask_url(url)).splitlines()[0] if exc.orig else "unreachable"
        raise HpsearchError(f"cannot connect to storage {mask_url(url)}: {reason}") from None
    except RuntimeError as exc:  # Optuna's schema version check
        raise HpsearchError(f"storage {mask_url(url)}: {exc} Upgrade it with: optuna storage upgrade "
                            f"--storage '{mask_url(url)}'") from None
    if db is not None:
        _enable_wal(storage)
    _ensure_indexes(storage)
    return storage


def _create_rdb_storage(url: str, callback: Any, heartbeat_interval: int | None, grace_period: int | None
                        ) -> optuna.storages.RDBStorage:
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
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period, heartbeat_stale_trial_callback=callback if heartbeat_interval else None)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            lost_race = isinstance(exc, sqlalchemy.exc.IntegrityError) or "exist" in str(exc) \
                or "duplicate" in str(exc).lower()
            if attempt == 5 or not lost_race:
                raise
            time.sleep(0.2 + random.random() * 0.5)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _creation_lock(db: Path | None) -> Iterator[None]:
    """An exclusive flock on `<file>.init-lock` while Optuna opens (and maybe creates) a SQLite database."""
    if db is None:
        yield
        return
    try:
        handle = open(f"{db}.init-lock", "a+")  # noqa: SIM115 - closed below
    except OSError:  # a read-only directory: nobody can create tables there either
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _ensure_indexes(storage: optuna.storages.RDBStorage) -> None:
    import sqlalchemy.exc

    from hpsearch.storage.queries import ensure_indexes

    try:
        ensure_indexes(storage.engine)
    except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
        pass  # another worker created it at the same instant (PostgreSQL's catalog race); it exists now


def rdb_engine(study: optuna.Study) -> Any:
    """The SQLAlchemy engine under a study's storage (Optuna wraps RDBStorage in a cache), or None."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    return getattr(backend, "engine", None)
