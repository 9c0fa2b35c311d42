"""`hpsearch best`, `trials`, `status`, `studies` and `leaderboard`: read-only views of the studies in a storage.

They read through read-only connections and import neither TensorFlow nor a sampler.
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any

from hpsearch.cli._common import (
    add_command,
    add_format_arg,
    add_storage_arg,
    add_study_arg,
    make_console,
    print_output,
)

if TYPE_CHECKING:
    from hpsearch.cli._common import Subparsers

FAIL_REASON_WIDTH = 120  # characters of a failed trial's reason in `trials`' table (`--format json` gives it whole)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _fail_reason(row: Any, width: int | None = FAIL_REASON_WIDTH) -> str:
    """A failed trial's recorded reason (its first line, cut to `width`), or what a failed trial without one means."""
    if row.state != "FAIL":
        return ""
    lines = [line.strip() for line in str(row.user_attrs.get("fail_reason") or "").splitlines() if line.strip()]
    if not lines:
        return "stopped before it ended (Ctrl-C, a stop signal, or its worker killed)"
    first = lines[0]
    return first if width is None or len(first) <= width else first[:width - 3] + "..."


# -------------------------------------------------------------------------------------------------------- best
def register_best(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "best", cmd_best, "print the best trial's value, params and attributes",
                    "  hpsearch best --study cnn-mnist\n  hpsearch best --study cnn-mnist --format json")
    add_study_arg(p)
    add_storage_arg(p)
    add_format_arg(p, "table", "json", "yaml")


def cmd_best(args: argparse.Namespace) -> int:
    from hpsearch.storage.queries import best, make_engine

    engine = make_engine(args.storage, read_only=True)
    result = best(engine, args.study)
    if "pareto_front" not in result:
        noise = _validation_noise(engine, args.study, result)
        if noise is not None:
            result["validation"] = noise
    if args.format in ("json", "yaml"):
        print_output(result, args.format)
        return 0
    from rich.table import Table

    attrs = result["user_attrs"]
    console = make_console()
    if "pareto_front" in result:
        _print_front(args.study, result, console)
    console.print(f"study {args.study}: best trial {result['trial']}, value {result['value']:.6g}", markup=False)
    table = Table()
    table.add_column("param")
    table.add_column("value")
    for key, value in result["params"].items():
        table.add_row(key, str(value))
    for key in ("val_accuracy", "test_accuracy", "parameters", "epochs_run", "train_seconds"):
        if key in attrs:
            table.add_row(f"[dim]{key}[/]", str(attrs[key]))
    print_output(table, args.format, console)
    if "validation" in result:
        console.print(_noise_line(args.study, result["validation"]), markup=False, soft_wrap=True)
    from hpsearch.search.results import recorded_fixed

    fixed = recorded_fixed(attrs)
    if float({**fixed, **result["params"]}.get("lr_peak", 1)) > 1:  # the cycle replaces ReduceLROnPlateau
        fixed = {k: v for k, v in fixed.items() if k not in ("lr_factor", "lr_patience")}
    if fixed:  # what the trial trained with besides its params: lr_peak differs between new and older studies
        held = ", ".join(f"{k} {_short(v)}" for k, v in fixed.items())
        storage = " with the same --storage" if args.storage else ""  # never printed: it may hold a password
        console.print(f"held fixed: {held}\nretrain it on the whole training set: hpsearch retrain --study "
                      f"{shlex.quote(args.study)} --trial {result['trial']}{storage}", markup=False, style="dim",
                      soft_wrap=True)
    return 0


NOISE_LISTED = 5  # trials named in the line on the validation's noise; `trials` lists the rest
NOISE_READ = 500  # trials read to find those within the noise: beyond it, "or more"


def _validation_noise(engine: Any, study: str, result: dict[str, Any]) -> dict[str, Any] | None:
    """How many images the best's accuracy was measured on, its standard error, and the other completed trials
    within one standard error of it (best first): the ones that validation does not rank reliably. None when the
    metric is not a validation accuracy, or the study did not record its validation size (studies made before it
    did) or cannot be read for it."""
    from hpsearch.errors import HpsearchError
    from hpsearch.search.ranking import is_accuracy, standard_error
    from hpsearch.search.spec import SPEC_ATTR, VALIDATION_ATTR
    from hpsearch.storage.queries import study_user_attrs, top_trials

    try:
        attrs = study_user_attrs(engine, study)
    except HpsearchError:  # an attribute edited by hand: the best trial is still worth printing
        return None
    images = attrs.get(VALIDATION_ATTR)
    spec = attrs.get(SPEC_ATTR)
    metric = str(spec.get("metric", "")) if isinstance(spec, dict) else ""
    if not isinstance(images, int) or images < 1 or not metric.startswith("val_") or not is_accuracy(metric):
        return None
    error = standard_error(result["value"], images)
    rows = top_trials(engine, study, limit=NOISE_READ)
    within = [{"trial": r.trial, "value": r.value, "test_accuracy": r.user_attrs.get("test_accuracy")}
              for r in rows if r.trial != result["trial"] and abs(result["value"] - r.value) <= error]
    return {"images": images, "standard_error": round(error, 6), "within_one_error": within,
            "more_not_read": len(rows) == NOISE_READ and len(within) == NOISE_READ - 1}


