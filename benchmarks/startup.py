"""Seconds from `hpsearch run` to its first trial: the first worker started early (the default) or after the
launcher's checks (HPSEARCH_EARLY_START=0).

Each repeat runs the same one-trial search both ways, one after the other, the order swapped every repeat so
that a drift of the machine falls on both: the published CNN configuration (fixed, no pruning) for one epoch on
the race's 12,000 MNIST images, one worker. Reported per mode: seconds from the command's start to the trial's
start (what the launcher's checks, the worker's imports, its data loading and joining the study cost) and the
whole command's wall time, median [min-max] over the repeats.

Run: .venv/bin/python benchmarks/startup.py --data-dir ../shared/datasets/mnist [--repeats 5]
     [--out benchmarks/results/startup.json]
Prints Markdown; writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workers_plan import PARAMS  # the published CNN configuration, as the workers benchmark runs it

ROOT = Path(__file__).resolve().parents[1]
MODES = {"early start (default)": {}, "after the checks (HPSEARCH_EARLY_START=0)": {"HPSEARCH_EARLY_START": "0"}}


def run(data_dir: str, train_size: int, env: dict[str, str]) -> dict[str, float]:
    import optuna

    with tempfile.TemporaryDirectory(prefix="hpsearch-startup-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'startup.db'}"
        cmd = [str(Path(sys.executable).parent / "hpsearch"), "run", "--study", "startup", "--model", "cnn",
               "--dataset", "mnist", "--data-dir", data_dir, "--train-size", str(train_size), "--epochs", "1",
               "--pruner", "none", "--trials", "1", "--workers", "1", "--storage", url,
               *[f"--set={k}={v}" for k, v in PARAMS.items()]]
        start_wall = time.time()
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp,
                              env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200", **env})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"hpsearch run failed: {proc.stderr[-2000:]}{proc.stdout[-2000:]}")
        (trial,) = optuna.load_study(study_name="startup", storage=url).get_trials()
    return {"first_trial_start": round(trial.datetime_start.timestamp() - start_wall, 2), "wall": round(wall, 2)}


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--train-size", type=int, default=12000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup.json"))
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        order = list(MODES) if repeat % 2 == 0 else list(reversed(MODES))
        for mode in order:
            r = run(str(Path(args.data_dir).resolve()), args.train_size, MODES[mode])  # runs elsewhere
            results[mode].append(r)
            print(f"  repeat {repeat}: {mode}: first trial at {r['first_trial_start']:.1f}s, wall {r['wall']:.1f}s",
                  file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"train_size": args.train_size, "repeats": args.repeats,
                                          "params": PARAMS, "results": results}, indent=1) + "\n")
    late = statistics.median(r["first_trial_start"] for r in results[list(MODES)[1]])
    lines = ["| first worker | command start to first trial start, s | whole command, s | "
             "first trial vs after the checks |", "|---|---|---|---|"]
    for mode, runs in results.items():
        first = [r["first_trial_start"] for r in runs]
        lines.append(f"| {mode} | {_cell(first)} | {_cell([r['wall'] for r in runs])} | "
                     f"{statistics.median(first) / late:.2f}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
