"""The commands of examples/README.md, run as a user runs them: real data, real worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import run_cli

# Real processes or real training: `make test-slow` (integration) runs them.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def test_own_builder_file_on_fashion_mnist(tmp_path: Path) -> None:
    space = run_cli("models", str(ROOT / "examples" / "tiny_convnet.py") + ":build", "--format", "json", cwd=ROOT)
    assert space.returncode == 0, space.stderr[-2000:]
    names = {e["name"] for e in next(iter(json.loads(space.stdout).values()))["space"]}
    assert {"blocks", "filters_0", "units", "dropout", "optimizer", "learning_rate"} <= names
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    run = run_cli("run", "--storage", url, "--study", "tiny-fashion", "--model", "examples/tiny_convnet.py:build",
                  "--dataset", "fashion-mnist", "--train-size", "3000", "--trials", "3", "--epochs", "2",
                  "--workers", "2", "--enqueue-defaults", "--format", "json", cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    best = optuna.load_study(study_name="tiny-fashion", storage=url).best_trial
    assert best.value > 0.6 and best.user_attrs["test_accuracy"] > 0.6


@pytest.mark.slow
def test_resnet50_on_a_folder_of_photos_then_predict(tmp_path: Path) -> None:
    folder = tmp_path / "clothes"
    made = subprocess.run([sys.executable, str(ROOT / "examples" / "make_image_folder.py"), "--dataset",
                           "fashion-mnist", "--classes", "6", "--per-class", "60", "--size", "64", "--out",
                           str(folder)], capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    classes = sorted(d.name for d in folder.iterdir())
    assert classes == ["coat", "dress", "pullover", "sandal", "t-shirt", "trouser"]
    url = f"sqlite:///{tmp_path / 'clothes.db'}"
    run = run_cli("run", "--storage", url, "--study", "clothes", "--model", "resnet50", "--dataset",
                  f"images:{folder}", "--trials", "2", "--epochs", "2", "--workers", "1", "--pruner", "none",
                  "--format", "json", cwd=tmp_path, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="clothes", storage=url)
    assert study.best_trial.user_attrs["parameters"] > 20_000_000  # the real ResNet-50, on 64x64x3, 6 classes
    photos = sorted(str(p) for p in Path(f"{folder}-new").glob("*.png"))
    assert len(photos) == 18
    result = run_cli("predict", "--storage", url, "--study", "clothes", *photos, "--top", "3", "--format", "json",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout)
    assert len(answers) == 18 and all(a["class"] in classes and len(a["top"]) == 3 for a in answers)
    assert all([t["probability"] for t in a["top"]] == sorted((t["probability"] for t in a["top"]), reverse=True)
               and a["class"] == a["top"][0]["class"] for a in answers)
