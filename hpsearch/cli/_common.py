"""What several commands share: the console, the one output helper, `--set` parsing, the quiet Keras import,
secret-masking logs, the study spec read from flags, and the argument groups more than one command takes.

Nothing heavy is imported here at module level: `hpsearch --help` must stay instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hpsearch.errors import UsageError

ARTIFACTS_HELP = ("artifact directory, or s3://BUCKET[/PREFIX] on an S3-compatible store (AWS_ENDPOINT_URL and "
                  "credentials as boto3 reads them); default: $HPSEARCH_ARTIFACTS, else beside the SQLite file")

if TYPE_CHECKING:
    from typing import TypeAlias

    from rich.console import Console

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

CommandType = Callable[[argparse.Namespace], int]
STORAGE_HELP = "database URL (default: $HPSEARCH_STORAGE, else $OPTUNA_STORAGE, else sqlite:///hpsearch.db)"


def stop_on_sigterm() -> None:
    """A server stops on SIGTERM as on Ctrl-C, whatever it inherited: as a container's first process (where a signal
    left at its default is dropped) or started with SIGTERM ignored, `kill` and a pod's end would otherwise leave it
    running until SIGKILL."""
    import signal

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def add_command(subparsers: Subparsers, name: str, func: CommandType, help_text: str,
                examples: str) -> argparse.ArgumentParser:
    """Adds the parser of one command, whose one-line help is also its description, with examples as epilog."""
    p = subparsers.add_parser(name, help=help_text, description=help_text, epilog="examples:\n" + examples,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def add_study_arg(p: argparse.ArgumentParser, required: bool = True, help_text: str | None = None) -> None:
    """`--study NAME` (Optuna's `--study-name` too), the same on every command."""
    p.add_argument("--study", "--study-name", dest="study", required=required, help=help_text)


def add_storage_arg(p: argparse.ArgumentParser) -> None:
    """`--storage URL`, the same on every command (then $HPSEARCH_STORAGE, $OPTUNA_STORAGE, sqlite:///hpsearch.db)."""
    p.add_argument("--storage", help=STORAGE_HELP)


def add_format_arg(p: argparse.ArgumentParser, *choices: str) -> None:
    """`--format`, the first of `choices` by default; `print_output` renders each."""
    p.add_argument("--format", choices=choices, default=choices[0])


# ------------------------------------------------------------------------------------------------------ output
def make_console(quiet: bool = False) -> Console:  # rich is imported lazily: `hpsearch --help` stays instant
    from rich.console import Console

    console = Console(stderr=False, quiet=quiet, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped or logged: rich would assume 80 columns and cut the tables
    return console


def print_output(data: Any, fmt: str, console: Console | None = None) -> None:
    """Prints a command's result in the `--format` asked for; every json, yaml, csv and table output goes here.

    Args:
        data: for "json" and "yaml", plain data (values JSON cannot hold are written with `str`); for "csv", rows
            with the header row first; for any other format ("table", "text"), a rich renderable.
        fmt: the command's `--format`.
        console: the console a rich renderable is printed on (default: a new one on stdout).
    """
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str))
    elif fmt == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    elif fmt == "csv":
        import csv

        csv.writer(sys.stdout).writerows(data)
    else:
        (console or make_console()).print(data)


def progress_to_stderr(fmt: str) -> contextlib.AbstractContextManager[Any]:
    """With `--format json` stdout carries the JSON alone: data summaries and Keras's progress go to stderr."""
    return contextlib.redirect_stdout(sys.stderr) if fmt == "json" else contextlib.nullcontext()


# ------------------------------------------------------------------------------------------------- quiet Keras
_TF_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
             "cudart_stub.cc", "cpu_feature_guard.cc",
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


# -------------------------------------------------------------------------------------------- secret-free logs
class RedactingFormatter:
    """Formats a log record as usual, then masks passwords in the whole text (message, arguments, traceback)."""

    def __init__(self, fmt: str) -> None:
        import logging

        self._inner = logging.Formatter(fmt)

    def format(self, record: Any) -> str:
        from hpsearch.storage import redact

        return redact(self._inner.format(record))


def log_with_secrets_masked() -> None:
    """Every line a worker logs goes through `redact`: ours, Optuna's (propagated to the root logger instead of
    its own handler), Python warnings, and exceptions that end a thread (Optuna's heartbeat)."""
    import logging
    import threading

    import optuna

    from hpsearch.storage import redact

    logging.basicConfig(level=logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    logging.captureWarnings(True)

    def excepthook(info: threading.ExceptHookArgs) -> None:
        import traceback

        text = "".join(traceback.format_exception(info.exc_type, info.exc_value, info.exc_traceback))
        print(redact(f"exception in thread {info.thread.name if info.thread else '?'}: {text}"), file=sys.stderr)

    threading.excepthook = excepthook


# --------------------------------------------------------------------------------------- values from the flags
def parse_assignments(items: Sequence[str] | None, flag: str = "--set", example: str = "filters_1=64"
                      ) -> dict[str, Any]:
    """`name=value` pairs from `--set` (or `flag`), values parsed as YAML scalars (ints, floats, booleans, strings)."""
    import yaml

    values: dict[str, Any] = {}
    for item in items or ():
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} expects name=value, got {item!r} (example: {flag} {example})")
        value = yaml.safe_load(raw)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as text: numbers are what users mean
            for cast in (int, float):
                try:
                    value = cast(raw.strip())
                    break
                except ValueError:
                    continue
        values[name.strip()] = value
    return values


