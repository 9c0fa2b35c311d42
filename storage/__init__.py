"""Where studies, artifacts and queries live.

`resolve_url` is the one place that decides the storage: `--storage URL`, else `$HPSEARCH_STORAGE`, else
`sqlite:///hpsearch.db` in the current directory, and refuses what hpsearch cannot use. `open_storage` opens it for
writing and tunes it for several workers; `open_storage_read_only` / `load_study_read_only` (and
`queries.make_engine(read_only=True)`) serve the commands that only look. `redact` masks passwords in any text.
"""

from __future__ import annotations

from hpsearch.storage._rdb import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    STORAGE_ERRORS,
    STORAGE_OUTAGE_SECONDS,
    STORAGE_RETRY_SECONDS,
    Outage,
    caused_by_storage,
    database_error,
    fail_orphaned_trials,
    load_study_read_only,
    open_storage,
    open_storage_read_only,
    storage_errors_as_messages,
)
from hpsearch.storage._urls import DEFAULT_URL, STORAGE_ENV, artifact_dir, mask_url, redact, resolve_url

__all__ = ["DEFAULT_GRACE_PERIOD", "DEFAULT_HEARTBEAT_INTERVAL", "DEFAULT_URL", "STORAGE_ENV", "STORAGE_ERRORS",
           "STORAGE_OUTAGE_SECONDS", "STORAGE_RETRY_SECONDS", "Outage", "artifact_dir", "caused_by_storage",
           "database_error",
           "fail_orphaned_trials", "load_study_read_only", "mask_url", "open_storage", "open_storage_read_only",
           "redact", "resolve_url", "storage_errors_as_messages"]
