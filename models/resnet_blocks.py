"""A ResNet of up to three residual blocks (3 x Conv-BN-ReLU plus a projection skip each).

At the defaults on 28x28 digits the blocks output 14x14x64, 7x7x256 and 4x4x512, then global average
pooling and a softmax layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from hpsearch.models._common import batch_norm, compile_model

if TYPE_CHECKING:
    import keras_tuner

MAX_BLOCKS = 3
# (min, max, step, default) of each block's width.
WIDTHS = ((16, 128, 16, 64), (64, 512, 64, 256), (128, 1024, 128, 512))
KERNEL_SIZES = (3, 5)


def build(hp: keras_tuner.HyperParameters, input_shape: tuple[int, ...] = (28, 28, 1),
          num_classes: int = 10) -> keras.Model:
    num_blocks = hp.Int("num_blocks", 1, MAX_BLOCKS, default=MAX_BLOCKS)
    widths = []
    for i, (low, high, step, default) in enumerate(WIDTHS, start=1):
        # width_i exists only when there are at least i blocks.
        with hp.conditional_scope("num_blocks", list(range(i, MAX_BLOCKS + 1))):
            width = hp.Int(f"width_{i}", low, high, step=step, default=default)
        if i <= num_blocks:
            widths.append(width)
    kernel = hp.Choice("kernel_size", list(KERNEL_SIZES), default=3)
    return compile_model(resnet_blocks(input_shape, num_classes, widths, kernel), hp)


def residual_block(x: keras.KerasTensor, width: int, kernel: int, name: str) -> keras.KerasTensor:
    shortcut = keras.layers.Conv2D(width, 1, strides=2, padding="same", name=f"{name}_proj")(x)
    shortcut = batch_norm(name=f"{name}_proj_bn")(shortcut)
    for j in range(3):
        x = keras.layers.Conv2D(width, kernel, strides=2 if j == 0 else 1, padding="same",
                                name=f"{name}_conv{j + 1}")(x)
        x = batch_norm(name=f"{name}_bn{j + 1}")(x)
        if j < 2:
            x = keras.layers.ReLU(name=f"{name}_relu{j + 1}")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def resnet_blocks(input_shape: tuple[int, ...], num_classes: int, widths: list[int],
                  kernel: int) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, width in enumerate(widths, start=1):
        x = residual_block(x, width, kernel, name=f"block{i}")
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet_blocks")
