"""The questions users ask of a study, answered by SQL on Optuna's tables, not by loading every trial.

`best`, top-k `trials`, the `leaderboard` (best trial of every study) and the study list each run a
handful of indexed queries whatever the study's size; only the rows shown are decoded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.storage._rdb import _malformed, check_sqlite_file, database_error, engine_kwargs
from hpsearch.storage._urls import check_shareable, mask_url, redact, resolve_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# Indexes Optuna does not create and these queries need (CREATE INDEX IF NOT EXISTS: SQLite and PostgreSQL).
INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_hpsearch_trials_study_state ON trials (study_id, state, trial_id)",
    "CREATE INDEX IF NOT EXISTS ix_hpsearch_values_objective ON trial_values (objective, trial_id, value)",
)
SORT_KEYS = ("value", "number", "duration")
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass
class TrialRow:
    trial: int
    trial_id: int
    state: str
    value: float | None
    duration: float | None
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    values: list[float | None] | None = None  # every objective's value, in a study of several objectives

    def as_dict(self) -> dict[str, Any]:
        out = {"trial": self.trial, "state": self.state, "value": self.value, "duration_seconds": self.duration,
               "params": self.params, "user_attrs": self.user_attrs}
        if self.values is not None:
            out["values"] = self.values
        return out


def make_engine(url: str | None = None, read_only: bool = False) -> Engine:
    """A SQLAlchemy engine on the study database (no Optuna start-up cost).

    Args:
        url: the storage URL (default: `resolve_url`).
        read_only: never create a SQLite file, never write (the commands that only look at studies).

    Raises:
        UsageError: the URL is malformed, names an unknown driver or an in-memory database, or the SQLite path is
            a directory (or, `read_only`, does not exist).
    """
    import sqlalchemy
    import sqlalchemy.exc

    url = resolve_url(url)
    from hpsearch.storage.proxy import is_proxy_url

    if is_proxy_url(url):
        raise UsageError(f"{url} is an `hpsearch proxy`, which serves workers; this command reads the database "
                         "itself: pass the database's URL (the one the proxy was started with)")
    check_shareable(url)
    check_sqlite_file(url, must_exist=read_only)
    try:
        return sqlalchemy.create_engine(url, **engine_kwargs(url, read_only=read_only))
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise _malformed(url, exc) from None


def ensure_indexes(engine: Engine) -> None:
    from sqlalchemy import text

    with engine.begin() as connection:
        for statement in INDEXES:
            connection.execute(text(statement))


_SCHEMA_CHECKED: set[int] = set()  # engines whose Optuna schema version was checked


def _execute(engine: Engine, sql: str, **params: Any) -> list[Any]:
    import sqlalchemy.exc
    from sqlalchemy import bindparam, text

    if id(engine) not in _SCHEMA_CHECKED:
        _check_schema_of(engine)

    statement = text(sql)
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            statement = statement.bindparams(bindparam(name, expanding=True))
    try:
        with engine.connect() as connection:
            return list(connection.execute(statement, params))
    except sqlalchemy.exc.DBAPIError as exc:
        raise database_error(exc, engine.url.render_as_string(hide_password=False), "query") from None


def _check_schema_of(engine: Engine) -> None:
    """The raw SQL here reads Optuna's tables: refuse a schema it was not written against (optuna_compat)."""
    import sqlalchemy.exc
    from sqlalchemy import text

    from hpsearch.storage.optuna_compat import check_schema

    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except sqlalchemy.exc.DBAPIError:
        return  # no Optuna tables: the query itself says "holds no studies yet"
    check_schema(version, mask_url(engine.url.render_as_string(hide_password=False)))
    _SCHEMA_CHECKED.add(id(engine))


def _warn(message: str) -> None:
    """A value that cannot be decoded is left out, and said so on stderr: the rest of the answer still holds."""
    print(redact(f"hpsearch: warning: {message}"), file=sys.stderr)


def _loads(value_json: str, what: str) -> tuple[bool, Any]:
    """(True, value) for valid JSON, else (False, None) after a warning naming `what`."""
    try:
        return True, json.loads(value_json)
    except (TypeError, ValueError):
        _warn(f"{what} is not valid JSON ({str(value_json)[:40]!r}); left out. Was the table edited by hand?")
        return False, None


def study_names(engine: Engine) -> list[str]:
    return [r[0] for r in _execute(engine, "SELECT study_name FROM studies ORDER BY study_id")]


