"""A real PostgreSQL server restarted, and its connections killed, while workers run: nothing is lost."""

from __future__ import annotations

import multiprocessing
import time

import optuna
import psycopg
import pytest
from optuna.trial import TrialState

from tests.conftest import TINY_BUILDER

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


def test_a_worker_started_while_the_server_is_down_waits_for_it(postgres_server, tmp_path) -> None:
    """A worker (re)started during a restart (a supervisor's restart, a recycled process, a pod) joins once the
    database is back instead of exiting."""
    import os
    import subprocess
    import sys

    from hpsearch.cli import main

    (tmp_path / "tiny.py").write_text(TINY_BUILDER)
    url = postgres_server.create_database()
    assert main(["create", "--storage", url, "--study", "late", "--model", str(tmp_path / "tiny.py") + ":build",
                 "--dataset", "mnist-sample", "--train-size", "300", "--epochs", "1", "--trials", "2",
                 "--pruner", "none"]) == 0
    postgres_server.stop_server("fast")
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "hpsearch", "worker", "--study", "late", "--storage", url,
                                   "--artifacts", str(tmp_path / "art")],
                                  cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=out,
                                  stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while "storage unreachable" not in log.read_text() and worker.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        postgres_server.start_server()
        code = worker.wait(timeout=300)
    text = log.read_text()
    assert "storage unreachable" in text and code == 0, text[-3000:]
    assert "cannot reach the storage postgresql+psycopg://postgres@127.0.0.1" in text and "waiting up to" in text
    states = [t.state for t in optuna.load_study(study_name="late", storage=url).get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE]


def _complete_in(url: str, name: str) -> int:
    study = optuna.load_study(study_name=name, storage=url)
    return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc: no extra dependency)."""
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def test_chaos_killed_workers_and_a_server_restart_lose_nothing(postgres_server, tmp_path) -> None:
    """`hpsearch run` and hand-started workers on one study; a supervisor kill -9s a random worker every few
    seconds (restarting the hand-started ones; the launcher respawns its own) and the server restarts once."""
    import os
    import random
    import signal
    import subprocess
    import sys

    (tmp_path / "tiny.py").write_text(TINY_BUILDER)
    url = postgres_server.create_database()
    trials = 24
    env = {**os.environ, "HPSEARCH_STORAGE": url, "PYTHONWARNINGS": "ignore"}
    timing = ["--heartbeat-interval", "1", "--grace-period", "4"]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "run", "--study", "chaos", "--model", "tiny.py:build", "--dataset",
         "mnist-sample", "--train-size", "1000", "--epochs", "4", "--trials", str(trials), "--pruner", "none",
         "--workers", "1", "--artifacts", str(tmp_path / "art"), *timing],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    logs = []
    started: dict[int, float] = {}  # hand-started worker's pid -> when

    def start_worker() -> subprocess.Popen[bytes]:
        logs.append(tmp_path / f"hand-{len(logs)}.log")
        with logs[-1].open("w") as log:
            worker = subprocess.Popen([sys.executable, "-m", "hpsearch", "worker", "--study", "chaos", *timing],
                                      cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        started[worker.pid] = time.time()
        return worker

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            _complete_in(url, "chaos")
            break
        except Exception:  # not created yet
            time.sleep(0.5)
    hand = [start_worker(), start_worker()]
    rng = random.Random(0)
    kills = {"hand": 0, "launcher's": 0}
    restarted = False
    # The chaos keeps pace with the study, not the clock: a kill every 6 s, or sooner once 2 more trials completed,
    # so that a fast machine cannot finish the study before the kills happened.
    last_kill, done_at_kill = time.time(), 0
    deadline = time.time() + 600
    while launcher.poll() is None and time.time() < deadline:
        time.sleep(1)
        try:
            done = _complete_in(url, "chaos")
        except Exception:  # the server is still coming back
            continue
        if not restarted and done >= trials // 3:
            postgres_server.stop_server("fast")
            time.sleep(3)
            postgres_server.start_server()
            restarted = True
            continue
        if sum(kills.values()) >= 6 or done >= trials - 3:
            continue  # enough chaos; let the study finish
        if time.time() - last_kill < 6 and done - done_at_kill < 2:
            continue
        theirs = _children(launcher.pid) if kills["launcher's"] < 2 else []  # the launcher respawns 3 at most
        # A hand-started worker is a victim once it had time to start a trial, not while it imports TensorFlow.
        victims = [("hand", i) for i, p in enumerate(hand)
                   if p.poll() is None and time.time() - started[p.pid] > 8] + [("launcher's", pid)
                                                                                    for pid in theirs]
        if not victims:
            continue
        kind, which = rng.choice(victims)
        if kind == "hand":
            hand[which].kill()
            hand[which].wait()
            hand[which] = start_worker()
        else:
            os.kill(which, signal.SIGKILL)
        kills[kind] += 1
        last_kill, done_at_kill = time.time(), done
    out, _ = launcher.communicate(timeout=300)
    codes = [p.wait(timeout=300) for p in hand]

    study = optuna.load_study(study_name="chaos", storage=url)
    all_trials = study.get_trials()
    states = [t.state for t in all_trials]
    from tests.conftest import record_reliability

    record_reliability("chaos: kill -9 of random workers (hand-started and the launcher's) every 6 s or 2 trials + "
                       "a PostgreSQL restart", faults=sum(kills.values()) + 1, workers=3, expected_complete=trials,
                       found_complete=states.count(TrialState.COMPLETE), running=states.count(TrialState.RUNNING),
                       failed=states.count(TrialState.FAIL), launcher_exit_code=launcher.returncode,
                       worker_exit_codes=codes, errors=int(launcher.returncode != 0) + sum(c != 0 for c in codes))
    assert restarted and sum(kills.values()) >= 3, kills
    assert states.count(TrialState.FAIL) >= 1, "no kill interrupted a trial"
    assert launcher.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert codes == [0, 0], "\n\n".join(f"{log.name}:\n{log.read_text()[-1500:]}" for log in logs)
    assert states.count(TrialState.COMPLETE) == trials
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    for t in all_trials:
        if t.state == TrialState.COMPLETE:
            assert t.value is not None and 0.0 <= t.value <= 1.0 and set(t.params) >= {"units"}
            assert t.user_attrs["val_accuracy"] == pytest.approx(t.value, abs=1e-6)
