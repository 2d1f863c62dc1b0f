"""fastgru's own file (save/load round trip, bit-exact, readable with numpy alone; int8 models as their
codes and scales, exactly; files of older versions), format detection in fastgru.load, and the textbook
update convention h' = (1 - z) * h + z * n."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import fastgru
from conftest import random_weights
from fastgru.io import flip_update_gate
from fastgru.io.load import sniff
from fastgru.io.safetensors import decode_metadata, decode_safetensors, read_metadata, write_safetensors
from fastgru.spec import GRUSpec

SPECS = [
    GRUSpec(3, 5),
    GRUSpec(3, 5, num_layers=2, bidirectional=True, batch_first=True, dtype="float64"),
    GRUSpec(4, 2, bias=False, reset_after=False, gate_activation="hard_sigmoid"),
    GRUSpec(1, 7, num_layers=3, gate_activation="hard_sigmoid_keras2", clip=2.5),
]


def _gru(spec, rng):
    return fastgru.GRU.from_spec(spec, random_weights(spec, rng, scale=0.7))


def _x(spec, rng, steps=6, batch=3):
    shape = (batch, steps, spec.input_size) if spec.batch_first else (steps, batch, spec.input_size)
    return rng.standard_normal(shape).astype(spec.dtype)


@pytest.mark.parametrize("spec", SPECS,
                         ids=lambda s: f"L{s.num_layers}-D{s.num_directions}-{s.dtype}-{s.gate_activation}")
def test_save_load_round_trip_is_bit_exact(rng, tmp_path, spec):
    gru = _gru(spec, rng)
    path = tmp_path / "model.fastgru"
    gru.save(path)
    loaded = fastgru.load(path)
    assert isinstance(loaded, fastgru.GRU) and loaded.spec == spec
    for name, value in gru.weights.items():
        assert loaded.weights[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded.weights[name], value, err_msg=name)
    x = _x(spec, rng)
    for actual, expected in zip(loaded(x), gru(x)):
        np.testing.assert_array_equal(actual, expected)


def test_file_is_json_spec_plus_raw_weights_readable_with_numpy_alone(rng, tmp_path):
    """The whole format in a few lines of numpy and json: no fastgru, safetensors or torch needed."""
    spec = SPECS[1]
    gru = _gru(spec, rng)
    path = tmp_path / "model.fastgru"
    gru.save(path)
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    metadata = header.pop("__metadata__")
    assert metadata["format"] == "fastgru" and GRUSpec.from_dict(json.loads(metadata["spec"])) == spec
    body = data[8 + header_size :]
    dtypes = {"F32": "<f4", "F64": "<f8"}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        np.testing.assert_array_equal(array, gru.weights[name], err_msg=name)
    assert set(header) == set(gru.weights)


def test_file_is_a_safetensors_file(rng, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    gru = _gru(SPECS[0], rng)
    path = tmp_path / "model.safetensors"
    gru.save(path)
    tensors = safetensors_numpy.load_file(str(path))
    for name, value in gru.weights.items():
        np.testing.assert_array_equal(tensors[name], value)


def _write_wrapper_file(path, gru, call):
    """A file as fastgru wrote Keras and ONNX GRU wrappers before whole models: spec, weights, "call"."""
    write_safetensors(path, gru.weights, {"format": "fastgru", "format_version": "1",
                                          "spec": json.dumps(gru.spec.to_dict()), "call": json.dumps(call)})


def test_files_of_keras_and_onnx_wrappers_load_as_the_same_models(rng, tmp_path):
    """Files of the KerasGRU / OnnxGRU wrappers of earlier versions load as one-layer Models that compute
    what the wrappers computed (Masking for the wrapper's mask_value, Keras' masking, ONNX's reverse)."""
    gru = _gru(GRUSpec(3, 4, batch_first=True), rng)
    _write_wrapper_file(tmp_path / "keras.fastgru", gru, {
        "kind": "keras", "return_sequences": True, "return_state": True, "go_backwards": True,
        "zero_output_for_mask": False, "merge_mode": "concat", "mask_value": 0.0})
    loaded = fastgru.load(tmp_path / "keras.fastgru")
    assert isinstance(loaded, fastgru.Model) and [layer.class_name for layer in loaded.layers] == ["Masking", "KerasGRU"]
    x = _x(gru.spec, rng)
    x[0, 4:] = 0.0  # masked by mask_value
    mask = np.any(x != 0.0, axis=-1)
    reversed_output, h_n = gru(np.ascontiguousarray(x[:, ::-1]), mask=np.ascontiguousarray(mask[:, ::-1].T))
    output, state = loaded(x)
    last = np.maximum.accumulate(np.where(mask[:, ::-1], np.arange(6), -1), axis=1)  # Keras repeats the last valid
    expected = np.where((last >= 0)[..., None], np.take_along_axis(reversed_output, np.maximum(last, 0)[..., None], 1), 0)
    np.testing.assert_array_equal(output, expected)
    np.testing.assert_array_equal(state, h_n[-1])

    onnx_gru = _gru(GRUSpec(3, 4), rng)
    _write_wrapper_file(tmp_path / "onnx.fastgru", onnx_gru, {"kind": "onnx", "reverse": True})
    loaded = fastgru.load(tmp_path / "onnx.fastgru")
    assert loaded.convention == "onnx" and loaded.layers[0].reverse
    x = _x(onnx_gru.spec, rng)
    lengths = np.array([6, 2, 4])
    flipped = np.stack([np.concatenate([x[:n, b][::-1], x[n:, b]]) for b, n in enumerate(lengths)], axis=1)
    output, h_n = onnx_gru(flipped, lengths=lengths)
    unflipped = np.stack([np.concatenate([output[:n, b][::-1], output[n:, b]]) for b, n in enumerate(lengths)], 1)
    y, y_h = loaded(x, lengths)
    np.testing.assert_array_equal(y[:, 0], unflipped)
    np.testing.assert_array_equal(y_h, h_n)


def test_load_recognises_files_by_content(rng, tmp_path):
    gru = _gru(SPECS[0], rng)
    odd_name = tmp_path / "weights.bin"  # an extension that suggests torch; the content says fastgru
    gru.save(odd_name)
    assert sniff(odd_name) == "safetensors"
    assert fastgru.load(odd_name).spec == gru.spec
    hdf5 = tmp_path / "x.model"
    hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    assert sniff(hdf5) == "h5"


def test_loading_a_fastgru_file_decodes_its_tensors_once(rng, tmp_path, monkeypatch):
    import fastgru.io.native as native
    import fastgru.io.safetensors as safetensors

    gru = _gru(SPECS[0], rng)
    gru.save(tmp_path / "m.fastgru")
    calls = []
    counting = lambda *a: calls.append(1) or decode_safetensors(*a)  # noqa: E731
    monkeypatch.setattr(native, "decode_safetensors", counting)  # the reader's own import
    monkeypatch.setattr(safetensors, "decode_safetensors", counting)  # anyone importing it at call time
    loaded = fastgru.load(tmp_path / "m.fastgru")
    assert calls == [1]  # the format is told from the header alone, the tensors decoded by the reader
    for name, value in gru.weights.items():
        np.testing.assert_array_equal(loaded.weights[name], value)


def test_metadata_comes_from_the_header_alone(rng, tmp_path):
    path = tmp_path / "m.fastgru"
    _gru(SPECS[0], rng).save(path)
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    truncated = data[: 8 + header_size + 16]  # the header whole, the tensors cut off
    assert decode_metadata(truncated, "t")["format"] == "fastgru"
    with pytest.raises(ValueError, match="truncated"):
        decode_safetensors(truncated, "t")
    with pytest.raises(ValueError, match="t: not a safetensors file"):
        decode_metadata(data[:6], "t")
    cut = _write_bytes(tmp_path / "cut.fastgru", truncated)
    assert read_metadata(cut)["format"] == "fastgru"  # read from the header, the rest of the file unread
    with pytest.raises(ValueError, match="truncated") as error:
        fastgru.load(cut)
    assert "cut.fastgru" in str(error.value)
    # a header cut short is judged on the whole file: the same error as decoding all of it
    short = _write_bytes(tmp_path / "short.fastgru", data[: 8 + header_size // 2])
    with pytest.raises(ValueError) as from_header:
        read_metadata(short)
    with pytest.raises(ValueError) as from_whole:
        decode_safetensors(short.read_bytes(), str(short))
    assert str(from_header.value) == str(from_whole.value)
    assert f"file of {8 + header_size // 2}" in str(from_header.value)


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


def _write_fastgru(path, spec, weights, **metadata):
    write_safetensors(path, weights, {"format": "fastgru", "format_version": "1",
                                      "spec": json.dumps(spec.to_dict()), **metadata})


def test_bad_fastgru_files_name_file_and_tensor(rng, tmp_path):
    spec = SPECS[0]
    weights = random_weights(spec, rng)
    missing = tmp_path / "missing.fastgru"
    _write_fastgru(missing, spec, {k: v for k, v in weights.items() if k != "bias_hh_l0"})
    with pytest.raises(ValueError, match=r"missing\.fastgru.*bias_hh_l0"):
        fastgru.load(missing)
    misshaped = tmp_path / "misshaped.fastgru"
    _write_fastgru(misshaped, spec, {**weights, "weight_hh_l0": np.zeros((15, 4))})
    with pytest.raises(ValueError, match=r"misshaped\.fastgru.*'weight_hh_l0'.*shape \(15, 4\)"):
        fastgru.load(misshaped)
    future = tmp_path / "future.fastgru"
    _write_fastgru(future, spec, weights, format_version="99")
    with pytest.raises(ValueError, match=r"future\.fastgru.*format_version '99'"):
        fastgru.load(future)
    bad_spec = tmp_path / "bad_spec.fastgru"
    write_safetensors(bad_spec, weights, {"format": "fastgru", "format_version": "1", "spec": "{not json"})
    with pytest.raises(ValueError, match=r"bad_spec\.fastgru.*spec"):
        fastgru.load(bad_spec)
    truncated = tmp_path / "truncated.fastgru"
    _gru(spec, rng).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"truncated\.fastgru.*(outside|truncated)"):
        fastgru.load(truncated)


# ---------------------------------------------------------------------------------------------
# int8 models: their codes and scales, exactly


INT8_SPECS = [GRUSpec(3, 5), GRUSpec(4, 13, num_layers=2, bidirectional=True, batch_first=True),
              GRUSpec(2, 9, bias=False, reset_after=False, gate_activation="hard_sigmoid", clip=3.0)]


def _same_int8_model(loaded, quantized, rng):
    assert loaded.weight_format == "int8" and loaded.spec == quantized.spec
    stored = quantized.int8_weights
    assert set(loaded.int8_weights) == set(stored)
    for name, value in stored.items():
        assert loaded.int8_weights[name].tobytes() == value.tobytes(), name
    x = _x(quantized.spec, rng)
    for actual, expected in zip(loaded(x), quantized(x)):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("spec", INT8_SPECS, ids=lambda s: f"L{s.num_layers}-D{s.num_directions}-{s.gate_activation}")
def test_int8_models_save_and_pickle_their_codes_exactly(rng, tmp_path, spec):
    import pickle

    quantized = _gru(spec, rng).quantize()
    path = tmp_path / "int8.fastgru"
    quantized.save(path)
    _same_int8_model(fastgru.load(path), quantized, rng)
    _same_int8_model(pickle.loads(pickle.dumps(quantized)), quantized, rng)
    # the file holds the codes (I8) and row scales (F32), not float weights
    tensors, metadata = decode_safetensors(path.read_bytes())
    assert json.loads(metadata["model"])["weight_format"] == "int8"
    for name, shape in spec.weight_shapes().items():
        if name.startswith("weight"):
            assert tensors[name].dtype == np.int8 and tensors[name].shape == shape
            assert tensors[name + ".scale"].dtype == np.float32 and tensors[name + ".scale"].shape == (shape[0],)
        else:
            assert tensors[name].dtype == np.float32
    # a quarter of the float32 file, give or take the scales and the header
    float_path = tmp_path / "float.fastgru"
    _gru(spec, rng).save(float_path)
    assert path.stat().st_size < 0.5 * float_path.stat().st_size + 1024


def test_int8_codes_load_exactly_even_where_quantizing_again_would_differ(rng, tmp_path):
    """Codes and scales that quantize() would not produce from their own dequantized weights (any codes in
    range with any scales are a model) come back as they were: loading never quantizes again."""
    spec = GRUSpec(3, 8)
    weights = {}
    for name, shape in spec.weight_shapes().items():
        if name.startswith("weight"):
            weights[name] = rng.integers(-60, 61, shape).astype(np.int8)  # max |code| < 127
            weights[name + ".scale"] = rng.uniform(1e-3, 1e-2, shape[0]).astype(np.float32)
        else:
            weights[name] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    model = fastgru.GRU.from_int8_weights(spec, weights)
    requantized = fastgru.GRU.from_spec(spec, model.weights).quantize()
    assert not np.array_equal(requantized.int8_weights["weight_hh_l0"], weights["weight_hh_l0"])
    model.save(tmp_path / "model.fastgru")
    _same_int8_model(fastgru.load(tmp_path / "model.fastgru"), model, rng)


def _write_gru_model(path, spec, tensors, weight_format):
    """A fastgru file of a GRU described under "model" (how int8 GRUs are stored)."""
    config = {"class": "GRU", "spec": spec.to_dict(), "weight_format": weight_format}
    write_safetensors(path, tensors, {"format": "fastgru", "format_version": "1", "model": json.dumps(config)})


def test_files_flagging_int8_over_float_weights_still_load(rng, tmp_path):
    """The form earlier fastgru versions wrote: float32 weights under "weight_format": "int8", quantized
    on load (deterministic, so the same int8 model)."""
    spec = GRUSpec(3, 5)
    gru = _gru(spec, rng)
    path = tmp_path / "flagged.fastgru"
    _write_gru_model(path, spec, gru.weights, "int8")
    _same_int8_model(fastgru.load(path), gru.quantize(), rng)


def test_bad_int8_files_name_file_and_tensor(rng, tmp_path):
    spec = GRUSpec(3, 5)
    stored = dict(_gru(spec, rng).quantize().int8_weights)
    codes = dict(stored, weight_hh_l0=np.full((15, 5), -128, np.int8))
    _write_gru_model(tmp_path / "codes.fastgru", spec, codes, "int8")
    with pytest.raises(ValueError, match=r"codes\.fastgru.*'weight_hh_l0'.*-127..127"):
        fastgru.load(tmp_path / "codes.fastgru")
    scales = dict(stored, **{"weight_ih_l0.scale": np.full(15, -1.0, np.float32)})
    _write_gru_model(tmp_path / "scales.fastgru", spec, scales, "int8")
    with pytest.raises(ValueError, match=r"scales\.fastgru.*'weight_ih_l0.scale'.*negative"):
        fastgru.load(tmp_path / "scales.fastgru")
    missing = {name: value for name, value in stored.items() if name != "weight_hh_l0.scale"}
    _write_gru_model(tmp_path / "missing.fastgru", spec, missing, "int8")
    with pytest.raises(ValueError, match=r"missing\.fastgru.*weight_hh_l0.scale"):
        fastgru.load(tmp_path / "missing.fastgru")
    _write_gru_model(tmp_path / "int4.fastgru", spec, stored, "int4")
    with pytest.raises(ValueError, match=r"int4\.fastgru.*weight_format 'int4'"):
        fastgru.load(tmp_path / "int4.fastgru")
    f64 = GRUSpec(3, 5, dtype="float64")
    _write_gru_model(tmp_path / "f64.fastgru", f64, stored, "int8")
    with pytest.raises(ValueError, match=r"f64\.fastgru.*float64"):
        fastgru.load(tmp_path / "f64.fastgru")


# ---------------------------------------------------------------------------------------------
# h' = (1 - z) * h + z * n


def _textbook_gru(weights, x, hidden, reset_after):
    """A hand-written single-layer cell with the textbook update; gates r, z, n as in PyTorch's layout."""
    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    h = np.zeros((x.shape[1], hidden))
    outputs = []
    for x_t in x:
        gx = x_t @ weights["weight_ih_l0"].T + weights["bias_ih_l0"]
        gh = h @ weights["weight_hh_l0"].T + weights["bias_hh_l0"]
        r = sigmoid(gx[:, :hidden] + gh[:, :hidden])
        z = sigmoid(gx[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        if reset_after:
            n = np.tanh(gx[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        else:
            n = np.tanh(gx[:, 2 * hidden :] + (r * h) @ weights["weight_hh_l0"][2 * hidden :].T
                        + weights["bias_hh_l0"][2 * hidden :])
        h = (1 - z) * h + z * n
        outputs.append(h)
    return np.stack(outputs)


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_textbook_update_convention_via_from_arrays(rng, reset_after):
    spec = GRUSpec(3, 5, reset_after=reset_after, dtype="float64")
    weights = random_weights(spec, rng, scale=0.8)
    x = rng.standard_normal((7, 2, 3))
    gru = fastgru.GRU.from_arrays(weights, reset_after=reset_after, update="z_takes_candidate")
    np.testing.assert_allclose(gru(x)[0], _textbook_gru(weights, x, 5, reset_after), atol=1e-12)


def test_flip_update_gate_negates_only_z_and_is_an_involution(rng):
    spec = GRUSpec(2, 3, num_layers=2, bidirectional=True)
    weights = random_weights(spec, rng)
    flipped = flip_update_gate(spec, weights)
    for name, value in weights.items():
        np.testing.assert_array_equal(flipped[name][3:6], -value[3:6])
        others = np.s_[3:6]
        np.testing.assert_array_equal(np.delete(flipped[name], others, axis=0), np.delete(value, others, axis=0))
        np.testing.assert_array_equal(flip_update_gate(spec, flipped)[name], value)
