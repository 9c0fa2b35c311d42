"""One storage outage, as every process that waits for the database lives it (workers, the launcher's progress loop
and its final reads): announced once, waited out, its end told; other errors are not waited for; it gives up after
its limit, saying what to do. Here the outage is a real one: an SQLite database whose directory appears later."""

from __future__ import annotations

import pytest
import sqlalchemy

from hpsearch.errors import HpsearchError
from hpsearch.storage import Outage, _rdb


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_rdb, "STORAGE_RETRY_SECONDS", 0.02)


def _query(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT 42")).scalar_one()


def test_an_outage_is_announced_once_waited_out_and_its_end_told(tmp_path, quick_retries) -> None:
    db = tmp_path / "not-yet" / "study.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{db}", poolclass=sqlalchemy.pool.NullPool)  # a connection per query
    attempts: list[int] = []

    def query() -> int:
        attempts.append(1)
        if len(attempts) == 4:
            db.parent.mkdir()  # the storage comes back
        return _query(engine)

    told: list[tuple[str, object]] = []
    outage = Outage(lambda exc: told.append(("down", type(exc).__name__)), lambda s: told.append(("back", s)))
    assert outage.wait_out(query) == 42
    assert len(attempts) == 4
    assert [what for what, _ in told] == ["down", "back"], told
    assert told[0][1] == "OperationalError" and 0 < told[1][1] < 10  # type: ignore[operator]
    assert outage.since is None  # a later outage is announced again

    db.unlink()
    db.parent.rmdir()
    told.clear()
    attempts.clear()
    assert outage.wait_out(query) == 42
    assert [what for what, _ in told] == ["down", "back"], told


def test_other_errors_go_up_at_once(tmp_path, quick_retries) -> None:
    calls: list[int] = []

    def broken() -> int:
        calls.append(1)
        raise ValueError("not a storage problem")

    told: list[BaseException] = []
    with pytest.raises(ValueError, match="not a storage problem"):
        Outage(told.append).wait_out(broken)
    assert calls == [1] and told == []


def test_a_long_outage_gives_up_with_the_advice(tmp_path, quick_retries, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_rdb, "STORAGE_OUTAGE_SECONDS", 0.2)
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'never' / 'study.db'}")
    with pytest.raises(HpsearchError, match=r"unreachable for \d+s; giving up \(OperationalError\); run it again"):
        Outage(advice="run it again").wait_out(lambda: _query(engine))
