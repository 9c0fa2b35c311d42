"""Many workers created at the same instant on one new study: exactly one study, no errors."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import optuna
import pytest

from tests.conftest import record_reliability

# Real processes or real training: `make test-slow` (integration) runs them.
pytestmark = pytest.mark.integration


def _join(url: str, barrier, errors) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from hpsearch.search.launcher import create_or_resume
        from hpsearch.search.spec import StudySpec
        from hpsearch.storage import open_storage

        barrier.wait()
        create_or_resume(StudySpec(study="same", model="resnet4", trials=5), open_storage(url))
    except Exception as exc:
        errors.put(f"{type(exc).__name__}: {exc}")


def _race(url: str, n: int) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_join, args=(url, barrier, errors)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found + [f"exit {p.exitcode}" for p in procs if p.exitcode != 0]


def test_eight_workers_create_one_sqlite_study_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    errors = _race(url, 8)
    studies = [s.study_name for s in optuna.get_all_study_summaries(url)]
    record_reliability("8 workers create one new study at the same instant (SQLite)", workers=8,
                       studies_found=len(studies), errors=len(errors))
    assert errors == [] and studies == ["same"]


@pytest.mark.postgres
def test_sixteen_workers_create_one_postgres_study_at_once(postgres_server) -> None:
    url = postgres_server.create_database()
    errors = _race(url, 16)
    studies = [s.study_name for s in optuna.get_all_study_summaries(url)]
    record_reliability("16 workers create one new study at the same instant (PostgreSQL)", workers=16,
                       studies_found=len(studies), errors=len(errors))
    assert errors == [] and studies == ["same"]
