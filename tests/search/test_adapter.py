"""The same builder under Optuna, KerasTuner and stored values."""

from __future__ import annotations

import keras
import keras_tuner
import optuna
import pytest

from hpsearch.errors import UsageError
from hpsearch.models import MODELS, get_builder
from hpsearch.search.adapter import OptunaHyperParameters, build_from_values, optuna_distributions

optuna.logging.set_verbosity(optuna.logging.WARNING)


def kt_space(builder) -> dict[str, keras_tuner.engine.hyperparameters.HyperParameter]:
    hp = keras_tuner.HyperParameters()
    builder(hp)
    return {p.name: p for p in hp.space}


def expected_distribution(p) -> optuna.distributions.BaseDistribution:
    kind = type(p).__name__
    if kind == "Choice":
        return optuna.distributions.CategoricalDistribution(list(p.values))
    if kind == "Boolean":
        return optuna.distributions.CategoricalDistribution([False, True])
    cls = optuna.distributions.IntDistribution if kind == "Int" else optuna.distributions.FloatDistribution
    if p.sampling == "log":
        return cls(p.min_value, p.max_value, log=True)
    return cls(p.min_value, p.max_value, step=p.step or (1 if kind == "Int" else None))


@pytest.mark.parametrize("name", ["resnet4", "cnn", "resnet-blocks"])
def test_optuna_suggests_exactly_the_keras_tuner_space(name: str) -> None:
    builder = get_builder(name)
    space = kt_space(builder)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: dict[str, optuna.distributions.BaseDistribution] = {}
    for _ in range(12):
        trial = study.ask()
        hp = OptunaHyperParameters(trial)
        builder(hp)
        assert set(trial.params) == set(hp.values)  # only active hyperparameters reach Optuna
        for key, value in trial.params.items():
            dist = trial.distributions[key]
            assert dist._contains(dist.to_internal_repr(value))
            seen[key] = dist
        study.tell(trial, 0.5)
        keras.backend.clear_session()
    assert set(seen) == set(space)
    for key, dist in seen.items():
        assert dist == expected_distribution(space[key]), key


def test_conditional_width_exists_only_with_enough_blocks() -> None:
    builder = get_builder("resnet-blocks")
    for blocks in (1, 2, 3):
        trial = optuna.trial.FixedTrial({"num_blocks": blocks, "width_1": 32, "width_2": 128, "width_3": 256,
                                         "kernel_size": 3, "optimizer": "adam", "learning_rate": 1e-3,
                                         "batch_size": 128, "epochs": 1, "patience": 3, "lr_factor": 0.2,
                                         "lr_patience": 2, "lr_peak": 1.0, "shift": 0.0})
        hp = OptunaHyperParameters(trial)
        model = builder(hp)
        assert [k for k in ("width_1", "width_2", "width_3") if k in hp.values] == \
            ["width_1", "width_2", "width_3"][:blocks]
        assert sum(layer.name.endswith("_out") for layer in model.layers) == blocks


def test_fixed_values_are_not_sampled() -> None:
    study = optuna.create_study()
    trial = study.ask()
    hp = OptunaHyperParameters(trial, {"epochs": 3, "optimizer": "sgd"})
    model = get_builder("cnn")(hp)
    assert "epochs" not in trial.params and "optimizer" not in trial.params
    assert hp.values["epochs"] == 3 and isinstance(model.optimizer, keras.optimizers.SGD)


