"""`hpsearch run --gpus all|0,1,...`: each worker gets its own GPU.

Worker i sees only GPU `gpus[i % len(gpus)]` (`CUDA_VISIBLE_DEVICES`, so the same respawned worker keeps its
device), with TensorFlow's memory growth on (`TF_FORCE_GPU_ALLOW_GROWTH`: a worker takes the memory it needs, not
the whole card). With GPUs, `--workers auto` starts one worker per GPU, and the CPU threads are shared among them
for the input pipeline. `all` asks `nvidia-smi` which GPUs there are; without any, a clear error.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from hpsearch.errors import UsageError

_ID = re.compile(r"^(\d+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-fA-F/-]+)$")


def detect_gpus() -> list[str] | None:
    """The indices of the NVIDIA GPUs `nvidia-smi` lists; None when nvidia-smi is not installed (or fails)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def parse_gpus(value: str | None) -> tuple[list[str] | None, str | None]:
    """(GPU ids, or None for none asked; a warning to print, or None).

    Raises:
        UsageError: `all` on a machine without GPUs, an empty list, or an id that is not a GPU index or UUID.
    """
    if value is None:
        return None, None
    found = detect_gpus()
    if value.strip().lower() == "all":
        if not found:
            why = "nvidia-smi is not installed" if found is None else "nvidia-smi lists none"
            raise UsageError(f"--gpus all: no NVIDIA GPU found ({why}); leave --gpus out to train on the CPU, or "
                             "name the devices, e.g. --gpus 0,1")
        return found, None
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids:
        raise UsageError("--gpus needs all or a comma-separated list of GPU indices, e.g. --gpus 0,1")
    bad = [i for i in ids if not _ID.match(i)]
    if bad:
        raise UsageError(f"--gpus: {bad[0]!r} is not a GPU index (0, 1, ...) or UUID (GPU-...)")
    if len(set(ids)) != len(ids):
        raise UsageError(f"--gpus: {value!r} names a GPU twice; list each once")
    if found is None:
        return ids, (f"nvidia-smi is not installed: GPUs {','.join(ids)} cannot be checked; a worker whose GPU "
                     "does not exist trains on the CPU")
    missing = [i for i in ids if i.isdigit() and i not in found]
    if missing:
        raise UsageError(f"--gpus: GPU {missing[0]} does not exist; nvidia-smi lists {', '.join(found) or 'none'}")
    return ids, None


def gpu_env(gpus: list[str] | None, index: int) -> dict[str, str]:
    """The environment that gives worker `index` its GPU (empty without GPUs)."""
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)], "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
