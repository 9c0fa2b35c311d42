"""hpsearch's own SQL reads Optuna's tables: a schema it was not written against is refused with what to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest

from hpsearch.cli import main
from hpsearch.errors import HpsearchError
from hpsearch.storage import open_storage, open_storage_read_only
from hpsearch.storage.optuna_compat import KNOWN_SCHEMA_VERSIONS, check_schema


def test_the_installed_optuna_writes_a_schema_hpsearch_knows(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'new.db'}")
    assert storage.get_current_version() in KNOWN_SCHEMA_VERSIONS


def test_an_unknown_schema_is_refused_by_every_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    db = tmp_path / "future.db"
    url = f"sqlite:///{db}"
    optuna.create_study(study_name="s", storage=url)
    with sqlite3.connect(db) as c:  # as a future Optuna would leave it
        c.execute("UPDATE alembic_version SET version_num = 'v9.9.9.z'")
    for opener in (open_storage_read_only, open_storage):  # Optuna's own check answers first here
        with pytest.raises(HpsearchError, match="optuna storage upgrade"):
            opener(url)
    # The read-only commands' SQL does not go through Optuna: ours answers.
    assert main(["studies", "--storage", url]) == 1
    assert "has Optuna schema v9.9.9.z; hpsearch reads schema v3.2.0.a" in capsys.readouterr().err
    check_schema(None, "x")  # a database without Optuna tables yet: nothing to check
    check_schema(KNOWN_SCHEMA_VERSIONS[0], "x")


def test_a_newer_optuna_schema_than_hpsearch_knows_is_refused(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from hpsearch.storage import optuna_compat

    url = f"sqlite:///{tmp_path / 'hp.db'}"
    optuna.create_study(study_name="s", storage=url)
    monkeypatch.setattr(optuna_compat, "KNOWN_SCHEMA_VERSIONS", ("v0.0.0.a",))  # as after an Optuna upgrade
    for opener in (open_storage_read_only, open_storage):
        with pytest.raises(HpsearchError, match="has Optuna schema v3.2.0.a; hpsearch reads schema v0.0.0.a"):
            opener(url)
