"""`--warm-start STUDY[:K]` queues the K best configurations of an earlier study, in order, as they fit."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.models.training_params import DEFAULT_LR_PEAK

DISTS = {"filters_1": IntDistribution(32, 512, step=32), "units": IntDistribution(64, 512, step=64),
         "optimizer": CategoricalDistribution(["adam", "sgd", "rmsprop"]),
         "learning_rate": FloatDistribution(1e-4, 1e-2, log=True)}


@pytest.fixture
def source(tmp_path: Path) -> str:
    """An earlier study (as if on other data) with four completed trials and one failed."""
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    study = optuna.create_study(study_name="digits", storage=url, direction="maximize")
    rows = [({"filters_1": 64, "units": 128, "optimizer": "sgd", "learning_rate": 0.01}, 0.90),
            ({"filters_1": 160, "units": 256, "optimizer": "adam", "learning_rate": 0.002}, 0.97),
            ({"filters_1": 480, "units": 448, "optimizer": "rmsprop", "learning_rate": 0.0005}, 0.95),
            ({"filters_1": 96, "units": 192, "optimizer": "adam", "learning_rate": 0.001}, 0.93)]
    for params, value in rows:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=DISTS, value=value))
    study.add_trial(optuna.trial.create_trial(params=rows[0][0], distributions=DISTS, state=TrialState.FAIL))
    return url


def test_the_k_best_fitting_values_are_queued_in_order(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["create", "--storage", source, "--study", "mnist", "--model", "cnn", "--dataset", "mnist-sample",
                 "--set", "optimizer=adam", "--warm-start", "digits:2"])
    assert code == 0, capsys.readouterr().err
    waiting = optuna.load_study(study_name="mnist", storage=source).get_trials(states=(TrialState.WAITING,))
    # Best first (0.97, then 0.95); optimizer is fixed here and 480 filters lie outside cnn's 32..256: both left
    # for the study to decide, the rest kept as they were.
    queued = [t.system_attrs["fixed_params"] for t in waiting]  # Optuna keeps an enqueued trial's params there
    assert queued == [{"filters_1": 160, "units": 256, "learning_rate": 0.002},
                      {"units": 448, "learning_rate": 0.0005}]
    assert [t.user_attrs["enqueued"] for t in waiting] == ["warm start: digits trial 1", "warm start: digits trial 2"]


@pytest.mark.parametrize(("value", "expected"), [
    ("nope", "study 'nope' does not exist in this storage; existing studies: digits"),
    ("digits:0", "K must be a whole number from 1 to 100"),
    ("digits:many", "K must be a whole number from 1 to 100"),
    ("mnist", "a study cannot warm-start from itself"),
])
def test_bad_warm_start_sources(source: str, capsys: pytest.CaptureFixture[str], value: str, expected: str) -> None:
    code = main(["create", "--storage", source, "--study", "mnist", "--model", "cnn", "--dataset", "mnist-sample",
                 "--warm-start", value])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    names = [s.study_name for s in optuna.get_all_study_summaries(source, include_best_trial=False)]
    assert names == ["digits"]  # nothing created


def test_queued_configurations_must_fit_the_trial_budget(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Past the budget a worker would fail a queued configuration unrun: the command stops before queueing."""
    code = main(["create", "--storage", source, "--study", "mnist", "--model", "cnn", "--dataset", "mnist-sample",
                 "--trials", "1", "--warm-start", "digits:2"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2, err
    assert ("--warm-start digits:2 would queue 2 new configuration(s), but study 'mnist' has room for 1 more "
            "trial(s) (budget 1; 0 done, running or queued); pass --trials 2 or more") in err, err
    names = [s.study_name for s in optuna.get_all_study_summaries(source, include_best_trial=False)]
    assert names == ["digits"]


def test_configurations_the_study_holds_take_no_new_room(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    from hpsearch.errors import UsageError
    from hpsearch.search.launcher import create_or_resume
    from hpsearch.search.spec import StudySpec

    code = main(["create", "--storage", source, "--study", "mnist", "--model", "cnn", "--dataset", "mnist-sample",
                 "--trials", "2", "--warm-start", "digits:2"])
    assert code == 0, capsys.readouterr().err
    storage = optuna.storages.RDBStorage(source)
    spec = StudySpec.from_dict(optuna.load_study(study_name="mnist", storage=storage).user_attrs["hpsearch_spec"])
    study = create_or_resume(spec, storage, warm_start="digits:2")  # a resume asking the same: both held already
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2
    with pytest.raises(UsageError, match=r"--enqueue-defaults \(enqueue_defaults=True\) and --warm-start digits:2 "
                       r"would queue 1 new "
                       r"configuration\(s\), but study 'mnist' has room for 0 more trial\(s\) \(budget 2; 2 done, "
                       r"running or queued\); pass --trials 3 or more"):
        create_or_resume(spec, storage, enqueue_defaults=True, warm_start="digits:2")
    assert len(study.get_trials()) == 2  # nothing queued


def test_the_room_check_counts_as_optuna_queues() -> None:
    """A value of another type, or one further off than NumPy's tolerance, is a new configuration to Optuna."""
    from hpsearch.search.budget import _same_params

    assert _same_params({"units": 128, "lr": 0.001}, {"units": 128, "lr": 0.001 * (1 + 1e-7)})
    assert not _same_params({"units": 128, "lr": 0.001}, {"units": 128, "lr": 0.0011})
    assert not _same_params({"units": 128.0}, {"units": 128})  # a float beside an int: queued
    assert not _same_params({"units": 128}, {"units": 128, "lr": 0.001})  # other names: queued
    assert _same_params({"optimizer": "adam"}, {"optimizer": "adam"})


def test_the_room_check_names_the_argument_to_python_callers(tmp_path: Path) -> None:
    """`hpsearch.run()` takes no flags: its caller reads the keyword that makes room."""
    import hpsearch
    from hpsearch.errors import UsageError

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    hpsearch.run("resnet4", "mnist-sample", study="full", storage=url, trials=1, epochs=1, verbose=False)
    with pytest.raises(UsageError, match=r"room for 0 more trial\(s\) \(budget 1; 1 done, running or queued\); pass "
                       r"--trials 2 or more \(trials=2 to hpsearch.run\(\)\)"):
        hpsearch.run("resnet4", "mnist-sample", study="full", storage=url, trials=1, epochs=1, verbose=False,
                     enqueue_defaults=True)
    assert len(optuna.load_study(study_name="full", storage=url).trials) == 1  # nothing queued


def test_a_source_that_trained_without_the_cycle_is_named(source: str, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from hpsearch.search.spec import SPEC_ATTR

    digits = optuna.load_study(study_name="digits", storage=source)
    digits.set_user_attr(SPEC_ATTR, {"study": "digits", "model": "cnn"})  # stored before lr_peak: it trained at 1
    with caplog.at_level(logging.WARNING, logger="hpsearch"):
        assert main(["create", "--storage", source, "--study", "mnist", "--model", "cnn", "--dataset",
                     "mnist-sample", "--warm-start", "digits:1"]) == 0
        assert f"that study trained with lr_peak 1, this one with {DEFAULT_LR_PEAK:g}" in caplog.text
        caplog.clear()
        assert main(["create", "--storage", source, "--study", "same", "--model", "cnn", "--dataset",
                     "mnist-sample", "--set", "lr_peak=1", "--warm-start", "digits:1"]) == 0
        assert "lr_peak" not in caplog.text
