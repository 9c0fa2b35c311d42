"""`hpsearch run`: create (or resume) a study, launch worker processes, show the study's progress."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.search.resources import LEARNING_SAMPLERS, WORKER_MEMORY_GB, Plan, plan, single_thread_cost
from hpsearch.search.service import Progress, StudyService, start_clock
from hpsearch.search.spec import CLASSES_ATTR, SPEC_ATTR, VALIDATION_ATTR, StudySpec
from hpsearch.search.worker import (
    AWAIT_GO_ENV,
    DEFAULT_RECYCLE,
    EARLY_START_ENV,
    PARENT_PID_ENV,
    THREADS_ENV,
    WORKER_INDEX_ENV,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from rich.console import Console

    from hpsearch.search.preflight import Checked
    from hpsearch.storage import Outage
    from hpsearch.storage.artifacts import ArtifactLocation

POLL_SECONDS = 1.0
END_SLACK_SECONDS = 5.0  # a study whose time budget has this little left when its workers end ran to its deadline
# Fields a joining spec must agree on with the stored one: otherwise trials would not be comparable.
IDENTITY_FIELDS = ("model", "dataset", "metric", "direction", "objectives", "train_size", "validation_split",
                   "epochs")


def default_params(spec: StudySpec) -> dict[str, Any]:
    """The builder's published configuration, as Optuna params (fixed values left out)."""
    from hpsearch.search.preflight import check_spec

    return check_spec(spec, dry_run=False).defaults


