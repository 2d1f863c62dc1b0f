"""One object model: fastgru.GRU (the bare GRU, PyTorch's conventions) and fastgru.Model (framework
conventions, masks, heads) share their verbs. A Model streams frame by frame (what a call on the
sequence so far gives, allocating nothing per step), quantizes its GRUs, round-trips through fastgru's
file, pickle and copy bit-exactly, and refuses a gradient it cannot give; GRU constructors return GRUs,
and the old wrapper names fail saying what replaced them."""

from __future__ import annotations

import copy
import importlib
import pickle

import numpy as np
import pytest

import fastgru
from conftest import random_weights, traced_allocations
from fastgru.io import UnsupportedModelError
from fastgru.spec import GRUSpec
from keras_cases import BATCH, MASK, STEPS, UNITS, WARNINGS, assert_same, inputs, predict, sequential

keras = pytest.importorskip("keras")
L = keras.layers
pytestmark = [pytest.mark.filterwarnings(w) for w in WARNINGS]

STREAMABLE = {
    "classifier": (lambda: [L.GRU(32, activation="tanh"), L.Dense(4, activation="softmax")], ("plain", "masking")),
    "tagger": (lambda: [L.GRU(16, return_sequences=True), L.Dense(1, activation="sigmoid")], ("plain", "embedding")),
    "stack-and-heads": (lambda: [L.Dense(8, "relu"), L.GRU(UNITS, return_sequences=True), L.Dropout(0.1),
                                 L.GRU(UNITS, return_sequences=True), L.LayerNormalization(), L.BatchNormalization(),
                                 L.TimeDistributed(L.Dense(3)), L.Activation("log_softmax")], ("plain", "masking")),
    "average-pooling": (lambda: [L.GRU(UNITS, return_sequences=True), L.GlobalAveragePooling1D(), L.Dense(2)],
                        ("plain", "masking", "embedding")),
    "max-pooling": (lambda: [L.GRU(UNITS, return_sequences=True), L.GlobalMaxPooling1D(keepdims=True)],
                    ("plain", "masking")),
    "zero-output-for-mask": (lambda: [L.GRU(UNITS, return_sequences=True, zero_output_for_mask=True),
                                      L.GRU(UNITS, zero_output_for_mask=True)], ("masking",)),
    "return-state": (lambda: [L.GRU(UNITS, return_state=True)], ("plain", "masking")),
}
STREAM_CASES = [(name, front) for name, (_, fronts) in sorted(STREAMABLE.items()) for front in fronts]


def _model(name, front):
    return sequential(*STREAMABLE[name][0](), front=front, seed=11)


def _last_step(output, step_output):
    """What a step gives from a call on the sequence so far: its last time step for per-step outputs."""
    if isinstance(output, list):
        return [_last_step(o, s) for o, s in zip(output, step_output)]
    sequence = output.ndim == np.ndim(step_output) + 1
    return output[:, -1] if sequence else output


@pytest.mark.parametrize("name, front", STREAM_CASES, ids=[f"{n}-{f}" for n, f in STREAM_CASES])
def test_stream_gives_what_a_call_on_the_sequence_so_far_gives(rng, name, front):
    model = fastgru.Model.from_keras(_model(name, front))
    x = inputs(rng, front)
    stream = model.stream(BATCH)
    for step in range(STEPS):
        output = stream.step(x[:, step])
        expected = model(x[:, : step + 1])
        assert_same(output, _last_step(expected, output), f"step {step}")


@pytest.mark.parametrize("front", ["plain", "masking"])
def test_stream_matches_keras_frame_by_frame(rng, front):
    keras_model = _model("classifier", front)
    x = inputs(rng, front)
    stream = fastgru.Model.from_keras(keras_model).stream(BATCH)
    for step in range(STEPS):
        assert_same(stream.step(x[:, step]), predict(keras_model, x[:, : step + 1]), f"step {step}")


