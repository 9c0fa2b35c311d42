"""`shift`: training images moved by random whole pixels, validation and test images left as they are."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from hpsearch.cli import main
from hpsearch.datasets import Dataset, load_dataset
from hpsearch.models import TrainingConfig
from hpsearch.search import training
from hpsearch.search.keras_tuner_engine import make_tuner
from hpsearch.search.spec import StudySpec
from hpsearch.search.training import Batches, fit_and_evaluate, shifted


def ramps(n: int, height: int = 20, width: int = 20) -> np.ndarray:
    """n images whose pixel (r, c) holds 100 r + c: where a pixel came from can be read off its value."""
    one = 100.0 * np.arange(height)[:, None] + np.arange(width)[None, :]
    return np.repeat(one[None, :, :, None], n, axis=0)


def test_every_image_moves_by_at_most_the_fraction_with_its_edges_filling_the_rest() -> None:
    x = ramps(200)
    out = shifted(x, 0.1, np.random.default_rng(0))  # up to 2 of 20 pixels each way
    assert out.shape == x.shape and np.array_equal(x, ramps(200))  # the batch given is left alone
    moves = set()
    rows, cols = np.arange(20), np.arange(20)
    for image in out[..., 0]:
        dy, dx = int(image[10, 10] // 100) - 10, int(image[10, 10] % 100) - 10  # where the centre came from
        assert abs(dy) <= 2 and abs(dx) <= 2
        expected = 100.0 * np.clip(rows + dy, 0, 19)[:, None] + np.clip(cols + dx, 0, 19)[None, :]
        assert np.array_equal(image, expected)  # moved whole, the uncovered side repeats the edge
        moves.add((dy, dx))
    assert len(moves) >= 20  # of the 25 possible moves: each image draws its own


def test_labels_travel_with_their_images_and_every_epoch_draws_new_moves() -> None:
    n = 64
    x = ramps(n) + 10_000.0 * np.arange(n)[:, None, None, None]  # image i carries i in its values
    y = np.arange(n)
    batches = Batches(x, y, 16, shuffle=True, seed=1, shift=0.1)
    first = [batches[i] for i in range(len(batches))]
    for xb, yb in first:
        assert np.array_equal(xb[:, 10, 10, 0] // 10_000, yb)
    assert sorted(np.concatenate([yb for _, yb in first]).tolist()) == list(range(n))
    batches.on_epoch_end()
    again = {int(label): image for xb, yb in (batches[i] for i in range(len(batches)))
             for label, image in zip(yb, xb, strict=True)}
    before = {int(label): image for xb, yb in first for label, image in zip(yb, xb, strict=True)}
    assert sum(not np.array_equal(before[i], again[i]) for i in range(n)) > n // 2


def test_the_same_seed_draws_the_same_moves_and_another_seed_others() -> None:
    x, y = ramps(32), np.arange(32)

    def epoch(seed: int) -> list[np.ndarray]:
        batches = Batches(x, y, 8, shuffle=True, seed=seed, shift=0.1)
        return [batches[i][0] for i in range(len(batches))]

    assert all(np.array_equal(a, b) for a, b in zip(epoch(3), epoch(3), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(epoch(3), epoch(4), strict=True))


@pytest.fixture(scope="module")
def digits(mnist_dir: Path) -> Dataset:
    return load_dataset("mnist", mnist_dir, 1024, 0.1, 0)


class ShiftLog:
    """Wraps `shifted`: how many images it moved, and whether any of them was a validation image."""

    def __init__(self, data: Dataset) -> None:
        self.images = 0
        self.validation = {image.tobytes() for image in data.x_val}
        self.moved_validation = False

    def __call__(self, x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
        self.images += len(x)
        self.moved_validation |= any(image.tobytes() in self.validation for image in x)
        return shifted(x, fraction, rng)


def test_a_fit_shifts_the_training_batches_only(digits: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every training batch of every epoch is shifted, no validation image is, and the digits are still learnt."""
    log = ShiftLog(digits)
    monkeypatch.setattr(training, "shifted", log)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    config = TrainingConfig(batch_size=64, epochs=2, patience=2, shift=0.1)
    result = fit_and_evaluate(model, digits, config)
    # Keras may read a batch or two ahead to learn their shapes: at least two epochs' worth, at most a few more
    assert 2 * len(digits.x_train) <= log.images <= 2 * len(digits.x_train) + 4 * 64
    assert not log.moved_validation
    assert result.epochs_run == 2 and result.test_accuracy > 0.6 and result.val_accuracy > 0.6


