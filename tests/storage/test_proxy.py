"""`hpsearch proxy` (Optuna's gRPC storage proxy) in front of a real database, with real worker processes: the
exact budget holds without the database lock, a killed worker's trial is failed from its heartbeats (carried
through the proxy) and retried, and commands that read the database say to use the database's URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from hpsearch.errors import HpsearchError, UsageError
from tests.conftest import ROOT
from tests.postgres import free_port

# A worker of a cheap objective on the proxy: hpsearch's worker loop, heartbeats every second, dead after 3 s.
WORKER = """
import sys, time
sys.path.insert(0, {root!r})
import optuna
from hpsearch.storage import open_storage
from hpsearch.search.worker import run_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = open_storage(sys.argv[1], heartbeat_interval=1, grace_period=3)
study = optuna.load_study(study_name="p", storage=storage)
sleep = float(sys.argv[3])

def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    print("started", trial.number, flush=True)
    time.sleep(sleep)
    return x

print("ran", run_trials(study, int(sys.argv[2]), objective, gc_after_trial=False), flush=True)
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hp.db'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def proxy(database: str, tmp_path: Path) -> Iterator[str]:
    optuna.create_study(study_name="p", storage=database)
    port = free_port()
    # Started with SIGTERM ignored, as some supervisors and CI runners hand it down (and as a container's first
    # process effectively has it): the proxy must still stop on SIGTERM, checked at the end.
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch", "proxy", "--storage", database, "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_ignore_sigterm)
    address = f"grpc://127.0.0.1:{port}"
    lines = _lines_until(proc, address, timeout=60)
    assert address in lines[-1], "".join(lines)
    deadline = time.time() + 30
    while True:  # listening once a client gets an answer
        try:
            from hpsearch.storage.proxy import open_proxy

            open_proxy(address)
            break
        except HpsearchError:
            assert time.time() < deadline and proc.poll() is None, "the proxy did not start"
            time.sleep(0.2)
    yield address
    proc.terminate()  # SIGTERM, as Kubernetes stops it
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the proxy did not stop within 30 s of SIGTERM")
    assert proc.returncode == 0 and "proxy stopped" in out, out


def _ignore_sigterm() -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _lines_until(proc: subprocess.Popen[str], text: str, timeout: float) -> list[str]:
    """The process's output lines up to the first that holds `text` (or all it printed in `timeout` seconds)."""
    import select

    lines: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline and not (lines and text in lines[-1]):
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    return lines or [""]


def _workers(address: str, tmp_path: Path, n: int, budget: int, sleep: float) -> list[subprocess.Popen[str]]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT)))
    return [subprocess.Popen([sys.executable, str(script), address, str(budget), str(sleep)], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"}) for _ in range(n)]


@pytest.mark.integration
def test_six_workers_through_the_proxy_run_exactly_the_budget(proxy: str, database: str, tmp_path: Path) -> None:
    workers = _workers(proxy, tmp_path, 6, budget=40, sleep=0.05)
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    trials = optuna.load_study(study_name="p", storage=database).trials
    states = Counter(t.state.name for t in trials)
    assert states["COMPLETE"] == 40 and states["RUNNING"] == 0 and states["WAITING"] == 0, states
    assert all(t.value == t.params["x"] for t in trials if t.state.name == "COMPLETE")
    # Surplus trials (created by several workers at once after the last place went) end FAIL without running.
    started = sum(o.count("started ") for o in outputs)
    assert started == 40 and states["FAIL"] == len(trials) - 40


@pytest.mark.integration
def test_a_killed_workers_trial_is_failed_from_its_heartbeats_and_retried(proxy: str, database: str,
                                                                          tmp_path: Path) -> None:
    [victim] = _workers(proxy, tmp_path, 1, budget=4, sleep=600)
    started = victim.stdout.readline()
    assert started.startswith("started 0"), started
    time.sleep(1.5)  # it has beaten at least once through the proxy
    victim.kill()
    victim.wait()
    survivors = _workers(proxy, tmp_path, 2, budget=4, sleep=0.1)
    outputs = [w.communicate(timeout=300)[0] for w in survivors]
    assert all(w.returncode == 0 for w in survivors), outputs
    trials = optuna.load_study(study_name="p", storage=database).trials
    states = Counter(t.state.name for t in trials)
    assert states["COMPLETE"] == 4 and states["RUNNING"] == 0, states
    killed = trials[0]
    assert killed.state.name == "FAIL" and "hpsearch:heartbeat" in killed.system_attrs
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number or
               t.system_attrs.get("retry_history") == [killed.number]]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == killed.params  # the same configuration, run again


def test_commands_that_read_the_database_need_its_url(tmp_path: Path) -> None:
    from hpsearch.storage.proxy import open_proxy, proxy_address
    from hpsearch.storage.queries import make_engine

    with pytest.raises(UsageError, match="pass the database's URL"):
        make_engine("grpc://127.0.0.1:13000")
    with pytest.raises(UsageError, match="is not grpc://HOST:PORT"):
        proxy_address("grpc://127.0.0.1")
    assert proxy_address("grpc://[::1]:13000") == ("::1", 13000)
    port = free_port()  # nothing listens there
    with pytest.raises(HpsearchError, match=f"no hpsearch proxy answers at grpc://127.0.0.1:{port}.*hpsearch proxy"):
        open_proxy(f"grpc://127.0.0.1:{port}")


def test_the_proxy_serves_a_database_not_another_proxy(tmp_path: Path) -> None:
    from hpsearch.storage.proxy import serve

    with pytest.raises(UsageError, match="not another proxy's"):
        serve("grpc://127.0.0.1:13000")


def test_a_database_outage_behind_the_proxy_is_an_outage_for_the_workers() -> None:
    import grpc
    import sqlalchemy.exc

    from hpsearch.storage import caused_by_storage
    from hpsearch.storage.proxy import OUTAGE_MARK, _OutagesMarked

    class Down:
        def get_all_studies(self) -> list:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    # The proxy's side: a database error leaves the servicer with the mark in its text.
    with pytest.raises(RuntimeError, match=OUTAGE_MARK) as raised:
        _OutagesMarked(Down()).get_all_studies()

    class Reply(grpc.RpcError):  # what a worker's client raises: gRPC's UNKNOWN with the server's exception text
        def __init__(self, code: grpc.StatusCode, details: str) -> None:
            self._code, self._details = code, details

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return self._details

    assert caused_by_storage(Reply(grpc.StatusCode.UNKNOWN, f"Exception calling application: {raised.value}"))
    assert caused_by_storage(Reply(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert not caused_by_storage(Reply(grpc.StatusCode.UNKNOWN, "Exception calling application: ValueError: x"))
    assert not caused_by_storage(Reply(grpc.StatusCode.NOT_FOUND, "no such trial"))
