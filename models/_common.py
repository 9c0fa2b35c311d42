"""What every builder shares: the optimizer, the training hyperparameters and input adaptation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from hpsearch.models.training_params import (  # noqa: F401  (re-exported: builders import them from here)
    BATCH_SIZES,
    EPOCHS_RANGE,
    LR_FACTOR_RANGE,
    LR_PATIENCE_RANGE,
    LR_PEAK_RANGE,
    PATIENCE_RANGE,
    TRAINING_PARAMS,
    TrainingConfig,
    training_config,
)

if TYPE_CHECKING:
    import keras_tuner

OPTIMIZERS = ("adam", "sgd", "rmsprop")
LEARNING_RATE_RANGE = (1e-4, 1e-2)

# Keras's BatchNormalization averages its inference statistics with momentum 0.99: on MNIST the seed CNN then
# validates at 20% after one and two epochs while it trains at 95% (measured, see README "BatchNorm"). With 0.9
# (PyTorch's default) the statistics follow the weights and epoch 1 already validates at 94%.
BN_MOMENTUM = 0.9


def batch_norm(name: str | None = None) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers are: {', '.join(OPTIMIZERS)}")


def compile_model(model: keras.Model, hp: keras_tuner.HyperParameters, optimizer: str = "adam",
                  learning_rate: float = 1e-3) -> keras.Model:
    """Samples optimizer, learning rate and the training hyperparameters, then compiles the model."""
    name = hp.Choice("optimizer", list(OPTIMIZERS), default=optimizer)
    lr = hp.Float("learning_rate", *LEARNING_RATE_RANGE, sampling="log", default=learning_rate)
    training_config(hp)
    model.compile(optimizer=make_optimizer(name, lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def to_rgb_size(x: keras.KerasTensor, channels: int, size: int | None) -> keras.KerasTensor:
    """Resizes to `size` x `size` (when given) and tiles a grey channel to three, without weights."""
    if size is not None and tuple(x.shape[1:3]) != (size, size):
        x = keras.layers.Resizing(size, size, name="resize")(x)
    if channels == 1:
        x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    return x
