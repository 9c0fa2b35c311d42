"""The launcher's workers start before its checks end: they wait for their go, run as the launcher's workers once
they have it, and go when the checks fail."""

from __future__ import annotations

import io
import os
import time
import uuid
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from hpsearch.errors import UsageError
from hpsearch.search import launcher
from hpsearch.search.launcher import _EarlyWorkers, create_or_resume, launch
from hpsearch.search.spec import StudySpec
from hpsearch.search.worker import THREADS_ENV
from hpsearch.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _with_marker(marker: str) -> list[int]:
    """Live processes whose environment carries `marker` (the test's own process excluded)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        if int(environ.parent.name) == os.getpid():
            continue
        try:
            if marker.encode() in environ.read_bytes():
                if (environ.parent / "stat").read_text().split(")")[-1].split()[0] != "Z":
                    found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.integration
def test_an_early_worker_runs_the_trials_with_the_go_it_gets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    spec = StudySpec(study="early", model="resnet4", dataset="mnist-sample", train_size=500, epochs=1, trials=2,
                     batch_size=64)
    early = _EarlyWorkers(1, ["--study", "early", "--recycle", "0"])
    (proc,) = early.waiting
    try:
        # The study does not exist while the worker starts: it is created once the launcher's checks pass.
        create_or_resume(spec, open_storage(url), check=False)
        log_dir = tmp_path / "logs"
        log_dir.mkdir()
        env = {**os.environ, "HPSEARCH_STORAGE": url, "HPSEARCH_ARTIFACTS": str(tmp_path / "artifacts"),
               THREADS_ENV: "1"}
        assert early.hand_over(0, 0, env, log_dir) is proc and not early.waiting
        assert proc.wait(timeout=300) == 0
    finally:
        proc.kill()
    trials = optuna.load_study(study_name="early", storage=url).get_trials()
    assert len(trials) == 2 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials} == {str(proc.pid)}
    # TensorFlow applied the go's thread count (it was imported before the go arrived, its runtime not started).
    assert {t.user_attrs["threads"] for t in trials} == {1}
    log = (log_dir / "worker-0.log").read_text()
    assert "worker finished: 2 trial(s)" in log
    assert "TensorFlow started before its threads could be set" not in log


@pytest.mark.integration
def test_an_early_worker_without_a_go_ends_quietly() -> None:
    early = _EarlyWorkers(1, ["--study", "never", "--recycle", "0"])
    (proc,) = early.waiting
    try:
        assert proc.stdin is not None
        proc.stdin.close()  # the launcher stopped before its checks passed
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()


@pytest.mark.integration
def test_a_failed_check_ends_the_early_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = f"hpsearch-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("HPSEARCH_TEST_MARKER", marker)
    monkeypatch.chdir(tmp_path)
    real_open = launcher.open_or_create
    seen: list[int] = []

    def open_after_the_workers_started(*args: object, **kwargs: object) -> object:
        deadline = time.time() + 60
        while len(seen) < 2 and time.time() < deadline:  # both early workers are alive while the checks run
            seen[:] = _with_marker(marker)
            time.sleep(0.1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(launcher, "open_or_create", open_after_the_workers_started)
    spec = StudySpec(study="bad", model="resnet4", dataset="mnist-sample", train_size=500, epochs=1, trials=2,
                     fixed={"filters": 10_000})  # outside the builder's space: the real check refuses it
    with pytest.raises(UsageError, match="filters"):
        launch(spec, f"sqlite:///{tmp_path / 'hp.db'}", 2, Console(file=io.StringIO()))
    assert len(seen) == 2
    assert _with_marker(marker) == []  # gone as the launch failed, not later
    assert not (tmp_path / "hp.db").exists()


def test_turned_off_no_worker_starts_before_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPSEARCH_EARLY_START", "0")
    assert _EarlyWorkers(2, ["--study", "x"]).waiting == []
