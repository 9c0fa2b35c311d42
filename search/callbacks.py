"""Keras 3 callbacks (any backend): one reports each epoch to Optuna and stops a trial the pruner gives up on; one
ends training once a stop was asked for."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras

if TYPE_CHECKING:
    import optuna


class OptunaReportCallback(keras.callbacks.Callback):
    """Reports `monitor` as the intermediate value of step = epoch (1-based), and asks the pruner.

    Pruning inside `fit` only stops training (`stop_training`); the objective raises `TrialPruned` after
    `fit` returns, so no backend has to carry a foreign exception through its training loop.
    """

    def __init__(self, trial: optuna.trial.Trial, monitor: str = "val_accuracy", max_epochs: int | None = None,
                 report: bool = True) -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.max_epochs = max_epochs
        self.report = report  # False: record the values only (a study of several objectives cannot report them)
        self.pruned_at: int | None = None
        self.values: list[float] = []  # the monitored metric of each epoch, as reported
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.monotonic()
        self.trial.set_user_attr("epoch", epoch + 1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"metric {self.monitor!r} is not in the training logs ({', '.join(sorted(logs))}); "
                           "choose one of those as the study's metric")
        value = float(logs[self.monitor])
        if not math.isfinite(value):
            return  # TerminateOnNaN ends the run; the objective fails the trial with its reason
        step = epoch + 1
        self.values.append(value)
        self.trial.set_user_attr("epoch_seconds", round(time.monotonic() - self._epoch_start, 2))
        if not self.report:
            return
        self.trial.report(value, step)
        if step == self.max_epochs:
            return  # the last epoch is trained already: its result is worth keeping, not pruning
        if self.trial.should_prune():
            self.pruned_at = step
            self.model.stop_training = True


class StopWhenSet(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the end of the next batch (training, validation or prediction) once
    `should_stop()` is true.

    A stop signal raises KeyboardInterrupt wherever the worker is, and when that is a garbage-collector callback
    Python prints it and goes on; the signal handler also sets the flag this reads, so the trial still stops
    (ending FAIL, resumable) within a batch. One flag read per batch.

    `async_safe`: on backends where Keras dispatches batch callbacks on a thread (JAX, torch), this callback does
    not turn that off; the interrupt raised there reaches the loop when Keras collects the callback's result, at
    the next batch or at the loop's end. TensorFlow always calls them in step.
    """

    async_safe = True

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self.should_stop = should_stop

    def _check(self) -> None:
        if self.should_stop():
            raise KeyboardInterrupt("stop requested")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._check()

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._check()

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._check()
