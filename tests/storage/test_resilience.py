"""A real PostgreSQL server restarted, and its connections killed, while workers run: nothing is lost."""

from __future__ import annotations

import multiprocessing
import time

import optuna
import psycopg
import pytest
from optuna.trial import TrialState

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N = 60


def _slow_objective(trial: optuna.trial.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.25)
    trial.report(x, 1)
    trial.set_user_attr("echo", x)
    return x


def _worker(url: str, seed: int) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from hpsearch.search.worker import run_trials
    from hpsearch.storage import open_storage

    study = optuna.load_study(study_name="r", storage=open_storage(url, heartbeat_interval=1, grace_period=4),
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    run_trials(study, N, _slow_objective, gc_after_trial=False)


def _complete(url: str) -> int:
    study = optuna.load_study(study_name="r", storage=url)
    return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def _run_with_fault(postgres_server, fault) -> tuple[optuna.Study, list[int | None]]:
    from hpsearch.storage import open_storage

    url = postgres_server.create_database()
    optuna.create_study(study_name="r", storage=open_storage(url), direction="maximize")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(url, i)) for i in range(3)]
    for p in procs:
        p.start()
    deadline = time.time() + 120
    while _complete(url) < 15 and time.time() < deadline:
        time.sleep(0.5)
    fault()
    for p in procs:
        p.join(600)
    return optuna.load_study(study_name="r", storage=url), [p.exitcode for p in procs]


def _check(study: optuna.Study, exit_codes: list[int | None], scenario: str) -> None:
    from tests.conftest import record_reliability

    trials = study.get_trials()
    record_reliability(scenario, faults=1, workers=3, expected_complete=N,
                       found_complete=sum(t.state == TrialState.COMPLETE for t in trials),
                       running=sum(t.state == TrialState.RUNNING for t in trials),
                       failed=sum(t.state == TrialState.FAIL for t in trials),
                       worker_exit_codes=exit_codes, errors=sum(c != 0 for c in exit_codes))
    assert exit_codes == [0, 0, 0]
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == N
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert len({t.number for t in trials}) == len(trials)
    for t in trials:  # every completed trial intact: value, intermediate value and attribute agree
        if t.state == TrialState.COMPLETE:
            assert t.value == t.params["x"] == t.intermediate_values[1] == t.user_attrs["echo"]


def test_server_restart_mid_study(postgres_server) -> None:
    def restart() -> None:
        postgres_server.stop_server("fast")
        time.sleep(3)
        postgres_server.start_server()

    study, codes = _run_with_fault(postgres_server, restart)
    _check(study, codes, "PostgreSQL stopped and restarted while 3 workers run")


def test_all_connections_terminated_mid_study(postgres_server) -> None:
    def terminate() -> None:
        with psycopg.connect(f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname=postgres",
                             autocommit=True) as c:
            killed = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE pid <> pg_backend_pid() AND datname IS NOT NULL AND datname <> 'postgres'"
                               ).fetchone()[0]
        assert killed >= 3

    study, codes = _run_with_fault(postgres_server, terminate)
    _check(study, codes, "pg_terminate_backend of every connection while 3 workers run")


TINY_BUILDER = '''
import keras


def build(hp):
    units = hp.Int("units", 8, 32)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''


def test_launcher_and_its_workers_survive_a_server_restart(postgres_server, tmp_path) -> None:
    """`hpsearch run` itself (progress loop, respawns, final summary) waits out a restart as its workers do."""
    import os
    import subprocess
    import sys

    (tmp_path / "tiny.py").write_text(TINY_BUILDER)
    url = postgres_server.create_database()
    trials = 16
    env = {**os.environ, "HPSEARCH_STORAGE": url, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch", "run", "--study", "outage", "--model", "tiny.py:build",
                             "--dataset", "mnist-sample", "--train-size", "1000", "--epochs", "4", "--trials",
                             str(trials), "--pruner", "none", "--workers", "2", "--heartbeat-interval", "1",
                             "--grace-period", "4", "--artifacts", str(tmp_path / "art")],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if _complete_in(url, "outage") >= 2:
                break
        except Exception:  # the study is not created yet
            pass
        time.sleep(0.5)
    assert proc.poll() is None, "the run ended before the fault: trials are too short for this test"
    postgres_server.stop_server("fast")
    time.sleep(5)  # several progress polls fail
    postgres_server.start_server()
    out, _ = proc.communicate(timeout=600)

    study = optuna.load_study(study_name="outage", storage=url)
    states = [t.state for t in study.get_trials()]
    from tests.conftest import record_reliability

    record_reliability("PostgreSQL restarted under `hpsearch run` (launcher + 2 workers)", faults=1, workers=2,
                       expected_complete=trials, found_complete=states.count(TrialState.COMPLETE),
                       running=states.count(TrialState.RUNNING), failed=states.count(TrialState.FAIL),
                       launcher_exit_code=proc.returncode, errors=int(proc.returncode != 0))
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert "storage unreachable" in out and "progress resumes" in out, out[-3000:]
    assert states.count(TrialState.COMPLETE) == trials
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert f"{trials} complete" in out


def _complete_in(url: str, name: str) -> int:
    study = optuna.load_study(study_name=name, storage=url)
    return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
