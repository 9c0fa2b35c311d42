"""ResNet-50 (stages 3-4-6-3 of bottleneck blocks): from scratch, or `keras.applications` as feature extractor.

Both variants have 23,600,006 parameters for 64x64x3 inputs and 6 classes. Digits (28x28x1) are resized
and their grey channel tiled to RGB inside the model. ImageNet weights are read from a local file only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import keras

from hpsearch.errors import WeightsNotFoundError
from hpsearch.models._common import batch_norm, compile_model, to_rgb_size

if TYPE_CHECKING:
    import keras_tuner

VARIANTS = ("scratch", "applications")
IMAGE_SIZES = (32, 64)  # what small inputs are resized to; ResNet-50 needs at least 32x32
DROPOUT_RANGE = (0.0, 0.7, 0.1)
STAGES = ((3, (64, 64, 256), 1), (4, (128, 128, 512), 2), (6, (256, 256, 1024), 2), (3, (512, 512, 2048), 2))
WEIGHTS_ENV = "HPSEARCH_RESNET50_WEIGHTS"
WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def build(hp: keras_tuner.HyperParameters, input_shape: tuple[int, ...] = (28, 28, 1), num_classes: int = 10,
          weights: str | None = None) -> keras.Model:
    variant = hp.Choice("variant", list(VARIANTS), default="applications" if weights else "scratch")
    with hp.conditional_scope("variant", ["applications"]):
        dropout = hp.Float("dropout", *DROPOUT_RANGE[:2], step=DROPOUT_RANGE[2], default=0.5)
    size = None
    if min(input_shape[:2]) < IMAGE_SIZES[0]:
        size = hp.Choice("image_size", list(IMAGE_SIZES), default=IMAGE_SIZES[0])
    if variant == "applications":
        model = resnet50_applications(input_shape, num_classes, dropout, size, weights)
    else:
        model = resnet50_scratch(input_shape, num_classes, size)
    return compile_model(model, hp)


def _bottleneck(x: keras.KerasTensor, filters: tuple[int, int, int], stride: int, project: bool,
                name: str) -> keras.KerasTensor:
    f1, f2, f3 = filters
    shortcut = x
    if project:  # the convolutional block: a 1x1 projection matches the shortcut's shape
        shortcut = keras.layers.Conv2D(f3, 1, strides=stride, name=f"{name}_proj")(x)
        shortcut = batch_norm(name=f"{name}_proj_bn")(shortcut)
    x = keras.layers.Conv2D(f1, 1, strides=stride, name=f"{name}_a")(x)
    x = batch_norm(name=f"{name}_a_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_a_relu")(x)
    x = keras.layers.Conv2D(f2, 3, padding="same", name=f"{name}_b")(x)
    x = batch_norm(name=f"{name}_b_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_b_relu")(x)
    x = keras.layers.Conv2D(f3, 1, name=f"{name}_c")(x)
    x = batch_norm(name=f"{name}_c_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def resnet50_scratch(input_shape: tuple[int, ...], num_classes: int, size: int | None = None) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = to_rgb_size(inputs, input_shape[-1], size)
    x = keras.layers.ZeroPadding2D(3)(x)
    x = keras.layers.Conv2D(64, 7, strides=2, name="stem_conv")(x)
    x = batch_norm(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2)(x)
    for s, (blocks, filters, stride) in enumerate(STAGES, start=2):
        x = _bottleneck(x, filters, stride, project=True, name=f"stage{s}_block1")  # convolutional block
        for b in range(2, blocks + 1):
            x = _bottleneck(x, filters, 1, project=False, name=f"stage{s}_block{b}")  # identity blocks
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet50")


def resolve_weights(weights: str | None) -> str | None:
    """Maps `None`, `'imagenet'` or a path to a local weights file path (never a download)."""
    if weights is None:
        return None
    if weights == "imagenet":
        candidates = [os.environ.get(WEIGHTS_ENV, ""), str(Path("~/.keras/models").expanduser() / WEIGHTS_FILE)]
        for candidate in candidates:
            if candidate and Path(candidate).is_file():
                return candidate
        raise WeightsNotFoundError(
            f"ImageNet weights for ResNet-50 cannot be downloaded here. Put {WEIGHTS_FILE} on this machine and "
            f"pass its path as the weights option (--weights PATH), set {WEIGHTS_ENV}=PATH, or copy it to "
            f"~/.keras/models/")
    if not Path(weights).is_file():
        raise WeightsNotFoundError(f"weights file {weights} does not exist; pass the path of a local "
                                   f"{WEIGHTS_FILE} (ImageNet, no top)")
    return weights


def resnet50_applications(input_shape: tuple[int, ...], num_classes: int, dropout: float, size: int | None = None,
                          weights: str | None = None) -> keras.Model:
    weights_path = resolve_weights(weights)
    inputs = keras.Input(shape=input_shape)
    x = to_rgb_size(inputs, input_shape[-1], size)
    base = keras.applications.ResNet50(include_top=False, weights=weights_path, input_shape=tuple(x.shape[1:]),
                                       pooling="avg")
    x = base(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet50_applications")
