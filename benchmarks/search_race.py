"""Search race on real MNIST: five ways to search the published CNN space, one after another, same wall budget.

Methods (each gets the same data, the same wall-clock budget and the whole machine, in turn):
  hpsearch-2w     `hpsearch run`: TPE + Hyperband pruning, 2 worker processes x 1 thread (SQLite)
  hpsearch-1w     the same with 1 worker x 2 threads
  kt-hyperband    KerasTuner Hyperband (max_epochs = --epochs, factor 3), one process
  kt-random       KerasTuner RandomSearch, one process
  optuna-tpe      plain Optuna TPE without pruning, as a user wires Optuna to Keras by hand, one process

The space is the published one: filters_1, filters_2, units, optimizer and learning rate; training as the seed
search trained (batch 128, early stopping patience 3 with best weights, ReduceLROnPlateau factor 0.2). A method's
clock starts when its process is started (imports and data loading count) and the method is stopped at the
budget; a trial counts only if it ended inside the budget. Test accuracy is that of the trial with the best
validation accuracy (hpsearch evaluates every completed trial; the others evaluate each new best).

Run:  .venv/bin/python benchmarks/search_race.py --data-dir ../shared/datasets/mnist
      [--budget 600] [--seeds 0,1,2] [--train-size 20000] [--epochs 6] [--target 0.985] [--out DIR]
Writes DIR/events-*.jsonl, DIR/race.json, DIR/race.png and prints a Markdown report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("hpsearch-2w", "hpsearch-1w", "kt-hyperband", "kt-random", "optuna-tpe")
SEARCHED = ("filters_1", "filters_2", "units", "optimizer", "learning_rate")
T0_ENV = "HPSEARCH_RACE_T0"


# ----------------------------------------------------------------------------------------------- child side
class EventLog:
    """Appends one JSON line per finished trial: seconds since the method started, state, validation score, and
    the test accuracy when the trial is a new best."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = float(os.environ[T0_ENV])
        self.best: float | None = None

    def is_new_best(self, value: float | None) -> bool:
        return value is not None and (self.best is None or value > self.best)

    def write(self, state: str, value: float | None, test: float | None = None) -> None:
        if self.is_new_best(value):
            self.best = value
        with self.path.open("a") as f:
            f.write(json.dumps({"t": round(time.time() - self.t0, 2), "state": state, "value": value,
                                "test": test}) + "\n")


def _data(args: argparse.Namespace) -> Any:
    from hpsearch.datasets import load_dataset

    return load_dataset("mnist", args.data_dir, args.train_size, 0.1, args.seed)


def _test_accuracy(model: Any, data: Any) -> float:
    probs = model.predict(data.x_test, batch_size=512, verbose=0)
    return float((probs.argmax(axis=1) == data.y_test).mean())


def child_keras_tuner(args: argparse.Namespace, kind: str) -> None:
    import keras_tuner

    from hpsearch.search.keras_tuner_engine import make_tuner
    from hpsearch.search.spec import StudySpec

    data = _data(args)
    spec = StudySpec(study=f"race-{kind}-{args.seed}", model="cnn", dataset="mnist", seed=args.seed,
                     epochs=args.epochs, trials=100_000, train_size=args.train_size)
    tuner = make_tuner(kind, spec, data, Path(args.workdir) / "kt", overwrite=True)
    log = EventLog(Path(args.events))

    def on_trial_end(trial: keras_tuner.engine.trial.Trial, _base: Any = tuner.on_trial_end) -> None:
        _base(trial)
        score = tuner.oracle.get_trial(trial.trial_id).score
        value = float(score) if score is not None else None
        test = _test_accuracy(tuner.load_model(trial), data) if log.is_new_best(value) else None
        log.write("COMPLETE" if value is not None else "FAIL", value, test)

    tuner.on_trial_end = on_trial_end
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), verbose=0)