def _noise_line(study: str, noise: dict[str, Any]) -> str:
    """The validation's noise in words, with the trials it cannot tell from the best."""
    error, images, within = noise["standard_error"], noise["images"], noise["within_one_error"]
    count = f"{len(within)}{' or more' if noise['more_not_read'] else ''}"
    head = (f"validation: {images:,} images, one standard error ±{error:.4f} (about {error * images:.0f} "
            f"images); ")
    if not within:
        return head + "no other trial is within it"
    named = ", ".join(f"{w['trial']} ({w['value']:.4f}"
                      + (f", test {w['test_accuracy']:.4f})" if w["test_accuracy"] is not None else ")")
                      for w in within[:NOISE_LISTED])
    more = (f" and more (hpsearch trials --study {shlex.quote(study)})" if len(within) > NOISE_LISTED else "")
    return (head + f"{count} other trial(s) within it, which this validation does not rank reliably (a new study "
            f"with a larger --validation-split narrows it): {named}{more}")


def _print_front(study: str, result: dict[str, Any], console: Any) -> None:
    """The Pareto front of a study of several objectives: one row per trade-off no other trial beats."""
    from rich.table import Table

    names = [o["name"] for o in result["objectives"]]
    arrows = ["↑" if o["direction"] == "maximize" else "↓" for o in result["objectives"]]
    front = result["pareto_front"]
    params = list(dict.fromkeys(k for r in front for k in r["params"]))
    table = Table(title=f"study {study}: Pareto front, {len(front)} trial(s) no other trial beats in every "
                        "objective", title_justify="left")
    for column in ("trial", *(f"{n} {a}" for n, a in zip(names, arrows, strict=True)), "test acc", *params):
        table.add_column(column)
    for r in front:
        test = r["user_attrs"].get("test_accuracy")
        table.add_row(str(r["trial"]), *(_short(v) for v in r["values"]), _short(test) if test is not None else "-",
                      *(_short(r["params"].get(n, "")) for n in params))
    console.print(table)


# ------------------------------------------------------------------------------------------------------ trials
def register_trials(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "trials", cmd_trials, "list a study's trials, best first (or by number or duration)",
        "  hpsearch trials --study cnn-mnist --sort value --limit 10\n"
        "  hpsearch trials --study cnn-mnist --sort number --state pruned,fail --format csv > trials.csv")
    add_study_arg(p)
    add_storage_arg(p)
    p.add_argument("--sort", default="value", help="value (best first, default), number or duration")
    p.add_argument("--limit", type=int, default=10, help="how many trials (default 10)")
    p.add_argument("--state", help="comma-separated states (default: complete when sorting by value, else all)")
    add_format_arg(p, "table", "csv", "json")


def cmd_trials(args: argparse.Namespace) -> int:
    from hpsearch.storage.queries import make_engine, objectives, top_trials, with_values

    states = args.state.split(",") if args.state else None
    engine = make_engine(args.storage, read_only=True)
    rows = top_trials(engine, args.study, args.limit, args.sort, states)
    # A study of several objectives: a column per further objective (the first is "value").
    others = [name for name, _ in objectives(engine, args.study)[1:]]
    if others:
        with_values(engine, rows)

    def extra(r: Any) -> list[Any]:
        return list((r.values or [])[1:]) + [None] * (len(others) - len((r.values or [])[1:]))

    if args.format == "json":
        print_output([r.as_dict() for r in rows], args.format)
        return 0
    names = list(dict.fromkeys(k for r in rows for k in r.params))
    if args.format == "csv":
        lines = [["trial", "state", "value", *others, "duration_seconds", "test_accuracy", "fail_reason", *names]]
        lines += ([r.trial, r.state, r.value, *extra(r), r.duration, r.user_attrs.get("test_accuracy"),
                   _fail_reason(r, None), *(r.params.get(n, "") for n in names)] for r in rows)
        print_output(lines, args.format)
        return 0
    from rich.table import Table

    # Why a trial failed, when one did: the reason its worker recorded (a stopped or killed trial has none).
    reasons = any(r.state == "FAIL" for r in rows)
    table = Table(title=f"study {args.study}: {len(rows)} trial(s) by {args.sort}", title_justify="left")
    for column in ("trial", "state", "value", *others, "test acc", "seconds", *names):
        table.add_column(column)
    if reasons:
        table.add_column("why failed", overflow="fold")
    for r in rows:
        test = r.user_attrs.get("test_accuracy")
        why = [_fail_reason(r)] if reasons else []
        table.add_row(str(r.trial), r.state.lower(), f"{r.value:.4f}" if r.value is not None else "-",
                      *(_short(v) if v is not None else "-" for v in extra(r)),
                      f"{test:.4f}" if test is not None else "-", f"{r.duration:.0f}" if r.duration else "-",
                      *(_short(r.params.get(n, "")) for n in names), *why)
    print_output(table, args.format)
    return 0


