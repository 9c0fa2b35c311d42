"""Artifacts in an S3-compatible bucket, against a real S3 API server on loopback (moto in server mode): the
store keeps each artifact under the location's prefix, reads come back byte for byte, `delete` removes them, and
an unusable bucket stops a launch at the door with a message that says what to do and shows no secret."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from hpsearch.errors import HpsearchError
from tests.conftest import TINY_BUILDER, run_cli

SECRET = "s3-secret-that-must-not-be-printed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, str]:
    """boto3's settings for the loopback server, in this process and for the commands a test starts."""
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "hpsearch-test", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    import boto3

    name = "hp-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def _keys(bucket: str) -> list[str]:
    import boto3

    listing = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def test_a_bucket_store_keeps_artifacts_under_the_prefix_and_gives_them_back(bucket: str, tmp_path: Path) -> None:
    from hpsearch.storage.artifacts import (
        S3Location,
        artifact_file,
        artifact_location,
        open_artifact_store,
        remove_artifacts,
        upload,
    )

    location = artifact_location(f"sqlite:///{tmp_path / 'hp.db'}", f"s3://{bucket}/runs//cnn/")
    assert location == S3Location(bucket, "runs/cnn/")
    store = open_artifact_store(location)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'hp.db'}")
    trial = study.ask()
    payload = os.urandom(300_000)
    (tmp_path / "model.keras").write_bytes(payload)
    artifact_id = upload(store, trial, tmp_path / "model.keras")

    assert _keys(bucket) == [f"runs/cnn/{artifact_id}"]
    cache = tmp_path / "cache"
    copy = artifact_file(location, artifact_id, cache=cache)
    assert copy is not None and copy.read_bytes() == payload and copy.is_relative_to(cache)
    assert artifact_file(location, "0" * 36, cache=cache) is None  # an id the bucket does not hold
    assert remove_artifacts(location, [artifact_id, "0" * 36, "../escape"]) == 1
    assert _keys(bucket) == []


def test_an_unusable_bucket_says_what_to_do_and_shows_no_secret(s3_env: dict[str, str]) -> None:
    from hpsearch.storage.artifacts import open_artifact_store

    with pytest.raises(HpsearchError, match="'no-such-bucket' .* does not exist; create it") as missing:
        open_artifact_store("s3://no-such-bucket/x")
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(HpsearchError, match="cannot be reached .*check AWS_ENDPOINT_URL") as unreachable:
        open_artifact_store("s3://some-bucket")
    for error in (missing, unreachable):
        assert SECRET not in str(error.value)


@pytest.mark.integration
def test_a_search_stores_its_artifacts_in_the_bucket_and_delete_removes_them(bucket: str, s3_env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY_BUILDER)
    env = {**s3_env, "HPSEARCH_STORAGE": f"sqlite:///{tmp_path / 'hp.db'}",
           "HPSEARCH_ARTIFACTS": f"s3://{bucket}/team/a"}
    ran = run_cli("run", "--study", "s3", "--model", "tiny.py:build", "--dataset", "mnist-sample", "--train-size",
                  "1000", "--epochs", "1", "--trials", "2", "--pruner", "none", "--workers", "1", cwd=tmp_path,
                  env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert SECRET not in ran.stdout + ran.stderr
    keys = _keys(bucket)
    # Curves for each trial; model, report and confusion matrix for each new best (one or two of them).
    assert len(keys) >= 5 and all(k.startswith("team/a/") for k in keys), keys
    assert not (tmp_path / "hp-artifacts").exists()  # nothing beside the database
    assert list((tmp_path / "hpsearch-logs" / "s3").glob("worker-*.log"))  # the launcher's logs stay local

    exported = run_cli("export", "--study", "s3", "--out", str(tmp_path / "best"), cwd=tmp_path, env=env)
    assert exported.returncode == 0, exported.stderr
    import keras

    model = keras.saving.load_model(tmp_path / "best" / "model.keras", compile=False)
    assert model.output_shape == (None, 10)

    deleted = run_cli("delete", "--study", "s3", "--yes", cwd=tmp_path, env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert f"{len(keys)} artifact files" in deleted.stdout
    assert _keys(bucket) == []


@pytest.mark.integration
def test_a_launch_on_a_missing_bucket_stops_before_the_study_exists(s3_env: dict[str, str], tmp_path: Path) -> None:
    env = {**s3_env, "HPSEARCH_STORAGE": f"sqlite:///{tmp_path / 'hp.db'}"}
    ran = run_cli("run", "--study", "nowhere", "--model", "cnn", "--dataset", "mnist-sample", "--trials", "1",
                  "--artifacts", "s3://not-created-yet", cwd=tmp_path, env=env)
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "'not-created-yet'" in ran.stderr and "does not exist; create it" in ran.stderr
    assert SECRET not in ran.stdout + ran.stderr
    studies = run_cli("studies", cwd=tmp_path, env=env)
    assert "nowhere" not in studies.stdout
