"""The training hyperparameters every builder shares, without importing Keras (spec checks and read-only commands
use them; building and training import Keras where they need it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras_tuner

BATCH_SIZES = (32, 64, 128, 256)
EPOCHS_RANGE = (1, 100)
PATIENCE_RANGE = (1, 10)
LR_FACTOR_RANGE = (0.1, 0.5)
LR_PATIENCE_RANGE = (1, 5)
LR_PEAK_RANGE = (1.0, 5.0)  # searched
LR_PEAK_MAX = 100.0  # held at a value: any peak from 1 up to this
# A new study's training cycles the learning rate once a trial, peaking at this many times the optimizer's rate
# (search/training.py `OneCycle`): on MNIST at 3 epochs a peak of 3 won a 10-minute search against the published
# training on every seed (BENCHMARKS.md "One learning-rate cycle a trial"), and 5 won against 3 on every MNIST seed
# and at the median on Fashion-MNIST ("A higher peak"). TrainingConfig's 1 is the published training (`hpsearch
# train` and studies created before): the rate until ReduceLROnPlateau lowers it.
DEFAULT_LR_PEAK = 5.0
SHIFT_RANGE = (0.0, 0.2)  # searched, in steps of SHIFT_STEP
SHIFT_STEP = 0.05
SHIFT_MAX = 0.5  # held at a value: a shift of half the image at most

# Names of the hyperparameters that shape training rather than the network. A study fixes them from its
# spec unless told to search them.
TRAINING_PARAMS = ("batch_size", "epochs", "patience", "lr_factor", "lr_patience", "lr_peak", "shift")


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = 128
    epochs: int = 10
    patience: int = 3
    lr_factor: float = 0.2
    lr_patience: int = 2
    # One learning-rate cycle over the fit when above 1 (search/training.py `OneCycle`, in place of
    # ReduceLROnPlateau): a warm-up to lr_peak times the optimizer's rate, then a fall back to it. 1: the published
    # training (the rate until a plateau lowers it).
    lr_peak: float = 1.0
    # Data augmentation: every training image moved by a random whole number of pixels, up to this fraction of
    # its height and width in each direction, freshly drawn every epoch (search/training.py `Batches`); the edge
    # pixels fill what is uncovered. 0: the images as they are. Validation, test and BatchNorm statistics see the
    # images unshifted.
    shift: float = 0.0


def training_config(hp: keras_tuner.HyperParameters) -> TrainingConfig:
    """Registers the training hyperparameters (defaults: the seed searches' set-up) and returns their values."""
    default = TrainingConfig()
    return TrainingConfig(
        batch_size=hp.Choice("batch_size", list(BATCH_SIZES), default=default.batch_size),
        epochs=hp.Int("epochs", *EPOCHS_RANGE, default=default.epochs),
        patience=hp.Int("patience", *PATIENCE_RANGE, default=default.patience),
        lr_factor=hp.Float("lr_factor", *LR_FACTOR_RANGE, step=0.1, default=default.lr_factor),
        lr_patience=hp.Int("lr_patience", *LR_PATIENCE_RANGE, default=default.lr_patience),
        lr_peak=hp.Float("lr_peak", *LR_PEAK_RANGE, step=0.5, default=default.lr_peak),
        shift=hp.Float("shift", *SHIFT_RANGE, step=SHIFT_STEP, default=default.shift),
    )
