"""Checks a study spec against its builder and data before the study exists, so bad input stops at the door.

Without them a typo in `--set` or the metric is found by every trial in turn: each fails (or trains fully, then
fails), failed trials do not use the budget, and the study never ends. Here each is one message and exit 2:

- every fixed value (`--set`, `fixed:`) names a hyperparameter of the builder and lies in its space (type, range,
  step, choices), cast where that loses nothing (5 -> 5.0);
- training values (epochs, batch size, patience, ...) are in their own ranges;
- the data loads with the requested sizes;
- the model builds with the fixed values and one batch trains and validates, and the objective metric is among
  the logs that produces (a dry run of a few seconds).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hpsearch.errors import UsageError
from hpsearch.models.training_params import LR_PEAK_MAX, SHIFT_MAX

if TYPE_CHECKING:
    from keras_tuner.engine.hyperparameters import HyperParameter

    from hpsearch.datasets import Dataset
    from hpsearch.search.spec import StudySpec

DRY_RUN_IMAGES = 16

# Training values are not searched from the builder's ranges: any positive value is a valid choice.
_TRAINING_RULES: dict[str, tuple[type, float, float]] = {
    "epochs": (int, 1, 10_000), "batch_size": (int, 1, 1_000_000), "patience": (int, 0, 10_000),
    "lr_patience": (int, 0, 10_000), "lr_factor": (float, 1e-6, 0.999999), "lr_peak": (float, 1.0, LR_PEAK_MAX),
    "shift": (float, 0.0, SHIFT_MAX),
}


@dataclass
class Checked:
    """What the checks produced: the spec with cast fixed values, the data and the builder's defaults."""

    spec: StudySpec
    data: Dataset
    defaults: dict[str, Any]  # the builder's published configuration, fixed values left out
    space: dict[str, HyperParameter]  # every hyperparameter the builder declares (fixed ones included)


def check_spec(spec: StudySpec, dry_run: bool = True, data: Dataset | None = None, builder: Any = None) -> Checked:
    """Validates `spec` against its builder and data; returns it with fixed values cast to their types.

    `data` and `builder` stand in for the spec's dataset and model (the Python API's in-process search of arrays
    and a notebook's own function).

    Raises:
        UsageError: a fixed value that is unknown or outside the space, data that cannot give the requested
            split, a builder that fails on the fixed values, or a metric the model does not log.
    """

    from hpsearch.datasets import load_dataset
    from hpsearch.models import get_builder
    from hpsearch.search.spec import check_direction

    check_direction(spec)
    if data is None:
        data = load_dataset(spec.dataset, spec.data_dir, spec.train_size, spec.validation_split, spec.seed)
    if builder is None:
        builder = get_builder(spec.model, data.input_shape, data.num_classes, **spec.model_options)
    fixed, space, published = check_fixed(builder, spec.fixed, spec.model, spec.search_training)
    spec = replace(spec, fixed={name: fixed[name] for name in spec.fixed})
    for name in ("epochs", "batch_size"):
        check_value(name, getattr(spec, name), space)
    check_shift(float(spec.fixed.get("shift", 0.0)), "shift" in spec.search_training, data.x_train)
    _hint_shift(spec, data.x_train)
    defaults = {k: v for k, v in published.items() if k not in spec.fixed_values()}
    if dry_run:
        _dry_run(spec, builder, data)
    return Checked(spec, data, defaults, space)


def check_shift(shift: float, searched: bool, x: object) -> None:
    """A shift moves images by whole pixels: data that are not images (rows of numbers) cannot be shifted, and a
    fixed shift must move the images by a pixel at least.

    Raises:
        UsageError: shift fixed above 0 or searched, on inputs with fewer than two spatial dimensions; or a fixed
            shift that comes to less than a pixel on these images.
    """
    shape = _image_shape(x)
    if (searched or shift > 0) and len(shape) < 3:
        raise UsageError(f"shift moves images by pixels, but this data's inputs are shaped {shape} (not images "
                         "of height x width); leave shift out (--set shift=0 and no shift in --search-training)")
    if shift > 0 and _pixels_moved(shape, shift) == 0:
        raise UsageError(f"shift {shift:g} moves these {shape[1]}x{shape[2]} images by less than a pixel; use at "
                         f"least {1 / min(shape[1:3]):.3g} (one pixel), or 0 for none")


