"""The same `build(hp)` builder under an Optuna trial, under KerasTuner, and with stored values.

`OptunaHyperParameters` is a KerasTuner `HyperParameters` whose new values come from an Optuna trial:
`hp.Int` -> `suggest_int` (step, log), `hp.Float` -> `suggest_float` (step, log), `hp.Choice` ->
`suggest_categorical`, `hp.Boolean` -> `suggest_categorical([False, True])`, `hp.Fixed` -> the value. Conditions
(`conditional_scope`, `parent_name`/`parent_values`) are KerasTuner's own: an inactive hyperparameter is
never suggested, so Optuna only sees the parameters that shaped the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import keras_tuner
from keras_tuner.engine import hyperparameters as hp_module

from hpsearch.errors import UsageError

if TYPE_CHECKING:
    import keras
    import optuna

BuilderLike = Callable[[keras_tuner.HyperParameters], "keras.Model"] | keras_tuner.HyperModel


def as_build_function(builder: BuilderLike) -> Callable[[keras_tuner.HyperParameters], keras.Model]:
    """Accepts a `build(hp)` function or a KerasTuner `HyperModel` (how users bring existing code)."""
    if isinstance(builder, keras_tuner.HyperModel):
        return builder.build
    if callable(builder):
        return builder
    raise UsageError(f"expected a callable with signature `build(hp)` returning a Keras model, or an instance of "
                     f"keras_tuner.HyperModel; got {type(builder).__name__}")


def check_hyperparameter(p: hp_module.HyperParameter) -> None:
    """Rejects a space Optuna cannot sample: low > high, an empty choice."""
    kind = type(p).__name__
    if kind in ("Int", "Float") and p.min_value > p.max_value:
        raise UsageError(f"hyperparameter {p.name!r}: min_value {p.min_value} is greater than max_value "
                         f"{p.max_value}; swap them")
    if kind == "Choice" and not list(p.values):
        raise UsageError(f"hyperparameter {p.name!r}: Choice needs at least one value")


class OptunaHyperParameters(keras_tuner.HyperParameters):
    """KerasTuner hyperparameters whose values an Optuna trial suggests.

    Args:
        trial: the Optuna trial (or a `FixedTrial` to replay stored params).
        fixed: values held fixed; recorded as trial user attributes, not sampled.
    """

    def __init__(self, trial: optuna.trial.BaseTrial, fixed: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.trial = trial
        self.fixed = dict(fixed or {})

    def _register(self, hyperparameter: hp_module.HyperParameter, overwrite: bool = False) -> Any:
        # KerasTuner's one hook where every hp.Int/Choice/... call arrives (no public counterpart): the value is
        # suggested by Optuna before KerasTuner records it. Conditions through the public `is_active`.
        p = hyperparameter
        if self.is_active(p) and p.name not in self.values:
            check_hyperparameter(p)
            self.values[p.name] = self._suggest(p)
        return super()._register(p, overwrite=False)

    def _suggest(self, p: hp_module.HyperParameter) -> Any:
        if p.name in self.fixed:
            return self.fixed[p.name]
        kind = type(p).__name__
        trial = self.trial
        if kind == "Fixed":
            return p.value
        if kind in ("Int", "Float") and p.sampling == "reverse_log":
            raise UsageError(f"hyperparameter {p.name!r}: sampling='reverse_log' has no Optuna counterpart; use "
                             "'log' (dense near min_value) or 'linear'")
        if kind in ("Int", "Float") and p.sampling == "log" and p.step not in (None, 1):
            # KerasTuner multiplies by the step under log sampling (32, 64, 128, ... for step 2); Optuna's log and
            # step are exclusive, so the same values are offered as choices.
            return trial.suggest_categorical(p.name, geometric_values(p))
        if kind == "Int":
            if p.sampling == "log":
                return trial.suggest_int(p.name, p.min_value, p.max_value, log=True)
            return trial.suggest_int(p.name, p.min_value, p.max_value, step=p.step or 1)
        if kind == "Float":
            if p.sampling == "log":
                return trial.suggest_float(p.name, p.min_value, p.max_value, log=True)
            return trial.suggest_float(p.name, p.min_value, p.max_value, step=p.step)
        if kind == "Boolean":
            return trial.suggest_categorical(p.name, [False, True])
        if kind == "Choice":
            return trial.suggest_categorical(p.name, list(p.values))
        raise UsageError(f"hyperparameter {p.name!r} of type {kind} is not supported; use Int, Float, Choice, "
                         "Boolean or Fixed")


def geometric_values(p: hp_module.HyperParameter) -> list[Any]:
    """min_value, min_value * step, ... up to max_value: KerasTuner's values of a log-sampled `Int`/`Float` with a
    step."""
    if p.step <= 1 or p.min_value <= 0:
        raise UsageError(f"hyperparameter {p.name!r}: log sampling with a step needs step > 1 and min_value > 0 "
                         f"(got step {p.step}, min_value {p.min_value})")
    values, value = [], p.min_value
    while value <= p.max_value * (1 + 1e-9):
        values.append(int(round(value)) if type(p).__name__ == "Int" else float(f"{value:.12g}"))
        value *= p.step
    return values


def values_hyperparameters(values: Mapping[str, Any]) -> keras_tuner.HyperParameters:
    """HyperParameters that answer every `hp.X(name, ...)` with `values[name]` (default when absent):
    rebuilds a stored trial's model without a live trial."""
    hp = keras_tuner.HyperParameters()
    hp.values.update(values)
    return hp


