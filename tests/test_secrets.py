"""Secrets never printed: `redact` on every form a password takes, and the storage messages built on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.cli import main
from hpsearch.errors import HpsearchError, UsageError
from hpsearch.storage import mask_url, open_storage, open_storage_read_only, redact, resolve_url
from hpsearch.storage.queries import make_engine, study_names

SECRET = "S3cretPw"
READ_COMMANDS = [["status", "--study", "s"], ["studies"], ["best", "--study", "s"], ["trials", "--study", "s"],
                 ["leaderboard"]]


@pytest.mark.parametrize(("text", "expected"), [
    (f"postgresql+psycopg://hp:{SECRET}@db:5432/hp", "postgresql+psycopg://hp:***@db:5432/hp"),
    (f"cannot connect to storage postgresql://hp:{SECRET}@db/hp: refused", "postgresql://hp:***@db/hp: refused"),
    (f"x-unknown+drv://hp:{SECRET}@[bad", "x-unknown+drv://hp:***@[bad"),  # unparsable: masked all the same
    (f"storage 'user:{SECRET}@127.0.0.1:5432/db' is not", "storage 'user:***@127.0.0.1:5432/db' is not"),
    (f"postgresql://hp:p@ss{SECRET}@db/hp", "postgresql://hp:***@db/hp"),  # an unencoded '@' in the password
    (f"postgresql://hp:pa/ss{SECRET}@db/hp", "postgresql://hp:***@db/hp"),  # an unencoded '/' in the password
    (f"postgresql://hp@db/hp?password={SECRET}&sslmode=require", "postgresql://hp@db/hp?password=***&sslmode=require"),
    (f"host=db user=hp password={SECRET} dbname=hp", "host=db user=hp password=*** dbname=hp"),
    (f"host=db password='two {SECRET}' dbname=hp", "host=db password=*** dbname=hp"),
    (f"sslpassword={SECRET} PASSWORD = {SECRET}", "sslpassword=*** PASSWORD = ***"),
    (f"url=(postgresql://hp:{SECRET}@db/hp)", "url=(postgresql://hp:***@db/hp)"),
    (f"postgresql+psycopg://hp:se?{SECRET}#x@127.0.0.1:1/hp", "postgresql+psycopg://hp:***@127.0.0.1:1/hp"),
    (f"'postgresql+psycopg://hp:it's{SECRET}@127.0.0.1:1/hp'", "'postgresql+psycopg://hp:***@127.0.0.1:1/hp'"),
])
def test_redact_masks_every_form_of_password(text: str, expected: str) -> None:
    masked = redact(text)
    assert SECRET not in masked
    assert expected in masked


@pytest.mark.parametrize("text", [
    "sqlite:///hpsearch.db", "sqlite:////abs/dir@x/run.db", "postgresql+psycopg://hp@db:5432/hp",
    "trial 3 @ worker-1 epoch 2/3", "2026-11-21 12:00:00,123 hpsearch INFO trial 3 finished",
    "postgresql+psycopg://hp:***@db/hp", "use postgresql+psycopg://USER:PASSWORD@HOST:5432/DB",
])
def test_redact_leaves_text_without_secrets_alone(text: str) -> None:
    assert redact(text) == text


def test_mask_url_masks_like_redact() -> None:
    assert mask_url(f"postgresql+psycopg://hp:{SECRET}@db:5432/hp") == "postgresql+psycopg://hp:***@db:5432/hp"
    assert SECRET not in mask_url(f"postgresql://hp:{SECRET}@[bad")


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_url_without_scheme_is_refused_with_the_password_masked(
        command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPSEARCH_STORAGE", f"user:{SECRET}@127.0.0.1:5432/db")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and len(err.strip().splitlines()) == 1
    assert "scheme seems missing" in err and "postgresql+psycopg://user:***@127.0.0.1:5432/db" in err


def test_storage_messages_are_masked_before_the_cli_sees_them() -> None:
    """The storage module masks its own messages: callers other than the CLI print them too."""
    with pytest.raises(UsageError) as info:
        resolve_url(f"user:{SECRET}@127.0.0.1:5432/db")
    assert SECRET not in str(info.value) and "user:***@" in str(info.value)
    from tests.postgres import free_port

    url = f"postgresql+psycopg://hp:{SECRET}@127.0.0.1:{free_port()}/hp"  # nobody listens there
    for call in (lambda: study_names(make_engine(url, read_only=True)), lambda: open_storage_read_only(url),
                 lambda: open_storage(url)):
        with pytest.raises(HpsearchError) as failed:
            call()
        assert SECRET not in str(failed.value)
        assert "hp:***@127.0.0.1" in str(failed.value) and "Connection refused" in str(failed.value)


@pytest.mark.parametrize("url", [f"mysql://hp:{SECRET}@db/hp", f"mysql+pymysql://hp:{SECRET}@db/hp",
                                 f"mariadb+mariadbconnector://hp:{SECRET}@db/hp"])
def test_mysql_is_refused_by_name(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["studies", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "MySQL/MariaDB is not supported as a study storage" in err and "advisory locks" in err
    assert "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB" in err and "sqlite:///FILE" in err
    assert SECRET not in err and "malformed" not in err
    with pytest.raises(UsageError, match="MySQL/MariaDB is not supported"):
        open_storage(url)  # `run` and workers too


def test_unknown_scheme_lists_the_supported_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["best", "--study", "s", "--storage", f"oracle://hp:{SECRET}@db/hp"]) == 2
    err = capsys.readouterr().err
    assert "unknown database 'oracle'" in err and "sqlite:///FILE" in err and "postgresql+psycopg://" in err
    assert SECRET not in err


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?cache=shared&uri=true"])
def test_in_memory_sqlite_is_refused(url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="worker processes cannot share"):
        open_storage(url)
    assert main(["status", "--study", "s", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "in-memory" in err and "use sqlite:///FILE" in err
    assert list(tmp_path.iterdir()) == []


def test_a_resolved_storage_password_is_masked_anywhere(tmp_path: Path) -> None:
    """The configured storage's password is masked even where no URL pattern shows it (a driver's message)."""
    odd = f"it's a {SECRET}"
    try:
        resolve_url(f"postgresql+psycopg://hp:{odd.replace(' ', '%20')}@127.0.0.1:1/hp")
    except UsageError:
        pass
    assert SECRET not in redact(f"FATAL: password authentication failed, got {odd}")


def test_a_failed_trial_keeps_its_reason_and_traceback_without_the_password() -> None:
    import optuna

    from hpsearch.search.objective import Objective

    study = optuna.create_study()
    trial = study.ask()
    try:
        raise RuntimeError("cannot reach postgresql://ann:S3cret@db.example/data")
    except RuntimeError as exc:
        error = Objective._fail(trial, f"builder error: {exc}", exc)
    attrs = study.trials[0].user_attrs
    assert "S3cret" not in attrs["fail_reason"] and "S3cret" not in attrs["fail_traceback"]
    assert "S3cret" not in str(error)
    assert "postgresql://ann:***@db.example/data" in attrs["fail_reason"]
    assert "RuntimeError" in attrs["fail_traceback"]
