"""Which (setting, method, seed) runs of the search race exist, by their committed done markers.

Run:  .venv/bin/python benchmarks/race_grid.py [--methods hpsearch-cost,kt-hyperband,...]
Prints a Markdown table: one row per race setting (data set, images, epochs, budget: the directory names under
benchmarks/results/race/), one column per method, the seeds done in each cell.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RACES = ROOT / "benchmarks" / "results" / "race"
# The methods the grid names: hpsearch's default on a time budget (one learning-rate cycle a trial since
# 2026-11-27; hpsearch-cost, the default before, raced every row so far) and the four other tools.
GRID_METHODS = "hpsearch-1cycle,hpsearch-cost,kt-hyperband,kt-random,kt-bayesian,optuna-tpe-hb"
DONE = re.compile(r"^done-(?P<method>.+)-(?P<seed>\d+)$")


def seeds_done(setting: Path) -> dict[str, list[int]]:
    done: dict[str, list[int]] = {}
    for marker in setting.glob("done-*"):
        match = DONE.match(marker.name)
        if match:
            done.setdefault(match["method"], []).append(int(match["seed"]))
    return {method: sorted(seeds) for method, seeds in done.items()}


def describe(name: str) -> str:
    """`mnist-12000-e3-b900` -> `mnist, 12,000 images, 3 epochs, 15 min`."""
    match = re.match(r"^(?P<data>.+)-(?P<size>\d+)-e(?P<epochs>\d+)-b(?P<budget>\d+)$", name)
    if not match:
        return name
    minutes = int(match["budget"]) / 60
    return (f"{match['data']}, {int(match['size']):,} images, {match['epochs']} epochs, "
            f"{minutes:g} min (cut at the shorter budgets too)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=GRID_METHODS)
    methods = parser.parse_args().methods.split(",")
    print("| setting | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for setting in sorted(p for p in RACES.iterdir() if p.is_dir()):
        done = seeds_done(setting)
        cells = [", ".join(map(str, done[m])) if m in done else "-" for m in methods]
        print(f"| {describe(setting.name)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
