"""The default sampler and pruner: rungs from epoch 1, TPE's start-up sized by the budget (no training here)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpsearch.errors import UsageError
from hpsearch.search.spec import StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _spec(**kw: object) -> StudySpec:
    return StudySpec(study="s", model="cnn", **kw)


def _study(spec: StudySpec) -> optuna.Study:
    # Named: Hyperband assigns a trial's bracket by hashing the study's name with the trial's number, and an
    # unnamed study gets a random name (brackets, so what is pruned where, would change from run to run).
    return optuna.create_study(study_name="s", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                               pruner=spec.make_pruner())


def _run(study: optuna.Study, curve: list[float]) -> tuple[optuna.trial.TrialState, int]:
    """Reports `curve` epoch by epoch as a trial would; returns its end state and the last epoch it reported."""
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return optuna.trial.TrialState.PRUNED, epoch
    study.tell(trial, max(curve))
    return optuna.trial.TrialState.COMPLETE, len(curve)


def test_default_pruner_decides_at_epoch_1_and_keeps_the_top_third() -> None:
    spec = _spec(epochs=9)
    assert spec.pruner == "successive-halving"
    study = _study(spec)
    assert _run(study, [0.90, 0.95, 0.97, 0.98]) == (optuna.trial.TrialState.COMPLETE, 4)
    # Worse than the only trial at epoch 1: stopped there, not at epoch 2.
    assert _run(study, [0.50, 0.99, 0.99]) == (optuna.trial.TrialState.PRUNED, 1)
    assert _run(study, [0.60, 0.70]) == (optuna.trial.TrialState.PRUNED, 1)
    # Best at epoch 1 among what reached it: goes on to the next rung.
    state, epoch = _run(study, [0.95, 0.96, 0.975, 0.98])
    assert state == optuna.trial.TrialState.COMPLETE and epoch == 4


@pytest.mark.parametrize("pruner", ["hyperband", "median"])
def test_other_pruners_may_also_decide_at_epoch_1(pruner: str) -> None:
    spec = _spec(epochs=9, pruner=pruner)
    study = _study(spec)
    for _ in range(4):
        _run(study, [0.9, 0.95, 0.97])
    pruned_at = [epoch for state, epoch in (_run(study, [0.1, 0.99, 0.99]) for _ in range(6))
                 if state == optuna.trial.TrialState.PRUNED]
    assert pruned_at and min(pruned_at) == 1


def test_no_pruner_prunes_nothing() -> None:
    study = _study(_spec(epochs=3, pruner="none"))
    _run(study, [0.9, 0.95, 0.97])
    assert _run(study, [0.1, 0.1, 0.1]) == (optuna.trial.TrialState.COMPLETE, 3)


@pytest.mark.parametrize(("trials", "startup"), [(6, 4), (20, 4), (60, 6), (100, 10), (100_000, 10)])
def test_tpe_start_up_is_a_tenth_of_the_budget_within_bounds(trials: int, startup: int) -> None:
    assert _spec(trials=trials).tpe_startup_trials() == startup


def test_a_time_budget_alone_caps_no_trials() -> None:
    """`--timeout` without `--trials`: the time is the whole budget, and TPE gets its full random start-up."""
    timed = _spec(timeout=600)
    assert timed.trials is None and timed.trial_budget >= 10**9
    assert timed.tpe_startup_trials() == 10
    assert timed.budget_text() == "600 s"
    assert StudySpec.from_dict(timed.to_dict()).trials is None  # stored and read back as it was made
    assert (_spec().trials, _spec().budget_text(), _spec().tpe_startup_trials()) == (20, "20 trials", 4)
    both = _spec(trials=30, timeout=90.4)
    assert (both.trial_budget, both.budget_text()) == (30, "30 trials or 90 s")


def test_a_worker_runs_past_the_default_trial_count_when_the_time_is_the_budget(tmp_path: Path) -> None:
    """The worker loop, given a timed study's budget, starts trial after trial: none stops it at 20."""
    from hpsearch.search.spec import DEFAULT_TRIALS
    from hpsearch.search.worker import STOP_REQUESTED, run_trials

    spec = _spec(timeout=600)
    study = optuna.create_study(study_name="t", storage=f"sqlite:///{tmp_path / 't.db'}", direction="maximize")
    wanted = DEFAULT_TRIALS + 5

    def objective(trial: optuna.trial.Trial) -> float:
        if trial.number + 1 >= wanted:
            STOP_REQUESTED.set()  # as Ctrl-C would: the loop stops before its next trial
        return trial.suggest_float("x", 0.0, 1.0)

    try:
        with pytest.raises(KeyboardInterrupt):
            run_trials(study, spec.trial_budget, objective, gc_after_trial=False)
    finally:
        STOP_REQUESTED.clear()
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == wanted
    # The same loop with the default budget ends by itself at 20 (past 24 the objective would stop it).
    capped = optuna.create_study(study_name="c", storage=f"sqlite:///{tmp_path / 't.db'}", direction="maximize")
    try:
        assert run_trials(capped, _spec().trial_budget, objective, gc_after_trial=False) == DEFAULT_TRIALS
    finally:
        STOP_REQUESTED.clear()


