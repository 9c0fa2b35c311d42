"""Cost-aware sampling: what a configuration costs, the start-up's cheaper draws, TPE's cost-weighed choice, and when
a study weighs cost at all."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

from hpsearch.errors import UsageError
from hpsearch.models import get_builder
from hpsearch.search.adapter import OptunaHyperParameters, build_from_values
from hpsearch.search.cost import (
    ACTIVATION_WEIGHT,
    COST_WEIGHT,
    CostAwareTPESampler,
    ModelCost,
    attach_cost,
    model_activations,
    model_cost,
    model_macs,
    seconds_per_cost,
)
from hpsearch.search.spec import StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_macs_count_each_weight_once_per_position_it_slides_over() -> None:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)  # 6 x 6 positions, 3*3*1*4 + 4 = 40 weights
    x = keras.layers.BatchNormalization()(x)  # 16 weights (gamma, beta and the moving statistics), per position
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)  # 144 * 10 + 10 weights, once
    model = keras.Model(inputs, outputs)
    assert model_macs(model) == 40 * 36 + 16 * 36 + 1450
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


def _sampler(cost_aware: bool, seed: int = 3, window: tuple[float, float] | None = None,
             **options) -> optuna.samplers.TPESampler:
    if not cost_aware:
        return optuna.samplers.TPESampler(seed=seed, **options)
    sampler = CostAwareTPESampler(seed=seed, **options)
    sampler.attach(_cost_of_x, {"x": optuna.distributions.FloatDistribution(0, 1)}, window)
    return sampler


def test_start_up_trials_train_the_cheapest_of_three_draws() -> None:
    blind = _study(_sampler(False, n_startup_trials=40), 40)
    weighed = _study(_sampler(True, n_startup_trials=40), 40)
    # The least of three uniform draws averages 0.25; one draw 0.5.
    assert statistics.mean(blind) > 0.4
    assert statistics.mean(weighed) < 0.33
    assert max(weighed) > 0.5  # the whole space can still be drawn


def test_after_the_start_up_tpe_prefers_the_cheaper_of_equally_promising_configurations() -> None:
    def drawn(weight: float) -> float:  # the mean x TPE drew after the same start-up, over three seeds
        draws = []
        for seed in (3, 4, 5):
            sampler = _sampler(True, seed, n_startup_trials=5)
            sampler.cost_weight = weight
            draws += _study(sampler, 40)[5:]
        return statistics.mean(draws)

    assert drawn(0.5) < drawn(0.0) - 0.1


def test_a_much_better_dear_configuration_still_wins() -> None:
    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 0, 1)  # the dearer, the better

    weighed = _study(_sampler(True, n_startup_trials=5), 40, objective)
    assert statistics.mean(weighed[-10:]) > 0.7


def _frozen(sampler: CostAwareTPESampler, now: float) -> CostAwareTPESampler:
    sampler.clock = lambda: now
    return sampler


def test_on_a_time_budget_the_cost_weight_cools_to_nothing_at_the_deadline() -> None:
    window = (1000.0, 1600.0)
    cooling = _sampler(True, window=window, time_aware=True)
    assert cooling.weight_now(1000.0) == COST_WEIGHT
    assert cooling.weight_now(1450.0) == pytest.approx(COST_WEIGHT / 4)  # a quarter of the budget left
    assert cooling.weight_now(1700.0) == 0.0
    assert _sampler(True, window=window, time_aware=False).weight_now(1450.0) == COST_WEIGHT
    assert _sampler(True, window=window).weight_now(1450.0) == COST_WEIGHT  # off by default
    assert _sampler(True, time_aware=True).weight_now(1450.0) == COST_WEIGHT  # no time budget: nothing to cool
    # Past the deadline TPE's candidates are weighed as if cost did not matter (the start-up draws stay cheap);
    # at a quarter left, between the two.
    spent = _study(_frozen(_sampler(True, window=window, n_startup_trials=5, time_aware=True), 1700.0), 30)
    assert spent == _study(_sampler(True, cost_weight=0.0, n_startup_trials=5), 30)
    quarter = _study(_frozen(_sampler(True, window=window, n_startup_trials=5, time_aware=True), 1450.0), 30)
    assert quarter == _study(_sampler(True, cost_weight=COST_WEIGHT / 4, n_startup_trials=5), 30)
    assert quarter != spent and quarter != _study(_sampler(True, n_startup_trials=5), 30)


def _timed_study(sampler: CostAwareTPESampler, trials: int, seconds_per_unit: float) -> list[float]:
    """Each trial records what it cost as a search's trials do (here train_seconds = cost x seconds_per_unit);
    the dearer, the better."""
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.set_user_attr("macs", _cost_of_x({"x": x}))
        trial.set_user_attr("activations", 0)
        trial.set_user_attr("epochs_run", 1)
        trial.set_user_attr("train_seconds", _cost_of_x({"x": x}) * seconds_per_unit)
        return x

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=trials)
    assert seconds_per_cost(study.trials) == pytest.approx(seconds_per_unit)
    return [t.params["x"] for t in study.trials]


def test_a_candidate_that_would_end_after_the_deadline_is_not_drawn_while_one_that_fits_is() -> None:
    window = (0.0, 660.0)
    # 1 s a unit of cost, 60 s left: x above 0.6 (cost 60) would end too late.
    fitted = _timed_study(_frozen(_sampler(True, window=window, n_startup_trials=5, time_aware=True), 600.0), 25, 1.0)
    assert max(fitted[5:]) < 0.6 and statistics.mean(fitted[5:]) > 0.3
    blind = _timed_study(_frozen(_sampler(True, window=window, n_startup_trials=5, time_aware=False), 600.0), 25,
                         1.0)
    assert statistics.mean(blind[-10:]) > 0.7  # without it, TPE goes where the dear, better configurations are
    # When nothing fits any more (the deadline has passed), TPE still draws where the results are best.
    late = _timed_study(_frozen(_sampler(True, window=window, n_startup_trials=5, time_aware=True), 700.0), 25, 1.0)
    assert statistics.mean(late[-10:]) > 0.7
    assert seconds_per_cost([]) is None


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


def test_a_time_budget_turns_it_on_the_study_keeps_the_answer_and_other_samplers_refuse_it() -> None:
    def spec(**kw) -> StudySpec:
        return StudySpec(study="s", model="cnn", **kw)

    assert isinstance(spec(timeout=600).make_sampler(), CostAwareTPESampler)
    assert spec(timeout=600).to_dict()["cost_aware"] is True  # stored: a resume with another timeout keeps it
    assert not isinstance(spec().make_sampler(), CostAwareTPESampler)
    assert isinstance(spec(cost_aware=True).make_sampler(), CostAwareTPESampler)
    assert not isinstance(spec(timeout=600, cost_aware=False).make_sampler(), CostAwareTPESampler)
    assert spec(timeout=600, objectives=["parameters"]).cost_aware is False
    assert spec(timeout=600, sampler="random").cost_aware is False
    with pytest.raises(UsageError, match="--no-cost-aware"):
        spec(sampler="random", cost_aware=True)
    assert spec(timeout=600).make_sampler().time_aware is False
    assert spec(timeout=600).to_dict()["sampler_options"] == {"time_aware": False}  # stored with the study
    assert spec(timeout=600, sampler_options={"time_aware": True}).make_sampler().time_aware is True
    assert spec(sampler_options={"time_aware": True}).sampler_options == {}  # no cost weighed: dropped
    with pytest.raises(UsageError, match="time_aware takes true or false"):
        spec(timeout=600, sampler_options={"time_aware": "no"})
    # A study that weighed cost before time-aware weighing existed keeps its constant weight.
    before = {**spec(timeout=600).to_dict(), "sampler_options": {}}
    assert StudySpec.from_study(before, "study s").make_sampler().time_aware is False
    assert StudySpec.from_stored(before).make_sampler().time_aware is False
    assert StudySpec.load(None, {"timeout": 900}, base=before).make_sampler().time_aware is False
    with pytest.raises(UsageError, match="cost_aware must be bool"):
        StudySpec.from_dict({"study": "s", "model": "cnn", "cost_aware": "yes"})
    # A study stored before cost-aware sampling existed samples as it did, whatever its timeout.
    stored = spec(timeout=600).to_dict()
    del stored["cost_aware"]
    assert StudySpec.from_study(stored, "study s").cost_aware is False
    assert StudySpec.from_stored(stored).cost_aware is False
    assert StudySpec.load(None, {"timeout": 900}, base=stored).cost_aware is False


def test_building_for_cost_leaves_the_trials_weights_as_its_seed_gives_them() -> None:
    builder = get_builder("cnn", (28, 28, 1), 10)
    params = {"filters_1": 32, "filters_2": 32, "units": 64}

    def first_kernel(measure_between: bool) -> np.ndarray:
        keras.backend.clear_session()
        keras.utils.set_random_seed(7)
        if measure_between:  # Optuna samples on the builder's first suggest: after the trial's seed was set
            cost = ModelCost(builder, {"epochs": 1})
            for filters in (64, 96, 128):
                cost({**params, "filters_1": filters})
        model, _ = build_from_values(builder, params)
        return keras.ops.convert_to_numpy(model.layers[1].kernel)

    np.testing.assert_array_equal(first_kernel(False), first_kernel(True))


def test_only_the_hyperparameters_that_shape_the_model_key_its_cost() -> None:
    builder = get_builder("cnn", (28, 28, 1), 10)
    sampler = CostAwareTPESampler(seed=0)
    assert attach_cost(sampler, builder, {"epochs": 3, "batch_size": 128})
    assert sampler.cost.relevant == {"filters_1", "filters_2", "units"}  # not the optimizer or learning rate
    builds = sampler.cost.builds
    for rate in (1e-4, 1e-3, 1e-2):
        sampler.cost({"filters_1": 64, "filters_2": 64, "units": 128, "optimizer": "sgd", "learning_rate": rate})
    assert sampler.cost.builds == builds + 1


def test_an_enqueued_value_is_kept_and_the_rest_drawn_cheaply() -> None:
    sampler = CostAwareTPESampler(seed=0, n_startup_trials=10)
    sampler.attach(lambda p: 1.0 + 99.0 * p["x"] + p["y"], {"x": optuna.distributions.FloatDistribution(0, 1),
                                                            "y": optuna.distributions.FloatDistribution(0, 1)})
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"x": 0.9})
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials=2)
    assert study.trials[0].params["x"] == 0.9 and 0 <= study.trials[0].params["y"] <= 1


def test_a_search_on_a_time_budget_weighs_cost_and_records_what_each_trial_cost(tmp_path: Path, caplog) -> None:
    import logging

    from sklearn.datasets import load_digits

    import hpsearch

    bunch = load_digits()
    x, y = np.rint(bunch.images * (255 / 16)).astype(np.uint8), bunch.target.astype(np.int64)

    def build(hp):
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(hp.Int("units", 16, 256, step=16), activation="relu"),
                                 keras.layers.Dense(10, activation="softmax")])

    with caplog.at_level(logging.INFO, logger="hpsearch"):
        result = hpsearch.run(build, data=(x[:1200], y[:1200], x[1200:], y[1200:]), study="c",
                              storage=f"sqlite:///{tmp_path / 'c.db'}", trials=4, epochs=1, batch_size=64,
                              timeout=300, verbose=False)
    assert "cost-aware sampling: units change" in caplog.text  # the worker's sampler got the cost of each candidate
    done = [t for t in result.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    for trial in done:  # 64 inputs -> units -> 10 classes
        units = trial.params["units"]
        assert trial.user_attrs["macs"] == (64 * units + units) + (units * 10 + 10)
        assert trial.user_attrs["activations"] == 64 + units + 10


def test_a_worker_measures_the_time_budget_from_the_studys_start() -> None:
    from hpsearch.search.worker import _window

    study = optuna.create_study()
    timed = StudySpec(study="s", model="cnn", timeout=600)
    before = time.time()
    start, deadline = _window(study, timed)  # a study created outside the launcher: from now
    assert before <= start <= time.time() and deadline == start + 600
    study.set_user_attr("hpsearch_started_at", 1000.0)  # the launcher's record: every worker shares one deadline
    assert _window(study, timed) == (1000.0, 1600.0)
    assert _window(study, StudySpec(study="s", model="cnn")) is None


def test_a_recycled_worker_looks_up_the_costs_its_study_measured_instead_of_building_again(tmp_path: Path) -> None:
    """The costs live on the study: a worker's fresh process (or another worker) drawing the same candidates builds
    none of them again; another --set (a stale context) builds them anew."""
    from hpsearch.search.adapter import as_build_function
    from hpsearch.search.cost import COST_CACHE_ATTR
    from hpsearch.storage.optuna_compat import study_id, study_storage

    builder = get_builder("cnn", (28, 28, 1), 10)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    optuna.create_study(study_name="c", storage=url, direction="maximize")

    def worker_process(fixed: dict) -> CostAwareTPESampler:
        """Two start-up trials of a worker process whose sampler draws as the first process's did."""
        sampler = CostAwareTPESampler(seed=0, n_startup_trials=10)
        assert attach_cost(sampler, builder, fixed)
        sampler.cost.builds = 0  # from here: the builds sampling makes
        study = optuna.load_study(study_name="c", storage=url, sampler=sampler)
        study.optimize(lambda t: 0.0 * as_build_function(builder)(OptunaHyperParameters(t, fixed)).count_params(),
                       n_trials=2)
        return sampler

    first = worker_process({"epochs": 3})
    study = optuna.load_study(study_name="c", storage=url)
    stored = study_storage(study).get_study_system_attrs(study_id(study))[COST_CACHE_ATTR]
    # The cheapest of 3 draws, twice (a size drawn twice once), and the space's floor measured at the worker's start.
    assert first.cost.builds >= 5 and len(stored["costs"]) in (first.cost.builds, first.cost.builds + 1)
    again = worker_process({"epochs": 3})
    assert again.cost.builds == 0
    assert worker_process({"epochs": 3, "units": 64}).cost.builds > 0  # fixed differently: the costs do not hold


