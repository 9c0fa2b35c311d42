"""Precise BatchNorm: inference statistics recomputed from the current weights before each validation.

A BatchNormalization layer normalizes a training batch with that batch's statistics but a validation batch with
its moving averages, which trail the weights: with momentum 0.9 the average after 16 steps still holds 19% of
its initial value and mixes in every intermediate set of weights. A short trial therefore validates a network
whose normalization belongs to weights it no longer has: the seed CNN after one epoch on 2,000 MNIST images
validates at 10% with its moving statistics and at 81% once they are recomputed. Pruning on the former is noise.

Wu & Johnson's "precise BN" ("Rethinking 'Batch' in BatchNorm", 2021; detectron2's `update_bn_stats`) replaces the
moving averages with the average of the batch statistics over a sample of training images, computed in training
mode with the weights as they are now. Only Keras 3 API is used (layer attributes, `keras.ops`, `keras.tree`,
`Callback`; one private method, quarantined in `_all_layers`), so any backend can run it. Nothing but the moving
statistics changes: not the momenta, not the dropout layers' random streams, so training follows the same path
with or without it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_SAMPLES = 2048
# Per-batch variances average to the population variance times (1 - 1/n) for n values per channel: with 256
# images even a dense layer's variance is within 0.4%. Twice the usual training batch halves the eager (Python)
# layer calls per image.
DEFAULT_BATCH_SIZE = 256
DEFAULT_SEED = 0
# A training-mode forward pass over S images costs 0.35-0.5 x S/N of an epoch over N images on a 2-core CPU
# (measured with the seed CNN: eager calls, batch statistics and dropout masks over full-size activations), so
# inside `fit` the sample is bounded to a sixteenth of the training set: 2-3% of an epoch. 128 images are enough:
# after one epoch on 1,800 MNIST images the seed CNN, resnet-blocks and ResNet-50 validate within a point of a
# 2,048-image recompute from 128 images up (two sample seeds each, 3,000 test images).
MAX_FRACTION = 1 / 16
MIN_SAMPLES = 128


def batch_norm_layers(model: keras.Layer) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers whose moving statistics training updates, nested models' included.

    Frozen layers (`trainable=False`) are left out: Keras runs them in inference mode, so their statistics are
    meant to stay as they are (a fine-tuned pretrained base). Batch renormalization layers are left out too:
    they keep their own renorm statistics, which this method does not average.
    """
    return [layer for layer in _all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
            and not getattr(layer, "renorm", False)]


