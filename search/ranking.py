"""Which result is better: the one comparison every part of hpsearch uses.

The direction always comes from the study (its spec's `direction`, or Optuna's first study direction), never from
a metric's name. In a study of several objectives, trials rank by the first objective (the metric); the others
form the Pareto front (`storage.queries.pareto_front`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna


def maximizes(direction: object) -> bool:
    """True for "maximize" (a spec) or Optuna's `StudyDirection.MAXIMIZE`; False for the minimizing ones."""
    name = getattr(direction, "name", direction)
    return str(name).lower() == "maximize"


def better(a: float, b: float, direction: object) -> bool:
    """True when `a` is strictly better than `b`."""
    return a > b if maximizes(direction) else a < b


def best_of(values: Iterable[float], direction: object) -> float:
    """The best of `values` (not empty)."""
    return max(values) if maximizes(direction) else min(values)


def sort_key(value: float, direction: object) -> float:
    """A key under which ascending order is best first."""
    return -value if maximizes(direction) else value


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The study's best completed trial by its first objective, one objective or several; ties: the lowest number.

    Raises:
        ValueError: no completed trial (as Optuna's `best_trial`).
    """
    from optuna.trial import TrialState

    if len(study.directions) == 1:
        return study.best_trial
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    if not done:
        raise ValueError("no completed trial")
    return min(done, key=lambda t: (sort_key(t.values[0], study.directions[0]), t.number))


ACCURACY_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")


def is_accuracy(metric: str) -> bool:
    """True for a metric that is a fraction of images classified right (Keras's names, with or without `val_`)."""
    return metric.lower().removeprefix("val_") in ACCURACY_NAMES


def standard_error(accuracy: float, images: int) -> float:
    """One standard error of an accuracy measured on `images` images (binomial): how far such a measure typically
    lies from the model's true accuracy (two models on the same images differ by more than chance only well beyond
    it; within it, the rule of thumb `hpsearch best` uses, they are not told apart)."""
    p = (min(max(float(accuracy), 0.0), 1.0) * images + 1.0) / (images + 2.0)  # never 0, even at 0 or 1
    return (p * (1.0 - p) / images) ** 0.5
