"""`hpsearch export`, `predict` and `retrain`: put one stored trial's model to use."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hpsearch.cli._common import (
    ARTIFACTS_HELP,
    add_command,
    add_format_arg,
    add_storage_arg,
    add_study_arg,
    make_console,
    print_output,
    progress_to_stderr,
    require_at_least_one,
)

if TYPE_CHECKING:
    from hpsearch.cli._common import Subparsers


def _add_trial_args(p: argparse.ArgumentParser) -> None:
    """The flags that pick one stored trial (export, predict, retrain)."""
    add_study_arg(p)
    p.add_argument("--trial", type=int, help="trial number (default: the best)")
    add_storage_arg(p)
    p.add_argument("--artifacts", help=ARTIFACTS_HELP)


# ------------------------------------------------------------------------------------------------------ export
def register_export(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "export", cmd_export,
        "write a trial's model (.keras), params (JSON), curves and confusion matrix",
        "  hpsearch export --study cnn-mnist --out best/\n  hpsearch export --study cnn-mnist --trial 7 --out t7/")
    _add_trial_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--force", action="store_true", help="overwrite model.keras, params.json, ... already in --out")
    add_format_arg(p, "text", "json")
    p.add_argument("--quiet", action="store_true")


def cmd_export(args: argparse.Namespace) -> int:
    from hpsearch.search.results import EXPORT_FILES, export, load_trial
    from hpsearch.storage.outputs import prepare_output_dir, writing_to

    stored = load_trial(args.study, args.storage, args.trial, args.artifacts)
    out = prepare_output_dir(args.out, EXPORT_FILES, args.force)
    with writing_to(out), progress_to_stderr(args.format):
        info = export(stored, out, verbose=0 if args.quiet else 2)
    if args.format == "json":
        print_output(info, args.format)
    else:
        make_console(args.quiet).print(f"exported trial {info['trial']} of {info['study']} (test accuracy "
                                       f"{info['test_accuracy']:.4f}) to {info['out']}: {', '.join(info['files'])}")
    return 0


# ----------------------------------------------------------------------------------------------------- predict
def register_predict(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "predict", cmd_predict,
        "classify images (PNG/JPG, any size, colour or grey) with the best model: digits, or your own classes",
        "  hpsearch predict --study cnn-mnist my-digit.png\n  hpsearch predict --study cnn-mnist --top 3 *.png")
    p.add_argument("images", nargs="+", help="image files")
    _add_trial_args(p)
    p.add_argument("--top", type=int, default=1, help="show the N likeliest classes (default 1)")
    add_format_arg(p, "text", "json")


def cmd_predict(args: argparse.Namespace) -> int:
    from hpsearch.search.results import DIGIT_DATASETS, class_names, load_trial, predict_images, stored_or_rebuilt

    stored = load_trial(args.study, args.storage, args.trial, args.artifacts)
    model, _ = stored_or_rebuilt(stored)  # a damaged saved model is a message before any training
    results = predict_images(model, args.images, class_names(stored, model), args.top,
                             digits=stored.spec.dataset in DIGIT_DATASETS)
    if args.format == "json":
        print_output(results, args.format)
        return 0
    for r in results:
        line = f"{r['image']}: {r['class']} ({r['probability']:.1%})"
        if args.top > 1:
            line += "   " + ", ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top"])
        print(line)
    return 0


# ----------------------------------------------------------------------------------------------------- retrain
def register_retrain(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "retrain", cmd_retrain,
        "train a trial's configuration on the whole training set, report test accuracy",
        "  hpsearch retrain --study cnn-mnist --epochs 10 --out final/")
    _add_trial_args(p)
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the study's)")
    p.add_argument("--out", help="save the retrained model.keras here")
    p.add_argument("--force", action="store_true", help="overwrite a model.keras already in --out")
    add_format_arg(p, "text", "json")
    p.add_argument("--quiet", action="store_true")


def cmd_retrain(args: argparse.Namespace) -> int:
    from hpsearch.search.results import load_trial, study_data, train_configuration
    from hpsearch.storage.outputs import prepare_output_dir, writing_to

    require_at_least_one("--epochs", args.epochs)
    console = make_console(args.quiet)
    stored = load_trial(args.study, args.storage, args.trial, args.artifacts)
    # A wrong --out must cost a message before training, not the retrained model after it.
    target = prepare_output_dir(args.out, ("model.keras",), args.force) if args.out else None
    with progress_to_stderr(args.format):
        data = study_data(stored.spec, whole_training_set=True)
        console.print(f"retraining trial {stored.trial.number} of {args.study} ({stored.trial.params}) on the "
                      f"whole training set: {data.summary()}", markup=False)
        model, result = train_configuration(stored, data, args.epochs,
                                            verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2))
    out = {"study": args.study, "trial": stored.trial.number, "params": stored.trial.params,
           "epochs_run": result.epochs_run, "test_accuracy": result.test_accuracy,
           "search_test_accuracy": stored.trial.user_attrs.get("test_accuracy"),
           "train_images": len(data.x_train), "train_seconds": round(result.train_seconds, 1)}
    if target is not None:
        with writing_to(target):
            target.mkdir(parents=True, exist_ok=True)  # again: it may have been removed while training
            model.save(target / "model.keras")
        out["model"] = str(target / "model.keras")
    if args.format == "json":
        print_output(out, args.format)
    else:
        console.print(f"test accuracy {result.test_accuracy:.4f} after {result.epochs_run} epochs on "
                      f"{len(data.x_train)} images (in the search: {out['search_test_accuracy']})")
    return 0