def _image_shape(x: object) -> tuple[int, ...]:
    """The inputs' shape: (N, H, W[, C]) for images, fewer dimensions for rows of numbers."""
    return tuple(getattr(x, "shape", ()))


def _pixels_moved(shape: tuple[int, ...], shift: float) -> int:
    """How far a shift moves images of `shape` at most, in whole pixels (the shorter side's)."""
    return int(shift * min(shape[1:3]))


# From this many epochs a trial, shifted training images (shift 0.1) tested higher on MNIST; at 3 epochs they gained
# nothing (BENCHMARKS.md, "Shifted training images"): a study of such trials on images that do not shift hears of it.
SHIFT_HINT_EPOCHS = 15


def _hint_shift(spec: StudySpec, x: object) -> None:
    """Logged as a warning: the commands that check a spec (run, create, tune, the Python API) set up no logging of
    their own, and Python shows warnings and worse without it."""
    shape = _image_shape(x)
    epochs = spec.fixed_values().get("epochs")  # --set epochs=N wins over --epochs
    searched = {"shift", "epochs"} & set(spec.search_training)  # epochs searched: no one figure to speak of
    if (not isinstance(epochs, int) or epochs < SHIFT_HINT_EPOCHS or "shift" in spec.fixed or searched
            or len(shape) < 3 or _pixels_moved(shape, 0.1) == 0):
        return
    import logging

    logging.getLogger("hpsearch").warning(
        "trials of up to %d epochs train on the images unmoved; with trials of 15 epochs on MNIST, --set shift=0.1 "
        "(every training image moved by up to a tenth of its size) found configurations testing higher (99.31%% "
        "and 99.23%% against 99.16%% and 98.78%%; BENCHMARKS.md, \"Shifted training images\")", epochs)


def check_fixed(builder: Any, values: dict[str, Any], model: str, searched: Collection[str] = ()
                ) -> tuple[dict[str, Any], dict[str, HyperParameter], dict[str, Any]]:
    """Checks values to fix against the builder's space (conditional hyperparameters included), and the builder's
    own names against the training hyperparameters (`check_training_names`; `searched`: those a study searches).

    Returns:
        The values cast to their hyperparameters' types, the space by name, and the builder's defaults.

    Raises:
        UsageError: a name the builder does not declare, a value outside its hyperparameter's space, or a
            builder's own hyperparameter named like a training one.
    """
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    builder(hp)
    published = dict(hp.values)
    space = {p.name: p for p in hp.space}
    check_training_names(space, model, searched)
    fixed = {name: check_value(name, value, space) for name, value in values.items() if name in space
             or name in _TRAINING_RULES}
    unknown = [name for name in values if name not in fixed]
    if unknown:  # a conditional hyperparameter may only appear once its parent takes the fixed value
        hp = _values_hp(fixed)
        builder(hp)
        space.update({p.name: p for p in hp.space if p.name not in space})
        check_training_names(space, model, searched)  # one declared only under these values
        for name in unknown:
            if name not in space:
                valid = sorted(set(space) | set(_TRAINING_RULES))
                raise UsageError(f"--set {name}: {model} has no hyperparameter {name!r}; its hyperparameters "
                                 f"are: {', '.join(valid)} (see `hpsearch models {model}`)")
            fixed[name] = check_value(name, values[name], space)
    return {name: fixed[name] for name in values}, space, published


# What each training hyperparameter does, for the message that refuses a builder's own of that name.
_TRAINING_MEANING = {
    "batch_size": "the images a training step takes", "epochs": "the epochs a trial trains at most",
    "patience": "early stopping's patience", "lr_factor": "ReduceLROnPlateau's factor",
    "lr_patience": "ReduceLROnPlateau's patience", "lr_peak": "the learning-rate cycle's peak",
    "shift": "how far training images are moved",
}