def stored_spec(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any] | None:
    """The spec an existing study was created with; None when there is no such study."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    return study.user_attrs.get(SPEC_ATTR) or {}


def existing_spec(study: str, storage_url: str | None) -> dict[str, Any] | None:
    """The spec stored with an existing study, read without creating anything; None when there is no database
    yet, no such study, or it cannot be read."""
    from hpsearch.storage import resolve_url
    from hpsearch.storage._urls import sqlite_path
    from hpsearch.storage.queries import make_engine, study_attrs

    url = resolve_url(storage_url)
    from hpsearch.storage.proxy import is_proxy_url

    if is_proxy_url(url):  # through an `hpsearch proxy`: the database is the proxy's to read
        from hpsearch.storage.proxy import open_proxy

        return stored_spec(open_proxy(url), study)
    db = sqlite_path(url)
    if db is not None and not db.is_file():
        return None
    try:
        return study_attrs(make_engine(url, read_only=True), SPEC_ATTR).get(study)
    except HpsearchError:
        return None


def create_or_resume(spec: StudySpec, storage: optuna.storages.BaseStorage, enqueue_defaults: bool = False,
                     checked: Checked | None = None, warm_start: str | None = None, check: bool = True
                     ) -> optuna.Study:
    """Creates the study with its spec, or checks that an existing one was made for the same search.

    A new spec (or a changed one) is first checked against its builder and data (`preflight.check_spec`), so a
    bad value stops here, before anything is created. Resuming clears a tripped circuit breaker: the user says
    the cause is fixed.

    Args:
        enqueue_defaults: queue the builder's published configuration first.
        checked: the checks' result when the caller ran them already.
        warm_start: `STUDY[:K]`: queue the K best configurations of another study in this storage.
        check: False skips the checks (tests and benchmarks that build a spec they know to be valid).

    Raises:
        UsageError: the spec does not fit its builder or data, the study exists with a different model, dataset
            or metric, the warm-start study cannot lend configurations, or the queued ones exceed the trial budget.
    """
    import optuna

    from hpsearch.search import breaker
    from hpsearch.search.budget import check_room
    from hpsearch.search.preflight import check_spec

    stored = stored_spec(storage, spec.study)
    spec = spec.settled(stored)  # a resume that does not name lr_peak keeps the study's training
    _check_same_setup(spec, stored)
    if checked is None and check and (stored != spec.to_dict() or enqueue_defaults or warm_start):
        checked = check_spec(spec, dry_run=stored != spec.to_dict())
    if checked is not None:
        spec = checked.spec.settled(stored)
    warm: list[tuple[int, dict[str, Any]]] = []
    if warm_start:
        from hpsearch.search.warm_start import warm_start_params

        warm = warm_start_params(storage, warm_start, spec, checked.space if checked else None)
    defaults = (checked.defaults if checked is not None else default_params(spec)) if enqueue_defaults else None
    asked = " and ".join((["--enqueue-defaults (enqueue_defaults=True)"] if enqueue_defaults else [])
                         + ([f"--warm-start {warm_start}"] if warm_start else []))
    check_room(storage, spec, ([defaults] if defaults is not None else []) + [p for _, p in warm], asked)
    _say_budget_change(spec, stored)  # once the checks passed: a resume they stop changes nothing
    study = optuna.create_study(study_name=spec.study, storage=storage, directions=spec.objective_directions(),
                                load_if_exists=True)
    _store_setup(study, spec, checked)
    breaker.clear(study)
    if defaults is not None:
        study.enqueue_trial(defaults, user_attrs={"enqueued": "published defaults"}, skip_if_exists=True)
    source = warm_start.partition(":")[0] if warm_start else ""
    for number, params in warm:
        study.enqueue_trial(params, user_attrs={"enqueued": f"warm start: {source} trial {number}"},
                            skip_if_exists=True)
    from hpsearch.search.notes import refresh_note

    refresh_note(study, spec)
    return study


def _check_same_setup(spec: StudySpec, stored: dict[str, Any] | None) -> None:
    """Raises UsageError when an existing study was made for another model, dataset, metric..."""
    if not stored:
        return
    # A key a study stored before it existed (objectives) has its default: a study of one objective.
    defaults = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                for f in dataclasses.fields(spec)}
    diffs = [f"{k}: study has {stored.get(k, defaults[k])!r}, asked {getattr(spec, k)!r}" for k in IDENTITY_FIELDS
             if stored.get(k, defaults[k]) != getattr(spec, k)]
    if diffs:
        raise UsageError(f"study {spec.study!r} exists with a different set-up ({'; '.join(diffs)}); use another "
                         "--study name or the same settings")


def _say_budget_change(spec: StudySpec, stored: dict[str, Any] | None) -> None:
    """Logs a resumed study's budget when the flags or spec given change it (`--model` and `--spec` describe the
    study anew: a budget they leave out is the default, not the stored one)."""
    if not stored:
        return
    before = StudySpec.from_stored(stored).budget_text()
    if before != spec.budget_text():
        logging.getLogger("hpsearch").warning(
            "study %r: budget %s -> %s, from the flags or spec given (`--study %s` alone keeps the stored one)",
            spec.study, before, spec.budget_text(), spec.study)


def _store_setup(study: optuna.Study, spec: StudySpec, checked: Checked | None) -> None:
    """The spec, the objectives' names and the class names, on the study (workers and commands read them)."""
    stored = study.user_attrs.get(SPEC_ATTR)
    if study.metric_names != spec.objective_names():
        with warnings.catch_warnings():  # Optuna flags set_metric_names experimental; it is stable in use
            warnings.simplefilter("ignore")
            study.set_metric_names(spec.objective_names())  # the dashboard and Optuna's tools name the objectives
    if stored is None:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    elif stored != spec.to_dict():  # budget, sampler, ...: the new values apply from now on
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    if checked is not None and study.user_attrs.get(CLASSES_ATTR) != checked.data.class_names:
        study.set_user_attr(CLASSES_ATTR, checked.data.class_names)  # predict names its answers by them
    if checked is not None and study.user_attrs.get(VALIDATION_ATTR) != len(checked.data.y_val):
        study.set_user_attr(VALIDATION_ATTR, len(checked.data.y_val))  # best: how far its noise reaches


