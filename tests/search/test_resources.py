"""The launcher's choice of workers x threads follows its rule: fewest rounds, most trials in the time left, fewer
workers for a learning sampler while few trials fit in a time budget."""

from __future__ import annotations

import math

import pytest

from hpsearch.search.resources import THROUGHPUT_KEPT, WORKER_MEMORY_GB, plan, single_thread_cost, speedup


def makespan(trials: int, workers: int, threads: int, cost: float = 1.0) -> float:
    return math.ceil(trials / workers) * cost / speedup(threads)


@pytest.mark.parametrize(("cores", "trials"), [(2, 1), (2, 3), (2, 4), (2, 6), (2, 50), (8, 5), (8, 12), (8, 100),
                                               (16, 20)])
def test_auto_takes_the_shortest_makespan_over_every_split(cores: int, trials: int) -> None:
    chosen = plan(cores, trials)
    splits = {w: makespan(trials, w, cores // w) for w in range(1, min(cores, trials) + 1)}
    assert chosen.threads == cores // chosen.workers
    assert splits[chosen.workers] == pytest.approx(min(splits.values()))
    # Ties go to more workers (more configurations in flight for the sampler and pruner).
    assert all(splits[w] > splits[chosen.workers] + 1e-9 for w in splits if w > chosen.workers)


def test_the_two_ends_on_two_cores() -> None:
    # Few long trials: one worker with both threads ends 3 trials in 3 / 1.8 rounds, not 2 rounds.
    few = plan(2, 3)
    assert (few.workers, few.threads) == (1, 2)
    assert "idle" in few.reason
    # Many cheap trials fill every round: one worker per core.
    many = plan(2, 40)
    assert (many.workers, many.threads) == (2, 1)
    assert "one per core" in many.reason
    # One trial: all cores for it.
    assert (plan(2, 1).workers, plan(2, 1).threads) == (1, 2)


def test_a_time_budget_counts_the_trials_that_fit() -> None:
    # A trial costs 700 s on one thread, 385 s on two: in 600 s only one worker with both threads finishes one.
    slow = plan(2, 100_000, seconds_left=600, trial_cost=700)
    assert (slow.workers, slow.threads) == (1, 2)
    assert "~1 trial(s) fit" in slow.reason
    # Cheap trials: 2 x 6 fit with one worker per core, 10 with one worker.
    cheap = plan(2, 100_000, seconds_left=600, trial_cost=100)
    assert (cheap.workers, cheap.threads) == (2, 1)
    assert "~12 trial(s) fit" in cheap.reason
    # Unmeasured cost: the trial count alone decides.
    assert plan(2, 100_000, seconds_left=600).workers == 2


@pytest.mark.parametrize(("cores", "workers"), [(2, 1), (4, 2), (8, 4), (16, 8)])
def test_a_learning_sampler_on_a_time_budget_takes_fewer_workers(cores: int, workers: int) -> None:
    # Cost not measured yet: the fewest workers whose trials per second keep THROUGHPUT_KEPT of one per core.
    chosen = plan(cores, 100_000, seconds_left=900, learning=True)
    assert (chosen.workers, chosen.threads) == (workers, cores // workers)
    kept = chosen.workers * speedup(chosen.threads) / cores
    assert kept >= THROUGHPUT_KEPT
    fewer = chosen.workers - 1
    assert fewer == 0 or fewer * speedup(cores // fewer) / cores < THROUGHPUT_KEPT
    assert "learning sampler" in chosen.reason and "not measured" in chosen.reason


def test_fewer_workers_only_while_few_trials_fit_in_the_budget() -> None:
    # 100 s trials: ~16 fit in 900 s with one worker; the sampler sees every result before its next trial.
    few = plan(2, 100_000, seconds_left=900, trial_cost=100, learning=True)
    assert (few.workers, few.threads) == (1, 2)
    assert "~16 trial(s) fit" in few.reason
    # 5 s trials: hundreds fit, parallel results cost the sampler little, one worker per core again.
    many = plan(2, 100_000, seconds_left=900, trial_cost=5, learning=True)
    assert (many.workers, many.threads) == (2, 1)
    # No time budget, or a sampler that does not learn: the makespan rule alone.
    assert plan(2, 40, learning=True).workers == 2
    assert plan(2, 100_000, seconds_left=900, learning=False).workers == 2
    # The user's choice still wins.
    assert plan(2, 100_000, seconds_left=900, learning=True, workers=2).workers == 2


def test_memory_caps_the_workers() -> None:
    capped = plan(16, 100, memory_gb=5 * WORKER_MEMORY_GB)
    assert capped.workers == 4 and capped.threads == 4  # 80% of the memory holds 4 workers
    assert "memory" in capped.reason
    assert plan(16, 100, memory_gb=0.1).workers == 1


def test_the_users_choice_wins() -> None:
    assert plan(2, 3, workers=2) == plan(2, 3, workers=2, threads=None)
    assert (plan(2, 3, workers=2).workers, plan(2, 3, workers=2).threads) == (2, 1)
    assert (plan(2, 3, workers=3, threads=2).workers, plan(2, 3, workers=3, threads=2).threads) == (3, 2)
    # Threads given, workers auto: as many workers as the cores hold at that many threads.
    given = plan(8, 100, threads=4)
    assert (given.workers, given.threads) == (2, 4)
    assert "4 thread(s) each" in given.reason


def test_single_thread_cost_weighs_each_trial_by_its_threads() -> None:
    assert single_thread_cost([]) is None
    assert single_thread_cost([(0.0, 1)]) is None
    assert single_thread_cost([(100.0, 1), (100.0, 2)]) == pytest.approx((100 + 100 * speedup(2)) / 2)


def test_the_eta_of_a_time_bounded_study_ends_with_its_time_budget() -> None:
    import datetime
    import time

    import optuna
    from optuna.trial import TrialState, create_trial

    from hpsearch.search.launcher import measure
    from hpsearch.search.spec import StudySpec

    spec = StudySpec(study="eta", model="cnn", trials=100_000, timeout=600)
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("hpsearch_started_at", time.time() - 100)
    start = datetime.datetime.now() - datetime.timedelta(seconds=100)
    for value in (0.5, 0.6):  # two trials of 50 s each
        trial = create_trial(state=TrialState.COMPLETE, value=value)
        trial.datetime_start, trial.datetime_complete = start, start + datetime.timedelta(seconds=50)
        study.add_trial(trial)
    progress = measure(study, spec, workers=2)
    assert progress.eta_seconds is not None and 490 <= progress.eta_seconds <= 500  # not 50 s x 99,998 / 2
    uncapped = StudySpec(study="eta", model="cnn", timeout=600)  # no --trials: the time is the whole budget
    assert uncapped.trials is None and 490 <= measure(study, uncapped, workers=2).eta_seconds <= 500
    untimed = StudySpec(study="eta", model="cnn", trials=10)
    assert measure(study, untimed, workers=2).eta_seconds == pytest.approx(50 * 8 / 2)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_progress_read_by_sql_matches_progress_read_through_optuna(tmp_path, direction: str) -> None:
    import datetime

    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from hpsearch.search.launcher import measure
    from hpsearch.search.service import progress_through_optuna
    from hpsearch.search.spec import StudySpec

    study = optuna.create_study(study_name="p", storage=f"sqlite:///{tmp_path / 'p.db'}", direction=direction)
    dist = {"x": FloatDistribution(0, 1)}
    for i, (state, value) in enumerate([(TrialState.COMPLETE, 0.5), (TrialState.COMPLETE, 0.9),
                                        (TrialState.PRUNED, None), (TrialState.FAIL, None),
                                        (TrialState.COMPLETE, 0.7)]):
        trial = create_trial(state=state, value=value, params={"x": i / 10}, distributions=dist,
                             intermediate_values={1: 0.3} if state == TrialState.PRUNED else None)
        trial.datetime_start = trial.datetime_complete - datetime.timedelta(seconds=7.5 * (i + 1))
        study.add_trial(trial)
    running = study.ask()
    running.set_user_attr("worker", "host:42")
    running.set_user_attr("epoch", 2)
    running.report(0.4, 1)
    running.report(0.6, 2)
    study.enqueue_trial({"x": 0.2})
    spec = StudySpec(study="p", model="cnn", trials=10, direction=direction)
    by_sql = measure(study, spec, workers=2)
    by_optuna, durations = progress_through_optuna(study, spec)
    assert by_sql.running_trials == by_optuna.running_trials == [
        {"trial": 5, "worker": "host:42", "epoch": 2, "last": 0.6}]
    for field in ("complete", "pruned", "failed", "running", "waiting", "best_value", "best_trial"):
        assert getattr(by_sql, field) == getattr(by_optuna, field), field
    assert (by_sql.complete, by_sql.pruned, by_sql.failed, by_sql.running, by_sql.waiting) == (3, 1, 1, 1, 1)
    assert by_sql.best_value == (0.9 if direction == "maximize" else 0.5)
    assert len(durations) == 4
    # The mean duration averaged in SQL gives the ETA the durations read through Optuna give.
    mean = sum(durations) / len(durations)
    assert mean == pytest.approx((7.5 + 15 + 22.5 + 37.5) / 4, abs=0.01)  # COMPLETE and PRUNED, not FAIL
    assert by_sql.eta_seconds == pytest.approx(mean * (spec.trials - by_sql.done) / 2, rel=1e-3, abs=1e-3)
