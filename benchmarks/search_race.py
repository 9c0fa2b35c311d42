"""Search race: hpsearch with its defaults vs KerasTuner vs plain Optuna on the published CNN space, same data,
same wall-clock budget, the whole machine to each method in turn.

Methods:
  hpsearch        `hpsearch run` with its defaults (sampler, pruner, workers); no enqueued configuration; with
                  --timeout the defaults weigh cost since 2026-11-26 (as hpsearch-cost; results recorded before are
                  hpsearch-nocost) and train one learning-rate cycle a trial since 2026-11-27 (as hpsearch-1cycle;
                  cost-aware results recorded before are hpsearch-cost), peaking at 5 times the sampled rate since
                  2026-11-29 (as hpsearch-peak5; at 3 before, as hpsearch-1cycle); the done marker records the
                  peak its trials trained (since 2026-11-29), and benchmarks/race_grid.py names what every committed
                  `hpsearch` run trained, from that record or from the day the run started
  kt-hyperband    KerasTuner Hyperband (max_epochs = --epochs, factor 3), one process
  kt-random       KerasTuner RandomSearch, one process
  kt-bayesian     KerasTuner BayesianOptimization, one process
  optuna-tpe-hb   plain Optuna as a user wires it to Keras: TPE + HyperbandPruner, a Keras callback that reports
                  val_accuracy each epoch and raises TrialPruned; one process, in-memory study
  hpsearch-1w     (extra) `hpsearch run --workers 1`: one worker with every core's threads
  hpsearch-2w     (extra) `hpsearch run --workers 2`: two workers (on 2 cores: one thread each), the default
                  before the launcher took fewer workers for a learning sampler on a time budget
  hpsearch-random (extra) `hpsearch run --sampler random`: does TPE earn its place at these budgets?
  hpsearch-s4     (extra) `--sampler-option n_startup_trials=4`: TPE models results after 4 random trials, not 10
  hpsearch-uni    (extra) `--sampler-option multivariate=false`: TPE's independent per-parameter densities
  hpsearch-cost   (extra) `--cost-aware` with `time_aware=false`: the sampler weighs each configuration's cost
                  (search/cost.py) with a constant weight (the default); the published training (lr_peak 1), as
                  every extra but hpsearch-1cycle, hpsearch-shift and hpsearch-peak5
  hpsearch-timed  (extra) `--cost-aware` with `time_aware=true`: the cost's weight cools to 0 at the deadline and
                  candidates predicted to end after it are not drawn
  hpsearch-nocost (extra) `--no-cost-aware`: TPE blind to cost (the defaults before cost-aware sampling)
  hpsearch-b64    (extra) hpsearch-cost with `--batch-size 64`: twice the steps in each of the few epochs
  hpsearch-bs     (extra) hpsearch-cost with `--search-training batch_size`: the batch size searched (32-256)
  hpsearch-1cycle (extra) hpsearch-cost with `--set lr_peak=3`: one learning-rate cycle a trial, a warm-up to 3
                  times the sampled rate over the first third of the steps, then a fall back to it (the
                  defaults with --timeout from 2026-11-27 until the peak became 5 on 2026-11-29)
  hpsearch-shift  (extra) hpsearch's defaults with `--set shift=0.1`: every training image moved by up to 10% of
                  its size each way, drawn again every epoch (data augmentation)
  hpsearch-peak5  (extra) hpsearch's defaults with `--set lr_peak=5`: the learning-rate cycle's peak at 5 times the
                  sampled rate (the default since 2026-11-29; raced as an extra before it was)

The space is the published one: filters_1, filters_2, units, optimizer and learning rate; training as the seed
search trained (batch 128, early stopping patience 3 with best weights, ReduceLROnPlateau factor 0.2; hpsearch's
default since 2026-11-27 and hpsearch-1cycle: one learning-rate cycle in place of ReduceLROnPlateau). A method's
clock starts when its process is started (imports and data loading count) and the method is stopped at --budget;
a trial counts at a budget only if it ended inside it, so one run of --budget 900 also reports 300 and 600.
Test accuracy is that of the trial with the best validation accuracy at that budget.

Resumable: every (method, seed) writes its events and a done marker under DIR/<setting>/; a new run with the same
setting runs only the pairs not done yet (add seeds with --seeds), then reports all of them.

Run:  .venv/bin/python benchmarks/search_race.py --data-dir ../shared/datasets/mnist
      [--dataset mnist|fashion-mnist] [--budget 900] [--report-at 300,600,900] [--seeds 0,1,2]
      [--train-size 12000] [--epochs 3] [--methods ...] [--out DIR] [--report-only]
Writes DIR/<setting>/events-*.jsonl, done-*, race.json, race.png (DIR: benchmarks/results/race) and prints a
Markdown report; the methods' own files (databases, checkpoints) go to benchmarks/out/race-work/.
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
METHODS = ("hpsearch", "kt-hyperband", "kt-random", "kt-bayesian", "optuna-tpe-hb")
# The extra hpsearch variants: the flags each adds to `hpsearch run` with its defaults. Those raced before 2026-11-27
# hold lr_peak at 1, as the defaults trained then (a new study's default has been one learning-rate cycle since).
_COST = ["--cost-aware", "--sampler-option", "time_aware=false"]
_PUBLISHED = ["--set", "lr_peak=1"]
EXTRA_FLAGS = {"hpsearch-1w": ["--workers", "1", *_PUBLISHED], "hpsearch-2w": ["--workers", "2", *_PUBLISHED],
               "hpsearch-random": ["--sampler", "random", *_PUBLISHED],
               "hpsearch-s4": ["--sampler-option", "n_startup_trials=4", *_PUBLISHED],
               "hpsearch-uni": ["--sampler-option", "multivariate=false", *_PUBLISHED],
               "hpsearch-cost": [*_COST, *_PUBLISHED],
               "hpsearch-timed": ["--cost-aware", "--sampler-option", "time_aware=true", *_PUBLISHED],
               "hpsearch-nocost": ["--no-cost-aware", *_PUBLISHED],
               "hpsearch-b64": [*_COST, "--batch-size", "64", *_PUBLISHED],
               "hpsearch-1cycle": [*_COST, "--set", "lr_peak=3"],
               "hpsearch-bs": [*_COST, "--search-training", "batch_size", *_PUBLISHED],
               "hpsearch-shift": ["--set", "shift=0.1"],
               "hpsearch-peak5": ["--set", "lr_peak=5"]}
EXTRA_METHODS = tuple(EXTRA_FLAGS)
CHILD_METHODS = ("kt-hyperband", "kt-random", "kt-bayesian", "optuna-tpe-hb")
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

    return load_dataset(args.dataset, args.data_dir, args.train_size, 0.1, args.seed)


def _test_accuracy(model: Any, data: Any) -> float:
    probs = model.predict(data.x_test, batch_size=512, verbose=0)
    return float((probs.argmax(axis=1) == data.y_test).mean())


def child_keras_tuner(args: argparse.Namespace, kind: str) -> None:
    import keras_tuner

    from hpsearch.search.keras_tuner_engine import make_tuner
    from hpsearch.search.spec import StudySpec

    data = _data(args)
    spec = StudySpec(study=f"race-{kind}-{args.seed}", model="cnn", dataset=args.dataset, seed=args.seed,
                     epochs=args.epochs, trials=100_000, train_size=args.train_size, lr_peak=1.0)
    # KerasTuner as users run it: validation on the moving BatchNorm statistics (no precise BN), the published
    # training (no learning-rate cycle).
    tuner = make_tuner(kind, spec, data, Path(args.workdir) / "kt", overwrite=True, precise_bn_samples=0)
    if kind == "hyperband":
        # KerasTuner's Hyperband stops after `hyperband_iterations` (default 1) rounds of brackets: with 3 epochs
        # that is a few minutes. A user with a time budget runs rounds until it is spent.
        tuner.oracle.hyperband_iterations = 10**6
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
    """Plain Optuna as the Optuna docs show it for Keras: TPE + HyperbandPruner, a reporting callback that raises
    TrialPruned, an in-memory study."""
    import keras
    import optuna

    from hpsearch.models._common import make_optimizer
    from hpsearch.models.cnn import FILTERS_RANGE, UNITS_RANGE, cnn
    from hpsearch.search.training import standard_callbacks

    data = _data(args)
    log = EventLog(Path(args.events))
    config = type("Config", (), {"patience": 3, "lr_factor": 0.2, "lr_patience": 2, "lr_peak": 1.0})()

    class Pruning(keras.callbacks.Callback):
        def __init__(self, trial: optuna.trial.Trial) -> None:
            super().__init__()
            self.trial = trial

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.trial.report(float((logs or {})["val_accuracy"]), step=epoch + 1)
            if self.trial.should_prune():
                raise optuna.TrialPruned()

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
        try:
            history = model.fit(data.x_train, data.y_train, batch_size=128, epochs=args.epochs,
                                validation_data=(data.x_val, data.y_val), verbose=0,
                                callbacks=[Pruning(trial), *standard_callbacks(config)])
        except optuna.TrialPruned:
            log.write("PRUNED", None)
            raise
        value = max(history.history["val_accuracy"])
        log.write("COMPLETE", value, _test_accuracy(model, data) if log.is_new_best(value) else None)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.epochs, reduction_factor=3)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=pruner)
    study.optimize(objective, n_trials=100_000)


def child_main(args: argparse.Namespace) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT))
    if args.child == "optuna-tpe-hb":
        child_optuna(args)
    else:
        child_keras_tuner(args, args.child.removeprefix("kt-"))


# ---------------------------------------------------------------------------------------------- parent side
def _command(method: str, seed: int, args: argparse.Namespace, workdir: Path, events: Path) -> list[str]:
    if method.startswith("hpsearch"):
        return [str(Path(sys.executable).parent / "hpsearch"), "run", "--study", f"race-{seed}", "--model", "cnn",
                "--dataset", args.dataset, "--data-dir", args.data_dir, "--train-size", str(args.train_size),
                "--epochs", str(args.epochs), "--seed", str(seed),  # no --trials: the time is the budget
                "--timeout", str(args.budget), *EXTRA_FLAGS.get(method, []),
                "--storage", f"sqlite:///{workdir / 'race.db'}", "--quiet"]
    return [sys.executable, __file__, "--child", method, "--seed", str(seed), "--dataset", args.dataset,
            "--data-dir", args.data_dir, "--train-size", str(args.train_size), "--epochs", str(args.epochs),
            "--workdir", str(workdir), "--events", str(events)]


def _hpsearch_events(workdir: Path, seed: int, t0: float, events: Path) -> dict[str, Any]:
    """Writes the finished trials of an `hpsearch` method's study as events.

    Args:
        workdir: the run's scratch directory, which holds the study's SQLite file.
        seed: the race seed (the study is `race-SEED`).
        t0: the run's start (epoch seconds); event times are seconds after it.
        events: the JSON-lines file to write.

    Returns:
        `{"lr_peak": P}`, the learning-rate peak the trials held fixed (benchmarks/race_grid.py names a run of the
        defaults by it), or `{}` when no trial recorded one or they differ.
    """
    import optuna

    from hpsearch.search.results import recorded_fixed

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=f"race-{seed}", storage=f"sqlite:///{workdir / 'race.db'}")
    rows, peaks = [], set()
    for t in study.get_trials(deepcopy=False):
        fixed = recorded_fixed(t.user_attrs)
        if "lr_peak" in fixed:
            peaks.add(float(fixed["lr_peak"]))
        if t.datetime_complete is None:
            continue
        rows.append({"t": round(t.datetime_complete.timestamp() - t0, 2), "state": t.state.name,
                     "value": t.value, "test": t.user_attrs.get("test_accuracy"),
                     # where a trial's time goes (BENCHMARKS.md, "what a trial costs outside fit")
                     "start": round(t.datetime_start.timestamp() - t0, 2) if t.datetime_start else None,
                     "train_seconds": t.user_attrs.get("train_seconds"),
                     "test_seconds": t.user_attrs.get("test_seconds"), "params": t.params})
    rows.sort(key=lambda r: r["t"])
    events.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"lr_peak": peaks.pop()} if len(peaks) == 1 else {}


def run_method(method: str, seed: int, args: argparse.Namespace, out: Path) -> Path:
    """Runs one method for one seed, unless an earlier run finished that pair (its done marker)."""
    events = out / f"events-{method}-{seed}.jsonl"
    done = out / f"done-{method}-{seed}"
    if done.exists():
        return events
    workdir = Path(args.scratch) / f"{method}-{seed}"
    if workdir.exists():  # an interrupted run of this pair: start it again from nothing
        import shutil

        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
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
    trained = _hpsearch_events(workdir, seed, t0, events) if method.startswith("hpsearch") else {}
    done.write_text(json.dumps({"finished": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "budget": args.budget,
                                "load_average": os.getloadavg(), **trained}) + "\n")
    return events


LEVELS = (0.98, 0.985)  # time to these validation accuracies is reported (override with --levels)


def summarize(events: Path, budget: float, levels: tuple[float, ...] = LEVELS) -> dict[str, Any]:
    """Best validation, its test accuracy, trial counts and times to `levels`, from the trials ended by `budget`."""
    rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] if events.exists() else []
    rows = [r for r in rows if r["t"] <= budget]
    best, best_test, curve = None, None, []
    for r in rows:
        if r["state"] == "COMPLETE" and r["value"] is not None and (best is None or r["value"] > best):
            best, best_test = r["value"], r["test"]
            curve.append((r["t"], best))
    return {"best_val": best, "test_of_best": best_test, "curve": curve,
            "time_to": {f"{level:g}": next((t for t, v in curve if v >= level), None) for level in levels},
            "complete": sum(r["state"] == "COMPLETE" for r in rows),
            "pruned": sum(r["state"] == "PRUNED" for r in rows), "failed": sum(r["state"] == "FAIL" for r in rows)}


def _median_spread(values: list[float | None], fmt: str, missing: str = "not reached") -> str:
    got = [v for v in values if v is not None]
    if not got:
        return missing
    if len(got) < len(values):
        return f"{len(got)} of {len(values)} seeds [{format(min(got), fmt)}-{format(max(got), fmt)}]"
    return f"{format(statistics.median(got), fmt)} [{format(min(got), fmt)}-{format(max(got), fmt)}]"


COLOURS = {"hpsearch": "tab:blue", "hpsearch-1w": "tab:cyan", "hpsearch-2w": "tab:olive", "kt-hyperband": "tab:red",
           "kt-random": "tab:orange",
           "kt-bayesian": "tab:purple", "optuna-tpe-hb": "tab:green", "hpsearch-random": "tab:gray",
           "hpsearch-s4": "tab:brown", "hpsearch-uni": "tab:pink", "hpsearch-cost": "black",
           "hpsearch-nocost": "darkgoldenrod", "hpsearch-timed": "crimson",
           "hpsearch-b64": "teal", "hpsearch-bs": "slateblue", "hpsearch-1cycle": "indigo",
           "hpsearch-shift": "magenta", "hpsearch-peak5": "deepskyblue"}


def plot(results: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = args.budget
    fig, ax = plt.subplots(figsize=(12, 5.5))
    styles = ("-", "--", ":", "-.")
    for method, by_seed in results.items():
        for i, (seed, s) in enumerate(sorted(by_seed.items())):
            if not s["curve"]:
                continue
            ts = [t / 60 for t, _ in s["curve"]] + [budget / 60]
            vs = [v for _, v in s["curve"]] + [s["curve"][-1][1]]
            ax.step(ts, vs, where="post", color=COLOURS.get(method), linestyle=styles[i % len(styles)],
                    label=f"{method} seed {seed}", linewidth=1.6)
    for at in args.report_at[:-1]:
        ax.axvline(at / 60, color="grey", linewidth=0.6, linestyle=":")
    values = [v for by_seed in results.values() for s in by_seed.values() for _, v in s["curve"]]
    high = min(1.0, max(values, default=max(args.levels)) + 0.003)
    finals = [s["curve"][-1][1] for by_seed in results.values() for s in by_seed.values() if s["curve"]]
    # lower values clip, but every run's final best shows, a method far behind too
    low = min(max(min(values, default=high - 0.05) - 0.002, high - 0.05), min(finals, default=high) - 0.005)
    ax.set_ylim(low, high)
    for level in (level for level in args.levels if low <= level <= high):  # a label outside would widen the figure
        ax.axhline(level, color="grey", linewidth=0.8)
        ax.text(0.1, level, f" {level:.1%}", va="bottom", color="grey")
    ax.set_xlim(0, budget / 60)
    ax.set_xlabel("minutes since the method started")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"Search race, {args.dataset} ({args.train_size} images, up to {args.epochs} epochs), same 2 cores")
    ax.grid(alpha=0.3)
    # beside the axes, where it covers no curve (inside, it hid the lowest runs)
    ax.legend(fontsize=7, ncol=1 + len(finals) // 16, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(events: dict[str, dict[int, Path]], args: argparse.Namespace) -> str:
    seeds = sorted({seed for by_seed in events.values() for seed in by_seed})
    lines = [f"{args.dataset}: {args.train_size} images (10% of them validation), up to {args.epochs} epochs per "
             f"trial, seeds {', '.join(map(str, seeds))}; each method alone on the machine for {args.budget:.0f} s "
             "per seed. Median [min-max] over seeds.", ""]
    for at in args.report_at:
        results = {m: {seed: summarize(path, at, args.levels) for seed, path in by_seed.items()}
                   for m, by_seed in events.items()}
        lines += [f"**At {at / 60:g} minutes**", "",
                  "| method | best validation | test accuracy of the best | "
                  + " | ".join(f"time to {level:.1%} (s)" for level in args.levels)
                  + " | complete | pruned | failed |", "|---|---|---|" + "---|" * len(args.levels) + "---|---|---|"]
        for method, by_seed in results.items():
            x = list(by_seed.values())
            lines.append(f"| {method} | {_median_spread([r['best_val'] for r in x], '.4f', 'none')} | "
                         f"{_median_spread([r['test_of_best'] for r in x], '.4f', 'none')} | "
                         + " | ".join(_median_spread([r["time_to"][f"{level:g}"] for r in x], ".0f")
                                      for level in args.levels)
                         + f" | {_median_spread([r['complete'] for r in x], '.0f', '0')} | "
                         f"{_median_spread([r['pruned'] for r in x], '.0f', '0')} | "
                         f"{_median_spread([r['failed'] for r in x], '.0f', '0')} |")
        lines.append("")
    final = {m: {seed: summarize(path, args.budget, args.levels) for seed, path in by_seed.items()}
             for m, by_seed in events.items()}
    lines += [f"Per seed at {args.budget / 60:g} minutes (best validation / test of best / complete / pruned):", ""]
    for method, by_seed in final.items():
        cells = [f"seed {seed}: {_cell(x['best_val'])} / "
                 f"{x['test_of_best'] if x['test_of_best'] is not None else '-'} / {x['complete']} / {x['pruned']}"
                 for seed, x in sorted(by_seed.items())]
        lines.append(f"- {method}: " + "; ".join(cells))
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    parser.add_argument("--data-dir", help="the dataset's files (default: ../shared/datasets/mnist for mnist, "
                        "hpsearch's own search path for fashion-mnist)")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds per method and seed")
    parser.add_argument("--report-at", type=_floats, help="budgets (s) to report, from the same runs "
                        "(default: 300, 900 and 1800 where they fit in --budget, and --budget)")
    parser.add_argument("--levels", type=_floats, default=LEVELS, help="validation accuracies to time")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "race"),
                        help="results go to OUT/<dataset>-<train size>-e<epochs>-b<budget>/ (committed, so later "
                        "runs resume); the methods' working files to benchmarks/out/race-work/")
    parser.add_argument("--report-only", action="store_true", help="run nothing: report the pairs already done")
    parser.add_argument("--child", choices=CHILD_METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--events", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.data_dir is None and args.dataset == "mnist":
        args.data_dir = str(ROOT.parent / "shared" / "datasets" / "mnist")
    if args.child:
        child_main(args)
        return
    if args.data_dir is not None:
        args.data_dir = str(Path(args.data_dir).resolve())  # the methods run with their own working directories
    if args.report_at is None:
        args.report_at = tuple(sorted({b for b in (300.0, 900.0, 1800.0) if b < args.budget} | {args.budget}))
    args.report_at = tuple(sorted(b for b in args.report_at if b <= args.budget))
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS) - set(EXTRA_METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS + EXTRA_METHODS)}")
    setting = f"{args.dataset}-{args.train_size}-e{args.epochs}-b{args.budget:.0f}"
    out = Path(args.out).resolve() / setting
    out.mkdir(parents=True, exist_ok=True)
    args.scratch = str(ROOT / "benchmarks" / "out" / "race-work" / setting)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.time()
    for seed in seeds if not args.report_only else []:
        for method in methods:
            if (out / f"done-{method}-{seed}").exists():
                continue
            print(f"[{time.time() - started:6.0f}s] seed {seed}: {method} for {args.budget:.0f}s", file=sys.stderr,
                  flush=True)
            s = summarize(run_method(method, seed, args, out), args.budget, args.levels)
            print(f"          best val {s['best_val']}, test {s['test_of_best']}, {s['complete']} complete / "
                  f"{s['pruned']} pruned / {s['failed']} failed", file=sys.stderr, flush=True)
    events = {m: {seed: out / f"events-{m}-{seed}.jsonl" for seed in seeds if (out / f"done-{m}-{seed}").exists()}
              for m in methods}
    events = {m: by_seed for m, by_seed in events.items() if by_seed}
    final = {m: {seed: summarize(path, args.budget, args.levels) for seed, path in by_seed.items()}
             for m, by_seed in events.items()}
    (out / "race.json").write_text(json.dumps({"args": vars(args), "results": final}, indent=1))
    plot(final, args, out / "race.png")
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}\n")
    print(report(events, args))
    print(f"\nPlot: {out / 'race.png'}")


if __name__ == "__main__":
    main()