def test_a_grid_search_on_a_time_budget_ends_when_every_point_is_tried(tmp_path: Path) -> None:
    """Optuna's grid sampler would try its points again; with no trial cap nothing else would stop the worker."""
    from hpsearch.search.worker import run_trials

    study = optuna.create_study(study_name="g", storage=f"sqlite:///{tmp_path / 'g.db'}", direction="maximize",
                                sampler=optuna.samplers.GridSampler({"x": [1, 2, 3]}, seed=0))
    assert run_trials(study, _spec(timeout=600).trial_budget, lambda t: t.suggest_categorical("x", [1, 2, 3]),
                      gc_after_trial=False) == 3
    assert sorted(t.params["x"] for t in study.trials) == [1, 2, 3]


def test_keras_tuner_engine_refuses_a_time_budget(capsys: pytest.CaptureFixture[str]) -> None:
    from hpsearch.cli import main

    assert main(["tune", "--study", "k", "--model", "cnn", "--timeout", "60"]) == 2
    assert "drop --timeout and give --trials N" in capsys.readouterr().err


def test_tpe_is_seeded_per_worker() -> None:
    """One seed and offset draws the same configurations again; another worker's offset draws others."""
    spec = _spec(trials=20, seed=3)

    def draws(sampler: optuna.samplers.BaseSampler) -> list[float]:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        values = []
        for _ in range(spec.tpe_startup_trials() + 4):  # past the random start-up: TPE's own draws too
            trial = study.ask()
            x = trial.suggest_float("x", 0.0, 1.0)
            values.append(x)
            study.tell(trial, -((x - 0.5) ** 2))
        return values

    first = draws(spec.make_sampler())
    assert draws(spec.make_sampler()) == first
    assert not set(draws(spec.make_sampler(seed_offset=1))) & set(first)


def _draws(sampler: optuna.samplers.BaseSampler, n: int) -> list[float]:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    values = []
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        values.append(x)
        study.tell(trial, -((x - 0.5) ** 2))
    return values


def test_sampler_options_reach_the_sampler() -> None:
    """TPE's start-up draws are its random sampler's: with `n_startup_trials=2` TPE's own draws begin at the third
    trial, with the default (4 for 20 trials) at the fifth."""
    random_draws = _draws(optuna.samplers.RandomSampler(seed=3), 5)
    default = _draws(_spec(trials=20, seed=3).make_sampler(), 5)
    two = _draws(_spec(trials=20, seed=3, sampler_options={"n_startup_trials": 2}).make_sampler(), 5)
    assert default[:4] == random_draws[:4] and two[:2] == random_draws[:2]
    assert two[2] != random_draws[2]


def test_univariate_tpe_drops_group_too() -> None:
    """`group` needs `multivariate`: turning multivariate off turns group off rather than failing."""
    sampler = _spec(sampler_options={"multivariate": False}).make_sampler()
    assert len(_draws(sampler, 6)) == 6
    assert not sampler._multivariate and not sampler._group  # the options the constructor received


def test_sampler_options_add_to_a_spec_file(tmp_path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("study: s\nmodel: cnn\nsampler_options: {n_startup_trials: 3}\n")
    spec = StudySpec.load(path, {"sampler_options": {"multivariate": False}})
    assert spec.sampler_options == {"n_startup_trials": 3, "multivariate": False}


def test_an_unknown_sampler_option_names_only_the_options_a_user_can_give() -> None:
    """The list leaves out what the check would refuse next: functions (no spec holds them) and options Optuna
    deprecates (they warn when given, and would break stored studies at Optuna 6)."""
    with pytest.raises(UsageError) as caught:
        _spec(sampler_options={"n_startup": 5})
    listed = str(caught.value).split("its options: ")[1].split(", ")
    assert {"n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar"} <= set(listed)
    assert not {"gamma", "weights", "constraints_func", "consider_prior", "prior_weight"} & set(listed)
    for name in listed:  # each one named is taken
        value = {"n_startup_trials": 4, "n_ei_candidates": 8, "group": False}.get(name, True)
        _spec(sampler_options={name: value})