def study_info(engine: Engine, study: str) -> tuple[int, str]:
    """(study_id, direction 'MAXIMIZE'/'MINIMIZE').

    Raises:
        UsageError: no such study; the message lists the studies that exist.
    """
    rows = _execute(engine, "SELECT s.study_id, d.direction FROM studies s JOIN study_directions d "
                            "ON d.study_id = s.study_id AND d.objective = 0 WHERE s.study_name = :name", name=study)
    if not rows:
        names = study_names(engine)
        raise UsageError(f"study {study!r} does not exist; existing studies: {', '.join(names) or '(none)'}")
    return int(rows[0][0]), str(rows[0][1])


def _decode_params(rows: Iterable[Any]) -> dict[int, dict[str, Any]]:
    from optuna.distributions import json_to_distribution

    out: dict[int, dict[str, Any]] = {}
    cache: dict[str, Any] = {}
    for trial_id, name, value, dist_json in rows:
        try:
            dist = cache.get(dist_json) or cache.setdefault(dist_json, json_to_distribution(dist_json))
            external = dist.to_external_repr(value)
        except (TypeError, ValueError, KeyError, IndexError):
            _warn(f"parameter {name!r} of trial id {trial_id} has a distribution or value Optuna cannot decode; "
                  "left out. Was the table edited by hand?")
            continue
        out.setdefault(trial_id, {})[name] = external
    return out


def _details(engine: Engine, trial_ids: Sequence[int]) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    if not trial_ids:
        return {}, {}
    params = _decode_params(_execute(
        engine, "SELECT trial_id, param_name, param_value, distribution_json FROM trial_params "
                "WHERE trial_id IN :ids ORDER BY param_id", ids=list(trial_ids)))
    attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in _execute(
            engine, "SELECT trial_id, key, value_json FROM trial_user_attributes WHERE trial_id IN :ids "
                    "ORDER BY trial_user_attribute_id", ids=list(trial_ids)):
        ok, value = _loads(value_json, f"user attribute {key!r} of trial id {trial_id}")
        if ok:
            attrs.setdefault(trial_id, {})[key] = value
    return params, attrs


def _duration(start: Any, end: Any) -> float | None:
    if start is None or end is None:
        return None
    if isinstance(start, str):  # SQLite returns text
        from datetime import datetime

        start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return round((end - start).total_seconds(), 3)


def top_trials(engine: Engine, study: str, limit: int = 10, sort: str = "value",
               states: Sequence[str] | None = None) -> list[TrialRow]:
    """The first `limit` trials by value (best first, direction-aware), number or duration.

    Raises:
        UsageError: unknown study, sort key or state, or a limit below 1.
    """
    if sort not in SORT_KEYS:
        from hpsearch.errors import UnknownNameError

        raise UnknownNameError("sort key", sort, SORT_KEYS)
    if limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    states = [s.upper() for s in (states or (["COMPLETE"] if sort == "value" else STATES))]
    bad = [s for s in states if s not in STATES]
    if bad:
        from hpsearch.errors import UnknownNameError

        raise UnknownNameError("state", bad[0].lower(), [s.lower() for s in STATES])
    study_id, direction = study_info(engine, study)
    order = {
        "value": "v.value DESC" if direction == "MAXIMIZE" else "v.value ASC",
        "number": "t.number ASC",
        "duration": "(t.datetime_complete - t.datetime_start) ASC" if engine.dialect.name != "sqlite"
        else "(julianday(t.datetime_complete) - julianday(t.datetime_start)) ASC",
    }[sort]
    value_join = "JOIN" if sort == "value" else "LEFT JOIN"
    rows = _execute(
        engine,
        f"SELECT t.trial_id, t.number, t.state, v.value, t.datetime_start, t.datetime_complete FROM trials t "
        f"{value_join} trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
        f"WHERE t.study_id = :sid AND t.state IN :states "
        f"{'AND v.value IS NOT NULL ' if sort == 'value' else ''}"
        f"ORDER BY {order}, t.number ASC LIMIT :limit",
        sid=study_id, states=list(states), limit=int(limit))
    params, attrs = _details(engine, [r[0] for r in rows])
    return [TrialRow(trial=r[1], trial_id=r[0], state=r[2], value=r[3], duration=_duration(r[4], r[5]),
                     params=params.get(r[0], {}), user_attrs=attrs.get(r[0], {})) for r in rows]


def objectives(engine: Engine, study: str) -> list[tuple[str, str]]:
    """(name, 'maximize'/'minimize') of each objective, in order; names from Optuna's metric names, else
    "objective N"."""
    study_id, _ = study_info(engine, study)
    directions = [str(d).lower() for (d,) in _execute(
        engine, "SELECT direction FROM study_directions WHERE study_id = :sid ORDER BY objective", sid=study_id)]
    names: list[Any] = []
    for (value_json,) in _execute(engine, "SELECT value_json FROM study_system_attributes WHERE study_id = :sid "
                                          "AND key = 'study:metric_names'", sid=study_id):
        ok, loaded = _loads(value_json, f"the metric names of study {study!r}")
        names = loaded if ok and isinstance(loaded, list) and len(loaded) == len(directions) else []
    return [(str(names[i]) if names else f"objective {i}", d) for i, d in enumerate(directions)]


