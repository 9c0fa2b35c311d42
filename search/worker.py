"""A worker process: joins a study and runs its trials until the global budget is spent.

Any number of workers, on any number of machines, can join one study; the budget is exact between them
(see `objective.check_budget`). A worker replaces its own process image every `recycle` trials, so memory
that TensorFlow does not give back cannot grow without bound.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError, exception_chain

if TYPE_CHECKING:
    import optuna

    from hpsearch.search.spec import StudySpec
    from hpsearch.storage import Outage
    from hpsearch.storage.locks import StudyLock

logger = logging.getLogger("hpsearch")

DEFAULT_RECYCLE = 10
IDLE_POLL_SECONDS = 2.0
THREADS_ENV = "HPSEARCH_THREADS"
_RAN_ENV = "HPSEARCH_WORKER_TRIALS_RUN"  # carried across a recycling exec
WORKER_INDEX_ENV = "HPSEARCH_WORKER_INDEX"  # set by the launcher: 0, 1, ... for each worker it starts
PARENT_PID_ENV = "HPSEARCH_LAUNCHER_PID"  # set by the launcher: its workers stop when it dies
AWAIT_GO_ENV = "HPSEARCH_AWAIT_GO"  # set by the launcher on the workers it starts before its checks end
EARLY_START_ENV = "HPSEARCH_EARLY_START"  # "0": the launcher starts its workers only after its checks
_PR_SET_PDEATHSIG = 1


class StopFlag:
    """Set by the first stop signal. The KeyboardInterrupt that signal raises can land inside a garbage-collector
    callback, where Python prints it ("Exception ignored in ...") and goes on: the trial would keep training until
    the launcher's SIGKILL left it RUNNING. Training (`callbacks.StopWhenSet`), the objective after training and
    the trial loop check this flag too. A plain attribute, not a threading.Event: a second signal arriving inside
    the first one's handler would block forever on the Event's lock."""

    def __init__(self) -> None:
        self.raised = False

    def set(self) -> None:
        self.raised = True

    def clear(self) -> None:
        self.raised = False

    def is_set(self) -> bool:
        return self.raised


STOP_REQUESTED = StopFlag()


class StudyStopped(HpsearchError):
    """The study's circuit breaker tripped: its trials keep failing the same way."""


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(threads: int | None) -> None:
    """Caps the numeric libraries' thread pools; must run before TensorFlow starts."""
    if not threads:
        return
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1" if threads <= 2 else "2"
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["TF_NUM_INTEROP_THREADS"]))
        except RuntimeError:  # TensorFlow already initialised in this process: the env vars apply next time
            logger.warning("TensorFlow started before its threads could be set to %d: this process trains with "
                           "its default; a recycled process applies the setting", threads)


