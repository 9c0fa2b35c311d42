"""Hundreds of workers on one database: `hpsearch proxy` (Optuna's gRPC storage proxy) vs direct PostgreSQL.

For 16 and 64 worker processes of a cheap objective (hpsearch's worker loop, x**2) sharing one study's budget
(10 trials per worker), once with every worker on PostgreSQL directly and once through one `hpsearch proxy` on
loopback: the most server connections held at once (pg_stat_activity, sampled every 0.1 s), the connections
opened in all (pg_stat_database.sessions), trials per second,
COMPLETE trials against the budget, surplus trials (FAIL, never run) and errors. One after the other, same
server, same machine.

Run: .venv/bin/python benchmarks/proxy.py [--workers 16,64] [--per-worker 10]
It starts its own PostgreSQL server (tests/postgres.py); results as Markdown on stdout and in
benchmarks/results/proxy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from storage import load_run  # noqa: E402  (benchmarks/storage.py: the same worker loop and objective)


class ConnectionWatch:
    """The most connections the server held to one database, sampled every 0.1 s on a connection of its own."""

    def __init__(self, url: str) -> None:
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import sqlalchemy

        with self.engine.connect() as connection:
            query = sqlalchemy.text("SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()")
            while not self._stop.wait(0.1):
                self.most = max(self.most, int(connection.execute(query).scalar()))
                connection.rollback()  # a transaction sees one snapshot of the statistics: end it for a fresh one

    def sessions(self) -> int:
        """Connections ever opened to the database (PostgreSQL 14+)."""
        import sqlalchemy

        with self.engine.connect() as connection:
            return int(connection.execute(sqlalchemy.text(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()")).scalar())

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()


def start_proxy(url: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch", "proxy", "--storage", url, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = proc.stdout.readline()
    if f":{port}" not in line:
        raise SystemExit(f"the proxy did not start: {line}")
    from hpsearch.errors import HpsearchError
    from hpsearch.storage.proxy import open_proxy

    for _ in range(150):
        try:
            open_proxy(f"grpc://127.0.0.1:{port}")
            return proc
        except HpsearchError:
            time.sleep(0.2)
    raise SystemExit("the proxy did not answer")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="16,64")
    parser.add_argument("--per-worker", type=int, default=10)
    args = parser.parse_args()
    import optuna

    from tests.postgres import PostgresServer, free_port

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    server = PostgresServer().start()
    rows = []
    try:
        print(f"machine: {platform.platform()}, {os.cpu_count()} cores, optuna {optuna.__version__}\n")
        print("| workers | via | budget | COMPLETE | surplus FAIL | RUNNING left | errors | most connections | "
              "connections opened | seconds | trials/s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for workers in (int(w) for w in args.workers.split(",")):
            for via in ("direct", "proxy"):
                url = server.create_database()
                budget = workers * args.per_worker
                port = free_port()
                proxy = start_proxy(url, port) if via == "proxy" else None
                worker_url = f"grpc://127.0.0.1:{port}" if proxy else None
                try:
                    with ConnectionWatch(url) as watch:
                        before = watch.sessions()
                        r = load_run(url, workers, budget, f"{via}{workers}", worker_url=worker_url)
                        opened = watch.sessions() - before - 1  # less the count's own connection
                finally:
                    if proxy:
                        proxy.terminate()
                        proxy.wait(timeout=30)
                r.update(via=via, budget=budget, most_connections=watch.most, connections_opened=opened)
                rows.append(r)
                print(f"| {workers} | {via} | {budget} | {r['complete']} | {r['other'] - r['running']} | "
                      f"{r['running']} | {r['errors']} | {watch.most} | {opened} | {r['seconds']:.1f} | "
                      f"{r['tps']:.1f} |",
                      flush=True)
                if r["fail_reasons"]:
                    print(f"\nFAIL reasons ({via}, {workers}): "
                          + "; ".join(f"{n} x {reason}" for reason, n in r["fail_reasons"].items()) + "\n")
                if r["first_error"]:
                    print(f"\nfirst error ({via}, {workers}): {r['first_error']}\n")
    finally:
        server.stop()
    out = ROOT / "benchmarks" / "results" / "proxy.json"
    out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
