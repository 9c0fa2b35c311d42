"""How long the read-only commands take on a large study, as a user runs them (a new process each time).

Builds a SQLite study of --trials trials (10 params and 10 intermediate values each, 80% COMPLETE, 20% PRUNED, a
spec as hpsearch stores it) once, then runs `hpsearch status|best|trials|studies` --repeat times each and reports
the median wall time of the whole command (interpreter start, imports, query, output).

Run: .venv/bin/python benchmarks/commands.py [--trials 20000] [--repeat 5]
Prints Markdown; writes benchmarks/results/commands.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"status": ["status", "--study", "big"], "best": ["best", "--study", "big"],
            "trials": ["trials", "--study", "big", "--limit", "10"], "studies": ["studies"]}


def build(url: str, n: int) -> float:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    study = optuna.create_study(study_name="big", storage=url, direction="maximize")
    study.set_user_attr("hpsearch_spec", {"study": "big", "model": "cnn", "dataset": "mnist-sample", "trials": n,
                                          "epochs": 10, "metric": "val_accuracy", "direction": "maximize"})
    dists = {f"p{i}": FloatDistribution(0, 1) for i in range(10)}
    batch = []
    for t in range(n):
        complete = t % 5 != 0
        batch.append(create_trial(state=TrialState.COMPLETE if complete else TrialState.PRUNED,
                                  value=(t % 997) / 997 if complete else None,
                                  params={k: ((t * 7 + i) % 101) / 101 for i, k in enumerate(dists)},
                                  distributions=dists,
                                  intermediate_values={s: (t % 89) / 89 for s in range(10)},
                                  user_attrs={"test_accuracy": 0.9}))
        if len(batch) == 1000:
            study.add_trials(batch)
            batch = []
    if batch:
        study.add_trials(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpsearch-commands-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'big.db'}"
        built = build(url, args.trials)
        print(f"  built {args.trials} trials in {built:.0f}s", file=sys.stderr, flush=True)
        rows = {}
        for name, argv in COMMANDS.items():
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                proc = subprocess.run([str(Path(sys.executable).parent / "hpsearch"), *argv, "--storage", url],
                                      capture_output=True, text=True, cwd=tmp)
                times.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise RuntimeError(f"{name}: {proc.stderr[-2000:]}")
            rows[name] = {"median_seconds": round(statistics.median(times), 3), "max_seconds": round(max(times), 3)}
            print(f"  {name}: {rows[name]}", file=sys.stderr, flush=True)
    out = ROOT / "benchmarks" / "results" / "commands.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"trials": args.trials, "repeat": args.repeat, "commands": rows}, indent=1) + "\n")
    print(f"| command ({args.trials:,}-trial SQLite study) | median s | max s |\n|---|---|---|")
    for name, r in rows.items():
        print(f"| `hpsearch {' '.join(COMMANDS[name])}` | {r['median_seconds']:.2f} | {r['max_seconds']:.2f} |")


if __name__ == "__main__":
    main()