def test_stream_reset_starts_again_and_single_frames_need_no_batch_axis(rng):
    model = fastgru.Model.from_keras(_model("average-pooling", "masking"))
    x = inputs(rng, "masking")
    stream = model.stream(BATCH)
    first = [stream.step(x[:, t]).copy() for t in range(STEPS)]
    stream.reset()
    again = [stream.step(x[:, t]).copy() for t in range(STEPS)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    single = model.stream(1)
    for t in range(STEPS):
        output = single.step(x[1, t])  # (features,) when the batch is 1
    np.testing.assert_allclose(output, model(x[1:2])[0:1], rtol=0, atol=1e-6)


def test_stream_outputs_are_read_only_buffers(rng):
    stream = fastgru.Model.from_keras(_model("classifier", "masking")).stream(BATCH)
    output = stream.step(inputs(rng, "masking")[:, 0])
    with pytest.raises(ValueError, match="read-only"):
        output[...] = 0


def test_stream_step_allocates_nothing(rng):
    """Buffers of 4 x 512 float32 (8 KiB) would show in the peak: every one is preallocated."""
    keras_model = sequential(L.GRU(512, return_sequences=True), L.LayerNormalization(), L.Dense(512, "softmax"),
                             L.GlobalAveragePooling1D(), L.Dense(512, "gelu"), front="masking", seed=12)
    stream = fastgru.Model.from_keras(keras_model).stream(BATCH)
    frames = np.ascontiguousarray(inputs(rng, "masking").transpose(1, 0, 2))
    frame_index = iter(range(10**9))
    for frame in frames:
        stream.step(frame)
    kept, peak = traced_allocations(lambda: stream.step(frames[next(frame_index) % STEPS]), 50 * STEPS)
    assert kept < 1024 and peak < 4096, f"{kept} bytes kept, peak +{peak}"


@pytest.mark.parametrize("layers, message", [
    (lambda: [L.Bidirectional(L.GRU(UNITS, return_sequences=True), name="both")], r"'both' is a Bidirectional"),
    (lambda: [L.GRU(UNITS, go_backwards=True, name="back")], r"'back' has go_backwards=True"),
    (lambda: [L.GRU(UNITS, return_sequences=True), L.Flatten(name="flat")],
     r"'flat' \(Flatten\(\)\) cannot be streamed"),
    (lambda: [L.GRU(UNITS, return_sequences=True), L.LayerNormalization(axis=[1, 2], name="norm")],
     r"'norm' \(LayerNormalization over axis=\[1, 2\]\) cannot be streamed"),
], ids=["bidirectional", "go-backwards", "flatten", "normalization-over-time"])
def test_models_that_need_the_whole_sequence_cannot_stream(layers, message):
    model = fastgru.Model.from_keras(sequential(*layers()))
    with pytest.raises(ValueError, match=message):
        model.stream(2)


def test_stream_checks_its_input(rng):
    stream = fastgru.Model.from_keras(_model("classifier", "plain")).stream(BATCH)
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, features\) = \(4, 5\)"):
        stream.step(np.zeros((3, 5)))
    with pytest.raises(TypeError, match="x_t must hold real numbers"):
        stream.step(np.zeros((4, 5), dtype=complex))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        fastgru.Model.from_keras(_model("classifier", "plain")).stream(0)
    ids = fastgru.Model.from_keras(_model("tagger", "embedding")).stream(BATCH)
    with pytest.raises(ValueError, match=r"token ids must lie in 0..19"):
        ids.step(np.full(BATCH, 99))


# ---------------------------------------------------------------------------------------------
# quantize


def test_quantize_makes_the_grus_int8_and_leaves_the_heads_and_the_model(rng):
    model = fastgru.Model.from_keras(_model("stack-and-heads", "masking"))
    quantized = model.quantize("int8")
    assert model.weight_format == "float32" and quantized.weight_format == "int8"
    assert all(gru.weight_format == "int8" for gru in quantized.grus)
    x = inputs(rng, "masking")
    heads = [(a, b) for a, b in zip(model.layers, quantized.layers) if not a.grus]
    assert heads and all(a is b for a, b in heads)
    difference = np.abs(quantized(x) - model(x))
    assert 0 < difference.max() < 0.1  # the int8 error (docs/int8.md), not a different model
    for float_layer, int8_layer in zip(model.layers, quantized.layers):  # each GRU as GRU.quantize makes it
        if float_layer.grus:
            h = rng.standard_normal((2, STEPS, float_layer.gru.spec.input_size)).astype("float32")
            np.testing.assert_array_equal(int8_layer.gru(h)[0], float_layer.gru.quantize("int8")(h)[0])
    stream = quantized.stream(BATCH)
    for step in range(STEPS):
        output = stream.step(x[:, step])
    assert_same(output, quantized(x)[:, -1], tolerance=1e-6)
    with pytest.raises(ValueError, match="already int8"):
        quantized.quantize("int8")
    with pytest.raises(ValueError, match="weight_format must be 'int8'"):
        model.quantize("int4")


