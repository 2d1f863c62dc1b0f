"""Whole models (fastgru.Model) for the scale-out tests: Keras models with heads and masks, and an ONNX
node chain, each with sequences to score and what a call on one sequence alone returns."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch needs no TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastgru  # noqa: E402
from fastgru.batching import sequence_shape  # noqa: E402

INPUT = 3  # every model reads 3 features per step (or ids embedded into 3)
VOCABULARY = 12


def _keras(*layers, ids=False, seed=0):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((None,), dtype="int32") if ids else keras.Input((None, INPUT))
    model = keras.Sequential([inputs, *layers])
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.uniform(-0.8, 0.8, variable.shape).astype(variable.dtype))
    return model


def keras_classifier():
    """Masking, a GRU and a softmax head: what a Keras user scores sequences with."""
    L = pytest.importorskip("keras").layers
    return _keras(L.Masking(0.0), L.GRU(6), L.Dense(4, activation="softmax"), seed=1)


def onnx_chain(rng=None, hidden=4):
    """An ONNX graph of two GRU nodes, the second reading the first's Y (T, 1, B, H) squeezed to (T, B, H),
    as torch.onnx.export writes a 2-layer nn.GRU: ``(ModelProto, [node names])``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(9) if rng is None else rng
    initializers, nodes = [], []
    for layer, width in enumerate((INPUT, hidden)):
        arrays = {f"W{layer}": rng.uniform(-0.7, 0.7, (1, 3 * hidden, width)),
                  f"R{layer}": rng.uniform(-0.7, 0.7, (1, 3 * hidden, hidden)),
                  f"B{layer}": rng.uniform(-0.7, 0.7, (1, 6 * hidden))}
        initializers += [numpy_helper.from_array(value.astype(np.float32), name) for name, value in arrays.items()]
        source = "X" if layer == 0 else "X1"
        outputs = ["Y0", "Y_h0"] if layer == 0 else ["Y", "Y_h"]
        nodes.append(helper.make_node("GRU", [source, *arrays], outputs, name=f"gru{layer}", hidden_size=hidden,
                                      linear_before_reset=1))
        if layer == 0:
            nodes.append(helper.make_node("Squeeze", ["Y0", "axis1"], ["X1"]))
            initializers.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("Y", "Y_h")],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), ["gru0", "gru1"]


def _onnx_chain_model():
    model, names = onnx_chain()
    return fastgru.Model.from_onnx(model, node_name=names)


def _keras_model(build):
    return lambda: fastgru.Model.from_keras(build())


def _layers():
    return pytest.importorskip("keras").layers


# name -> a fastgru.Model; between them: masks made by Masking and by Embedding(mask_zero), a head on one
# output, one output per step, a list of outputs, a layer that ignores the mask (max pooling: padding would
# change its result), int8 GRUs, and ONNX's conventions.
WHOLE_MODELS = {
    "keras-masking-classifier": _keras_model(keras_classifier),
    "keras-embedding-tagger": _keras_model(lambda: _keras(
        _layers().Embedding(VOCABULARY, INPUT, mask_zero=True), _layers().GRU(5, return_sequences=True),
        _layers().Dense(1, activation="sigmoid"), ids=True, seed=2)),
    "keras-return-state": _keras_model(lambda: _keras(_layers().GRU(4, return_state=True), seed=3)),
    "keras-max-pooling-int8": lambda: fastgru.Model.from_keras(_keras(
        _layers().Masking(0.0), _layers().GRU(5, return_sequences=True), _layers().GlobalMaxPooling1D(),
        _layers().Dense(2), seed=4)).quantize("int8"),
    "onnx-chain": _onnx_chain_model,
}


def model_sequences(model, seed=0, count=10, max_steps=8, steps=None):
    """``count`` sequences for ``model``: (T_i, features) floats with some all-zero (masked) steps, or (T_i,)
    token ids with some 0s; T_i in 1..max_steps, or all ``steps`` long."""
    rng = np.random.default_rng(seed)
    features, dtype = sequence_shape(model)
    result = []
    for _ in range(count):
        length = steps if steps is not None else int(rng.integers(1, max_steps + 1))
        if features == "ids":
            result.append(rng.integers(0, VOCABULARY, length))
        else:
            sequence = rng.standard_normal((length, features)).astype(dtype)
            sequence[rng.random(length) < 0.2] = 0.0
            result.append(sequence)
    return result


def alone_of_model(model, sequence):
    """What ``model`` returns for one sequence as a batch of one, the batch axis taken out."""
    time_major = model.convention == "onnx" and not model.gru.spec.batch_first
    returned = model(sequence[:, None] if time_major else sequence[None])
    if model.convention == "onnx":
        y, y_h = returned
        return (y[:, :, 0], y_h[:, 0]) if time_major else (y[0], y_h[0])
    if isinstance(returned, list):
        return tuple(array[0] for array in returned)
    return returned[0]