def build_from_values(builder: BuilderLike, values: Mapping[str, Any]) -> tuple[keras.Model, dict[str, Any]]:
    """Builds the model of stored params (plus fixed values); returns it with every value used."""
    hp = values_hyperparameters(values)
    model = as_build_function(builder)(hp)
    return model, dict(hp.values)


def optuna_distributions(builder: BuilderLike, fixed: Mapping[str, Any] | None = None, with_training: bool = False
                         ) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distributions of every hyperparameter the builder declares (active at the defaults or not), as
    a trial suggests them; `with_training` adds the training hyperparameters (batch size, epochs...)."""
    return distributions_of(declared_space(builder, with_training), fixed)


def declared_space(builder: BuilderLike, with_training: bool = False) -> keras_tuner.HyperParameters:
    """The hyperparameters the builder declares at its defaults (with their conditions); `with_training` adds the
    training hyperparameters."""
    hp = keras_tuner.HyperParameters()
    as_build_function(builder)(hp)
    if with_training:
        from hpsearch.models import training_config

        training_config(hp)
    return hp


def distributions_of(hp: keras_tuner.HyperParameters, fixed: Mapping[str, Any] | None = None
                     ) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distribution of each declared hyperparameter that is neither fixed nor `hp.Fixed`."""
    fixed = fixed or {}
    return {p.name: _distribution(p) for p in hp.space if p.name not in fixed and type(p).__name__ != "Fixed"}


def _distribution(p: hp_module.HyperParameter) -> optuna.distributions.BaseDistribution:
    import optuna.distributions as d

    kind = type(p).__name__
    if kind in ("Int", "Float") and p.sampling == "log" and p.step not in (None, 1):
        return d.CategoricalDistribution(geometric_values(p))  # as OptunaHyperParameters suggests it
    if kind == "Int":
        if p.sampling == "log":
            return d.IntDistribution(p.min_value, p.max_value, log=True)
        return d.IntDistribution(p.min_value, p.max_value, step=p.step or 1)
    if kind == "Float":
        if p.sampling == "log":
            return d.FloatDistribution(p.min_value, p.max_value, log=True)
        return d.FloatDistribution(p.min_value, p.max_value, step=p.step)
    if kind == "Boolean":
        return d.CategoricalDistribution([False, True])
    return d.CategoricalDistribution(list(p.values))


def grid_space(builder: BuilderLike, fixed: Mapping[str, Any] | None = None) -> dict[str, list[Any]]:
    """Every value of each hyperparameter for the grid sampler; a float without a step keeps its default."""
    import numpy as np

    grid: dict[str, list[Any]] = {}
    hp = declared_space(builder)
    for name, dist in distributions_of(hp, fixed).items():
        if hasattr(dist, "choices"):
            grid[name] = list(dist.choices)
        elif getattr(dist, "step", None) and not dist.log:
            count = int(round((dist.high - dist.low) / dist.step)) + 1
            values = dist.low + dist.step * np.arange(count)
            grid[name] = [int(v) if isinstance(dist.low, int) else round(float(v), 10) for v in values]
        else:
            grid[name] = [next(p.default for p in hp.space if p.name == name)]
    return grid