def child_optuna(args: argparse.Namespace) -> None:
    """Plain Optuna: TPE, no pruning, in-memory study, the objective written the way the Optuna docs show."""
    import keras
    import optuna

    from hpsearch.models._common import make_optimizer
    from hpsearch.models.cnn import FILTERS_RANGE, UNITS_RANGE, cnn
    from hpsearch.search.training import standard_callbacks

    data = _data(args)
    log = EventLog(Path(args.events))
    config = type("Config", (), {"patience": 3, "lr_factor": 0.2, "lr_patience": 2})()

    def objective(trial: optuna.trial.Trial) -> float:
        keras.backend.clear_session()
        f1 = trial.suggest_int("filters_1", FILTERS_RANGE[0], FILTERS_RANGE[1], step=FILTERS_RANGE[2])
        f2 = trial.suggest_int("filters_2", FILTERS_RANGE[0], FILTERS_RANGE[1], step=FILTERS_RANGE[2])
        units = trial.suggest_int("units", UNITS_RANGE[0], UNITS_RANGE[1], step=UNITS_RANGE[2])
        name = trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"])
        lr = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        model = cnn(data.input_shape, data.num_classes, f1, f2, units)
        model.compile(optimizer=make_optimizer(name, lr), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(data.x_train, data.y_train, batch_size=128, epochs=args.epochs,
                            validation_data=(data.x_val, data.y_val), verbose=0,
                            callbacks=standard_callbacks(config))
        value = max(history.history["val_accuracy"])
        log.write("COMPLETE", value, _test_accuracy(model, data) if log.is_new_best(value) else None)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    study.optimize(objective, n_trials=100_000)


def child_main(args: argparse.Namespace) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT))
    if args.child == "optuna-tpe":
        child_optuna(args)
    else:
        child_keras_tuner(args, args.child.removeprefix("kt-"))


# ---------------------------------------------------------------------------------------------- parent side
def _command(method: str, seed: int, args: argparse.Namespace, workdir: Path, events: Path) -> list[str]:
    if method.startswith("hpsearch"):
        workers = "2" if method == "hpsearch-2w" else "1"
        return [str(Path(sys.executable).parent / "hpsearch"), "run", "--study", f"race-{seed}", "--model", "cnn",
                "--dataset", "mnist", "--data-dir", args.data_dir, "--train-size", str(args.train_size),
                "--epochs", str(args.epochs), "--seed", str(seed), "--trials", "100000",
                "--timeout", str(args.budget), "--workers", workers, "--storage", f"sqlite:///{workdir / 'race.db'}",
                "--quiet"]
    return [sys.executable, __file__, "--child", method, "--seed", str(seed), "--data-dir", args.data_dir,
            "--train-size", str(args.train_size), "--epochs", str(args.epochs), "--workdir", str(workdir),
            "--events", str(events)]


def _hpsearch_events(workdir: Path, seed: int, t0: float, events: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=f"race-{seed}", storage=f"sqlite:///{workdir / 'race.db'}")
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.datetime_complete is None:
            continue
        rows.append({"t": round(t.datetime_complete.timestamp() - t0, 2), "state": t.state.name,
                     "value": t.value, "test": t.user_attrs.get("test_accuracy")})
    rows.sort(key=lambda r: r["t"])
    events.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_method(method: str, seed: int, args: argparse.Namespace, out: Path) -> Path:
    workdir = out / f"{method}-{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    events = out / f"events-{method}-{seed}.jsonl"
    events.unlink(missing_ok=True)
    t0 = time.time()
    env = {**os.environ, T0_ENV: str(t0), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    with (workdir / "log.txt").open("w") as log:
        proc = subprocess.Popen(_command(method, seed, args, workdir, events), env=env, cwd=workdir,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=args.budget)
        except subprocess.TimeoutExpired:
            pass
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=grace)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
    if method.startswith("hpsearch"):
        _hpsearch_events(workdir, seed, t0, events)
    return events


def summarize(events: Path, budget: float, target: float) -> dict[str, Any]:
    rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] if events.exists() else []
    rows = [r for r in rows if r["t"] <= budget]
    best, best_test, reached, curve = None, None, None, []
    for r in rows:
        if r["state"] == "COMPLETE" and r["value"] is not None and (best is None or r["value"] > best):
            best, best_test = r["value"], r["test"]
            curve.append((r["t"], best))
            if reached is None and best >= target:
                reached = r["t"]
    def first_at(level: float) -> float | None:
        return next((t for t, v in curve if v >= level), None)

    levels = sorted({round(target - 0.01, 4), round(target - 0.005, 4), target, round(target + 0.005, 4)})
    return {"best_val": best, "test_of_best": best_test, "time_to_target": reached, "curve": curve,
            "time_to": {str(level): first_at(level) for level in levels},
            "complete": sum(r["state"] == "COMPLETE" for r in rows),
            "pruned": sum(r["state"] == "PRUNED" for r in rows), "failed": sum(r["state"] == "FAIL" for r in rows)}


def _median_spread(values: list[float | None], fmt: str, missing: str = "not reached") -> str:
    got = [v for v in values if v is not None]
    if not got:
        return missing
    text = format(statistics.median(got), fmt) if len(got) == len(values) else f"{missing} ({len(got)}/{len(values)})"
    return f"{text} [{format(min(got), fmt)}-{format(max(got), fmt)}]"


