"""Storage benchmarks, measured side by side in one run (results as Markdown on stdout).

1. Load: 16 worker processes share a 400-trial budget of a cheap objective on PostgreSQL (hpsearch's worker loop):
   COMPLETE count, distinct trial numbers, errors. Then trials per second for 1/4/16 workers on SQLite and PostgreSQL.
2. Queries: studies of 1,000 / 10,000 / 20,000 trials (10 params, 10 intermediate values each): `best` and top-10
   with hpsearch's SQL vs the plain Optuna way (`load_study().best_trial`, `trials_dataframe()` + sort).

Run: .venv/bin/python benchmarks/storage.py [--sizes 1000,10000,20000] [--load-trials 400]
It starts its own PostgreSQL server (tests/postgres.py) in a temporary directory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _worker(url: str, study_name: str, budget: int, seed: int, barrier, errors) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from hpsearch.search.worker import run_trials
    from hpsearch.storage import open_storage

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url),
                                  sampler=optuna.samplers.RandomSampler(seed=seed))
        barrier.wait()
        run_trials(study, budget, lambda t: t.suggest_float("x", -1, 1) ** 2, gc_after_trial=False)
    except Exception as exc:  # counted, reported
        errors.put(f"{type(exc).__name__}: {exc}")


def load_run(url: str, workers: int, budget: int, name: str, worker_url: str | None = None) -> dict:
    """`workers` processes share a `budget` of a cheap objective in a new study at `url`; they open `worker_url`
    (default: `url`; e.g. an `hpsearch proxy` in front of it). Trials end COMPLETE, or FAIL when surplus."""
    from hpsearch.storage import open_storage

    optuna.create_study(study_name=name, storage=open_storage(url))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    errors = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(worker_url or url, name, budget, i, barrier, errors))
             for i in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    errs = []
    while not errors.empty():
        errs.append(errors.get())
    errs += [f"exit code {p.exitcode}" for p in procs if p.exitcode != 0]
    numbers = sorted(t.number for t in trials)
    reasons = Counter(t.user_attrs.get("fail_reason", "no reason recorded").split(";")[0]
                      for t in trials if t.state == TrialState.FAIL)
    return {"workers": workers, "complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "other": sum(t.state != TrialState.COMPLETE for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "numbers_ok": numbers == list(range(len(trials))), "errors": len(errs), "seconds": seconds,
            "tps": budget / seconds, "first_error": errs[0] if errs else "",
            "fail_reasons": {_shape(r): n for r, n in reasons.items()}}


def _shape(reason: str) -> str:
    """A FAIL reason with its trial numbers taken out, so that reasons of one kind count together."""
    import re

    return re.sub(r"\b(trial|trials) \d+", r"\1 N", re.sub(r"its \d+ trials", "its N trials", reason))


DISTS = {f"p{i}": (IntDistribution(1, 512) if i % 3 == 0 else FloatDistribution(1e-5, 1.0, log=True) if i % 3 == 1
                   else CategoricalDistribution(["adam", "sgd", "rmsprop"])) for i in range(10)}


def fill(url: str, name: str, n: int) -> None:
    from hpsearch.storage import open_storage

    study = optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")
    rng = random.Random(n)
    batch = []
    for i in range(n):
        params = {k: (rng.randint(1, 512) if isinstance(d, IntDistribution) else
                      10 ** rng.uniform(-5, 0) if isinstance(d, FloatDistribution) else rng.choice(d.choices))
                  for k, d in DISTS.items()}
        state = TrialState.PRUNED if i % 5 == 4 else TrialState.COMPLETE
        curve = {s: rng.random() for s in range(1, 11)}
        batch.append(create_trial(state=state, value=curve[10], params=params, distributions=DISTS,
                                  intermediate_values=curve, user_attrs={"test_accuracy": rng.random()}))
        if len(batch) == 500:
            study.add_trials(batch)
            batch = []
    if batch:
        study.add_trials(batch)


# Optuna's per-trial tables, parents first. A study is copied row for row into a fresh database.
TRIAL_TABLES = ("trials", "trial_params", "trial_values", "trial_intermediate_values", "trial_user_attributes",
                "trial_system_attributes")


def fill_postgres(url: str, name: str, n: int, scratch: Path) -> None:
    """The same study as `fill`, in a fresh PostgreSQL database: made on SQLite through `add_trials` (seconds),
    then copied table by table in bulk (Optuna's `add_trials` on PostgreSQL makes one round trip per row and took
    more than 50 minutes for 20,000 trials here). The copy's rows are those `fill` writes, so the queries read the
    same data either way."""
    import sqlalchemy as sa

    from hpsearch.storage import open_storage

    source_url = f"sqlite:///{scratch / f'fill-{n}.db'}"
    fill(source_url, name, n)
    optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")  # tables, study 1
    source, target = sa.create_engine(source_url), sa.create_engine(url)
    src_meta, dst_meta = sa.MetaData(), sa.MetaData()
    src_meta.reflect(source, only=TRIAL_TABLES)
    dst_meta.reflect(target, only=TRIAL_TABLES)
    with source.connect() as read, target.begin() as write:
        (study_id,) = read.execute(sa.text("SELECT study_id FROM studies WHERE study_name = :n"), {"n": name}).one()
        (target_id,) = write.execute(sa.text("SELECT study_id FROM studies WHERE study_name = :n"), {"n": name}).one()
        assert study_id == target_id == 1, (study_id, target_id)  # both fresh: ids copy unchanged
        for table in TRIAL_TABLES:
            rows = [dict(r._mapping) for r in read.execute(src_meta.tables[table].select())]
            for start in range(0, len(rows), 5000):
                write.execute(dst_meta.tables[table].insert(), rows[start:start + 5000])
            key = next(iter(dst_meta.tables[table].primary_key.columns)).name
            write.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), "
                                  f"(SELECT COALESCE(MAX({key}), 1) FROM {table}))"))
    source.dispose()
    target.dispose()


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def query_bench(url: str, name: str, repeat: int) -> dict:
    from hpsearch.storage.queries import best, make_engine, top_trials

    engine = make_engine(url)

    def ours_best():
        best(engine, name)

    def ours_top():
        top_trials(engine, name, limit=10)

    def optuna_best():
        return optuna.load_study(study_name=name, storage=url).best_trial

    def optuna_top():
        df = optuna.load_study(study_name=name, storage=url).trials_dataframe()
        df[df.state == "COMPLETE"].sort_values("value", ascending=False).head(10)

    ours_top()  # warm the connection pool and the OS cache for both sides alike
    optuna_best()
    slow_repeat = max(1, repeat // 3)
    row = {"ours_best": timed(ours_best, repeat), "ours_top": timed(ours_top, repeat),
           "optuna_best": timed(optuna_best, slow_repeat), "optuna_top": timed(optuna_top, slow_repeat)}
    # Same answer both ways.
    top = [r.trial for r in top_trials(engine, name, limit=10)]
    df = optuna.load_study(study_name=name, storage=url).trials_dataframe()
    expected = df[df.state == "COMPLETE"].sort_values(["value", "number"], ascending=[False, True]).head(10)
    row["agree"] = top == expected.number.tolist()
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,20000")
    parser.add_argument("--load-trials", type=int, default=400)
    parser.add_argument("--tps-trials", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--only", choices=("load", "queries"), help="run one part only")
    parser.add_argument("--backends", default="sqlite,postgresql", help="backends of the query part")
    args = parser.parse_args()
    from tests.postgres import PostgresServer

    server = PostgresServer().start()
    tmp = Path(tempfile.mkdtemp(prefix="hpsearch-bench-"))
    os.chdir(tmp)
    try:
        print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"optuna {optuna.__version__}\n")
        if args.only != "queries":
            load_part(server, tmp, args)
        if args.only != "load":
            query_part(server, tmp, args)
    finally:
        server.stop()
    return 0


def load_part(server, tmp: Path, args: argparse.Namespace) -> None:
    print("### Load: 16 workers x 25 trials on PostgreSQL\n")
    r = load_run(server.create_database(), 16, args.load_trials, "load")
    print("| workers | budget | COMPLETE | other states | numbers 0..N-1 distinct | errors | seconds |")
    print("|---|---|---|---|---|---|---|")
    print(f"| 16 | {args.load_trials} | {r['complete']} | {r['other']} | {r['numbers_ok']} | {r['errors']} "
          f"| {r['seconds']:.1f} |")
    if r["first_error"]:
        print(f"\nfirst error: {r['first_error']}")
    print("\n### Trials per second (cheap objective, hpsearch worker loop)\n")
    print("| backend | workers | trials | COMPLETE | errors | seconds | trials/s |")
    print("|---|---|---|---|---|---|---|")
    for backend in ("sqlite", "postgresql"):
        for workers in (1, 4, 16):
            url = (f"sqlite:///{tmp / f'tps-{workers}.db'}" if backend == "sqlite" else server.create_database())
            r = load_run(url, workers, args.tps_trials, f"tps{workers}")
            print(f"| {backend} | {workers} | {args.tps_trials} | {r['complete']} | {r['errors']} | "
                  f"{r['seconds']:.1f} | {r['tps']:.1f} |", flush=True)


def query_part(server, tmp: Path, args: argparse.Namespace) -> None:
    print("\n### Queries (median of runs; ms)\n")
    print("| backend | trials | `best` hpsearch | `best_trial` Optuna | top-10 hpsearch | top-10 "
          "`trials_dataframe()` | top-10 speed-up | same answer |")
    print("|---|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            if backend == "sqlite":
                url = f"sqlite:///{tmp / f'q-{n}.db'}"
                fill(url, f"q{n}", n)
            else:
                url = server.create_database()
                fill_postgres(url, f"q{n}", n, tmp)
            q = query_bench(url, f"q{n}", args.repeat)
            print(f"| {backend} | {n:,} | {q['ours_best'] * 1000:.1f} | {q['optuna_best'] * 1000:.0f} | "
                  f"{q['ours_top'] * 1000:.1f} | {q['optuna_top'] * 1000:.0f} | "
                  f"{q['optuna_top'] / q['ours_top']:.0f}x | {q['agree']} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
