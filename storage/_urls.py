from __future__ import annotations

import os
from pathlib import Path

from hpsearch.errors import UsageError

STORAGE_ENV = "HPSEARCH_STORAGE"
ARTIFACTS_ENV = "HPSEARCH_ARTIFACTS"
DEFAULT_URL = "sqlite:///hpsearch.db"


def resolve_url(url: str | None = None) -> str:
    """`url`, else `$HPSEARCH_STORAGE`, else `sqlite:///hpsearch.db` (current directory)."""
    value = url or os.environ.get(STORAGE_ENV) or DEFAULT_URL
    if "://" not in value:
        raise UsageError(f"storage {mask_url(value)!r} is not a database URL; expected e.g. sqlite:///hpsearch.db "
                         "or postgresql+psycopg://user@host:5432/db")
    return value


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, safe to print."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.password:
            return parsed.render_as_string(hide_password=True)
        return str(parsed)
    except Exception:  # unparsable: hide whatever sits between ':' and '@'
        head, sep, tail = url.rpartition("@")
        if not sep:
            return url
        scheme, _, userinfo = head.partition("://")
        user = userinfo.split(":", 1)[0]
        return f"{scheme}://{user}:***@{tail}"


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def artifact_dir(url: str, override: str | None = None) -> Path:
    """Artifacts go to `override`, else `$HPSEARCH_ARTIFACTS`, else `<db>-artifacts/` beside a SQLite file,
    else `./hpsearch-artifacts` (set a shared directory when workers run on several machines)."""
    value = override or os.environ.get(ARTIFACTS_ENV)
    if value:
        return Path(value).expanduser().resolve()
    db = sqlite_path(url)
    if db is not None:
        return db.resolve().with_name(f"{db.stem}-artifacts")
    return Path("hpsearch-artifacts").resolve()
