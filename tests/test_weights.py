"""A model's weights: held once, as the core's panels (``packed_bytes``), unpacked back bit for bit by
``gru.weights``, and an int8 model's codes and scales out (``int8_weights``) and back in
(``GRU.from_int8_weights``) exactly, so the rebuilt model computes the same bits on every kernel set."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

import fastgru
from conftest import random_weights
from fastgru import _core
from fastgru.spec import GRUSpec

# Every dtype, variant, bias or none, direction count, 1-3 layers, and hidden sizes that leave a tail
# block (1, 3, 13: not a multiple of the 8-unit block) or none (16); input sizes that are not either.
SHAPES = [(1, 1, 1), (5, 3, 2), (7, 13, 3), (16, 16, 1), (2, 9, 2)]
STRUCTURE = list(itertools.product(["float32", "float64"], [True, False], [True, False], [False, True]))


def _structure_id(row):
    dtype, reset_after, bias, bidirectional = row
    return f"{dtype}-{'ra' if reset_after else 'rb'}-{'bias' if bias else 'nobias'}-{'bi' if bidirectional else 'uni'}"


def _awkward_weights(spec, rng):
    """Random weights of the spec's dtype with values a lossy path would change: signed zeros, the
    smallest subnormal, huge and tiny magnitudes."""
    weights = {}
    for name, shape in spec.weight_shapes().items():
        array = rng.uniform(-2, 2, shape).astype(spec.dtype)
        flat = array.reshape(-1)
        specials = np.array([-0.0, 0.0, np.finfo(spec.dtype).smallest_subnormal, -np.finfo(spec.dtype).max,
                             np.finfo(spec.dtype).tiny, 1e-30], dtype=spec.dtype)
        picks = rng.choice(flat.size, size=min(flat.size, len(specials)), replace=False)
        flat[picks] = specials[: len(picks)]
        weights[name] = array
    return weights


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "I{}-H{}-L{}".format(*s))
@pytest.mark.parametrize("structure", STRUCTURE, ids=_structure_id)
def test_weights_come_back_bit_for_bit(rng, structure, shape):
    dtype, reset_after, bias, bidirectional = structure
    spec = GRUSpec(*shape, bidirectional, bias=bias, reset_after=reset_after, dtype=dtype)
    given = _awkward_weights(spec, rng)
    gru = fastgru.GRU.from_arrays(given, reset_after=reset_after, dtype=dtype)
    assert gru.spec == spec
    back = gru.weights
    assert list(back) == list(spec.weight_shapes())
    for name, value in given.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape, name
        # bit for bit, signed zeros included
        assert back[name].tobytes() == value.tobytes(), name
        assert not back[name].flags.writeable
    # a fresh copy per access, never a view of something the model keeps
    again = gru.weights
    assert all(not np.shares_memory(back[name], again[name]) for name in back)
    # and the model they make is the same model
    x = rng.standard_normal((4, 2, spec.input_size))
    rebuilt = fastgru.GRU.from_arrays(back, reset_after=reset_after, dtype=dtype)
    for a, b in zip(gru(x), rebuilt(x)):
        np.testing.assert_array_equal(a, b)


def test_biases_that_cannot_be_told_apart_once_folded_come_back(rng):
    """b_ih + b_hh rounds: (1, 2^-30) and (1 + 2^-30 rounded, 0) fold to the same float32, yet each model
    returns its own biases."""
    spec = GRUSpec(2, 3, dtype="float32")
    weights = random_weights(spec, rng)
    weights["bias_ih_l0"] = np.full(9, 1.0, np.float32)
    weights["bias_hh_l0"] = np.full(9, 2.0 ** -30, np.float32)
    other = dict(weights, bias_hh_l0=np.zeros(9, np.float32))
    first, second = fastgru.GRU.from_spec(spec, weights), fastgru.GRU.from_spec(spec, other)
    x = rng.standard_normal((3, 1, 2))
    np.testing.assert_array_equal(first(x)[0], second(x)[0])  # the same folded model...
    assert first.weights["bias_hh_l0"].tobytes() == weights["bias_hh_l0"].tobytes()  # ...its own biases
    assert second.weights["bias_hh_l0"].tobytes() == other["bias_hh_l0"].tobytes()


def test_nan_and_infinite_weights_come_back(rng):
    spec = GRUSpec(3, 5, dtype="float64")
    weights = random_weights(spec, rng)
    weights["weight_hh_l0"][1, 2] = np.nan
    weights["weight_ih_l0"][0, 0] = -np.inf
    weights["bias_hh_l0"][4] = np.inf
    back = fastgru.GRU.from_spec(spec, weights).weights
    for name, value in weights.items():
        assert back[name].tobytes() == value.tobytes(), name


# ---------------------------------------------------------------------------------------------
# what the model holds


def _panel_elements(spec: GRUSpec) -> int:
    """Weights as the core holds them: W_ih and W_hh with the unit count rounded up to blocks of 8."""
    padded = -(-spec.hidden_size // 8) * 8
    return sum(3 * padded * (spec.layer_input_size(layer) + spec.hidden_size) for layer, _ in spec.layer_keys())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("sizes", [(64, 64, 1, False), (33, 13, 2, True), (256, 256, 2, True)],
                         ids=lambda s: "I{}-H{}-L{}-{}".format(s[0], s[1], s[2], "bi" if s[3] else "uni"))
def test_a_float_model_holds_its_weights_once(rng, dtype, reset_after, sizes):
    spec = GRUSpec(*sizes, reset_after=reset_after, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    itemsize = np.dtype(dtype).itemsize
    weights = sum(int(np.prod(shape)) for name, shape in spec.weight_shapes().items() if name.startswith("weight"))
    # panels (padded to whole blocks), the biases three ways (as given, folded, b_hn: 10H per direction),
    # a cache line of alignment per array and the layer table
    directions = spec.num_layers * spec.num_directions
    bound = (_panel_elements(spec) + 10 * spec.hidden_size * directions) * itemsize + 64 * (7 * directions + 2 * spec.num_layers)
    assert weights * itemsize <= gru.packed_bytes <= bound
    if spec.hidden_size % 8 == 0 and spec.hidden_size >= 64:
        assert gru.packed_bytes < 1.05 * weights * itemsize  # once, not twice


def test_a_backward_leaves_the_model_as_it_was(rng):
    """The backward's row-major operands live in its workspace: the model neither grows nor changes."""
    spec = GRUSpec(6, 20, 2, True, dtype="float64")
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    before, weights = gru.packed_bytes, gru.weights
    x = rng.standard_normal((5, 3, 6))
    output, _, tape = gru.forward(x, return_tape=True)
    gru.backward(tape, np.ones_like(output))
    assert gru.packed_bytes == before
    assert all(gru.weights[name].tobytes() == value.tobytes() for name, value in weights.items())