def measure(study: optuna.Study, spec: StudySpec, workers: int) -> Progress:
    """The study's progress for `workers` workers (`StudyService.progress`)."""
    return StudyService(study, spec).progress(workers)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def render(spec: StudySpec, p: Progress, elapsed: float) -> Any:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    best = f"{p.best_value:.4f} (trial {p.best_trial})" if p.best_value is not None else "-"
    head = Text.assemble((f"study {spec.study}", "bold"), f"  {_done(spec, p)} ",
                         (f"({p.complete} complete, {p.pruned} pruned, {p.failed} failed)", "dim"),
                         f"  best {spec.metric} {best}  elapsed {_fmt_seconds(elapsed)}",
                         f"  ETA {_fmt_seconds(p.eta_seconds)}")
    if spec.trials is None:  # the time is the budget: the bar shows how much of it went since the study began
        bar = ProgressBar(total=float(spec.timeout or 1), completed=min(elapsed, float(spec.timeout or 1)), width=60)
    else:
        bar = ProgressBar(total=spec.trials, completed=p.done, width=60)
    table = Table(box=None, show_header=True, header_style="dim")
    for column in ("trial", "worker", "epoch", f"last {spec.metric}"):
        table.add_column(column)
    for r in p.running_trials:
        table.add_row(str(r["trial"]), r["worker"], f"{r['epoch']}/{spec.epochs}",
                      f"{r['last']:.4f}" if r["last"] is not None else "-")
    return Group(head, bar, table) if p.running_trials else Group(head, bar)


def _done(spec: StudySpec, p: Progress) -> str:
    """Trials done against the trial budget ("7/20 done"), or alone when the time is the budget."""
    return f"{p.done}/{spec.trials} done" if spec.trials is not None else f"{p.done} done"


def progress_line(spec: StudySpec, p: Progress, elapsed: float) -> str:
    running = ", ".join(f"#{r['trial']}@{r['worker']} epoch {r['epoch']}/{spec.epochs}" for r in p.running_trials)
    best = f"{p.best_value:.4f} (trial {p.best_trial})" if p.best_value is not None else "-"
    return (f"[{_fmt_seconds(elapsed)}] {_done(spec, p)} ({p.complete} complete, {p.pruned} pruned, "
            f"{p.failed} failed), best {spec.metric} {best}, ETA {_fmt_seconds(p.eta_seconds)}"
            + (f"; running {running}" if running else ""))