def pareto_front(engine: Engine, study: str) -> list[TrialRow]:
    """The completed trials no other completed trial dominates (as good in every objective, better in one),
    best first by the first objective; each row carries `values`. One objective: the best trial(s)."""
    study_id, _ = study_info(engine, study)
    maximize = [d == "maximize" for _, d in objectives(engine, study)]
    values: dict[int, list[float | None]] = {}
    for trial_id, objective, value in _execute(
            engine, "SELECT v.trial_id, v.objective, v.value FROM trial_values v JOIN trials t ON "
                    "t.trial_id = v.trial_id WHERE t.study_id = :sid AND t.state = 'COMPLETE'", sid=study_id):
        values.setdefault(trial_id, [None] * len(maximize))[objective] = value
    # Compared as "larger is better" in every objective.
    points = {tid: [v if up else -v for v, up in zip(vals, maximize, strict=True)]
              for tid, vals in values.items() if all(v is not None for v in vals)}
    front = [tid for tid, p in points.items()
             if not any(all(a >= b for a, b in zip(q, p, strict=True)) and q != p for q in points.values())]
    if not front:
        return []
    rows = _execute(engine, "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
                            "WHERE trial_id IN :ids", ids=front)
    params, attrs = _details(engine, front)
    out = [TrialRow(trial=r[1], trial_id=r[0], state=r[2], value=values[r[0]][0], duration=_duration(r[3], r[4]),
                    params=params.get(r[0], {}), user_attrs=attrs.get(r[0], {}), values=values[r[0]]) for r in rows]
    return sorted(out, key=lambda r: (-points[r.trial_id][0], r.trial))


def with_values(engine: Engine, rows: list[TrialRow]) -> list[TrialRow]:
    """`rows` with every objective's value filled in (`values`), for a study of several objectives."""
    if not rows:
        return rows
    found: dict[int, dict[int, float | None]] = {}
    for trial_id, objective, value in _execute(
            engine, "SELECT trial_id, objective, value FROM trial_values WHERE trial_id IN :ids",
            ids=[r.trial_id for r in rows]):
        found.setdefault(trial_id, {})[objective] = value
    count = 1 + max((o for v in found.values() for o in v), default=0)
    for r in rows:
        r.values = [found.get(r.trial_id, {}).get(i) for i in range(count)]
    return rows


def best(engine: Engine, study: str) -> dict[str, Any]:
    """`{"study", "trial", "value", "params", "user_attrs"}` of the study's best completed trial.

    Raises:
        HpsearchError: the study has no completed trial yet.
    """
    rows = top_trials(engine, study, limit=1)
    if not rows:
        raise HpsearchError(f"study {study!r} has no completed trial yet; see `hpsearch status --study {study}`")
    r = rows[0]
    out = {"study": study, "trial": r.trial, "value": r.value, "params": r.params, "user_attrs": r.user_attrs}
    objs = objectives(engine, study)
    if len(objs) > 1:  # several objectives: the best by the first, and the trade-offs no trial beats
        out["objectives"] = [{"name": n, "direction": d} for n, d in objs]
        out["values"] = with_values(engine, rows)[0].values
        out["pareto_front"] = [row.as_dict() for row in pareto_front(engine, study)]
    return out


def leaderboard(engine: Engine) -> list[dict[str, Any]]:
    """The best completed trial of every study (one windowed query), best value first within each direction."""
    rows = _execute(engine, """
        SELECT study_name, direction, trial_id, number, value, n_complete FROM (
            SELECT s.study_name, d.direction, t.trial_id, t.number, v.value,
                   COUNT(*) OVER (PARTITION BY s.study_id) AS n_complete,
                   ROW_NUMBER() OVER (PARTITION BY s.study_id ORDER BY
                       CASE WHEN d.direction = 'MAXIMIZE' THEN -v.value ELSE v.value END, t.number) AS rank
            FROM studies s
            JOIN study_directions d ON d.study_id = s.study_id AND d.objective = 0
            JOIN trials t ON t.study_id = s.study_id AND t.state = 'COMPLETE'
            JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 AND v.value IS NOT NULL
        ) ranked WHERE rank = 1 ORDER BY study_name""")
    params, attrs = _details(engine, [r[2] for r in rows])
    return [{"study": r[0], "direction": r[1].lower(), "trial": r[3], "value": r[4], "complete": r[5],
             "params": params.get(r[2], {}), "test_accuracy": attrs.get(r[2], {}).get("test_accuracy")}
            for r in rows]


