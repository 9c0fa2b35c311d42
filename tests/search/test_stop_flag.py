"""A stop signal's KeyboardInterrupt that Python has to drop (it lands in a garbage-collector callback) still
stops the trial: the flag the signal handler sets is checked every batch, after training and before each trial;
in the log the dropped interrupt is one line, not a traceback (other errors Python drops still show)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from hpsearch.search.worker import STOP_REQUESTED, StopFlag, run_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)

_SCRIPT = """
import logging, weakref
logging.basicConfig(level=logging.INFO, format="%(message)s")
from hpsearch.search.worker import STOP_REQUESTED, stop_cleanly_on_ctrl_c

stop_cleanly_on_ctrl_c()

class Thing:
    pass

def interrupted(_ref):
    raise KeyboardInterrupt

def broken(_ref):
    raise ZeroDivisionError("a real bug")

STOP_REQUESTED.set()  # as the signal handler does before it raises
first = Thing()
first_ref = weakref.ref(first, interrupted)
del first  # the callback's KeyboardInterrupt cannot propagate from here: Python hands it to sys.unraisablehook
second = Thing()
second_ref = weakref.ref(second, broken)
del second
print("went on")
"""


def test_a_dropped_stop_interrupt_is_one_line_and_other_dropped_errors_still_show() -> None:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "went on" in proc.stdout
    assert "stop signal received; the running trial ends FAIL at the next check" in proc.stderr
    assert "KeyboardInterrupt" not in proc.stderr, proc.stderr
    assert "ZeroDivisionError: a real bug" in proc.stderr and "Exception ignored" in proc.stderr


@pytest.fixture
def stop_flag() -> Iterator[StopFlag]:
    """The worker's process-wide flag, left clear for the tests after this one."""
    STOP_REQUESTED.clear()
    yield STOP_REQUESTED
    STOP_REQUESTED.clear()


def test_a_set_flag_starts_no_trial(tmp_path: Path, stop_flag: StopFlag) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    stop_flag.set()
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, 3, lambda trial: trial.suggest_float("x", 0, 1), gc_after_trial=False)
    assert study.get_trials() == []


def test_a_flag_set_during_a_trial_stops_the_worker_before_it_recycles(tmp_path: Path, stop_flag: StopFlag) -> None:
    # A recycled process inherits the ignored signals but not the flag: it must stop here, not re-exec.
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    recycled: list[int] = []

    def objective(trial: optuna.trial.Trial) -> float:
        stop_flag.set()  # as a stop signal whose interrupt was dropped late in the trial
        return trial.suggest_float("x", 0, 1)

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, 3, objective, recycle=1, on_recycle=recycled.append, gc_after_trial=False)
    assert recycled == [] and len(study.get_trials()) == 1


def test_stop_when_set_ends_training_and_prediction_at_the_next_batch() -> None:
    import keras

    from hpsearch.datasets import load_dataset
    from hpsearch.search.callbacks import StopWhenSet
    from hpsearch.search.training import predict

    data = load_dataset("mnist-sample", None, 640, 0.1, 0)
    model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(data.num_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    batches: list[int] = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batches.append(batch))
    with pytest.raises(KeyboardInterrupt):
        model.fit(data.x_train, data.y_train, batch_size=32, epochs=5, verbose=0,
                  callbacks=[counter, StopWhenSet(lambda: len(batches) >= 3)])
    assert len(batches) == 3  # of 18 an epoch: it stopped at the first batch after the flag
    with pytest.raises(KeyboardInterrupt):
        predict(model, data.x_test, callbacks=[StopWhenSet(lambda: True)])
    assert predict(model, data.x_test[:64], callbacks=[StopWhenSet(lambda: False)]).shape == (64, data.num_classes)
