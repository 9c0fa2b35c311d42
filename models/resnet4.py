"""ResNet-4: three 3x3 convolutions and one dense layer with two identity skips (10,320 parameters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from hpsearch.models._common import compile_model

if TYPE_CHECKING:
    import keras_tuner

FILTERS_RANGE = (2, 32)
KERNEL_SIZES = (3, 5)
ACTIVATIONS = ("relu", "elu", "tanh")


def build(hp: keras_tuner.HyperParameters, input_shape: tuple[int, ...] = (28, 28, 1),
          num_classes: int = 10) -> keras.Model:
    filters = hp.Int("filters", *FILTERS_RANGE, default=5)
    kernel = hp.Choice("kernel_size", list(KERNEL_SIZES), default=3)
    activation = hp.Choice("activation", list(ACTIVATIONS), default="relu")
    return compile_model(resnet4(input_shape, num_classes, filters, kernel, activation), hp)


def resnet4(input_shape: tuple[int, ...], num_classes: int, filters: int, kernel: int,
            activation: str) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(filters, kernel, padding="same", activation=activation)(inputs)
    y = keras.layers.Conv2D(filters, kernel, padding="same")(x)
    x = keras.layers.Activation(activation)(keras.layers.Add()([x, y]))
    x = keras.layers.MaxPooling2D()(x)
    y = keras.layers.Conv2D(filters, kernel, padding="same")(x)
    x = keras.layers.Activation(activation)(keras.layers.Add()([x, y]))
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet4")
