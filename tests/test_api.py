"""The Python API as a notebook uses it: a function defined on the spot, arrays in memory, real training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hpsearch
from hpsearch.errors import UsageError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.rint(bunch.images * (255 / 16)).astype(np.uint8), bunch.target.astype(np.int64)


def notebook_builder():
    """What a notebook cell defines: a local function (not importable by any other process)."""
    import keras

    def build(hp):
        model = keras.Sequential([
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Int("units", 16, 64, step=16), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        return model  # uncompiled: hpsearch searches optimizer and learning rate too

    return build


@pytest.mark.integration
def test_a_local_function_on_arrays_searches_in_process_and_gives_the_best_model(tmp_path: Path, digits) -> None:
    x, y = digits
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    result = hpsearch.run(notebook_builder(), data=(x[:1500], y[:1500], x[1500:], y[1500:]), study="nb",
                          storage=url, trials=4, epochs=5, batch_size=32, verbose=False)
    assert {"units", "optimizer", "learning_rate"} <= set(result.best_params)
    assert 0.5 < result.best_value <= 1.0
    assert len([t for t in result.trials if t.state.is_finished()]) == 4
    model = result.best_model()
    accuracy = float((model.predict((x[1500:] / 255.0)[..., None], verbose=0).argmax(axis=1) == y[1500:]).mean())
    assert accuracy == pytest.approx(result.best_trial.user_attrs["test_accuracy"], abs=1e-6)
    again = hpsearch.load("nb", storage=url)
    assert again.best_params == result.best_params
    # The CLI reads the same study; a worker process cannot run it and says why.
    best = run_cli("best", "--study", "nb", "--storage", url)
    assert best.returncode == 0 and str(result.best_params["units"]) in best.stdout
    worker = run_cli("worker", "--study", "nb", "--storage", url, cwd=tmp_path)
    assert worker.returncode == 2, worker.stderr[-2000:]
    assert "hpsearch worker: error:" in worker.stderr and "hpsearch.run()" in worker.stderr
    assert "Warning" not in worker.stderr  # nothing but the message


def test_worker_processes_need_an_importable_builder_and_data_on_disk(tmp_path: Path, digits) -> None:
    x, y = digits
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with pytest.raises(UsageError, match="move it to a file"):
        hpsearch.run(notebook_builder(), data="mnist-sample", storage=url, workers=2)
    with pytest.raises(UsageError, match="numpy.savez"):
        hpsearch.run("cnn", data=(x, y), storage=url, workers=2)
    with pytest.raises(UsageError, match="data must be"):
        hpsearch.run("cnn", data=x, storage=url)
    assert not (tmp_path / "w.db").exists()  # nothing was created