def sample_inputs(x: Any, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> Any:
    """A fixed, seeded sample of `samples` inputs (all of them when there are fewer), in their original order.

    Args:
        x: an array whose first axis indexes the examples, or a nested structure of such arrays (a multi-input
            model's inputs).
        samples: how many examples to keep.
        seed: the seed of the draw; the same seed returns the same examples.
    """
    count = len(keras.tree.flatten(x)[0])
    if samples >= count:
        return x
    # Sorted, so the copy reads the source array front to back. Images streamed from disk (image folders larger
    # than memory) stay on disk: indexing them selects files, and each recompute reads them batch by batch.
    index = np.sort(np.random.default_rng(seed).choice(count, size=samples, replace=False))
    return keras.tree.map_structure(lambda a: np.asarray(a)[index] if isinstance(a, np.ndarray) else a[index], x)


def bounded_sample_size(samples: int, train_size: int, max_fraction: float | None = MAX_FRACTION) -> int:
    """How many images a recompute inside `fit` averages over.

    Args:
        samples: the most images to use; 0 turns the recompute off.
        train_size: how many training images there are.
        max_fraction: the largest share of the training set to use, but never below `MIN_SAMPLES` images;
            None: no bound but `samples` and `train_size`.
    """
    if max_fraction is None:
        return min(samples, train_size)
    return min(samples, train_size, max(MIN_SAMPLES, int(max_fraction * train_size)))


def recompute_batch_norm_statistics(model: keras.Model, x: Any, samples: int = DEFAULT_SAMPLES,
                                    batch_size: int = DEFAULT_BATCH_SIZE, seed: int = DEFAULT_SEED) -> int:
    """Sets every BatchNormalization layer's moving mean and variance from the model's current weights.

    The model runs forward in training mode over a seeded sample of `x`, batch by batch, each layer's momentum
    set so that its moving statistics end as the example-weighted average of the batch statistics (momentum
    seen / (seen + batch) before a batch, in Keras's `moving * momentum + batch * (1 - momentum)`). The momenta
    are restored afterwards, and so are the states of the model's random generators (dropout), so training
    continues exactly as it would have without the recompute. The layers are called eagerly: a traced function
    would freeze the momentum of its first call.

    Args:
        model: the model to update in place; any Keras 3 model, nested models included.
        x: training inputs (an array, or the structure of arrays the model takes), never validation data.
        samples: how many examples of `x` to average over; 0 leaves the model untouched.
        batch_size: examples per forward pass.
        seed: seed of the sample, so the same weights always get the same statistics.

    Returns:
        The number of BatchNormalization layers updated (0: nothing to do, nothing was run).

    Raises:
        ValueError: `samples` is negative or `batch_size` is not positive.
    """
    _check(samples, batch_size)
    if samples == 0:
        return 0
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    _average_over(model, layers, sample_inputs(x, samples, seed), batch_size)
    return len(layers)


class PreciseBatchNorm(keras.callbacks.Callback):
    """Recomputes BatchNorm statistics right before each validation inside `model.fit`.

    Keras's fit loop validates through `evaluate(..., callbacks=callbacks)` after an epoch's last step and before
    `on_epoch_end`, so `on_test_begin` sees the epoch's final weights and every `on_epoch_end` (EarlyStopping's
    best-weights snapshot, a pruner's report) sees the recomputed statistics. The sample is drawn once.

    After `fit`, call `recompute_if_stale()`: it recomputes only when training steps ran since the last
    validation (an interrupted epoch), so the model that is tested or saved carries statistics of its weights.

    Args:
        x: the training inputs (an array, or the structure of arrays the model takes).
        samples: the most images to average over; 0 turns the callback into a no-op.
        batch_size: images per forward pass.
        seed: seed of the sample.
        max_fraction: bound on the sample as a share of `x` (see `bounded_sample_size`), so a recompute stays
            a small part of an epoch; None: use `samples` images whatever the training set's size.

    Attributes:
        samples: the images each recompute averages over, after the bound.
        seconds: the duration of each recompute, in order.
    """

    def __init__(self, x: Any, samples: int = DEFAULT_SAMPLES, batch_size: int = DEFAULT_BATCH_SIZE,
                 seed: int = DEFAULT_SEED, max_fraction: float | None = MAX_FRACTION) -> None:
        super().__init__()
        _check(samples, batch_size)
        self.samples = bounded_sample_size(samples, len(keras.tree.flatten(x)[0]), max_fraction)
        self.batch_size = batch_size
        self.seed = seed
        self.seconds: list[float] = []
        self._x = x
        self._sample: Any = None
        self._layers: list[keras.layers.BatchNormalization] | None = None
        self._stale = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._layers = batch_norm_layers(self.model) if self.samples else []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._stale = bool(self._layers)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.recompute()

    def recompute(self) -> None:
        """Recomputes the statistics now (a no-op for a model without BatchNormalization)."""
        if self._layers is None:  # used outside fit, e.g. model.evaluate(..., callbacks=[this])
            self._layers = batch_norm_layers(self.model) if self.samples else []
        if not self._layers:
            return
        if self._sample is None:
            self._sample = sample_inputs(self._x, self.samples, self.seed)
            self._x = None  # the sample is all that is needed; do not keep the training set alive
        start = time.perf_counter()
        _average_over(self.model, self._layers, self._sample, self.batch_size)
        self.seconds.append(time.perf_counter() - start)
        self._stale = False

    def recompute_if_stale(self) -> bool:
        """Recomputes when training steps ran since the last recompute; returns whether it did."""
        if not self._stale:
            return False
        self.recompute()
        return True


# ------------------------------------------------------------------------------------------------- internals
def _check(samples: int, batch_size: int) -> None:
    if samples < 0 or batch_size < 1:
        raise ValueError(f"precise BN needs samples >= 0 and batch_size >= 1, got samples={samples} and "
                         f"batch_size={batch_size}; pass samples=0 to turn it off")


def _all_layers(model: keras.Layer) -> list[keras.Layer]:
    # Keras 3 has no public recursive walk: `Model.layers` lists direct children only, and a custom layer that
    # holds sub-layers as attributes exposes none. `_flatten_layers` is what Keras's own weight tracking uses; if
    # a release drops it, the public `layers` recursion still finds layers of nested models.
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=True, recursive=True))
    found: list[keras.Layer] = []
    stack = [model]
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(getattr(layer, "layers", ()))
    return found


def _batches(x: Any, batch_size: int) -> Iterator[tuple[Any, int]]:
    count = len(keras.tree.flatten(x)[0])
    for start in range(0, count, batch_size):
        size = min(batch_size, count - start)
        # np.asarray reads a slice of streamed images from disk; an array's slice is a view.
        yield keras.tree.map_structure(lambda a, s=start, n=size: np.asarray(a[s:s + n]), x), size


def _average_over(model: keras.Model, layers: list[keras.layers.BatchNormalization], x: Any,
                  batch_size: int) -> None:
    momenta = [layer.momentum for layer in layers]
    # Training mode also advances the dropout layers' seed generators: variables outside `weights`. Putting them
    # back keeps training's random stream, hence its result, independent of whether and how often this runs.
    weight_ids = {id(v) for v in model.weights}
    rng_states = [(v, keras.ops.convert_to_numpy(v)) for v in model.non_trainable_variables
                  if id(v) not in weight_ids]
    seen = 0
    try:
        for batch, size in _batches(x, batch_size):
            momentum = seen / (seen + size)
            for layer in layers:
                layer.momentum = momentum
            model(batch, training=True)
            seen += size
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        for variable, value in rng_states:
            variable.assign(value)
