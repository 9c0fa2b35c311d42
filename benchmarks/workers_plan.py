"""Both ends of `hpsearch run --workers auto`: few long trials and many cheap ones, auto vs the other split.

Each setting runs `hpsearch run` twice on the same fixed configuration (the published CNN, so every trial costs
the same whichever worker draws it; no pruning): once with `--workers auto` and once forcing the split auto did
not choose (1 x 2 <-> 2 x 1 on 2 cores), one after the other on a quiet machine. Reported: what auto chose and
why, wall seconds of the whole command, seconds to the first finished trial, and the ratio.

Run: .venv/bin/python benchmarks/workers_plan.py --data-dir ../shared/datasets/mnist
     [--settings few-long,many-cheap] [--out benchmarks/results/workers_plan.json]
Prints Markdown; writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"filters_1": 128, "filters_2": 192, "units": 256, "optimizer": "adam", "learning_rate": 1e-3}
# name: (trials, epochs, training images)
SETTINGS = {"few-long": (3, 3, 6000), "many-cheap": (12, 1, 1000)}


def run(data_dir: str, trials: int, epochs: int, train_size: int, workers: str) -> dict[str, Any]:
    import optuna

    with tempfile.TemporaryDirectory(prefix="hpsearch-plan-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'plan.db'}"
        cmd = [str(Path(sys.executable).parent / "hpsearch"), "run", "--study", "plan", "--model", "cnn",
               "--dataset", "mnist", "--data-dir", data_dir, "--train-size", str(train_size), "--epochs",
               str(epochs), "--pruner", "none", "--trials", str(trials), "--workers", workers, "--storage", url,
               *[f"--set={k}={v}" for k, v in PARAMS.items()]]
        start_wall = time.time()
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp,
                              env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"hpsearch run failed: {proc.stderr[-2000:]}{proc.stdout[-2000:]}")
        chosen = re.search(r"starting (\d+) worker\(s\) x (\d+) thread\(s\)", proc.stdout)
        reason = re.search(r"workers: \d+ x \d+ thread\(s\) \((.*?); --workers N", proc.stdout)
        trials_done = optuna.load_study(study_name="plan", storage=url).get_trials()
        first = min(t.datetime_complete.timestamp() for t in trials_done if t.datetime_complete)
    assert chosen, proc.stdout[-2000:]
    return {"workers": int(chosen.group(1)), "threads": int(chosen.group(2)),
            "reason": reason.group(1) if reason else "as asked", "wall": round(wall, 1),
            "first_result": round(first - start_wall, 1), "trials": len(trials_done)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "workers_plan.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    lines = ["| setting | split | chosen by | wall s | first result s | wall vs the other split |",
             "|---|---|---|---|---|---|"]
    for name in args.settings.split(","):
        trials, epochs, size = SETTINGS[name]
        auto = run(args.data_dir, trials, epochs, size, "auto")
        other = "2" if auto["workers"] == 1 else "1"
        forced = run(args.data_dir, trials, epochs, size, other)
        results[name] = {"trials": trials, "epochs": epochs, "train_size": size, "auto": auto, "forced": forced}
        label = f"{name} ({trials} trials x {epochs} epoch(s), {size} images)"
        for who, r, ref in ((auto["reason"], auto, forced), ("--workers " + other, forced, auto)):
            lines.append(f"| {label} | {r['workers']} x {r['threads']} | {who} | {r['wall']:.0f} | "
                         f"{r['first_result']:.0f} | {r['wall'] / ref['wall']:.2f}x |")
        print(f"  {name}: auto {auto['workers']}x{auto['threads']} {auto['wall']:.0f}s, forced "
              f"{forced['workers']}x{forced['threads']} {forced['wall']:.0f}s", file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
