"""Keras models for the whole-model tests: random weights of a scale that drives every nonlinearity
through its range, masked inputs, and comparison with what Keras (torch backend) computes."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch needs no TensorFlow

import numpy as np  # noqa: E402

TOLERANCE = 1e-5
BATCH, STEPS, FEATURES, UNITS, VOCABULARY = 4, 7, 5, 6, 20

# Masked steps in the middle, at the end, at the start, and a sequence with none valid.
MASK = np.ones((BATCH, STEPS), dtype=bool)
MASK[0, 4:] = False
MASK[1, 2] = False
MASK[2, :] = False
MASK[3, :2] = False
# Keras' torch backend converts tensors with np.array(x), which numpy 2 warns about on every call; a
# Sequential passes a mask to its layers but warns that some do not pass it on.
WARNINGS = [
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning",
    "ignore:Layer '.*' \\(of type .*\\) was passed an input with a mask:UserWarning",
    "ignore:.*does not support masking.*:UserWarning",
    "ignore:You passed `rms_scaling=True`:UserWarning",
]


def randomize(model, seed=0):
    """Uniform(-0.8, 0.8) weights (the gates are neither linear nor saturated), positive moving variances."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        low, high = (0.3, 2.0) if "moving_variance" in variable.path else (-0.8, 0.8)
        variable.assign(rng.uniform(low, high, variable.shape).astype(variable.dtype))
    return model


def sequential(*layers, front="plain", seed=0, steps=STEPS):
    """``Sequential([Input, <front>, *layers])`` with random weights; ``front`` is "plain" (float frames),
    "masking" (Masking(0.0) first) or "embedding" (token ids into Embedding(mask_zero=True))."""
    import keras

    L = keras.layers
    head = {"plain": [keras.Input((steps, FEATURES))],
            "masking": [keras.Input((steps, FEATURES)), L.Masking(0.0)],
            "embedding": [keras.Input((steps,), dtype="int32"), L.Embedding(VOCABULARY, FEATURES, mask_zero=True)],
            "embedding_unmasked": [keras.Input((steps,), dtype="int32"), L.Embedding(VOCABULARY, FEATURES)]}[front]
    return randomize(keras.Sequential(head + list(layers)), seed)


def inputs(rng, front="plain", batch=BATCH, steps=STEPS):
    """Inputs for a model with that front; masked fronts get MASK's steps as padding (zeros / id 0)."""
    if front.startswith("embedding"):
        ids = rng.integers(1, VOCABULARY, (batch, steps))
        return np.where(MASK[:batch, :steps], ids, 0) if front == "embedding" else ids
    x = rng.standard_normal((batch, steps, FEATURES)).astype("float32")
    return np.where(MASK[:batch, :steps, None], x, 0.0).astype("float32") if front == "masking" else x


def to_numpy(value):
    import keras

    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    return keras.ops.convert_to_numpy(value)


def assert_same(actual, expected, what="output", tolerance=TOLERANCE):
    """Equal shapes, and values within ``tolerance`` (NaN where the other has NaN: Keras' 0/0 for a
    sequence with no unmasked step)."""
    expected = to_numpy(expected)
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{what}: {len(expected)} outputs expected"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{what}[{index}]", tolerance)
        return
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), f"{what}: NaN at different places"
    finite = ~np.isnan(expected)
    diff = np.max(np.abs(actual[finite].astype(np.float64) - expected[finite]), initial=0.0)
    assert diff <= tolerance, f"{what}: max |difference| {diff:.3g}"


def predict(model, x):
    return to_numpy(model.predict(x, verbose=0, batch_size=len(x)))