# ---------------------------------------------------------------------------------------------
# int8: the codes exactly


def _codes_and_scales(weight):
    """docs/int8.md: per row, scale = max|row| / 127 in float32, codes round-half-even(w / scale)."""
    w = np.asarray(weight, np.float32)
    scale = np.abs(w).max(axis=1) / np.float32(127)
    safe = np.where(scale > 0, scale, np.float32(1))
    codes = np.where(scale[:, None] > 0, np.clip(np.rint(w / safe[:, None]), -127, 127), 0)
    return codes.astype(np.int8), scale.astype(np.float32)


INT8_STRUCTURE = [(True, True, False, (5, 13, 1)), (False, True, True, (7, 3, 2)), (True, False, True, (16, 16, 2)),
                  (False, False, False, (1, 9, 3)), (True, True, True, (40, 19, 1))]


def _int8_id(row):
    reset_after, bias, bidirectional, sizes = row
    return (f"{'ra' if reset_after else 'rb'}-{'bias' if bias else 'nobias'}-{'bi' if bidirectional else 'uni'}"
            f"-I{sizes[0]}-H{sizes[1]}-L{sizes[2]}")


def _quantized(rng, reset_after, bias, bidirectional, sizes, **options):
    spec = GRUSpec(*sizes, bidirectional, bias=bias, reset_after=reset_after, **options)
    weights = random_weights(spec, rng, scale=0.7)
    weights["weight_hh_l0"][1] = 0  # an all-zero row: scale 0
    return fastgru.GRU.from_spec(spec, weights).quantize(), weights


@pytest.mark.parametrize("structure", INT8_STRUCTURE, ids=_int8_id)
def test_int8_weights_are_the_documented_codes_and_scales(rng, structure):
    quantized, weights = _quantized(rng, *structure)
    stored = quantized.int8_weights
    assert set(stored) == {*weights, *(name + ".scale" for name in weights if name.startswith("weight"))}
    for name, value in weights.items():
        if name.startswith("weight"):
            codes, scale = _codes_and_scales(value)
            assert stored[name].dtype == np.int8 and stored[name].shape == value.shape
            np.testing.assert_array_equal(stored[name], codes, err_msg=name)
            assert stored[name + ".scale"].dtype == np.float32
            assert stored[name + ".scale"].tobytes() == scale.tobytes(), name
        else:
            assert stored[name].tobytes() == value.astype(np.float32).tobytes(), name
        assert not stored[name].flags.writeable


