"""What a trial costs beyond `model.fit`, how fast workers train, and which speed levers win on this CPU.

1. Overhead: the same fixed configuration (the published CNN: 128/192/256, Adam 1e-3) trained by `model.fit` alone
   and as an hpsearch trial (SQLite storage, report callback, early stopping, artifacts, test evaluation),
   alternating, --repeat times each. Wall-time ratio.
2. Throughput: images per second of the trial's `fit` vs plain `fit` (from the same runs); aggregate images per
   second of `hpsearch run` with 1 worker x 2 threads and 2 workers x 1 thread (and, to show why the threads are
   split, 2 workers x 2 threads), each training --throughput-trials trials of the same configuration.
3. Speed levers: plain `fit` of the same model with tf.data caching/prefetching, XLA `jit_compile`, batch 256
   with the learning rate doubled, and the `mixed_bfloat16` policy; seconds per epoch (from epoch 2, after
   tracing) and validation accuracy after the same epochs.

Run: .venv/bin/python benchmarks/trial_cost.py --data-dir ../shared/datasets/mnist [--train-size 20000]
     [--epochs 2] [--repeat 3] [--parts overhead,throughput,levers]
Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PARAMS = {"filters_1": 128, "filters_2": 192, "units": 256, "optimizer": "adam", "learning_rate": 1e-3}


class EpochTimer:
    """Seconds of each epoch, as a Keras callback."""

    def __new__(cls) -> Any:
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []
                self._t = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._t = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.seconds.append(time.perf_counter() - self._t)

        return _Timer()


def plain_fit(data: Any, epochs: int, batch_size: int = 128, learning_rate: float = 1e-3, jit: bool | str = "auto",
              tf_data: bool = False, seed: int = 0, policy: str = "float32") -> dict[str, Any]:
    import keras

    from hpsearch.models._common import make_optimizer
    from hpsearch.models.cnn import cnn

    keras.backend.clear_session()  # resets Keras's global state, the dtype policy included: set it afterwards
    keras.mixed_precision.set_dtype_policy(policy)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = cnn(data.input_shape, data.num_classes, PARAMS["filters_1"], PARAMS["filters_2"], PARAMS["units"])
    model.compile(optimizer=make_optimizer("adam", learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit)
    timer = EpochTimer()
    if tf_data:
        import tensorflow as tf

        train = (tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)).cache()
                 .shuffle(len(data.x_train), seed=seed).batch(batch_size).prefetch(tf.data.AUTOTUNE))
        val = tf.data.Dataset.from_tensor_slices((data.x_val, data.y_val)).batch(512).cache().prefetch(
            tf.data.AUTOTUNE)
        fit_start = time.perf_counter()
        history = model.fit(train, epochs=epochs, validation_data=val, verbose=0, callbacks=[timer])
    else:
        fit_start = time.perf_counter()
        history = model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs,
                            validation_data=(data.x_val, data.y_val), verbose=0, callbacks=[timer])
    end = time.perf_counter()
    keras.mixed_precision.set_dtype_policy("float32")
    fit_seconds = end - fit_start
    return {"wall": end - start, "fit_seconds": fit_seconds, "epoch_seconds": timer.seconds,
            "images_per_second": epochs * len(data.x_train) / fit_seconds,
            "val_accuracy": float(history.history["val_accuracy"][-1])}


def hpsearch_trial(data: Any, epochs: int, workdir: Path, index: int) -> dict[str, Any]:
    import optuna

    from hpsearch.search.objective import Objective
    from hpsearch.search.spec import StudySpec
    from hpsearch.search.worker import run_trials
    from hpsearch.storage import open_storage
    from hpsearch.storage.artifacts import open_artifact_store

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{workdir / f'overhead-{index}.db'}"
    spec = StudySpec(study="overhead", model="cnn", dataset="mnist", epochs=epochs, trials=1, pruner="none",
                     train_size=len(data.x_train) + len(data.x_val), lr_peak=1.0)  # the plain fit's training
    start = time.perf_counter()
    storage = open_storage(url)
    from hpsearch.search.launcher import create_or_resume

    study = create_or_resume(spec, storage)
    study.enqueue_trial(PARAMS)
    objective = Objective(spec, open_artifact_store(workdir / f"artifacts-{index}"), data=data)
    run_trials(study, 1, objective)
    end = time.perf_counter()
    trial = study.trials[0]
    if trial.state.name != "COMPLETE":
        raise RuntimeError(f"the benchmark trial ended {trial.state.name}: {trial.user_attrs}")
    return {"wall": end - start, "fit_seconds": trial.user_attrs["train_seconds"],
            "test_seconds": trial.user_attrs.get("test_seconds", 0.0),
            "images_per_second": trial.user_attrs["images_per_second"], "val_accuracy": trial.value}


def overhead(data: Any, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    plain, trial = [], []
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp:
        plain_fit(data, 1)  # warm-up: first TensorFlow graph building in this process
        for i in range(args.repeat):
            plain.append(plain_fit(data, args.epochs))
            trial.append(hpsearch_trial(data, args.epochs, Path(tmp), i))
            print(f"  overhead {i + 1}/{args.repeat}: fit {plain[-1]['wall']:.1f}s, trial {trial[-1]['wall']:.1f}s",
                  file=sys.stderr, flush=True)
    med = {k: statistics.median(r["wall"] for r in runs) for k, runs in (("plain", plain), ("trial", trial))}
    ips = {k: statistics.median(r["images_per_second"] for r in runs) for k, runs in (("plain", plain),
                                                                                       ("trial", trial))}
    walls = {k: ", ".join(f"{r['wall']:.1f}" for r in runs) for k, runs in (("plain", plain), ("trial", trial))}
    lines = [f"Fixed configuration {json.dumps(PARAMS)}, {len(data.x_train)} training images, {args.epochs} "
             f"epochs, batch 128; median of {args.repeat} alternating runs (all runs: plain {walls['plain']} s; "
             f"trial {walls['trial']} s).",
             "", "| | wall seconds (build + fit + the rest) | images/s during fit | final validation accuracy |",
             "|---|---|---|---|",
             f"| `model.fit` alone | {med['plain']:.1f} | {ips['plain']:.0f} | "
             f"{statistics.median(r['val_accuracy'] for r in plain):.4f} |",
             f"| hpsearch trial | {med['trial']:.1f} | {ips['trial']:.0f} | "
             f"{statistics.median(r['val_accuracy'] for r in trial):.4f} |",
             f"| ratio trial / fit | **{med['trial'] / med['plain']:.3f}** | **{ips['trial'] / ips['plain']:.3f}** | |",
             "", "Where the trial's extra seconds go (medians): training inside the trial "
             f"{statistics.median(r['fit_seconds'] for r in trial):.1f} s vs plain "
             f"{statistics.median(r['fit_seconds'] for r in plain):.1f} s; test-set evaluation "
             f"{statistics.median(r['test_seconds'] for r in trial):.1f} s; the rest (storage, model build, "
             "artifacts) "
             f"{statistics.median(r['wall'] - r['fit_seconds'] - r['test_seconds'] for r in trial):.1f} s vs "
             f"{statistics.median(r['wall'] - r['fit_seconds'] for r in plain):.1f} s (model build) for plain."]
    return "\n".join(lines), {"plain": plain, "trial": trial}


def throughput(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    rows = []
    sets = [f"--set={k}={v}" for k, v in PARAMS.items()]
    for workers, threads in ((1, None), (2, None), (2, 2)):
        with tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'tp.db'}"
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            cmd = [str(Path(sys.executable).parent / "hpsearch"), "run", "--study", "tp", "--model", "cnn",
                   "--dataset", "mnist", "--data-dir", args.data_dir, "--train-size", str(args.train_size),
                   "--epochs", str(args.epochs), "--pruner", "none", "--trials", str(args.throughput_trials),
                   "--workers", str(workers), "--storage", url, "--quiet", "--format", "json", *sets,
                   *(["--threads", str(threads)] if threads else [])]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"hpsearch run failed: {proc.stderr[-2000:]}")
            import optuna

            trials = optuna.load_study(study_name="tp", storage=url).get_trials()
            images = sum(t.user_attrs["epochs_run"] * round(args.train_size * 0.9) for t in trials)
            fit_ips = [t.user_attrs["images_per_second"] for t in trials]
            first = min(t.datetime_start for t in trials)
            last = max(t.datetime_complete for t in trials)
            span = (last - first).total_seconds()
            rows.append({"workers": workers, "threads": threads or (2 // workers), "trials": len(trials),
                         "wall": wall, "span": span, "images": images, "aggregate": images / span,
                         "per_trial_fit": statistics.median(fit_ips)})
            print(f"  throughput {workers} worker(s) x {rows[-1]['threads']} thread(s): {wall:.0f}s, "
                  f"{images / span:.0f} images/s", file=sys.stderr, flush=True)
    base = rows[0]["aggregate"]
    lines = [f"`hpsearch run` of {args.throughput_trials} trials of the fixed configuration ({args.epochs} epochs on "
             f"{round(args.train_size * 0.9)} images). Aggregate = images trained / seconds from the first trial's "
             "start to the last trial's end (training, validation, test evaluation and artifacts included).", "",
             "| workers x threads | trials | seconds (first start to last end) | aggregate images/s | vs 1x2 | "
             "median images/s inside one trial's fit |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} x {r['threads']} | {r['trials']} | {r['span']:.0f} | {r['aggregate']:.0f} | "
                     f"{r['aggregate'] / base:.2f}x | {r['per_trial_fit']:.0f} |")
    return "\n".join(lines), {"rows": rows}


def levers(data: Any, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    variants: list[tuple[str, dict[str, Any]]] = [
        ("baseline: NumPy arrays, batch 128, float32", {}),
        ("tf.data cache + prefetch", {"tf_data": True}),
        ("XLA jit_compile=True", {"jit": True}),
        ("batch 256, learning rate x2", {"batch_size": 256, "learning_rate": 2e-3}),
        ("mixed_bfloat16 policy", {"policy": "mixed_bfloat16"}),
    ]
    chosen = [v for v in variants if any(v[0].startswith(w) for w in args.levers.split(","))]
    results = []
    plain_fit(data, 1)  # warm-up
    for name, kwargs in chosen:
        r = plain_fit(data, args.epochs, **kwargs)
        steady = statistics.median(r["epoch_seconds"][1:]) if len(r["epoch_seconds"]) > 1 else r["epoch_seconds"][0]
        results.append({"name": name, "first_epoch": r["epoch_seconds"][0], "steady_epoch": steady,
                        "val_accuracy": r["val_accuracy"]})
        print(f"  lever {name}: epoch {steady:.1f}s, val {r['val_accuracy']:.4f}", file=sys.stderr, flush=True)
    base = results[0]["steady_epoch"]
    lines = [f"Plain `fit` of the fixed configuration, {len(data.x_train)} training images, {args.epochs} epochs, "
             "one process with both cores.", "",
             "| lever | first epoch s (with tracing) | later epochs s | speed vs baseline | validation accuracy |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['first_epoch']:.1f} | {r['steady_epoch']:.1f} | "
                     f"{base / r['steady_epoch']:.2f}x | {r['val_accuracy']:.4f} |")
    return "\n".join(lines), {"levers": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--throughput-trials", type=int, default=4)
    parser.add_argument("--parts", default="overhead,throughput,levers")
    parser.add_argument("--levers", default="baseline,tf.data,XLA,batch,mixed",
                        help="which levers (name prefixes; the baseline is always worth keeping)")
    parser.add_argument("--json", help="also write the raw numbers here")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from hpsearch.datasets import load_dataset

    data = load_dataset("mnist", args.data_dir, args.train_size, 0.1, 0)
    parts = args.parts.split(",")
    raw: dict[str, Any] = {}
    print(f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}\n")
    for part, fn in (("overhead", lambda: overhead(data, args)), ("throughput", lambda: throughput(args)),
                     ("levers", lambda: levers(data, args))):
        if part in parts:
            text, raw[part] = fn()
            print(f"### {part}\n\n{text}\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
