"""The commands that only look at studies open the storage read-only: they create no database, change no journal
mode, add no index or table, and turn every bad storage into one line that says what to do."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.storage import load_study_read_only, open_storage, open_storage_read_only
from hpsearch.storage.queries import make_engine, study_names

optuna.logging.set_verbosity(optuna.logging.WARNING)

ROOT = Path(__file__).resolve().parents[2]
READ_COMMANDS = [["status", "--study", "s"], ["studies"], ["best", "--study", "s"], ["trials", "--study", "s"],
                 ["leaderboard"]]
SPEC = {"study": "s", "model": "cnn", "dataset": "mnist-sample", "trials": 5, "epochs": 3, "metric": "val_accuracy",
        "direction": "maximize", "sampler": "grid"}  # grid: the old `status` built the search space with Keras


def _ids(command: list[str]) -> str:
    return command[0]


def make_study(url: str) -> None:
    """A study as hpsearch stores it (spec attribute, three completed trials), written by plain Optuna."""
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.set_user_attr("hpsearch_spec", SPEC)
    study.add_trials([create_trial(state=TrialState.COMPLETE, value=v, params={"lr": v / 100},
                                   distributions={"lr": FloatDistribution(0, 1)}, user_attrs={"test_accuracy": v})
                      for v in (0.5, 0.9, 0.7)])


@pytest.fixture
def plain_db(tmp_path: Path) -> Path:
    """A plain Optuna SQLite database: rollback journal, none of hpsearch's indexes."""
    path = tmp_path / "plain.db"
    make_study(f"sqlite:///{path}")
    return path


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def sqlite_facts(path: Path) -> tuple[str, list[str]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        mode = c.execute("PRAGMA journal_mode").fetchone()[0]
        names = [r[0] for r in c.execute("SELECT name FROM sqlite_master ORDER BY name")]
    return mode, names


@pytest.mark.parametrize("command", READ_COMMANDS, ids=_ids)
def test_read_commands_leave_a_plain_optuna_database_as_it_was(
        command: list[str], plain_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, facts = snapshot(plain_db.parent), sqlite_facts(plain_db)
    assert main([*command, "--storage", f"sqlite:///{plain_db}"]) == 0, capsys.readouterr().err
    assert "0.9" in capsys.readouterr().out
    assert snapshot(plain_db.parent) == before  # same bytes, and no new file (-wal, -shm, lock) beside it
    assert sqlite_facts(plain_db) == facts and facts[0] == "delete"
    assert not [n for n in facts[1] if n.startswith("ix_hpsearch")]


def test_the_dashboard_shows_a_plain_optuna_database_without_tuning_it(plain_db: Path) -> None:
    from hpsearch.search.dashboard import dashboard_storage

    facts = sqlite_facts(plain_db)
    storage = dashboard_storage(f"sqlite:///{plain_db}")
    assert [s.study_name for s in storage.get_all_studies()] == ["s"]
    storage.engine.dispose()
    assert sqlite_facts(plain_db) == facts and facts[0] == "delete"  # no WAL switch, no index of ours
    assert not [n for n in facts[1] if n.startswith("ix_hpsearch")]
    # What the workers open is tuned: the check above can fail.
    open_storage(f"sqlite:///{plain_db}").engine.dispose()
    assert sqlite_facts(plain_db) != facts


@pytest.mark.parametrize("command", READ_COMMANDS, ids=_ids)
def test_a_typo_in_the_sqlite_path_creates_nothing(command: list[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "hpserch.db"
    assert main([*command, "--storage", f"sqlite:///{typo}"]) == 2
    err = capsys.readouterr().err
    assert f"no study database at {typo}; check --storage / $HPSEARCH_STORAGE, or create a study with `hpsearch run`" \
        in err
    assert list(tmp_path.iterdir()) == []


def test_the_default_storage_is_not_created_either(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    assert main(["studies"]) == 2
    assert "no study database at" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", READ_COMMANDS, ids=_ids)
def test_a_directory_is_not_a_sqlite_file(command: list[str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--storage", f"sqlite:///{tmp_path}"]) == 2
    assert f"{tmp_path} is a directory, not a SQLite file" in capsys.readouterr().err
    with pytest.raises(UsageError, match="is a directory, not a SQLite file"):
        open_storage(f"sqlite:///{tmp_path}")


NOT_SQLITE = r"is not a SQLite database \((file is not a database|database disk image is malformed)\); point --storage"


def _garbage(path: Path) -> None:
    path.write_bytes(b"these are notes, not a database\n" * 200)


def _truncated(path: Path) -> None:
    make_study(f"sqlite:///{path}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.parametrize("damage", [_garbage, _truncated], ids=["not-sqlite", "truncated"])
@pytest.mark.parametrize("command", READ_COMMANDS, ids=_ids)
def test_a_file_that_is_not_a_study_database_is_one_line(
        command: list[str], damage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.db"
    damage(path)
    before = snapshot(tmp_path)
    assert main([*command, "--storage", f"sqlite:///{path}"]) == 2
    err = capsys.readouterr().err
    assert f"{path} is not a SQLite database (" in err
    assert "point --storage at a study database or move the file away" in err and len(err.splitlines()) == 1
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("damage", [_garbage, _truncated], ids=["not-sqlite", "truncated"])
def test_the_read_write_entry_points_say_the_same(damage, tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    damage(path)
    url = f"sqlite:///{path}"
    before = snapshot(tmp_path)
    for call in (lambda: open_storage(url), lambda: study_names(make_engine(url))):  # `run`, workers, `delete`
        with pytest.raises(UsageError, match=NOT_SQLITE):
            call()
    assert snapshot(tmp_path)["notes.db"] == before["notes.db"]


def test_a_wal_database_is_read_and_stays_wal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    make_study(url)
    open_storage(url).engine.dispose()  # the read-write path: WAL and indexes, as `run` leaves it
    assert sqlite_facts(tmp_path / "wal.db")[0] == "wal"
    for command in READ_COMMANDS:
        assert main([*command, "--storage", url]) == 0, capsys.readouterr().err
    assert sqlite_facts(tmp_path / "wal.db")[0] == "wal"
    assert {p.name for p in tmp_path.iterdir()} <= {"wal.db", "wal.db-wal", "wal.db-shm", "wal.db.init-lock"}


_AS_READER = """
import contextlib, io, os, pwd, sys
from hpsearch.cli import main
warm, target = sys.argv[1:3]
with contextlib.redirect_stdout(io.StringIO()):  # imports everything the commands need while files are readable
    for command in (["studies", "--format", "json"], ["best", "--study", "s", "--format", "json"]):
        assert main([*command, "--storage", warm]) == 0
if os.geteuid() == 0:  # root writes anywhere: read as `nobody`, for whom the directory is read-only
    nobody = pwd.getpwnam("nobody")
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
sys.exit(main(["best", "--study", "s", "--format", "json", "--storage", target]))
"""


def test_a_wal_database_in_a_read_only_directory_is_read(tmp_path: Path) -> None:
    """No writer has it open, so there is no -shm file, and the directory forbids creating one."""
    import shutil
    import tempfile

    make_study(f"sqlite:///{tmp_path / 'warm.db'}")
    shared = Path(tempfile.mkdtemp(prefix="hpsearch-ro-"))  # outside pytest's root-only temp dir
    try:
        db = shared / "wal.db"
        make_study(f"sqlite:///{db}")
        open_storage(f"sqlite:///{db}").engine.dispose()  # WAL, as `run` leaves it; closed: no -wal, no -shm
        assert sorted(p.name for p in shared.iterdir()) == ["wal.db", "wal.db.init-lock"]
        db.chmod(0o444)
        shared.chmod(0o555)
        result = subprocess.run([sys.executable, "-c", _AS_READER, f"sqlite:///{tmp_path / 'warm.db'}",
                                 f"sqlite:///{db}"], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["value"] == 0.9
        assert sorted(p.name for p in shared.iterdir()) == ["wal.db", "wal.db.init-lock"]
        assert sqlite_facts(db)[0] == "wal"
    finally:
        shared.chmod(0o755)
        shutil.rmtree(shared)


def test_read_only_storage_cannot_write(plain_db: Path) -> None:
    url = f"sqlite:///{plain_db}"
    with make_engine(url, read_only=True).connect() as c, pytest.raises(sqlalchemy.exc.OperationalError,
                                                                          match="readonly"):
        c.exec_driver_sql("CREATE INDEX ix_probe ON trials (number)")
    storage = open_storage_read_only(url)
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        optuna.create_study(study_name="new", storage=storage)
    assert "readonly" in str(refused.value.__cause__)
    assert load_study_read_only("s", url).user_attrs["hpsearch_spec"] == SPEC
    with pytest.raises(UsageError, match="study 'nope' does not exist; existing studies: s"):
        load_study_read_only("nope", url)


def test_the_read_write_path_keeps_wal_and_indexes(plain_db: Path) -> None:
    open_storage(f"sqlite:///{plain_db}").engine.dispose()
    mode, names = sqlite_facts(plain_db)
    assert mode == "wal" and "ix_hpsearch_trials_study_state" in names


def test_status_imports_no_tensorflow_and_builds_no_sampler(plain_db: Path) -> None:
    """A grid study: building its sampler needs the model's search space, i.e. Keras and TensorFlow."""
    code = ("import json, sys\nfrom hpsearch.cli import main\n"
            f"rc = main(['status', '--study', 's', '--format', 'json', '--storage', 'sqlite:///{plain_db}'])\n"
            "print(json.dumps({'rc': rc, 'loaded': sorted(m for m in ('tensorflow', 'keras', 'keras_tuner') "
            "if m in sys.modules)}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last == {"rc": 0, "loaded": []}, result.stderr[-2000:]
    status = json.loads(result.stdout[: result.stdout.rindex("{")])
    assert (status["complete"], status["budget"], status["best_value"]) == (3, 5, 0.9)


def _break_json(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("UPDATE study_user_attributes SET value_json = '{\"model\": cnn' WHERE key = 'hpsearch_spec'")
        c.execute("UPDATE trial_user_attributes SET value_json = 'not json' WHERE key = 'test_accuracy'")


@pytest.mark.parametrize("command", [["studies", "--format", "json"], ["best", "--study", "s", "--format", "json"],
                                     ["trials", "--study", "s", "--format", "json"]], ids=_ids)
def test_an_attribute_that_is_not_json_is_left_out_with_a_warning(
        command: list[str], plain_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _break_json(plain_db)
    assert main([*command, "--storage", f"sqlite:///{plain_db}"]) == 0
    captured = capsys.readouterr()
    assert "is not valid JSON" in captured.err and "Traceback" not in captured.err
    out = json.loads(captured.out)
    rows = out if isinstance(out, list) else [out]
    assert rows and all("test_accuracy" not in r.get("user_attrs", {}) for r in rows)
    if command[0] == "studies":
        assert rows[0]["model"] is None and rows[0]["best_value"] == 0.9
    else:
        assert rows[0]["value"] == 0.9


def test_status_on_an_attribute_that_is_not_json_is_one_line(plain_db: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    _break_json(plain_db)
    assert main(["status", "--study", "s", "--storage", f"sqlite:///{plain_db}"]) == 1
    err = capsys.readouterr().err
    assert "holds an attribute that is not valid JSON" in err and len(err.splitlines()) == 1


@pytest.mark.postgres
def test_postgres_database_that_does_not_exist(postgres_server, capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_server.url("no_such_db").replace("postgres@", "postgres:S3cretPw@")
    for command in READ_COMMANDS:
        assert main([*command, "--storage", url]) == 2
        err = capsys.readouterr().err
        assert 'database "no_such_db" does not exist' in err and "holds no studies" not in err
        assert f"createdb -h 127.0.0.1 -p {postgres_server.port} -U postgres no_such_db" in err
        assert "S3cretPw" not in err
    with pytest.raises(UsageError, match='database "no_such_db" does not exist'):
        open_storage(url)  # `run` says the same


@pytest.mark.postgres
def test_postgres_database_without_studies(postgres_server, capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_server.create_database()
    for command in READ_COMMANDS:
        assert main([*command, "--storage", url]) == 2
        assert "holds no studies yet (run `hpsearch run` first)" in capsys.readouterr().err
    engine = make_engine(url)
    with engine.connect() as c:  # and nothing was created: Optuna's tables are still missing
        assert c.exec_driver_sql("SELECT to_regclass('public.studies')").scalar() is None
    engine.dispose()


@pytest.mark.postgres
def test_postgres_read_only_sessions_refuse_writes(postgres_server, capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_server.create_database()
    make_study(url)
    for command in READ_COMMANDS:
        assert main([*command, "--storage", url]) == 0, capsys.readouterr().err
    engine = make_engine(url, read_only=True)
    with engine.connect() as c, pytest.raises(sqlalchemy.exc.InternalError, match="read-only transaction"):
        c.exec_driver_sql("CREATE INDEX ix_probe ON trials (number)")
    engine.dispose()


def test_a_study_whose_time_is_its_budget_reads_as_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Created with --timeout and no --trials: `status` and `studies` count its trials against the time, not 20."""
    monkeypatch.setenv("COLUMNS", "200")  # the table's cells on one line each
    url = f"sqlite:///{tmp_path / 'timed.db'}"
    make_study(url)
    study = optuna.load_study(study_name="s", storage=url)
    study.set_user_attr("hpsearch_spec", {**SPEC, "trials": None, "timeout": 600.0})
    assert main(["status", "--study", "s", "--format", "json", "--storage", url]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["complete"], status["budget"], status["timeout"]) == (3, None, 600.0)
    assert main(["status", "--study", "s", "--storage", url]) == 0
    text = capsys.readouterr().out
    assert "3 done" in text and "3/" not in text
    assert main(["studies", "--storage", url]) == 0
    assert "3 in 600 s" in capsys.readouterr().out