def test_quantize_passes_weight_bits_to_every_gru(rng):
    model = fastgru.Model.from_keras(_model("stack-and-heads", "masking"))
    quantized = model.quantize("int8", weight_bits=7)
    assert quantized.grus and all(gru.int8_narrow for gru in quantized.grus)
    assert not any(gru.int8_narrow for gru in model.quantize("int8").grus)
    x = inputs(rng, "masking")
    assert 0 < np.abs(quantized(x) - model(x)).max() < 0.1
    for float_layer, int8_layer in zip(model.layers, quantized.layers):
        if float_layer.grus:
            h = rng.standard_normal((2, STEPS, float_layer.gru.spec.input_size)).astype("float32")
            np.testing.assert_array_equal(int8_layer.gru(h)[0], float_layer.gru.quantize("int8", weight_bits=7)(h)[0])
    with pytest.raises(ValueError, match="weight_bits must be 8 or 7"):
        model.quantize("int8", weight_bits=4)


# ---------------------------------------------------------------------------------------------
# one serialized form: save/load, pickle, copy


def _round_trips(obj, tmp_path):
    path = tmp_path / "model.fastgru"
    obj.save(path)
    return {"save/load": fastgru.load(path), "pickle": pickle.loads(pickle.dumps(obj)),
            "copy": copy.copy(obj), "deepcopy": copy.deepcopy(obj)}


def _every_layer_model():
    return sequential(L.Dense(6, "selu"), L.Bidirectional(L.GRU(UNITS, return_sequences=True), merge_mode="sum"),
                      L.Dropout(0.1), L.GRU(UNITS, return_sequences=True, reset_after=False,
                                            recurrent_activation="hard_sigmoid"),
                      L.LayerNormalization(rms_scaling=True), L.BatchNormalization(), L.TimeDistributed(L.Dense(3)),
                      L.GlobalMaxPooling1D(), L.Dense(2, "softmax"), front="embedding", seed=13)


@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
def test_models_round_trip_bit_exactly_through_one_serialized_form(rng, tmp_path, int8):
    model = fastgru.Model.from_keras(_every_layer_model())
    model = model.quantize("int8") if int8 else model
    x = inputs(rng, "embedding")
    expected = model(x)
    description = model._portable()
    for how, loaded in _round_trips(model, tmp_path).items():
        assert isinstance(loaded, fastgru.Model), how
        np.testing.assert_array_equal(loaded(x), expected, err_msg=how)
        assert repr(loaded) == repr(model), how
        config, arrays = loaded._portable()
        assert config == description[0], how
        for key, value in description[1].items():
            np.testing.assert_array_equal(arrays[key], value, err_msg=f"{how}: {key}")


@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
def test_grus_round_trip_bit_exactly_through_one_serialized_form(rng, tmp_path, int8):
    spec = GRUSpec(4, 6, num_layers=2)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    gru = gru.quantize("int8") if int8 else gru
    x = rng.standard_normal((5, 3, 4)).astype("float32")
    for how, loaded in _round_trips(gru, tmp_path).items():
        assert isinstance(loaded, fastgru.GRU) and loaded.weight_format == gru.weight_format, how
        for actual, expected in zip(loaded(x), gru(x)):
            np.testing.assert_array_equal(actual, expected, err_msg=how)


def test_a_float_gru_file_keeps_the_format_of_earlier_versions(rng, tmp_path):
    """Files of plain GRUs are still format_version 1's, plus the checksum: earlier fastgru versions read them
    (they read "format", "format_version" and "spec" and ignore other fields)."""
    import json
    import struct

    gru = fastgru.GRU.from_spec(GRUSpec(3, 4), random_weights(GRUSpec(3, 4), rng))
    gru.save(tmp_path / "gru.fastgru")
    data = (tmp_path / "gru.fastgru").read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + size])["__metadata__"]
    assert set(metadata) == {"format", "format_version", "spec", "crc32"} and metadata["format_version"] == "1"