@pytest.mark.parametrize("structure", INT8_STRUCTURE, ids=_int8_id)
def test_an_int8_model_rebuilt_from_its_codes_computes_the_same_bits(rng, structure):
    quantized, _ = _quantized(rng, *structure, gate_activation="hard_sigmoid" if structure[0] else "sigmoid",
                              clip=2.5 if structure[1] else None)
    rebuilt = fastgru.GRU.from_int8_weights(quantized.spec, quantized.int8_weights)
    assert rebuilt.weight_format == "int8" and rebuilt.spec == quantized.spec
    assert rebuilt.packed_bytes == quantized.packed_bytes
    for name, value in quantized.int8_weights.items():
        assert rebuilt.int8_weights[name].tobytes() == value.tobytes(), name
    spec = quantized.spec
    x = rng.standard_normal((9, 3, spec.input_size)).astype(np.float32)
    h0 = rng.uniform(-1.5, 1.5, (spec.num_layers * spec.num_directions, 3, spec.hidden_size))
    lengths = [9, 4, 1]
    try:
        for isa in _core.supported_isas():
            _core.set_backend(isa=isa)
            for threads in (1, 2):
                for args in ((x,), (x, h0, lengths)):
                    for a, b in zip(quantized(*args, num_threads=threads), rebuilt(*args, num_threads=threads)):
                        np.testing.assert_array_equal(a, b, err_msg=f"{isa}, {threads} thread(s)")
            if not spec.bidirectional:
                s1, s2 = quantized.stream(3), rebuilt.stream(3)
                for t in range(3):
                    np.testing.assert_array_equal(s1.step(x[t]), s2.step(x[t]), err_msg=isa)
    finally:
        _core.set_backend()


def test_int8_weights_by_hand_make_a_model(rng):
    """Any codes in range and scales >= 0 are a model: one row of codes times its scale is its weight
    row, as a float32 model of the dequantized weights would see it."""
    spec = GRUSpec(4, 8)
    weights = {}
    for name, shape in spec.weight_shapes().items():
        if name.startswith("weight"):
            weights[name] = rng.integers(-127, 128, shape).astype(np.int8)
            weights[name + ".scale"] = rng.uniform(0, 0.01, shape[0]).astype(np.float32)
        else:
            weights[name] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    weights["weight_ih_l0"][0] = 127  # the extreme codes
    weights["weight_ih_l0"][1] = -127
    gru = fastgru.GRU.from_int8_weights(spec, weights)
    assert all(gru.int8_weights[name].tobytes() == value.tobytes() for name, value in weights.items())
    dequantized = gru.weights
    np.testing.assert_array_equal(dequantized["weight_hh_l0"],
                                  weights["weight_hh_l0"].astype(np.float32) * weights["weight_hh_l0.scale"][:, None])
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    reference, _ = fastgru.GRU.from_spec(spec, dequantized)(x)
    output, _ = gru(x)
    assert np.abs(output - reference).max() < 0.05  # the activations' quantization only


def test_int8_codes_of_other_integer_dtypes_and_float32_stored_wider_are_taken(rng):
    quantized, _ = _quantized(rng, True, True, False, (3, 5, 1))
    stored = quantized.int8_weights
    widened = {name: value.astype(np.int64) if value.dtype == np.int8 else value.astype(np.float64)
               for name, value in stored.items()}
    rebuilt = fastgru.GRU.from_int8_weights(quantized.spec, widened)
    assert all(rebuilt.int8_weights[name].tobytes() == value.tobytes() for name, value in stored.items())


def _good_int8(rng):
    quantized, _ = _quantized(rng, True, True, False, (3, 5, 1))
    return quantized.spec, dict(quantized.int8_weights)


