"""Storage URLs: which one is used, whether hpsearch supports it, and how to print it without its password."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hpsearch.errors import UsageError

STORAGE_ENV = "HPSEARCH_STORAGE"
OPTUNA_STORAGE_ENV = "OPTUNA_STORAGE"  # Optuna's own CLI variable, read after ours
ARTIFACTS_ENV = "HPSEARCH_ARTIFACTS"
DEFAULT_URL = "sqlite:///hpsearch.db"
PASSWORD_PLACEHOLDER = "PASSWORD"
POSTGRES_EXAMPLE = f"postgresql+psycopg://USER:{PASSWORD_PLACEHOLDER}@HOST:5432/DB"
SUPPORTED = (f"sqlite:///FILE (one machine), {POSTGRES_EXAMPLE} (many machines) or grpc://HOST:PORT (an "
             "`hpsearch proxy` in front of either, for many workers)")
# Database names in the URL scheme (before any `+driver`) that hpsearch can keep a study in.
SUPPORTED_BACKENDS = ("sqlite", "postgresql", "grpc")

MASK = "***"
# A URL scheme anywhere in a word: `postgresql+psycopg://`, `sqlite:///`, `x-unknown://`.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# A word of printed text: a URL or `user:password@host` never holds blanks, quotes or angle brackets.
_WORD = re.compile(r"[^\s'\"`<>]+")
# `scheme://user:password@`, the password up to the last '@' before a blank (quotes and '?' included).
_SCHEME_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"`]*:)(\S+)@")
# `password=...` as a URL query parameter or in a libpq keyword string (`host=h password='a b'`).
_PASSWORD_PARAM = re.compile(r"(?i)(\b\w*(?:password|passwd|pwd)\s*=\s*)('(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s&;,'\"]+)")


def redact(text: str) -> str:
    """`text` with every secret it may hold replaced by ***, safe to print or log.

    Masks the password of `scheme://user:password@host` (any scheme, parsable or not), of `user:password@host`
    written without a scheme, and the value of `password=...` (URL query parameters, libpq keyword strings).
    The user, host, port and database stay readable; text without secrets comes back unchanged.

    Args:
        text: any message, URL or log line.

    Returns:
        The same text with the secrets masked.
    """
    for secret in _KNOWN_SECRETS:  # the configured storage's own password, whatever characters it holds
        text = text.replace(secret, MASK)
    text = _PASSWORD_PARAM.sub(lambda m: m.group(1) + MASK, text)
    text = _SCHEME_USERINFO.sub(lambda m: m.group(1) + (m.group(2) if m.group(2) in (MASK, PASSWORD_PLACEHOLDER)
                                                        else MASK) + "@", text)
    return _WORD.sub(lambda m: _redact_word(m.group(0)), text)


# Passwords of the storage URLs this process resolved: masked wherever they appear, even where no pattern can
# find them (quotes, blanks, '?' or '#' inside the password). Short ones would mask ordinary words: left to the
# patterns.
_KNOWN_SECRETS: set[str] = set()
_MIN_KNOWN_SECRET = 4


def remember_secret(url: str) -> None:
    """Registers the password of `url` (if any) so that `redact` masks it in any text from now on."""
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # unparsable: the patterns still apply
        return
    if password and len(str(password)) >= _MIN_KNOWN_SECRET and str(password) != PASSWORD_PLACEHOLDER:
        _KNOWN_SECRETS.add(str(password))


def _redact_word(word: str) -> str:
    scheme = _SCHEME.search(word)
    start = scheme.end() if scheme else 0
    # Not cut at '?' or '#': a password may hold them unencoded. The last '@' ends the user info (a password may
    # hold an unencoded '@' too); an '@' further on, in a query, masks more than needed, never less.
    rest = word[start:]
    at = rest.rfind("@")
    if at <= 0 or rest.startswith("/"):  # no user info (`sqlite:///dir@x/f.db` has an empty authority)
        return word
    user, sep, password = rest[:at].partition(":")
    if not sep or password in ("", MASK, PASSWORD_PLACEHOLDER) or (not scheme and not user):
        return word  # nothing to hide (the placeholder of our own examples included)
    return f"{word[:start]}{user}:{MASK}{word[start + at:]}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, safe to print (see `redact`)."""
    return redact(url)


def resolve_url(url: str | None = None) -> str:
    """`url`, else `$HPSEARCH_STORAGE`, else `$OPTUNA_STORAGE`, else `sqlite:///hpsearch.db` (current directory).

    Raises:
        UsageError: the value is not a URL (no scheme), or names a database hpsearch does not support
            (MySQL/MariaDB, or any scheme other than SQLite and PostgreSQL).
    """
    value = url or os.environ.get(STORAGE_ENV) or os.environ.get(OPTUNA_STORAGE_ENV) or DEFAULT_URL
    remember_secret(value)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*)://", value)
    if scheme is None:
        raise UsageError(_missing_scheme_message(value))
    backend = scheme.group(1).split("+", 1)[0].lower()
    if backend in ("mysql", "mariadb"):
        raise UsageError(f"storage {mask_url(value)}: MySQL/MariaDB is not supported as a study storage (the exact "
                         "trial budget relies on PostgreSQL advisory locks or SQLite file locks); use "
                         f"{POSTGRES_EXAMPLE}, or sqlite:///FILE on one machine")
    if backend not in SUPPORTED_BACKENDS:
        hint = "; write postgresql+psycopg:// instead of postgres://" if backend == "postgres" else ""
        raise UsageError(f"storage URL {mask_url(value)} is malformed or names an unknown database "
                         f"{backend!r}; supported are {SUPPORTED}{hint}")
    return value


def _missing_scheme_message(value: str) -> str:
    shown = mask_url(value)
    if "://" not in value and "@" in value:  # `user:password@host:5432/db`: a PostgreSQL URL without its scheme
        return (f"storage {shown!r} is not a database URL: its scheme seems missing; expected e.g. "
                f"postgresql+psycopg://{shown}")
    if "://" not in value:  # a file name: the SQLite URL of that file
        return (f"storage {shown!r} is not a database URL: its scheme seems missing; expected e.g. "
                f"sqlite:///{shown} (or {POSTGRES_EXAMPLE})")
    return f"storage {shown!r} is not a database URL; expected e.g. sqlite:///hpsearch.db or {POSTGRES_EXAMPLE}"


def check_shareable(url: str) -> None:
    """Refuses an in-memory SQLite database: every worker process would get its own, empty one.

    Raises:
        UsageError: `sqlite://`, `sqlite:///:memory:` or a `mode=memory` SQLite URI.
    """
    if not url.lower().startswith("sqlite"):
        return
    _, _, rest = url.partition("://")
    database = rest[1:] if rest.startswith("/") else rest
    if database.split("?", 1)[0] in ("", ":memory:") or "mode=memory" in rest or database.startswith(
            "file::memory:"):
        raise UsageError(f"storage {mask_url(url)} is an in-memory SQLite database: worker processes cannot share "
                         "one, and it is gone when the command ends; use sqlite:///FILE (e.g. sqlite:///hpsearch.db)")


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///FILE` URL (relative to the current directory), else None."""
    match = re.match(r"sqlite(?:\+\w+)?:///", url)
    if match is None:
        return None
    path = url[match.end():].split("?", 1)[0]
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
