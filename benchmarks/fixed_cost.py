"""What hpsearch trials cost outside `fit`, read off the search race's recorded events (no training here).

Each hpsearch run of `benchmarks/search_race.py` records, per finished trial, its start and end (seconds since the
method's process started), the seconds inside `fit` (`train_seconds`, precise BatchNorm included) and of the
test-set evaluation (`test_seconds`). From them, per group of runs:

  inside   the trial's span less `fit` and the test evaluation: sampling (a cost-aware sampler builds its
           candidates' models here), the study's reads and writes, artifacts, `clear_session`
  between  from one trial's end to the next one's start: `tell`, the study lock, and every `--recycle` trials the
           worker's fresh process (imports and data), which the "recycle" column shows apart

Run:  .venv/bin/python benchmarks/fixed_cost.py [LABEL=GLOB ...]
      (default: the committed runs with and without cost-aware sampling; GLOBs under benchmarks/results/race/)
      .venv/bin/python benchmarks/fixed_cost.py --builds [--rounds 3]
      (instead: what the cost-aware sampler spends per trial, timed here: building 24 random configurations of the
      race's CNN space, counting their cost, and the full garbage collection after them; then a trial's other two
      full collections; each with the start-up heap frozen and not)
      .venv/bin/python benchmarks/fixed_cost.py --rate 'mnist-24000-e3-b1800/events-hpsearch-cost-*.jsonl'
      (instead: each run's seconds of `fit` per unit of model cost over its completed trials: the machine's speed)
      .venv/bin/python benchmarks/fixed_cost.py --sampling [--trials 40] [--seeds 0,1] [--recycle 10]
      (instead: the cost-aware sampler's seconds and model builds per trial in a search of the race's CNN space
      whose trials train nothing (a made-up score of the configuration), its worker process replaced every
      `--recycle` trials as `hpsearch worker` does: every candidate built, the measured costs kept on the study,
      kept with the candidates that cannot win left unbuilt, and that with the survey of the space kept on the study
      too; the same configurations drawn, or not)
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RACES = ROOT / "benchmarks" / "results" / "race"
RECYCLE_GAP = 3.0  # seconds: a gap this long is a worker's fresh process, not the loop's own work
DEFAULT_GROUPS = {
    "cost-aware, MNIST 12,000, 15 min": "mnist-12000-e3-b900/events-hpsearch-cost-*.jsonl",
    "cost-aware, MNIST 12,000, 10 min": "mnist-12000-e3-b600/events-hpsearch-cost-*.jsonl",
    "cost-aware, Fashion 12,000, 10 min": "fashion-mnist-12000-e3-b600/events-hpsearch-cost-*.jsonl",
    "cost-aware, MNIST 24,000, 30 min": "mnist-24000-e3-b1800/events-hpsearch-cost-*.jsonl",
    "blind to cost, MNIST 12,000, 15 min": "mnist-12000-e3-b900/events-hpsearch-[0-9].jsonl",
    "blind to cost, MNIST 12,000, 10 min": "mnist-12000-e3-b600/events-hpsearch-[0-9].jsonl",
    "blind to cost, MNIST 24,000, 30 min": "mnist-24000-e3-b1800/events-hpsearch-[0-9].jsonl",
}


def spans(paths: list[Path]) -> dict[str, list[float]]:
    """Seconds per trial outside `fit` and the test evaluation (pruned / complete), between trials, of recycles
    and of test evaluations, over the runs in `paths`."""
    out: dict[str, list[float]] = {"pruned": [], "complete": [], "between": [], "recycle": [], "test": []}
    for path in paths:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = sorted((r for r in rows if r.get("start") is not None and r.get("train_seconds") is not None),
                      key=lambda r: r["start"])
        previous_end = None
        for r in rows:
            test = r.get("test_seconds") or 0.0
            if r["state"] in ("PRUNED", "COMPLETE"):
                out[r["state"].lower()].append(r["t"] - r["start"] - r["train_seconds"] - test)
            if test:
                out["test"].append(test)
            if previous_end is not None:
                gap = r["start"] - previous_end
                out["recycle" if gap >= RECYCLE_GAP else "between"].append(gap)
            previous_end = r["t"]
    return out


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}] ({len(values)})"


def time_builds(rounds: int, candidates: int = 24) -> None:
    """Seconds to build `candidates` CNN models of random configurations, to count their cost, and to collect them:
    the cost-aware sampler's work for one trial after its start-up (its cache empty); then the other two full
    collections a trial makes (`keras.backend.clear_session()` before it, Optuna's `gc_after_trial` after it, here
    with nothing left to free). Each round runs twice, with the heap as the imports and first build left it and
    with it frozen (`gc.freeze()`, as `hpsearch worker` does after its start), in alternating order."""
    import gc
    import random
    import time

    import keras

    from hpsearch.models import get_builder
    from hpsearch.search.adapter import as_build_function, values_hyperparameters
    from hpsearch.search.cost import model_cost

    build = as_build_function(get_builder("cnn", (28, 28, 1), 10))
    rng = random.Random(0)

    def draw() -> dict[str, int]:
        return {"filters_1": rng.choice(range(32, 257, 32)), "filters_2": rng.choice(range(32, 257, 32)),
                "units": rng.choice(range(64, 513, 64)), "epochs": 3}

    build(values_hyperparameters(draw()))  # the first build pays for imports and tracing
    gc.collect()
    print(f"| round | start-up heap frozen | objects a full collection walks | build {candidates} models, s | "
          "count their cost, s | collection after the builds, s | `clear_session`, s | collection after a trial, s |")
    print("|---|---|---|---|---|---|---|---|")
    for n in range(1, rounds + 1):
        for frozen in ((False, True) if n % 2 else (True, False)):
            if frozen:
                gc.freeze()
            tracked = len(gc.get_objects())
            t0 = time.perf_counter()
            models = [build(values_hyperparameters(draw())) for _ in range(candidates)]
            t1 = time.perf_counter()
            for model in models:
                model_cost(model)
            t2 = time.perf_counter()
            del models
            gc.collect()
            t3 = time.perf_counter()
            keras.backend.clear_session()
            t4 = time.perf_counter()
            gc.collect()
            t5 = time.perf_counter()
            gc.unfreeze()
            print(f"| {n} | {'yes' if frozen else 'no'} | {tracked} | {t1 - t0:.2f} | {t2 - t1:.3f} | {t3 - t2:.3f} | "
                  f"{t4 - t3:.3f} | {t5 - t4:.3f} |", flush=True)


def _made_up_score(params: dict, rng: random.Random) -> float:
    """Higher for larger models and a learning rate near 1e-3, with noise: enough for TPE to concentrate."""

    size = math.log(params["filters_1"] * params["filters_2"] * params["units"]) / math.log(256 * 256 * 512)
    rate = -abs(math.log10(params["learning_rate"]) + 3) / 3
    return 0.95 + 0.03 * size + 0.01 * rate + rng.gauss(0, 0.002)


def time_sampling(trials: int, seeds: list[int], recycle: int) -> None:
    """Per trial after the start-up: the seconds `ask` took (sampling, the cost-aware sampler's builds and its
    collection) and the models built, side by side per seed: every candidate built in each process, the costs kept
    on the study, those kept with the candidates that cannot win skipped, and that with the survey of the space
    kept on the study as well (today's default); and whether each drew the configurations the first drew."""
    import random
    import statistics
    import tempfile
    import time

    import optuna

    from hpsearch.models import get_builder
    from hpsearch.search.adapter import OptunaHyperParameters, as_build_function
    from hpsearch.search.cost import CostAwareTPESampler, attach_cost
    from hpsearch.search.spec import StudySpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    builder = get_builder("cnn", (28, 28, 1), 10)
    fixed = {"epochs": 3}
    spec = StudySpec(study="s", model="cnn", timeout=900, epochs=3)
    print("| seed | costs kept on the study | candidates that cannot win | survey kept on the study | trials after "
          "start-up | ask, s per trial | builds per trial | worker start (survey builds), s, median [min-max] | "
          "configurations as the first row's |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        first: list[dict] | None = None
        for shared, skip, survey in ((False, False, False), (True, False, False), (True, True, False),
                                     (True, True, True)):
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/s.db"
                optuna.create_study(study_name="s", storage=url, direction="maximize")
                rng = random.Random(seed)
                asks, builds, starts, drawn = [], [], [], []
                sampler = None
                for number in range(trials):
                    if number % recycle == 0:  # a fresh worker process: a new sampler and cost function
                        t0 = time.perf_counter()
                        sampler = spec.make_sampler(None, seed + number)
                        assert isinstance(sampler, CostAwareTPESampler)
                        sampler.share_costs, sampler.skip_hopeless = shared, skip
                        study = optuna.load_study(study_name="s", storage=url, sampler=sampler)
                        attach_cost(sampler, builder, fixed, study=study if survey else None)
                        starts.append(time.perf_counter() - t0)
                    before = sampler.cost.builds
                    t0 = time.perf_counter()
                    trial = study.ask()
                    model = as_build_function(builder)(OptunaHyperParameters(trial, fixed))  # samples the rest
                    elapsed = time.perf_counter() - t0
                    params = dict(trial.params)
                    drawn.append(params)
                    del model
                    if number >= spec.tpe_startup_trials():
                        asks.append(elapsed)
                        builds.append(sampler.cost.builds - before)
                    study.tell(trial, _made_up_score(params, rng))
                first = drawn if first is None else first
                same = sum(a == b for a, b in zip(drawn, first, strict=True))
                print(f"| {seed} | {'yes' if shared else 'no'} | {'skipped' if skip else 'built'} | "
                      f"{'yes' if survey else 'no'} | {len(asks)} | "
                      f"{statistics.median(asks):.2f} [{min(asks):.2f}-{max(asks):.2f}] | "
                      f"{statistics.mean(builds):.1f} | {statistics.median(starts):.2f} "
                      f"[{min(starts):.2f}-{max(starts):.2f}] | {same} of {len(drawn)} |", flush=True)


def machine_rate(pattern: str, epochs: int) -> None:
    """Per run: seconds `fit` took per unit of `model_cost` and epoch, over its completed trials (all `epochs`
    epochs: the races' epoch cap, which their early stopping cannot cut at patience 3). The CNN models are built
    here to count their cost; a run from another machine shows as another rate."""
    from hpsearch.models import get_builder
    from hpsearch.search.cost import ModelCost

    cost = ModelCost(get_builder("cnn", (28, 28, 1), 10), {"epochs": 1})
    print("| run | completed trials | s of `fit` per epoch per 10^9 units of cost per image, median [min-max] |")
    print("|---|---|---|")
    for path in sorted(RACES.glob(pattern)):
        rates = []
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            params = row.get("params") or {}
            if row.get("state") == "COMPLETE" and row.get("train_seconds") and "filters_1" in params:
                units = cost({k: params[k] for k in ("filters_1", "filters_2", "units")})
                if units:
                    rates.append(row["train_seconds"] / (units * epochs) * 1e9)
        if rates:
            print(f"| {path.relative_to(RACES)} | {len(rates)} | {statistics.median(rates):.1f} "
                  f"[{min(rates):.1f}-{max(rates):.1f}] |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help="LABEL=GLOB under benchmarks/results/race/")
    parser.add_argument("--builds", action="store_true", help="time the cost-aware sampler's model builds instead")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sampling", action="store_true",
                        help="time the cost-aware sampler per trial, with and without the study's cost cache")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--recycle", type=int, default=10)
    parser.add_argument("--rate", metavar="GLOB", help="instead: each run's seconds per unit of model cost, from the "
                        "completed trials of the events files GLOB matches under benchmarks/results/race/")
    parser.add_argument("--epochs", type=int, default=3, help="with --rate: the runs' epoch cap")
    args = parser.parse_args()
    if args.rate:
        machine_rate(args.rate, args.epochs)
        return
    if args.builds:
        time_builds(args.rounds)
        return
    if args.sampling:
        time_sampling(args.trials, [int(s) for s in args.seeds.split(",")], args.recycle)
        return
    groups = dict(g.split("=", 1) for g in args.groups) if args.groups else DEFAULT_GROUPS
    print("| runs | seeds | inside, pruned | inside, complete | between | recycle (every 10th gap) | test evaluation |")
    print("|---|---|---|---|---|---|---|")
    for label, pattern in groups.items():
        paths = sorted(RACES.glob(pattern))
        if not paths:
            print(f"| {label} | 0 (no runs match {pattern}) | | | | | |")
            continue
        s = spans(paths)
        print(f"| {label} | {len(paths)} | {cell(s['pruned'])} | {cell(s['complete'])} | {cell(s['between'])} | "
              f"{cell(s['recycle'])} | {cell(s['test'])} |")


if __name__ == "__main__":
    main()
