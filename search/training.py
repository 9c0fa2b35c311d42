"""Fitting and evaluating one model: the part a trial, `hpsearch train` and `retrain` share."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import keras
import numpy as np

from hpsearch.errors import TrialFailed
from hpsearch.models import TrainingConfig
from hpsearch.search.precise_bn import DEFAULT_SAMPLES, PreciseBatchNorm

if TYPE_CHECKING:
    from hpsearch.datasets import Dataset


def is_streamed(x: object) -> bool:
    """True for inputs read from disk as training goes (`image_folders.ImageFiles`), not held as an array."""
    return not isinstance(x, np.ndarray) and hasattr(x, "paths") and hasattr(x, "read")


def shifted(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Each image of the batch `x` (N, H, W[, C]) moved by its own random whole number of pixels, up to `fraction`
    of H and of W (rounded down) in each direction; the edge pixels fill what the move uncovers."""
    n, height, width = x.shape[:3]
    dy, dx = int(fraction * height), int(fraction * width)
    if dy == 0 and dx == 0:
        return x
    padded = np.pad(x, ((0, 0), (dy, dy), (dx, dx)) + ((0, 0),) * (x.ndim - 3), mode="edge")
    top = rng.integers(0, 2 * dy + 1, size=n)[:, None, None] + np.arange(height)[None, :, None]
    left = rng.integers(0, 2 * dx + 1, size=n)[:, None, None] + np.arange(width)[None, None, :]
    return padded[np.arange(n)[:, None, None], top, left]


class Batches(keras.utils.PyDataset):
    """Inputs (and labels) as Keras batches, reshuffled after every epoch when `shuffle`, each image moved by a
    random `shift` (a fraction of its size, `shifted`) when above 0. Arrays, or images streamed from disk."""

    def __init__(self, x: object, y: np.ndarray | None, batch_size: int, shuffle: bool = False,
                 seed: int = 0, shift: float = 0.0) -> None:
        super().__init__()
        self.x, self.y, self.batch_size, self.shuffle, self.shift = x, y, batch_size, shuffle, shift
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x)) if shuffle else np.arange(len(x))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return math.ceil(len(self._order) / self.batch_size)

    def __getitem__(self, index: int) -> object:
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])  # read in file order
        x = np.asarray(self.x[rows])  # type: ignore[index]
        if self.shift > 0:
            x = shifted(x, self.shift, self._rng)
        return x if self.y is None else (x, self.y[rows])

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(len(self._order))


def training_batches(x: object, y: np.ndarray, config: TrainingConfig) -> Batches:
    """The training images as shuffled batches, shifted by `config.shift` (both engines train on these when a
    shift is asked for)."""
    # keras.utils.set_random_seed seeds NumPy's global generator: a seeded fit draws the same shifts again
    seed = int(np.random.randint(2**31 - 1)) if config.shift > 0 else 0
    return Batches(x, y, config.batch_size, shuffle=True, seed=seed, shift=config.shift)


def _fit(model: keras.Model, data: Dataset, config: TrainingConfig, callbacks: list[keras.callbacks.Callback],
         verbose: int | str) -> dict[str, list[float]]:
    """`model.fit` on the training split, validating every epoch; the logs as floats.

    Raises:
        TrialFailed: the loss became NaN or infinite.
    """
    if is_streamed(data.x_train) or config.shift > 0:  # read from disk batch by batch, or shifted batch by batch
        history = model.fit(training_batches(data.x_train, data.y_train, config),
                            epochs=config.epochs, validation_data=Batches(data.x_val, data.y_val, config.batch_size),
                            callbacks=callbacks, verbose=verbose)
    else:
        history = model.fit(data.x_train, data.y_train, batch_size=config.batch_size, epochs=config.epochs,
                            validation_data=(data.x_val, data.y_val), callbacks=callbacks, verbose=verbose)
    logs = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    losses = logs.get("loss", [])
    if any(not math.isfinite(v) for v in losses) or getattr(model, "stop_training_reason", None) == "nan":
        bad = next((i for i, v in enumerate(losses, 1) if not math.isfinite(v)), len(losses))
        cycled = any(isinstance(c, OneCycle) and not c.skipped for c in callbacks)
        cycle = (f" (the learning-rate cycle raises it to {config.lr_peak:g} times; --set lr_peak=1 keeps it)"
                 if cycled else "")
        raise TrialFailed(f"training diverged: the loss became NaN/inf in epoch {bad}; lower the learning rate "
                          f"or narrow its range{cycle}")
    return logs


def predict(model: keras.Model, x: object, batch_size: int = 512,
            callbacks: Sequence[keras.callbacks.Callback] = ()) -> np.ndarray:
    """Class probabilities for `x`, an array or streamed images."""
    if is_streamed(x):
        return model.predict(Batches(x, None, batch_size), verbose=0, callbacks=list(callbacks))
    return model.predict(x, batch_size=batch_size, verbose=0, callbacks=list(callbacks))


