"""What a 3-epoch trial reaches with the published training and with its learning rate decayed over the epoch budget.

The lever the "98.5% in 10 minutes" goal names (BENCHMARKS.md): at 3 epochs on 10,800 MNIST images the search's best
configurations stop near 98%, whatever the method. Each row trains one configuration of the CNN space from the same
seed twice through `fit_and_evaluate` (what a trial runs: precise BatchNorm, early stopping, ReduceLROnPlateau):

  published  the trial's callbacks alone: the builder's learning rate until a plateau lowers it
  cosine     the same, with the learning rate set before every batch to the builder's rate times
             (1 + cos(pi x step / steps)) / 2 over the whole epoch budget (steps = epochs x batches per epoch), so it
             reaches 0 at the last step (a plateau's cut is overwritten by the next batch)

Reported: best validation accuracy over the epochs (what a trial reports) and the test accuracy of the restored
weights, medians and ranges over the seeds. Nothing else runs in between; the two arms of a seed run back to back.

Run: .venv/bin/python benchmarks/lr_schedule.py [--data-dir ../shared/datasets/mnist] [--train-size 12000]
     [--epochs 3] [--seeds 0,1,2] [--configs 128/192/256,32/64/128]
Prints Markdown.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cosine_decay(epochs: int, steps_per_epoch: int) -> Any:
    """A Keras callback decaying the optimizer's learning rate from its value at the start to 0 over the budget."""
    import keras

    class CosineOverBudget(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.base = 0.0
            self.step = 0

        def on_train_begin(self, logs: Any = None) -> None:
            self.base = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            total = max(1, epochs * steps_per_epoch)
            self.model.optimizer.learning_rate.assign(
                self.base * (1 + math.cos(math.pi * min(self.step, total) / total)) / 2)
            self.step += 1

    return CosineOverBudget()


def train(config: tuple[int, int, int], data: Any, epochs: int, seed: int, schedule: str) -> tuple[float, float]:
    """(best validation accuracy, test accuracy) of one configuration trained `epochs` epochs."""
    import keras

    from hpsearch.models import TrainingConfig, get_builder
    from hpsearch.search.adapter import values_hyperparameters
    from hpsearch.search.training import fit_and_evaluate

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    filters_1, filters_2, units = config
    hp = values_hyperparameters({"filters_1": filters_1, "filters_2": filters_2, "units": units})
    model = get_builder("cnn", data.input_shape, data.num_classes)(hp)
    training = TrainingConfig(batch_size=128, epochs=epochs)
    steps = math.ceil(len(data.x_train) / training.batch_size)
    callbacks = [cosine_decay(epochs, steps)] if schedule == "cosine" else []
    result = fit_and_evaluate(model, data, training, callbacks=callbacks)
    return result.val_accuracy, result.test_accuracy


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} [{min(values):.4f}-{max(values):.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--configs", default="128/192/256,32/64/128",
                        help="filters_1/filters_2/units, comma-separated (the first is the published one)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hpsearch.datasets import load_dataset

    data = load_dataset(args.dataset, args.data_dir, args.train_size, 0.1, 0)
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = [tuple(int(v) for v in c.split("/")) for c in args.configs.split(",")]
    print(f"{args.dataset}, {len(data.x_train)} training / {len(data.x_val)} validation / {len(data.x_test)} test "
          f"images, {args.epochs} epochs, batch 128, seeds {args.seeds}; load average at start "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| configuration (filters_1 / filters_2 / units) | learning rate | best validation | test | seconds a run |")
    print("|---|---|---|---|---|")
    start = time.perf_counter()
    for config in configs:
        results: dict[str, list[tuple[float, float, float]]] = {"published": [], "cosine": []}
        for seed in seeds:
            for schedule in results:
                t0 = time.perf_counter()
                val, test = train(config, data, args.epochs, seed, schedule)
                results[schedule].append((val, test, time.perf_counter() - t0))
        for schedule, rows in results.items():
            print(f"| {'/'.join(map(str, config))} | {schedule} | {cell([r[0] for r in rows])} | "
                  f"{cell([r[1] for r in rows])} | {statistics.median(r[2] for r in rows):.0f} |", flush=True)
    print(f"\nTotal {time.perf_counter() - start:.0f} s; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
