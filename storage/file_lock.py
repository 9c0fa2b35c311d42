"""One exclusive lock on a file beside a SQLite database, for the processes of one machine (`flock`)."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO, Any


class FileLock:
    """`acquire()` blocks until this process holds the lock on `path` (created if missing); `release()` is
    idempotent; also a context manager. The kernel releases it if the process dies."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        if self._file is not None:
            return
        handle = open(self.path, "a+")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            raise
        self._file = handle

    def release(self) -> None:
        if self._file is None:
            return
        handle, self._file = self._file, None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            handle.close()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.release()