def test_the_keras_tuner_engine_shifts_the_training_batches_too(tmp_path: Path, digits: Dataset,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    log = ShiftLog(digits)
    monkeypatch.setattr(training, "shifted", log)
    spec = StudySpec(study="kt", model="cnn", dataset="mnist", trials=1, epochs=1,
                     fixed={"shift": 0.1, "filters_1": 32, "filters_2": 32, "units": 64})
    tuner = make_tuner("random", spec, digits, tmp_path)
    tuner.search(digits.x_train, digits.y_train, validation_data=(digits.x_val, digits.y_val), verbose=0)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED" and trial.hyperparameters.values["shift"] == 0.1
    assert len(digits.x_train) <= log.images <= len(digits.x_train) + 4 * 128  # an epoch of batches, all shifted
    assert not log.moved_validation


@pytest.mark.parametrize(("flags", "expected"), [
    (["--set", "shift=0.6"], "shift must be a number from 0 to 0.5"),
    (["--set", "shift=-0.1"], "shift must be a number from 0 to 0.5"),
    (["--set", "shift=0.02"], "shift 0.02 moves these 28x28 images by less than a pixel; use at least 0.0357"),
])
def test_a_shift_out_of_range_stops_at_the_door(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                flags: list[str], expected: str) -> None:
    code = main(["run", "--storage", f"sqlite:///{tmp_path / 'hp.db'}", "--study", "s", "--model", "cnn",
                 "--dataset", "mnist-sample", "--trials", "1", "--epochs", "1", *flags])
    assert code == 2 and expected in capsys.readouterr().err


FEATURES_BUILDER = '''
import keras


def build(hp):
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(hp.Int("units", 8, 32), activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''


@pytest.mark.parametrize("flags", [["--set", "shift=0.1"], ["--search-training", "shift"]])
def test_a_shift_on_data_that_are_not_images_stops_at_the_door(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               flags: list[str]) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", x_train=rng.random((300, 64), dtype=np.float32), y_train=np.arange(300) % 10)
    (tmp_path / "features.py").write_text(FEATURES_BUILDER)
    code = main(["run", "--storage", f"sqlite:///{tmp_path / 'hp.db'}", "--study", "s", "--model",
                 f"{tmp_path / 'features.py'}:build", "--dataset", f"npz:{tmp_path / 'f.npz'}", "--trials", "1",
                 "--epochs", "1", *flags])
    err = capsys.readouterr().err
    assert code == 2 and "shift moves images by pixels, but this data's inputs are shaped (" in err, err


@pytest.mark.integration
def test_a_study_with_a_shift_records_it_with_every_trial(tmp_path: Path) -> None:
    """As a user types it: the check before the study passes, the trial trains shifted and records the value."""
    import optuna

    from tests.conftest import run_cli

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    result = run_cli("run", "--storage", url, "--study", "shifted", "--model", "resnet4", "--dataset",
                     "mnist-sample", "--trials", "1", "--epochs", "1", "--workers", "1", "--set", "shift=0.1",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (trial,) = optuna.load_study(study_name="shifted", storage=url).get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["fixed:shift"] == 0.1
    best = run_cli("best", "--study", "shifted", "--storage", url, env={"COLUMNS": "400"})
    assert "shift 0.1" in best.stdout


@pytest.mark.parametrize(("epochs", "fixed", "data", "hinted"), [
    (15, {}, "images", True), (30, {}, "images", True), (14, {}, "images", False), (3, {}, "images", False),
    (15, {"shift": 0.1}, "images", False), (15, {"shift": 0.0}, "images", False), (15, {}, "features", False),
    (3, {"epochs": 20}, "images", True), (20, {"epochs": 5}, "images", False), (15, {}, "searched", False),
    (15, {}, "epochs searched", False),
])
def test_a_study_of_long_trials_on_images_hears_of_the_shift(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                             epochs: int, fixed: dict[str, float], data: str,
                                                             hinted: bool) -> None:
    """The hint names the measured lever where it was measured to help (15-epoch trials on images), and only there:
    a study that already fixes a shift, or whose inputs are not images, hears nothing."""
    import logging

    from hpsearch.search.preflight import check_spec

    if data == "features":
        rng = np.random.default_rng(0)
        np.savez(tmp_path / "f.npz", x_train=rng.random((300, 64), dtype=np.float32), y_train=np.arange(300) % 10)
        (tmp_path / "features.py").write_text(FEATURES_BUILDER)
        model, dataset = f"{tmp_path / 'features.py'}:build", f"npz:{tmp_path / 'f.npz'}"
    else:
        model, dataset = "resnet4", "mnist-sample"
    searched = {"searched": ["shift"], "epochs searched": ["epochs"]}.get(data, [])
    spec = StudySpec(study="s", model=model, dataset=dataset, trials=1, epochs=epochs, fixed=dict(fixed),
                     search_training=searched)
    with caplog.at_level(logging.INFO, logger="hpsearch"):
        check_spec(spec, dry_run=False)
    said = [r.getMessage() for r in caplog.records if "--set shift=0.1" in r.getMessage()]
    assert bool(said) is hinted, said
    if hinted:
        trained = fixed.get("epochs", epochs)
        assert said[0].startswith(f"trials of up to {trained} epochs train on the images unmoved")


@pytest.mark.integration
def test_the_shift_hint_reaches_the_user_of_the_command(tmp_path: Path) -> None:
    """As a user types it: `hpsearch create` with 15-epoch trials prints the hint; with a shift it does not."""
    from tests.conftest import run_cli

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    common = ["--storage", url, "--model", "resnet4", "--dataset", "mnist-sample", "--trials", "1", "--epochs", "15"]
    plain = run_cli("create", "--study", "long", *common, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "--set shift=0.1" in plain.stdout + plain.stderr
    shifted_run = run_cli("create", "--study", "long-shifted", *common, "--set", "shift=0.1", cwd=tmp_path)
    assert shifted_run.returncode == 0, shifted_run.stderr[-2000:]
    assert "--set shift=0.1 (every" not in shifted_run.stdout + shifted_run.stderr
