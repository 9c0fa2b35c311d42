"""A builder of your own, searched by hpsearch without touching hpsearch's code.

    hpsearch models examples/tiny_convnet.py:build
    hpsearch run --study tiny-fashion --model examples/tiny_convnet.py:build --dataset fashion-mnist \
        --train-size 6000 --trials 8 --epochs 3 --workers 2

`build(hp, input_shape, num_classes)` is KerasTuner's builder signature plus the two data arguments hpsearch
passes when a builder declares them. The model comes back uncompiled, so hpsearch compiles it and adds the
optimizer and the learning rate to the search space.
"""

import keras


def build(hp, input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block in range(hp.Int("blocks", 1, 2)):
        x = keras.layers.Conv2D(hp.Choice(f"filters_{block}", [16, 32, 64]), 3, padding="same",
                                activation="relu")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.25))(x)
    x = keras.layers.Dense(hp.Int("units", 32, 128, step=32), activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny_convnet")
