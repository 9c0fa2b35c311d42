from __future__ import annotations

import keras
import keras_tuner
import numpy as np
import pytest

from hpsearch.errors import UnknownNameError, WeightsNotFoundError
from hpsearch.models import MODELS, get_builder, search_space, training_config


def build_default(name: str, shape=(28, 28, 1), classes=10, **options) -> tuple[keras.Model, dict]:
    hp = keras_tuner.HyperParameters()
    model = get_builder(name, shape, classes, **options)(hp)
    return model, hp.values


def test_resnet4_has_published_parameter_count() -> None:
    model, _ = build_default("resnet4")
    assert model.count_params() == 10_320
    assert model.output_shape == (None, 10)


def test_resnet_blocks_outputs_published_shapes() -> None:
    model, values = build_default("resnet-blocks")
    outs = [tuple(layer.output.shape[1:]) for layer in model.layers if layer.name.endswith("_out")]
    assert outs == [(14, 14, 64), (7, 7, 256), (4, 4, 512)]
    assert values["num_blocks"] == 3 and isinstance(model.layers[-2], keras.layers.GlobalAveragePooling2D)


def test_resnet_blocks_width_is_conditional_on_block_count() -> None:
    hp = keras_tuner.HyperParameters()
    hp.Fixed("num_blocks", 2)
    model = get_builder("resnet-blocks")(hp)
    assert "width_3" not in hp.values and hp.values["width_2"] == 256
    outs = [layer.name for layer in model.layers if layer.name.endswith("_out")]
    assert outs == ["block1_out", "block2_out"]


def test_cnn_defaults_are_the_published_best() -> None:
    model, values = build_default("cnn")
    assert (values["filters_1"], values["filters_2"], values["units"], values["optimizer"]) == (128, 192, 256, "adam")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [128, 192]
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == [0.25, 0.25, 0.5]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 2
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense[0].units == 256 and isinstance(model.optimizer, keras.optimizers.Adam)


def test_cnn_space_is_the_published_search() -> None:
    space = {e["name"]: e for e in search_space("cnn")}
    assert (space["filters_1"]["min"], space["filters_1"]["max"], space["filters_1"]["step"]) == (32, 256, 32)
    assert (space["filters_2"]["min"], space["filters_2"]["max"], space["filters_2"]["step"]) == (32, 256, 32)
    assert (space["units"]["min"], space["units"]["max"], space["units"]["step"]) == (64, 512, 64)
    assert space["optimizer"]["values"] == ["adam", "sgd", "rmsprop"]
    assert space["learning_rate"]["sampling"] == "log"


@pytest.mark.parametrize("variant", ["scratch", "applications"])
def test_resnet50_has_published_parameter_count(variant: str) -> None:
    hp = keras_tuner.HyperParameters()
    hp.Fixed("variant", variant)
    model = get_builder("resnet50", (64, 64, 3), 6)(hp)
    assert model.count_params() == 23_600_006
    if variant == "applications":
        assert any(isinstance(layer, keras.layers.Dropout) and layer.rate == 0.5 for layer in model.layers)


def test_resnet50_imagenet_weights_need_a_local_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HPSEARCH_RESNET50_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError, match="cannot be downloaded"):
        build_default("resnet50", weights="imagenet")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        build_default("resnet50", weights=str(tmp_path / "missing.h5"))


def test_training_defaults() -> None:
    hp = keras_tuner.HyperParameters()
    get_builder("resnet4")(hp)
    config = training_config(hp)
    assert (config.batch_size, config.patience, config.lr_factor) == (128, 3, 0.2)


# ResNet-50's step (23.6M parameters, ~30 s on 2 cores) runs with the integration suites.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.integration) if n == "resnet50" else n
                                  for n in MODELS])
def test_every_builder_trains_one_step_on_real_digits(name: str, mnist_sample) -> None:
    model, _ = build_default(name, mnist_sample.input_shape, mnist_sample.num_classes)
    x, y = mnist_sample.x_train[:16], mnist_sample.y_train[:16]
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert model.predict(x[:2], verbose=0).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet4", "cnn", "resnet-blocks", "resnet50"])
def test_builders_accept_8x8_digits(name: str) -> None:
    model, _ = build_default(name, (8, 8, 1), 10)
    assert model.predict(np.zeros((1, 8, 8, 1), np.float32), verbose=0).shape == (1, 10)


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="resnet4, resnet-blocks, cnn, resnet50"):
        get_builder("vgg16")
