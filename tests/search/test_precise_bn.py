"""Precise BatchNorm on real MNIST digits with real Keras: statistics, the fit-loop hook, and what it leaves alone."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from hpsearch.datasets import Dataset, load_dataset
from hpsearch.models import TrainingConfig
from hpsearch.search.precise_bn import (
    MIN_SAMPLES,
    PreciseBatchNorm,
    batch_norm_layers,
    bounded_sample_size,
    recompute_batch_norm_statistics,
    sample_inputs,
)
from hpsearch.search.training import fit_and_evaluate

# 300 = 128 + 128 + 44: the short last batch checks the example weighting of the average.
SAMPLES, BATCH = 300, 128


@pytest.fixture(scope="module")
def digits(mnist_dir: Path) -> Dataset:
    return load_dataset("mnist", mnist_dir, 1024, 0.1, 0)


def small_cnn(dropout: float = 0.0) -> keras.Model:
    """Conv-BN-ReLU twice, then softmax: a few thousand weights, so a fit takes a second."""
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for i, filters in enumerate((8, 16), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.99, name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, training: bool = False) -> float:
    return float((keras.ops.convert_to_numpy(model(x, training=training)).argmax(axis=1) == y).mean())


def test_recompute_repairs_wrong_statistics_and_averages_the_sample(digits: Dataset) -> None:
    model = small_cnn()
    model.fit(digits.x_train, digits.y_train, batch_size=64, epochs=2, verbose=0)
    x_eval, y_eval = digits.x_test[:1000], digits.y_test[:1000]
    # Normalized by its own statistics, as in training (this call also moves the moving statistics; they are
    # overwritten next).
    with_batch_statistics = accuracy(model, x_eval, y_eval, training=True)
    for layer in batch_norm_layers(model):
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 3.0, dtype="float32"))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 1e-4, dtype="float32"))
    garbage = accuracy(model, x_eval, y_eval)

    assert recompute_batch_norm_statistics(model, digits.x_train, samples=SAMPLES, batch_size=BATCH) == 2

    repaired = accuracy(model, x_eval, y_eval)
    assert with_batch_statistics > 0.5, "the model did not learn: the test cannot tell statistics apart"
    assert repaired > garbage + 0.3
    assert abs(repaired - with_batch_statistics) < 0.05

    # Independently: the inputs of the second BN layer over the same sample, in training mode (so bn1 normalizes
    # with batch statistics, as during the recompute), batch by batch.
    bn2 = model.get_layer("bn2")
    probe = keras.Model(model.input, bn2.input)
    sample = sample_inputs(digits.x_train, SAMPLES)
    batches = [keras.ops.convert_to_numpy(probe(sample[i:i + BATCH], training=True))
               for i in range(0, SAMPLES, BATCH)]
    inputs = np.concatenate(batches)
    expected_mean = inputs.mean(axis=(0, 1, 2))
    expected_variance = np.average([b.var(axis=(0, 1, 2)) for b in batches], axis=0, weights=[len(b) for b in batches])
    got_mean = keras.ops.convert_to_numpy(bn2.moving_mean)
    np.testing.assert_allclose(got_mean, expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn2.moving_variance), expected_variance, rtol=1e-4)
    # The check can fail: a momentum frozen at any one value (a traced call) would leave a different mean, e.g.
    # the last batch's alone with momentum 0.
    assert np.abs(batches[-1].mean(axis=(0, 1, 2)) - expected_mean).max() > 1e-3


def test_callback_recomputes_before_each_validation_and_leaves_training_alone(digits: Dataset) -> None:
    def train(callbacks: list[keras.callbacks.Callback]) -> tuple[keras.Model, dict[str, list[float]]]:
        keras.utils.set_random_seed(0)
        model = small_cnn(dropout=0.25)
        history = model.fit(digits.x_train, digits.y_train, batch_size=64, epochs=2, shuffle=False, verbose=0,
                            validation_data=(digits.x_val, digits.y_val), callbacks=callbacks)
        return model, history.history

    precise = PreciseBatchNorm(digits.x_train, samples=SAMPLES, batch_size=BATCH)
    model, history = train([precise])
    plain_model, plain_history = train([])

    assert len(precise.seconds) == 2  # one recompute per validation
    loss, acc = model.evaluate(digits.x_val, digits.y_val, verbose=0)
    assert history["val_loss"][-1] == pytest.approx(loss, rel=1e-5)
    assert history["val_accuracy"][-1] == pytest.approx(acc, abs=1e-6)
    assert not precise.recompute_if_stale()  # nothing trained since the last validation
    # Validation did see other statistics than the moving averages...
    assert abs(history["val_loss"][-1] - plain_history["val_loss"][-1]) > 1e-3
    # ...while training followed the same path: same dropout masks, same weights (moving statistics aside).
    np.testing.assert_allclose(history["loss"], plain_history["loss"], rtol=1e-5)
    for mine, theirs in zip(model.trainable_weights, plain_model.trainable_weights, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs),
                                   rtol=1e-4, atol=1e-6)


def test_weights_trained_after_the_last_validation_get_their_statistics_after_fit(digits: Dataset) -> None:
    model = small_cnn()
    precise = PreciseBatchNorm(digits.x_train, samples=SAMPLES, batch_size=BATCH)
    # validation_freq=2 with one epoch: the epoch trains, nothing validates, the moving averages are stale.
    model.fit(digits.x_train, digits.y_train, batch_size=64, epochs=1, validation_freq=2, verbose=0,
              validation_data=(digits.x_val, digits.y_val), callbacks=[precise])
    assert precise.seconds == []
    before = keras.ops.convert_to_numpy(model.get_layer("bn1").moving_mean).copy()

    assert precise.recompute_if_stale()
    assert len(precise.seconds) == 1
    assert np.abs(keras.ops.convert_to_numpy(model.get_layer("bn1").moving_mean) - before).max() > 1e-3
    assert not precise.recompute_if_stale()


def test_fit_and_evaluate_restores_best_weights_with_their_statistics(digits: Dataset) -> None:
    model = small_cnn()
    data = Dataset("digits", digits.x_train, digits.y_train, digits.x_val, digits.y_val, digits.x_test[:500],
                   digits.y_test[:500], "test")
    result = fit_and_evaluate(model, data, TrainingConfig(batch_size=64, epochs=3, patience=3),
                              precise_bn_samples=SAMPLES)

    assert len(result.precise_bn_seconds) == 3
    best = int(np.argmax(result.history["val_accuracy"]))
    loss, acc = model.evaluate(data.x_val, data.y_val, verbose=0)
    assert acc == pytest.approx(result.val_accuracy, abs=1e-6)
    assert loss == pytest.approx(result.history["val_loss"][best], rel=1e-5)

    off = fit_and_evaluate(small_cnn(), data, TrainingConfig(batch_size=64, epochs=1), precise_bn_samples=0)
    assert off.precise_bn_seconds == []


def test_model_without_batch_norm_is_untouched(digits: Dataset) -> None:
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.variables]

    assert recompute_batch_norm_statistics(model, digits.x_train, samples=SAMPLES) == 0
    callback = PreciseBatchNorm(digits.x_train, samples=SAMPLES)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    callback.on_test_begin()

    assert callback.seconds == []
    assert not callback.recompute_if_stale()
    for value, variable in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


def test_nested_layers_are_recomputed_and_momenta_restored(digits: Dataset) -> None:
    class Block(keras.layers.Layer):
        """A custom layer holding its BN as an attribute: invisible to `Model.layers`."""

        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 3, strides=2)
            self.norm = keras.layers.BatchNormalization(momentum=0.5)

        def call(self, x: keras.KerasTensor, training: bool | None = None) -> keras.KerasTensor:
            return keras.ops.relu(self.norm(self.conv(x), training=training))

    inner_in = keras.Input((28, 28, 1))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(momentum=0.9)(Block()(inner_in)))
    inputs = keras.Input((28, 28, 1))
    frozen = keras.layers.BatchNormalization(momentum=0.8)
    frozen.trainable = False
    x = keras.layers.Flatten()(inner(frozen(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(10)(x))

    layers = batch_norm_layers(model)
    assert sorted(layer.momentum for layer in layers) == [0.5, 0.9]  # the frozen layer keeps its statistics
    assert recompute_batch_norm_statistics(model, digits.x_train, samples=SAMPLES, batch_size=BATCH) == 2

    assert sorted(layer.momentum for layer in layers) == [0.5, 0.9]
    assert frozen.momentum == 0.8
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(frozen.moving_mean), 0.0)
    for layer in layers:  # moved from their initial zeros
        assert np.abs(keras.ops.convert_to_numpy(layer.moving_mean)).max() > 1e-3


def test_sample_is_bounded_by_the_training_set() -> None:
    assert bounded_sample_size(2048, 1800) == MIN_SAMPLES  # a sixteenth would be 112
    assert bounded_sample_size(2048, 10800) == 675
    assert bounded_sample_size(2048, 54000) == 2048
    assert bounded_sample_size(2048, 21600) == 1350
    assert bounded_sample_size(2048, 100) == 100
    assert bounded_sample_size(2048, 1800, max_fraction=None) == 1800
    assert bounded_sample_size(0, 54000) == 0
    assert PreciseBatchNorm(np.zeros((10800, 2)), samples=2048).samples == 675
    with pytest.raises(ValueError, match="samples=0 to turn it off"):
        PreciseBatchNorm(np.zeros((10, 2)), samples=-1)


def test_keras_tuner_engine_validates_with_recomputed_statistics(digits: Dataset) -> None:
    import keras_tuner

    from hpsearch.search.keras_tuner_engine import BuilderHyperModel

    hp = keras_tuner.HyperParameters()
    hp.Fixed("epochs", 1)
    hp.Fixed("batch_size", 64)
    hypermodel = BuilderHyperModel(lambda _hp: small_cnn(), "val_accuracy", precise_bn_samples=SAMPLES)
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, digits.x_train, digits.y_train, validation_data=(digits.x_val, digits.y_val),
                             verbose=0)
    validated = keras.ops.convert_to_numpy(model.get_layer("bn2").moving_mean).copy()
    # Recomputing again with the same sample and weights changes nothing when validation already recomputed;
    # momentum-0.99 moving averages after 15 steps are far from it.
    recompute_batch_norm_statistics(model, digits.x_train, samples=bounded_sample_size(SAMPLES, len(digits.x_train)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.get_layer("bn2").moving_mean), validated,
                               rtol=1e-4, atol=1e-5)
    assert history.history["val_accuracy"][-1] > 0.5