def _declared(p: HyperParameter) -> dict[str, Any]:
    return {key: value for key, value in p.get_config().items() if key != "conditions"}


@functools.cache
def _training_declarations() -> dict[str, HyperParameter]:
    """hpsearch's own declaration of each training hyperparameter, built once a process (the KerasTuner engine
    checks every declaration of a training name as a trial's builder makes it)."""
    import keras_tuner

    from hpsearch.models import training_config

    reference = keras_tuner.HyperParameters()
    training_config(reference)
    return {p.name: p for p in reference.space}


def check_training_names(space: dict[str, HyperParameter], model: str, searched: Collection[str] = ()) -> None:
    """A builder's own hyperparameter named like a training one (`shift`, `patience`, `epochs`...) would also be
    the training's value, and a study would hold it at the training value instead of searching it: refused, unless
    it is declared as the training hyperparameter is (the built-in builders declare them so, in a conditional scope
    or not), or the study searches that name (`searched`: over the builder's declaration, as asked).

    Raises:
        UsageError: such a hyperparameter, with its declaration and what to do.
    """
    from hpsearch.models import TRAINING_PARAMS, describe_hyperparameter, format_range

    ours = _training_declarations()
    for name in TRAINING_PARAMS:
        if name not in space or _declared(space[name]) == _declared(ours[name]):
            continue
        theirs = describe_hyperparameter(space[name])
        if name in searched:  # searched over the builder's declaration: its values must be training values
            ends = theirs.get("values") or [theirs.get("min"), theirs.get("max"), theirs.get("value")]
            bad = [v for v in ends if v is not None and _training_value(name, v) is None]
            if bad:
                raise UsageError(f"{model} declares {name!r} as {theirs['type']} {format_range(theirs)}, and the "
                                 f"study searches it as its training {name}, which must be {_training_rule(name)} "
                                 f"(not {bad[0]!r}); narrow the builder's declaration, or leave {name} out of "
                                 "--search-training")
            continue
        mine = format_range(describe_hyperparameter(ours[name]))
        raise UsageError(f"{model} declares its own hyperparameter {name!r} ({theirs['type']} "
                         f"{format_range(theirs)}, default {theirs['default']}), but hpsearch keeps that name for "
                         f"training ({_TRAINING_MEANING.get(name, 'a training value')}): its value would also be the "
                         f"training's, and a study would hold it at the training value instead of searching it. "
                         f"Rename it in the builder (e.g. 'model_{name}'). hpsearch's own {name}: --set {name}=VALUE, "
                         f"or in a study --search-training {name} (over {mine}, or over the builder's declaration "
                         "when it declares one)")


def _values_hp(values: dict[str, Any]) -> Any:
    from hpsearch.search.adapter import values_hyperparameters

    return values_hyperparameters(values)


