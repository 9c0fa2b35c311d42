"""`lr_peak`: one learning-rate cycle over a fit, measured on the optimizer while real digits train."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

from hpsearch.cli import main
from hpsearch.datasets import Dataset, load_dataset
from hpsearch.errors import TrialFailed, UsageError
from hpsearch.models import TrainingConfig
from hpsearch.models.training_params import DEFAULT_LR_PEAK
from hpsearch.search.keras_tuner_engine import make_tuner
from hpsearch.search.spec import SPEC_ATTR, StudySpec
from hpsearch.search.training import OneCycle, PlateauRate, fit_and_evaluate

BASE = 2e-3


@pytest.fixture(scope="module")
def digits(mnist_dir: Path) -> Dataset:
    return load_dataset("mnist", mnist_dir, 1024, 0.1, 0)


class RateLog(keras.callbacks.Callback):
    """The optimizer's learning rate as each batch runs (read after every callback set it for that batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def small_cnn(learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = BASE,
              optimizer: type[keras.optimizers.Optimizer] = keras.optimizers.Adam) -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, strides=2)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def fit(digits: Dataset, lr_peak: float, epochs: int = 3) -> list[float]:
    keras.utils.set_random_seed(0)
    log = RateLog()
    config = TrainingConfig(batch_size=64, epochs=epochs, patience=epochs, lr_peak=lr_peak)
    fit_and_evaluate(small_cnn(), digits, config, callbacks=[log])
    return log.rates


def test_the_rate_rises_to_the_peak_over_the_first_third_then_falls_back(digits: Dataset) -> None:
    rates = fit(digits, lr_peak=3.0)
    steps = len(rates)
    assert steps == 3 * int(np.ceil(len(digits.x_train) / 64))
    rise = steps // 3
    assert rates[0] == pytest.approx(BASE / 10, rel=1e-5)
    assert np.all(np.diff(rates[:rise + 1]) > 0)
    assert rates[rise] == pytest.approx(3 * BASE, rel=1e-5)
    assert np.all(np.diff(rates[rise:]) < 0)
    assert BASE < rates[-1] < BASE * 1.01
    assert max(rates) == pytest.approx(3 * BASE, rel=1e-5)