# ------------------------------------------------------------------------------------------------------ status
def register_status(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "status", cmd_status,
                    "a study's progress: counts per state, best so far, running trials, ETA",
                    "  hpsearch status --study cnn-mnist\n  hpsearch status --study cnn-mnist --format json")
    add_study_arg(p)
    add_storage_arg(p)
    add_format_arg(p, "text", "json")


def cmd_status(args: argparse.Namespace) -> int:
    from hpsearch.search.launcher import render
    from hpsearch.search.service import StudyService
    from hpsearch.storage import resolve_url, storage_errors_as_messages

    url = resolve_url(args.storage)
    service = StudyService.read_only(args.study, url)  # no sampler, nothing written, no TensorFlow
    with storage_errors_as_messages(url):
        progress = service.current()
        data = service.status(progress)
        elapsed = service.elapsed()
    if args.format == "json":
        print_output(data, args.format)
        return 0
    if "stopped" in data:
        print(data["stopped"])
    print_output(render(service.spec, progress, elapsed), args.format)
    return 0


# ----------------------------------------------------------------------------------------------------- studies
def _done_of_budget(counts: dict[str, int], row: dict[str, Any]) -> str:
    """Trials done over the study's trial budget ("7/20"), its time budget ("7 in 600 s") when that is all it has,
    or "7/?" for a study whose spec cannot be read."""
    done = counts["complete"] + counts["pruned"]
    if row["budget"] is None and isinstance(row.get("timeout"), (int, float)):
        return f"{done} in {row['timeout']:.0f} s"
    return f"{done}/{row['budget'] or '?'}"


def register_studies(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "studies", cmd_studies,
                    "every study in the storage: model, dataset, trials, best value",
                    "  hpsearch studies\n  hpsearch studies --format json")
    add_storage_arg(p)
    add_format_arg(p, "table", "json")


def cmd_studies(args: argparse.Namespace) -> int:
    from hpsearch.search.spec import SPEC_ATTR
    from hpsearch.storage.queries import leaderboard, make_engine, state_counts, study_attrs

    engine = make_engine(args.storage, read_only=True)
    counts = state_counts(engine)
    specs = study_attrs(engine, SPEC_ATTR)
    best = {r["study"]: r for r in leaderboard(engine)}
    rows = []
    for name, c in counts.items():
        spec = specs.get(name)
        spec = spec if isinstance(spec, dict) else {}  # a study not made by hpsearch, or an attribute edited by hand
        rows.append({"study": name, "model": spec.get("model"), "dataset": spec.get("dataset"),
                     "budget": spec.get("trials"), "timeout": spec.get("timeout"), "trials": c,
                     "best_value": best.get(name, {}).get("value"),
                     "test_accuracy": best.get(name, {}).get("test_accuracy")})
    if args.format == "json":
        print_output(rows, args.format)
        return 0
    from rich.table import Table

    table = Table(title="studies", title_justify="left")
    for column in ("study", "model", "dataset", "done/budget", "pruned", "failed", "running", "best", "test acc"):
        table.add_column(column)
    for r in rows:
        c = r["trials"]
        table.add_row(r["study"], str(r["model"] or "-"), str(r["dataset"] or "-"),
                      _done_of_budget(c, r), str(c["pruned"]), str(c["fail"]),
                      str(c["running"]), f"{r['best_value']:.4f}" if r["best_value"] is not None else "-",
                      f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-")
    print_output(table, args.format)
    return 0


# ------------------------------------------------------------------------------------------------- leaderboard
def register_leaderboard(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "leaderboard", cmd_leaderboard, "the best trial of every study in the storage",
        "  hpsearch leaderboard\n  hpsearch leaderboard --storage postgresql+psycopg://hp@db/hp --format json")
    add_storage_arg(p)
    add_format_arg(p, "table", "json")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from hpsearch.storage.queries import leaderboard, make_engine

    rows = leaderboard(make_engine(args.storage, read_only=True))
    if args.format == "json":
        print_output(rows, args.format)
        return 0
    from rich.table import Table

    table = Table(title="best trial of every study", title_justify="left")
    for column in ("study", "best value", "test acc", "trial", "complete", "params"):
        table.add_column(column, overflow="fold")
    for r in rows:
        test = r["test_accuracy"]
        table.add_row(r["study"], f"{r['value']:.4f}", f"{test:.4f}" if test is not None else "-", str(r["trial"]),
                      str(r["complete"]), ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items()))
    print_output(table, args.format)
    return 0
