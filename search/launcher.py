"""`hpsearch run`: create (or resume) a study, launch worker processes, show the study's progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.search.spec import SPEC_ATTR, StudySpec
from hpsearch.search.worker import DEFAULT_RECYCLE, THREADS_ENV, WORKER_INDEX_ENV, threads_per_worker

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

POLL_SECONDS = 1.0
# Fields a joining spec must agree on with the stored one: otherwise trials would not be comparable.
IDENTITY_FIELDS = ("model", "dataset", "metric", "direction", "train_size", "validation_split", "epochs")


def default_params(spec: StudySpec) -> dict[str, Any]:
    """The builder's published configuration, as Optuna params (fixed values left out)."""
    import keras_tuner

    from hpsearch.datasets import load_dataset
    from hpsearch.models import get_builder

    # Input shape matters for some spaces (resnet50's image_size), so build on the study's data shape.
    data = load_dataset(spec.dataset, spec.data_dir, min(spec.train_size or 200, 200), spec.validation_split,
                        spec.seed)
    hp = keras_tuner.HyperParameters()
    get_builder(spec.model, data.input_shape, data.num_classes, **spec.model_options)(hp)
    fixed = spec.fixed_values()
    return {k: v for k, v in hp.values.items() if k not in fixed}


def create_or_resume(spec: StudySpec, storage: optuna.storages.BaseStorage, enqueue_defaults: bool = False
                     ) -> optuna.Study:
    """Creates the study with its spec, or checks that an existing one was made for the same search.

    Raises:
        UsageError: the study exists with a different model, dataset or metric.
    """
    import optuna

    study = optuna.create_study(study_name=spec.study, storage=storage, direction=spec.direction,
                                load_if_exists=True)
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
        study.set_user_attr("hpsearch_started_at", time.time())
    else:
        diffs = [f"{k}: study has {stored.get(k)!r}, asked {getattr(spec, k)!r}" for k in IDENTITY_FIELDS
                 if stored.get(k) != getattr(spec, k)]
        if diffs:
            raise UsageError(f"study {spec.study!r} exists with a different set-up ({'; '.join(diffs)}); use another "
                             "--study name or the same settings")
        if stored != spec.to_dict():  # budget, sampler, ...: the new values apply from now on
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
    if enqueue_defaults:
        study.enqueue_trial(default_params(spec), user_attrs={"enqueued": "published defaults"},
                            skip_if_exists=True)
    from hpsearch.search.notes import refresh_note

    refresh_note(study, spec)
    return study


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


def measure(study: optuna.Study, spec: StudySpec, workers: int) -> Progress:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    p = Progress()
    durations = []
    for t in trials:
        if t.state == TrialState.COMPLETE:
            p.complete += 1
            if t.value is not None and (p.best_value is None or (t.value > p.best_value if spec.direction ==
                                                                 "maximize" else t.value < p.best_value)):
                p.best_value, p.best_trial = t.value, t.number
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
    left = max(0, spec.trials - p.done)
    if durations and left:
        p.eta_seconds = sum(durations) / len(durations) * left / max(1, workers)
    return p


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
    head = Text.assemble((f"study {spec.study}", "bold"), f"  {p.done}/{spec.trials} done ",
                         (f"({p.complete} complete, {p.pruned} pruned, {p.failed} failed)", "dim"),
                         f"  best {spec.metric} {best}  elapsed {_fmt_seconds(elapsed)}",
                         f"  ETA {_fmt_seconds(p.eta_seconds)}")
    bar = ProgressBar(total=spec.trials, completed=p.done, width=60)
    table = Table(box=None, show_header=True, header_style="dim")
    for column in ("trial", "worker", "epoch", f"last {spec.metric}"):
        table.add_column(column)
    for r in p.running_trials:
        table.add_row(str(r["trial"]), r["worker"], f"{r['epoch']}/{spec.epochs}",
                      f"{r['last']:.4f}" if r["last"] is not None else "-")
    return Group(head, bar, table) if p.running_trials else Group(head, bar)


