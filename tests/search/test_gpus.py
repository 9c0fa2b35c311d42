"""`hpsearch run --gpus`: each worker its own device; without GPUs, a clear message (this machine has none)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from hpsearch.errors import UsageError
from hpsearch.search.gpus import gpu_env, parse_gpus
from tests.conftest import TINY_BUILDER, run_cli

no_nvidia = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")


@no_nvidia
def test_all_without_gpus_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"--gpus all: no NVIDIA GPU found \(nvidia-smi is not installed\); leave "
                                         "--gpus out to train on the CPU"):
        parse_gpus("all")


@no_nvidia
def test_named_gpus_are_taken_with_a_warning_when_they_cannot_be_checked() -> None:
    ids, warning = parse_gpus("0, 1")
    assert ids == ["0", "1"] and "cannot be checked" in warning
    assert parse_gpus(None) == (None, None)


@pytest.mark.parametrize(("value", "message"), [("", "comma-separated list"), ("0,x", "'x' is not a GPU index"),
                                                ("1,1", "names a GPU twice")])
def test_bad_gpu_lists(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_gpus(value)


def test_each_worker_gets_its_own_device_with_memory_growth() -> None:
    assert gpu_env(None, 0) == {}
    assert [gpu_env(["0", "1"], i)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == ["0", "1", "0", "1"]
    assert gpu_env(["3"], 0) == {"CUDA_VISIBLE_DEVICES": "3", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


@no_nvidia
@pytest.mark.integration
def test_run_gives_each_worker_its_gpu(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY_BUILDER)
    url = f"sqlite:///{tmp_path / 'gpu.db'}"
    result = run_cli("run", "--storage", url, "--study", "gpu", "--model", "tiny.py:build", "--dataset",
                     "mnist-sample", "--train-size", "500", "--epochs", "1", "--trials", "4", "--pruner", "none",
                     "--gpus", "0,1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting 2 worker(s) x" in result.stdout  # auto: one worker per GPU
    assert "cannot be checked" in result.stdout
    trials = optuna.load_study(study_name="gpu", storage=url).get_trials()
    assert {t.user_attrs["gpu"] for t in trials} == {"0", "1"}  # each worker saw only its device
    all_gpus = run_cli("run", "--storage", url, "--study", "gpu2", "--model", "tiny.py:build", "--gpus", "all",
                       cwd=tmp_path)
    assert all_gpus.returncode == 2 and "no NVIDIA GPU found" in all_gpus.stderr
