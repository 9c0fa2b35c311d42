"""Cost-aware sampling: on a time budget, prefer the configuration that costs less among those equally promising.

In the published CNN space one epoch costs 4 s for 32 / 32 filters and 83 s for 256 / 256 on 2 cores, while at a
few epochs the small configurations score about as well as the large ones (BENCHMARKS.md): a search that draws
blindly spends most of a short budget on a few large models. A configuration's cost is known before it trains:
the builder builds its model (about 50 ms for the CNN), and the model's multiply-accumulates per image plus its
activations (weighed: element-wise layers are bound by memory), times its epochs, rank it. Two places use it:

- the random start-up trials draw `startup_candidates` configurations and train the cheapest, so the start-up
  still spans the space (every value can be drawn) but spends fewer minutes on it;
- after the start-up, TPE picks the candidate of most expected improvement per unit of cost ("EI per second",
  Snoek et al., 2012) among its `cost_candidates` best candidates, TPE's expected improvement being bounded (1 /
  gamma): a configuration somewhat likelier to be good but 10 times as dear loses to the cheaper one.

Only for a study with a time budget (`--timeout`) by default: with a budget of trials a cheaper trial buys
nothing. `--cost-aware` / `--no-cost-aware` decide otherwise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from optuna.samplers import TPESampler
from optuna.trial import TrialState

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator

    from hpsearch.search.adapter import BuilderLike

logger = logging.getLogger("hpsearch")

STARTUP_CANDIDATES = 3  # the cheapest of 3 random draws: a quarter of the space's mean cost, every value reachable
COST_CANDIDATES = 24  # all of TPE's candidates (its default 24): about 1 s of model building for the CNN
COST_WEIGHT = 0.5  # the square root of cost: a saturated candidate (EI 1 / gamma, about 10x) may cost up to 100x more
# An output number costs as much time as this many multiply-accumulates: element-wise work is bound by memory, not
# arithmetic. Fitted on one 10-minute CNN search (18 trials, 2 cores): with MACs alone a 224 / 32-filter model
# ranked cheaper than a 32 / 224 one and trained 2.2x slower (20 s against 9 s an epoch); with this weight the
# predicted ratios of epoch times to the smallest model's were within 30% of the measured ones.
ACTIVATION_WEIGHT = 100


def model_macs(model: keras.Model) -> int | None:
    """Multiply-accumulates of one forward pass of one example: each layer's trainable weights times the positions
    they slide over (a convolution's output height x width, 1 for a dense layer). None when the layers' output
    shapes are unknown (a subclassed model not called yet)."""
    sizes = _layer_sizes(model)
    if sizes is None:
        return None
    return sum(weights * positions for weights, positions, _ in sizes) or None


def model_activations(model: keras.Model) -> int | None:
    """Numbers every layer outputs for one example (a 26 x 26 x 128 convolution: 86,528), the work of the
    element-wise layers (batch normalization, activations, pooling, dropout) and of every layer's gradient."""
    sizes = _layer_sizes(model)
    if sizes is None:
        return None
    return sum(outputs for _, _, outputs in sizes) or None


def model_cost(model: keras.Model) -> float | None:
    """What one image costs to train, in multiply-accumulates: MACs + ACTIVATION_WEIGHT x activations."""
    macs, activations = model_macs(model), model_activations(model)
    return None if macs is None or activations is None else float(macs + ACTIVATION_WEIGHT * activations)


def _leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers, nested models opened (their own layers counted once, not again as the model); a custom
    layer holding others counts as one (its output and all its weights)."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers += _leaf_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            layers.append(layer)
    return layers


def _layer_sizes(model: keras.Model) -> list[tuple[int, int, int]] | None:
    """(trainable weights, positions they slide over, output numbers) per layer, per example."""
    sizes = []
    try:
        for layer in _leaf_layers(model):
            outputs = layer.output
            shapes = [o.shape for o in (outputs if isinstance(outputs, list | tuple) else [outputs])]
            numbers = sum(int(np.prod([d or 1 for d in shape[1:]])) for shape in shapes)
            weights = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
            shape = shapes[0]
            positions = int(np.prod([d or 1 for d in shape[1:-1]])) if len(shape) > 2 else 1
            sizes.append((weights, positions, numbers))
    except (AttributeError, ValueError, TypeError):
        return None
    return sizes


class ModelCost:
    """A configuration's relative training cost: its model's cost per image (`model_cost`) times its epochs.

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
        cost = model_cost(model)
        return cost * max(1, int(epochs)) if cost else None


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

    def _sample(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self._finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                             for t in study._get_trials(deepcopy=False, use_cache=True))
        return super()._sample(study, trial, search_space)

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: _ParzenEstimator,
                                  mpe_above: _ParzenEstimator) -> np.ndarray:
        ratios = super()._compute_acquisition_func(samples, mpe_below, mpe_above)  # log l(x) / g(x)
        space: Mapping[str, BaseDistribution] | None = getattr(mpe_below, "_search_space", None)
        if self.cost is None or not space or not samples or len(ratios) < 2:
            return ratios
        order = np.argsort(-ratios)[:max(1, self.cost_candidates)]
        costs = []
        for index in order:
            params = {name: space[name].to_external_repr(samples[name][index]) for name in space if name in samples}
            costs.append(self.cost(params))
        if any(c is None or c <= 0 for c in costs):
            return ratios  # a cost unknown: no comparison is fair
        # TPE's expected improvement is proportional to 1 / (gamma + (1 - gamma) g(x) / l(x)) (Bergstra et al.,
        # 2011): it grows with l / g but never past 1 / gamma, so a candidate far likelier among the good trials
        # is not worth any price. Improvement per unit of cost: log EI - weight x log(relative cost).
        n = max(1, getattr(self, "_finished", 0))
        gamma = min(0.5, max(1, self._gamma(n)) / n) if self._gamma is not None else 0.1
        log_ei = -np.log(gamma + (1 - gamma) * np.exp(-np.clip(ratios[order], -50, 50)))
        log_costs = np.log(np.asarray(costs, dtype=float))
        weighed = np.full_like(ratios, -np.inf, dtype=float)
        weighed[order] = log_ei - self.cost_weight * (log_costs - log_costs.mean())
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
