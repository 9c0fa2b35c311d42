from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


@pytest.fixture(autouse=True)
def _seed() -> None:
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"the team's MNIST files are missing from {SHARED_MNIST} (see shared/datasets/README.md)")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def mnist_sample():
    from hpsearch.datasets import load_dataset

    return load_dataset("mnist-sample")


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Runs `hpsearch ARGS` the way a user types it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "hpsearch", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server started for this test session (see tests/postgres.py)."""
    from tests.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on every backend: a SQLite file, and a fresh database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hpsearch.db'}"
    return request.getfixturevalue("postgres_server").create_database()


def record_reliability(scenario: str, **figures: object) -> None:
    """Appends what a fault test measured to test-output/reliability.jsonl (RELIABILITY.md is built from it)."""
    import json
    import time

    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    with open(out / "reliability.jsonl", "a") as f:
        f.write(json.dumps({"scenario": scenario, "at": time.strftime("%Y-%m-%d %H:%M:%S"), **figures}) + "\n")


# A builder file whose trials take a second or two: for tests of processes, faults and devices, not accuracy.
TINY_BUILDER = '''
import keras


def build(hp):
    units = hp.Int("units", 8, 32)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''