def _rewrite(path, tensors, metadata, checksum=True):
    """Writes a fastgru file with this content: sealed with a valid CRC-32 (a description that is wrong
    although its bytes are intact: a newer fastgru's, or a writer's bug), or with none (an older file)."""
    from fastgru.io import native
    from fastgru.io.safetensors import encode_safetensors

    metadata = {key: value for key, value in metadata.items() if key != native.CHECKSUM}
    if checksum:
        data = native._seal(encode_safetensors(tensors, {**metadata, native.CHECKSUM: native._UNSEALED}))
    else:
        data = encode_safetensors(tensors, metadata)
    path.write_bytes(data)


def _saved_description(tmp_path):
    import json

    from fastgru.io.safetensors import read_safetensors

    path = tmp_path / "model.fastgru"
    fastgru.Model.from_keras(_model("classifier", "masking")).save(path)
    tensors, metadata = read_safetensors(path)
    return path, tensors, metadata, json.loads(metadata["model"])


def test_damaged_model_descriptions_name_the_file_and_layer(rng, tmp_path):
    import json

    path, tensors, metadata, config = _saved_description(tmp_path)
    config["layers"][2]["config"]["activation"] = "no_such_function"
    _rewrite(path, tensors, {**metadata, "model": json.dumps(config)})
    with pytest.raises(ValueError, match=r"model\.fastgru: layer 'dense.*unknown activation 'no_such_function'"):
        fastgru.load(path)
    config["layers"][2] = {"class": "Conv9D", "name": "x", "config": {}}
    _rewrite(path, tensors, {**metadata, "model": json.dumps(config)})
    with pytest.raises(ValueError, match=r"model\.fastgru: unknown layer class 'Conv9D'"):
        fastgru.load(path)
    _rewrite(path, {**tensors, "layers.9.kernel": np.zeros(2, "float32")}, metadata)
    with pytest.raises(ValueError, match=r"model\.fastgru: tensors \['layers.9.kernel'\] belong to no layer"):
        fastgru.load(path)


def _with(config, where, key, value):
    """A copy of ``config`` with ``key: value`` added to the dict that ``where`` reaches."""
    import copy as copy_module

    config = copy_module.deepcopy(config)
    target = where(config)
    target[key] = value
    return config


@pytest.mark.parametrize("where, message", [
    (lambda c: c, r"the model's description has key\(s\) \['weight_codes'\]"),
    (lambda c: c["layers"][1], r"layer 'gru\w*' \(KerasGRU\) has key\(s\) \['weight_codes'\]"),
    (lambda c: c["layers"][2]["config"], r"layer 'dense\w*' \(Dense\) has option\(s\) \['weight_codes'\]"),
    (lambda c: c["layers"][1]["config"]["gru"], r"the GRU's description has key\(s\) \['weight_codes'\]"),
], ids=["model", "layer", "layer-option", "gru"])
def test_a_description_key_this_fastgru_does_not_know_is_refused(tmp_path, where, message):
    """Skipping it could change what the file means (a newer fastgru's int8 codes, say), so it raises,
    naming the key, even when the file's checksum is intact."""
    import json

    path, tensors, metadata, config = _saved_description(tmp_path)
    _rewrite(path, tensors, {**metadata, "model": json.dumps(_with(config, where, "weight_codes", 1))})
    with pytest.raises(ValueError, match=message + r".*does not know"):
        fastgru.load(path)


@pytest.mark.parametrize("tensor, message", [
    ("layers.2.kernel_codes", r"layer 'dense\w*' \(Dense\) has tensor\(s\) \['kernel_codes'\]"),
    ("layers.1.weight_ih_l0_codes", r"unexpected tensor\(s\) \['weight_ih_l0_codes'\]"),
])
def test_a_tensor_no_layer_reads_is_refused(tmp_path, tensor, message):
    path, tensors, metadata, config = _saved_description(tmp_path)
    _rewrite(path, {**tensors, tensor: np.zeros(2, "float32")}, metadata)
    with pytest.raises(ValueError, match=message):
        fastgru.load(path)


@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
def test_model_files_written_before_the_checksum_still_load(rng, tmp_path, int8):
    """Files of the object model's layout from before fastgru stored a CRC-32 load unchecked, bit-exact."""
    model = fastgru.Model.from_keras(_model("classifier", "masking"))
    model = model.quantize("int8") if int8 else model
    from fastgru.io.safetensors import read_safetensors

    path = tmp_path / "model.fastgru"
    model.save(path)
    tensors, metadata = read_safetensors(path)
    _rewrite(path, tensors, metadata, checksum=False)
    assert "crc32" not in read_safetensors(path)[1]
    x = inputs(rng, "masking")
    np.testing.assert_array_equal(fastgru.load(path)(x), model(x))


