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
      race's CNN space, counting their cost, and the full garbage collection after them)
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
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
    the cost-aware sampler's work for one trial after its start-up (its cache empty)."""
    import gc
    import random
    import time

    from hpsearch.models import get_builder
    from hpsearch.search.adapter import as_build_function, values_hyperparameters
    from hpsearch.search.cost import model_cost

    build = as_build_function(get_builder("cnn", (28, 28, 1), 10))
    rng = random.Random(0)

    def draw() -> dict[str, int]:
        return {"filters_1": rng.choice(range(32, 257, 32)), "filters_2": rng.choice(range(32, 257, 32)),
                "units": rng.choice(range(64, 513, 64)), "epochs": 3}

    build(values_hyperparameters(draw()))  # the first build pays for imports and tracing
    print(f"| round | build {candidates} models, s | count their cost, s | full collection, s |")
    print("|---|---|---|---|")
    for n in range(1, rounds + 1):
        t0 = time.perf_counter()
        models = [build(values_hyperparameters(draw())) for _ in range(candidates)]
        t1 = time.perf_counter()
        for model in models:
            model_cost(model)
        t2 = time.perf_counter()
        del models
        gc.collect()
        t3 = time.perf_counter()
        print(f"| {n} | {t1 - t0:.2f} | {t2 - t1:.3f} | {t3 - t2:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help="LABEL=GLOB under benchmarks/results/race/")
    parser.add_argument("--builds", action="store_true", help="time the cost-aware sampler's model builds instead")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.builds:
        time_builds(args.rounds)
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