def test_a_cost_unknown_for_a_passing_reason_is_not_kept_on_the_study() -> None:
    """A build that failed (out of memory, say) rules its configuration out in its own process only."""

    def build(hp):
        units = hp.Int("units", 16, 64, step=16)
        if units == 32:
            raise MemoryError("out of memory while building")
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])

    first = ModelCost(build, {"epochs": 1})
    known = first({"units": 16})
    assert known and first({"units": 32}) is None
    shared = first.share(None)
    assert list(shared["costs"].values()) == [known]
    fresh = ModelCost(build, {"epochs": 1})
    fresh.load_shared(shared)
    assert fresh({"units": 16}) == known and fresh.builds == 0  # looked up
    fresh({"units": 32})
    assert fresh.builds == 1  # tried again
    assert ModelCost(build, {"epochs": 2}).share(None) is None  # nothing measured, nothing to write


class _CountedCost:
    """A cost of x and y that grows with both (floor: x = y = 0), counting the candidates it was asked for."""

    def __init__(self) -> None:
        self.floor, self.calls = 1.0, 0

    def __call__(self, params: dict) -> float:
        self.calls += 1
        return 1.0 + 99.0 * params["x"] + 20.0 * params["y"]


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_a_candidate_that_cannot_win_is_not_measured_and_the_same_one_wins(weight: float) -> None:
    """TPE's improvement is bounded and no candidate costs less than the floor: once the best score found beats what
    the next likeliest candidate could score at the floor's cost, the rest are not measured."""

    def search(skip: bool) -> tuple[list[dict], int]:
        cost = _CountedCost()
        sampler = CostAwareTPESampler(seed=7, n_startup_trials=5, cost_weight=weight)
        sampler.skip_hopeless = skip
        sampler.attach(cost, {"x": optuna.distributions.FloatDistribution(0, 1),
                              "y": optuna.distributions.FloatDistribution(0, 1)})
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(lambda t: -(t.suggest_float("x", 0, 1) - 0.6) ** 2 - (t.suggest_float("y", 0, 1) - 0.3) ** 2,
                       n_trials=30)
        return [t.params for t in study.trials], cost.calls

    every, measured_every = search(skip=False)
    skipped, measured_skipped = search(skip=True)
    assert skipped == every  # the same configurations, in the same order
    assert measured_skipped < measured_every, (measured_skipped, measured_every)


