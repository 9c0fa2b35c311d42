"""Cost-aware sampling: on a time budget, prefer the configuration that costs less among those equally promising.

In the published CNN space one epoch costs 4 s for 32 / 32 filters and 83 s for 256 / 256 on 2 cores, while at a
few epochs the small configurations score about as well as the large ones (BENCHMARKS.md): a search that draws
blindly spends most of a short budget on a few large models. A configuration's cost is known before it trains:
the builder builds its model (about 50 ms for the CNN) and the model's multiply-accumulates per image, times its
epochs, rank it. Two places use it:

- the random start-up trials draw `startup_candidates` configurations and train the cheapest, so the start-up
  still spans the space (every value can be drawn) but spends fewer minutes on it;
- after the start-up, TPE's acquisition (log l(x) / g(x), "how much likelier among the good trials") loses
  `cost_weight` times the log of a candidate's relative cost, among its `cost_candidates` best candidates: a
  configuration twice as likely to be good but 10 times as dear loses to the cheaper one.

Only for a study with a time budget (`--timeout`) by default: with a budget of trials a cheaper trial buys
nothing. `--cost-aware` / `--no-cost-aware` decide otherwise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.samplers import TPESampler
from optuna.trial import TrialState

if TYPE_CHECKING:
    import keras
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator

    from hpsearch.search.adapter import BuilderLike

logger = logging.getLogger("hpsearch")

STARTUP_CANDIDATES = 3  # the cheapest of 3 random draws: a quarter of the space's mean cost, every value reachable
COST_CANDIDATES = 8  # TPE's best candidates (of its 24) whose cost is weighed: about 0.4 s of model building
COST_WEIGHT = 1.0


def model_macs(model: keras.Model) -> int | None:
    """Multiply-accumulates of one forward pass of one example: each layer's trainable weights times the positions
    they slide over (a convolution's output height x width, 1 for a dense layer). None when the layers' output
    shapes are unknown (a subclassed model not called yet)."""
    total = 0
    try:
        for layer in model._flatten_layers(include_self=False):  # Keras' walk into nested models
            weights = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
            if not weights:
                continue
            shape = layer.output.shape
            positions = int(np.prod([d or 1 for d in shape[1:-1]])) if len(shape) > 2 else 1
            total += weights * positions
    except (AttributeError, ValueError, TypeError):
        return None
    return total or None


class ModelCost:
    """A configuration's relative training cost: its model's multiply-accumulates per image times its epochs.

    Builds the model the configuration gives (the study's fixed values beside it) and caches the answer; None when
    the builder fails on it or the model's size cannot be read (the sampler then draws as if cost were equal)."""

    def __init__(self, builder: BuilderLike, fixed: Mapping[str, Any], cache_size: int = 2048) -> None:
        self.builder = builder
        self.fixed = dict(fixed)
        self.cache: dict[tuple[tuple[str, str], ...], float | None] = {}
        self.cache_size = cache_size

    def __call__(self, params: Mapping[str, Any]) -> float | None:
        values = {**params, **self.fixed}
        key = tuple(sorted((k, repr(v)) for k, v in values.items()))
        if key not in self.cache:
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            self.cache[key] = self._measure(values)
        return self.cache[key]

    def _measure(self, values: dict[str, Any]) -> float | None:
        from hpsearch.models import training_config
        from hpsearch.search.adapter import as_build_function, values_hyperparameters

        hp = values_hyperparameters(values)
        try:
            model = as_build_function(self.builder)(hp)
            epochs = training_config(hp).epochs
        except Exception as exc:  # noqa: BLE001 - the trial itself reports a builder's error; here cost is unknown
            logger.debug("cost of %s unknown: %s", values, exc)
            return None
        macs = model_macs(model)
        return float(macs) * max(1, int(epochs)) if macs else None


class CostAwareTPESampler(TPESampler):
    """Optuna's TPE sampler that weighs each candidate's cost once `attach` gave it a cost function and the space.

    Without them (a process that only creates or reads the study) it samples exactly as TPESampler.
    """

    def __init__(self, *, startup_candidates: int = STARTUP_CANDIDATES, cost_candidates: int = COST_CANDIDATES,
                 cost_weight: float = COST_WEIGHT, **options: Any) -> None:
        super().__init__(**options)
        self.startup_candidates = startup_candidates
        self.cost_candidates = cost_candidates
        self.cost_weight = cost_weight
        self.cost: Callable[[Mapping[str, Any]], float | None] | None = None
        self.space: dict[str, BaseDistribution] = {}
        self._startup_trial: int | None = None

    def attach(self, cost: Callable[[Mapping[str, Any]], float | None],
               space: Mapping[str, BaseDistribution]) -> None:
        self.cost = cost
        self.space = {name: dist for name, dist in space.items() if not dist.single()}

    def _in_startup(self, study: optuna.Study) -> bool:
        finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED),
                                     use_cache=True)
        return len(finished) < self._n_startup_trials

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        # A start-up draw picks whole configurations, so it needs the whole space, known from the builder even for
        # the first trial; the decision is kept for sample_relative (another worker may end a trial in between).
        self._startup_trial = None
        if self.cost is not None and self.space and not study._is_multi_objective() and self._in_startup(study):
            self._startup_trial = trial.number
            return dict(self.space)
        return super().infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self._startup_trial is not None and self._startup_trial == trial.number:
            return self._cheapest_random(study, trial, search_space)
        return super().sample_relative(study, trial, search_space)

    def _cheapest_random(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                         search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        assert self.cost is not None
        best: dict[str, Any] = {}
        best_cost = math.inf
        for _ in range(max(1, self.startup_candidates)):
            candidate = {name: self._random_sampler.sample_independent(study, trial, name, dist)
                         for name, dist in search_space.items()}
            cost = self.cost(candidate)
            if not best or (cost is not None and cost < best_cost):
                best, best_cost = candidate, (cost if cost is not None else math.inf)
        return best

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: _ParzenEstimator,
                                  mpe_above: _ParzenEstimator) -> np.ndarray:
        values = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        space: Mapping[str, BaseDistribution] | None = getattr(mpe_below, "_search_space", None)
        if self.cost is None or not space or not samples or len(values) < 2:
            return values
        order = np.argsort(-values)[:max(1, self.cost_candidates)]
        costs = []
        for index in order:
            params = {name: space[name].to_external_repr(samples[name][index]) for name in space if name in samples}
            costs.append(self.cost(params))
        if any(c is None or c <= 0 for c in costs):
            return values  # a cost unknown: no comparison is fair
        log_costs = np.log(np.asarray(costs, dtype=float))
        weighed = np.full_like(values, -np.inf, dtype=float)
        weighed[order] = values[order] - self.cost_weight * (log_costs - log_costs.mean())
        return weighed


def attach_cost(sampler: optuna.samplers.BaseSampler, builder: BuilderLike, fixed: Mapping[str, Any]) -> bool:
    """Gives a cost-aware sampler its cost function and the builder's space; True when the sampler weighs cost."""
    if not isinstance(sampler, CostAwareTPESampler):
        return False
    from hpsearch.search.adapter import optuna_distributions

    try:
        space = optuna_distributions(builder, fixed, with_training=True)
    except Exception as exc:  # noqa: BLE001 - the first trial reports a builder that fails; draws stay blind
        logger.warning("cost-aware sampling off: the builder's space cannot be read (%s)", exc)
        return False
    sampler.attach(ModelCost(builder, fixed), space)
    return True
