"""docker-compose.yml's structure, and the same topology run without Docker on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import ROOT, run_cli


def test_compose_file_structure() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "create", "worker", "dashboard"}
    create = services["create"]
    assert create["command"][:2] == ["hpsearch", "create"] and create["restart"] == "no"
    spec_file = ROOT / "studies" / create["command"][-1].split(":-")[1].rstrip("}")
    assert yaml.safe_load(spec_file.read_text())["study"] == services["worker"]["command"][-1].split(":-")[1][:-1]
    assert services["worker"]["depends_on"]["create"]["condition"] == "service_completed_successfully"
    pg = services["postgres"]
    assert "healthcheck" in pg and any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")  # from .env, not written here
    worker = services["worker"]
    assert worker["command"][:2] == ["hpsearch", "worker"] and worker["build"] == "."
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    storage = worker["environment"]["HPSEARCH_STORAGE"]
    assert storage.startswith("postgresql+psycopg://") and "${POSTGRES_PASSWORD" in storage
    assert "replicas" not in worker.get("deploy", {}) and "container_name" not in worker  # --scale worker=N works
    dashboard = services["dashboard"]
    assert dashboard["command"][:2] == ["hpsearch", "dashboard"]
    assert all(str(p).startswith("127.0.0.1:") for p in dashboard["ports"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("hpsearch", "models", "search", "storage"):
        assert f"COPY {package} ./{package}" in dockerfile
    text = "\n".join(line.split("#", 1)[0] for line in (ROOT / "docker-compose.yml").read_text().splitlines())
    assert "${POSTGRES_PASSWORD" in storage
    literal = re.sub(r"\$\{[^}]*\}", "", text)  # what is left once every ${VAR...} reference is taken out
    assert not re.findall(r"password\w*:[ \t]*\S+", literal, re.IGNORECASE)
    assert not re.findall(r"://[^:@/\s]*:[^@\s]+@", literal)  # no user:secret@ written in a URL


@pytest.mark.postgres
def test_compose_topology_without_docker(postgres_server, tmp_path: Path) -> None:
    """PostgreSQL + 3 `hpsearch worker` processes + the dashboard process, as docker-compose wires them."""
    from tests.postgres import free_port

    url = postgres_server.create_database()
    env = {**os.environ, "HPSEARCH_STORAGE": url, "HPSEARCH_ARTIFACTS": str(tmp_path / "artifacts"),
           "HPSEARCH_THREADS": "1"}
    n = 6
    created = run_cli("run", "--study", "topo", "--model", "resnet4", "--dataset", "mnist-sample", "--train-size",
                      "1000", "--epochs", "2", "--trials", "0", "--workers", "1", env=env, cwd=tmp_path)
    assert created.returncode == 2 and "trials must be an integer >= 1" in created.stderr  # a budget of 0 is refused
    from hpsearch.search.launcher import create_or_resume
    from hpsearch.search.spec import StudySpec
    from hpsearch.storage import open_storage

    create_or_resume(StudySpec(study="topo", model="resnet4", dataset="mnist-sample", train_size=1000, epochs=2,
                               trials=n), open_storage(url))
    port = free_port()
    dashboard = subprocess.Popen([sys.executable, "-m", "hpsearch", "dashboard", "--port", str(port)], env=env,
                                 cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [subprocess.Popen([sys.executable, "-m", "hpsearch", "worker", "--study", "topo"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for w in workers:
            _, err = w.communicate(timeout=900)
            assert w.returncode == 0, err[-2000:]
        study = optuna.load_study(study_name="topo", storage=url)
        trials = study.get_trials()
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(done) == n and not [t for t in trials if t.state == TrialState.RUNNING]
        assert len({t.user_attrs["worker"] for t in done}) >= 2
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    summaries = json.load(r)["study_summaries"]
                break
            except OSError:
                if time.time() > deadline or dashboard.poll() is not None:
                    raise
                time.sleep(0.5)
        assert [s["study_name"] for s in summaries] == ["topo"]
        board = run_cli("leaderboard", "--format", "json", env=env, cwd=tmp_path)
        assert json.loads(board.stdout)[0]["trial"] == study.best_trial.number
    finally:
        for p in [*workers, dashboard]:
            if p.poll() is None:
                p.kill()
        out = dashboard.communicate()[0] if dashboard.stdout else ""
    assert "postgres@" in out or "postgresql" in out  # the dashboard said which storage it serves (masked)
