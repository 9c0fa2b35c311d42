"""Ctrl-C on `hpsearch run`: workers stop cleanly, running trials end FAIL, the same command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import record_reliability

# Real processes or real training: `make test-slow` (integration) runs them.
pytestmark = pytest.mark.integration


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    cmd = [sys.executable, "-m", "hpsearch", "run", "--study", "ctrlc", "--model", "resnet4", "--dataset",
           "mnist-sample", "--train-size", "1500", "--epochs", "12", "--set", "patience=10", "--trials", "4",
           "--workers", "2", "--pruner", "none", "--storage", url]
    # Trials of at least 11 epochs: one seen at epoch 2 is still running when the signal arrives.
    # A terminal's Ctrl-C reaches the whole foreground process group: the launcher and its workers.
    # A test run started as a background job (`cmd &` in a script) inherits SIGINT ignored, and so would the run;
    # a terminal's foreground job has the default disposition, which is the case tested here.
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)
    deadline = time.time() + 300
    running = []
    # Both workers mid-training: neither is between creating a trial and its first heartbeat when Ctrl-C lands.
    while time.time() < deadline and len(running) < 2:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="ctrlc", storage=url)
            running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if t.user_attrs.get("epoch", 0) >= 2]
        except KeyError:
            continue
    assert len(running) == 2, "the two workers never trained at the same time"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in out + err
    trials = optuna.load_study(study_name="ctrlc", storage=url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.state == TrialState.FAIL for t in trials if t.number in {r.number for r in running})
    completed_before = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}

    resumed = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = optuna.load_study(study_name="ctrlc", storage=url).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    for number, value in completed_before.items():  # nothing already completed was lost or changed
        assert next(t for t in trials if t.number == number).value == value
    record_reliability("Ctrl-C on `hpsearch run` (2 workers), then the same command again", faults=1,
                       expected_complete=4, found_complete=sum(t.state == TrialState.COMPLETE for t in trials),
                       interrupted_trials_failed=len(running), completed_before_kept=len(completed_before),
                       running=sum(t.state == TrialState.RUNNING for t in trials), errors=0)
