"""Pruners compared on the same measured learning curves: successive halving, Hyperband, median, a data-fraction
fidelity and no pruning, each deciding as it would in a search, with its false-prune rate.

1. Training (slow, resumable): --configs configurations drawn at random (seeded) from the CNN space of the race,
   each trained as an hpsearch trial trains it (precise BatchNorm, early stopping, ReduceLROnPlateau) for --epochs
   on the race's data, its validation accuracy recorded after every epoch; and the same configuration trained for
   one epoch on a --fraction of the training images (the data-fraction fidelity's first rung). Each configuration
   is written to OUT/curves.json as it ends; a later run trains only what is missing.
2. Replay (seconds): every pruner, as Optuna's own pruner object on an in-memory study, sees the configurations in
   --orders random orders as one worker runs them: a trial reports its curve epoch by epoch and stops when the
   pruner says so. The sampler is out of the picture (random order = random search), so the pruners differ only
   in what they stop. Per pruner, median over the orders:
   - training time spent on all configurations (each epoch costs what it measured, the fraction epoch what it
     measured), and the best value found (as in hpsearch, a trial's last epoch is never pruned);
   - at a budget of a quarter and of half the time that training every configuration to the end takes: the best
     value among the configurations it completed within it (what a time-limited search keeps);
   - false prunes: pruned configurations whose full value ranks in the top quarter of all of them, and how often
     the single best configuration was pruned.

Run:  .venv/bin/python benchmarks/pruners.py [--dataset mnist|fashion-mnist] [--data-dir DIR] [--configs 16]
      [--train-size 12000]
      [--epochs 3] [--fraction 0.25] [--orders 500] [--replay-only]
Prints Markdown; curves and replay figures in benchmarks/results/pruners/<setting>/.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRUNERS = ("none", "successive-halving", "hyperband", "median", "data-fraction")


def draw_configs(n: int, seed: int) -> list[dict[str, Any]]:
    """n configurations of the race's CNN space, drawn as a random sampler would (log-uniform learning rate)."""
    import math

    from hpsearch.models.cnn import FILTERS_RANGE, UNITS_RANGE

    rng = random.Random(seed)
    lo, hi, step = FILTERS_RANGE
    ulo, uhi, ustep = UNITS_RANGE
    return [{"filters_1": rng.randrange(lo, hi + 1, step), "filters_2": rng.randrange(lo, hi + 1, step),
             "units": rng.randrange(ulo, uhi + 1, ustep), "optimizer": rng.choice(["adam", "sgd", "rmsprop"]),
             "learning_rate": math.exp(rng.uniform(math.log(1e-4), math.log(1e-2)))} for _ in range(n)]


def train_curves(args: argparse.Namespace, path: Path) -> list[dict[str, Any]]:
    """Trains what `path` lacks; returns every configuration's record."""
    import keras

    from hpsearch.datasets import load_dataset
    from hpsearch.models import get_builder, training_config
    from hpsearch.search.adapter import values_hyperparameters
    from hpsearch.search.training import fit_and_evaluate

    records = json.loads(path.read_text()) if path.exists() else []
    configs = draw_configs(args.configs, args.seed)
    if len(records) >= len(configs):
        return records[:len(configs)]
    data = load_dataset(args.dataset, args.data_dir, args.train_size, 0.1, args.seed)
    part = replace(data, x_train=data.x_train[:int(len(data.x_train) * args.fraction)],
                   y_train=data.y_train[:int(len(data.y_train) * args.fraction)])
    builder = get_builder("cnn", data.input_shape, data.num_classes)

    def train(values: dict[str, Any], on: Any, epochs: int, seed: int) -> tuple[list[float], float]:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        hp = values_hyperparameters({**values, "epochs": epochs})
        model = builder(hp)
        start = time.perf_counter()
        result = fit_and_evaluate(model, on, training_config(hp), skip_test=lambda: True)
        return [round(float(v), 5) for v in result.history["val_accuracy"]], round(time.perf_counter() - start, 1)

    for i in range(len(records), len(configs)):
        curve, seconds = train(configs[i], data, args.epochs, args.seed + i)
        fraction_curve, fraction_seconds = train(configs[i], part, 1, args.seed + i)
        records.append({"config": configs[i], "curve": curve, "seconds": seconds,
                        "fraction_value": fraction_curve[0], "fraction_seconds": fraction_seconds})
        path.write_text(json.dumps(records, indent=1) + "\n")
        print(f"  config {i + 1}/{len(configs)}: {curve} (fraction {fraction_curve[0]}) in "
              f"{seconds + fraction_seconds:.0f} s", file=sys.stderr, flush=True)
    return records


def make_pruner(name: str, epochs: int) -> Any:
    """hpsearch's pruners as `hpsearch run --pruner NAME` makes them; data-fraction: successive halving on the
    steps [fraction epoch, epoch 1, ..., epoch N], so its first rung is the fraction's value."""
    import optuna

    from hpsearch.search.spec import StudySpec

    if name == "data-fraction":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return StudySpec(study="pruners", model="cnn", pruner=name, epochs=epochs).make_pruner()


