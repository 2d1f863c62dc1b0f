"""Malformed and unusual input to every public call: a clear exception naming the argument, or the right
answer, and never a crash, a hang or a silently wrong result (the accepted inputs and the
exceptions are listed in docs/errors.md).

tests/test_forward.py already covers wrong shapes of x, h0, lengths and mask, most input layouts and
dtypes, B = 0 and T = 0; this file covers the rest: wrong dtypes of every argument, lengths in every
order, empty edge cases in combination, sizes past the limits, NaN and Inf against torch, unaligned,
byte-swapped, broadcast and read-only buffers, the dtype conversion rule, the constructors, threads and
streams."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastgru
from conftest import random_inputs, random_weights, rounded, torch_gru, torch_run
from fastgru import reference
from fastgru.spec import GRUSpec

DTYPES = ["float32", "float64"]
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def _model(dtype="float32", batch_first=False, layers=2, bidirectional=True, input_size=7, hidden_size=5,
           reset_after=True, seed=0):
    spec = GRUSpec(input_size, hidden_size, layers, bidirectional, batch_first, reset_after=reset_after, dtype=dtype)
    return fastgru.GRU.from_spec(spec, random_weights(spec, np.random.default_rng(seed)))


def _raises_naming(exception, argument, call, pattern=""):
    with pytest.raises(exception) as info:
        call()
    message = str(info.value)
    assert re.search(rf"\b{argument}\b", message), f"message does not name {argument!r}: {message}"
    assert re.search(pattern, message), f"message does not match {pattern!r}: {message}"


def _max_diff(actual, expected):
    return float(np.max(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64)), initial=0.0))


# ---------------------------------------------------------------------------------------------
# wrong dtypes: a TypeError naming the argument

X = np.zeros((6, 2, 7), np.float32)  # T = 6, B = 2, I = 7 for the model of _model()

BAD_DTYPES = {
    # name: (arguments, the argument the message must name)
    "x_complex": (dict(x=np.zeros((6, 2, 7), np.complex64)), "x"),
    "x_bool": (dict(x=np.zeros((6, 2, 7), bool)), "x"),
    "x_object": (dict(x=np.zeros((6, 2, 7), object)), "x"),
    "x_datetime": (dict(x=np.zeros((6, 2, 7), "datetime64[s]")), "x"),
    "x_none": (dict(x=None), "x"),
    "h0_complex": (dict(h0=np.zeros((4, 2, 5), np.complex128)), "h0"),
    "h0_bool": (dict(h0=np.zeros((4, 2, 5), bool)), "h0"),
    "h0_strings": (dict(h0=np.full((4, 2, 5), "0")), "h0"),
    "lengths_bool": (dict(lengths=np.array([True, True])), "lengths"),
    "lengths_integral_floats": (dict(lengths=np.array([2.0, 6.0])), "lengths"),
    "lengths_complex": (dict(lengths=np.array([2, 6], np.complex64)), "lengths"),
    "mask_float": (dict(mask=np.ones((6, 2), np.float32)), "mask"),
    "mask_object": (dict(mask=np.ones((6, 2), object)), "mask"),
}


@pytest.mark.parametrize("name", list(BAD_DTYPES))
def test_wrong_dtype_raises_type_error_naming_the_argument(name):
    arguments, argument = BAD_DTYPES[name]
    arguments = {"x": X, **arguments}
    gru = _model()
    _raises_naming(TypeError, argument, lambda: gru(arguments.pop("x"), **arguments))


BAD_VALUES = {
    "x_scalar": (dict(x=3.0), "x", r"3-D"),
    "x_empty_list": (dict(x=[]), "x", r"3-D"),
    "lengths_scalar": (dict(lengths=3), "lengths", r"\(2,\)"),
    "lengths_uint64_max": (dict(lengths=np.array([2**64 - 1, 1], np.uint64)), "lengths", r"1\.\.T"),
    "lengths_int64_min": (dict(lengths=np.array([-(2**63), 1], np.int64)), "lengths", r"1\.\.T"),
    "lengths_int8_negative": (dict(lengths=np.array([-1, 1], np.int8)), "lengths", r"1\.\.T"),
    "h0_batch_first_layout": (dict(h0=np.zeros((2, 4, 5), np.float32)), "h0", r"\(4, 2, 5\)"),
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_bad_value_raises_value_error_naming_the_argument(name):
    arguments, argument, pattern = BAD_VALUES[name]
    arguments = {"x": X, **arguments}
    gru = _model()
    _raises_naming(ValueError, argument, lambda: gru(arguments.pop("x"), **arguments), pattern)


# ---------------------------------------------------------------------------------------------
# lengths in any order


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["ascending", "descending", "all_equal", "shuffled", "one_long"])
def test_lengths_in_any_order_match_torch(torch, rng, order, dtype):
    spec = GRUSpec(3, 6, 2, True, dtype=dtype)
    weights = random_weights(spec, rng)
    steps, batch = 7, 6
    lengths = {
        "ascending": np.array([1, 2, 3, 5, 6, 7]),
        "descending": np.array([7, 6, 5, 3, 2, 1]),
        "all_equal": np.full(batch, 4),
        "shuffled": np.array([3, 7, 1, 6, 2, 5]),
        "one_long": np.array([1, 1, 7, 1, 1, 1]),
    }[order]
    x, h0, _ = random_inputs(spec, rng, steps, batch, with_h0=True)
    output, h_n = fastgru.GRU.from_spec(spec, weights)(x, h0, lengths)
    module = torch_gru(torch, spec, weights)
    to_tensor = lambda a: torch.tensor(a, dtype=getattr(torch, dtype))  # noqa: E731
    with torch.no_grad():
        expected_output, expected_h_n = torch_run(torch, module, to_tensor(x), to_tensor(h0), lengths)
    assert _max_diff(output, expected_output.double().numpy()) <= TOLERANCE[dtype]
    assert _max_diff(h_n, expected_h_n.double().numpy()) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_permuting_the_batch_permutes_the_results(rng, batch_first, dtype):
    """The core sorts rows by length internally: any order of the batch gives each row the same answer."""
    spec = GRUSpec(4, 11, 2, True, batch_first, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x, h0, lengths = random_inputs(spec, rng, steps=9, batch=7, with_h0=True, with_lengths=True)
    output, h_n = gru(x, h0, lengths)
    permutation = rng.permutation(7)
    batch_axis = 0 if batch_first else 1
    permuted_output, permuted_h_n = gru(np.take(x, permutation, axis=batch_axis), h0[:, permutation], lengths[permutation])
    # rows are grouped differently in the panel products, so the rounding may differ in the last bits
    assert _max_diff(permuted_output, np.take(output, permutation, axis=batch_axis)) <= TOLERANCE[dtype] / 10
    assert _max_diff(permuted_h_n, h_n[:, permutation]) <= TOLERANCE[dtype] / 10


# ---------------------------------------------------------------------------------------------
# empty edge cases in combination


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("arguments", ["none", "h0", "mask", "h0_and_mask"])
def test_no_time_steps_and_no_batch_give_empty_arrays(batch_first, arguments):
    gru = _model(batch_first=batch_first)
    x = np.zeros((0, 0, 7), np.float32)
    h0 = np.zeros((4, 0, 5)) if "h0" in arguments else None
    mask = np.zeros((0, 0), bool) if "mask" in arguments else None
    output, h_n = gru(x, h0, mask=mask)
    assert output.shape == (0, 0, 10) and h_n.shape == (4, 0, 5)
    assert output.dtype == np.float32 and h_n.dtype == np.float32


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_no_time_steps_with_a_mask_returns_h0(rng, batch_first):
    gru = _model("float64", batch_first=batch_first)
    h0 = rng.standard_normal((4, 3, 5))
    x = np.zeros((3, 0, 7) if batch_first else (0, 3, 7))
    output, h_n = gru(x, h0, mask=np.zeros((0, 3), bool))
    assert output.shape == ((3, 0, 10) if batch_first else (0, 3, 10))
    np.testing.assert_array_equal(h_n, h0)


def test_no_time_steps_refuses_lengths():
    """lengths must lie in 1..T, which is empty for T = 0 (but fine for B = 0)."""
    gru = _model()
    _raises_naming(ValueError, "lengths", lambda: gru(np.zeros((0, 2, 7)), lengths=[1, 1]), r"1\.\.T")
    output, h_n = gru(np.zeros((0, 0, 7)), lengths=np.zeros(0, np.int64))
    assert output.shape == (0, 0, 10) and h_n.shape == (4, 0, 5)


def test_no_time_steps_cannot_be_differentiated():
    gru = _model()
    with pytest.raises(ValueError, match="0 time steps"):
        gru.forward(np.zeros((0, 2, 7)), return_tape=True)


def test_a_mask_with_no_valid_step_keeps_h0_and_outputs_zeros(rng):
    gru = _model("float64")
    h0 = rng.standard_normal((4, 2, 5))
    output, h_n = gru(rng.standard_normal((6, 2, 7)), h0, mask=np.zeros((6, 2), bool))
    np.testing.assert_array_equal(output, 0)
    np.testing.assert_array_equal(h_n, h0)


# ---------------------------------------------------------------------------------------------
# sizes past the limits: a clear error, no crash and no attempt to allocate absurd amounts


def test_input_too_large_to_exist_is_a_clear_error():
    """A broadcast view claims 7 * 2**58 elements (7 * 2**60 bytes); converting it to C order cannot succeed."""
    gru = _model()
    x = np.broadcast_to(np.float32(0), (2**30, 2**28, 7))
    with pytest.raises((ValueError, MemoryError)):
        gru(x)


def test_batch_past_the_32_bit_blas_limit_is_a_value_error():
    """x of 2**28 rows (1 GiB of zero pages, never touched): the binding refuses B >= 2**28 (the
    backward GEMMs take 32-bit sizes) before it allocates a workspace."""
    gru = _model(layers=1, bidirectional=False, input_size=1, hidden_size=1)
    x = np.zeros((1, 2**28, 1), np.float32)
    with pytest.raises(ValueError, match="batch size"):
        gru(x)


def test_too_many_threads_is_a_value_error():
    gru = _model()
    with pytest.raises(ValueError, match="thread pool"):
        gru(X, num_threads=100_000)


@pytest.mark.parametrize("num_threads", [0, -1, True, 1.5, "2", 2.0])
def test_num_threads_must_be_a_positive_integer(num_threads):
    gru = _model()
    _raises_naming(ValueError, "num_threads", lambda: gru(X, num_threads=num_threads))
    _raises_naming(ValueError, "num_threads", lambda: fastgru.GRU(3, 4, num_threads=num_threads))


# ---------------------------------------------------------------------------------------------
# NaN and Inf: propagated as torch propagates them; padding never leaks into valid steps

NON_FINITE_PLACES = {
    "nan_in_x": lambda x, h0: x.__setitem__((2, 1, 0), np.nan),
    "inf_in_x": lambda x, h0: x.__setitem__((3, 0, 2), np.inf),
    "minus_inf_in_x": lambda x, h0: x.__setitem__((0, 2, 1), -np.inf),
    "nan_in_h0": lambda x, h0: h0.__setitem__((1, 2, 3), np.nan),
    "inf_in_h0": lambda x, h0: h0.__setitem__((0, 1, 0), np.inf),
    "huge_x": lambda x, h0: x.__setitem__((1, 1, slice(None)), 1e30),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("place", list(NON_FINITE_PLACES))
def test_non_finite_inputs_propagate_like_torch(torch, rng, place, reset_after, dtype):
    spec = GRUSpec(3, 5, 2, False, dtype=dtype, reset_after=reset_after)
    weights = random_weights(spec, rng)
    x, h0, _ = random_inputs(spec, rng, steps=5, batch=3, with_h0=True)
    NON_FINITE_PLACES[place](x, h0)
    with np.errstate(all="ignore"):
        output, h_n = fastgru.GRU.from_spec(spec, weights)(x, h0)
    if reset_after:
        module = torch_gru(torch, spec, weights)
        to_tensor = lambda a: torch.tensor(a, dtype=getattr(torch, dtype))  # noqa: E731
        with torch.no_grad():
            expected_output, expected_h_n = (t.double().numpy() for t in module(to_tensor(x), to_tensor(h0)))
    else:  # torch has no reset-before cell: the float64 reference stands in
        with np.errstate(all="ignore"):
            expected_output, expected_h_n = reference.forward(spec, weights, x, h0)
    tolerance = TOLERANCE[dtype] * 10
    np.testing.assert_allclose(output, expected_output, rtol=0, atol=tolerance, equal_nan=True)
    np.testing.assert_allclose(h_n, expected_h_n, rtol=0, atol=tolerance, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_non_finite_padding_past_lengths_changes_nothing(rng, bidirectional, dtype):
    """Padding is not read: NaN and Inf past a sequence's length leave every result finite and equal."""
    spec = GRUSpec(3, 6, 2, bidirectional, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x, h0, _ = random_inputs(spec, rng, steps=8, batch=4, with_h0=True)
    lengths = np.array([3, 8, 1, 5])
    clean_output, clean_h_n = gru(x, h0, lengths)
    dirty = x.copy()
    for b, length in enumerate(lengths):
        dirty[length:, b] = np.nan
        dirty[length:, b, 0] = np.inf
    output, h_n = gru(dirty, h0, lengths)
    assert np.isfinite(output).all() and np.isfinite(h_n).all()
    np.testing.assert_array_equal(output, clean_output)
    np.testing.assert_array_equal(h_n, clean_h_n)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_masked_steps_change_nothing(rng, dtype):
    spec = GRUSpec(3, 6, 1, True, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x, h0, _ = random_inputs(spec, rng, steps=7, batch=3, with_h0=True)
    mask = rng.random((7, 3)) < 0.5
    clean = gru(x, h0, mask=mask)
    dirty_x = x.copy()
    dirty_x[~mask] = np.nan
    dirty = gru(dirty_x, h0, mask=mask)
    for clean_array, dirty_array in zip(clean, dirty):
        np.testing.assert_array_equal(dirty_array, clean_array)


# ---------------------------------------------------------------------------------------------
# unusual buffers: correct results


def _unaligned(array):
    """A C-contiguous copy of `array` whose data starts one byte past an aligned address."""
    raw = np.zeros(array.nbytes + 1, np.uint8)
    view = np.frombuffer(raw.data, dtype=array.dtype, count=array.size, offset=1).reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned or array.dtype.itemsize == 1
    return view


BUFFERS = {
    "unaligned": _unaligned,
    "byte_swapped": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "read_only_fortran": lambda a: (lambda f: (f.flags.__setattr__("writeable", False), f)[1])(np.asfortranarray(a)),
    "memoryview": lambda a: memoryview(np.ascontiguousarray(a)),
    "nested_lists": lambda a: a.tolist(),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("buffer", list(BUFFERS))
def test_unusual_buffers_give_the_same_result(rng, buffer, dtype):
    spec = GRUSpec(4, 9, 2, True, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x, h0, lengths = random_inputs(spec, rng, steps=6, batch=3, with_h0=True, with_lengths=True)
    x, h0 = x.astype(dtype), h0.astype(dtype)
    mask = rng.random((6, 3)) < 0.7
    convert = BUFFERS[buffer]
    for arguments in (dict(lengths=lengths), dict(mask=mask)):
        expected = gru(x, h0, **arguments)
        unusual = {name: convert(np.asarray(value)) for name, value in arguments.items()}
        actual = gru(convert(x), convert(h0), **unusual)
        for a, e in zip(actual, expected):
            np.testing.assert_array_equal(a, e)


class _ModelSpy:
    """Stands in for GRU._model: records the arrays handed to the binding's forward, then runs the real
    one on aligned copies (so that this test feeds nothing misaligned to the core itself)."""

    def __init__(self, model):
        self._model, self.arrays = model, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def forward(self, *arguments):
        self.arrays += [a for a in arguments if isinstance(a, np.ndarray)]
        aligned = [np.require(a, requirements="A") if isinstance(a, np.ndarray) and not a.flags.aligned else a
                   for a in arguments]
        return self._model.forward(*aligned)


@pytest.mark.parametrize("argument", ["x", "h0", "lengths"])
def test_the_core_is_handed_aligned_buffers(rng, argument):
    gru = _model("float64")
    arguments = dict(x=rng.standard_normal((6, 2, 7)), h0=rng.standard_normal((4, 2, 5)), lengths=np.array([3, 6]))
    arguments[argument] = _unaligned(arguments[argument])
    spy = gru._model = _ModelSpy(gru._model)
    gru(**arguments)
    assert spy.arrays and all(array.flags.aligned for array in spy.arrays)


@pytest.mark.parametrize("dtype", DTYPES)
def test_broadcast_input_gives_the_same_result(rng, dtype):
    """A zero-stride (read-only) view, as np.broadcast_to makes, reads like the materialised array."""
    gru = _model(dtype)
    row = rng.standard_normal(7).astype(dtype)
    x = np.broadcast_to(row, (6, 2, 7))
    h0 = np.broadcast_to(rng.standard_normal(5).astype(dtype), (4, 2, 5))
    expected = gru(np.array(x), np.array(h0))
    for a, e in zip(gru(x, h0), expected):
        np.testing.assert_array_equal(a, e)


def test_results_are_fresh_writable_arrays(rng):
    """Each call returns new arrays: writing into one result changes no other result nor the model."""
    gru = _model("float64")
    x = rng.standard_normal((6, 2, 7))
    first_output, first_h_n = gru(x)
    saved = first_output.copy(), first_h_n.copy()
    second_output, second_h_n = gru(x)
    for array in (first_output, first_h_n, second_output, second_h_n):
        assert array.flags.c_contiguous and array.flags.writeable and array.flags.owndata
    first_output[...] = 7
    first_h_n[...] = 7
    np.testing.assert_array_equal(second_output, saved[0])
    np.testing.assert_array_equal(second_h_n, saved[1])
    third = gru(x)
    np.testing.assert_array_equal(third[0], saved[0])
    np.testing.assert_array_equal(third[1], saved[1])


# ---------------------------------------------------------------------------------------------
# the dtype rule: inputs are converted to the model's dtype (rounding to nearest), outputs have it


@pytest.mark.parametrize("model_dtype", DTYPES)
@pytest.mark.parametrize("input_dtype", ["float16", "float32", "float64", "longdouble", "int8", "uint16", "int64"])
def test_inputs_are_converted_to_the_model_dtype(rng, model_dtype, input_dtype):
    gru = _model(model_dtype)
    if np.dtype(input_dtype).kind == "f":
        x = rng.standard_normal((6, 2, 7)).astype(input_dtype)
        h0 = rng.standard_normal((4, 2, 5)).astype(input_dtype)
    else:
        x = rng.integers(0, 3, size=(6, 2, 7)).astype(input_dtype)
        h0 = rng.integers(0, 2, size=(4, 2, 5)).astype(input_dtype)
    output, h_n = gru(x, h0)
    assert output.dtype == np.dtype(model_dtype) and h_n.dtype == np.dtype(model_dtype)
    expected_output, expected_h_n = gru(x.astype(model_dtype), h0.astype(model_dtype))
    np.testing.assert_array_equal(output, expected_output)
    np.testing.assert_array_equal(h_n, expected_h_n)


def test_float64_input_to_a_float32_model_is_rounded_not_truncated():
    gru = _model("float32", layers=1, bidirectional=False, input_size=1, hidden_size=3)
    nearly_one = np.nextafter(np.float32(1), np.float32(2), dtype=np.float32).astype(np.float64)
    x = np.full((2, 1, 1), 1.0 + (nearly_one - 1.0) * 0.75)  # rounds up to nearly_one, truncates to 1
    expected = gru(np.full((2, 1, 1), nearly_one, np.float32))
    for a, e in zip(gru(x), expected):
        np.testing.assert_array_equal(a, e)


# ---------------------------------------------------------------------------------------------
# constructors


@pytest.mark.parametrize("arguments, exception, argument", [
    (dict(input_size=0, hidden_size=4), ValueError, "input_size"),
    (dict(input_size=3, hidden_size=-1), ValueError, "hidden_size"),
    (dict(input_size=3, hidden_size=4.0), ValueError, "hidden_size"),
    (dict(input_size=True, hidden_size=4), ValueError, "input_size"),
    (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, "num_layers"),
    (dict(input_size=3, hidden_size=4, dtype=np.float16), TypeError, "dtype"),
    (dict(input_size=3, hidden_size=4, dtype=np.int32), TypeError, "dtype"),
    (dict(input_size=3, hidden_size=4, gate_activation="relu"), ValueError, "gate_activation"),
    (dict(input_size=3, hidden_size=4, clip=-1.0), ValueError, "clip"),
    (dict(input_size=3, hidden_size=4, clip=float("nan")), ValueError, "clip"),
    (dict(input_size=3, hidden_size=4, clip=float("inf")), ValueError, "clip"),
    (dict(input_size=3, hidden_size=4, clip=0.0), ValueError, "clip"),
], ids=lambda value: "" if not isinstance(value, dict) else "-".join(f"{k}={v}" for k, v in value.items()))
def test_constructor_rejects_bad_arguments(arguments, exception, argument):
    _raises_naming(exception, argument, lambda: fastgru.GRU(**arguments))


def test_from_arrays_rejects_bad_weights(rng):
    spec = GRUSpec(3, 4, 1, False)
    weights = random_weights(spec, rng)
    with pytest.raises(ValueError, match="weight_hh_l0"):
        fastgru.GRU.from_arrays({**weights, "weight_hh_l0": np.zeros((12, 5))})
    with pytest.raises(ValueError, match="unrecognised"):
        fastgru.GRU.from_arrays({**weights, "weight_xx_l0": np.zeros(3)})
    with pytest.raises(ValueError, match="weight_ih_l0"):
        fastgru.GRU.from_arrays({name: value for name, value in weights.items() if name != "weight_ih_l0"})
    with pytest.raises(ValueError, match="bias_hh_l0"):
        fastgru.GRU.from_arrays({**weights, "bias_hh_l0": np.zeros(11)})
    with pytest.raises(TypeError, match="weight_ih_l0"):
        fastgru.GRU.from_arrays({**weights, "weight_ih_l0": weights["weight_ih_l0"].astype(complex)})
    with pytest.raises(ValueError, match="update"):
        fastgru.GRU.from_arrays(weights, update="sideways")


def test_non_finite_weights_are_accepted_and_propagate(rng):
    """Weights are not inspected (like torch): a NaN weight makes the outputs it touches NaN."""
    spec = GRUSpec(3, 4, 1, False, dtype="float64")
    weights = random_weights(spec, rng)
    weights["weight_hh_l0"][0, 0] = np.nan
    output, h_n = fastgru.GRU.from_spec(spec, weights)(rng.standard_normal((3, 2, 3)), rng.standard_normal((1, 2, 4)))
    assert np.isnan(h_n).any()


# ---------------------------------------------------------------------------------------------
# streams


def test_stream_rejects_bad_arguments():
    gru = _model(layers=2, bidirectional=False, input_size=3, hidden_size=4)
    with pytest.raises(ValueError, match="bidirectional"):
        _model().stream()
    for batch_size in (0, -1, True, 1.5, "2"):
        _raises_naming(ValueError, "batch_size", lambda: gru.stream(batch_size))
    _raises_naming(ValueError, "num_threads", lambda: gru.stream(2, num_threads=0))
    _raises_naming(ValueError, "h0", lambda: gru.stream(2, np.zeros((2, 3, 4))), r"\(2, 2, 4\)")
    _raises_naming(TypeError, "h0", lambda: gru.stream(2, np.zeros((2, 2, 4), complex)))
    stream = gru.stream(2)
    for x_t, exception in [(np.zeros(3), ValueError), (np.zeros((3, 2)), ValueError), (np.zeros((2, 4)), ValueError),
                           (np.zeros((1, 2, 3)), ValueError), (np.zeros((2, 3), complex), TypeError),
                           (np.zeros((2, 3), bool), TypeError), (None, TypeError), ("abc", TypeError)]:
        _raises_naming(exception, "x_t", lambda: stream.step(x_t))
    _raises_naming(ValueError, "h0", lambda: stream.reset(np.zeros((1, 2, 4))))
    np.testing.assert_array_equal(stream.state, 0, err_msg="failed steps leave the state alone")


STEP_LAYOUTS = {
    "fortran": np.asfortranarray,
    "unaligned": _unaligned,
    "list": lambda a: a.tolist(),
    "strided": lambda a: np.repeat(a, 2, axis=1)[:, ::2],
    "negative_strides": lambda a: np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1],
    "read_only": lambda a: (lambda c: (c.flags.__setattr__("writeable", False), c)[1])(a.copy()),
    "other_float": lambda a: a.astype(np.float64 if a.dtype == np.float32 else np.float32),
    "byte_swapped": lambda a: a.astype(a.dtype.newbyteorder(">")),
}
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(STEP_LAYOUTS))
def test_stream_accepts_any_layout_and_dtype(rng, layout, dtype):
    convert = STEP_LAYOUTS[layout]
    gru = _model(dtype, layers=2, bidirectional=False, input_size=3, hidden_size=6)
    x = rng.standard_normal((5, 4, 3)).astype(dtype)
    if layout == "other_float":  # values exact in both floats, so the conversion cannot change them
        x = x.astype(np.float16).astype(dtype)
    reference_stream = gru.stream(4)
    expected_outputs = [reference_stream.step(x_t).copy() for x_t in x]
    stream = gru.stream(4)
    for x_t, expected in zip(x, expected_outputs):
        np.testing.assert_array_equal(stream.step(convert(x_t)), expected)


def test_stream_batch_of_one_takes_a_vector(rng):
    gru = _model("float64", layers=1, bidirectional=False, input_size=3, hidden_size=4)
    x = rng.standard_normal((4, 3))
    vector_stream, matrix_stream = gru.stream(1), gru.stream(1)
    for x_t in x:
        np.testing.assert_array_equal(vector_stream.step(x_t), matrix_stream.step(x_t[None]))


def test_stream_output_is_read_only(rng):
    stream = _model(layers=1, bidirectional=False, input_size=3, hidden_size=4).stream(2)
    output = stream.step(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        output[...] = 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_stream_matches_the_reference_after_nan_is_reset(rng, dtype):
    """A NaN input poisons the state until reset; reset(h0) restores exact agreement."""
    spec = GRUSpec(3, 5, 1, False, dtype=dtype)
    weights = random_weights(spec, rng)
    stream = fastgru.GRU.from_spec(spec, weights).stream(2)
    with np.errstate(all="ignore"):
        assert np.isnan(stream.step(np.full((2, 3), np.nan))).all()
    h0 = rounded(rng.standard_normal((1, 2, 5)), dtype)
    stream.reset(h0)
    x = rounded(rng.standard_normal((4, 2, 3)), dtype)
    outputs = np.stack([stream.step(x_t).copy() for x_t in x])
    expected_output, _ = reference.forward(spec, weights, x, h0)
    assert _max_diff(outputs, expected_output) <= TOLERANCE[dtype]
