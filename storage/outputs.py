"""Output directories the user names with `--out`: checked before any training, never silently overwritten.

`train`, `retrain` and `export` spend minutes before they write a file. `prepare_output_dir` answers "can these
files be written there?" first, so a wrong path costs a message, not the trained model.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hpsearch.errors import HpsearchError, UsageError


def prepare_output_dir(path: str | os.PathLike[str], files: Iterable[str], force: bool = False,
                       flag: str = "--out") -> Path:
    """Creates the directory `path` and checks that `files` can be written into it.

    Args:
        path: the directory the user asked for (created with its parents when missing).
        files: the names of the files the command will write there.
        force: overwrite files of those names that already exist (else they are refused).
        flag: the option that named the directory, for the messages.

    Returns:
        The directory, as a `Path`.

    Raises:
        UsageError: the path is a file or lies under one, cannot be created or written, or already holds some of
            `files` and `force` is false.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {out} is a file, not a directory; give a directory path (it is created if "
                         "missing)")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UsageError(f"{flag} {out} cannot be created: {blocking} is a file, not a directory; give a path "
                         "under a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag} {out} cannot be created ({exc.strerror or exc}); give a directory you can "
                         "write to") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".hpsearch-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {out} is not writable ({exc.strerror or exc}); give a directory you can "
                         "write to") from None
    names = list(dict.fromkeys(files))
    directories = [name for name in names if (out / name).is_dir()]
    if directories:
        raise UsageError(f"{flag} {out} holds directories where files would go: {', '.join(directories)}; move "
                         f"them, or choose another {flag} directory")
    existing = [name for name in names if (out / name).exists()]
    if existing and not force:
        raise UsageError(f"{flag} {out} already holds {', '.join(existing)}; pass --force to overwrite "
                         f"{'it' if len(existing) == 1 else 'them'}, or choose another {flag} directory")
    return out


@contextmanager
def writing_to(out: Path) -> Iterator[Path]:
    """Turns an `OSError` raised while the outputs are written (disk full, directory removed) into one message.

    Raises:
        HpsearchError: a file could not be written into `out`.
    """
    try:
        yield out
    except OSError as exc:
        where = exc.filename or out
        raise HpsearchError(f"writing {where} failed ({exc.strerror or exc}); free space or fix the directory, "
                            "then run the command again") from None
