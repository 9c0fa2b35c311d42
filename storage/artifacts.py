"""The artifact store (models, plots, reports): a directory (beside a SQLite study by default, or shared by the
machines' workers) or an S3-compatible bucket (`s3://BUCKET[/PREFIX]`, through Optuna's Boto3ArtifactStore).

A bucket is reached the way boto3 reaches it: endpoint from `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`; unset
means Amazon S3), credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a profile or an instance role.
Commands that read an artifact from a bucket (`export`, `predict`, `evaluate`, `best --model`) download it into
a cache directory first; every artifact's id is its key under the prefix.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.storage._urls import ARTIFACTS_ENV, artifact_dir

if TYPE_CHECKING:
    import optuna

    from hpsearch.storage.optuna_compat import ArtifactStore

S3_SCHEME = "s3://"
# Artifact ids are Optuna's UUIDs; anything else in an `artifact:*` attribute is refused, never used as a key or path.
_ARTIFACT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class S3Location:
    """A bucket of an S3-compatible store and the key prefix the study's artifacts go under ("" or "a/b/")."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}"


ArtifactLocation = Path | S3Location


def artifact_location(url: str, override: str | None = None) -> ArtifactLocation:
    """Where a study's artifacts live: `override`, else `$HPSEARCH_ARTIFACTS`, as `s3://BUCKET[/PREFIX]` or a
    directory; else the default directory of `artifact_dir` (beside a SQLite file).

    Raises:
        UsageError: an `s3://` location without a valid bucket name.
    """
    value = override or os.environ.get(ARTIFACTS_ENV)
    if value and value.startswith(S3_SCHEME):
        return parse_s3(value)
    return artifact_dir(url, override)


def parse_s3(value: str) -> S3Location:
    """`s3://BUCKET[/PREFIX]` as an S3Location.

    Raises:
        UsageError: no bucket, or a bucket name S3 would refuse.
    """
    bucket, _, prefix = value[len(S3_SCHEME):].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise UsageError(f"artifact location {value!r} has no valid bucket name (3-63 lower-case letters, digits, "
                         "dots or hyphens); use s3://BUCKET or s3://BUCKET/PREFIX")
    prefix = "/".join(part for part in prefix.split("/") if part)
    if ".." in prefix.split("/"):
        raise UsageError(f"artifact location {value!r}: a prefix may not contain '..'")
    return S3Location(bucket, f"{prefix}/" if prefix else "")


def open_artifact_store(location: str | ArtifactLocation) -> ArtifactStore:
    """The artifact store at `location`: a directory (created if missing) or an S3 bucket (checked reachable).

    Raises:
        HpsearchError: the directory cannot be created or written; the bucket cannot be reached, does not exist,
            or boto3 is not installed. Each message says what to do.
    """
    if isinstance(location, S3Location):
        return _open_bucket(location)
    if isinstance(location, str) and location.startswith(S3_SCHEME):
        return _open_bucket(parse_s3(location))
    from optuna.artifacts import FileSystemArtifactStore

    directory = Path(location)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HpsearchError(f"artifact directory {directory} cannot be created ({exc.strerror}); pass a writable "
                            "--artifacts DIR") from None
    return FileSystemArtifactStore(str(directory))


