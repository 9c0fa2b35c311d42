"""Storage URLs, engines and the fast queries, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.storage import artifact_dir, mask_url, open_storage, resolve_url
from hpsearch.storage.queries import best, leaderboard, make_engine, state_counts, top_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTS = {"units": IntDistribution(64, 512, step=64), "lr": FloatDistribution(1e-4, 1e-2, log=True),
         "optimizer": CategoricalDistribution(["adam", "sgd", "rmsprop"])}


def fill(study: optuna.Study, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    trials = []
    for i in range(n):
        state = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL][i % 4]
        params = {"units": rng.randrange(64, 513, 64), "lr": 10 ** rng.uniform(-4, -2),
                  "optimizer": rng.choice(["adam", "sgd", "rmsprop"])}
        value = rng.random() if state != TrialState.FAIL else None
        trials.append(create_trial(state=state, value=value, params=params, distributions=DISTS,
                                   user_attrs={"test_accuracy": value, "i": i},
                                   intermediate_values={1: 0.1, 2: value or 0.2}))
    study.add_trials(trials)


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    assert resolve_url() == "sqlite:///hpsearch.db"
    monkeypatch.setenv("HPSEARCH_STORAGE", "sqlite:///env.db")
    assert resolve_url() == "sqlite:///env.db"
    assert resolve_url("sqlite:///flag.db") == "sqlite:///flag.db"
    with pytest.raises(UsageError, match="not a database URL"):
        resolve_url("hpsearch.db")


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql+psycopg://hp:s3cret@db:5432/hp") == "postgresql+psycopg://hp:***@db:5432/hp"
    assert "s3cret" not in mask_url("postgresql://hp:s3cret@[bad")


def test_artifact_dir_sits_beside_the_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPSEARCH_ARTIFACTS", raising=False)
    assert artifact_dir(f"sqlite:///{tmp_path}/runs.db") == tmp_path / "runs-artifacts"
    assert artifact_dir("sqlite:///x.db", str(tmp_path / "shared")) == tmp_path / "shared"


def test_unreachable_server_error_hides_the_password() -> None:
    from tests.postgres import free_port

    url = f"postgresql+psycopg://hp:TopSecret@127.0.0.1:{free_port()}/hp"
    with pytest.raises(HpsearchError) as info:
        open_storage(url)
    assert "TopSecret" not in str(info.value) and "cannot connect" in str(info.value)


def test_malformed_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="malformed"):
        open_storage("nosuchdb+driver://x:pw@h/db")


def test_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'w.db'}")
    with storage.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_incompatible_schema_names_the_upgrade_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    open_storage(url)
    engine = make_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = 'v1.2.0.a'")
    with pytest.raises(HpsearchError, match="optuna storage upgrade"):
        open_storage(url)


def test_queries_agree_with_optuna(storage_url: str) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(study_name="q", storage=storage, direction="maximize")
    fill(study, 60)
    engine = make_engine(storage_url)
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    expected = sorted(complete, key=lambda t: (-t.value, t.number))

    got = best(engine, "q")
    assert got["trial"] == study.best_trial.number and got["value"] == pytest.approx(study.best_value)
    assert got["params"] == study.best_trial.params and got["user_attrs"] == study.best_trial.user_attrs

    top = top_trials(engine, "q", limit=10)
    assert [r.trial for r in top] == [t.number for t in expected[:10]]
    assert all(r.params == t.params for r, t in zip(top, expected, strict=False))
    by_number = top_trials(engine, "q", limit=5, sort="number", states=["pruned"])
    assert [r.trial for r in by_number] == sorted(t.number for t in study.get_trials()
                                                  if t.state == TrialState.PRUNED)[:5]
    assert state_counts(engine, "q")["q"] == {"complete": 30, "pruned": 15, "fail": 15, "running": 0, "waiting": 0}


def test_leaderboard_respects_each_direction(storage_url: str) -> None:
    storage = open_storage(storage_url)
    up = optuna.create_study(study_name="up", storage=storage, direction="maximize")
    down = optuna.create_study(study_name="down", storage=storage, direction="minimize")
    fill(up, 20, seed=1)
    fill(down, 20, seed=2)
    rows = {r["study"]: r for r in leaderboard(make_engine(storage_url))}
    assert rows["up"]["trial"] == up.best_trial.number and rows["up"]["value"] == pytest.approx(up.best_value)
    assert rows["down"]["trial"] == down.best_trial.number
    assert rows["down"]["complete"] == 10


def test_unknown_study_lists_existing_ones(storage_url: str) -> None:
    storage = open_storage(storage_url)
    optuna.create_study(study_name="exists", storage=storage)
    with pytest.raises(UsageError, match="existing studies: exists"):
        best(make_engine(storage_url), "missing")


def _cheap_worker(url: str, budget: int, seed: int) -> None:
    from hpsearch.search.worker import run_trials
    from hpsearch.storage import open_storage as _open

    study = optuna.load_study(study_name="load", storage=_open(url),
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    run_trials(study, budget, lambda t: t.suggest_float("x", 0, 1) ** 2)


def test_four_local_workers_share_one_database_exactly(storage_url: str) -> None:
    optuna.create_study(study_name="load", storage=open_storage(storage_url))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_cheap_worker, args=(storage_url, 40, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    study = optuna.load_study(study_name="load", storage=storage_url)
    trials = study.get_trials()
    # Exactly the budget: no surplus trial (the study lock), no lock error, no trial left running.
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 40
    assert sorted(t.number for t in trials) == list(range(40))


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed(storage_url: str) -> None:
    import time

    import optuna
    from optuna.trial import TrialState

    from hpsearch.storage import fail_orphaned_trials, open_storage

    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="orphans", storage=storage)
    orphan = study.ask()  # created, never a heartbeat: what a worker killed right after creating it leaves
    beating = study.ask()
    assert fail_orphaned_trials(study) == []  # first seen without a heartbeat: the grace period starts now
    time.sleep(2.5)
    storage.record_heartbeat(beating._trial_id)
    fresh = study.ask()  # no heartbeat yet either, but first seen now
    assert fail_orphaned_trials(study) == [orphan.number]
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[orphan.number].state == TrialState.FAIL
    assert "before the trial's first heartbeat" in by_number[orphan.number].user_attrs["fail_reason"]
    assert by_number[beating.number].state == by_number[fresh.number].state == TrialState.RUNNING
    assert fail_orphaned_trials(study) == []
    # Without heartbeats no running trial has one: none is touched.
    plain = optuna.load_study(study_name="orphans", storage=open_storage(storage_url, heartbeat_interval=None))
    assert fail_orphaned_trials(plain) == []
    time.sleep(2.5)
    assert fail_orphaned_trials(plain) == []
    # `fresh` has now gone without a heartbeat for longer than the grace period, on this process's clock.
    assert fail_orphaned_trials(study) == [fresh.number]


def test_a_surplus_trial_fails_unrun_and_says_why() -> None:
    import time

    from hpsearch.search.worker import run_trials

    # A storage without the study lock (in memory): another worker's trial 0 runs, and trial 1 was queued past a
    # budget of 1 (as several workers creating trials at once can). Trial 1 must not run, and must say why.
    study = optuna.create_study()
    study.ask()
    study.enqueue_trial({"x": 0.5})
    ran: list[int] = []
    run_trials(study, 1, lambda t: ran.append(t.number) or t.suggest_float("x", 0, 1), deadline=time.time() + 1,
               gc_after_trial=False)
    surplus = study.get_trials()[1]
    assert ran == [] and surplus.state == TrialState.FAIL
    assert surplus.user_attrs["fail_reason"] == "the study already has its 1 trials; trial 1 was not run"


def test_a_queued_trial_is_taken_by_one_worker_and_a_dead_one_failed_once(storage_url: str) -> None:
    """Optuna checks a trial's state and then writes the new one; on SQLite (which ignores SELECT ... FOR UPDATE)
    workers taking the same queued trial at once both got it, and stale checks failing the same dead trial both
    queued its retry. Four threads with their own storages race for each of 60 queued trials, then for each of
    them again as stale checks: each change happens exactly once."""
    import threading

    storage = open_storage(storage_url)
    study = optuna.create_study(study_name="queued", storage=storage)
    for i in range(60):
        study.enqueue_trial({"x": i})
    ids = [t._trial_id for t in study.get_trials(deepcopy=False)]
    storages = [open_storage(storage_url) for _ in range(4)]
    barrier = threading.Barrier(len(storages))
    wins: dict[str, list[int]] = {"RUNNING": [], "FAIL": []}
    errors: list[BaseException] = []

    def take(worker_storage) -> None:
        try:
            for state in (TrialState.RUNNING, TrialState.FAIL):
                barrier.wait()
                for trial_id in ids:
                    try:
                        if worker_storage.set_trial_state_values(trial_id, state):
                            wins[state.name].append(trial_id)
                    except optuna.exceptions.UpdateFinishedTrialError:
                        pass  # failed by another thread first: what Optuna's stale check expects
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(s,)) for s in storages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(wins["RUNNING"]) == ids  # each queued trial taken once: no configuration runs twice
    assert sorted(wins["FAIL"]) == ids  # each failed once: one retry queued, not one per worker
    assert {t.state for t in optuna.load_study(study_name="queued", storage=storage_url).trials} == {TrialState.FAIL}


def test_a_worker_whose_trial_another_worker_ended_goes_on(tmp_path: Path) -> None:
    """A trial failed by another worker's stale check while it still runs here (its beats reached a slow storage
    after the grace period): telling its result fails, and the worker goes on with the next trial."""
    from hpsearch.search.worker import run_trials

    url = f"sqlite:///{tmp_path / 'ended.db'}"
    study = optuna.create_study(study_name="ended", storage=open_storage(url))
    other_worker = open_storage(url)

    def objective(trial: optuna.trial.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            other_worker.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return x

    assert run_trials(study, 3, objective, gc_after_trial=False) == 3  # the lost one is not counted
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3
