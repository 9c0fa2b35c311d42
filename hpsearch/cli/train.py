"""`hpsearch train` (one configuration, no study) and `hpsearch tune` (the same space under KerasTuner)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from hpsearch.cli._common import (
    add_command,
    add_format_arg,
    add_image_args,
    add_spec_args,
    dataset_arg,
    make_console,
    parse_assignments,
    print_output,
    progress_to_stderr,
    require_at_least_one,
    spec_from_args,
)
from hpsearch.errors import UsageError

if TYPE_CHECKING:
    from hpsearch.cli._common import Subparsers

TRAIN_FILES = ("model.keras", "curves.png", "confusion_matrix.png", "classification_report.txt", "result.json")


def register_train(subparsers: Subparsers) -> None:
    p = add_command(
        subparsers, "train", cmd_train, "train one configuration of a model (defaults: the published one)",
        "  hpsearch train --model cnn --dataset mnist --data-dir ../shared/datasets/mnist --epochs 3\n"
        "  hpsearch train --model resnet4 --dataset mnist-sample --set filters=8 --out runs/r4")
    p.add_argument("--model", required=True, help="a built-in name, package.module:function or file.py:function "
                   "(see `hpsearch models --help`)")
    p.add_argument("--dataset", default="mnist-sample",
                   help="a built-in dataset (default mnist-sample), npz:FILE or images:DIR (your own data)")
    add_image_args(p)
    p.add_argument("--data-dir", help="directory with the dataset's files (default: $HPSEARCH_DATA_DIR)")
    p.add_argument("--train-size", type=int, help="use this many training images (stratified subset)")
    p.add_argument("--validation-split", type=float, default=0.1, help="validation fraction (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split and of training (default 0)")
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="fix a hyperparameter (repeatable)")
    p.add_argument("--weights", help="resnet50: local ImageNet weights file, or 'imagenet' to look for one")
    p.add_argument("--out", help="save model.keras, curves.png, confusion_matrix.png and a report here")
    p.add_argument("--force", action="store_true", help="overwrite those files when --out already holds them")
    add_format_arg(p, "text", "json")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def cmd_train(args: argparse.Namespace) -> int:
    import keras
    import keras_tuner

    from hpsearch.datasets import load_dataset
    from hpsearch.models import get_builder, training_config
    from hpsearch.search.preflight import check_fixed, check_shift
    from hpsearch.search.reports import classification_report, plot_confusion, plot_curves
    from hpsearch.search.training import fit_and_evaluate
    from hpsearch.storage.outputs import prepare_output_dir, writing_to

    console = make_console(args.quiet)
    get_builder(args.model)  # an unknown name fails before minutes of data loading
    values = parse_assignments(args.set)
    for name in ("epochs", "batch_size"):
        require_at_least_one(f"--set {name}", values.get(name))
        require_at_least_one(f"--{name.replace('_', '-')}", getattr(args, name))
    # A wrong --out must cost a message before training, not the trained model after it.
    out = prepare_output_dir(args.out, TRAIN_FILES, args.force) if args.out else None
    keras.utils.set_random_seed(args.seed)
    with progress_to_stderr(args.format):
        data = load_dataset(dataset_arg(args), args.data_dir, args.train_size, args.validation_split, args.seed)
        console.print(data.summary())
        hp = keras_tuner.HyperParameters()
        values.update({k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v is not None})
        options = {"weights": args.weights} if args.weights else {}
        builder = get_builder(args.model, data.input_shape, data.num_classes, **options)
        values = check_fixed(builder, values, args.model)[0]  # names, types and ranges, as a study checks them
        check_shift(float(values.get("shift", 0.0)), False, data.x_train)
        for name, value in values.items():
            hp.Fixed(name, value)
        model = builder(hp)
        config = training_config(hp)
        console.print(f"{args.model}: {model.count_params():,} parameters, {hp.values}")
        verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
        result = fit_and_evaluate(model, data, config, verbose=verbose)
    summary = {"model": args.model, "dataset": args.dataset, "params": hp.values, "parameters": result.parameters,
               "epochs_run": result.epochs_run, "val_accuracy": result.val_accuracy,
               "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
               "train_seconds": round(result.train_seconds, 2),
               "images_per_second": round(result.images_per_second, 1)}
    if out is not None:
        with writing_to(out):
            out.mkdir(parents=True, exist_ok=True)  # again: it may have been removed while training
            model.save(out / "model.keras")
            plot_curves(result.history, out / "curves.png", f"{args.model} on {args.dataset}")
            plot_confusion(data.y_test, result.y_pred, data.class_names, out / "confusion_matrix.png", args.model)
            (out / "classification_report.txt").write_text(
                classification_report(data.y_test, result.y_pred, data.class_names))
            (out / "result.json").write_text(json.dumps(summary, indent=2))
        summary["out"] = str(out)
    if args.format == "json":
        print_output(summary, args.format)
    else:
        console.print(f"[bold]test accuracy {result.test_accuracy:.2%}[/] (best validation "
                      f"{result.val_accuracy:.2%}) after {result.epochs_run} epochs in "
                      f"{result.train_seconds:.1f}s, {result.images_per_second:,.0f} images/s"
                      + (f"; model, curves and confusion matrix in {args.out}" if args.out else ""))
    return 0


def register_tune(subparsers: Subparsers) -> None:
    p = add_command(subparsers, "tune", cmd_tune, "run the same builder and space with KerasTuner (for comparison)",
                    "  hpsearch tune --engine keras-tuner --tuner hyperband --study kt-cnn --model cnn --epochs 3")
    add_spec_args(p)
    p.add_argument("--engine", choices=("keras-tuner",), default="keras-tuner")
    p.add_argument("--tuner", choices=("random", "hyperband", "bayesian"), default="random")
    p.add_argument("--directory", default="keras-tuner", help="KerasTuner's project directory (default keras-tuner)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    add_format_arg(p, "text", "json")
    p.add_argument("--quiet", action="store_true")


def cmd_tune(args: argparse.Namespace) -> int:
    from hpsearch.search.keras_tuner_engine import tune
    from hpsearch.search.preflight import check_spec

    spec = spec_from_args(args)
    if spec.objectives:
        raise UsageError("the keras-tuner engine searches one objective (--metric); several objectives and their "
                         "Pareto front need `hpsearch run`")
    if spec.timeout is not None:
        raise UsageError("the keras-tuner engine runs a number of trials and has no time budget: drop --timeout and "
                         "give --trials N (or use `hpsearch run --timeout`)")
    spec = check_spec(spec).spec
    result = tune(args.tuner, spec, args.directory, overwrite=args.overwrite, verbose=0 if args.quiet else 1)
    if args.format == "json":
        print_output(result, args.format)
    else:
        make_console(args.quiet).print(
            f"KerasTuner {args.tuner}: {result['trials']} trials in {result['seconds']:.0f}s, best {spec.metric} "
            f"{result['value']:.4f}, test accuracy {result['test_accuracy']:.4f}\n"
            f"params {json.dumps(result['params'])}")
    return 0