@dataclass
class ProgressRows:
    """What a progress display needs, read with a few SQL queries whatever the study's size."""

    counts: dict[str, int]
    best_value: float | None
    best_trial: int | None
    running: list[dict[str, Any]]  # {"trial", "worker", "epoch", "last"} of each RUNNING trial
    mean_duration: float | None  # mean seconds of the COMPLETE and PRUNED trials, None before the first


def progress_rows(engine: Engine, study: str) -> ProgressRows:
    """Counts per state, the best value of the first objective, the running trials and the finished trials'
    mean duration of one study (averaged in the database: the launcher asks every second)."""
    study_id, _ = study_info(engine, study)
    counts = state_counts(engine, study)[study]
    top = top_trials(engine, study, limit=1)
    running_rows = _execute(engine, "SELECT trial_id, number FROM trials WHERE study_id = :sid AND state = 'RUNNING' "
                                    "ORDER BY number", sid=study_id)
    running = []
    if running_rows:
        ids = [r[0] for r in running_rows]
        _, attrs = _details(engine, ids)
        last = dict(_execute(engine, "SELECT trial_id, MAX(intermediate_value) FROM trial_intermediate_values "
                                     "WHERE trial_id IN :ids GROUP BY trial_id", ids=ids))
        running = [{"trial": number, "worker": attrs.get(tid, {}).get("worker", "?"),
                    "epoch": attrs.get(tid, {}).get("epoch", 0), "last": last.get(tid)} for tid, number in running_rows]
    [(mean,)] = _execute(engine, f"SELECT AVG({_seconds_sql(engine)}) FROM trials WHERE study_id = :sid AND state IN "
                                 "('COMPLETE', 'PRUNED') AND datetime_start IS NOT NULL AND datetime_complete IS NOT "
                                 "NULL", sid=study_id)
    return ProgressRows(counts=counts, best_value=top[0].value if top else None,
                        best_trial=top[0].trial if top else None, running=running,
                        mean_duration=None if mean is None else float(mean))


def _seconds_sql(engine: Engine) -> str:
    """SQL for a trial's seconds from start to end, in the engine's dialect."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        return "(julianday(datetime_complete) - julianday(datetime_start)) * 86400.0"
    if dialect == "postgresql":
        return "EXTRACT(EPOCH FROM (datetime_complete - datetime_start))"
    if dialect in ("mysql", "mariadb"):
        return "TIMESTAMPDIFF(MICROSECOND, datetime_start, datetime_complete) / 1000000.0"
    raise HpsearchError(f"progress by SQL does not know the {dialect} dialect")


def state_counts(engine: Engine, study: str | None = None) -> dict[str, dict[str, int]]:
    """Trials per state for every study (or one)."""
    sql = ("SELECT s.study_name, t.state, COUNT(t.trial_id) FROM studies s LEFT JOIN trials t ON "
           "t.study_id = s.study_id")
    params: dict[str, Any] = {}
    if study is not None:
        sql += " WHERE s.study_name = :name"
        params["name"] = study
    sql += " GROUP BY s.study_name, t.state"
    out: dict[str, dict[str, int]] = {}
    for name, state, count in _execute(engine, sql, **params):
        counts = out.setdefault(name, {s.lower(): 0 for s in STATES})
        if state is not None:
            counts[str(state).lower()] = int(count)
    return out


def study_user_attrs(engine: Engine, study: str) -> dict[str, Any]:
    """Every user attribute of one study.

    Raises:
        UsageError: no such study (the message lists those that exist).
        HpsearchError: an attribute is not valid JSON (a table edited by hand).
    """
    study_id, _ = study_info(engine, study)
    out: dict[str, Any] = {}
    for key, value_json in _execute(engine, "SELECT key, value_json FROM study_user_attributes WHERE study_id = :sid",
                                    sid=study_id):
        try:
            out[key] = json.loads(value_json)
        except (TypeError, ValueError):
            raise HpsearchError(f"study {study!r} holds an attribute that is not valid JSON (was the table edited by "
                                f"hand?); `hpsearch trials --study {study}` shows what can be read") from None
    return out


def study_attrs(engine: Engine, key: str) -> dict[str, Any]:
    """One study user attribute (e.g. the hpsearch spec) for every study; a value that is not JSON is left out
    with a warning on stderr."""
    out: dict[str, Any] = {}
    for name, value_json in _execute(
            engine, "SELECT s.study_name, a.value_json FROM studies s JOIN study_user_attributes a "
                    "ON a.study_id = s.study_id WHERE a.key = :key", key=key):
        ok, value = _loads(value_json, f"attribute {key!r} of study {name!r}")
        if ok:
            out[name] = value
    return out
