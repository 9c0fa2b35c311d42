"""The `hpsearch` command line: one entry point, one function per subcommand.

Exit codes: 0 ok, 1 failure, 2 usage error (unknown name, bad value), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output

import warnings  # noqa: E402

from hpsearch.errors import HpsearchError, UsageError  # noqa: E402

# Heartbeats and artifacts are marked experimental by Optuna; users can do nothing about that warning.
warnings.filterwarnings("ignore", message=r".*is experimental.*")

CommandType = Callable[[argparse.Namespace], int]
STORAGE_HELP = "database URL (default: $HPSEARCH_STORAGE, else sqlite:///hpsearch.db)"


_TF_NOISE = ("All log messages before absl::InitializeLog()", "cudart_stub.cc", "cpu_feature_guard.cc",
             "rebuild TensorFlow with the appropriate compiler flags", "cuda_platform.cc", "Unable to register cu")


def import_keras_quietly() -> None:
    """Imports Keras (and TensorFlow) with the C++ start-up chatter about missing GPUs filtered out of stderr.

    That chatter is printed before TensorFlow reads TF_CPP_MIN_LOG_LEVEL; real errors still get through.
    """
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow

                tensorflow.config.list_physical_devices("GPU")  # device probing prints its own chatter
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not any(noise in line for noise in _TF_NOISE):
                    print(line, file=sys.stderr)


def _console(quiet: bool = False):  # rich is imported lazily: `hpsearch --help` stays instant
    from rich.console import Console

    console = Console(stderr=False, quiet=quiet, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped or logged: rich would assume 80 columns and cut the tables
    return console


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def parse_assignments(items: Sequence[str] | None) -> dict[str, Any]:
    """`name=value` pairs from `--set`, values parsed as YAML scalars (ints, floats, booleans, strings)."""
    import yaml

    values: dict[str, Any] = {}
    for item in items or ():
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set expects name=value, got {item!r} (example: --set filters_1=64)")
        values[name.strip()] = yaml.safe_load(raw)
    return values


# ------------------------------------------------------------------------------------------------ models / datasets
def cmd_models(args: argparse.Namespace) -> int:
    from hpsearch.models import MODELS, format_range, search_space

    names = [args.model] if args.model else list(MODELS)
    spaces = {}
    for name in names:
        if name not in MODELS:
            from hpsearch.errors import UnknownNameError

            raise UnknownNameError("model", name, list(MODELS))
        spaces[name] = search_space(name)
    if args.format == "json":
        _print_json({n: {"description": MODELS[n].description, "space": s} for n, s in spaces.items()})
        return 0
    from rich.table import Table

    console = _console()
    for name, space in spaces.items():
        table = Table(title=f"[bold]{name}[/] - {MODELS[name].description}", title_justify="left")
        for column in ("hyperparameter", "type", "range / values", "default", "condition"):
            table.add_column(column)
        for entry in space:
            table.add_row(entry["name"], entry["type"], format_range(entry), str(entry["default"]),
                          entry.get("condition", ""))
        console.print(table)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from hpsearch.datasets import DATASETS, locate

    rows = [{"name": n, "description": i.description, "found": locate(n, args.data_dir)} for n, i in DATASETS.items()]
    if args.format == "json":
        _print_json(rows)
        return 0
    from rich.table import Table

    table = Table(title="datasets (--data-dir / HPSEARCH_DATA_DIR is searched first)", title_justify="left")
    for column in ("name", "description", "files found at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        found = row["found"]
        table.add_row(row["name"], row["description"], f"[red]{found}[/]" if found.startswith("NOT") else found)
    _console().print(table)
    return 0


# ------------------------------------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    import keras
    import keras_tuner

    from hpsearch.datasets import load_dataset
    from hpsearch.models import get_builder, training_config
    from hpsearch.search.reports import classification_report, plot_confusion, plot_curves
    from hpsearch.search.training import fit_and_evaluate

    console = _console(args.quiet)
    get_builder(args.model)  # an unknown name fails before minutes of data loading
    keras.utils.set_random_seed(args.seed)
    data = load_dataset(args.dataset, args.data_dir, args.train_size, args.validation_split, args.seed)
    console.print(data.summary())
    hp = keras_tuner.HyperParameters()
    values = parse_assignments(args.set)
    values.update({k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v is not None})
    for name, value in values.items():
        hp.Fixed(name, value)
    options = {"weights": args.weights} if args.weights else {}
    model = get_builder(args.model, data.input_shape, data.num_classes, **options)(hp)
    config = training_config(hp)
    console.print(f"{args.model}: {model.count_params():,} parameters, {hp.values}")
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    result = fit_and_evaluate(model, data, config, verbose=verbose)
    summary = {"model": args.model, "dataset": args.dataset, "params": hp.values, "parameters": result.parameters,
               "epochs_run": result.epochs_run, "val_accuracy": result.val_accuracy,
               "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
               "train_seconds": round(result.train_seconds, 2),
               "images_per_second": round(result.images_per_second, 1)}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.keras")
        plot_curves(result.history, out / "curves.png", f"{args.model} on {args.dataset}")
        plot_confusion(data.y_test, result.y_pred, data.class_names, out / "confusion_matrix.png", args.model)
        (out / "classification_report.txt").write_text(
            classification_report(data.y_test, result.y_pred, data.class_names))
        (out / "result.json").write_text(json.dumps(summary, indent=2))
        summary["out"] = str(out)
    if args.format == "json":
        _print_json(summary)
    else:
        console.print(f"[bold]test accuracy {result.test_accuracy:.2%}[/] (best validation "
                      f"{result.val_accuracy:.2%}) after {result.epochs_run} epochs in "
                      f"{result.train_seconds:.1f}s, {result.images_per_second:,.0f} images/s"
                      + (f"; model, curves and confusion matrix in {args.out}" if args.out else ""))
    return 0


# ------------------------------------------------------------------------------------------------- search
def _spec_from_args(args: argparse.Namespace) -> Any:
    from hpsearch.search.spec import StudySpec

    overrides = {
        "study": args.study, "model": args.model, "dataset": args.dataset, "data_dir": args.data_dir,
        "train_size": args.train_size, "validation_split": args.validation_split, "metric": args.metric,
        "direction": args.direction, "sampler": args.sampler, "pruner": args.pruner, "seed": args.seed,
        "trials": args.trials, "timeout": args.timeout, "epochs": args.epochs, "batch_size": args.batch_size,
        "fixed": parse_assignments(args.set) or None,
        "search_training": args.search_training.split(",") if args.search_training else None,
        "model_options": {"weights": args.weights} if args.weights else None,
    }
    return StudySpec.load(args.spec, overrides)


def _summary(study_name: str, storage_url: str) -> dict[str, Any]:
    """Counts per state and the best trial, from the same SQL queries as `best` and `studies`."""
    from hpsearch.storage.queries import make_engine, state_counts, top_trials

    engine = make_engine(storage_url)
    out: dict[str, Any] = {"study": study_name, "trials": state_counts(engine, study_name)[study_name]}
    best = top_trials(engine, study_name, limit=1)
    if best:
        out.update(best_trial=best[0].trial, best_value=best[0].value, best_params=best[0].params,
                   test_accuracy=best[0].user_attrs.get("test_accuracy"))
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from hpsearch.search.launcher import launch
    from hpsearch.storage import resolve_url

    console = _console(args.quiet)
    spec = _spec_from_args(args)
    url = resolve_url(args.storage)
    start = time.monotonic()
    launch(spec, url, args.workers, console, recycle=args.recycle, artifacts=args.artifacts,
           heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
           enqueue_defaults=args.enqueue_defaults, threads=args.threads)
    summary = _summary(spec.study, url)
    summary["wall_seconds"] = round(time.monotonic() - start, 1)
    if args.format == "json":
        _print_json(summary)
        return 0
    counts = summary["trials"]
    console.print(f"[bold]done[/] in {summary['wall_seconds']:.0f}s: {counts['complete']} complete, "
                  f"{counts['pruned']} pruned, {counts['fail']} failed")
    if "best_value" in summary:
        test = summary.get("test_accuracy")
        console.print(f"best trial {summary['best_trial']}: {spec.metric} {summary['best_value']:.4f}"
                      + (f", test accuracy {test:.4f}" if test is not None else "")
                      + f"\nparams {json.dumps(summary['best_params'])}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from hpsearch.search.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ran = run_worker(args.study, args.storage, recycle=args.recycle, threads=args.threads, artifacts=args.artifacts,
                     heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period)
    print(f"worker finished: {ran} trial(s) run by this worker", flush=True)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from hpsearch.search.keras_tuner_engine import tune

    spec = _spec_from_args(args)
    result = tune(args.tuner, spec, args.directory, overwrite=args.overwrite, verbose=0 if args.quiet else 1)
    if args.format == "json":
        _print_json(result)
    else:
        _console(args.quiet).print(
            f"KerasTuner {args.tuner}: {result['trials']} trials in {result['seconds']:.0f}s, best {spec.metric} "
            f"{result['value']:.4f}, test accuracy {result['test_accuracy']:.4f}\n"
            f"params {json.dumps(result['params'])}")
    return 0


def _dump(data: Any, fmt: str) -> None:
    if fmt == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    else:
        _print_json(data)


def cmd_best(args: argparse.Namespace) -> int:
    from hpsearch.storage.queries import best, make_engine

    result = best(make_engine(args.storage), args.study)
    if args.format in ("json", "yaml"):
        _dump(result, args.format)
        return 0
    from rich.table import Table

    attrs = result["user_attrs"]
    console = _console()
    console.print(f"study {args.study}: best trial {result['trial']}, value {result['value']:.6g}", markup=False)
    table = Table()
    table.add_column("param")
    table.add_column("value")
    for key, value in result["params"].items():
        table.add_row(key, str(value))
    for key in ("val_accuracy", "test_accuracy", "parameters", "epochs_run", "train_seconds"):
        if key in attrs:
            table.add_row(f"[dim]{key}[/]", str(attrs[key]))
    console.print(table)
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    from hpsearch.storage.queries import make_engine, top_trials

    states = args.state.split(",") if args.state else None
    rows = top_trials(make_engine(args.storage), args.study, args.limit, args.sort, states)
    if args.format == "json":
        _print_json([r.as_dict() for r in rows])
        return 0
    names = list(dict.fromkeys(k for r in rows for k in r.params))
    if args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["trial", "state", "value", "duration_seconds", "test_accuracy", *names])
        for r in rows:
            writer.writerow([r.trial, r.state, r.value, r.duration, r.user_attrs.get("test_accuracy"),
                             *(r.params.get(n, "") for n in names)])
        return 0
    from rich.table import Table

    table = Table(title=f"study {args.study}: {len(rows)} trial(s) by {args.sort}", title_justify="left")
    for column in ("trial", "state", "value", "test acc", "seconds", *names):
        table.add_column(column)
    for r in rows:
        test = r.user_attrs.get("test_accuracy")
        table.add_row(str(r.trial), r.state.lower(), f"{r.value:.4f}" if r.value is not None else "-",
                      f"{test:.4f}" if test is not None else "-", f"{r.duration:.0f}" if r.duration else "-",
                      *(_short(r.params.get(n, "")) for n in names))
    _console().print(table)
    return 0


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from hpsearch.storage.queries import leaderboard, make_engine

    rows = leaderboard(make_engine(args.storage))
    if args.format == "json":
        _print_json(rows)
        return 0
    from rich.table import Table

    table = Table(title="best trial of every study", title_justify="left")
    for column in ("study", "best value", "test acc", "trial", "complete", "params"):
        table.add_column(column, overflow="fold")
    for r in rows:
        test = r["test_accuracy"]
        table.add_row(r["study"], f"{r['value']:.4f}", f"{test:.4f}" if test is not None else "-", str(r["trial"]),
                      str(r["complete"]), ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items()))
    _console().print(table)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from hpsearch.search.dashboard import NO_AUTH_WARNING, is_loopback, serve
    from hpsearch.storage import mask_url, resolve_url

    url = resolve_url(args.storage)
    console = _console()
    if not is_loopback(args.host):
        console.print(f"[bold yellow]warning:[/] {NO_AUTH_WARNING.format(host=args.host, port=args.port)}",
                      markup=True)
    console.print(f"optuna-dashboard for {mask_url(url)} at http://{args.host}:{args.port}/ (Ctrl-C to stop)",
                  markup=False)
    try:
        serve(url, args.host, args.port, args.artifacts)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port") from None
    return 0


# ------------------------------------------------------------------------------------------- study admin
def cmd_status(args: argparse.Namespace) -> int:
    import time as _time

    from hpsearch.search.launcher import measure
    from hpsearch.search.worker import open_study
    from hpsearch.storage import open_storage, resolve_url

    study, spec = open_study(args.study, open_storage(resolve_url(args.storage), None, None, retry=False))
    p = measure(study, spec, 1)
    workers = max(1, len({r["worker"] for r in p.running_trials}))
    if p.eta_seconds is not None:
        p.eta_seconds /= workers  # the trials still to run are shared by the workers running now
    started = study.user_attrs.get("hpsearch_started_at")
    data = {"study": args.study, "model": spec.model, "dataset": spec.dataset, "budget": spec.trials,
            "complete": p.complete, "pruned": p.pruned, "failed": p.failed, "running": p.running, "waiting": p.waiting,
            "best_value": p.best_value, "best_trial": p.best_trial, "eta_seconds": p.eta_seconds,
            "running_trials": p.running_trials}
    if args.format == "json":
        _print_json(data)
        return 0
    from hpsearch.search.launcher import render

    _console().print(render(spec, p, _time.time() - float(started) if started else 0.0))
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from hpsearch.search.spec import SPEC_ATTR
    from hpsearch.storage.queries import leaderboard, make_engine, state_counts, study_attrs

    engine = make_engine(args.storage)
    counts = state_counts(engine)
    specs = study_attrs(engine, SPEC_ATTR)
    best = {r["study"]: r for r in leaderboard(engine)}
    rows = []
    for name, c in counts.items():
        spec = specs.get(name, {})
        rows.append({"study": name, "model": spec.get("model"), "dataset": spec.get("dataset"),
                     "budget": spec.get("trials"), "trials": c, "best_value": best.get(name, {}).get("value"),
                     "test_accuracy": best.get(name, {}).get("test_accuracy")})
    if args.format == "json":
        _print_json(rows)
        return 0
    from rich.table import Table

    table = Table(title="studies", title_justify="left")
    for column in ("study", "model", "dataset", "done/budget", "pruned", "failed", "running", "best", "test acc"):
        table.add_column(column)
    for r in rows:
        c = r["trials"]
        table.add_row(r["study"], str(r["model"] or "-"), str(r["dataset"] or "-"),
                      f"{c['complete'] + c['pruned']}/{r['budget'] or '?'}", str(c["pruned"]), str(c["fail"]),
                      str(c["running"]), f"{r['best_value']:.4f}" if r["best_value"] is not None else "-",
                      f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-")
    _console().print(table)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    import optuna

    from hpsearch.storage import artifact_dir, mask_url, open_storage, resolve_url
    from hpsearch.storage.queries import make_engine, state_counts, study_info

    url = resolve_url(args.storage)
    engine = make_engine(url)
    study_info(engine, args.study)  # unknown study: lists the existing ones
    total = sum(state_counts(engine, args.study).get(args.study, {}).values())
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("deleting needs confirmation: run in a terminal, or pass --yes")
        answer = input(f"delete study {args.study!r} ({total} trials) from {mask_url(url)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    storage = open_storage(url, None, None, retry=False)
    study = optuna.load_study(study_name=args.study, storage=storage)
    art_dir = artifact_dir(url, args.artifacts).resolve()
    removed = 0
    for trial in study.get_trials(deepcopy=False):
        for key, artifact_id in trial.user_attrs.items():
            path = (art_dir / str(artifact_id)).resolve()
            if key.startswith("artifact:") and path.is_relative_to(art_dir) and path.is_file():
                path.unlink()
                removed += 1
    optuna.delete_study(study_name=args.study, storage=storage)
    print(f"deleted study {args.study!r}: {total} trials, {removed} artifact files")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hpsearch.search.results import export, load_trial

    stored = load_trial(args.study, args.storage, args.trial, args.artifacts)
    if stored.artifact_path("model") is None and not args.quiet:
        print(f"trial {stored.trial.number} kept no model: training its configuration again", file=sys.stderr)
    info = export(stored, Path(args.out), verbose=0 if args.quiet else 2)
    if args.format == "json":
        _print_json(info)
    else:
        _console(args.quiet).print(f"exported trial {info['trial']} of {info['study']} (test accuracy "
                                   f"{info['test_accuracy']:.4f}) to {info['out']}: {', '.join(info['files'])}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from hpsearch.datasets import DATASETS
    from hpsearch.search.results import load_model, load_trial, predict_images, stored_or_rebuilt, study_data

    stored = load_trial(args.study, args.storage, args.trial, args.artifacts)
    path = stored.artifact_path("model")
    if path is not None:
        model = load_model(path)
    else:
        print(f"trial {stored.trial.number} kept no model: training its configuration again", file=sys.stderr)
        model, _ = stored_or_rebuilt(stored, study_data(stored.spec))
    class_names = list(DATASETS[stored.spec.dataset].class_names)
    results = predict_images(model, args.images, class_names, args.top)
    if args.format == "json":
        _print_json(results)
        return 0
    for r in results:
        line = f"{r['image']}: {r['digit']} ({r['probability']:.1%})"
        if args.top > 1:
            line += "   " + ", ".join(f"{t['digit']} {t['probability']:.1%}" for t in r["top"])
        print(line)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from hpsearch.search.results import load_trial, study_data, train_configuration

    console = _console(args.quiet)
    stored = load_trial(args.study, args.storage, args.trial, args.artifacts)
    data = study_data(stored.spec, whole_training_set=True)
    console.print(f"retraining trial {stored.trial.number} of {args.study} ({stored.trial.params}) on the whole "
                  f"training set: {data.summary()}", markup=False)
    model, result = train_configuration(stored, data, args.epochs,
                                        verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2))
    out = {"study": args.study, "trial": stored.trial.number, "params": stored.trial.params,
           "epochs_run": result.epochs_run, "test_accuracy": result.test_accuracy,
           "search_test_accuracy": stored.trial.user_attrs.get("test_accuracy"),
           "train_images": len(data.x_train), "train_seconds": round(result.train_seconds, 1)}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        model.save(Path(args.out) / "model.keras")
        out["model"] = str(Path(args.out) / "model.keras")
    if args.format == "json":
        _print_json(out)
    else:
        console.print(f"test accuracy {result.test_accuracy:.4f} after {result.epochs_run} epochs on "
                      f"{len(data.x_train)} images (in the search: {out['search_test_accuracy']})")
    return 0


# ------------------------------------------------------------------------------------------------------ parser
def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="directory with the dataset's files (default: $HPSEARCH_DATA_DIR)")
    p.add_argument("--train-size", type=int, help="use this many training images (stratified subset)")
    p.add_argument("--validation-split", type=float, default=0.1, help="validation fraction (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split and of training (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpsearch", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Hyperparameter search for Keras image models, driven by Optuna.",
        epilog="examples:\n  hpsearch models\n  hpsearch datasets --data-dir ~/mnist\n"
               "  hpsearch train --model cnn --dataset mnist-sample --epochs 3")
    from hpsearch import __version__

    parser.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: CommandType, help_text: str, examples: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog="examples:\n" + examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("models", cmd_models, "list the model builders and their search spaces",
            "  hpsearch models\n  hpsearch models cnn --format json")
    p.add_argument("model", nargs="?", help="show only this model")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = add("datasets", cmd_datasets, "list the datasets and where their files are found",
            "  hpsearch datasets\n  hpsearch datasets --data-dir ../shared/datasets/mnist --format json")
    p.add_argument("--data-dir", help="directory searched first (default: $HPSEARCH_DATA_DIR)")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = add("train", cmd_train, "train one configuration of a model (defaults: the published one)",
            "  hpsearch train --model cnn --dataset mnist --data-dir ../shared/datasets/mnist --epochs 3\n"
            "  hpsearch train --model resnet4 --dataset mnist-sample --set filters=8 --out runs/r4")
    p.add_argument("--model", required=True, help="model name (see `hpsearch models`)")
    p.add_argument("--dataset", default="mnist-sample", help="dataset name (default mnist-sample)")
    _add_data_args(p)
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="fix a hyperparameter (repeatable)")
    p.add_argument("--weights", help="resnet50: local ImageNet weights file, or 'imagenet' to look for one")
    p.add_argument("--out", help="save model.keras, curves.png, confusion_matrix.png and a report here")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = add("run", cmd_run, "create or resume a study and run its trials with parallel worker processes",
            "  hpsearch run --study cnn-mnist --model cnn --dataset mnist --data-dir ../shared/datasets/mnist \\\n"
            "      --trials 12 --workers 2 --epochs 3 --train-size 12000 --enqueue-defaults\n"
            "  hpsearch run --spec studies/cnn-mnist.yaml --workers 2")
    _add_spec_args(p)
    _add_worker_args(p)
    p.add_argument("--workers", type=int, default=2, help="worker processes on this machine (default 2)")
    p.add_argument("--threads", type=int,
                   help="TensorFlow threads per worker (default: the cores divided among the workers)")
    p.add_argument("--enqueue-defaults", action="store_true",
                   help="run the builder's published configuration as the first trial")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--quiet", action="store_true")

    p = add("worker", cmd_worker, "join an existing study and run its trials until the budget is spent",
            "  HPSEARCH_STORAGE=postgresql+psycopg://hp@db/hp hpsearch worker --study cnn-mnist")
    p.add_argument("--study", required=True)
    _add_worker_args(p)
    p.add_argument("--threads", type=int, help="TensorFlow threads (default: all cores)")

    p = add("tune", cmd_tune, "run the same builder and space with KerasTuner (for comparison)",
            "  hpsearch tune --engine keras-tuner --tuner hyperband --study kt-cnn --model cnn --epochs 3")
    _add_spec_args(p)
    p.add_argument("--engine", choices=("keras-tuner",), default="keras-tuner")
    p.add_argument("--tuner", choices=("random", "hyperband", "bayesian"), default="random")
    p.add_argument("--directory", default="keras-tuner", help="KerasTuner's project directory (default keras-tuner)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--quiet", action="store_true")

    p = add("best", cmd_best, "print the best trial's value, params and attributes",
            "  hpsearch best --study cnn-mnist\n  hpsearch best --study cnn-mnist --format json")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--format", choices=("table", "json", "yaml"), default="table")

    p = add("trials", cmd_trials, "list a study's trials, best first (or by number or duration)",
            "  hpsearch trials --study cnn-mnist --sort value --limit 10\n"
            "  hpsearch trials --study cnn-mnist --sort number --state pruned,fail --format csv > trials.csv")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--sort", default="value", help="value (best first, default), number or duration")
    p.add_argument("--limit", type=int, default=10, help="how many trials (default 10)")
    p.add_argument("--state", help="comma-separated states (default: complete when sorting by value, else all)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")

    p = add("dashboard", cmd_dashboard, "serve optuna-dashboard (with trial artifacts) on the study storage",
            "  hpsearch dashboard                      # http://127.0.0.1:8080/\n"
            "  hpsearch dashboard --storage postgresql+psycopg://hp@db/hp --port 8081")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--artifacts", help="artifact directory (default: beside the SQLite file)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)

    p = add("status", cmd_status, "a study's progress: counts per state, best so far, running trials, ETA",
            "  hpsearch status --study cnn-mnist\n  hpsearch status --study cnn-mnist --format json")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = add("studies", cmd_studies, "every study in the storage: model, dataset, trials, best value",
            "  hpsearch studies\n  hpsearch studies --format json")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = add("delete", cmd_delete, "delete a study, its trials and its artifact files (asks first)",
            "  hpsearch delete --study old-study\n  hpsearch delete --study old-study --yes")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--artifacts", help="artifact directory (default: beside the SQLite file)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = add("export", cmd_export, "write a trial's model (.keras), params (JSON), curves and confusion matrix",
            "  hpsearch export --study cnn-mnist --out best/\n  hpsearch export --study cnn-mnist --trial 7 --out t7/")
    _add_trial_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--quiet", action="store_true")

    p = add("predict", cmd_predict, "classify digit images (PNG/JPG, any size, colour or grey) with the best model",
            "  hpsearch predict --study cnn-mnist my-digit.png\n  hpsearch predict --study cnn-mnist --top 3 *.png")
    p.add_argument("images", nargs="+", help="image files")
    _add_trial_args(p)
    p.add_argument("--top", type=int, default=1, help="show the N likeliest digits (default 1)")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = add("retrain", cmd_retrain, "train a trial's configuration on the whole training set, report test accuracy",
            "  hpsearch retrain --study cnn-mnist --epochs 10 --out final/")
    _add_trial_args(p)
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the study's)")
    p.add_argument("--out", help="save the retrained model.keras here")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--quiet", action="store_true")

    p = add("leaderboard", cmd_leaderboard, "the best trial of every study in the storage",
            "  hpsearch leaderboard\n  hpsearch leaderboard --storage postgresql+psycopg://hp@db/hp --format json")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _add_trial_args(p: argparse.ArgumentParser) -> None:
    """The flags that pick one stored trial (export, predict, retrain)."""
    p.add_argument("--study", required=True)
    p.add_argument("--trial", type=int, help="trial number (default: the best)")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--artifacts", help="artifact directory (default: beside the SQLite file)")


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", help="study spec YAML file (flags override its keys)")
    p.add_argument("--study", help="study name")
    p.add_argument("--model", help="model name (see `hpsearch models`)")
    p.add_argument("--dataset", help="dataset name (default mnist-sample)")
    p.add_argument("--data-dir", help="directory with the dataset's files (default: $HPSEARCH_DATA_DIR)")
    p.add_argument("--train-size", type=int, help="use this many training images (stratified subset)")
    p.add_argument("--validation-split", type=float, help="validation fraction (default 0.1)")
    p.add_argument("--metric", help="objective metric (default val_accuracy)")
    p.add_argument("--direction", choices=("maximize", "minimize"))
    p.add_argument("--sampler", help="tpe (default), random, cmaes, qmc or grid")
    p.add_argument("--pruner", help="hyperband (default), median, successive-halving or none")
    p.add_argument("--seed", type=int, help="sampler and data seed (default 0)")
    p.add_argument("--trials", type=int, help="trial budget of the study, over all workers (default 20)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--epochs", type=int, help="maximum epochs per trial (default 10)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="fix a hyperparameter (repeatable)")
    p.add_argument("--search-training", help="comma-separated training hyperparameters to search, e.g. batch_size")
    p.add_argument("--weights", help="resnet50: local ImageNet weights file")


def _add_worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--artifacts", help="artifact directory (default: beside the SQLite file)")
    p.add_argument("--recycle", type=int, default=10, help="start a fresh worker process every K trials (default 10)")
    p.add_argument("--heartbeat-interval", type=int, help="seconds between heartbeats (default 60)")
    p.add_argument("--grace-period", type=int, help="seconds without heartbeat before a trial is failed and "
                   "retried (default 300)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in ("models", "train", "tune", "export", "predict", "retrain", "worker"):
        import_keras_quietly()
    if args.command not in ("worker", "models", "datasets", "train"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"hpsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except HpsearchError as exc:
        print(f"hpsearch {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hpsearch {args.command}: interrupted", file=sys.stderr)
        return 130
