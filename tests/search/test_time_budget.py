"""A study's budget once it is spent, and where its time starts: the first run, not `hpsearch create`."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from hpsearch.errors import HpsearchError
from hpsearch.search.service import STARTED_ATTR, StudyService, start_clock
from hpsearch.search.spec import StudySpec
from tests.conftest import run_cli

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _create(tmp_path: Path, name: str, *budget: str) -> tuple[str, optuna.Study]:
    """A study made by `hpsearch create` (real checks) with `budget` (`--timeout 60`, `--trials 1`)."""
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    created = run_cli("create", "--storage", url, "--study", name, "--model", "resnet4", "--dataset", "mnist-sample",
                      "--epochs", "1", *budget, cwd=tmp_path)
    assert created.returncode == 0, created.stderr[-2000:]
    return url, optuna.load_study(study_name=name, storage=url)


def _spec(study: optuna.Study) -> StudySpec:
    return StudySpec.from_dict(study.user_attrs["hpsearch_spec"])


def _add_trial(study: optuna.Study) -> None:
    study.add_trial(optuna.trial.create_trial(
        params={"filters": 4}, distributions={"filters": optuna.distributions.IntDistribution(2, 8)}, value=0.9))


def test_a_created_study_starts_its_time_at_its_first_run(tmp_path: Path) -> None:
    """Created now and run in an hour, a study with --timeout 60 still gets its 60 s."""
    from hpsearch.search.worker import _window

    _, study = _create(tmp_path, "later", "--timeout", "60")
    assert STARTED_ATTR not in study.user_attrs
    assert StudyService(study, _spec(study)).seconds_left() == 60
    before = time.time()
    start, deadline = _window(study, _spec(study))  # what a worker started by hand on the study does
    assert before <= start <= time.time() and deadline == start + 60
    assert study.user_attrs[STARTED_ATTR] == start
    assert start_clock(study) == start  # started once: a second worker or a resume shares the clock


def test_a_spent_time_budget_starts_nothing_and_says_how_to_go_on(tmp_path: Path) -> None:
    url, study = _create(tmp_path, "spent", "--timeout", "60")
    _add_trial(study)
    study.set_user_attr(STARTED_ATTR, time.time() - 100)
    before = time.monotonic()
    ran = run_cli("run", "--storage", url, "--study", "spent", cwd=tmp_path, timeout=300)
    took = time.monotonic() - before
    assert ran.returncode == 0, ran.stderr[-2000:]
    out = " ".join(ran.stdout.split())
    assert "has spent its time budget (60 s" in out, out
    gives = re.search(r"--timeout (\d+) gives it 60 s more", out)
    assert gives and 159 <= int(gives.group(1)) <= 161 + took, out  # 100 s spent + 60 s more
    assert "starting" not in out  # no worker started
    assert len(study.get_trials()) == 1


def test_a_study_without_a_trial_starts_its_clock_at_its_run_even_if_an_older_create_started_it(
        tmp_path: Path) -> None:
    """Studies created before the clock waited for the first run have it from their creation."""
    from hpsearch.search.launcher import budget_spent

    _, study = _create(tmp_path, "old", "--timeout", "60")
    study.set_user_attr(STARTED_ATTR, time.time() - 3600)
    service = StudyService(study, _spec(study))
    assert budget_spent(study, _spec(study), service.progress())  # as the study stands, spent
    start_clock(study, restart=not service.progress().total)  # what `run` and the API do first
    assert budget_spent(study, _spec(study), service.progress()) is None
    assert 55 <= service.seconds_left() <= 60


def test_a_spent_trial_budget_starts_nothing_and_says_how_to_go_on(tmp_path: Path) -> None:
    url, study = _create(tmp_path, "full", "--trials", "1")
    _add_trial(study)
    ran = run_cli("run", "--storage", url, "--study", "full", cwd=tmp_path, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    out = " ".join(ran.stdout.split())
    assert "has spent its trial budget (1/1 trials done)" in out and "--trials 11 runs 10 more" in out, out
    assert "starting" not in out and len(study.get_trials()) == 1


def test_workers_that_end_with_time_left_are_a_failure(tmp_path: Path) -> None:
    """A timed study has no trial count to fall short of: its workers ending before the deadline is the sign."""
    from hpsearch.search.launcher import _outcome, create_or_resume

    spec = StudySpec(study="timed", model="resnet4", dataset="mnist-sample", timeout=600)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 't.db'}")
    study = create_or_resume(spec, storage, check=False)
    start_clock(study)
    with pytest.raises(HpsearchError, match=r"0 trials done and (59\d|600) s of the time budget left"):
        _outcome(study, spec, {}, 1, tmp_path, Console(quiet=True))
    study.set_user_attr(STARTED_ATTR, time.time() - 601)  # the deadline passed: the workers ended as they should
    assert _outcome(study, spec, {}, 1, tmp_path, Console(quiet=True)).done == 0


def test_the_api_runs_nothing_on_a_spent_study_and_logs_why(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    import hpsearch

    url, study = _create(tmp_path, "api", "--timeout", "60")
    _add_trial(study)
    study.set_user_attr(STARTED_ATTR, time.time() - 100)
    with caplog.at_level(logging.WARNING, logger="hpsearch"):
        hpsearch.run("resnet4", "mnist-sample", study="api", storage=url, timeout=60, epochs=1, verbose=False,
                     artifacts=str(tmp_path / "art"))
    assert "has spent its time budget (60 s" in caplog.text
    assert len(study.get_trials()) == 1


def _crashing_worker(index: int, serial: int) -> subprocess.Popen[bytes]:
    """A worker process that exits at once with an error (a broken environment, a builder that kills Python)."""
    return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])


@pytest.mark.parametrize(("spent", "respawned", "gave_up"), [(0, 3, True), (601, 0, False)])
def test_crashed_workers_are_respawned_only_while_time_is_left(tmp_path: Path, spent: int, respawned: int,
                                                              gave_up: bool) -> None:
    """Three respawns per worker while the study has time; past its deadline a respawned worker would only exit."""
    from hpsearch.search.launcher import _watch, create_or_resume

    spec = StudySpec(study="crash", model="resnet4", dataset="mnist-sample", timeout=600)
    study = create_or_resume(spec, optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'c.db'}"), check=False)
    study.set_user_attr(STARTED_ATTR, time.time() - spent)
    starts: list[int] = []

    def spawn(index: int, serial: int) -> subprocess.Popen[bytes]:
        starts.append(serial)
        return _crashing_worker(index, serial)

    procs = {0: _crashing_worker(0, 0)}
    assert _watch(study, spec, procs, 1, 0, spawn, tmp_path, Console(quiet=True), None) is gave_up
    assert len(starts) == respawned and not procs


def test_a_timed_grid_search_whose_workers_kept_crashing_is_a_failure(tmp_path: Path) -> None:
    """A grid on a time budget may end early by being exhausted; workers given up on are not that."""
    from hpsearch.search.launcher import _outcome, create_or_resume

    spec = StudySpec(study="grid", model="resnet4", dataset="mnist-sample", timeout=600, sampler="grid")
    study = create_or_resume(spec, optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'g.db'}"), check=False)
    start_clock(study)
    assert _outcome(study, spec, {}, 1, tmp_path, Console(quiet=True)).done == 0  # exhausted: workers exit 0
    with pytest.raises(HpsearchError, match=r"the workers stopped with 0 trials done and (59\d|600) s of the time "
                       "budget left"):
        _outcome(study, spec, {}, 1, tmp_path, Console(quiet=True), gave_up=True)


def test_a_resume_that_changes_the_budget_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`--model` describes the study anew: a budget it leaves out is the default, not the stored one."""
    from hpsearch.search.launcher import create_or_resume

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'b.db'}")
    create_or_resume(StudySpec(study="b", model="resnet4", dataset="mnist-sample", trials=20), storage, check=False)
    with caplog.at_level(logging.WARNING, logger="hpsearch"):
        create_or_resume(StudySpec(study="b", model="resnet4", dataset="mnist-sample", trials=20), storage,
                         check=False)
        assert "budget" not in caplog.text  # the same budget: nothing to say
        create_or_resume(StudySpec(study="b", model="resnet4", dataset="mnist-sample", timeout=600), storage,
                         check=False)
    assert "study 'b': budget 20 trials -> 600 s, from the flags or spec given (`--study b` alone keeps the " \
           "stored one)" in caplog.text


def test_a_resume_stopped_by_a_check_says_no_budget_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A resume the checks refuse changes nothing, so it announces no new budget."""
    from optuna.distributions import IntDistribution

    from hpsearch.errors import UsageError
    from hpsearch.search.launcher import create_or_resume

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'b.db'}")
    earlier = optuna.create_study(study_name="a", storage=storage, direction="maximize")
    for units, value in ((64, 0.9), (128, 0.95)):
        earlier.add_trial(optuna.trial.create_trial(params={"units": units}, value=value,
                                                    distributions={"units": IntDistribution(32, 256)}))
    create_or_resume(StudySpec(study="b", model="resnet4", dataset="mnist-sample", trials=20), storage, check=False)
    with caplog.at_level(logging.WARNING, logger="hpsearch"), pytest.raises(UsageError, match="room for 1 more"):
        create_or_resume(StudySpec(study="b", model="resnet4", dataset="mnist-sample", trials=1), storage,
                         check=False, warm_start="a:2")
    assert "budget" not in caplog.text
    assert StudySpec.from_stored(optuna.load_study(study_name="b", storage=storage).user_attrs["hpsearch_spec"]
                                 ).trials == 20  # the stored budget stands
