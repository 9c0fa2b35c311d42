"""A Keras 3 callback (any backend) that reports each epoch to Optuna and stops a trial the pruner gives up on."""

from __future__ import annotations

import math
import time
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
