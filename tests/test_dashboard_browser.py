"""optuna-dashboard served by `hpsearch dashboard`, loaded in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000", "--virtual-time-budget=15000"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium on this machine: install Debian's chromium (.ci/run does)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("dash")
    result = run_cli("run", "--study", "dash-r4", "--model", "resnet4", "--dataset", "mnist-sample", "--train-size",
                     "1500", "--epochs", "2", "--trials", "3", "--workers", "2", "--pruner", "none", cwd=d)
    assert result.returncode == 0, result.stderr[-3000:]
    several = run_cli("run", "--study", "dash-mo", "--model", "resnet4", "--dataset", "mnist-sample", "--train-size",
                      "1500", "--epochs", "1", "--trials", "3", "--workers", "2", "--objective", "parameters",
                      cwd=d)
    assert several.returncode == 0, several.stderr[-3000:]
    from tests.postgres import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch", "dashboard", "--port", str(port)], cwd=d,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"the dashboard did not start: {proc.communicate()[0][-2000:]}")
            time.sleep(0.3)
    yield d, port
    proc.kill()
    proc.wait()


def render(url: str, user_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", *extra, url],
                          capture_output=True, text=True, timeout=120)


def test_dashboard_shows_study_best_value_and_params(served, tmp_path: Path) -> None:
    d, port = served
    study = optuna.load_study(study_name="dash-r4", storage=f"sqlite:///{d / 'hpsearch.db'}")
    best = study.best_trial
    summaries = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10))
    study_id = next(s["study_id"] for s in summaries["study_summaries"] if s["study_name"] == "dash-r4")
    home = render(f"http://127.0.0.1:{port}/dashboard", tmp_path / "p1", "--dump-dom")
    assert "dash-r4" in home.stdout, home.stderr[-2000:]
    page = render(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}", tmp_path / "p2", "--dump-dom")
    dom = page.stdout
    assert "dash-r4" in dom
    assert f"{best.value}" in dom or f"{best.value:.4g}" in dom or f"{best.value:.5f}".rstrip("0") in dom
    for name, value in best.params.items():
        assert name in dom
        if isinstance(value, str):
            assert value in dom
    note = render(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}/note", tmp_path / "p4", "--dump-dom")
    assert "best configurations" in note.stdout and "test accuracy" in note.stdout  # the note hpsearch keeps
    out = ROOT / "test-output" / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    shot = render(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}", tmp_path / "p3",
                  f"--screenshot={out / 'study.png'}")
    assert (out / "study.png").stat().st_size > 10_000, shot.stderr[-2000:]


def test_dashboard_binds_loopback_and_warns_elsewhere() -> None:
    from tests.postgres import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch", "dashboard", "--host", "0.0.0.0", "--port", str(port),
                             "--storage", "sqlite:///:memory:"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    out = proc.communicate(timeout=60)[0]  # it warns, then refuses the in-memory database and ends
    assert "no authentication" in out and "authenticating proxy" in out
    help_text = run_cli("dashboard", "--help").stdout
    assert "default 127.0.0.1" in help_text


def test_dashboard_names_every_objective(served, tmp_path: Path) -> None:
    d, port = served
    summaries = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10))
    ids = {s["study_name"]: s["study_id"] for s in summaries["study_summaries"]}
    for name, objectives in (("dash-r4", ["val_accuracy"]), ("dash-mo", ["val_accuracy", "parameters"])):
        page = render(f"http://127.0.0.1:{port}/dashboard/studies/{ids[name]}", tmp_path / name, "--dump-dom")
        assert name in page.stdout, page.stderr[-2000:]
        for objective in objectives:
            assert objective in page.stdout
        assert "Objective 0" not in page.stdout and "Objective 1" not in page.stdout