def progress_line(spec: StudySpec, p: Progress, elapsed: float) -> str:
    running = ", ".join(f"#{r['trial']}@{r['worker']} epoch {r['epoch']}/{spec.epochs}" for r in p.running_trials)
    best = f"{p.best_value:.4f} (trial {p.best_trial})" if p.best_value is not None else "-"
    return (f"[{_fmt_seconds(elapsed)}] {p.done}/{spec.trials} done ({p.complete} complete, {p.pruned} pruned, "
            f"{p.failed} failed), best {spec.metric} {best}, ETA {_fmt_seconds(p.eta_seconds)}"
            + (f"; running {running}" if running else ""))


def _spawn(index: int, serial: int, args: list[str], env: dict[str, str], log_dir: Path
           ) -> subprocess.Popen[bytes]:
    """Starts worker `index` (its log file); `serial` counts every start, respawns included, for its sampler seed."""
    log = open(log_dir / f"worker-{index}.log", "ab")  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen([sys.executable, "-m", "hpsearch", "worker", *args],
                            env={**env, WORKER_INDEX_ENV: str(serial)}, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def launch(spec: StudySpec, storage_url: str, workers: int, console: Console, recycle: int = DEFAULT_RECYCLE,
           artifacts: str | None = None, heartbeat_interval: int | None = None, grace_period: int | None = None,
           enqueue_defaults: bool = False, threads: int | None = None) -> Progress:
    """Creates/resumes the study, runs `workers` worker processes until the budget is spent, shows progress.

    The storage URL reaches the workers through the environment, never their command line (no password in ps).
    """
    import optuna
    from rich.live import Live

    from hpsearch.storage import artifact_dir, mask_url, open_storage

    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    storage = open_storage(storage_url, heartbeat_interval, grace_period)
    study = create_or_resume(spec, storage, enqueue_defaults)
    art_dir = artifact_dir(storage_url, artifacts)
    from hpsearch.storage.artifacts import safe_filename

    log_dir = art_dir / "logs" / safe_filename(spec.study)
    log_dir.mkdir(parents=True, exist_ok=True)
    threads = threads or threads_per_worker(workers)
    env = {**os.environ, "HPSEARCH_STORAGE": storage_url, "HPSEARCH_ARTIFACTS": str(art_dir),
           THREADS_ENV: str(threads), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    args = ["--study", spec.study, "--recycle", str(recycle)]
    if heartbeat_interval:
        args += ["--heartbeat-interval", str(heartbeat_interval)]
    if grace_period:
        args += ["--grace-period", str(grace_period)]
    before = measure(study, spec, workers)
    console.print(f"study [bold]{spec.study}[/] on {mask_url(storage_url)}: {spec.model} on {spec.dataset}, "
                  f"{before.done}/{spec.trials} trials done; starting {workers} worker(s) x {threads} thread(s); "
                  f"logs in {log_dir}")
    procs = {i: _spawn(i, i, args, env, log_dir) for i in range(workers)}
    respawns = 0
    start = time.monotonic()
    last_line = ""
    live = Live(console=console, refresh_per_second=2, transient=False) if console.is_terminal else None
    try:
        if live:
            live.start()
        while True:
            p = measure(study, spec, workers)
            elapsed = time.monotonic() - start
            if live:
                live.update(render(spec, p, elapsed))
            else:
                line = progress_line(spec, p, elapsed)
                if line.split("] ", 1)[1] != last_line:
                    console.print(line, soft_wrap=True, markup=False, highlight=False)
                    last_line = line.split("] ", 1)[1]
            for i, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del procs[i]
                work_left = p.done < spec.trials and (p.running or p.waiting or p.done + p.running < spec.trials)
                if code != 0:
                    console.print(f"[yellow]worker {i} exited with code {code}; see {log_dir}/worker-{i}.log[/]")
                if work_left and code != 0 and respawns < 3 * workers:
                    respawns += 1
                    procs[i] = _spawn(i, workers + respawns, args, env, log_dir)
            if not procs:
                break
            optuna.storages.fail_stale_trials(study)
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping the workers (running trials end FAIL; run the same command "
                      "again to resume)[/]")
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        if live:
            live.stop()
    final = measure(study, spec, workers)
    if final.done < spec.trials and not spec.timeout:
        raise HpsearchError(f"the workers stopped with {final.done}/{spec.trials} trials done; see the logs in "
                            f"{log_dir}")
    return final