def plot(results: dict[str, dict[int, dict[str, Any]]], budget: float, target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    colours = dict(zip(METHODS, ("tab:blue", "tab:cyan", "tab:red", "tab:orange", "tab:green"), strict=True))
    styles = ("-", "--", ":")
    for method, by_seed in results.items():
        for i, (seed, s) in enumerate(sorted(by_seed.items())):
            if not s["curve"]:
                continue
            ts = [t / 60 for t, _ in s["curve"]] + [budget / 60]
            vs = [v for _, v in s["curve"]] + [s["curve"][-1][1]]
            ax.step(ts, vs, where="post", color=colours.get(method), linestyle=styles[i % 3],
                    label=f"{method} seed {seed}", linewidth=1.6)
    ax.axhline(target, color="grey", linewidth=0.8)
    ax.text(0.2, target, f" target {target:.1%}", va="bottom", color="grey")
    lows = [v for by_seed in results.values() for s in by_seed.values() for _, v in s["curve"]]
    high = min(1.0, max(max(lows, default=target), target) + 0.003)
    low = max(min(lows, default=target - 0.03), target - 0.03)  # the region near the target; lower values clip
    ax.set_ylim(min(low, high - 0.01), high)
    ax.set_xlim(0, budget / 60)
    ax.set_xlabel("minutes since the method started")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("Search race on MNIST: the published CNN space, same data, same 2 cores")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace) -> str:
    lines = [f"Budget {args.budget:.0f} s per method and seed; {args.train_size} training images (10% of them "
             f"validation), up to {args.epochs} epochs per trial; target validation accuracy {args.target:.2%}; "
             f"seeds {args.seeds}. Median [min-max] over seeds.", "",
             "| method | time to target (s) | best validation | test accuracy of best | trials complete | pruned | "
             "failed |", "|---|---|---|---|---|---|---|"]
    for method, by_seed in results.items():
        s = list(by_seed.values())
        lines.append(f"| {method} | {_median_spread([x['time_to_target'] for x in s], '.0f')} | "
                     f"{_median_spread([x['best_val'] for x in s], '.4f', 'none')} | "
                     f"{_median_spread([x['test_of_best'] for x in s], '.4f', 'none')} | "
                     f"{_median_spread([x['complete'] for x in s], '.0f', '0')} | "
                     f"{_median_spread([x['pruned'] for x in s], '.0f', '0')} | "
                     f"{_median_spread([x['failed'] for x in s], '.0f', '0')} |")
    levels = list(next(iter(next(iter(results.values())).values()))["time_to"]) if results else []
    lines += ["", "Time (s) to other validation accuracies, median [min-max] over seeds:", "",
              "| method | " + " | ".join(f"{float(level):.1%}" for level in levels) + " |",
              "|---|" + "---|" * len(levels)]
    for method, by_seed in results.items():
        lines.append(f"| {method} | " + " | ".join(
            _median_spread([x["time_to"][level] for x in by_seed.values()], ".0f") for level in levels) + " |")
    lines += ["", "Per seed (time to target s / best validation / test of best / complete / pruned):", ""]
    for method, by_seed in results.items():
        cells = [f"seed {seed}: {x['time_to_target'] if x['time_to_target'] is not None else '-'} / "
                 f"{x['best_val'] if x['best_val'] is not None else '-'} / "
                 f"{x['test_of_best'] if x['test_of_best'] is not None else '-'} / {x['complete']} / {x['pruned']}"
                 for seed, x in sorted(by_seed.items())]
        lines.append(f"- {method}: " + "; ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per method and seed")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--target", type=float, default=0.985)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "race"))
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: report and plot the events already in --out (after re-running a part)")
    parser.add_argument("--child", choices=METHODS[2:], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--events", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    out = Path(args.out).resolve()  # the methods run with their own working directories
    args.data_dir = str(Path(args.data_dir).resolve())
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    results: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in methods}
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.time()
    for seed in seeds if not args.report_only else []:
        for method in methods:
            print(f"[{time.time() - started:6.0f}s] seed {seed}: {method} for {args.budget:.0f}s", file=sys.stderr,
                  flush=True)
            events = run_method(method, seed, args, out)
            results[method][seed] = summarize(events, args.budget, args.target)
            s = results[method][seed]
            print(f"          best val {s['best_val']}, test {s['test_of_best']}, target at {s['time_to_target']}, "
                  f"{s['complete']} complete / {s['pruned']} pruned / {s['failed']} failed", file=sys.stderr,
                  flush=True)
            (out / "race.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    if args.report_only:
        results = {m: {seed: summarize(out / f"events-{m}-{seed}.jsonl", args.budget, args.target) for seed in seeds}
                   for m in methods}
    plot(results, args.budget, args.target, out / "race.png")
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}\n")
    print(report(results, args))
    print(f"\nPlot: {out / 'race.png'}")


if __name__ == "__main__":
    main()