def safe_filename(name: str) -> str:
    """A file name with no path separators or traversal, from a study or trial name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "artifact"
    return cleaned[:100]


def upload(store: ArtifactStore, trial: optuna.trial.Trial | optuna.trial.FrozenTrial, path: Path,
           storage: optuna.storages.BaseStorage | None = None) -> str:
    """Uploads one file to the trial; the artifact id is also kept as a user attribute `artifact:<file name>`.

    Raises:
        HpsearchError: the store cannot take the file (disk full, unwritable); the trial's result is unaffected.
    """
    from optuna.artifacts import upload_artifact

    try:
        with _bucket_errors(lambda error: f"artifact {path.name} could not be stored in the bucket ({error}); "
                                          "check the endpoint, the credentials and the bucket"):
            return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial, storage=storage)
    except OSError as exc:
        raise HpsearchError(f"artifact {path.name} could not be stored ({exc.strerror or exc}); free space or "
                            "fix the permissions of the artifact directory") from None


@contextlib.contextmanager
def _bucket_errors(message: Callable[[str], str]) -> Iterator[None]:
    """botocore's and boto3's errors (client, connection, upload) as HpsearchError(message(their type's name));
    other errors pass. Neither module is imported to tell."""
    try:
        yield
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("botocore", "boto3"):
            raise
        raise HpsearchError(message(type(exc).__name__)) from None


class _PrefixedStore:
    """Keeps every artifact of a store under one key prefix (Optuna's Boto3ArtifactStore uses the id as the key)."""

    def __init__(self, store: ArtifactStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(self._prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self._prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(self._prefix + artifact_id)


def _open_bucket(location: S3Location) -> ArtifactStore:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise HpsearchError(f"artifacts in {location} need boto3: pip install 'hpsearch[s3]'") from None
    from optuna.artifacts import Boto3ArtifactStore

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "Amazon S3"
    try:
        client = boto3.client("s3")
    except ValueError as exc:  # a malformed AWS_ENDPOINT_URL
        raise HpsearchError(f"artifact bucket {location.bucket!r}: the S3 endpoint {endpoint!r} is not usable "
                            f"({exc}); set AWS_ENDPOINT_URL to e.g. https://s3.example.org") from None
    try:
        client.head_bucket(Bucket=location.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        what = {"404": "does not exist", "NoSuchBucket": "does not exist",
                "403": "refuses these credentials"}.get(str(code), f"answered {code or 'an error'}")
        raise HpsearchError(f"artifact bucket {location.bucket!r} at {endpoint} {what}; create it or set "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for an account that may write to it") from None
    except BotoCoreError as exc:  # no endpoint answering, no credentials, a malformed endpoint URL
        raise HpsearchError(f"artifact bucket {location.bucket!r} at {endpoint} cannot be reached "
                            f"({type(exc).__name__}); check AWS_ENDPOINT_URL and the credentials") from None
    store = Boto3ArtifactStore(location.bucket, client)
    return _PrefixedStore(store, location.prefix) if location.prefix else store


def artifact_file(location: ArtifactLocation, artifact_id: str, cache: Path | None = None) -> Path | None:
    """A local file holding the artifact `artifact_id`: the file itself in a directory store, a downloaded copy
    (kept in `cache`, default a per-user temp directory) for a bucket; None when the store has no such artifact.

    Raises:
        HpsearchError: the id is not an artifact id (a crafted attribute), or the bucket cannot be read.
    """
    artifact_id = str(artifact_id)
    if not _ARTIFACT_ID.match(artifact_id):
        raise HpsearchError(f"artifact {artifact_id!r} is not an artifact id; refusing it")
    if isinstance(location, Path):
        path = (location / artifact_id).resolve()
        return path if path.is_file() else None
    from optuna.artifacts.exceptions import ArtifactNotFound

    path = (cache or _cache_dir()) / location.bucket / location.prefix / artifact_id
    if path.is_file():
        return path
    store = _open_bucket(location)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{artifact_id}.")  # one per download: no two share it
    try:
        with _bucket_errors(lambda error: f"artifact {artifact_id} could not be read from {location} ({error}); "
                                          "check the endpoint, the credentials and the bucket"):
            with store.open_reader(artifact_id) as reader, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(reader, out)
        os.replace(name, path)  # a reader never sees half a file
    except ArtifactNotFound:
        return None
    finally:
        Path(name).unlink(missing_ok=True)
    return path


def _cache_dir() -> Path:
    """Where downloaded artifacts are kept: `$XDG_CACHE_HOME/hpsearch/artifacts` (default ~/.cache), this user's
    alone.

    Raises:
        HpsearchError: the directory belongs to another user (its files could be planted).
    """
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hpsearch" / "artifacts"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    if base.stat().st_uid != os.getuid():
        raise HpsearchError(f"the artifact cache {base} belongs to another user; remove it or set XDG_CACHE_HOME")
    return base


def remove_artifacts(location: ArtifactLocation, artifact_ids: list[str]) -> int:
    """Deletes the artifacts with these ids from the store; returns how many were there. Ids that are not
    artifact ids (crafted attributes) are skipped."""
    ids = [str(i) for i in artifact_ids if _ARTIFACT_ID.match(str(i))]
    if isinstance(location, Path):
        removed = 0
        for artifact_id in ids:
            path = location / artifact_id
            if path.is_file():
                path.unlink()
                removed += 1
        return removed
    from optuna.artifacts.exceptions import ArtifactNotFound

    store = _open_bucket(location)
    removed = 0
    with _bucket_errors(lambda error: f"{removed} of {len(ids)} artifacts removed from {location}, then {error}; "
                                      "run the command again once the bucket answers"):
        for artifact_id in ids:
            try:  # S3 deletes a missing key without complaint: look first, so the count is of what was there
                store.open_reader(artifact_id).close()
            except ArtifactNotFound:
                continue
            store.remove(artifact_id)
            removed += 1
    return removed