def test_the_floor_is_the_model_of_every_size_at_its_cheaper_end() -> None:
    builder = get_builder("cnn", (28, 28, 1), 10)
    sampler = CostAwareTPESampler(seed=0)
    assert attach_cost(sampler, builder, {"epochs": 3})
    cost, space = sampler.cost, sampler.space
    smallest = {name: space[name].low for name in ("filters_1", "filters_2", "units")}
    assert cost.floor == cost(smallest)
    rng = np.random.default_rng(0)
    for _ in range(5):  # any other size costs more
        drawn = {name: int(rng.choice(np.arange(space[name].low, space[name].high + 1, space[name].step)))
                 for name in smallest}
        assert cost(drawn) >= cost.floor
    cost.floor = cost(smallest) * 2  # a floor set too high (a builder whose sizes do not grow with their values)
    assert cost(smallest | {"units": smallest["units"] + space["units"].step}) == cost.floor  # lowered to it


def _dense(units: int) -> keras.Model:
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(units), keras.layers.Dense(2)])


def test_the_floor_is_the_cheapest_choice_and_none_when_the_cheapest_lies_inside_a_range() -> None:
    widths = ModelCost(lambda hp: _dense(hp.Choice("width", [64, 8, 32])), {"epochs": 1})
    widths.find_relevant({"width": optuna.distributions.CategoricalDistribution([64, 8, 32])}, set())
    assert widths.floor == widths({"width": 8})  # the middle choice: every choice is built

    def valley(hp):  # the default (k = 3) is the cheapest; both ends cost more
        return _dense(1 + 4 * abs(hp.Int("k", 1, 5, default=3) - 3))

    cost = ModelCost(valley, {"epochs": 1})
    assert cost.find_relevant({"k": optuna.distributions.IntDistribution(1, 5)}, set()) == {"k"}
    assert cost.floor is None