def _interrupt_once(_signum: int, _frame: object) -> None:
    """Ctrl-C reaches a worker twice (the terminal's process group, then the launcher passing it on): the first
    stops the trial, later ones are ignored so they cannot cut short the write that records it FAIL."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    STOP_REQUESTED.set()
    _set_parent_death_signal(signal.SIGKILL)  # SIGTERM is ignored from now on: a dead launcher must still end us
    raise KeyboardInterrupt


def stop_cleanly_on_ctrl_c() -> None:
    """Ctrl-C, SIGTERM (docker stop, kill, a pod's end) and SIGHUP (the terminal closed) all stop the running
    trial the same way: it is recorded FAIL and the study stays resumable."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt_once)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _interrupt_once)
    if not isinstance(sys.unraisablehook, _QuietSwallowedStop):
        sys.unraisablehook = _QuietSwallowedStop(sys.unraisablehook)


class _QuietSwallowedStop:
    """`sys.unraisablehook`: a stop's KeyboardInterrupt that Python had to drop (it landed in a garbage-collector
    callback) is one log line, not an "Exception ignored" traceback; STOP_REQUESTED still ends the trial. Anything
    else goes to the hook that was there before."""

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and STOP_REQUESTED.is_set():
            logger.info("stop signal received; the running trial ends FAIL at the next check (a training batch, "
                        "the end of training, the next trial)")
            return
        self.previous(unraisable)


def _set_parent_death_signal(signum: int) -> bool:
    """Asks Linux to send `signum` when the parent process dies (prctl PR_SET_PDEATHSIG); False elsewhere."""
    if not sys.platform.startswith("linux") or not os.environ.get(PARENT_PID_ENV):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_launcher() -> None:
    """A worker started by `hpsearch run` stops (as on SIGTERM) when the launcher dies, even by `kill -9`:
    no worker is ever left training for a launcher that is gone (Linux only; elsewhere a no-op)."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent or not _set_parent_death_signal(signal.SIGTERM):
        return
    if str(os.getppid()) != parent:  # the launcher died before the request took effect
        raise KeyboardInterrupt


def await_launcher() -> None:
    """In a worker the launcher started early (while it checks a new study's spec and creates it): loads what
    training needs (TensorFlow, Keras, Optuna: seconds that now overlap the launcher's checks), then waits for the
    launcher's go, one JSON line on stdin with the environment to run with (storage, threads, worker number) and
    the log file to write to. An empty line or the end of stdin (the checks failed, the launcher stopped) ends the
    process quietly. Does nothing in a worker started any other way, and a recycled one does not wait again."""
    if os.environ.pop(AWAIT_GO_ENV, None) != "1" or not os.environ.get(PARENT_PID_ENV):
        return
    import json

    die_with_launcher()  # and a launcher already gone ends this one
    import hpsearch.search.objective  # noqa: F401 - the imports worth starting early

    line = sys.stdin.readline()
    if not line.strip():
        raise SystemExit(0)
    go = json.loads(line)
    os.environ.update(go["env"])
    log = os.open(go["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for fd in (1, 2):
        os.dup2(log, fd)
    os.close(log)


def sampler_seed_offset() -> int:
    """Each worker process samples with its own seed: the same seed in every worker made them all draw the same
    random start-up configurations (measured: two workers trained identical trials side by side).

    The launcher numbers the workers it starts; worker 0 keeps the study's seed, so a one-worker search repeats
    exactly. A worker started by hand (`hpsearch worker`) takes its offset from the OS. A recycled worker adds the
    trials it has run, so it does not replay its own first draws.
    """
    index = os.environ.get(WORKER_INDEX_ENV)
    base = int(index) * 7919 if index is not None and index.isdigit() else secrets.randbelow(2**30) + 1
    return base + int(os.environ.get(_RAN_ENV, "0"))


def load_spec(study: optuna.Study) -> StudySpec:
    from hpsearch.search.spec import SPEC_ATTR, StudySpec

    data = study.user_attrs.get(SPEC_ATTR)
    if not data:
        raise UsageError(f"study {study.study_name!r} was not created by hpsearch (it has no spec); create it with "
                         "`hpsearch run` or `hpsearch create`")
    return StudySpec.from_study(data, f"study {study.study_name}")


def open_study(study_name: str, storage: optuna.storages.BaseStorage) -> tuple[optuna.Study, StudySpec]:
    import optuna

    from hpsearch.search.adapter import grid_space
    from hpsearch.search.spec import check_study_name

    check_study_name(study_name)
    try:
        probe = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise UsageError(f"study {study_name!r} does not exist; existing studies: {', '.join(names) or '(none)'}"
                         ) from None
    spec = load_spec(probe)
    space = None
    if spec.sampler == "grid":
        from hpsearch.models import get_builder

        space = grid_space(get_builder(spec.model, **spec.model_options), spec.fixed_values())
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=spec.make_sampler(space, sampler_seed_offset()), pruner=spec.make_pruner())
    return study, spec


def _window(study: optuna.Study, spec: StudySpec) -> tuple[float, float] | None:
    """The study's time budget as (start, deadline) in `time.time()` seconds; None without a timeout."""
    if not spec.timeout:
        return None
    from hpsearch.search.service import start_clock

    start = start_clock(study)  # a worker started by hand on a created study starts its clock
    return start, start + float(spec.timeout)


def run_worker(study_name: str, storage_url: str | None = None, recycle: int = 0,
               threads: int | None = None, artifacts: str | None = None,
               heartbeat_interval: int | None = None, grace_period: int | None = None) -> int:
    """Runs trials of the study until its budget is spent; returns how many this worker ran.

    After `recycle` trials (0: never; the CLI's default is 10) the process replaces itself (`exec`) with a
    fresh one that goes on, so only call it with `recycle` from a process started as `hpsearch worker`.
    """
    configure_threads(threads or (int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None))
    stop_cleanly_on_ctrl_c()
    die_with_launcher()
    from hpsearch.search.objective import Objective
    from hpsearch.storage import (
        DEFAULT_GRACE_PERIOD,
        DEFAULT_HEARTBEAT_INTERVAL,
        STORAGE_OUTAGE_SECONDS,
        mask_url,
        open_storage,
        resolve_url,
    )
    from hpsearch.storage.artifacts import artifact_location, open_artifact_store

    url = resolve_url(storage_url)

    def join() -> tuple[optuna.Study, StudySpec]:
        return open_study(study_name, open_storage(url, heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL,
                                                   grace_period or DEFAULT_GRACE_PERIOD))

    # A worker (re)started while the database restarts (a supervisor, a recycled process, a pod) waits for it.
    starting = worker_outage(f"cannot reach the storage {mask_url(url)}; waiting up to {STORAGE_OUTAGE_SECONDS:.0f}s "
                             "for it (check the URL if it never answers)")
    study, spec = starting.wait_out(join)
    objective = Objective(spec, open_artifact_store(artifact_location(url, artifacts)))
    window = worker_outage().wait_out(lambda: _window(study, spec))
    objective.attach_cost(study, window)
    freeze_start_up_heap()
    ran_before = int(os.environ.get(_RAN_ENV, "0"))
    from hpsearch.search import breaker
    from hpsearch.search.notes import note_callback

    deadline = window[1] if window else None
    ran = run_trials(study, spec.trial_budget, objective, deadline, recycle,
                     on_recycle=lambda n: _recycle(ran_before + n), callbacks=[note_callback(spec), breaker.callback])
    return ran_before + ran


def freeze_start_up_heap() -> None:
    """Leaves what the worker's start made (TensorFlow's and Keras' modules, the data, the study) out of the full
    garbage collections every trial makes (`clear_session` before it, Optuna's after it, the cost-aware sampler's
    after its builds), which would otherwise walk these objects each time though they live as long as the process.
    Collected first, so no garbage is frozen; a cycle among them that becomes garbage later stays until the process
    ends (once each: Keras' and TensorFlow's global state that `clear_session` replaces, say). HPSEARCH_GC_FREEZE=0
    leaves the heap as it is (benchmarks compare)."""
    import gc

    if os.environ.get("HPSEARCH_GC_FREEZE", "1") == "0":
        return
    gc.collect()
    gc.freeze()


def run_trials(study: optuna.Study, budget: int, objective: Callable[[optuna.trial.Trial], float],
               deadline: float | None = None, recycle: int = 0, on_recycle: Callable[[int], None] | None = None,
               gc_after_trial: bool = True, callbacks: list[Callable[..., None]] | None = None) -> int:
    """The worker loop: start trials while the budget has room or retries wait; returns how many ran here.

    When only other workers' trials are left, it waits for them and fails those whose heartbeat stopped,
    so that their retries run here. `gc_after_trial` (a full collection: 0.3-0.4 s on 2 cores once TensorFlow is
    imported, near 0 s after `freeze_start_up_heap`) frees what a Keras trial leaves behind; cheap objectives can
    turn it off.
    """
    from hpsearch.search.budget import BudgetReached, check_budget
    from hpsearch.storage.locks import StudyLock

    lock = StudyLock(study)

    def guarded(trial: optuna.trial.Trial) -> float:
        lock.release()  # the trial exists: others may create theirs
        stop_if_asked()
        try:
            check_budget(study, trial, budget)  # the safety net for storages without a lock
        except BudgetReached as exc:
            trial.set_user_attr("fail_reason", str(exc))  # `trials` and the dashboard say why it ended FAIL
            raise
        return objective(trial)

    # A trial whose result could not be stored stays RUNNING until its heartbeat is stale, then is retried. The
    # deadline is checked between retries: a study's timeout ends a worker that waits for the storage too.
    ran, outage = 0, worker_outage()
    try:
        while deadline is None or time.time() < deadline:
            stop_if_asked()
            try:
                step = _step(study, budget, lock, guarded, gc_after_trial, callbacks)
            except Exception as exc:
                lock.release()
                outage.failed(exc)
                outage.pause()
                continue
            outage.answered()
            if step == "done":
                break
            if step == "ran":
                ran += 1
                if recycle and ran >= recycle and on_recycle is not None:
                    stop_if_asked()  # a recycled process would inherit the ignored signals, not the flag
                    lock.close()
                    on_recycle(ran)
        else:
            logger.info("study timeout reached")
    finally:
        lock.close()
    return ran


def stop_if_asked() -> None:
    """A stop signal whose KeyboardInterrupt was dropped (see StopFlag) stops the trial or the worker here."""
    if STOP_REQUESTED.is_set():
        raise KeyboardInterrupt("stop requested")


def _step(study: optuna.Study, budget: int, lock: StudyLock, objective: Callable[[optuna.trial.Trial], float],
          gc_after_trial: bool, callbacks: list[Callable[..., None]] | None) -> str:
    """One turn of the worker loop: "ran" a trial, "lost" one (another worker ended it meanwhile), "idle" (only
    other workers' trials are left: stale and orphaned ones are failed so their retries can run), or "done".

    Raises:
        StudyStopped: the circuit breaker tripped.
    """
    import optuna
    from optuna.trial import TrialState

    from hpsearch.search.breaker import describe, stop_reason
    from hpsearch.search.budget import count_trials, remaining_budget
    from hpsearch.storage import fail_orphaned_trials

    stopped = stop_reason(study)
    if stopped:
        raise StudyStopped(describe(stopped, study.study_name))
    lock.acquire()
    spent = remaining_budget(study, budget) == 0 or _grid_exhausted(study)
    if spent and not count_trials(study, (TrialState.WAITING,)):
        lock.release()
        if not count_trials(study, (TrialState.RUNNING,)):
            return "done"
        optuna.storages.fail_stale_trials(study)
        fail_orphaned_trials(study)  # died before their first heartbeat: no stale check sees them
        time.sleep(IDLE_POLL_SECONDS)
        return "idle"
    try:
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=gc_after_trial, callbacks=callbacks)
    except Exception as exc:
        if not _ended_elsewhere(exc):
            raise
        logger.warning("this worker's trial was ended by another worker while it ran (its heartbeat looked stale: "
                       "the storage answered slower than the grace period); its retry, if any are left, runs it again")
        return "lost"
    finally:
        lock.release()
    return "ran"


def _ended_elsewhere(exc: BaseException) -> bool:
    """Whether `exc` is Optuna refusing to record this worker's result because the trial had already ended: another
    worker's stale check failed it while it ran here (its beats reached a storage slower than the grace period
    allows). That worker queued its retry (while retries are left), which runs it again. Optuna says so as
    UpdateFinishedTrialError when the other worker's write came during ours, and as "Cannot tell a FAIL trial" (under
    an AssertionError of its own) when it came before."""
    import optuna

    return any(isinstance(error, optuna.exceptions.UpdateFinishedTrialError)
               or (isinstance(error, ValueError) and str(error).startswith("Cannot tell a "))
               for error in exception_chain(exc))


def _grid_exhausted(study: optuna.Study) -> bool:
    """A grid search whose every point has been tried: Optuna's GridSampler would try them again (a study whose time
    is its whole budget has no trial cap to stop it)."""
    import optuna

    sampler = study.sampler
    return isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)


def worker_outage(detail: str = "") -> Outage:
    """A worker's storage outage: a line in its log when it begins (with `detail`, if any) and one when it ends."""
    from hpsearch.storage import Outage

    def announce(exc: BaseException) -> None:
        logger.warning("storage unreachable (%s)%s", type(exc).__name__, f": {detail}" if detail else "")

    return Outage(announce, back=lambda seconds: logger.info("storage back after %.0fs", seconds))


def _recycle(ran: int) -> None:
    """Replaces this process with a fresh interpreter running the same command (memory goes back to the OS)."""
    logger.info("recycling the worker process after %d trials", ran)
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[_RAN_ENV] = str(ran)
    os.execv(sys.executable, [sys.executable, "-m", "hpsearch", *sys.argv[1:]])
