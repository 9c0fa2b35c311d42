"""Model builders by name: each is `build(hp) -> keras.Model` against KerasTuner's HyperParameters API.

`get_builder(name, input_shape, num_classes)` binds a builder to a dataset's shape. The `default=` of
every hyperparameter is the published configuration, so `builder(keras_tuner.HyperParameters())` builds it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpsearch.errors import UnknownNameError
from hpsearch.models.training_params import TRAINING_PARAMS, TrainingConfig, training_config

if TYPE_CHECKING:
    import keras
    import keras_tuner

BuilderType = Callable[["keras_tuner.HyperParameters"], "keras.Model"]


@dataclass(frozen=True)
class ModelInfo:
    """A built-in builder; its module (and Keras with it) is imported only when a model is built."""

    name: str
    description: str
    module: str  # hpsearch.models.<module>.build
    options: tuple[str, ...] = ()

    @property
    def build(self) -> Callable[..., keras.Model]:
        return importlib.import_module(f"hpsearch.models.{self.module}").build


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("resnet4", "ResNet-4: 3 conv + 1 dense, two identity skips (10,320 params on MNIST)",
                  "resnet4"),
        ModelInfo("resnet-blocks", "ResNet of 1-3 residual blocks (3 x Conv-BN-ReLU + projection skip), GAP",
                  "resnet_blocks"),
        ModelInfo("cnn", "CNN with BatchNorm, MaxPool, Dropout 0.25/0.5 (published best 128/192/256, Adam)",
                  "cnn"),
        ModelInfo("resnet50", "ResNet-50 (3-4-6-3), from scratch or keras.applications + dropout",
                  "resnet50", ("weights",)),
    )
}


def model_names() -> list[str]:
    return list(MODELS)


def catalog() -> dict[str, str]:
    """Every model `--model` takes by name, with its description: the built-ins, then the builders installed
    packages register in the `hpsearch.models` entry-point group."""
    from hpsearch.models.references import describe, entry_point_builders

    names = {name: info.description for name, info in MODELS.items()}
    for name in entry_point_builders():
        names.setdefault(name, describe(name))
    return names


def describe_model(name: str) -> str:
    from hpsearch.models.references import describe

    return MODELS[name].description if name in MODELS else describe(name)


def get_builder(name: str, input_shape: tuple[int, ...] = (28, 28, 1), num_classes: int = 10,
                **options: Any) -> BuilderType:
    """Returns the named builder bound to an input shape and class count.

    Raises:
        UnknownNameError: no builder has that name.
    """
    if name not in MODELS:  # the user's own: package.module:function, file.py:function or an entry point
        from hpsearch.models.references import bind, check_name, load_object

        check_name(name, model_names())
        return bind(load_object(name), name, input_shape, num_classes, **options)
    info = MODELS[name]
    unknown = set(options) - set(info.options)
    if unknown:
        raise UnknownNameError("option of model " + name, sorted(unknown)[0], list(info.options) or ["(none)"])
    return functools.partial(info.build, input_shape=tuple(input_shape), num_classes=num_classes, **options)




def search_space(name: str, input_shape: tuple[int, ...] = (28, 28, 1), num_classes: int = 10,
                 **options: Any) -> list[dict[str, Any]]:
    """The builder's hyperparameters as plain dicts (name, type, range or values, default, condition)."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    get_builder(name, input_shape, num_classes, **options)(hp)
    return [describe_hyperparameter(p) for p in hp.space]


def describe_hyperparameter(p: keras_tuner.engine.hyperparameters.HyperParameter) -> dict[str, Any]:
    config = p.get_config()
    kind = type(p).__name__
    entry: dict[str, Any] = {"name": p.name, "type": kind, "default": p.default}
    if kind in ("Int", "Float"):
        entry.update(min=config["min_value"], max=config["max_value"], step=config.get("step"),
                     sampling=config.get("sampling") or "linear")
    elif kind == "Choice":
        entry["values"] = list(config["values"])
    elif kind == "Fixed":
        entry["value"] = config["value"]
    if p.conditions:
        entry["condition"] = " and ".join(f"{c.name} in {list(c.values)}" for c in p.conditions)
    return entry


def format_range(entry: dict[str, Any]) -> str:
    if entry["type"] in ("Int", "Float"):
        text = f"{entry['min']}..{entry['max']}"
        if entry.get("step"):
            text += f" step {entry['step']}"
        if entry.get("sampling") not in (None, "linear"):
            text += f" ({entry['sampling']})"
        return text
    if entry["type"] == "Choice":
        return "{" + ", ".join(map(str, entry["values"])) + "}"
    if entry["type"] == "Boolean":
        return "{False, True}"
    return str(entry.get("value", ""))


__all__ = ["MODELS", "ModelInfo", "BuilderType", "TRAINING_PARAMS", "TrainingConfig", "describe_hyperparameter",
           "catalog", "describe_model", "format_range", "get_builder", "model_names", "search_space", "training_config"]
