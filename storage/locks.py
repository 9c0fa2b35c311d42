"""A lock per study around "is there budget left?" + "create the trial", so the budget is exact.

PostgreSQL: a session advisory lock (released by the server if the worker dies). SQLite: an exclusive
`flock` on a file beside the database (SQLite is one machine's storage). Other storages: no lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.storage._rdb import rdb_engine
from hpsearch.storage._urls import sqlite_path
from hpsearch.storage.file_lock import FileLock
from hpsearch.storage.optuna_compat import study_id

if TYPE_CHECKING:
    import optuna

_ADVISORY_NAMESPACE = 0x68707372  # "hpsr": keeps our keys apart from other users of advisory locks


class StudyLock:
    """`acquire()` blocks until this worker may create the study's next trial; `release()` is idempotent."""

    def __init__(self, study: optuna.Study) -> None:
        self._held = False
        self._connection: Any = None
        engine = rdb_engine(study)
        url = str(engine.url) if engine is not None else ""
        self._study_id = study_id(study)
        self._engine = engine if engine is not None and engine.dialect.name == "postgresql" else None
        db = sqlite_path(engine.url.render_as_string(hide_password=False)) if url.startswith("sqlite") else None
        self._file_lock = FileLock(Path(f"{db}.budget-lock")) if db is not None else None

    def acquire(self) -> None:
        if self._held:
            return
        if self._engine is not None:
            from sqlalchemy import text

            try:
                if self._connection is None:
                    self._connection = self._engine.connect()
                self._connection.execute(text("SELECT pg_advisory_lock(:ns, :sid)"),
                                         {"ns": _ADVISORY_NAMESPACE, "sid": self._study_id})
                self._connection.commit()
            except Exception:
                self._drop_connection()  # a dead connection: the next attempt opens a new one
                raise
        elif self._file_lock is not None:
            self._file_lock.acquire()
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._engine is not None and self._connection is not None:
            from sqlalchemy import text

            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:ns, :sid)"),
                                         {"ns": _ADVISORY_NAMESPACE, "sid": self._study_id})
                self._connection.commit()
            except Exception:  # connection lost: the server released the lock with the session
                self._drop_connection()
        elif self._file_lock is not None:
            self._file_lock.release()

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
            except Exception:
                pass
            self._connection = None

    def close(self) -> None:
        self.release()
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None
