"""Where studies, artifacts and queries live.

`resolve_url` is the one place that decides the storage: `--storage URL`, else `$HPSEARCH_STORAGE`, else
`sqlite:///hpsearch.db` in the current directory. `open_storage` tunes the engine for several workers.
"""

from __future__ import annotations

from hpsearch.storage._rdb import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL, STORAGE_ERRORS, open_storage
from hpsearch.storage._urls import DEFAULT_URL, STORAGE_ENV, artifact_dir, mask_url, resolve_url

__all__ = ["DEFAULT_GRACE_PERIOD", "DEFAULT_HEARTBEAT_INTERVAL", "DEFAULT_URL", "STORAGE_ENV", "STORAGE_ERRORS",
           "artifact_dir",
           "mask_url", "open_storage", "resolve_url"]
