"""Cost-aware sampling: on a time budget, prefer the configuration that costs less among those equally promising.

In the published CNN space one epoch costs 4 s for 32 / 32 filters and 83 s for 256 / 256 on 2 cores, while at a
few epochs the small configurations often score nearly as well as the large ones (BENCHMARKS.md): a search that
draws blindly spends most of a short budget on a few large models. A configuration's cost is known before it trains:
the builder builds its model (about 50 ms for the CNN), and the model's multiply-accumulates per image plus its
activations (weighed: element-wise layers are bound by memory), times its epochs, rank it. Two places use it:

- the random start-up trials draw `startup_candidates` configurations and train the cheapest, so the start-up
  still spans the space (every value can be drawn) but spends fewer minutes on it;
- after the start-up, TPE picks, among its candidates (the `cost_candidates` likeliest: all 24 by default), the one
  of most expected improvement per `cost_weight` power of its relative cost (after "EI per second", Snoek et al.,
  2012; the square root by default), TPE's expected improvement being bounded (1 / gamma): a configuration somewhat
  likelier to be good but 10 times as dear loses to the cheaper one.

The costs measured are kept on the study (`COST_CACHE_ATTR`), by the values of the hyperparameters that change the
model: a worker's fresh process (every `--recycle` trials), another worker or a resumed study looks them up rather
than building those models again. So is the survey of which hyperparameters change the cost and of the space's
lowest cost (its `floor`; `COST_SURVEY_ATTR`): a worker's start builds the defaults' model once to check the
builder still gives the cost the survey was made with, instead of two models per hyperparameter. And TPE's
candidates are weighed in falling expected improvement: once the next one could not win even at the `floor`'s
cost, neither it nor any after it is built.

With the sampler option `time_aware=true` the cost's weight cools on a time budget (after "cost cooling", Lee et
al., 2020): it falls in proportion to the share of the budget left, from `cost_weight` at the start to 0 at the
deadline, and once the study's trials have measured the seconds a unit of cost takes, a candidate predicted to end
after the deadline is not drawn while one that fits is (the deadline stops new trials, not running ones: a trial
that overran it would make the study overrun its `--timeout`). Off by default: on MNIST at 10 minutes it completed
fewer trials and its median best was lower (BENCHMARKS.md, "Cost-aware sampling").

Only for a study with a time budget (`--timeout`) by default: with a budget of trials a cheaper trial buys
nothing. `--cost-aware` / `--no-cost-aware` decide otherwise.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
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
COST_CANDIDATES = 24  # all of TPE's candidates (its default 24): about 1 s of model building for the CNN
COST_WEIGHT = 0.5  # the square root of cost: a saturated candidate (EI 1 / gamma, about 10x) may cost up to 100x more
# An output number costs as much time as this many multiply-accumulates: element-wise work is bound by memory, not
# arithmetic. Fitted on one 10-minute CNN search (18 trials, 2 cores): with MACs alone a 192 / 32-filter model
# ranked cheaper than a 32 / 224 one and trained 2x slower (18 s against 9 s an epoch); with this weight the
# predicted ratios of epoch times to the smallest model's were within 30% of the measured ones.
ACTIVATION_WEIGHT = 100
# Raised whenever counting a model's cost, the survey or the floor changes: the costs and surveys a study keeps from
# an earlier version are then measured anew.
COST_VERSION = 2
MAX_BUILD_SECONDS = 0.5  # 24 candidates: 12 s a trial at most, with the cache's hits far less
RATE_TRIALS = 10  # the seconds a unit of cost takes, measured over the study's last 10 finished trials
# The study's cache of costs (see the module's docstring): a system attribute, out of the dashboard's user attributes.
COST_CACHE_ATTR = "hpsearch_model_costs"
# The survey of the space (relevant hyperparameters, floor) the costs were measured in: another system attribute.
COST_SURVEY_ATTR = "hpsearch_cost_survey"
SHARED_COSTS = 4096  # at most this many kept on the study (a space of 8 x 8 x 8 model sizes has 512)
UNREAD = object()  # a study attribute the storage did not give
FLOOR_CHOICES = 8  # a categorical of more choices leaves the space without a floor (see ModelCost.find_relevant)


def model_counts(model: keras.Model) -> tuple[int, int] | None:
    """(multiply-accumulates, activations) of one example, from one walk over the layers; None when the layers'
    output shapes are unknown (a subclassed model not called yet)."""
    sizes = _layer_sizes(model)
    if sizes is None:
        return None
    return (sum(weights * positions for weights, positions, _ in sizes),
            sum(outputs for _, _, outputs in sizes))


def model_macs(model: keras.Model) -> int | None:
    """Multiply-accumulates of one forward pass of one example: each layer's weights times the positions
    they slide over (a convolution's output height x width, 1 for a dense layer)."""
    counts = model_counts(model)
    return counts[0] or None if counts else None


def model_activations(model: keras.Model) -> int | None:
    """Numbers every layer outputs for one example (a 26 x 26 x 128 convolution: 86,528), the work of the
    element-wise layers (batch normalization, activations, pooling, dropout) and of every layer's gradient."""
    counts = model_counts(model)
    return counts[1] or None if counts else None


def model_cost(model: keras.Model) -> float | None:
    """What one image costs to train, in multiply-accumulates: MACs + ACTIVATION_WEIGHT x activations."""
    counts = model_counts(model)
    return float(counts[0] + ACTIVATION_WEIGHT * counts[1]) if counts and all(counts) else None


def _leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers, nested models opened (their own layers counted once, not again as the model); a custom
    layer holding others counts as one (its output and all its weights)."""
    import keras  # here: checking a spec imports this module, not Keras

    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers += _leaf_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            layers.append(layer)
    return layers


def _layer_sizes(model: keras.Model) -> list[tuple[int, int, int]] | None:
    """(weights, positions they slide over, output numbers) per layer, per example. Frozen weights count: a frozen
    backbone's forward pass costs as much."""
    sizes = []
    try:
        for layer in _leaf_layers(model):
            outputs = layer.output
            shapes = [o.shape for o in (outputs if isinstance(outputs, list | tuple) else [outputs])]
            numbers = sum(int(np.prod([d or 1 for d in shape[1:]])) for shape in shapes)
            weights = sum(int(np.prod(w.shape)) for w in layer.weights)
            shape = shapes[0]
            positions = int(np.prod([d or 1 for d in shape[1:-1]])) if len(shape) > 2 else 1
            sizes.append((weights, positions, numbers))
    except Exception:  # noqa: BLE001 - a layer whose output is unknown (a subclassed model): cost unknown
        return None
    return sizes


class ModelCost:
    """A configuration's relative training cost: its model's cost per image (`model_cost`) times its epochs.

    Builds the model the configuration gives (the study's fixed values beside it) and caches the answer by the
    values of `relevant` hyperparameters only (those that change the model: a learning rate does not), so most
    candidates after the first trials cost a dictionary look-up. None when the builder fails on the configuration
    or the model's size cannot be read. A build leaves Python's and NumPy's random state as it found it: the trial
    being built beside it (Optuna samples on the builder's first suggest) keeps the weights its seed gives.
    """

    def __init__(self, builder: BuilderLike, fixed: Mapping[str, Any], relevant: set[str] | None = None,
                 cache_size: int = 4096) -> None:
        self.builder = builder
        self.fixed = dict(fixed)
        self.relevant = relevant
        self.cache: dict[tuple[tuple[str, str], ...], float | None] = {}
        self.cache_size = cache_size
        self.builds = 0
        self.build_seconds = 0.0
        self.unshared: set[tuple[tuple[str, str], ...]] = set()  # measured here, not yet on the study
        self.base: float | None = None  # the builder's defaults' cost, once find_relevant measured it
        # The space's cheapest cost as far as known: the model of every hyperparameter at its cheapest value (the
        # cheaper end of a range along which the cost grows or falls), lowered by any cost measured below it; None
        # until find_relevant measured it, or when the space's shape does not tell the cheapest model.
        self.floor: float | None = None
        # find_relevant's answer when it surveyed and every build gave a cost, to keep on the study
        self.survey: dict[str, Any] | None = None
        self.seconds_each = 0.0  # a build's seconds here, as find_relevant measured (or scaled) them

    def __call__(self, params: Mapping[str, Any]) -> float | None:
        values = {**params, **self.fixed}
        key = tuple(sorted((k, repr(v)) for k, v in values.items() if self.relevant is None or k in self.relevant))
        if key not in self.cache:
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
                self.unshared.clear()
            self.cache[key] = self._measure(values)
            self.unshared.add(key)
        self._lower_floor(self.cache[key])
        return self.cache[key]

    def _lower_floor(self, cost: float | None) -> None:
        if self.floor is not None and cost is not None and 0 < cost < self.floor:
            self.floor = cost

    def context(self) -> str:
        """What the cached costs hold for: the fixed values and the hyperparameters in the key (another --set or
        --epochs, or another version of the cost formula, makes them stale)."""
        import json

        return json.dumps({"fixed": sorted((k, repr(v)) for k, v in self.fixed.items()),
                           "relevant": sorted(self.relevant) if self.relevant is not None else None,
                           "activation_weight": ACTIVATION_WEIGHT, "version": COST_VERSION,
                           "defaults": self.base})  # the builder's defaults' cost: an edited builder differs

    def load_shared(self, shared: Any) -> None:
        """Takes the costs a study keeps (`share`'s value) when they were measured in this context."""
        import json

        if not isinstance(shared, dict) or shared.get("context") != self.context():
            return
        for text, cost in (shared.get("costs") or {}).items():
            if len(self.cache) >= self.cache_size // 2:  # room left for this process's own measures
                break
            try:
                key = tuple((str(name), str(value)) for name, value in json.loads(text))
            except (TypeError, ValueError):
                continue
            if key not in self.cache and isinstance(cost, int | float) and cost > 0:
                self.cache[key] = float(cost)
                self._lower_floor(float(cost))

    def share(self, shared: Any) -> dict[str, Any] | None:
        """The study's cost cache (`shared`, as read from it) with the costs measured here added; None when no new
        one was. An unknown cost (a build that failed, perhaps for a passing reason) stays in this process."""
        import json

        context = self.context()
        same = isinstance(shared, dict) and shared.get("context") == context
        costs = dict(shared.get("costs") or {}) if same else {}
        known = [key for key in self.unshared if self.cache.get(key)]
        for key in known[:max(0, SHARED_COSTS - len(costs))]:
            costs[json.dumps([list(pair) for pair in key])] = self.cache[key]
        return {"context": context, "costs": costs} if known else None

    def _measure(self, values: dict[str, Any]) -> float | None:
        import random
        import time

        from hpsearch.models import training_config
        from hpsearch.search.adapter import as_build_function, values_hyperparameters

        hp = values_hyperparameters(values)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        start = time.perf_counter()
        try:
            model = as_build_function(self.builder)(hp)
            epochs = training_config(hp).epochs
            cost = model_cost(model)
        except Exception as exc:  # noqa: BLE001 - the trial itself reports a builder's error; here cost is unknown
            logger.debug("cost of %s unknown: %s", values, exc)
            return None
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            self.builds += 1
            self.build_seconds += time.perf_counter() - start
        return cost * max(1, int(epochs)) if cost else None

    def find_relevant(self, space: Mapping[str, BaseDistribution], conditional: set[str],
                      kept: Any = None) -> set[str]:
        """The hyperparameters that change the cost: each moved alone from the builder's defaults to both ends of
        its range (two builds each; every choice of a categorical of up to FLOOR_CHOICES); a conditional one
        (perhaps inactive at the defaults) always counts. Then the `floor` (one build more), unless the space has
        conditional hyperparameters or one whose cost does not grow or fall along its range.

        `kept`: an earlier survey (`survey`, as the study keeps it). Taken as it is, after one build, when it was
        made for this space and fixed values and the builder's defaults still cost what they cost then (an edited
        builder that kept that cost would go unseen: its costs cached on the study would be stale as well). A
        survey in which a build failed (perhaps for a passing reason: memory) is not offered to keep."""
        self.relevant, self.floor, self.survey = None, None, None
        self.cache.clear()  # the keys change with `relevant`; the survey measures from nothing
        self.unshared.clear()
        start = (self.builds, self.build_seconds)
        base = self.base = self({})
        defaults_seconds = self.build_seconds - start[1]
        key = self._survey_key(space, conditional)
        taken = self._take(kept, key) if base is not None else None
        if taken is None:
            (relevant, floor), failed = self._survey(space, conditional, base)
            self.seconds_each = (self.build_seconds - start[1]) / max(1, self.builds - start[0])
            if not failed and defaults_seconds > 0:
                self.survey = {"key": key, "relevant": sorted(relevant), "floor": floor,
                               "seconds_per_defaults": self.seconds_each / defaults_seconds}
        else:
            # The defaults' build alone, scaled as the surveying process's average build was to its defaults' build
            # (a space whose other models build slowly stays off as it would after a survey here).
            relevant, floor, ratio = taken
            self.seconds_each = defaults_seconds * ratio
            self.cache.clear()  # keyed by every hyperparameter
            self.unshared.clear()
        self.relevant, self.floor = relevant, floor
        return relevant

    def _survey(self, space: Mapping[str, BaseDistribution], conditional: set[str], base: float | None
                ) -> tuple[tuple[set[str], float | None], bool]:
        """find_relevant's builds: (the relevant hyperparameters, the floor (None: none known)), and whether a build
        failed. Leaves the cache keyed by the relevant hyperparameters (holding the floor's cost, if any)."""
        relevant = set(conditional)
        cheaper: dict[str, Any] | None = {} if not conditional and base is not None else None
        for name, dist in space.items():
            if name in relevant:
                continue
            choices = getattr(dist, "choices", None)
            if choices:
                every = base is not None and len(choices) <= FLOOR_CHOICES
                values = tuple(choices) if every else (choices[0], choices[-1])
                if not every:
                    cheaper = None  # a choice not built may be the cheapest
            else:
                values = (dist.low, dist.high)
            costs = [self({name: value}) for value in values]
            if base is not None and all(cost == base for cost in costs):
                continue
            relevant.add(name)
            if cheaper is None:
                continue
            known = [c for c in costs if c is not None]
            if len(known) < len(costs) or (choices is None and not min(known) <= base <= max(known)):
                cheaper = None  # the cheapest value is not known from these builds: no floor
            else:
                cheaper[name] = values[int(np.argmin(known))]
        failed = any(cost is None for cost in self.cache.values())
        self.relevant = relevant
        self.cache.clear()  # keyed by every hyperparameter until now
        self.unshared.clear()
        floor = self(cheaper) if cheaper is not None else None
        failed = failed or (cheaper is not None and floor is None)
        return (relevant, floor if floor is not None and floor > 0 else None), failed

    def _survey_key(self, space: Mapping[str, BaseDistribution], conditional: set[str]) -> str:
        """What a survey holds for: the space, the fixed values, the cost formula and the defaults' cost."""
        import json

        return json.dumps({"space": sorted((name, repr(dist)) for name, dist in space.items()),
                           "conditional": sorted(conditional),
                           "fixed": sorted((k, repr(v)) for k, v in self.fixed.items()),
                           "activation_weight": ACTIVATION_WEIGHT, "floor_choices": FLOOR_CHOICES,
                           "version": COST_VERSION, "defaults": self.base})

    @staticmethod
    def _take(kept: Any, key: str) -> tuple[set[str], float | None, float] | None:
        """A kept survey's (relevant, floor, seconds_per_defaults) when it was made under `key` and reads well."""
        if not isinstance(kept, dict) or kept.get("key") != key:
            return None
        relevant, floor, ratio = kept.get("relevant"), kept.get("floor"), kept.get("seconds_per_defaults")
        if not isinstance(relevant, list) or not all(isinstance(name, str) for name in relevant):
            return None
        if floor is not None and not (isinstance(floor, int | float) and floor > 0):
            return None
        if not (isinstance(ratio, int | float) and ratio > 0):
            return None
        return set(relevant), (float(floor) if floor is not None else None), float(ratio)


class CostAwareTPESampler(TPESampler):
    """Optuna's TPE sampler that weighs each candidate's cost once `attach` gave it a cost function and the space.

    Without them (a process that only creates or reads the study) it samples exactly as TPESampler.
    """

    def __init__(self, *, startup_candidates: int = STARTUP_CANDIDATES, cost_candidates: int = COST_CANDIDATES,
                 cost_weight: float = COST_WEIGHT, time_aware: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.startup_candidates = startup_candidates
        self.cost_candidates = cost_candidates
        self.cost_weight = cost_weight
        self.time_aware = time_aware  # cool the cost's weight and fit the deadline
        self.cost: Callable[[Mapping[str, Any]], float | None] | None = None
        self.space: dict[str, BaseDistribution] = {}
        self.window: tuple[float, float] | None = None  # (start, deadline) of the study's time budget, epoch s
        self._startup_trial: int | None = None
        self._finished = 0  # finished trials when TPE last sampled: its gamma's share
        self._rate: float | None = None  # seconds a unit of cost took in the study's finished trials
        self.clock: Callable[[], float] = time.time  # what `window` is measured in
        self.share_costs = True  # keep the measured costs on the study (benchmarks/fixed_cost.py turns it off)
        self.skip_hopeless = True  # build no candidate that cannot win (benchmarks/fixed_cost.py turns it off)

    def attach(self, cost: Callable[[Mapping[str, Any]], float | None],
               space: Mapping[str, BaseDistribution], window: tuple[float, float] | None = None) -> None:
        """`window`: the time budget's (start, deadline) in `time.time()` seconds, for cooling and fitting."""
        self.cost = cost
        self.space = {name: dist for name, dist in space.items() if not dist.single()}
        self.window = window if window is not None and window[1] > window[0] else None

    def weight_now(self, now: float | None = None) -> float:
        """The cost's weight at `now`: `cost_weight` times the share of the time budget left when cooling."""
        if self.window is None or not self.time_aware:
            return self.cost_weight
        start, deadline = self.window
        now = self.clock() if now is None else now
        return self.cost_weight * min(1.0, max(0.0, (deadline - now) / (deadline - start)))

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
        with self._shared_costs(study):
            if self._startup_trial is not None and self._startup_trial == trial.number:
                return self._cheapest_random(study, trial, search_space)
            return super().sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if self._weighs_no_cost({param_name}):  # a learning rate alone: no cache to read
            return super().sample_independent(study, trial, param_name, param_distribution)
        with self._shared_costs(study):  # univariate TPE weighs cost here
            return super().sample_independent(study, trial, param_name, param_distribution)

    def _weighs_no_cost(self, names: set[str]) -> bool:
        """A draw of these hyperparameters alone changes no model's cost (e.g. the learning rate: univariate TPE,
        or a group of its own), so every candidate costs the same."""
        relevant = getattr(self.cost, "relevant", None)
        return relevant is not None and not relevant & names

    @contextlib.contextmanager
    def _shared_costs(self, study: optuna.Study) -> Iterator[None]:
        """Looks costs up in the study's cache before sampling and adds those measured meanwhile after it. A storage
        that does not answer costs only builds here: the trial's own storage calls report the outage."""
        cost = self.cost
        if not isinstance(cost, ModelCost) or not self.share_costs:
            yield
            return
        cost.load_shared(_study_attr(study, COST_CACHE_ATTR))
        try:
            yield
        finally:
            shared = _study_attr(study, COST_CACHE_ATTR) if cost.unshared else UNREAD
            if shared is not UNREAD:  # else kept for the next trial's write, not written over what was not read
                merged = cost.share(shared)
                if merged is None or _set_study_attr(study, COST_CACHE_ATTR, merged):
                    cost.unshared.clear()

    def _cheapest_random(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                         search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        assert self.cost is not None
        fixed = dict(trial.system_attrs.get("fixed_params") or {})  # an enqueued or warm-started configuration
        free = {name: dist for name, dist in search_space.items() if name not in fixed}
        if not free:
            return {}
        best: dict[str, Any] = {}
        best_cost = math.inf
        with _collecting(self.cost):
            for _ in range(max(1, self.startup_candidates)):
                candidate = {name: self._random_sampler.sample_independent(study, trial, name, dist)
                             for name, dist in free.items()}
                cost = self.cost({**candidate, **fixed})
                if not best or (cost is not None and cost < best_cost):
                    best, best_cost = candidate, (cost if cost is not None else math.inf)
        return best

    def _sample(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED),
                                     use_cache=True)
        self._finished = len(finished)
        self._rate = seconds_per_cost(finished) if self.window is not None and self.time_aware else None
        return super()._sample(study, trial, search_space)

    def _compute_acquisition_func(self, samples: dict[str, np.ndarray], mpe_below: _ParzenEstimator,
                                  mpe_above: _ParzenEstimator) -> np.ndarray:
        ratios = super()._compute_acquisition_func(samples, mpe_below, mpe_above)  # log l(x) / g(x)
        space: Mapping[str, BaseDistribution] | None = getattr(mpe_below, "_search_space", None)
        if self.cost is None or not space or not samples or len(ratios) < 2:
            return ratios
        if self._weighs_no_cost(set(samples)):
            return ratios
        relevant = getattr(self.cost, "relevant", None)
        order = np.argsort(-ratios)[:max(1, self.cost_candidates)]
        # TPE's expected improvement is proportional to 1 / (gamma + (1 - gamma) g(x) / l(x)) (Bergstra et al.,
        # 2011): it grows with l / g but never past 1 / gamma, so a candidate far likelier among the good trials
        # is not worth any price. Improvement per unit of cost: log EI - weight x log(relative cost).
        n = max(1, self._finished)
        gamma = min(0.5, max(1, self._gamma(n)) / n) if self._gamma is not None else 0.1
        log_ei = -np.log(gamma + (1 - gamma) * np.exp(-np.clip(ratios[order], -50, 50)))
        weight = self.weight_now()
        costs = self._candidate_costs(samples, space, order, log_ei, weight)
        order, log_ei = order[:len(costs)], log_ei[:len(costs)]
        known = [c for c in costs if c is not None and c > 0]
        if not known:
            return ratios  # no cost known: TPE as it is
        # A candidate whose model does not build (its trial would fail) is never preferred.
        known_costs = np.asarray([c if c is not None and c > 0 else np.nan for c in costs], dtype=float)
        log_costs = np.log(known_costs)
        weighed = np.full_like(ratios, -np.inf, dtype=float)
        weighed[order] = np.nan_to_num(log_ei - weight * (log_costs - np.nanmean(log_costs)), nan=-np.inf)
        # Only a whole configuration's time is predicted: a group of some of the hyperparameters that change the
        # model (the rest at the builder's defaults) is weighed, never excluded.
        late = self._too_late(known_costs) if relevant is None or relevant <= set(samples) else None
        if late is not None:
            weighed[order[late]] = -np.inf
        return weighed

    def _candidate_costs(self, samples: dict[str, np.ndarray], space: Mapping[str, BaseDistribution],
                         order: np.ndarray, log_ei: np.ndarray, weight: float) -> list[float | None]:
        """The costs of the candidates in `order` (likeliest first), stopping before the first that cannot win.

        Candidates come in falling improvement (`log_ei`), and none costs less than the space's `floor`; so once
        a candidate's improvement less `weight` x log(floor) falls under the best score found (improvement less
        `weight` x log(cost)), neither it nor any after it can win, and their models need no build. The same
        candidate wins as with every cost measured whenever the floor holds: costs that grow or fall along each
        range (a model's size), the cheapest of a categorical's choices measured. A cost that breaks that (cheaper
        inside a range than at both ends) lowers the floor once measured; until then a candidate that could have won
        may be left out. Every candidate is measured when cooling (a late candidate may not be drawn).
        """
        assert self.cost is not None
        skip = self.skip_hopeless and not self.time_aware and weight >= 0  # a negative weight favours the dear
        costs: list[float | None] = []
        best = -math.inf
        with _collecting(self.cost):
            for rank, index in enumerate(order):
                floor = getattr(self.cost, "floor", None)  # lowered by any cost measured under it
                if skip and floor is not None and floor > 0 and log_ei[rank] - weight * math.log(floor) < best:
                    break
                cost = self.cost({name: space[name].to_external_repr(samples[name][index])
                                  for name in space if name in samples})
                costs.append(cost)
                if cost is not None and cost > 0:
                    best = max(best, log_ei[rank] - weight * math.log(cost))
        return costs

    def _too_late(self, costs: np.ndarray) -> np.ndarray | None:
        """Which candidates (by cost, NaN unknown) would end after the deadline at the study's measured seconds per
        unit of cost, when some would not (else none: the cheapest still has a chance). None without a measure."""
        if self.window is None or not self.time_aware or self._rate is None or np.isnan(costs).all():
            return None
        late = ~(costs * self._rate <= self.window[1] - self.clock())  # an unknown cost is late too
        return late if not late.all() else None


def seconds_per_cost(trials: list[optuna.trial.FrozenTrial]) -> float | None:
    """The seconds one unit of `model_cost` took for one epoch, as a study's last RATE_TRIALS finished trials
    measured it: their training seconds over their cost per image x epochs run, summed (a trial pruned after its
    first epoch, which also paid for tracing the model, weighs by its one epoch); None before any."""
    seconds = units = 0.0
    for trial in sorted(trials, key=lambda t: t.number)[-RATE_TRIALS:]:
        attrs = trial.user_attrs
        try:
            cost = (float(attrs["macs"]) + ACTIVATION_WEIGHT * float(attrs["activations"])) * int(attrs["epochs_run"])
            spent = float(attrs["train_seconds"])
        except (KeyError, TypeError, ValueError):
            continue
        if cost > 0 and math.isfinite(spent) and spent > 0:
            seconds, units = seconds + spent, units + cost
    return seconds / units if units else None


@contextlib.contextmanager
def _collecting(cost: Any) -> Iterator[None]:
    """Frees the models built for their cost at once (Keras models hold reference cycles, which only a full
    collection frees) rather than during the trial's training."""
    before = getattr(cost, "builds", 0)
    try:
        yield
    finally:
        if getattr(cost, "builds", 0) != before:
            gc.collect()


def attach_cost(sampler: optuna.samplers.BaseSampler, builder: BuilderLike, fixed: Mapping[str, Any],
                window: tuple[float, float] | None = None, study: optuna.Study | None = None) -> bool:
    """Gives a cost-aware sampler its cost function, the builder's space and the time budget's (start, deadline);
    True when the sampler weighs cost. With the `study`, the survey of the space (`ModelCost.find_relevant`) is
    taken from it when it holds one that still applies, and kept on it when made here.

    Off, with the reason in the log, when the builder's space cannot be read or its models take more than
    MAX_BUILD_SECONDS each to build (weighing 24 candidates would then cost more than it saves)."""
    if not isinstance(sampler, CostAwareTPESampler):
        return False
    from hpsearch.search.adapter import declared_space, distributions_of

    try:
        hp = declared_space(builder, with_training=True)
        space = distributions_of(hp, fixed)
        conditional = {p.name for p in hp.space if p.conditions}
    except Exception as exc:  # noqa: BLE001 - the first trial reports a builder that fails; draws stay blind
        logger.warning("cost-aware sampling off: the builder's space cannot be read (%s)", exc)
        return False
    cost = ModelCost(builder, fixed)
    varied = {n: d for n, d in space.items() if not d.single()}
    keep = study is not None and sampler.share_costs
    kept = _study_attr(study, COST_SURVEY_ATTR) if keep else None
    with _collecting(cost):
        relevant = cost.find_relevant(varied, conditional, kept)
    seconds = cost.seconds_each
    if keep and cost.survey is not None and seconds <= MAX_BUILD_SECONDS:
        _set_study_attr(study, COST_SURVEY_ATTR, cost.survey)
    if seconds > MAX_BUILD_SECONDS:
        logger.warning("cost-aware sampling off: a model takes %.1f s to build (more than %.1f s), so weighing "
                       "candidates would cost more time than it saves", seconds, MAX_BUILD_SECONDS)
        return False
    sampler.attach(cost, space, window)
    logger.info("cost-aware sampling: %s change a model's cost (%.2f s a build)%s", ", ".join(sorted(relevant))
                or "no hyperparameter", seconds, "; its weight cools to 0 at the deadline"
                if sampler.window is not None and sampler.time_aware else "")
    return True


def _study_attr(study: optuna.Study | None, name: str) -> Any:
    """The study's system attribute `name` (None when absent); UNREAD when the storage does not answer (the caller
    measures instead: the trials' own storage calls report an outage)."""
    from hpsearch.storage.optuna_compat import study_id, study_storage

    try:
        return study_storage(study).get_study_system_attrs(study_id(study)).get(name)
    except Exception as exc:  # noqa: BLE001 - see above
        logger.debug("the study's %s was not read: %s", name, exc)
        return UNREAD


def _set_study_attr(study: optuna.Study | None, name: str, value: Any) -> bool:
    """Sets the study's system attribute `name`; False when the storage does not answer (see `_study_attr`)."""
    from hpsearch.storage.optuna_compat import study_id, study_storage

    try:
        study_storage(study).set_study_system_attr(study_id(study), name, value)
    except Exception as exc:  # noqa: BLE001 - see above
        logger.debug("the study's %s was not written: %s", name, exc)
        return False
    return True
