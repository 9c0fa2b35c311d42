"""The top-level parser, assembled from each command module, and `main`, which runs one command.

Exit codes: 0 ok, 1 failure, 2 usage error (unknown name, bad value), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hpsearch.cli import admin, catalog, results, search, train, trial
from hpsearch.cli._common import import_keras_quietly
from hpsearch.errors import HpsearchError, UsageError

# `hpsearch --help` lists the commands in this order.
_COMMANDS = (
    catalog.register_models, catalog.register_datasets, train.register_train, search.register_run,
    search.register_create, search.register_worker, train.register_tune, results.register_best,
    results.register_trials, admin.register_dashboard, admin.register_proxy, results.register_status,
    results.register_studies, admin.register_delete, trial.register_export, trial.register_predict,
    trial.register_retrain, results.register_leaderboard,
)
# The commands that use Keras import it up front with its start-up chatter filtered out.
_KERAS_COMMANDS = ("models", "train", "tune", "export", "predict", "retrain", "worker", "run", "create")
# Every other command turns Optuna's INFO lines off: a worker keeps them in its log, the others run no study.
_OPTUNA_VERBOSE_COMMANDS = ("worker", "models", "datasets", "train")


def build_parser() -> argparse.ArgumentParser:
    """The `hpsearch` parser: global options, then one subcommand per command module's `register_*` function."""
    parser = argparse.ArgumentParser(
        prog="hpsearch", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Hyperparameter search for Keras image models, driven by Optuna.",
        epilog="examples:\n  hpsearch models\n  hpsearch datasets --data-dir ~/mnist\n"
               "  hpsearch train --model cnn --dataset mnist-sample --epochs 3")
    from hpsearch import __version__

    parser.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `hpsearch ARGV` (default: the process's arguments) and returns its exit code.

    Every error becomes one line on stderr, with passwords masked; `--debug` shows an unexpected error's traceback.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, before or after the command
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from hpsearch.storage import redact

    try:
        if args.command in _KERAS_COMMANDS:
            import_keras_quietly()
        if args.command not in _OPTUNA_VERBOSE_COMMANDS:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
        return args.func(args)
    except UsageError as exc:
        print(redact(f"hpsearch {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    except HpsearchError as exc:
        print(redact(f"hpsearch {args.command}: failed: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", None)
        print(f"hpsearch {args.command}: {'interrupted' if signum is None else 'stopped by ' + str(exc)}",
              file=sys.stderr)
        return 128 + (signum or 2)
    except Exception as exc:  # a bug or an unforeseen environment: one line unless --debug
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(redact(f"hpsearch {args.command}: failed: unexpected {type(exc).__name__}: {first} (run again with "
                     "--debug for the traceback, and please report it)"), file=sys.stderr)
        return 1
