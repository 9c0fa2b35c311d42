"""The circuit breaker: trials that keep failing the same way stop the study with the reason; it resumes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.errors import TrialFailed
from hpsearch.search import breaker
from hpsearch.search.worker import StudyStopped, run_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _failing(reason: str):
    def objective(trial: optuna.trial.Trial) -> float:
        trial.suggest_int("x", 0, 10)
        trial.set_user_attr(breaker.FAIL_REASON_ATTR, reason.format(n=trial.number))
        raise TrialFailed(reason)
    return objective


def test_three_failures_with_one_reason_stop_the_study(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="b", storage=f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(StudyStopped, match=r"trials 0, 1, 2 failed in a row with the same error: builder error: "
                                           r"bad value in trial 2"):
        run_trials(study, 50, _failing("builder error: bad value in trial {n}"), callbacks=[breaker.callback],
                   gc_after_trial=False)
    assert len(study.trials) == 3  # not 50, not forever
    assert breaker.stop_reason(study)["trials"] == [0, 1, 2]
    breaker.clear(study)
    assert breaker.stop_reason(study) is None


def test_different_reasons_and_diverged_runs_do_not_trip_it(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="b", storage=f"sqlite:///{tmp_path / 'b.db'}")
    reasons = iter(["A: one", "B: two", "A: one", "C: three"])

    def objective(trial: optuna.trial.Trial) -> float:
        reason = next(reasons, None)
        if reason is None:
            return 1.0
        trial.set_user_attr(breaker.FAIL_REASON_ATTR, reason)
        raise TrialFailed(reason)

    run_trials(study, 1, objective, callbacks=[breaker.callback], gc_after_trial=False)
    assert breaker.stop_reason(study) is None
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 4 + [TrialState.COMPLETE]

    diverged = optuna.create_study(study_name="d", storage=f"sqlite:///{tmp_path / 'b.db'}")
    left = iter(range(4))

    def diverging(trial: optuna.trial.Trial) -> float:
        if next(left, None) is None:
            return 1.0
        return _failing("training diverged: the loss became NaN/inf in epoch {n}")(trial)

    run_trials(diverged, 1, diverging, callbacks=[breaker.callback], gc_after_trial=False)
    assert breaker.stop_reason(diverged) is None and len(diverged.trials) == 5


def _differing(trial: optuna.trial.Trial) -> float:
    import uuid

    reason = f"error {uuid.uuid4().hex.translate(str.maketrans('0123456789', 'ghijklmnop'))}"
    trial.set_user_attr(breaker.FAIL_REASON_ATTR, reason)
    raise TrialFailed(reason)


def test_any_long_run_of_failures_stops_the_study(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="b", storage=f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(StudyStopped, match=f"the last {breaker.MAX_CONSECUTIVE_ANY} trials failed"):
        run_trials(study, 5, _differing, callbacks=[breaker.callback], gc_after_trial=False)
    assert len(study.trials) == breaker.MAX_CONSECUTIVE_ANY


def test_a_success_in_between_resets_the_count(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="b", storage=f"sqlite:///{tmp_path / 'b.db'}")
    outcomes = iter([False, False, True, False, False, True, True])

    def objective(trial: optuna.trial.Trial) -> float:
        if next(outcomes):
            return 1.0
        trial.set_user_attr(breaker.FAIL_REASON_ATTR, "E: same")
        raise TrialFailed("E: same")

    run_trials(study, 3, objective, callbacks=[breaker.callback], gc_after_trial=False)
    assert breaker.stop_reason(study) is None and len(study.trials) == 7


@pytest.mark.integration
def test_run_stops_a_broken_study_with_the_reason_and_resumes_once_fixed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A study whose stored set-up fails every trial (as older versions let in) ends with exit 1, not never."""
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    common = ["--storage", url, "--study", "broken", "--workers", "1", "--format", "json"]
    assert main(["create", *common[:4], "--model", "resnet4", "--dataset", "mnist-sample", "--train-size", "300",
                 "--epochs", "1", "--trials", "2", "--pruner", "none"]) == 0
    study = optuna.load_study(study_name="broken", storage=url)
    spec = dict(study.user_attrs["hpsearch_spec"])
    spec["fixed"] = {"activation": "no-such-activation"}
    study.set_user_attr("hpsearch_spec", spec)
    capsys.readouterr()

    code = main(["run", *common])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "stopped: trials 0, 1, 2 failed in a row with the same error: builder error:" in err
    assert "no-such-activation" in err and "Traceback" not in err
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3  # the budget of 2 was never the limit
    assert all("fail_traceback" in t.user_attrs for t in trials)

    code = main(["run", *common, "--set", "activation=relu"])  # fixed: the study resumes and completes
    assert code == 0, capsys.readouterr().err
    assert sum(t.state == TrialState.COMPLETE for t in study.get_trials()) == 2
    assert breaker.stop_reason(study) is None