def test_a_worker_start_takes_the_survey_its_study_keeps_after_one_build(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Which hyperparameters change the cost and the space's floor live on the study: a recycled worker checks them
    with the defaults' model alone; a builder whose defaults cost otherwise (edited) is surveyed anew, and a survey
    in which a build failed is not kept."""
    from hpsearch.search.cost import COST_SURVEY_ATTR
    from hpsearch.storage.optuna_compat import study_id, study_storage

    def build(hp, default_units=32, fails_at=None):
        units = hp.Int("units", 8, 64, step=8, default=default_units)
        hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
        if units == fails_at:
            raise MemoryError("out of memory while building")
        return _dense(units)

    # every training hyperparameter fixed: the model's are left
    fixed = {"epochs": 1, "batch_size": 128, "patience": 3, "lr_factor": 0.2, "lr_patience": 2, "lr_peak": 1.0,
             "shift": 0.0}
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")

    def kept() -> dict | None:
        return study_storage(study).get_study_system_attrs(study_id(study)).get(COST_SURVEY_ATTR)

    def start(builder, share: bool = True) -> ModelCost:
        sampler = CostAwareTPESampler(seed=0)
        sampler.share_costs = share
        assert attach_cost(sampler, builder, fixed, study=study)
        return sampler.cost

    assert start(lambda hp: build(hp, fails_at=64)).builds == 5 and kept() is None  # a build failed: not kept
    first = start(build)
    assert first.builds == 6  # the defaults, both ends of each range, the floor
    assert first.relevant == {"units"} and first.floor == first({"units": 8})
    survey = kept()
    assert survey["relevant"] == ["units"] and survey["floor"] == first.floor
    again = start(build)
    assert again.builds == 1 and again.relevant == first.relevant and again.floor == first.floor
    assert again.seconds_each == pytest.approx(again.build_seconds * survey["seconds_per_defaults"])
    assert start(build, share=False).builds == 6  # costs not kept on the study: nor is the survey read
    edited = lambda hp: build(hp, default_units=48)  # noqa: E731
    assert start(edited, share=False).builds == 6 and kept() == survey  # ... or written
    study_storage(study).set_study_system_attr(study_id(study), COST_SURVEY_ATTR,
                                               {**survey, "seconds_per_defaults": 1e6})
    assert not attach_cost(CostAwareTPESampler(seed=0), build, fixed, study=study)  # the space builds too slowly
    study_storage(study).set_study_system_attr(study_id(study), COST_SURVEY_ATTR, survey)
    monkeypatch.setattr("hpsearch.search.cost.COST_VERSION", -1)  # counted otherwise: surveyed anew
    assert start(build).builds == 6
    monkeypatch.undo()
    assert start(edited).builds == 6 and kept()["key"] != survey["key"]