def _spawn(index: int, serial: int, args: list[str], env: dict[str, str], log_dir: Path,
           gpus: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Starts worker `index` (its log file; its GPU, when there are GPUs); `serial` counts every start, respawns
    included, for its sampler seed."""
    from hpsearch.search.gpus import gpu_env

    log = open(log_dir / f"worker-{index}.log", "ab")  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen([sys.executable, "-m", "hpsearch", "worker", *args],
                            env={**env, **gpu_env(gpus, index), WORKER_INDEX_ENV: str(serial)}, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


class _EarlyWorkers:
    """Workers started before the launcher's checks, so that their imports (about half of the time to a first
    trial) overlap them: each waits for its go (`worker.await_launcher`). One when `--workers auto` decides the
    count after the checks, all of them when the user gave it; none with GPUs (each needs its device before
    TensorFlow loads) or with HPSEARCH_EARLY_START=0."""

    def __init__(self, count: int, args: list[str]) -> None:
        self.env = {**_launcher_child_env(), AWAIT_GO_ENV: "1"}
        self.waiting: list[subprocess.Popen[bytes]] = []
        if os.environ.get(EARLY_START_ENV) == "0":
            return
        for _ in range(count):
            self.waiting.append(subprocess.Popen([sys.executable, "-m", "hpsearch", "worker", *args], env=self.env,
                                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL))

    def hand_over(self, index: int, serial: int, env: dict[str, str], log_dir: Path
                  ) -> subprocess.Popen[bytes] | None:
        """A waiting worker, told to run as worker `index` with `env` (what differs from the environment it
        started with goes down its stdin: the storage URL never reaches a command line) and its log file; None
        when none is left alive (a normal start replaces it)."""
        while self.waiting:
            proc = self.waiting.pop(0)
            if proc.poll() is not None or proc.stdin is None:
                _discard(proc)
                continue
            changed = {k: v for k, v in env.items() if self.env.get(k) != v}
            go = {"env": {**changed, WORKER_INDEX_ENV: str(serial)}, "log": str(log_dir / f"worker-{index}.log")}
            try:
                proc.stdin.write(json.dumps(go).encode() + b"\n")
                proc.stdin.close()
            except OSError:  # it died between the poll and the write
                _discard(proc)
                continue
            return proc
        return None

    def discard(self) -> None:
        """Ends the workers that never got a go (they hold no trial and nothing in the storage)."""
        while self.waiting:
            _discard(self.waiting.pop())


def _discard(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except OSError:
            pass


def open_or_create(spec: StudySpec, storage_url: str, enqueue_defaults: bool = False,
                   heartbeat_interval: int | None = None, grace_period: int | None = None,
                   warm_start: str | None = None) -> tuple[optuna.Study, bool]:
    """`create_or_resume` on the storage at `storage_url`; a new study's spec is checked before the database is
    opened, so a bad value creates nothing, not even the file.

    Returns:
        The study, and whether it is new.
    """
    from hpsearch.storage import open_storage

    fresh = existing_spec(spec.study, storage_url) is None
    checked = None
    if fresh:
        from hpsearch.search.preflight import check_spec

        checked = check_spec(spec)
    storage = open_storage(storage_url, heartbeat_interval, grace_period)
    return create_or_resume(spec, storage, enqueue_defaults, checked=checked, warm_start=warm_start), fresh


def check_worker_options(heartbeat_interval: int | None, grace_period: int | None) -> None:
    """Heartbeat and grace period in whole seconds, the grace longer than the interval.

    Raises:
        UsageError: a value below 1, or a grace period a healthy worker's heartbeat could not meet.
    """
    from hpsearch.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL

    for flag, value in (("--heartbeat-interval", heartbeat_interval), ("--grace-period", grace_period)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1 second, got {value}")
    interval = heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL
    grace = grace_period or DEFAULT_GRACE_PERIOD
    if grace <= interval:
        raise UsageError(f"--grace-period ({grace}s) must be longer than --heartbeat-interval ({interval}s), or "
                         "every running trial would be failed as dead; use e.g. a grace period of 5 intervals")


def plan_workers(workers: int | None, threads: int | None, left: int, console: Console,
                 seconds_left: float | None = None, trial_cost: float | None = None, learning: bool = False,
                 memory_gb: float | None = None) -> Plan:
    """Workers x threads for this launch: the user's `workers`/`threads` when given (never more workers than
    trials left; more than the cores with a warning of what it costs), else `resources.plan`'s choice from the
    trials left, the time left, the single-thread cost of a trial measured so far (None: not yet) and whether the
    sampler learns from results; `memory_gb` the memory available to workers (default: read now)."""
    from hpsearch.search.worker import available_cores

    left = max(1, left)
    cores = available_cores()
    if workers is None:
        chosen = plan(cores, left, seconds_left=seconds_left, trial_cost=trial_cost,
                      memory_gb=memory_gb if memory_gb is not None else available_memory_gb(), threads=threads,
                      learning=learning)
        console.print(f"workers: {chosen.workers} x {chosen.threads} thread(s) ({chosen.reason}; --workers N "
                      "to choose)", highlight=False)
        return chosen
    if workers > left:
        console.print(f"[yellow]{workers} workers asked for, {left} trial(s) left: starting {left}[/]")
        workers = left
    if workers > cores:
        total = workers * WORKER_MEMORY_GB
        console.print(f"[yellow]warning: {workers} workers on {cores} core(s): each trains with one thread and holds "
                      f"its own TensorFlow and data (about {WORKER_MEMORY_GB:g} GB each, ~{total:.0f} GB in all); "
                      "more workers than cores make every trial slower, not the search faster[/]")
    return plan(cores, left, workers=workers, threads=threads)


def available_memory_gb() -> float | None:
    """Memory available to new processes (Linux's MemAvailable), None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        return None
    return None


def _trial_cost(study: optuna.Study) -> float | None:
    """Mean single-thread seconds of the study's finished trials (their `threads` attribute; 1 when unknown)."""
    from optuna.trial import TrialState

    return single_thread_cost([((t.datetime_complete - t.datetime_start).total_seconds(),
                                int(t.user_attrs.get("threads", 1)))
                               for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                                                 TrialState.PRUNED))
                               if t.datetime_start and t.datetime_complete])


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP on the launcher: stop the workers as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise _Terminated(signum)