def require_at_least_one(flag: str, value: Any) -> None:
    """Epochs and batch sizes: 0 or less would train nothing, or fail after the data is loaded."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{flag} must be an integer >= 1, got {value!r}")


def dataset_arg(args: argparse.Namespace) -> str | None:
    """`--dataset`, with `--image-size` / `--color-mode` folded into an `images:DIR` name."""
    size, mode = getattr(args, "image_size", None), getattr(args, "color_mode", None)
    if size is None and mode is None:
        return args.dataset
    from hpsearch.image_folders import is_image_folder, normalize

    if not args.dataset or not is_image_folder(args.dataset):
        raise UsageError("--image-size and --color-mode apply to an image folder: --dataset images:DIR")
    return normalize(args.dataset, image_size=size, color_mode=mode)


def spec_from_args(args: argparse.Namespace, storage_url: str | None = None) -> Any:
    """The study spec from `--spec` and the flags; `--study NAME` alone resumes an existing study's spec."""
    from hpsearch.search.launcher import existing_spec
    from hpsearch.search.spec import StudySpec

    base = existing_spec(args.study, storage_url) if args.study and not (args.spec or args.model) else None
    if base is None and storage_url and args.study and not (args.spec or args.model):
        from hpsearch.storage import mask_url

        raise UsageError(f"study {args.study!r} is not in {mask_url(storage_url)}; to create it give --model (and "
                         "--dataset, --trials, ...) or --spec FILE, or point --storage at the database that holds it")
    overrides = {
        "study": args.study, "model": args.model, "dataset": dataset_arg(args), "data_dir": args.data_dir,
        "train_size": args.train_size, "validation_split": args.validation_split, "metric": args.metric,
        "direction": args.direction, "sampler": args.sampler, "pruner": args.pruner, "seed": args.seed,
        "sampler_options": parse_assignments(args.sampler_option, "--sampler-option", "n_startup_trials=5") or None,
        "trials": args.trials, "timeout": args.timeout, "epochs": args.epochs, "batch_size": args.batch_size,
        "fixed": parse_assignments(args.set) or None,
        "search_training": args.search_training.split(",") if args.search_training else None,
        "model_options": {"weights": args.weights} if args.weights else None,
        "objectives": getattr(args, "objective", None) or None,
        "cost_aware": getattr(args, "cost_aware", None),
    }
    return StudySpec.load(args.spec, overrides, base)


# ------------------------------------------------------------------------- argument groups of several commands
def add_image_args(p: argparse.ArgumentParser) -> None:
    """The flags that shape an `images:DIR` dataset (train, and every command that takes a study spec)."""
    p.add_argument("--image-size", help="images:DIR only: resize every image to N x N or HxW (default: the images' "
                   "own size when they share one)")
    p.add_argument("--color-mode", help="images:DIR only: grayscale or rgb (default: grayscale when every image "
                   "is grey)")


def add_spec_args(p: argparse.ArgumentParser) -> None:
    """The flags that make or override a study spec (run, create, tune)."""
    p.add_argument("--spec", help="study spec YAML file (flags override its keys)")
    add_study_arg(p, required=False, help_text="study name")
    p.add_argument("--model", help="a built-in name, package.module:function or file.py:function (see `hpsearch "
                   "models --help`)")
    p.add_argument("--dataset", help="a built-in dataset (default mnist-sample), npz:FILE or images:DIR (your own "
                   "data)")
    add_image_args(p)
    p.add_argument("--data-dir", help="directory with the dataset's files (default: $HPSEARCH_DATA_DIR)")
    p.add_argument("--train-size", type=int, help="use this many training images (stratified subset)")
    p.add_argument("--validation-split", type=float, help="validation fraction (default 0.1)")
    p.add_argument("--metric", help="objective metric (default val_accuracy)")
    p.add_argument("--direction", choices=("maximize", "minimize"))
    p.add_argument("--objective", action="append", metavar="NAME[:DIRECTION]",
                   help="a further objective beside --metric (repeatable): a metric Keras logs (e.g. val_loss), "
                   "parameters or latency_ms; the study keeps the Pareto front (`hpsearch best`), without pruning")
    p.add_argument("--sampler", help="tpe (default), random, cmaes, qmc or grid")
    p.add_argument("--sampler-option", action="append", metavar="NAME=VALUE",
                   help="an option of the sampler's Optuna constructor (repeatable), e.g. n_startup_trials=5 or "
                   "multivariate=false for tpe")
    p.add_argument("--cost-aware", action=argparse.BooleanOptionalAction, default=None,
                   help="tpe: of equally promising configurations, train the cheaper (the model's size times its "
                   "epochs); default: on with --timeout, where a cheaper trial buys time for another")
    p.add_argument("--pruner", help="successive-halving (default: rungs at epochs 1, 3, 9...), hyperband, median "
                   "or none")
    p.add_argument("--seed", type=int, help="sampler and data seed (default 0)")
    p.add_argument("--trials", type=int, help="trial budget of the study, over all workers (default 20; with --timeout "
                   "and no --trials the time is the whole budget)")
    p.add_argument("--timeout", type=float,
                   help="stop starting trials after this many seconds, counted from the study's first run")
    p.add_argument("--epochs", type=int, help="maximum epochs per trial (default 10)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="fix a hyperparameter (repeatable); "
                   "lr_peak=1 trains with the builder's own rate and ReduceLROnPlateau instead of a new study's one "
                   "learning-rate cycle a trial")
    p.add_argument("--search-training", help="comma-separated training hyperparameters to search, e.g. batch_size")
    p.add_argument("--weights", help="resnet50: local ImageNet weights file")
