"""What a 3-epoch trial reaches with the published training, with its learning rate decayed over the epoch budget, or
raised to a higher peak after a warm-up.

The lever the "98.5% in 10 minutes" goal names (BENCHMARKS.md): at 3 epochs on 10,800 MNIST images the search's best
configurations stop near 98%, whatever the method. Each row trains one configuration of the CNN space from the same
seed once per arm through `fit_and_evaluate` (what a trial runs: precise BatchNorm, early stopping,
ReduceLROnPlateau):

  published  the trial's callbacks alone: the builder's learning rate until a plateau lowers it
  cosine     the same, with the learning rate set before every batch to the builder's rate times
             (1 + cos(pi x step / steps)) / 2 over the whole epoch budget (steps = epochs x batches per epoch), so it
             reaches 0 at the last step (a plateau's cut is overwritten by the next batch)
  xK         the published training at K times the configuration's rate, no warm-up (`--peak 3` gives x3): does
             a higher rate alone help? (The search draws the rate itself, so only what a warm-up adds is a lever.)
  warmup-xK  the rate raised linearly from the configuration's rate / 10 to K times it over the first epoch's
             batches, then left to the published callbacks (a plateau lowers it as before)
  onecycle-xK  what `--set lr_peak=K` trains (`TrainingConfig.lr_peak`, search/training.py `OneCycle`): a warm-up
             over the first third of the steps (at 3 epochs, the first epoch's), then a cosine fall from K times the
             rate back to the configuration's rate over the rest (one cycle that ends where the published training
             starts, not at 0), in place of ReduceLROnPlateau, and early stopping that waits for the peak
             (`Stopping`; the other arms stop early as published, so past 6 epochs they differ in that too)

`--schedules` chooses the arms (default: published, xK, warmup-xK, onecycle-xK); `--shifts 0,0.1` runs each arm
with the training images shifted by up to each fraction (`TrainingConfig.shift`, what `--set shift=F` trains). A
configuration of the cnn is filters_1/filters_2/units[/optimizer/learning_rate]; without the last two, Adam at 1e-3
(the builder's defaults). `--model` trains another built-in builder (resnet4, resnet-blocks, resnet50): its
configurations are `defaults` or NAME=VALUE pairs joined by `+` (`optimizer=rmsprop+learning_rate=0.005`), the
builder's defaults for the rest; the same form works for the cnn.

Reported: best validation accuracy over the epochs (what a trial reports) and the test accuracy of the restored
weights, medians and ranges over the seeds. Nothing else runs in between; the arms of a seed run back to back.

Run: .venv/bin/python benchmarks/lr_schedule.py [--data-dir ../shared/datasets/mnist] [--train-size 12000]
     [--epochs 3] [--seeds 0,1,2] [--model cnn] [--configs 128/192/256,32/64/128,64/32/384/adam/0.0017] [--peak 3]
     [--schedules published,cosine,x3,warmup-x3,onecycle-x3] [--shifts 0,0.1]
Prints Markdown.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def per_batch_rate(rate: Callable[[float, int], float | None]) -> Any:
    """A Keras callback setting the optimizer's learning rate before every batch to `rate(base, step)`, where `base`
    is the rate at the start of the fit and `step` counts the fit's batches from 0; None leaves the rate alone."""
    import keras

    class PerBatchRate(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.base = 0.0
            self.step = 0

        def on_train_begin(self, logs: Any = None) -> None:
            self.base = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            value = rate(self.base, self.step)
            if value is not None:
                self.model.optimizer.learning_rate.assign(value)
            self.step += 1

    return PerBatchRate()


def cosine_decay(epochs: int, steps_per_epoch: int) -> Any:
    """The optimizer's learning rate decayed from its value at the start to 0 over the budget."""
    total = max(1, epochs * steps_per_epoch)
    return per_batch_rate(lambda base, step: base * (1 + math.cos(math.pi * min(step, total) / total)) / 2)


def warm_up(steps_per_epoch: int, peak: float) -> Any:
    """The learning rate raised linearly from a tenth of its starting value to `peak` times it over the first
    epoch's batches; after them the rate is left to the other callbacks."""
    rise = max(1, steps_per_epoch)
    return per_batch_rate(lambda base, step: base / 10 + (base * peak - base / 10) * step / rise if step < rise
                          else None)


def parse_config(text: str) -> dict[str, Any]:
    """A configuration's text -> the builder's values.

    Args:
        text: `defaults`, NAME=VALUE pairs joined by `+` (a value is read as an int, else a float, else kept as
            text), or the cnn's filters_1/filters_2/units[/optimizer/learning_rate].

    Returns:
        The values to build with; a builder takes its defaults for the names left out.
    """
    if text == "defaults":
        return {}
    if "=" in text:
        values: dict[str, Any] = {}
        for pair in text.split("+"):
            name, equals, raw = pair.partition("=")
            if not equals or not name or not raw:
                raise SystemExit(f"--configs: {pair!r} in {text!r} is not NAME=VALUE")
            for kind in (int, float, str):
                try:
                    values[name] = kind(raw)
                    break
                except ValueError:
                    continue
        return values
    parts = text.split("/")
    values = {"filters_1": int(parts[0]), "filters_2": int(parts[1]), "units": int(parts[2])}
    if len(parts) == 5:
        values.update(optimizer=parts[3], learning_rate=float(parts[4]))
    elif len(parts) == 3:
        values.update(optimizer="adam", learning_rate=1e-3)  # the cnn builder's defaults
    else:
        raise SystemExit(f"--configs: {text!r} is not `defaults`, NAME=VALUE[+NAME=VALUE...] or "
                         "filters_1/filters_2/units[/optimizer/learning_rate]")
    return values


def train(config: dict[str, Any], data: Any, epochs: int, seed: int, schedule: str,
          shift: float = 0.0, model_name: str = "cnn") -> tuple[float, float, int]:
    """(best validation accuracy, test accuracy, epochs run) of one configuration of `model_name` trained at most
    `epochs` epochs under `schedule` (published, cosine, xK, warmup-xK or onecycle-xK), its training images shifted
    by up to `shift`."""
    import keras

    from hpsearch.models import TrainingConfig, get_builder
    from hpsearch.search.adapter import values_hyperparameters
    from hpsearch.search.training import fit_and_evaluate

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    values = dict(config)
    kind, peak = parse_schedule(schedule)
    if kind == "x":
        if "learning_rate" not in values:
            raise SystemExit(f"--schedules {schedule}: name the configuration's learning_rate to multiply it")
        values["learning_rate"] *= peak
    model = get_builder(model_name, data.input_shape, data.num_classes)(values_hyperparameters(values))
    training = TrainingConfig(batch_size=128, epochs=epochs, lr_peak=peak if kind == "onecycle" else 1.0,
                              shift=shift)
    steps = math.ceil(len(data.x_train) / training.batch_size)
    callbacks: list[Any] = []
    if kind == "cosine":
        callbacks = [cosine_decay(epochs, steps)]
    elif kind == "warmup":
        callbacks = [warm_up(steps, peak)]
    result = fit_and_evaluate(model, data, training, callbacks=callbacks)
    return result.val_accuracy, result.test_accuracy, result.epochs_run


def parse_schedule(schedule: str) -> tuple[str, float]:
    """An arm's name -> (kind, peak factor): published / cosine (factor 1), or x / warmup / onecycle with K."""
    if schedule in ("published", "cosine"):
        return schedule, 1.0
    kind, _, factor = schedule.rpartition("x")
    try:
        if kind in ("", "warmup-", "onecycle-") and float(factor) > 0:
            return kind.rstrip("-") or "x", float(factor)
    except ValueError:
        pass
    raise SystemExit(f"--schedules: {schedule!r} is not published, cosine, xK, warmup-xK or onecycle-xK (K > 0)")


def describe(config: dict[str, Any]) -> str:
    if not config:
        return "the builder's defaults"
    if {"filters_1", "filters_2", "units", "optimizer", "learning_rate"} <= set(config):
        shape = f"{config['filters_1']}/{config['filters_2']}/{config['units']}"
        return f"{shape}, {config['optimizer']}, {config['learning_rate']:.2g}"
    return ", ".join(f"{name} {value:.2g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in config.items())


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} [{min(values):.4f}-{max(values):.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", default="cnn", help="the built-in builder to train (default cnn)")
    parser.add_argument("--configs", default="128/192/256,32/64/128",
                        help="comma-separated: `defaults`, NAME=VALUE[+NAME=VALUE...] or (cnn) "
                        "filters_1/filters_2/units[/optimizer/learning_rate]")
    parser.add_argument("--peak", type=float, default=3.0, help="K of the xK, warmup-xK and onecycle-xK arms")
    parser.add_argument("--schedules", default=None,
                        help="comma-separated arms (default: published,xK,warmup-xK,onecycle-xK)")
    parser.add_argument("--shifts", default="0", help="comma-separated training-image shifts, each arm run with "
                        "each (default 0: none)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hpsearch.datasets import load_dataset

    data = load_dataset(args.dataset, args.data_dir, args.train_size, 0.1, 0)
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = [parse_config(c) for c in args.configs.split(",")]
    k = f"{args.peak:g}"
    schedules = (args.schedules.split(",") if args.schedules
                 else ["published", f"x{k}", f"warmup-x{k}", f"onecycle-x{k}"])
    for schedule in schedules:
        parse_schedule(schedule)
    shifts = [float(f) for f in args.shifts.split(",")]
    if any(not 0.0 <= f <= 0.5 for f in shifts):
        raise SystemExit(f"--shifts: each from 0 to 0.5 (a fraction of the image's size), got {args.shifts}")
    arms = [(schedule, shift) for schedule in schedules for shift in shifts]
    print(f"{args.model}, {args.dataset}, {len(data.x_train)} training / {len(data.x_val)} validation / "
          f"{len(data.x_test)} test images, {args.epochs} epochs, batch 128, seeds {args.seeds}; load average at start "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| configuration (cnn: filters_1 / filters_2 / units, optimizer, rate) | learning rate | best validation "
          "| test | seconds a run |")
    print("|---|---|---|---|---|")
    start = time.perf_counter()
    for config in configs:
        results: dict[tuple[str, float], list[tuple[float, float, float]]] = {arm: [] for arm in arms}
        for seed in seeds:
            for schedule, shift in results:
                t0 = time.perf_counter()
                val, test, epochs_run = train(config, data, args.epochs, seed, schedule, shift, args.model)
                seconds = time.perf_counter() - t0
                results[schedule, shift].append((val, test, seconds))
                print(f"{describe(config)}, seed {seed}, {schedule}, shift {shift:g}: best validation {val:.4f}, "
                      f"test {test:.4f}, {epochs_run} epochs, {seconds:.0f} s", file=sys.stderr,
                      flush=True)
        for (schedule, shift), rows in results.items():
            arm = f"{schedule}, shift {shift:g}" if shift else schedule
            print(f"| {describe(config)} | {arm} | {cell([r[0] for r in rows])} | "
                  f"{cell([r[1] for r in rows])} | {statistics.median(r[2] for r in rows):.0f} |", flush=True)
    print(f"\nTotal {time.perf_counter() - start:.0f} s; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