def check_value(name: str, value: Any, space: dict[str, HyperParameter]) -> Any:
    """`value` for hyperparameter `name`, cast to its type when nothing is lost.

    Raises:
        UsageError: the value has the wrong type or lies outside the hyperparameter's range or choices.
    """
    if name in _TRAINING_RULES:
        cast = _training_value(name, value)
        if cast is None:
            raise UsageError(f"--set {name}={value!r}: {name} must be {_training_rule(name)}")
        return cast
    p = space[name]
    kind = type(p).__name__
    if kind == "Int":
        cast = _as_int(value)
        step = p.step or 1
        if cast is None or not p.min_value <= cast <= p.max_value or (
                p.sampling != "log" and (cast - p.min_value) % step):
            grid = f" in steps of {step}" if step > 1 and p.sampling != "log" else ""
            raise UsageError(f"--set {name}={value!r}: {name} must be an integer from {p.min_value} to "
                             f"{p.max_value}{grid} (see `hpsearch models`)")
        return cast
    if kind == "Float":
        cast = _as_float(value)
        if cast is None or not p.min_value <= cast <= p.max_value or (
                p.step and p.sampling != "log" and not _on_grid(cast, p.min_value, p.step)):
            grid = f" in steps of {p.step:g}" if p.step and p.sampling != "log" else ""
            raise UsageError(f"--set {name}={value!r}: {name} must be a number from {p.min_value:g} to "
                             f"{p.max_value:g}{grid} (see `hpsearch models`)")
        return cast
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise UsageError(f"--set {name}={value!r}: {name} must be true or false")
        return value
    choices = [p.value] if kind == "Fixed" else list(p.values)
    for choice in choices:
        if type(choice) is type(value) and choice == value:
            return choice
    for choice in choices:  # 5 for 5.0, 64.0 for 64: the same number in another type
        if not isinstance(value, bool) and not isinstance(choice, bool) and isinstance(value, (int, float)) \
                and isinstance(choice, (int, float)) and float(choice) == float(value):
            return choice
    raise UsageError(f"--set {name}={value!r}: {name} must be one of {', '.join(map(repr, choices))}")


def _training_value(name: str, value: Any) -> int | float | None:
    """`value` cast to training value `name`'s type, or None when it is not one or lies outside its range."""
    kind, low, high = _TRAINING_RULES[name]
    cast = _as_int(value) if kind is int else _as_float(value)
    return cast if cast is not None and low <= cast <= high else None


def _training_rule(name: str) -> str:
    kind, low, high = _TRAINING_RULES[name]
    return f"{'an integer' if kind is int else 'a number'} from {low:g} to {high:g}"


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _on_grid(value: float, low: float, step: float) -> bool:
    steps = (value - low) / step
    return abs(steps - round(steps)) < 1e-6


def _dry_run(spec: StudySpec, builder: Any, data: Dataset) -> None:
    """Builds the model with the fixed values and trains one small batch with validation, as a trial would."""
    import keras

    hp = _values_hp(spec.fixed_values())
    keras.backend.clear_session()
    try:
        model = builder(hp)
    except Exception as exc:
        raise UsageError(f"the {spec.model} builder fails with the fixed values {spec.fixed}: "
                         f"{type(exc).__name__}: {exc}") from None
    optimizer = getattr(model, "optimizer", None)
    # Asked for (held above 1 or searched): a builder whose optimizer has a schedule of its own is refused. The
    # study's default peak is not asked for: such a builder then trains on its own schedule (OneCycle skips).
    asked = "lr_peak" in spec.search_training or float(spec.fixed.get("lr_peak", 1.0)) > 1
    if asked and optimizer is not None:
        from hpsearch.search.training import SCHEDULED_RATE, has_plain_rate

        if not has_plain_rate(optimizer):
            raise UsageError(SCHEDULED_RATE)
    import numpy as np

    n = min(DRY_RUN_IMAGES, len(data.x_train), len(data.x_val))
    try:
        history = model.fit(np.asarray(data.x_train[:n]), data.y_train[:n], batch_size=n, epochs=1, verbose=0,
                            validation_data=(np.asarray(data.x_val[:n]), data.y_val[:n]))
    except Exception as exc:
        raise UsageError(f"{spec.model} cannot train on {spec.dataset} (input {data.input_shape}, "
                         f"{data.num_classes} classes): {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        keras.backend.clear_session()
    logged = sorted(history.history)
    if spec.metric not in logged:
        raise UsageError(f"metric {spec.metric!r} is not among what {spec.model} logs during training "
                         f"({', '.join(logged)}); choose one of those with --metric")
    from hpsearch.search.spec import MODEL_OBJECTIVES

    for name in spec.objective_names()[1:]:
        if name not in logged and name not in MODEL_OBJECTIVES:
            raise UsageError(f"objective {name!r} is neither logged by {spec.model} ({', '.join(logged)}) nor one "
                             f"of {', '.join(MODEL_OBJECTIVES)}; choose one of those with --objective")
