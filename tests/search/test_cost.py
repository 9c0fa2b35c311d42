"""Cost-aware sampling: what a configuration costs, the start-up's cheaper draws, TPE's cost-weighed choice, and when
a study weighs cost at all."""

from __future__ import annotations

import statistics
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

from hpsearch.models import get_builder
from hpsearch.search.adapter import OptunaHyperParameters
from hpsearch.search.cost import (
    ACTIVATION_WEIGHT,
    CostAwareTPESampler,
    ModelCost,
    attach_cost,
    model_activations,
    model_cost,
    model_macs,
)
from hpsearch.search.spec import StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_macs_count_each_weight_once_per_position_it_slides_over() -> None:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)  # 6 x 6 positions, 3*3*1*4 + 4 = 40 weights
    x = keras.layers.BatchNormalization()(x)  # 8 trainable (gamma, beta), per position
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)  # 144 * 10 + 10 weights, once
    model = keras.Model(inputs, outputs)
    assert model_macs(model) == 40 * 36 + 8 * 36 + 1450
    assert model_activations(model) == 144 + 144 + 144 + 10  # conv, batch norm, flatten, dense
    assert model_cost(model) == model_macs(model) + ACTIVATION_WEIGHT * model_activations(model)


def test_a_nested_model_counts_and_an_unbuilt_one_is_unknown() -> None:
    inner = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    assert model_macs(model) == (16 * 8 + 8) + (8 * 2 + 2)

    class Unbuilt(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    assert model_macs(Unbuilt()) is None


def test_model_cost_ranks_the_cnn_by_size_and_epochs_and_says_unknown_when_the_builder_fails() -> None:
    builder = get_builder("cnn", (28, 28, 1), 10)
    cost = ModelCost(builder, {"epochs": 3})
    small = cost({"filters_1": 32, "filters_2": 32, "units": 64})
    large = cost({"filters_1": 256, "filters_2": 256, "units": 512})
    assert small and large and large > 10 * small
    assert ModelCost(builder, {"epochs": 6})({"filters_1": 32, "filters_2": 32, "units": 64}) == 2 * small
    assert len(cost.cache) == 2 and cost({"filters_1": 32, "filters_2": 32, "units": 64}) == small  # cached

    def broken(hp):
        raise ValueError("no model for these values")

    assert ModelCost(broken, {})({"units": 8}) is None


def _cost_of_x(params: dict) -> float:
    return 1.0 + 99.0 * params["x"]  # x = 0 costs 1, x = 1 costs 100


def _study(sampler: optuna.samplers.BaseSampler, trials: int, objective=None) -> list[float]:
    """The x each trial drew; the value does not depend on x unless `objective` says so."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    rng = np.random.default_rng(1)
    study.optimize(objective or (lambda t: t.suggest_float("x", 0, 1) * 0 + float(rng.random())), n_trials=trials)
    return [t.params["x"] for t in study.trials]


def _sampler(cost_aware: bool, seed: int = 3, **options) -> optuna.samplers.TPESampler:
    if not cost_aware:
        return optuna.samplers.TPESampler(seed=seed, **options)
    sampler = CostAwareTPESampler(seed=seed, **options)
    sampler.attach(_cost_of_x, {"x": optuna.distributions.FloatDistribution(0, 1)})
    return sampler


def test_start_up_trials_train_the_cheapest_of_three_draws() -> None:
    blind = _study(_sampler(False, n_startup_trials=40), 40)
    weighed = _study(_sampler(True, n_startup_trials=40), 40)
    # The least of three uniform draws averages 0.25; one draw 0.5.
    assert statistics.mean(blind) > 0.4
    assert statistics.mean(weighed) < 0.33
    assert max(weighed) > 0.5  # the whole space can still be drawn


def test_after_the_start_up_tpe_prefers_the_cheaper_of_equally_promising_configurations() -> None:
    def drawn(cost_aware: bool) -> float:  # the mean x TPE drew after its start-up, over three seeds
        return statistics.mean(x for seed in (3, 4, 5)
                               for x in _study(_sampler(cost_aware, seed, n_startup_trials=5), 40)[5:])

    assert drawn(True) < drawn(False) - 0.1


def test_a_much_better_dear_configuration_still_wins() -> None:
    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 0, 1)  # the dearer, the better

    weighed = _study(_sampler(True, n_startup_trials=5), 40, objective)
    assert statistics.mean(weighed[-10:]) > 0.7


def test_without_a_cost_function_it_samples_as_tpe() -> None:
    plain = _study(optuna.samplers.TPESampler(seed=3, n_startup_trials=5), 20)
    unattached = _study(CostAwareTPESampler(seed=3, n_startup_trials=5), 20)
    assert plain == unattached


def test_a_log_stepped_hyperparameter_is_drawn_as_the_trial_suggests_it() -> None:
    def build(hp):
        units = hp.Int("units", 8, 128, step=2, sampling="log")  # 8, 16, 32, 64, 128: offered as choices
        rate = hp.Float("rate", 0.0, 0.5, step=0.1)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units), keras.layers.Dropout(rate),
                                 keras.layers.Dense(2)])

    sampler = CostAwareTPESampler(seed=0, n_startup_trials=4)
    assert attach_cost(sampler, build, {"epochs": 1})
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        hp = OptunaHyperParameters(trial)
        build(hp)
        return hp.values["units"] / 128 + hp.values["rate"]

    study.optimize(objective, n_trials=8)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.params["units"] for t in study.trials} <= {8, 16, 32, 64, 128}
    assert not attach_cost(optuna.samplers.RandomSampler(), build, {})


def test_a_time_budget_turns_it_on_and_the_spec_decides_otherwise() -> None:
    def sampler_of(**kw) -> optuna.samplers.BaseSampler:
        return StudySpec(study="s", model="cnn", **kw).make_sampler()

    assert isinstance(sampler_of(timeout=600), CostAwareTPESampler)
    assert not isinstance(sampler_of(), CostAwareTPESampler)
    assert isinstance(sampler_of(cost_aware=True), CostAwareTPESampler)
    assert not isinstance(sampler_of(timeout=600, cost_aware=False), CostAwareTPESampler)
    assert not isinstance(sampler_of(timeout=600, objectives=["parameters"]), CostAwareTPESampler)
    assert not isinstance(sampler_of(timeout=600, sampler="random"), CostAwareTPESampler)
    with pytest.raises(Exception, match="cost_aware must be bool"):
        StudySpec.from_dict({"study": "s", "model": "cnn", "cost_aware": "yes"})


def test_a_search_on_a_time_budget_records_what_each_trial_cost(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    import hpsearch

    bunch = load_digits()
    x, y = np.rint(bunch.images * (255 / 16)).astype(np.uint8), bunch.target.astype(np.int64)

    def build(hp):
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(hp.Int("units", 16, 256, step=16), activation="relu"),
                                 keras.layers.Dense(10, activation="softmax")])

    def search(name: str, **spec) -> list[optuna.trial.FrozenTrial]:
        result = hpsearch.run(build, data=(x[:1200], y[:1200], x[1200:], y[1200:]), study=name,
                              storage=f"sqlite:///{tmp_path / 'c.db'}", trials=6, epochs=1, batch_size=64,
                              timeout=300, verbose=False, **spec)
        done = [t for t in result.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 6
        return done

    weighed, blind = search("weighed"), search("blind", cost_aware=False)
    for trial in weighed + blind:  # 64 inputs -> units -> 10 classes
        units = trial.params["units"]
        assert trial.user_attrs["macs"] == (64 * units + units) + (units * 10 + 10)
        assert trial.user_attrs["activations"] == 64 + units + 10
    startup = 4  # TPE's start-up on a 6-trial budget: the cheapest of three draws each
    assert (statistics.mean(t.params["units"] for t in weighed[:startup])
            < statistics.mean(t.params["units"] for t in blind[:startup]))
