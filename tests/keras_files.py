"""Legacy Keras files built with h5py, for tests: no TensorFlow (and so no tf.keras 2 or Keras 2) can be
installed here. The layout follows ``save_model_to_hdf5`` / ``save_weights_to_hdf5_group`` in Keras 2's
``keras/saving/legacy/hdf5_format.py``: root attributes ``keras_version``, ``backend`` and ``model_config``
(the JSON of ``model.get_config()``); a ``model_weights`` group with ``layer_names``; per layer a group
whose ``weight_names`` are the variable names (``gru/gru_cell/kernel:0``, ``dense/kernel:0``, ...), in the
order trainable weights then non-trainable ones, with the datasets at those (nested) paths. Layer configs
are tf.keras 2's (``dtype`` a string, normalization axes as lists of positive axes after build, the GRU's
``time_major`` and ``implementation``). `keras3_reader_objects` lets Keras 3's own legacy loader read such
files, which checks the layout: Keras 3 refuses some tf.keras 2 arguments (keras-team/keras#20750).
"""

from __future__ import annotations

import json

import numpy as np


def _numpy(variable):
    import keras

    return keras.ops.convert_to_numpy(variable)


def _base(layer):
    return {"name": layer.name, "trainable": True, "dtype": "float32"}


def _gru_config(gru):
    config = gru.get_config()
    keys = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "units", "activation",
            "recurrent_activation", "use_bias", "dropout", "recurrent_dropout", "reset_after")
    return {**_base(gru), **{key: config[key] for key in keys}, "time_major": False, "implementation": 2,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
            "recurrent_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "recurrent_constraint": None, "bias_constraint": None}


def _gru_weights(gru, scope, cell):
    variables = (("kernel", gru.cell.kernel), ("recurrent_kernel", gru.cell.recurrent_kernel), ("bias", gru.cell.bias))
    return [(f"{scope}/{cell}/{key}:0", _numpy(v)) for key, v in variables if v is not None]


def _activation(layer):
    import keras

    return keras.activations.serialize(layer.activation)


def tf_keras2_layer(layer, rank, cells):
    """(config entry, [(weight name, array)]) of a Keras 3 layer as tf.keras 2 wrote it; ``rank`` is the
    rank of the layer's input, ``cells`` yields the GRU cell names (gru_cell, gru_cell_1, ...)."""
    import keras

    L = keras.layers
    kind = type(layer).__name__
    if isinstance(layer, L.Bidirectional):
        inner = _gru_config(layer.forward_layer)
        inner["name"] = inner["name"].removeprefix("forward_")
        config = {**_base(layer), "merge_mode": layer.merge_mode, "layer": {"class_name": "GRU", "config": inner}}
        weights = (_gru_weights(layer.forward_layer, f"{layer.name}/forward_{inner['name']}", next(cells))
                   + _gru_weights(layer.backward_layer, f"{layer.name}/backward_{inner['name']}", next(cells)))
        return {"class_name": "Bidirectional", "config": config}, weights
    if isinstance(layer, L.GRU):
        return {"class_name": "GRU", "config": _gru_config(layer)}, _gru_weights(layer, layer.name, next(cells))
    if isinstance(layer, L.Dense):
        config = {**_base(layer), "units": layer.units, "activation": _activation(layer), "use_bias": layer.use_bias}
        weights = [(f"{layer.name}/kernel:0", _numpy(layer.kernel))]
        if layer.use_bias:
            weights.append((f"{layer.name}/bias:0", _numpy(layer.bias)))
        return {"class_name": "Dense", "config": config}, weights
    if isinstance(layer, L.TimeDistributed):
        inner, inner_weights = tf_keras2_layer(layer.layer, rank - 1, cells)
        # tf.keras 2 built the inner layer inside the wrapper's name scope: time_distributed/kernel:0
        weights = [(f"{layer.name}/{name.rsplit('/', 1)[-1]}", value) for name, value in inner_weights]
        return {"class_name": "TimeDistributed", "config": {**_base(layer), "layer": inner}}, weights
    if isinstance(layer, L.Embedding):
        config = {**_base(layer), "input_dim": layer.input_dim, "output_dim": layer.output_dim,
                  "mask_zero": layer.mask_zero, "input_length": None}
        return {"class_name": "Embedding", "config": config}, [(f"{layer.name}/embeddings:0", _numpy(layer.embeddings))]
    if isinstance(layer, L.Masking):
        return {"class_name": "Masking", "config": {**_base(layer), "mask_value": layer.mask_value}}, []
    if isinstance(layer, (L.LayerNormalization, L.BatchNormalization)):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        config = {**_base(layer), "axis": [a + rank if a < 0 else a for a in axes], "epsilon": layer.epsilon,
                  "center": layer.center, "scale": layer.scale}
        names = (["gamma"] if layer.scale else []) + (["beta"] if layer.center else [])
        if isinstance(layer, L.BatchNormalization):
            config["momentum"] = layer.momentum
            names += ["moving_mean", "moving_variance"]
        weights = [(f"{layer.name}/{name}:0", _numpy(getattr(layer, name))) for name in names]
        return {"class_name": kind, "config": config}, weights
    if isinstance(layer, L.Activation):
        return {"class_name": "Activation", "config": {**_base(layer), "activation": _activation(layer)}}, []
    if isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalMaxPooling1D, L.Flatten)):
        config = {**_base(layer), "data_format": layer.data_format}
        if not isinstance(layer, L.Flatten):
            config["keepdims"] = layer.keepdims
        return {"class_name": kind, "config": config}, []
    if isinstance(layer, L.Dropout):
        return {"class_name": kind, "config": {**_base(layer), "rate": layer.rate, "noise_shape": None,
                                               "seed": None}}, []
    raise NotImplementedError(kind)