def test_a_fit_that_goes_on_from_a_later_epoch_cycles_over_the_epochs_it_runs(digits: Dataset) -> None:
    """KerasTuner's Hyperband trains a kept trial on from the epoch it reached (`initial_epoch`)."""
    keras.utils.set_random_seed(0)
    model, log = small_cnn(), RateLog()
    model.fit(digits.x_train, digits.y_train, batch_size=64, epochs=3, initial_epoch=1, verbose=0,
              callbacks=[OneCycle(3.0), log])
    steps = int(np.ceil(len(digits.x_train) / 64))
    assert len(log.rates) == 2 * steps
    assert log.rates[0] == pytest.approx(BASE / 10, rel=1e-5)
    assert max(log.rates) == pytest.approx(3 * BASE, rel=1e-5) == log.rates[2 * steps // 3]
    assert BASE < log.rates[-1] < BASE * 1.05


def test_lr_peak_1_leaves_the_published_training_alone(digits: Dataset) -> None:
    rates = fit(digits, lr_peak=1.0, epochs=2)
    assert rates and all(r == pytest.approx(BASE, rel=1e-6) for r in rates)


def test_the_cycle_ends_at_the_rate_and_stays_there() -> None:
    cycle = OneCycle(2.0)
    cycle.base, cycle.total = 1.0, 90
    assert [round(cycle.rate_at(s), 4) for s in (0, 15, 30, 60, 90, 200)] == [0.1, 1.05, 2.0, 1.5, 1.0, 1.0]


def test_an_optimizer_with_its_own_schedule_trains_on_it_and_a_warning_says_why_not_the_cycle(
        digits: Dataset, caplog: pytest.LogCaptureFixture) -> None:
    schedule = keras.optimizers.schedules.ExponentialDecay(BASE, decay_steps=10, decay_rate=0.9)
    log = RateLog()
    config = TrainingConfig(batch_size=64, epochs=1, lr_peak=3.0)
    with caplog.at_level(logging.WARNING, logger="hpsearch"):
        result = fit_and_evaluate(small_cnn(schedule), digits, config, callbacks=[log])
    assert result.epochs_run == 1 and result.val_accuracy > 0.3
    assert len(log.rates) == 15 and max(log.rates) <= BASE  # the schedule's decay, never the cycle's rise
    assert all(later < earlier for earlier, later in zip(log.rates, log.rates[1:], strict=False))
    assert "trained without the learning-rate cycle" in caplog.text
    assert "which the trial keeps (compile with a number for the cycle)" in caplog.text


@pytest.mark.parametrize("scheduled", [False, True])
def test_a_diverged_fit_names_the_cycle_only_when_it_ran(digits: Dataset, scheduled: bool) -> None:
    rate = keras.optimizers.schedules.ExponentialDecay(1e6, decay_steps=10, decay_rate=0.9) if scheduled else 1e6
    with pytest.raises(TrialFailed, match="training diverged") as failed:
        fit_and_evaluate(small_cnn(rate, keras.optimizers.SGD), digits,
                         TrainingConfig(batch_size=64, epochs=2, lr_peak=3.0))
    assert ("the learning-rate cycle raises it to 3 times" in str(failed.value)) is not scheduled


def test_a_scheduled_optimizer_trains_on_it_under_the_published_training_past_a_plateau(digits: Dataset) -> None:
    schedule = keras.optimizers.schedules.ExponentialDecay(BASE, decay_steps=10, decay_rate=0.9)
    result = fit_and_evaluate(small_cnn(schedule), digits, TrainingConfig(batch_size=64, epochs=1))
    assert result.epochs_run == 1 and result.val_accuracy > 0.3

    def plateau_fit(callback: keras.callbacks.Callback) -> None:  # every epoch after the first is a plateau
        small_cnn(schedule).fit(digits.x_train, digits.y_train, batch_size=256, epochs=2, verbose=0,
                                validation_data=(digits.x_val, digits.y_val), callbacks=[callback])

    plateau = {"monitor": "val_accuracy", "mode": "max", "patience": 0, "min_delta": 10.0}
    with pytest.raises(TypeError):  # what Keras's own callback does with such an optimizer
        plateau_fit(keras.callbacks.ReduceLROnPlateau(**plateau))
    plateau_fit(PlateauRate(**plateau))


def test_a_keras_tuner_project_saved_before_lr_peak_holds_it_at_the_study_value(
        tmp_path: Path, digits: Dataset) -> None:
    spec = StudySpec(study="kt", model="cnn", dataset="mnist", trials=1, epochs=1, fixed={"lr_peak": 2.5})
    make_tuner("random", spec, digits, tmp_path).save()
    saved = tmp_path / "kt" / "oracle.json"
    state = json.loads(saved.read_text())
    space = state["hyperparameters"]
    space["space"] = [p for p in space["space"] if p["config"]["name"] != "lr_peak"]
    space["values"].pop("lr_peak")
    saved.write_text(json.dumps(state))  # what a project saved before lr_peak existed holds

    reloaded = make_tuner("random", spec, digits, tmp_path).oracle.hyperparameters
    (kept,) = [p for p in reloaded.space if p.name == "lr_peak"]
    assert type(kept).__name__ == "Fixed" and reloaded.values["lr_peak"] == 2.5
    saved.write_text(json.dumps(state))
    default = StudySpec(study="kt", model="cnn", dataset="mnist", trials=1, epochs=1)  # no peak asked for
    assert make_tuner("random", default, digits, tmp_path).oracle.hyperparameters.values["lr_peak"] == 1.0


def test_a_new_study_cycles_a_study_stored_before_keeps_its_training_and_asking_wins() -> None:
    new = StudySpec(study="s", model="cnn")
    assert new.fixed_values()["lr_peak"] == DEFAULT_LR_PEAK == 5.0  # the default since 2026-11-29
    assert new.settled(None).to_dict()["lr_peak"] == DEFAULT_LR_PEAK  # stored with the study
    assert StudySpec(study="s", model="cnn", fixed={"lr_peak": 1}).fixed_values()["lr_peak"] == 1
    assert "lr_peak" not in StudySpec(study="s", model="cnn", search_training=["lr_peak"]).fixed_values()
    stored = new.settled(None).to_dict()
    del stored["lr_peak"]  # a study created before the cycle was the default
    assert StudySpec.from_study(stored, "study s").fixed_values()["lr_peak"] == 1.0
    assert StudySpec.from_stored(stored).fixed_values()["lr_peak"] == 1.0
    assert StudySpec.load(None, {"timeout": 900}, base=stored).fixed_values()["lr_peak"] == 1.0
    assert new.settled(stored).fixed_values()["lr_peak"] == 1.0  # resumed by --model or --spec: kept
    assert new.settled({**stored, "lr_peak": 3.0}).fixed_values()["lr_peak"] == 3.0  # created under the peak before
    assert StudySpec(study="s", model="cnn", lr_peak=2).settled(stored).lr_peak == 2.0  # named: taken
    with pytest.raises(UsageError, match="lr_peak must be a number from 1 to 100"):
        StudySpec(study="s", model="cnn", lr_peak=0.5)
    with pytest.raises(UsageError, match="lr_peak must be float"):
        StudySpec.from_dict({"study": "s", "model": "cnn", "lr_peak": "high"})


def test_a_study_created_before_the_cycle_keeps_its_training_when_run_again_with_model(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    command = ["--storage", url, "--study", "old", "--model", "cnn", "--dataset", "mnist-sample", "--train-size",
               "500", "--epochs", "1", "--set", "filters_1=32", "--set", "filters_2=32", "--set", "units=64"]
    assert main(["create", *command, "--trials", "1"]) == 0
    study = optuna.load_study(study_name="old", storage=url)
    assert study.user_attrs[SPEC_ATTR]["lr_peak"] == DEFAULT_LR_PEAK  # a new study's default, stored
    before = {k: v for k, v in study.user_attrs[SPEC_ATTR].items() if k != "lr_peak"}
    study.set_user_attr(SPEC_ATTR, before)  # as a study stored before the key holds it

    assert main(["run", *command, "--trials", "2", "--workers", "1"]) == 0  # the same command again
    study = optuna.load_study(study_name="old", storage=url)
    assert study.user_attrs[SPEC_ATTR]["lr_peak"] == 1.0
    assert [t.user_attrs.get("fixed:lr_peak") for t in study.trials] == [1.0, 1.0], study.trials


def still_model(rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-12) -> keras.Model:
    """A classifier trained at a rate too small to move it: every validation after the first is a plateau."""
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize(("lr_peak", "scheduled", "epochs_run"), [
    (3.0, False, 5),  # 15 epochs: the rate rises over the first 5; patience 1 counts from the 5th, the peak's
    (1.0, False, 2),  # the published training: stopped at the first plateau
    (3.0, True, 2),  # a schedule of the optimizer's own: no cycle, so nothing to wait for
])
def test_early_stopping_waits_for_the_cycles_peak(digits: Dataset, lr_peak: float, scheduled: bool,
                                                 epochs_run: int) -> None:
    keras.utils.set_random_seed(0)
    rate = keras.optimizers.schedules.ExponentialDecay(1e-12, 10, 0.9) if scheduled else 1e-12
    config = TrainingConfig(batch_size=256, epochs=15, patience=1, lr_peak=lr_peak)
    result = fit_and_evaluate(still_model(rate), digits, config)
    assert result.epochs_run == epochs_run
    assert len(set(result.history["val_accuracy"])) == 1  # the plateau the stop answers


def test_a_diverged_cycle_stops_during_its_warm_up(digits: Dataset) -> None:
    """Waiting for the peak holds early stopping only: a loss gone NaN still ends the fit in its first epoch."""
    log = RateLog()
    with pytest.raises(TrialFailed, match="in epoch 1"):
        fit_and_evaluate(small_cnn(1e6, keras.optimizers.SGD), digits,
                         TrainingConfig(batch_size=64, epochs=15, lr_peak=3.0), callbacks=[log])
    assert 0 < len(log.rates) <= np.ceil(len(digits.x_train) / 64)  # no batch of a second epoch ran