def replay(records: list[dict[str, Any]], pruner_name: str, order: list[int], epochs: int) -> list[dict[str, Any]]:
    """One worker running the configurations in `order` under the pruner: per trial, the training seconds it cost
    (as measured), whether it was pruned, and its full value (what it would have reached)."""
    import optuna

    study = optuna.create_study(direction="maximize", pruner=make_pruner(pruner_name, epochs),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for i in order:
        r = records[i]
        per_epoch = r["seconds"] / len(r["curve"])
        steps = [(r["fraction_value"], r["fraction_seconds"])] if pruner_name == "data-fraction" else []
        steps += [(v, per_epoch) for v in r["curve"]]
        trial = study.ask()
        cost, pruned = 0.0, False
        for step, (value, epoch_cost) in enumerate(steps, start=1):
            cost += epoch_cost
            trial.report(value, step)
            if pruner_name != "none" and step < len(steps) and trial.should_prune():  # hpsearch keeps a last epoch
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, max(r["curve"]))
        out.append({"config": i, "cost": cost, "pruned": pruned, "full": max(r["curve"])})
    return out


def score(runs: list[list[dict[str, Any]]], records: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """Median figures over the replayed orders of one pruner."""
    finals = sorted((max(r["curve"]) for r in records), reverse=True)
    top_quarter = finals[max(0, len(finals) // 4 - 1)]
    full_cost = sum(r["seconds"] for r in records)

    def best_within(run: list[dict[str, Any]], budget: float) -> float | None:
        spent, best = 0.0, None
        for t in run:
            spent += t["cost"]
            if spent > budget:
                break
            if not t["pruned"]:
                best = t["full"] if best is None else max(best, t["full"])
        return best

    def median(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None]
        return statistics.median(got) if got else None

    def mean(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None]
        return statistics.mean(got) if got else None

    pruned = [sum(t["pruned"] for t in run) for run in runs]
    false = [sum(t["pruned"] and t["full"] >= top_quarter for t in run) for run in runs]
    return {
        "minutes_spent": median([sum(t["cost"] for t in run) / 60 for run in runs]),
        "best_found": median([max((t["full"] for t in run if not t["pruned"]), default=None) for run in runs]),
        "best_at_quarter": median([best_within(run, full_cost / 4) for run in runs]),
        "best_at_half": median([best_within(run, full_cost / 2) for run in runs]),
        "mean_at_quarter": mean([best_within(run, full_cost / 4) for run in runs]),
        "mean_at_half": mean([best_within(run, full_cost / 2) for run in runs]),
        "top_at_half": sum(best_within(run, full_cost / 2) == finals[0] for run in runs) / len(runs),
        "pruned": median(pruned),
        "false_prunes": median(false),
        "false_prune_rate": sum(false) / max(1, sum(pruned)),
        "best_pruned_share": sum(any(t["pruned"] and t["full"] == finals[0] for t in run) for run in runs) / len(runs),
        "top_quarter_bar": top_quarter, "best_overall": finals[0],
    }


def rank_correlation(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank)."""
    def ranks(xs: list[float]) -> list[float]:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        r = [0.0] * len(xs)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def report(records: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = random.Random(args.seed)
    orders = [rng.sample(range(len(records)), len(records)) for _ in range(args.orders)]
    results = {name: score([replay(records, name, o, args.epochs) for o in orders], records,
                           args.epochs) for name in PRUNERS}
    (out / "replay.json").write_text(json.dumps(results, indent=1) + "\n")
    finals = [max(r["curve"]) for r in records]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"{len(records)} configurations, {args.epochs} epochs on {args.train_size} images, {args.orders} orders; "
          f"best {max(finals):.4f}, top-quarter bar {results['none']['top_quarter_bar']:.4f}\n")
    full = sum(r["seconds"] for r in records) / 60
    print("| pruner | training minutes (all configs) | best found | best within 1/4 of the time (mean) | within 1/2 "
          "(mean) | best config found within 1/2 | pruned | false prunes (top quarter) | false-prune rate | best "
          "config pruned |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, s in results.items():
        print(f"| {name} | {s['minutes_spent']:.1f} of {full:.1f} | {fmt(s['best_found'])} | "
              f"{fmt(s['best_at_quarter'])} ({fmt(s['mean_at_quarter'])}) | {fmt(s['best_at_half'])} "
              f"({fmt(s['mean_at_half'])}) | {s['top_at_half']:.0%} of orders | {s['pruned']:.0f} | "
              f"{s['false_prunes']:.0f} | {s['false_prune_rate']:.0%} | {s['best_pruned_share']:.0%} of orders |")
    signals = {"fraction epoch": [r["fraction_value"] for r in records]}
    for e in range(1, args.epochs):
        signals[f"epoch {e}"] = [r["curve"][min(e, len(r["curve"])) - 1] for r in records]
    print("\nRank correlation (Spearman) of each early signal with the configuration's final value: "
          + ", ".join(f"{k} {rank_correlation(v, finals):.2f}" for k, v in signals.items()))
    seconds = [r["seconds"] for r in records]
    print(f"\nSeconds per configuration: {statistics.median(seconds):.0f} median for {args.epochs} epochs; fraction "
          f"epoch {statistics.median(r['fraction_seconds'] for r in records):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--data-dir", help="the dataset's files (default: ../shared/datasets/mnist for mnist, "
                        "hpsearch's own search path for fashion-mnist)")
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.25, help="of the training images, for the first rung")
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replay-only", action="store_true", help="train nothing: replay what is recorded")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pruners"))
    args = parser.parse_args()
    if args.data_dir is None and args.dataset == "mnist":
        args.data_dir = str(ROOT.parent / "shared" / "datasets" / "mnist")
    out = Path(args.out) / f"{args.dataset}-{args.train_size}-e{args.epochs}-f{args.fraction:g}-s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "curves.json"
    if args.replay_only:
        records = json.loads(path.read_text())[:args.configs]  # the first --configs: the same draw as then
    else:
        records = train_curves(args, path)
    report(records, args, out)


if __name__ == "__main__":
    main()