def _catch_stop_signals() -> dict[int, Any]:
    """SIGTERM and SIGHUP stop the run as Ctrl-C does; returns the handlers to put back (SIGINT's included).
    Only where the default action stands: `nohup hpsearch run ... &` keeps its SIGHUP ignored."""
    previous = {s: signal.signal(s, _raise_terminated) for s in (signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(s) is signal.SIG_DFL}
    previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    return previous


def _stop_workers(procs: dict[int, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every worker (its running trial ends FAIL, resumable), then SIGKILL after 30 s.

    SIGTERM, not SIGINT: a launcher started in the background of a script hands its workers SIGINT ignored. A
    second Ctrl-C or SIGTERM meanwhile is ignored, so it cannot cut this short and leave workers behind.
    """
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def launch(spec: StudySpec, storage_url: str, workers: int | None, console: Console, recycle: int = DEFAULT_RECYCLE,
           artifacts: str | None = None, heartbeat_interval: int | None = None, grace_period: int | None = None,
           enqueue_defaults: bool = False, threads: int | None = None, warm_start: str | None = None,
           gpus: list[str] | None = None) -> Progress:
    """Creates/resumes the study, runs `workers` worker processes until the budget is spent, shows progress.

    The storage URL reaches the workers through the environment, never their command line (no password in ps).
    Ctrl-C, SIGTERM and SIGHUP stop the workers (their trials end FAIL; the same command resumes); the workers
    also stop by themselves if this process dies. A tripped circuit breaker stops them with its reason.

    Raises:
        StudyStopped: the study's trials kept failing the same way.
        HpsearchError: the workers stopped before the budget was spent.
    """
    from rich.live import Live

    from hpsearch.storage import mask_url
    from hpsearch.storage.artifacts import artifact_location, safe_filename
    from hpsearch.storage.outputs import prepare_output_dir

    _check_counts(workers, threads, heartbeat_interval, grace_period)

    location = artifact_location(storage_url, artifacts)
    logs = _check_artifacts(location)  # before the study exists: an unusable artifact store is a usage error
    args = ["--study", spec.study, "--recycle", str(recycle),
            *(["--heartbeat-interval", str(heartbeat_interval)] if heartbeat_interval else []),
            *(["--grace-period", str(grace_period)] if grace_period else [])]
    memory = available_memory_gb()  # before the early workers take their share
    early = _EarlyWorkers(0 if gpus else min(workers or 1, spec.trial_budget), args)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        study, fresh = open_or_create(spec, storage_url, enqueue_defaults, heartbeat_interval, grace_period,
                                      warm_start)
        log_dir = prepare_output_dir(logs / safe_filename(spec.study), (), flag="--artifacts")
        before = measure(study, spec, workers or 1)
        if spec.timeout:  # a study that never got a trial (an older `create` started its clock) starts it now
            start_clock(study, restart=not before.total)
        spent = budget_spent(study, spec, before)
        if spent:
            early.discard()
            console.print(f"[yellow]{spent}[/]", highlight=False)
            if console.quiet:  # `hpsearch.run(..., workers=N, verbose=False)`: the log says it
                logging.getLogger("hpsearch").warning("%s", spent)
            return before
        workers, threads = _plan(study, spec, before, workers or (len(gpus) if gpus else None), threads, console,
                                 memory)
        env = _worker_env(storage_url, location, threads)
        console.print(f"study [bold]{spec.study}[/] on {mask_url(storage_url)}: {spec.model} on {spec.dataset}, "
                      f"{before.done} trial(s) done, budget {spec.budget_text()}; starting {workers} "
                      f"worker(s) x {threads} thread(s); logs in {log_dir}")
        base = first_worker_number(fresh)
        previous = _catch_stop_signals()
    except BaseException:  # a check failed, or Ctrl-C: the early workers go too
        early.discard()
        raise
    live = Live(console=console, refresh_per_second=2, transient=False) if console.is_terminal else None
    try:
        spawn = functools.partial(_spawn, args=args, env=env, log_dir=log_dir, gpus=gpus)
        for i in range(workers):
            procs[i] = early.hand_over(i, base + i, env, log_dir) or spawn(i, base + i)
        early.discard()  # a resumed study with fewer trials left than workers asked for
        if live:
            live.start()
        gave_up = _watch(study, spec, procs, workers, base, spawn, log_dir, console, live)
    except KeyboardInterrupt as exc:
        name = exc.args[0] if isinstance(exc, _Terminated) else "interrupted"
        console.print(f"[yellow]{name}: stopping the workers (running trials end FAIL; run the same command "
                      "again to resume)[/]")
        early.discard()
        _stop_workers(procs)
        raise
    except BaseException:  # the launcher gives up (storage gone too long, a bug): no worker outlives it
        early.discard()
        _stop_workers(procs)
        raise
    finally:
        if live:
            live.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _outcome(study, spec, procs, workers, log_dir, console, gave_up)


def _plan(study: optuna.Study, spec: StudySpec, before: Progress, workers: int | None, threads: int | None,
          console: Console, memory_gb: float | None = None) -> tuple[int, int]:
    """Workers x threads for this launch (`plan_workers` on what the study has measured so far)."""
    chosen = plan_workers(workers, threads, spec.trial_budget - before.done - before.running, console,
                          StudyService(study, spec).seconds_left(), _trial_cost(study),
                          learning=spec.sampler in LEARNING_SAMPLERS, memory_gb=memory_gb)
    return chosen.workers, chosen.threads


def _launcher_child_env() -> dict[str, str]:
    """Every worker's environment before its study is known: quiet TensorFlow, unbuffered output, the launcher's
    pid (they stop when it dies)."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())}


def _worker_env(storage_url: str, location: ArtifactLocation, threads: int) -> dict[str, str]:
    """The workers' environment: `_launcher_child_env` with the storage URL (never on a command line), the
    artifacts and the threads."""
    return {**_launcher_child_env(), "HPSEARCH_STORAGE": storage_url, "HPSEARCH_ARTIFACTS": str(location),
            THREADS_ENV: str(threads)}


def _check_counts(workers: int | None, threads: int | None, heartbeat_interval: int | None,
                  grace_period: int | None) -> None:
    check_worker_options(heartbeat_interval, grace_period)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")


def _outcome(study: optuna.Study, spec: StudySpec, procs: dict[int, subprocess.Popen[bytes]], workers: int,
             log_dir: Path, console: Console, gave_up: bool = False) -> Progress:
    """The study's progress once the workers are gone; a tripped breaker or a short budget raise, and so do
    workers that kept crashing (`gave_up`: the launcher stopped respawning them, and none ended by itself) before
    the budget was spent."""
    from hpsearch.search.breaker import describe, stop_reason
    from hpsearch.search.worker import StudyStopped

    outage = _outage(console, during_progress=False)
    stopped = outage.wait_out(lambda: stop_reason(study))
    if stopped:
        _stop_workers(procs)
        raise StudyStopped(describe(stopped, spec.study))
    final = outage.wait_out(lambda: measure(study, spec, workers))
    left = outage.wait_out(lambda: StudyService(study, spec).seconds_left())
    # Workers end by themselves at the deadline, at the trial budget, or when a grid is exhausted (a time-only grid
    # search has no trial cap to tell, but its workers exit 0 then); any other end is a failure, with a time budget
    # too.
    short = left is None or (left > END_SLACK_SECONDS and (spec.sampler != "grid" or gave_up))
    if final.done < spec.trial_budget and short:
        budget = f"{final.done}/{spec.trials} trials done" if spec.trials is not None else f"{final.done} trials done"
        time_left = f" and {left:.0f} s of the time budget left" if left is not None else ""
        raise HpsearchError(f"the workers stopped with {budget}{time_left}; see the logs in {log_dir}")
    return final


def budget_spent(study: optuna.Study, spec: StudySpec, progress: Progress) -> str | None:
    """Why a launch on this study would run nothing, with what gives it more (None when it has work left)."""
    service = StudyService(study, spec)
    left = service.seconds_left()
    if left is not None and left <= 0:
        elapsed = service.elapsed()
        return (f"study {spec.study!r} has spent its time budget ({float(spec.timeout):.0f} s, counted from its "
                f"first run {_fmt_seconds(elapsed)} ago), so no trial starts; to search on, run it with a longer "
                f"--timeout (--timeout {elapsed + float(spec.timeout):.0f} gives it {float(spec.timeout):.0f} s "
                "more)")
    if (spec.trials is not None and progress.done >= spec.trial_budget and not progress.running
            and not progress.waiting):
        return (f"study {spec.study!r} has spent its trial budget ({progress.done}/{spec.trials} trials done), so "
                f"no trial starts; to search on, run it with more --trials (--trials {progress.done + 10} runs 10 "
                "more)")
    return None


def first_worker_number(fresh: bool) -> int:
    """The number of the first worker a launcher starts; the others follow it. Worker numbers seed the samplers:
    a new study's workers are 0, 1, ... (worker 0 repeats a one-worker search exactly); a resumed or shared study's
    draw a base of their own, so two `run` commands on one study never train the same configurations side by side.
    """
    return 0 if fresh else 1000 + secrets.randbelow(10**6)


def _check_artifacts(location: ArtifactLocation) -> Path:
    """Checks the artifact store can take files and returns the directory for the workers' logs: `logs/` in an
    artifact directory, `./hpsearch-logs` beside a bucket (logs are the launcher's, on its own machine).

    Raises:
        UsageError: the directory cannot be created or written, or the bucket cannot be reached.
    """
    from hpsearch.storage.artifacts import open_artifact_store

    if isinstance(location, Path):
        _check_creatable(location)
        return location / "logs"
    try:
        open_artifact_store(location)
    except HpsearchError as exc:
        raise UsageError(f"{exc}; or pass --artifacts DIR") from None
    return Path("hpsearch-logs").resolve()


def _check_creatable(directory: Path) -> None:
    """Raises UsageError when `directory` is a file, lies under one, or could not be created or written."""
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not existing.is_dir():
        where = "is" if existing == directory else f"cannot be created: {existing} is"
        raise UsageError(f"artifact directory {directory} {where} a file; pass --artifacts DIR (or "
                         "$HPSEARCH_ARTIFACTS) naming a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"artifact directory {directory} cannot be written ({existing} is not writable); pass "
                         "--artifacts DIR (or $HPSEARCH_ARTIFACTS) naming a directory you can write to")


def _watch(study: optuna.Study, spec: StudySpec, procs: dict[int, subprocess.Popen[bytes]], workers: int,
           base: int, spawn: Callable[[int, int], subprocess.Popen[bytes]], log_dir: Path, console: Console,
           live: Any) -> bool:
    """Shows progress and respawns crashed workers (3 respawns per worker, in all) until none is left, or the
    circuit breaker trips; returns True when it gave up respawning and no worker ended by itself (exit 0: budget,
    deadline or grid done).

    A storage outage (server restart, dropped connections) pauses the progress display with one line and resumes
    it when the storage answers again; the workers wait it out on their own. Workers that exit meanwhile are
    respawned once the storage is back (a new one could not open the study before). The loop gives up after the
    workers' own outage limit.
    """
    import optuna

    from hpsearch.search.breaker import stop_reason
    from hpsearch.storage import caused_by_storage, fail_orphaned_trials

    respawns, failed_seen, gave_up, ended_well = 0, -1, False, False
    display, outage = _Display(spec, console, live, _spent(study, spec)), _outage(console, during_progress=True)
    exited: list[tuple[int, int]] = []  # (worker, exit code) reaped but not yet respawned
    while procs or exited:
        try:
            p = measure(study, spec, workers)
            stopped = p.failed != failed_seen and bool(stop_reason(study))  # the breaker trips on a failure
            failed_seen = p.failed
        except Exception as exc:
            outage.failed(exc)
            exited += _reap(procs, log_dir, console)
            time.sleep(POLL_SECONDS)
            continue
        outage.answered()
        if stopped:
            break
        display.update(p)
        exited += _reap(procs, log_dir, console)
        if any(code for _, code in exited):  # a worker that stopped on a tripped breaker is not respawned
            try:
                if stop_reason(study):
                    break
            except Exception as exc:
                outage.failed(exc)
                time.sleep(POLL_SECONDS)
                continue
        budget = spec.trial_budget
        work_left = p.done < budget and (p.running or p.waiting or p.done + p.running < budget)
        if work_left and spec.timeout and any(code for _, code in exited):
            try:  # past the deadline a respawned worker would only start and exit
                work_left = (StudyService(study, spec).seconds_left() or 0.0) > 0
            except Exception as exc:
                outage.failed(exc)
                time.sleep(POLL_SECONDS)
                continue
        ended_well = ended_well or any(code == 0 for _, code in exited)
        for i, code in exited:
            if work_left and code != 0:
                if respawns < 3 * workers:
                    respawns += 1
                    procs[i] = spawn(i, base + workers + respawns)
                else:
                    gave_up = True
        exited = []
        if procs:
            try:
                optuna.storages.fail_stale_trials(study)
                fail_orphaned_trials(study)
            except Exception as exc:
                if not caused_by_storage(exc):
                    raise  # an outage shows at the next measure
            time.sleep(POLL_SECONDS)
    return gave_up and not ended_well


def _spent(study: optuna.Study, spec: StudySpec) -> float:
    """Seconds of a time budget spent before this launch (a resumed study's clock runs from its first run); 0 without
    a time budget, or when the storage does not answer (the display then counts from now)."""
    if not spec.timeout:
        return 0.0
    try:
        return min(float(spec.timeout), StudyService(study, spec).elapsed())
    except Exception:  # noqa: BLE001 - a display's starting point is not worth failing a launch over
        return 0.0


class _Display:
    """The progress: a live panel on a terminal, else a line whenever something changed."""

    def __init__(self, spec: StudySpec, console: Console, live: Any, already: float = 0.0) -> None:
        """`already`: seconds of the study's time budget spent before this launch (a resumed timed study)."""
        self.spec, self.console, self.live = spec, console, live
        self.start = time.monotonic() - already
        self.last = ""

    def update(self, p: Progress) -> None:
        elapsed = time.monotonic() - self.start
        if self.live:
            self.live.update(render(self.spec, p, elapsed))
            return
        line = progress_line(self.spec, p, elapsed)
        if line.split("] ", 1)[1] != self.last:
            self.console.print(line, soft_wrap=True, markup=False, highlight=False)
            self.last = line.split("] ", 1)[1]


def _outage(console: Console, during_progress: bool) -> Outage:
    """A storage outage as the launcher lives it: a line on its console when it begins and when it ends; it gives
    up after the workers' own limit."""
    from hpsearch.storage import Outage

    def announce(exc: BaseException) -> None:
        waiting = "progress paused; the workers wait for it" if during_progress else "waiting for it"
        console.print(f"[yellow]storage unreachable ({type(exc).__name__}): {waiting}[/]", highlight=False)

    def back(seconds: float) -> None:
        console.print(f"storage back after {seconds:.0f}s{'; progress resumes' if during_progress else ''}",
                      highlight=False)

    advice = "run the same command again once the database is back"
    return Outage(announce, back, advice=f"the workers give up too; {advice}" if during_progress else advice)


def _reap(procs: dict[int, subprocess.Popen[bytes]], log_dir: Path, console: Console) -> list[tuple[int, int]]:
    """Removes the workers that exited from `procs`; returns (worker, exit code) of each, saying so if it failed."""
    exited = []
    for i, proc in list(procs.items()):
        code = proc.poll()
        if code is None:
            continue
        del procs[i]
        exited.append((i, code))
        if code != 0:
            console.print(f"[yellow]worker {i} exited with code {code}; see {log_dir}/worker-{i}.log[/]")
    return exited
