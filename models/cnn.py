"""The seed CNN: two Conv-BN-MaxPool-Dropout stages, a dense layer and dropout 0.5.

Defaults are the published search's best: 128 filters, 192 filters, 256 units, Adam.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from hpsearch.models._common import batch_norm, compile_model

if TYPE_CHECKING:
    import keras_tuner

FILTERS_RANGE = (32, 256, 32)  # min, max, step
UNITS_RANGE = (64, 512, 64)


def build(hp: keras_tuner.HyperParameters, input_shape: tuple[int, ...] = (28, 28, 1),
          num_classes: int = 10) -> keras.Model:
    filters_1 = hp.Int("filters_1", *FILTERS_RANGE[:2], step=FILTERS_RANGE[2], default=128)
    filters_2 = hp.Int("filters_2", *FILTERS_RANGE[:2], step=FILTERS_RANGE[2], default=192)
    units = hp.Int("units", *UNITS_RANGE[:2], step=UNITS_RANGE[2], default=256)
    return compile_model(cnn(input_shape, num_classes, filters_1, filters_2, units), hp)


def cnn(input_shape: tuple[int, ...], num_classes: int, filters_1: int, filters_2: int,
        units: int) -> keras.Model:
    # Small inputs (8x8 digits) keep their size through the convolutions with "same" padding.
    padding = "valid" if min(input_shape[:2]) >= 20 else "same"
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in (filters_1, filters_2):
        x = keras.layers.Conv2D(filters, 3, padding=padding, activation="relu")(x)
        x = batch_norm()(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cnn")
