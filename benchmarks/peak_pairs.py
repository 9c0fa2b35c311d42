"""The same configuration trained at two learning-rate peaks: what the peak does, by sampled rate. From race events.

Run:  .venv/bin/python benchmarks/peak_pairs.py [--out benchmarks/results/peak_pairs.json]

A race seed draws the same first configurations whatever the peak, and a trial trains from the seed plus its
number, so two one-worker hpsearch runs of one setting and seed that drew the same configuration as the same trial
trained the same network from the same weights and images, differing only in the training's peak (the learning-rate
cycle's, `lr_peak`: 1 is the published training without a cycle). This pairs such completed trials across the
committed 10- and 5-minute races (MNIST and Fashion-MNIST, 12,000 images, 3 epochs; `RUNS` names which method of
which results directory trained which peak) and reports the validation difference per optimizer and sampled
learning rate. Runs of one peak on several machines give a control: the same trial at the same peak on two
machines (how far a machine moves a result). No training: it reads what the races measured.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETTING = re.compile(r"^(?P<data>.+)-(?P<size>\d+)-e3-b(?P<budget>\d+)$")

# (results directory, method as filed there, peak it trained). One worker each (hpsearch's default on a time
# budget since cost-aware sampling, 2026-11-26); `hpsearch` rows filed before 2026-11-29 trained the peak of 3.
RUNS = (
    ("race", "hpsearch-cost", 1.0),
    ("lr-cycle", "hpsearch-cost", 1.0),
    ("cycle-race", "hpsearch-cost", 1.0),
    ("batch-lever", "hpsearch-cost", 1.0),
    ("lr-cycle", "hpsearch-1cycle", 3.0),
    ("cycle-race", "hpsearch-1cycle", 3.0),
    ("cycle-race", "hpsearch", 3.0),
    ("shift-race", "hpsearch", 3.0),
    ("shift-seeds", "hpsearch", 3.0),
    ("kt-race", "hpsearch", 3.0),
    ("cycle15", "hpsearch", 3.0),
    ("peak-race", "hpsearch-1cycle", 3.0),
    ("peak-race", "hpsearch-peak5", 5.0),
    ("peak5-race", "hpsearch", 5.0),
)
# Sampled learning rates, grouped: (upper bound, label). The space draws 1e-4 to 1e-2 for every optimizer.
RATES = ((5e-4, "below 0.0005"), (2e-3, "0.0005-0.002"), (5e-3, "0.002-0.005"), (1.0, "0.005 and above"))
OPTIMIZERS = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD (momentum 0.9)"}


def trials() -> list[dict]:
    """Every completed trial of the runs in RUNS, with its run, trial number, peak and setting."""
    found = []
    for directory, method, peak in RUNS:
        for events in sorted((RESULTS / directory).glob(f"*/events-{method}-*.jsonl")):
            setting = SETTING.match(events.parent.name)
            seed = events.name.removeprefix(f"events-{method}-").removesuffix(".jsonl")
            if not setting or not seed.isdigit() or not (events.parent / f"done-{method}-{seed}").exists():
                continue
            rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
            rows.sort(key=lambda r: r["start"])  # one worker: trials start in their numbers' order
            for number, row in enumerate(rows):
                if row["state"] != "COMPLETE" or row["value"] is None or "params" not in row:
                    continue  # races before 2026-11-27 recorded no params
                found.append({"run": f"{directory}/{events.parent.name}/{method}-{seed}", "peak": peak,
                              "key": (setting["data"], setting["size"], int(seed), number,
                                      json.dumps(row["params"], sort_keys=True)),
                              "params": row["params"], "value": row["value"], "test": row.get("test")})
    return found


def pairs(found: list[dict]) -> tuple[list[dict], list[float]]:
    """Pairs of one trial at two peaks (lower first; a peak run on several machines counts once, at the mean of its
    results), and the control: |difference| between two runs of one trial at one peak."""
    by_key: dict[tuple, dict[float, list[dict]]] = {}
    for trial in found:
        by_key.setdefault(trial["key"], {}).setdefault(trial["peak"], []).append(trial)
    across, control = [], []
    for key, by_peak in by_key.items():
        for runs in by_peak.values():
            control += [abs(b["value"] - a["value"]) for a, b in itertools.combinations(runs, 2)]
        for low, high in itertools.combinations(sorted(by_peak), 2):
            a, b = by_peak[low], by_peak[high]
            across.append({"data": key[0], "params": a[0]["params"], "low_peak": low, "high_peak": high,
                           "low": _mean(a, "value"), "high": _mean(b, "value"),
                           "low_test": _mean(a, "test"), "high_test": _mean(b, "test"),
                           "gain": _mean(b, "value") - _mean(a, "value"),
                           "runs": [t["run"] for t in a + b]})
    return across, control


def _mean(runs: list[dict], field: str) -> float | None:
    values = [t[field] for t in runs if t[field] is not None]
    return statistics.fmean(values) if values else None


def rate_group(rate: float) -> str:
    return next(label for bound, label in RATES if rate < bound)


def table(across: list[dict], low: float, high: float) -> list[str]:
    """Markdown rows: the validation gain of `high` over `low` per optimizer and sampled rate (ties apart)."""
    rows = []
    chosen = [p for p in across if p["low_peak"] == low and p["high_peak"] == high]
    groups: dict[tuple[str, str], list[float]] = {}
    for pair in chosen:
        optimizer, rate = OPTIMIZERS[pair["params"]["optimizer"]], rate_group(pair["params"]["learning_rate"])
        groups.setdefault((optimizer, rate), []).append(pair["gain"])
    order = [label for _, label in RATES]
    for (optimizer, rate), gains in sorted(groups.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))):
        ahead, behind, median = sum(g > 0 for g in gains), sum(g < 0 for g in gains), statistics.median(gains)
        rows.append(f"| {low:g} -> {high:g} | {optimizer} | {rate} | {len(gains)} | {median * 100:+.2f} "
                    f"| {ahead} / {behind} | {min(gains) * 100:+.2f} to {max(gains) * 100:+.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "peak_pairs.json")
    args = parser.parse_args()
    found = trials()
    across, control = pairs(found)
    differing = sorted(d for d in control if d > 1e-6)
    print(f"{len(found)} completed trials in {len({t['run'] for t in found})} runs; {len(across)} trials at two peaks.")
    print(f"Control, one trial at one peak in two runs: {len(control)} pairs, {len(control) - len(differing)} equal "
          f"to the last digit; where they differ (runs on different machines: arithmetic differs by CPU) the "
          f"|difference| is {statistics.median(differing) * 100 if differing else 0:.2f} points at the median, "
          f"{differing[int(0.9 * len(differing))] * 100 if differing else 0:.2f} at the 90th percentile.\n")
    print("| peaks | optimizer | sampled rate | pairs | validation gain, median (points) | higher peak ahead / behind "
          "| range (points) |")
    print("|---|---|---|---|---|---|---|")
    for low, high in ((1.0, 3.0), (3.0, 5.0), (1.0, 5.0)):
        for row in table(across, low, high):
            print(row)
    args.out.write_text(json.dumps({"control": control, "pairs": across}, indent=1) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
