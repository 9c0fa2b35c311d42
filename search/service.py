"""One study's owner for everything that reads it: opened read-only (no sampler, no TensorFlow, nothing written)
for the commands that look, or around a worker's or launcher's study; answers progress (counts per state, best
so far, running trials, ETA), the best trial and why the study stopped, each from one place.

The chain a trial follows: `hpsearch run` (cli/search.py) -> launcher (workers, progress through this service) ->
`hpsearch worker` (worker.py) -> Objective (objective.py) -> training.fit_and_evaluate -> the builder's `build(hp)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.search.ranking import better
from hpsearch.search.spec import SPEC_ATTR, StudySpec

if TYPE_CHECKING:
    import optuna

# When the study's time budget began: its first run (`run`, a worker, `hpsearch.run`), not its creation, so a study
# made with `hpsearch create` and run later gets all of its --timeout.
STARTED_ATTR = "hpsearch_started_at"


def start_clock(study: optuna.Study, restart: bool = False) -> float:
    """The `time.time()` at which the study's time budget began, recorded now if no run came before (or, with
    `restart`, in any case). Under the study's budget lock where the storage has one (SQLite, PostgreSQL), so
    workers started at once keep one start; the caller must not hold that lock (none does: workers take it later)."""
    started = study.user_attrs.get(STARTED_ATTR)
    if started is not None and not restart:  # the usual case (a resume, a recycled worker): no lock to take
        return float(started)
    from hpsearch.storage.locks import StudyLock

    lock = StudyLock(study)
    lock.acquire()
    try:
        started = study.user_attrs.get(STARTED_ATTR)
        if started is None or restart:
            started = time.time()
            study.set_user_attr(STARTED_ATTR, started)
    finally:
        lock.close()
    return float(started)


@dataclass
class Progress:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    eta_seconds: float | None = None
    running_trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.complete + self.pruned

    @property
    def total(self) -> int:
        """Every trial the study has, in any state."""
        return self.complete + self.pruned + self.failed + self.running + self.waiting


@dataclass
class StudyService:
    """A study and its spec, around an Optuna study (a launcher's, a worker's) or, read-only, around the database
    alone: SQL on Optuna's tables, no Optuna storage, sampler or TensorFlow (`read_only`)."""

    study: optuna.Study | None
    spec: StudySpec
    engine: Any = None  # SQLAlchemy engine on the study database; None for a storage without SQL (memory, proxy)
    name: str = ""
    attrs: dict[str, Any] | None = None  # the study's user attributes as read once (read-only); else the study's

    def __post_init__(self) -> None:
        if self.study is not None:
            from hpsearch.storage.optuna_compat import rdb_engine

            self.engine = self.engine or rdb_engine(self.study)
            self.name = self.name or self.study.study_name

    @classmethod
    def read_only(cls, name: str, storage_url: str | None = None) -> StudyService:
        """The study `name` opened for reading: its spec as stored, no sampler, no TensorFlow, nothing written.

        Raises:
            UsageError: no such study (the message lists the existing ones), or a study hpsearch did not create.
            HpsearchError: an attribute of the study is not valid JSON.
        """
        from hpsearch.search.spec import check_study_name
        from hpsearch.storage import resolve_url, storage_errors_as_messages

        url = resolve_url(storage_url)
        check_study_name(name)
        with storage_errors_as_messages(url):
            from hpsearch.storage.proxy import is_proxy_url

            if is_proxy_url(url):  # an `hpsearch proxy`: through Optuna's client
                from hpsearch.storage import load_study_read_only

                study = load_study_read_only(name, url)
                engine, attrs = None, study.user_attrs
            else:
                from hpsearch.storage.queries import make_engine, study_user_attrs

                study, engine = None, make_engine(url, read_only=True)
                attrs = study_user_attrs(engine, name)
        stored = attrs.get(SPEC_ATTR)
        if not isinstance(stored, dict) or not stored.get("model"):
            raise UsageError(f"study {name!r} was not created by hpsearch (it has no spec); create it with "
                             "`hpsearch run` or `hpsearch create`")
        return cls(study, StudySpec.from_stored(stored), engine, name, attrs)

    def user_attrs(self) -> dict[str, Any]:
        return self.attrs if self.attrs is not None else self.study.user_attrs  # type: ignore[union-attr]

    def progress(self, workers: int = 1) -> Progress:
        """Counts per state, best so far, running trials, and the ETA for `workers` workers (0: those running now).

        On a database it is read with a few SQL queries (the launcher asks every second, `status` once; a study of
        20,000 trials stays cheap); a storage without SQL (in memory) is read through Optuna.
        """
        if self.engine is not None:
            from hpsearch.storage.queries import progress_rows

            rows = progress_rows(self.engine, self.name)
            p = Progress(complete=rows.counts["complete"], pruned=rows.counts["pruned"], failed=rows.counts["fail"],
                         running=rows.counts["running"], waiting=rows.counts["waiting"], best_value=rows.best_value,
                         best_trial=rows.best_trial, running_trials=rows.running)
            mean = rows.mean_duration
        else:
            assert self.study is not None, "a storage without SQL is read through its Optuna study"
            p, durations = progress_through_optuna(self.study, self.spec)
            mean = sum(durations) / len(durations) if durations else None
        left = max(0, self.spec.trial_budget - p.done)
        if mean is not None and left:
            workers = workers or len({r["worker"] for r in p.running_trials})
            p.eta_seconds = mean * left / max(1, workers)
        seconds_left = self.seconds_left()
        if seconds_left is not None and p.eta_seconds is not None:  # a time budget ends the study first
            p.eta_seconds = min(p.eta_seconds, seconds_left)
        return p

    def seconds_left(self) -> float | None:
        """What is left of the study's time budget (None without one); all of it before the study's first run."""
        if not self.spec.timeout:
            return None
        started = self.user_attrs().get(STARTED_ATTR)
        timeout = float(self.spec.timeout)
        return max(0.0, float(started) + timeout - time.time()) if started else timeout

    def elapsed(self) -> float:
        """Seconds since the study's first run (0 before it)."""
        started = self.user_attrs().get(STARTED_ATTR)
        return time.time() - float(started) if started else 0.0

    def stopped(self) -> str | None:
        """Why the circuit breaker stopped the study, in a sentence that says what to do; None when it did not."""
        from hpsearch.search.breaker import STOP_ATTR, describe

        stop = self.user_attrs().get(STOP_ATTR)
        return describe(stop, self.name) if isinstance(stop, dict) and stop.get("reason") else None

    def current(self) -> Progress:
        """Progress with the ETA for the workers running now (each running trial names its worker).

        Raises:
            HpsearchError: an attribute of the study or its trials is not valid JSON (a table edited by hand).
        """
        import json

        try:
            p = self.progress(workers=0)  # 0: the workers running now share what is left
        except json.JSONDecodeError:
            name = self.name
            raise HpsearchError(f"study {name!r} holds an attribute that is not valid JSON (was the table edited by "
                                f"hand?); `hpsearch trials --study {name}` shows what can be read") from None
        return p

    def status(self, p: Progress | None = None) -> dict[str, Any]:
        """What `hpsearch status` reports: the set-up, counts, best, ETA (`current()` unless given), why it
        stopped."""
        p = p or self.current()
        data = {"study": self.name or self.spec.study, "model": self.spec.model, "dataset": self.spec.dataset,
                "budget": self.spec.trials, "timeout": self.spec.timeout,  # budget None: the time is the budget
                "complete": p.complete, "pruned": p.pruned, "failed": p.failed,
                "running": p.running, "waiting": p.waiting, "best_value": p.best_value, "best_trial": p.best_trial,
                "eta_seconds": p.eta_seconds, "running_trials": p.running_trials}
        stopped = self.stopped()
        if stopped:
            data["stopped"] = stopped
        return data


def progress_through_optuna(study: optuna.Study, spec: StudySpec) -> tuple[Progress, list[float]]:
    """Progress read through Optuna's trials (a storage without SQL), and the finished trials' seconds."""
    from optuna.trial import TrialState

    p = Progress()
    durations = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            p.complete += 1
            value = t.values[0] if t.values else None  # the first objective (the metric) in a Pareto study
            if value is not None and (p.best_value is None or better(value, p.best_value, spec.direction)):
                p.best_value, p.best_trial = value, t.number
        elif t.state == TrialState.PRUNED:
            p.pruned += 1
        elif t.state == TrialState.FAIL:
            p.failed += 1
        elif t.state == TrialState.WAITING:
            p.waiting += 1
        elif t.state == TrialState.RUNNING:
            p.running += 1
            p.running_trials.append({"trial": t.number, "worker": t.user_attrs.get("worker", "?"),
                                     "epoch": t.user_attrs.get("epoch", 0),
                                     "last": max(t.intermediate_values.values()) if t.intermediate_values else None})
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start and t.datetime_complete:
            durations.append((t.datetime_complete - t.datetime_start).total_seconds())
    return p, durations
