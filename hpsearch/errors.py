"""Every exception hpsearch raises on purpose.

Each message says what was wrong, what was expected and what to do. The CLI maps `UsageError` (and its
subclasses) to exit code 2 and every other `HpsearchError` to exit code 1.
"""

from __future__ import annotations

from collections.abc import Iterator


class HpsearchError(Exception):
    """Base class of hpsearch's own errors."""


class UsageError(HpsearchError):
    """The user asked for something that does not exist or is malformed (exit code 2)."""


class UnknownNameError(UsageError):
    """A name (model, dataset, sampler, ...) that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.valid = list(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s are: {', '.join(self.valid)}")


class DatasetError(HpsearchError):
    """A dataset's files are missing, truncated or corrupt."""


class DatasetNotFoundError(DatasetError, UsageError):
    """No files for a dataset were found in any of the places searched."""


class CorruptDataError(DatasetError, UsageError):
    """A data file exists but does not hold what its format promises."""


class WeightsNotFoundError(UsageError):
    """Pre-trained weights were asked for but no local file holds them."""


class TrialFailed(HpsearchError):
    """A trial cannot produce a result (diverged, builder error); the study goes on."""


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it or was being handled when it was raised, and so on (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