def test_users_keras_tuner_hypermodel_works_unchanged() -> None:
    class UserModel(keras_tuner.HyperModel):
        def build(self, hp):
            model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])
            hidden = hp.Boolean("hidden", default=True)
            units = hp.Int("units", 8, 64, step=8, parent_name="hidden", parent_values=[True])
            if hidden:
                model.add(keras.layers.Dense(units, activation="relu"))
            model.add(keras.layers.Dense(10, activation="softmax"))
            model.compile("adam", "sparse_categorical_crossentropy")
            return model

    from hpsearch.search.adapter import as_build_function

    build = as_build_function(UserModel())
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    model = build(OptunaHyperParameters(trial))
    assert trial.params["hidden"] in (False, True)
    assert ("units" in trial.params) == trial.params["hidden"]
    assert model.output_shape == (None, 10)
    assert optuna_distributions(UserModel())["units"] == optuna.distributions.IntDistribution(8, 64, step=8)


def test_stored_params_rebuild_the_same_model() -> None:
    builder = get_builder("cnn")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask()
    original = builder(OptunaHyperParameters(trial, {"epochs": 2}))
    rebuilt, values = build_from_values(builder, {**trial.params, "epochs": 2})
    assert values["filters_1"] == trial.params["filters_1"]
    assert rebuilt.count_params() == original.count_params()


def test_every_model_builds_under_optuna() -> None:
    for name in MODELS:
        trial = optuna.create_study().ask()
        model = get_builder(name)(OptunaHyperParameters(trial, {"image_size": 32}))
        assert model.output_shape == (None, 10)
        keras.backend.clear_session()


@pytest.mark.parametrize("bad", ["low_gt_high", "empty_choice"])
def test_bad_space_is_a_clear_error(bad: str) -> None:
    def builder(hp):
        if bad == "low_gt_high":
            hp.Int("units", 64, 8)
        else:
            hp.Choice("act", [])
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    trial = optuna.create_study().ask()
    with pytest.raises((UsageError, ValueError), match="greater than|at least one|values"):
        builder(OptunaHyperParameters(trial))


def test_parallel_workers_sample_different_configurations(tmp_path, monkeypatch) -> None:
    """Worker processes of one study get their own sampler seeds (the same seed made them train the same random
    start-up configurations side by side); worker 0 keeps the study's seed, so a one-worker search repeats."""
    import optuna

    from hpsearch.search.launcher import create_or_resume
    from hpsearch.search.spec import StudySpec
    from hpsearch.search.worker import WORKER_INDEX_ENV, open_study
    from hpsearch.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'hp.db'}")
    create_or_resume(StudySpec(study="seeds", model="resnet4", trials=10), storage)
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    drawn = {}
    for index in ("0", "1", "0"):
        monkeypatch.setenv(WORKER_INDEX_ENV, index)
        study, _ = open_study("seeds", storage)
        drawn.setdefault(index, []).append(study.sampler.sample_independent(study, study.ask(), "x", space["x"]))
    assert drawn["0"][0] == drawn["0"][1]  # the same worker number draws the same: reproducible
    assert drawn["0"][0] != drawn["1"][0]  # another worker draws something else


def test_log_sampling_with_a_step_offers_keras_tuners_values_and_reverse_log_is_refused() -> None:
    """KerasTuner multiplies by the step under log sampling; Optuna draws exactly those values."""
    kt = keras_tuner.HyperParameters()
    kt.Int("units", 32, 512, step=2, sampling="log")
    kt.Float("lr", 1e-4, 1e-2, step=10, sampling="log")
    kt_values = ({kt.space[0].random_sample(s) for s in range(200)}, {kt.space[1].random_sample(s) for s in range(200)})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: tuple[set, set] = (set(), set())
    for _ in range(60):
        hp = OptunaHyperParameters(study.ask())
        seen[0].add(hp.Int("units", 32, 512, step=2, sampling="log"))
        seen[1].add(hp.Float("lr", 1e-4, 1e-2, step=10, sampling="log"))
    assert seen[0] == kt_values[0] == {32, 64, 128, 256, 512}
    assert seen[1] == kt_values[1] == {1e-4, 1e-3, 1e-2}
    with pytest.raises(UsageError, match="reverse_log"):
        OptunaHyperParameters(study.ask()).Float("x", 0.1, 0.9, sampling="reverse_log")