@pytest.mark.parametrize("damage, error, match", [
    (lambda w: w.__setitem__("weight_ih_l0", np.full((15, 3), -128, np.int16)), ValueError, "outside -127..127"),
    (lambda w: w.__setitem__("weight_hh_l0", np.full((15, 5), 128, np.int16)), ValueError, "outside -127..127"),
    (lambda w: w.__setitem__("weight_hh_l0", w["weight_hh_l0"].astype(np.float32)), TypeError, "int8 codes"),
    (lambda w: w.__setitem__("weight_ih_l0.scale", -w["weight_ih_l0.scale"] - 1), ValueError, "negative or not finite"),
    (lambda w: w.__setitem__("weight_hh_l0.scale", np.full(15, np.nan, np.float32)), ValueError, "not finite"),
    (lambda w: w.__setitem__("weight_hh_l0.scale", np.full(15, np.inf, np.float32)), ValueError, "not finite"),
    (lambda w: w.__setitem__("weight_hh_l0.scale", np.full(15, 0.1, np.float64)), ValueError, "float32 cannot"),
    (lambda w: w.__setitem__("weight_hh_l0.scale", np.ones(14, np.float32)), ValueError, r"shape \(14,\)"),
    (lambda w: w.__setitem__("weight_ih_l0", np.zeros((15, 4), np.int8)), ValueError, r"shape \(15, 4\)"),
    (lambda w: w.pop("weight_ih_l0.scale"), ValueError, "missing"),
    (lambda w: w.__setitem__("weight_ih_l1", np.zeros((15, 5), np.int8)), ValueError, "unexpected"),
    (lambda w: w.__setitem__("bias_ih_l0", np.zeros(15, np.int8)), TypeError, "float32"),
], ids=["code-128", "code128", "float-codes", "negative-scale", "nan-scale", "inf-scale", "inexact-scale",
        "scale-shape", "codes-shape", "missing", "extra", "int-bias"])
def test_bad_int8_weights_are_refused_by_name(rng, damage, error, match):
    spec, weights = _good_int8(rng)
    damage(weights)
    with pytest.raises(error, match=match):
        fastgru.GRU.from_int8_weights(spec, weights, source="model.fastgru")
    with pytest.raises(error, match="model.fastgru"):
        fastgru.GRU.from_int8_weights(spec, weights, source="model.fastgru")


def test_int8_weights_need_a_float32_spec(rng):
    spec, weights = _good_int8(rng)
    with pytest.raises(TypeError, match="float32"):
        fastgru.GRU.from_int8_weights(dataclasses.replace(spec, dtype="float64"), weights)


def test_the_core_refuses_bad_codes_and_scales_itself(rng):
    """The binding's last line of defence: codes, scales and buffers that got past Python reach
    fg_gru_create_int8, which refuses them with FG_ERR_INVALID_WEIGHTS (or the buffer checks do)."""
    spec, weights = _good_int8(rng)

    def build(**replace):
        entry = [weights["weight_ih_l0"], weights["weight_ih_l0.scale"], weights["weight_hh_l0"],
                 weights["weight_hh_l0.scale"], weights["bias_ih_l0"], weights["bias_hh_l0"]]
        for index, value in replace.items():
            entry[int(index[1:])] = value
        return _core.Model.from_int8(3, 5, 1, 1, True, None, 0.0, [tuple(entry)])

    build()  # the good arrays make a model
    codes = np.array(weights["weight_hh_l0"])
    codes[2, 3] = -128
    with pytest.raises(ValueError, match="outside -127..127"):
        build(i2=codes)
    for bad in (-1e-3, np.nan, np.inf, -np.inf):
        scale = np.array(weights["weight_ih_l0.scale"])
        scale[7] = bad
        with pytest.raises(ValueError, match="negative or not finite"):
            build(i1=scale)
    with pytest.raises(TypeError, match="int8"):
        build(i0=weights["weight_ih_l0"].astype(np.int16))
    with pytest.raises(ValueError, match="elements"):
        build(i3=np.ones(14, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        build(i0=np.asfortranarray(weights["weight_ih_l0"]))
    with pytest.raises(ValueError, match="codes and scales"):
        build(i1=None)


def test_quantize_refuses_an_int8_model_and_int8_weights_a_float_one(rng):
    quantized, _ = _quantized(rng, True, True, False, (3, 5, 1))
    rebuilt = fastgru.GRU.from_int8_weights(quantized.spec, quantized.int8_weights)
    for model in (quantized, rebuilt):
        with pytest.raises(ValueError, match="already int8"):
            model.quantize()
    with pytest.raises(ValueError, match="not int8"):
        fastgru.GRU(3, 5).int8_weights


def test_int8_models_keep_the_initial_state(rng):
    quantized, _ = _quantized(rng, True, True, False, (3, 5, 2))
    initial = rng.uniform(-0.5, 0.5, (2, 5))
    rebuilt = fastgru.GRU.from_int8_weights(quantized.spec, quantized.int8_weights, initial_state=initial)
    x = rng.standard_normal((4, 2, 3))
    np.testing.assert_array_equal(rebuilt(x)[0], quantized.with_initial_state(initial)(x)[0])
