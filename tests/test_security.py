"""Credentials never printed, models loaded in safe mode, artifact paths contained."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

from hpsearch.errors import HpsearchError
from tests.conftest import run_cli


@pytest.mark.postgres
def test_password_never_reaches_command_lines_logs_or_output(postgres_server, tmp_path: Path) -> None:
    secret = "S3cretPassw0rd"
    db_url = postgres_server.create_database()
    url = db_url.replace("postgres@", f"postgres:{secret}@")  # trust auth: the password is accepted, unused
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch", "run", "--storage", url, "--study", "sec", "--model",
                             "resnet4", "--train-size", "500", "--epochs", "1", "--trials", "2", "--workers", "2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_workers = 0
    while proc.poll() is None:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "hpsearch" in args and " worker " in args:
                seen_workers += 1
                assert secret not in args
        time.sleep(0.2)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert seen_workers > 0
    assert secret not in out + err and "***" in out
    for log in (tmp_path / "hpsearch-artifacts" / "logs").rglob("*.log"):
        assert secret not in log.read_text(errors="replace")
    status = run_cli("status", "--study", "sec", "--storage", url, cwd=tmp_path)
    assert status.returncode == 0 and secret not in status.stdout + status.stderr


def test_models_load_in_safe_mode(tmp_path: Path) -> None:
    from hpsearch.search.results import load_model

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # arbitrary code inside a saved model
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        load_model(tmp_path / "lambda.keras")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.save(tmp_path / "plain.keras")
    np.testing.assert_allclose(load_model(tmp_path / "plain.keras").predict(np.ones((1, 4)), verbose=0),
                               plain.predict(np.ones((1, 4)), verbose=0))


def test_artifact_ids_cannot_escape_the_artifact_directory(tmp_path: Path) -> None:
    from hpsearch.search.results import StoredTrial
    from hpsearch.search.spec import StudySpec
    from hpsearch.storage.artifacts import S3Location

    trial = optuna.trial.create_trial(value=1.0, user_attrs={"artifact:model": "../../../etc/passwd"})
    for location in (tmp_path / "artifacts", S3Location("bucket", "runs/")):
        stored = StoredTrial(study=None, spec=StudySpec(study="s", model="cnn"), trial=trial,  # type: ignore[arg-type]
                             artifacts=location)
        with pytest.raises(HpsearchError, match="not an artifact id"):  # refused before any file or bucket is read
            stored.artifact_path("model")


def test_artifact_file_names_are_sanitised() -> None:
    from hpsearch.storage.artifacts import safe_filename

    assert safe_filename("../../etc/passwd") == "etc_passwd"
    assert "/" not in safe_filename("a/b\\c") and safe_filename("..") == "artifact"