# ---------------------------------------------------------------------------------------------
# the surface


def test_model_properties_and_repr():
    stack = [L.GRU(UNITS, return_sequences=True), L.GRU(UNITS, return_sequences=True), L.Dropout(0.1), L.Dense(2)]
    model = fastgru.Model.from_keras(sequential(*stack, front="masking"))
    assert model.convention == "keras" and len(model.grus) == 1  # the two GRU layers run as one
    assert model.gru is model.grus[0] and model.gru.spec.num_layers == 2
    assert [line.split()[0] for line in repr(model).splitlines()[1:-1]] == [layer.name for layer in model.layers]
    model.num_threads = 1
    assert model.gru.num_threads == 1 == model.num_threads
    several = fastgru.Model.from_keras(sequential(L.GRU(3, return_sequences=True), L.LayerNormalization(), L.GRU(3)))
    with pytest.raises(ValueError, match=r"has 2 GRUs.*use model.grus"):
        several.gru


def test_a_model_refuses_backward_and_its_gru_gives_gradients(rng):
    model = fastgru.Model.from_keras(_model("classifier", "plain"))
    with pytest.raises(NotImplementedError, match=r"inference only.*model.gru"):
        model.backward(None)
    x = inputs(rng)
    output, h_n, tape = model.gru.forward(x, return_tape=True)
    grads = model.gru.backward(tape, grad_h_n=np.ones_like(h_n))
    assert grads["x"].shape == x.shape


def test_gru_from_keras_is_the_gru_alone(rng):
    keras_model = _model("classifier", "masking")  # Masking, GRU, Dense: one GRU among other layers
    gru = fastgru.GRU.from_keras(keras_model)
    assert isinstance(gru, fastgru.GRU) and gru.spec.batch_first
    x = inputs(rng)
    gru_layer = keras.Sequential([keras.Input(x.shape[1:]), keras_model.layers[1]])
    output, h_n = gru(x)
    assert_same(h_n[0], predict(gru_layer, x))
    bidirectional = sequential(L.Bidirectional(L.GRU(UNITS, return_sequences=True)))
    assert_same(fastgru.GRU.from_keras(bidirectional)(x)[0], predict(bidirectional, x))  # concat: torch's layout


def test_gru_from_keras_refuses_what_a_gru_cannot_express():
    with pytest.raises(UnsupportedModelError, match=r"go_backwards=True.*fastgru.Model.from_keras"):
        fastgru.GRU.from_keras(sequential(L.GRU(UNITS, go_backwards=True)))
    two = sequential(L.GRU(UNITS, return_sequences=True, name="a"), L.Dense(3), L.GRU(UNITS, name="b"))
    with pytest.raises(ValueError, match=r"2 GRU layers that do not form one chain; pass layer= one of \['a', 'b'\]"):
        fastgru.GRU.from_keras(two)
    assert fastgru.GRU.from_keras(two, layer="b").spec.input_size == 3


@pytest.mark.parametrize("module, name, replacement", [
    ("fastgru.io.keras", "KerasGRU", "fastgru.Model"),
    ("fastgru.io.keras", "from_keras", "fastgru.Model.from_keras"),
    ("fastgru.io.onnx", "OnnxGRU", "fastgru.Model"),
    ("fastgru.io.onnx", "from_onnx", "fastgru.Model.from_onnx"),
    ("fastgru.io.torch", "from_torch", "fastgru.GRU.from_torch"),
    ("fastgru.io.safetensors", "from_safetensors", "fastgru.load"),
])
def test_old_names_fail_saying_what_replaced_them(module, name, replacement):
    with pytest.raises(ImportError, match=rf"{module}.{name} was replaced: use {replacement}"):
        exec(f"from {module} import {name}")
    with pytest.raises(ImportError, match="was replaced"):
        getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError):
        getattr(importlib.import_module(module), "no_such_name")


def test_masked_model_output_uses_the_mask_of_the_call(rng):
    model = fastgru.Model.from_keras(sequential(L.GRU(UNITS, return_sequences=True), L.GlobalAveragePooling1D()))
    x = inputs(rng)
    masked, unmasked = model(x, mask=MASK), model(x)
    assert np.isnan(masked[2]).all() and not np.isnan(unmasked).any()
