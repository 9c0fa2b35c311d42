"""SIGTERM and SIGHUP on `hpsearch run` stop its workers as Ctrl-C does; a killed launcher leaves no orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import record_reliability

pytestmark = pytest.mark.slow


def _start(tmp_path: Path, study: str) -> tuple[subprocess.Popen[str], str]:
    # 200 epochs of about a second each: the trial seen running is still running when the signal lands (with 12
    # epochs a fast machine finished it in the moment between the test seeing it and the signal).
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    cmd = [sys.executable, "-m", "hpsearch", "run", "--study", study, "--model", "resnet4", "--dataset",
           "mnist-sample", "--train-size", "1500", "--epochs", "200", "--set", "patience=200", "--trials", "2",
           "--workers", "1", "--pruner", "none", "--storage", url]
    # Its own session: a signal sent here reaches the launcher alone, never the test's process group. The default
    # dispositions, as in a terminal: a test run started under nohup (or `cmd &`) would hand SIGHUP (or SIGINT)
    # down ignored, and a launcher keeps an ignored SIGHUP ignored on purpose.
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_signals)
    return proc, url


def _default_signals() -> None:
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _running_trial(url: str, study: str, timeout: float = 300) -> optuna.trial.FrozenTrial:
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name=study, storage=url).get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            continue
        started = [t for t in trials if t.user_attrs.get("epoch", 0) >= 1 and "worker" in t.user_attrs]
        if started:
            return started[0]
    raise AssertionError("no trial started training")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its (dead) parent's reaper has exited too
        return f.read().split(")")[-1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_term_and_hup_stop_the_workers_and_the_study_resumes(tmp_path: Path, signum: int) -> None:
    proc, url = _start(tmp_path, "term")
    trial = _running_trial(url, "term")
    worker_pid = int(trial.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err[-2000:]
    assert f"{name}: stopping the workers" in out + err and "Traceback" not in err
    assert _wait_gone(worker_pid, 10), "the worker outlived its launcher"
    trials = optuna.load_study(study_name="term", storage=url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert next(t for t in trials if t.number == trial.number).state == TrialState.FAIL
    record_reliability(f"{name} on `hpsearch run` (1 worker)", faults=1, exit_code=proc.returncode,
                       worker_left=_alive(worker_pid), running=0, interrupted_trial_failed=1, errors=0)


def test_a_launcher_killed_with_sigkill_leaves_no_orphan(tmp_path: Path) -> None:
    proc, url = _start(tmp_path, "orphan")
    trial = _running_trial(url, "orphan")
    worker_pid = int(trial.user_attrs["worker"].rsplit(":", 1)[1])
    proc.kill()  # SIGKILL: no handler runs in the launcher
    proc.communicate(timeout=30)
    assert _wait_gone(worker_pid, 60), "the worker kept training after its launcher was killed"
    state = optuna.load_study(study_name="orphan", storage=url).get_trials()[trial.number].state
    assert state == TrialState.FAIL  # the worker recorded its trial before it stopped: nothing left RUNNING
    record_reliability("`kill -9` on the `hpsearch run` launcher", faults=1, worker_stopped=True,
                       interrupted_trial_state=state.name, errors=0)


def test_a_stop_whose_interrupt_was_swallowed_still_ends_the_trial_fail(tmp_path: Path) -> None:
    # The KeyboardInterrupt of a stop signal can land in a garbage-collector callback, where Python prints it and
    # goes on. What the signal handler leaves behind besides that interrupt (the flag) must still stop the trial:
    # here the flag is set alone, mid-training, as if its interrupt had been swallowed.
    from hpsearch.search.launcher import create_or_resume
    from hpsearch.search.objective import Objective
    from hpsearch.search.spec import StudySpec
    from hpsearch.search.worker import STOP_REQUESTED, open_study, run_trials
    from hpsearch.storage import open_storage

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    spec = StudySpec(study="swallowed", trials=2, epochs=60, pruner="none", model="resnet4", dataset="mnist-sample",
                     train_size=1000, batch_size=64, fixed={"patience": 60})
    storage = open_storage(url)
    create_or_resume(spec, storage)
    study, _ = open_study(spec.study, storage)

    finished = threading.Event()

    def stop_once_training() -> None:
        _running_trial(url, "swallowed")
        if not finished.is_set():  # never after the test: a set flag would stop every later in-process search
            STOP_REQUESTED.set()

    setter = threading.Thread(target=stop_once_training, daemon=True)
    setter.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_trials(study, spec.trials, Objective(spec))
    finally:
        finished.set()
        setter.join(timeout=1)
        STOP_REQUESTED.clear()
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert trials[0].user_attrs["epoch"] < spec.epochs, f"it trained on for {time.monotonic() - started:.0f}s"
