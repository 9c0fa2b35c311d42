"""What precise BatchNorm changes in a short trial's validation accuracy, and what it costs per epoch.

For each model and training-set size, the model is built and trained twice with the same seed through
`fit_and_evaluate` (batch 128, the builder's defaults: Adam 1e-3): once validating with Keras's moving statistics
(`precise_bn_samples=0`) and once with the statistics recomputed before each validation (`--samples` at most;
`fit_and_evaluate` bounds the sample to a sixteenth of the training set, at least 128 images). The
recompute puts back the dropout layers' random state, so both runs train the same weights; only what validation
sees differs (the table checks this: "same training" compares the training losses).

Reported per epoch: validation accuracy both ways, the recompute's seconds, the epoch's seconds both ways, and
the recompute's share of the epoch's other work (the same run's epoch seconds minus the recompute, so a load that
changes between the two runs does not enter the share). Epoch 1 includes tracing and Keras's first eager calls;
the last epoch is the steady state a longer trial pays.

Run: .venv/bin/python benchmarks/precise_bn.py [--dataset mnist|fashion-mnist] [--data-dir DIR] [--sizes 2000,12000]
     [--models cnn,resnet-blocks,resnet50] [--samples 2048] [--epochs 2] [--heavy-max-size 2000]
Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Models that take minutes per epoch on a 2-core CPU: trained only on training sets up to --heavy-max-size.
HEAVY_MODELS = ("resnet50",)


def epoch_timer() -> Any:
    """A Keras callback recording each epoch's seconds in `.seconds`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def train(model_name: str, data: Any, epochs: int, samples: int, seed: int = 0) -> dict[str, Any]:
    """Builds the model with `seed` and trains it `epochs` epochs; `samples=0` validates on moving statistics."""
    import keras
    import keras_tuner

    from hpsearch.models import TrainingConfig, get_builder
    from hpsearch.search.training import fit_and_evaluate

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = get_builder(model_name, data.input_shape, data.num_classes)(keras_tuner.HyperParameters())
    timer = epoch_timer()
    # patience = epochs: nothing stops early, every run trains the same number of epochs.
    config = TrainingConfig(batch_size=128, epochs=epochs, patience=epochs, lr_patience=epochs)
    result = fit_and_evaluate(model, data, config, callbacks=[timer], skip_test=lambda: True,
                              precise_bn_samples=samples)
    return {"val_accuracy": result.history["val_accuracy"], "loss": result.history["loss"],
            "epoch_seconds": timer.seconds, "recompute_seconds": result.precise_bn_seconds}


def compare(model_name: str, size: int, data: Any, epochs: int, samples: int) -> list[str]:
    """Markdown rows (one per epoch) for one model and training-set size."""
    from hpsearch.search.precise_bn import bounded_sample_size

    used = bounded_sample_size(samples, len(data.x_train))
    plain = train(model_name, data, epochs, samples=0)
    precise = train(model_name, data, epochs, samples=samples)
    same = all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for a, b in zip(plain["loss"], precise["loss"], strict=True))
    rows = []
    for epoch in range(epochs):
        recompute = precise["recompute_seconds"][epoch]
        with_seconds = precise["epoch_seconds"][epoch]
        share = recompute / (with_seconds - recompute)
        rows.append(f"| {model_name} | {len(data.x_train)} ({size}) | {used} | {epoch + 1} | "
                    f"{plain['val_accuracy'][epoch]:.3f} | {precise['val_accuracy'][epoch]:.3f} | "
                    f"{recompute:.2f} | {plain['epoch_seconds'][epoch]:.1f} / {with_seconds:.1f} | "
                    f"{100 * share:.1f}% | {'yes' if same else 'NO'} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--data-dir", help="the dataset's files (default: ../shared/datasets/mnist for mnist, "
                        "hpsearch's own search path for fashion-mnist)")
    parser.add_argument("--sizes", default="2000,12000",
                        help="training-set sizes before the 10%% validation split, comma-separated")
    parser.add_argument("--models", default="cnn,resnet-blocks,resnet50")
    parser.add_argument("--samples", type=int, default=2048, help="images the statistics are recomputed from")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs per run; accuracy after epoch 1 is the point, later epochs show steady cost")
    parser.add_argument("--heavy-max-size", type=int, default=2000,
                        help=f"largest training set for {', '.join(HEAVY_MODELS)} (minutes per epoch here)")
    args = parser.parse_args()
    if args.samples < 1 or args.epochs < 1:
        parser.error(f"--samples and --epochs must be at least 1, got {args.samples} and {args.epochs}")
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from hpsearch.datasets import load_dataset

    if args.data_dir is None and args.dataset == "mnist":
        args.data_dir = str(ROOT.parent / "shared" / "datasets" / "mnist")
    sizes = [int(s) for s in args.sizes.split(",")]
    models = args.models.split(",")
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"load average at start {os.getloadavg()[0]:.2f}\n")
    print(f"{args.dataset}; precise BN over at most {args.samples} training images (column \"sample\"), batch 128, "
          f"{args.epochs} epoch(s), seed 0.\n")
    print("| model | train images (size) | sample | epoch | val acc, moving stats | val acc, precise BN | recompute s "
          "| epoch s without / with | recompute share | same training |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    skipped = []
    start = time.perf_counter()
    for size in sizes:
        data = load_dataset(args.dataset, args.data_dir, size, 0.1, 0)
        for name in models:
            if name in HEAVY_MODELS and size > args.heavy_max_size:
                skipped.append(f"{name} at {size}")
                continue
            run_start = time.perf_counter()
            for row in compare(name, size, data, args.epochs, args.samples):
                print(row, flush=True)
            print(f"{name} at {size}: {time.perf_counter() - run_start:.0f} s for both runs", file=sys.stderr,
                  flush=True)
    print(f"\nTotal {time.perf_counter() - start:.0f} s; load average at end {os.getloadavg()[0]:.2f}"
          + (f"; not run (over --heavy-max-size): {', '.join(skipped)}" if skipped else "") + ".")


if __name__ == "__main__":
    main()