@dataclass
class FitResult:
    """What one training run produced."""

    history: dict[str, list[float]]
    epochs_run: int
    train_seconds: float
    images_per_second: float
    val_accuracy: float
    test_accuracy: float
    test_loss: float
    parameters: int
    y_pred: np.ndarray = field(repr=False)
    test_seconds: float | None = None  # None: the test set was not evaluated
    precise_bn_seconds: list[float] = field(default_factory=list)  # each BatchNorm recompute, in order


def metric_mode(metric: str) -> str:
    """'max' for accuracies, 'min' for losses and errors."""
    return "min" if "loss" in metric or "error" in metric else "max"


SCHEDULED_RATE = ("lr_peak above 1 needs an optimizer with a plain learning rate, and this builder's optimizer has "
                  "a schedule of its own; leave lr_peak out (the builder's schedule is then kept) or compile with a "
                  "number")
_OWN_SCHEDULE = ("this builder's optimizer has a learning-rate schedule of its own, which the trial keeps (compile "
                 "with a number for the cycle)")
_UNSIZED = ("the training data does not tell how many batches an epoch has (a generator without a length), so the "
            "cycle cannot be laid out; give it a length for the cycle")


def has_plain_rate(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether the optimizer's learning rate is a variable a callback can set (not a schedule of its own)."""
    return hasattr(optimizer.learning_rate, "assign")


class OneCycle(keras.callbacks.Callback):
    """One learning-rate cycle over the fit: from a tenth of the optimizer's rate up to `peak` times it, linearly
    over the first third of the steps the fit runs, then a cosine fall back to the rate by the fit's end (after
    Smith's one-cycle policy, ending at the rate rather than near 0: a fall to 0 lost on 3-epoch trials, BENCHMARKS.md
    "A learning rate decayed over 3 epochs"). It sets the rate before every batch, so it replaces ReduceLROnPlateau
    (`standard_callbacks` adds one or the other). A fit that starts at a later epoch (KerasTuner's Hyperband going
    on with a trial) cycles over the epochs it runs.

    Where there is nothing to cycle (the optimizer's rate is a schedule of its own, or the training data does not
    tell how many batches an epoch has) the fit trains as compiled, and a warning says why: a study's default peak
    must not fail the builders it does not suit (one that asks for a peak is refused before the study instead,
    search/preflight.py).
    """

    def __init__(self, peak: float) -> None:
        super().__init__()
        self.peak = float(peak)
        self.base = 0.0
        self.steps = 0  # per epoch
        self.total = 0  # in the fit
        self.first_epoch: int | None = None
        self.epoch = 0
        self.skipped = ""  # why the fit trains without the cycle

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.first_epoch = None
        self.steps = int(self.params.get("steps") or 0)
        plain = has_plain_rate(self.model.optimizer)
        self.skipped = "" if plain and self.steps else (_OWN_SCHEDULE if not plain else _UNSIZED)
        if self.skipped:
            logging.getLogger("hpsearch").warning("trained without the learning-rate cycle: %s", self.skipped)
            return
        self.base = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.first_epoch is None:
            self.first_epoch = epoch
            self.total = self.steps * max(1, int(self.params.get("epochs") or 1) - epoch)
        self.epoch = epoch - self.first_epoch

    def rate_at(self, step: int) -> float:
        """The learning rate before step `step` (0-based) of the fit."""
        rise = max(1, self.total // 3)
        low, high = self.base / 10, self.base * self.peak
        if step < rise:
            return low + (high - low) * step / rise
        done = min(1.0, (step - rise) / max(1, self.total - rise))
        return self.base + (high - self.base) * (1 + math.cos(math.pi * done)) / 2

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.skipped:
            return
        self.model.optimizer.learning_rate.assign(self.rate_at(self.epoch * self.steps + batch))

    def rising(self) -> bool:
        """Whether the epoch under way ends before the rate's peak (the warm-up's epochs)."""
        return not self.skipped and (self.epoch + 1) * self.steps < max(1, self.total // 3)


class Stopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that does not stop a learning-rate cycle on its way up: while `cycle` warms the rate up, a
    validation that does not improve is what a rising rate does, not a plateau, so patience counts from the peak
    (the best weights are still kept from every epoch). Without this, a 15-epoch trial whose validation stalled
    during its warm-up (the first 4 epochs are held; the 5th ends at the peak) stopped before the rate came down,
    where a cycle's gain is. Fits of 6 epochs or fewer are unchanged (Keras never stops after the first epoch)."""

    def __init__(self, cycle: OneCycle | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cycle = cycle

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        stopping = self.model.stop_training  # another callback's stop (NaN, a pruner) stays
        super().on_epoch_end(epoch, logs)
        if self.cycle is not None and self.cycle.rising():
            self.wait = 0
            if not stopping and self.model.stop_training:
                self.model.stop_training, self.stopped_epoch = False, 0


class PlateauRate(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that leaves an optimizer with a learning-rate schedule of its own to that schedule (Keras
    cannot set such a rate: it raises at the first plateau)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if has_plain_rate(self.model.optimizer):
            super().on_epoch_end(epoch, logs)


def standard_callbacks(config: TrainingConfig, monitor: str = "val_accuracy") -> list[keras.callbacks.Callback]:
    """Early stopping (best weights restored) and ReduceLROnPlateau, as the seed CNN search trained; with
    `lr_peak` above 1, one learning-rate cycle over the fit (`OneCycle`) instead of ReduceLROnPlateau, and early
    stopping that waits for the cycle's peak (`Stopping`)."""
    mode = metric_mode(monitor)
    cycle = OneCycle(config.lr_peak) if config.lr_peak > 1 else None
    rate = cycle or PlateauRate(monitor=monitor, mode=mode, factor=config.lr_factor, patience=config.lr_patience,
                                min_lr=1e-6)
    return [keras.callbacks.TerminateOnNaN(),
            Stopping(cycle, monitor=monitor, mode=mode, patience=config.patience, restore_best_weights=True),
            rate]


def fit_and_evaluate(model: keras.Model, data: Dataset, config: TrainingConfig,
                     callbacks: Sequence[keras.callbacks.Callback] = (), monitor: str = "val_accuracy",
                     verbose: int | str = 0, skip_test: Callable[[], bool] | None = None,
                     precise_bn_samples: int = DEFAULT_SAMPLES) -> FitResult:
    """Trains on the training split, validates every epoch, restores the best weights, evaluates on test.

    `skip_test()` is asked after training: True leaves the test set alone (a pruned trial's model is thrown
    away; its test accuracy is NaN and `y_pred` empty).

    Before each validation the BatchNormalization layers' moving statistics are recomputed from the current
    weights over at most `precise_bn_samples` training images (see `search/precise_bn.py`): the moving averages
    trail the weights, and a short trial would otherwise be judged, pruned or kept on statistics of weights it
    no longer has. When a sixteenth of the training set is fewer, that many images are used (at least 128), so
    a recompute stays near 3% of an epoch. 0 turns this off; a model without BatchNormalization runs nothing
    extra.

    Raises:
        TrialFailed: the loss became NaN or infinite (the run diverged).
    """
    # First in the list, so every other callback's on_epoch_end (EarlyStopping's best-weights snapshot, the
    # pruner's report) sees statistics that match the weights.
    precise_bn = PreciseBatchNorm(data.x_train, samples=precise_bn_samples) if precise_bn_samples else None
    first = [precise_bn] if precise_bn is not None else []
    all_callbacks = first + standard_callbacks(config, monitor) + list(callbacks)
    start = time.perf_counter()
    logs = _fit(model, data, config, all_callbacks, verbose)
    seconds = time.perf_counter() - start
    losses = logs.get("loss", [])
    if precise_bn is not None:
        # EarlyStopping restores a snapshot taken after a recompute, and fit validates after every epoch's last
        # step, so this is a guard: weights trained past the last validation (a change of the fit loop) would
        # otherwise be tested and saved with statistics of older weights.
        precise_bn.recompute_if_stale()
    epochs_run = len(losses)
    val_key = "val_accuracy" if "val_accuracy" in logs else monitor
    val_acc = max(logs.get(val_key, [float("nan")]))
    base = dict(history=logs, epochs_run=epochs_run, train_seconds=seconds,
                images_per_second=epochs_run * len(data.x_train) / seconds if seconds > 0 else 0.0,
                val_accuracy=val_acc, parameters=int(model.count_params()),
                precise_bn_seconds=list(precise_bn.seconds) if precise_bn is not None else [])
    if skip_test is not None and skip_test():
        return FitResult(**base, test_accuracy=float("nan"), test_loss=float("nan"),
                         y_pred=np.empty(0, dtype=np.int64))
    test_start = time.perf_counter()
    probs = predict(model, data.x_test, callbacks=callbacks)  # the caller's callbacks watch the test set too
    if not np.all(np.isfinite(probs)):
        raise TrialFailed("training diverged: the model predicts NaN; lower the learning rate")
    y_pred = probs.argmax(axis=1)
    picked = probs[np.arange(len(probs)), data.y_test]
    test_loss = float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())
    test_acc = float((y_pred == data.y_test).mean())
    return FitResult(**base, test_accuracy=test_acc, test_loss=test_loss, y_pred=y_pred,
                     test_seconds=time.perf_counter() - test_start)
