"""`hpsearch run`, `hpsearch create` and `hpsearch worker`: make a study and run its trials."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from hpsearch.cli._common import (
    ARTIFACTS_HELP,
    add_command,
    add_format_arg,
    add_spec_args,
    add_storage_arg,
    add_study_arg,
    log_with_secrets_masked,
    make_console,
    print_output,
    spec_from_args,
)
from hpsearch.errors import UsageError

if TYPE_CHECKING:
    from hpsearch.cli._common import Subparsers


def _add_queue_args(p: argparse.ArgumentParser) -> None:
    """The flags that queue first trials in a study (run, create)."""
    p.add_argument("--enqueue-defaults", action="store_true",
                   help="queue the builder's published configuration as the first trial")
    p.add_argument("--warm-start", metavar="STUDY[:K]",
                   help="queue the K best configurations (default 3) of another study in this storage, e.g. one "
                        "of the same model on other data")


def _add_worker_args(p: argparse.ArgumentParser) -> None:
    """The flags of the processes that run trials (run, worker)."""
    add_storage_arg(p)
    p.add_argument("--artifacts", help=ARTIFACTS_HELP)
    p.add_argument("--recycle", type=int, default=10, help="start a fresh worker process every K trials (default 10)")
    p.add_argument("--heartbeat-interval", type=int, help="seconds between heartbeats (default 60)")
    p.add_argument("--grace-period", type=int, help="seconds without heartbeat before a trial is failed and "
                   "retried (default 300)")


def _check_warm_start(value: str | None) -> None:
    """A malformed --warm-start stops before anything is created."""
    if value:
        from hpsearch.search.warm_start import parse

        parse(value)


# --------------------------------------------------------------------------------------------------------- run
def register_run(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "run", cmd_run, "create or resume a study and run its trials with parallel worker processes",
        "  hpsearch run --study cnn-mnist --model cnn --dataset mnist --data-dir ../shared/datasets/mnist \\\n"
        "      --trials 12 --workers 2 --epochs 3 --train-size 12000 --enqueue-defaults\n"
        "  hpsearch run --spec studies/cnn-mnist.yaml --workers 2")
    add_spec_args(p)
    _add_worker_args(p)
    p.add_argument("--workers", type=_workers, default=None, metavar="N|auto",
                   help="worker processes on this machine (default auto: from the cores, the trials and time left "
                        "and the trials' measured cost; the choice and its reason are printed)")
    p.add_argument("--threads", type=int,
                   help="TensorFlow threads per worker (default: the cores divided among the workers)")
    p.add_argument("--gpus", metavar="all|0,1,...",
                   help="one GPU per worker (CUDA_VISIBLE_DEVICES, memory growth on; --workers auto: one per GPU)")
    _add_queue_args(p)
    add_format_arg(p, "text", "json")
    p.add_argument("--quiet", action="store_true")


def _workers(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or auto, got {value!r}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from hpsearch.search.launcher import launch
    from hpsearch.storage import resolve_url

    console = make_console(args.quiet)
    url = resolve_url(args.storage)
    _check_warm_start(args.warm_start)
    from hpsearch.search.gpus import parse_gpus

    gpus, warning = parse_gpus(args.gpus)
    if warning:
        console.print(f"[yellow]warning: {warning}[/]")
    spec = spec_from_args(args, url)
    start = time.monotonic()
    launch(spec, url, args.workers, console, recycle=args.recycle, artifacts=args.artifacts,
           heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
           enqueue_defaults=args.enqueue_defaults, threads=args.threads, warm_start=args.warm_start, gpus=gpus)
    summary, versus = _summary(spec.study, url)
    summary["wall_seconds"] = round(time.monotonic() - start, 1)
    if args.format == "json":
        print_output(summary, args.format)
        return 0
    counts = summary["trials"]
    console.print(f"[bold]done[/] in {summary['wall_seconds']:.0f}s: {counts['complete']} complete, "
                  f"{counts['pruned']} pruned, {counts['fail']} failed")
    if "best_value" in summary:
        test = summary.get("test_accuracy")
        console.print(f"best trial {summary['best_trial']}: {spec.metric} {summary['best_value']:.4f}"
                      + (f", test accuracy {test:.4f}" if test is not None else "")
                      + f"\nparams {json.dumps(summary['best_params'])}")
    if versus is not None:
        console.print(("[green]" if versus.beaten else "[yellow]") + versus.message(spec.metric) + "[/]",
                      highlight=False)
    return 0


def _summary(study_name: str, storage_url: str) -> tuple[dict[str, Any], Any]:
    """Counts per state, the best trial and, when configurations were enqueued, whether the search beat them;
    from the same SQL queries as `best` and `studies`."""
    from hpsearch.search.versus import compare
    from hpsearch.storage.queries import STATES, make_engine, state_counts, study_info, top_trials

    engine = make_engine(storage_url, read_only=True)
    out: dict[str, Any] = {"study": study_name, "trials": state_counts(engine, study_name)[study_name]}
    best = top_trials(engine, study_name, limit=1)
    if best:
        out.update(best_trial=best[0].trial, best_value=best[0].value, best_params=best[0].params,
                   test_accuracy=best[0].user_attrs.get("test_accuracy"))
    versus = compare(top_trials(engine, study_name, limit=10**9, sort="number", states=STATES),
                     maximize=study_info(engine, study_name)[1] == "MAXIMIZE")
    if versus is not None:
        out["versus_enqueued"] = versus.as_dict()
    return out, versus


# ------------------------------------------------------------------------------------------------------ create
def register_create(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "create", cmd_create, "create a study from flags or a spec, checked, without running any trial",
        "  hpsearch create --study cnn-mnist --model cnn --dataset mnist --data-dir ../shared/datasets/mnist "
        "--trials 12\n  hpsearch create --spec studies/cnn-mnist.yaml && hpsearch run --study cnn-mnist")
    add_spec_args(p)
    add_storage_arg(p)
    _add_queue_args(p)
    add_format_arg(p, "text", "json")


def cmd_create(args: argparse.Namespace) -> int:
    from hpsearch.search.launcher import existing_spec, open_or_create
    from hpsearch.storage import mask_url, resolve_url

    url = resolve_url(args.storage)
    _check_warm_start(args.warm_start)
    spec = spec_from_args(args, url)
    if existing_spec(spec.study, url) is not None:
        raise UsageError(f"study {spec.study!r} exists already in {mask_url(url)}; run it with `hpsearch run --study "
                         f"{spec.study}` or pick another name")
    study, _ = open_or_create(spec, url, args.enqueue_defaults, warm_start=args.warm_start)
    info = {"study": spec.study, "storage": mask_url(url), "spec": study.user_attrs.get("hpsearch_spec")}
    if args.format == "json":
        print_output(info, args.format)
    else:
        print(f"created study {spec.study!r} ({spec.model} on {spec.dataset}, budget {spec.budget_text()}) in "
              f"{mask_url(url)}; run it with `hpsearch run --study {spec.study}` here, or `hpsearch worker --study "
              f"{spec.study}` on each machine")
    return 0


# ------------------------------------------------------------------------------------------------------ worker
def register_worker(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "worker", cmd_worker,
                    "join an existing study and run its trials until the budget is spent",
                    "  HPSEARCH_STORAGE=postgresql+psycopg://hp@db/hp hpsearch worker --study cnn-mnist")
    add_study_arg(p)
    _add_worker_args(p)
    p.add_argument("--threads", type=int, help="TensorFlow threads (default: all cores)")


def cmd_worker(args: argparse.Namespace) -> int:
    from hpsearch.search.launcher import check_worker_options
    from hpsearch.search.worker import await_launcher, run_worker

    await_launcher()
    check_worker_options(args.heartbeat_interval, args.grace_period)
    log_with_secrets_masked()
    ran = run_worker(args.study, args.storage, recycle=args.recycle, threads=args.threads, artifacts=args.artifacts,
                     heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period)
    print(f"worker finished: {ran} trial(s) run by this worker", flush=True)
    return 0