def write_tf_keras2_h5(path, model, keras_version="2.13.1", weights_only=False, input_dtype="float32"):
    """Writes ``model`` (a Keras 3 Sequential with an Input) as tf.keras 2's ``model.save("m.h5")`` does, or
    as its ``save_weights("w.h5")`` (``weights_only``: the layer groups at the root, no model_config)."""
    import h5py

    shape = list(model.inputs[0].shape)
    entries, weights, cells = [], {}, iter(f"gru_cell{'_' + str(i) if i else ''}" for i in range(100))
    rank = len(shape)
    for layer in model.layers:
        entry, layer_weights = tf_keras2_layer(layer, rank, cells)
        entries.append(entry)
        weights[layer.name] = layer_weights
        rank = len(layer.output.shape) if not isinstance(layer.output, list) else rank
    input_layer = {"class_name": "InputLayer", "config": {"batch_input_shape": [None] + shape[1:], "dtype": input_dtype,
                                                          "sparse": False, "ragged": False, "name": "input_1"}}
    config = {"class_name": "Sequential", "config": {"name": model.name, "layers": [input_layer] + entries}}
    with h5py.File(path, "w") as file:
        if weights_only:
            group = file
        else:
            file.attrs["keras_version"] = keras_version
            file.attrs["backend"] = "tensorflow"
            file.attrs["model_config"] = json.dumps(config).encode("utf8")
            group = file.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode("utf8") for name in weights]
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = keras_version.encode("utf8")
        for name in weights:
            layer_group = group.create_group(name)
            layer_group.attrs["weight_names"] = np.array([w.encode("utf8") for w, _ in weights[name]], dtype="S")
            for weight_name, value in weights[name]:
                layer_group.create_dataset(weight_name, data=value)
        if not weights_only:
            group.create_group("top_level_model_weights").attrs["weight_names"] = np.array([], dtype="S1")


def keras3_reader_objects():
    """Keras 3 classes that accept tf.keras 2's configs: for ``keras.saving.custom_object_scope``."""
    import keras

    class GRU(keras.layers.GRU):
        def __init__(self, *args, time_major=False, implementation=2, **kwargs):
            super().__init__(*args, **kwargs)

    class BatchNormalization(keras.layers.BatchNormalization):
        def __init__(self, axis=-1, **kwargs):
            super().__init__(axis=axis[0] if isinstance(axis, list) else axis, **kwargs)

    # Dense too: Keras 3 does not find the class of a layer nested in TimeDistributed's legacy config.
    return {"GRU": GRU, "BatchNormalization": BatchNormalization, "Dense": keras.layers.Dense}
