"""The compiled forward against torch.nn.GRU and fastgru.reference, its argument checks, its input
conversion rule (any layout, any real dtype, never modified) and its edge cases."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastgru
from conftest import (
    STRUCTURE_CASES,
    case_id,
    case_spec,
    random_inputs,
    random_weights,
    rounded,
    torch_gru,
    torch_run,
)
from fastgru import _core, reference
from fastgru.spec import GATE_ACTIVATIONS, GRUSpec

DTYPES = ["float32", "float64"]
# max abs difference allowed against torch and against the float64 reference
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
VARIANTS = pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
CASES = pytest.mark.parametrize("case", STRUCTURE_CASES, ids=[case_id(c) for c in STRUCTURE_CASES])


def _case_inputs(case, spec, rng):
    return random_inputs(
        spec, rng, case["steps"], case["batch"], with_h0=case["h0"], with_lengths=case["lengths"]
    )


def _check_result(result, spec, steps, batch):
    output, h_n = result
    assert isinstance(output, np.ndarray) and isinstance(h_n, np.ndarray)
    assert output.dtype == np.dtype(spec.dtype) and h_n.dtype == np.dtype(spec.dtype)
    width = spec.num_directions * spec.hidden_size
    assert output.shape == ((batch, steps, width) if spec.batch_first else (steps, batch, width))
    assert h_n.shape == (spec.num_layers * spec.num_directions, batch, spec.hidden_size)
    return output, h_n


def _assert_max_diff(actual, expected, tolerance, what):
    diff = np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected), initial=0.0)
    assert diff <= tolerance, f"{what}: max |difference| {diff:.3g} > {tolerance:g}"


# ---------------------------------------------------------------------------------------------
# numbers


@CASES
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_torch(torch, rng, dtype, case):
    spec = case_spec(case, dtype)
    weights = random_weights(spec, rng)
    x, h0, lengths = _case_inputs(case, spec, rng)
    gru = fastgru.GRU.from_spec(spec, weights)

    output, h_n = _check_result(gru(x, h0, lengths), spec, case["steps"], case["batch"])

    module = torch_gru(torch, spec, weights)
    to_tensor = lambda a: None if a is None else torch.tensor(a, dtype=getattr(torch, dtype))  # noqa: E731
    with torch.no_grad():
        expected_output, expected_h_n = torch_run(torch, module, to_tensor(x), to_tensor(h0), lengths)
    _assert_max_diff(output, expected_output.double().numpy(), TOLERANCE[dtype], "output")
    _assert_max_diff(h_n, expected_h_n.double().numpy(), TOLERANCE[dtype], "h_n")


@CASES
@VARIANTS
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_reference(rng, dtype, reset_after, case):
    spec = case_spec(case, dtype, reset_after)
    weights = random_weights(spec, rng)
    x, h0, lengths = _case_inputs(case, spec, rng)
    gru = fastgru.GRU.from_spec(spec, weights)

    output, h_n = _check_result(gru(x, h0, lengths), spec, case["steps"], case["batch"])

    expected_output, expected_h_n = reference.forward(spec, weights, x, h0, lengths)
    _assert_max_diff(output, expected_output, TOLERANCE[dtype], "output")
    _assert_max_diff(h_n, expected_h_n, TOLERANCE[dtype], "h_n")


@pytest.mark.parametrize("dtype", DTYPES)
@VARIANTS
@pytest.mark.parametrize("clip", [None, 0.5, 3.0])
@pytest.mark.parametrize("gate_activation", sorted(GATE_ACTIVATIONS))
def test_gate_activation_and_clip_match_reference(rng, gate_activation, clip, reset_after, dtype):
    spec = GRUSpec(4, 9, 2, True, reset_after=reset_after, gate_activation=gate_activation, clip=clip, dtype=dtype)
    weights = random_weights(spec, rng, scale=2.0)  # large enough to saturate hard sigmoids and hit clip
    x, h0, lengths = random_inputs(spec, rng, steps=7, batch=3, with_h0=True, with_lengths=True)
    gru = fastgru.GRU.from_spec(spec, weights)

    output, h_n = _check_result(gru(x, h0, lengths), spec, 7, 3)

    expected_output, expected_h_n = reference.forward(spec, weights, x, h0, lengths)
    _assert_max_diff(output, expected_output, TOLERANCE[dtype], "output")
    _assert_max_diff(h_n, expected_h_n, TOLERANCE[dtype], "h_n")


def _random_mask(rng, steps, batch):
    mask = rng.random((steps, batch)) < 0.6
    mask[:, 0] = False  # a sequence that never runs keeps h0
    mask[0, 1], mask[-1, 1] = False, True  # masked at the start (direction 0) ...
    mask[-1, 2], mask[0, 2] = False, True  # ... and at the start of direction 1
    mask[:, 3] = True
    return mask


@pytest.mark.parametrize("dtype", DTYPES)
@VARIANTS
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_mask_matches_reference(rng, bidirectional, batch_first, reset_after, dtype):
    spec = GRUSpec(3, 6, 2, bidirectional, batch_first, reset_after=reset_after, dtype=dtype)
    weights = random_weights(spec, rng)
    x, h0, _ = random_inputs(spec, rng, steps=9, batch=5, with_h0=True)
    mask = _random_mask(rng, 9, 5)  # (T, B) even when batch_first
    gru = fastgru.GRU.from_spec(spec, weights)

    output, h_n = _check_result(gru(x, h0, mask=mask), spec, 9, 5)

    expected_output, expected_h_n = reference.forward(spec, weights, x, h0, mask=mask)
    _assert_max_diff(output, expected_output, TOLERANCE[dtype], "output")
    _assert_max_diff(h_n, expected_h_n, TOLERANCE[dtype], "h_n")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_false_matches_torch(torch, rng, dtype, bias):
    spec = GRUSpec(3, 7, 2, True, bias=bias, dtype=dtype)
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, steps=5, batch=4, with_h0=True, with_lengths=True)
    output, h_n = fastgru.GRU.from_spec(spec, weights)(x, h0, lengths)
    module = torch_gru(torch, spec, weights)
    with torch.no_grad():
        to_tensor = lambda a: torch.tensor(a, dtype=getattr(torch, dtype))  # noqa: E731
        expected_output, expected_h_n = torch_run(torch, module, to_tensor(x), to_tensor(h0), lengths)
    _assert_max_diff(output, expected_output.double().numpy(), TOLERANCE[dtype], "output")
    _assert_max_diff(h_n, expected_h_n.double().numpy(), TOLERANCE[dtype], "h_n")


# Shapes past the covering grid's: several input-projection chunks (the core projects about four L2s
# of gate values at a time, src_c/cpu.c: with a 1 MiB L2, B=37, D=2, H=45 gives 104-step chunks in
# float32 and T=250 three of them, the last one partial, with the reverse direction walking them
# mirrored), hidden sizes over many SIMD blocks, and worker threads splitting units or batch rows.
LARGE_SHAPES = {
    "chunked": dict(steps=int(2.4 * _core.cpu_info()["chunk bytes"] / (37 * 2 * 3 * 45 * 4)), batch=37, input_size=5,
                    hidden_size=45, layers=2, bidirectional=True),
    "wide_hidden": dict(steps=12, batch=33, input_size=70, hidden_size=130, layers=1, bidirectional=True),
    "batch_one_wide": dict(steps=20, batch=1, input_size=16, hidden_size=200, layers=2, bidirectional=False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@VARIANTS
@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("shape", list(LARGE_SHAPES))
def test_large_shapes_and_threads_match_reference(rng, shape, num_threads, reset_after, dtype):
    size = LARGE_SHAPES[shape]
    spec = GRUSpec(size["input_size"], size["hidden_size"], size["layers"], size["bidirectional"],
                   reset_after=reset_after, dtype=dtype)
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, size["steps"], size["batch"], with_h0=True, with_lengths=True)
    gru = fastgru.GRU.from_spec(spec, weights)

    output, h_n = _check_result(gru(x, h0, lengths, num_threads=num_threads), spec, size["steps"], size["batch"])

    expected_output, expected_h_n = reference.forward(spec, weights, x, h0, lengths)
    _assert_max_diff(output, expected_output, TOLERANCE[dtype], "output")
    _assert_max_diff(h_n, expected_h_n, TOLERANCE[dtype], "h_n")


@pytest.fixture(params=[(table, "scipy") for table in _core.kernel_tables()] + [("auto", "reference"),
                                                                              ("generic", "reference")],
                ids=lambda p: f"{p[0]}-{p[1]}_blas")
def backend(request):
    """Runs a test with each kernel table and GEMM the core has (the tables this CPU lacks skip): "auto"
    alone would leave the portable kernels, and all but the widest table, untested."""
    if request.param[0] not in ("auto", *_core.supported_isas()):
        pytest.skip(f"this CPU lacks {', '.join(_core.missing_features(request.param[0]))}")
    _core.set_backend(isa=request.param[0], blas=request.param[1])
    yield request.param
    _core.set_backend()


@pytest.mark.parametrize("dtype", DTYPES)
@VARIANTS
@pytest.mark.parametrize("gate_activation, clip", [("sigmoid", None), ("sigmoid", 0.5), ("hard_sigmoid", None),
                                                    ("hard_sigmoid_keras2", 2.0)])
def test_every_kernel_set_matches_reference(rng, backend, gate_activation, clip, reset_after, dtype):
    spec = GRUSpec(6, 19, 2, True, True, reset_after=reset_after, gate_activation=gate_activation, clip=clip,
                   dtype=dtype)
    weights = random_weights(spec, rng, scale=1.5)
    x, h0, lengths = random_inputs(spec, rng, steps=9, batch=5, with_h0=True, with_lengths=True)
    gru = fastgru.GRU.from_spec(spec, weights)

    output, h_n = _check_result(gru(x, h0, lengths), spec, 9, 5)

    expected_output, expected_h_n = reference.forward(spec, weights, x, h0, lengths)
    _assert_max_diff(output, expected_output, TOLERANCE[dtype], "output")
    _assert_max_diff(h_n, expected_h_n, TOLERANCE[dtype], "h_n")


@pytest.mark.parametrize("table", _core.kernel_tables())
@pytest.mark.parametrize("dtype", DTYPES)
@VARIANTS
def test_each_table_gives_the_same_bits_for_any_thread_count_and_run(rng, table, reset_after, dtype):
    """Threads split unit blocks (never a sum, and never a pair the 512-bit tables take together), so
    a table's results do not depend on the thread count, nor on the run. 45 units are five full blocks
    and a tail, which 2 and 3 threads split unevenly; 24 rows of lengths 1..9 pass every tile size from
    8 down to 1."""
    if table not in _core.supported_isas():
        pytest.skip(f"this CPU lacks {', '.join(_core.missing_features(table))}")
    spec = GRUSpec(6, 45, 2, True, reset_after=reset_after, dtype=dtype)
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, steps=9, batch=24, with_h0=True, with_lengths=True)
    gru = fastgru.GRU.from_spec(spec, weights)
    _core.set_backend(isa=table)
    try:
        first = gru(x, h0, lengths, num_threads=1)
        for num_threads in (1, 2, 3):
            output, h_n = gru(x, h0, lengths, num_threads=num_threads)
            np.testing.assert_array_equal(output, first[0], err_msg=f"{table}, {num_threads} threads")
            np.testing.assert_array_equal(h_n, first[1], err_msg=f"{table}, {num_threads} threads")
    finally:
        _core.set_backend()
    expected_output, _ = reference.forward(spec, weights, x, h0, lengths)
    _assert_max_diff(first[0], expected_output, TOLERANCE[dtype], "output")


@pytest.mark.parametrize("table", _core.kernel_tables())
@pytest.mark.parametrize("precision", DTYPES + ["int8"])
@VARIANTS
def test_one_step_calls_give_the_same_bits_in_either_block_order(rng, table, reset_after, precision):
    """Consecutive one-step calls of a thread take their blocks in alternating order (the panels a call
    read last come first in the next one). Blocks are independent, so the same call gives the same bits
    on odd and even calls, at any thread count; 45 units are five full blocks and a tail, so reversed
    ranges start on a pair and on a lone block, and both directions and two layers take part."""
    if table not in _core.supported_isas():
        pytest.skip(f"this CPU lacks {', '.join(_core.missing_features(table))}")
    dtype = "float32" if precision == "int8" else precision
    spec = GRUSpec(6, 45, 2, True, reset_after=reset_after, dtype=dtype)
    weights = random_weights(spec, rng)
    x, h0, _ = random_inputs(spec, rng, steps=1, batch=3, with_h0=True)
    gru = fastgru.GRU.from_spec(spec, weights)
    if precision == "int8":
        gru = gru.quantize("int8")
    _core.set_backend(isa=table)
    try:
        first = gru(x, h0, num_threads=1)
        for num_threads in (1, 1, 2, 2, 3, 3):
            output, h_n = gru(x, h0, num_threads=num_threads)
            np.testing.assert_array_equal(output, first[0], err_msg=f"{table}, {num_threads} threads")
            np.testing.assert_array_equal(h_n, first[1], err_msg=f"{table}, {num_threads} threads")
    finally:
        _core.set_backend()
    expected_output, _ = reference.forward(spec, weights, x, h0)
    tolerance = 3e-2 if precision == "int8" else TOLERANCE[dtype]
    _assert_max_diff(first[0], expected_output, tolerance, "output")


# ---------------------------------------------------------------------------------------------
# construction


@pytest.mark.parametrize("dtype", DTYPES)
@VARIANTS
@pytest.mark.parametrize("layers, bidirectional, bias", [(1, False, True), (2, True, False), (3, True, True)])
def test_from_arrays_infers_the_spec(rng, layers, bidirectional, bias, reset_after, dtype):
    spec = GRUSpec(4, 6, layers, bidirectional, True, bias=bias, reset_after=reset_after, dtype=dtype)
    weights = random_weights(spec, rng)
    gru = fastgru.GRU.from_arrays(weights, batch_first=True, reset_after=reset_after, dtype=dtype)
    assert gru.spec == spec
    assert set(gru.weights) == set(weights)
    for name, value in gru.weights.items():
        assert value.dtype == np.dtype(dtype)
        assert not value.flags.writeable, f"gru.weights[{name!r}] must be read-only"
        np.testing.assert_array_equal(value, weights[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constructor_weights_drive_the_forward(rng, dtype):
    gru = fastgru.GRU(4, 6, 2, True, dtype=dtype, seed=3)
    assert gru.spec == GRUSpec(4, 6, 2, True, dtype=np.dtype(dtype).name)
    x = rounded(rng.standard_normal((5, 2, 4)), dtype)
    output, h_n = gru(x)
    expected_output, expected_h_n = reference.forward(gru.spec, gru.weights, x)
    _assert_max_diff(output, expected_output, TOLERANCE[np.dtype(dtype).name], "output")
    _assert_max_diff(h_n, expected_h_n, TOLERANCE[np.dtype(dtype).name], "h_n")
    again = fastgru.GRU(4, 6, 2, True, dtype=dtype, seed=3)
    for name, value in gru.weights.items():
        np.testing.assert_array_equal(again.weights[name], value, err_msg="the same seed gives the same weights")


def test_forward_without_tape_equals_call(rng):
    spec = GRUSpec(3, 5, 2, True, dtype="float64")
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x, h0, lengths = random_inputs(spec, rng, steps=6, batch=3, with_h0=True, with_lengths=True)
    called = gru(x, h0, lengths)
    forwarded = gru.forward(x, h0, lengths)
    assert len(forwarded) == 2
    np.testing.assert_array_equal(forwarded[0], called[0])
    np.testing.assert_array_equal(forwarded[1], called[1])


# ---------------------------------------------------------------------------------------------
# bad input: a ValueError/TypeError that names the argument and what was expected

# model: 2 layers, bidirectional (L*D = 4), input 7, hidden 5; inputs T = 6, B = 2, time-major
BAD_T, BAD_B = 6, 2
H0_SHAPE = r"\(4, 2, 5\)|\[4, 2, 5\]"


def _bad_input_model():
    spec = GRUSpec(7, 5, 2, True, dtype="float32")
    return fastgru.GRU.from_spec(spec, random_weights(spec, np.random.default_rng(0)))


def _good_x():
    return np.zeros((BAD_T, BAD_B, 7), dtype=np.float32)


BAD_INPUTS = {
    # name: (arguments, the argument the message must name, a pattern the message must contain)
    "x_2d": (dict(x=np.zeros((BAD_B, 7), np.float32)), "x", r"3|\(T, B"),
    "x_4d": (dict(x=np.zeros((1, BAD_T, BAD_B, 7), np.float32)), "x", r"3|\(T, B"),
    "x_wrong_features": (dict(x=np.zeros((BAD_T, BAD_B, 6), np.float32)), "x", r"7"),
    "x_not_numeric": (dict(x=np.full((BAD_T, BAD_B, 7), "a")), "x", r""),
    "h0_wrong_hidden": (dict(h0=np.zeros((4, BAD_B, 6), np.float32)), "h0", H0_SHAPE),
    "h0_wrong_batch": (dict(h0=np.zeros((4, 3, 5), np.float32)), "h0", H0_SHAPE),
    "h0_wrong_layers": (dict(h0=np.zeros((2, BAD_B, 5), np.float32)), "h0", H0_SHAPE),
    "h0_2d": (dict(h0=np.zeros((BAD_B, 5), np.float32)), "h0", H0_SHAPE),
    "lengths_too_many": (dict(lengths=[1, 1, 1]), "lengths", r"2"),
    "lengths_too_few": (dict(lengths=[3]), "lengths", r"2"),
    "lengths_2d": (dict(lengths=[[1, 2]]), "lengths", r"2"),
    "lengths_zero": (dict(lengths=[0, 3]), "lengths", r"1"),
    "lengths_negative": (dict(lengths=[-1, 3]), "lengths", r"1"),
    "lengths_past_T": (dict(lengths=[7, 3]), "lengths", r"6"),
    "lengths_fractional": (dict(lengths=[2.5, 3.0]), "lengths", r"int"),
    "lengths_not_numeric": (dict(lengths=["a", "b"]), "lengths", r"int"),
    "mask_with_lengths": (dict(lengths=[1, 2], mask=np.ones((BAD_T, BAD_B), bool)), "mask", r"lengths"),
    "mask_wrong_shape": (dict(mask=np.ones((BAD_T, BAD_B + 1), bool)), "mask", r"\(6, 2\)|\[6, 2\]"),
    "mask_batch_major": (dict(mask=np.ones((BAD_B, BAD_T), bool)), "mask", r"\(6, 2\)|\[6, 2\]"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_naming_the_argument(name):
    arguments, argument, expected = BAD_INPUTS[name]
    arguments = {"x": _good_x(), **arguments}
    gru = _bad_input_model()
    with pytest.raises((ValueError, TypeError)) as info:
        gru(arguments.pop("x"), **arguments)
    message = str(info.value)
    assert re.search(rf"\b{argument}\b", message), f"message does not name {argument!r}: {message}"
    assert re.search(expected, message), f"message does not say what was expected ({expected!r}): {message}"


# ---------------------------------------------------------------------------------------------
# the input conversion rule: x and h0 of any layout and real dtype give the same result


def _with_layout(values, layout, model_dtype):
    """``values`` (float64) handed over in the given layout/dtype; the numbers are unchanged."""
    if layout == "contiguous":
        return np.ascontiguousarray(values, dtype=model_dtype)
    if layout == "fortran":
        return np.asfortranarray(values, dtype=model_dtype)
    if layout == "strided":  # every other element of a larger buffer, on two axes
        buffer = np.zeros((2 * values.shape[0],) + values.shape[1:-1] + (3 * values.shape[-1],), model_dtype)
        buffer[::2, ..., ::3] = values
        return buffer[::2, ..., ::3]
    if layout == "negative_strides":
        return np.ascontiguousarray(values[::-1, :, ::-1], dtype=model_dtype)[::-1, :, ::-1]
    if layout == "swapped_axes":  # a transposed view of a contiguous array of the other layout
        return np.ascontiguousarray(values.swapaxes(0, 1), dtype=model_dtype).swapaxes(0, 1)
    if layout == "read_only":
        array = np.array(values, dtype=model_dtype)
        array.flags.writeable = False
        return array
    if layout == "other_float":
        return values.astype(np.float32 if model_dtype == np.float64 else np.float64)
    if layout in ("float16", "int32", "int64", "uint8"):
        return values.astype(layout)
    if layout == "list":
        return values.tolist()
    raise AssertionError(layout)


LAYOUTS = [
    "fortran", "strided", "negative_strides", "swapped_axes", "read_only",
    "other_float", "float16", "int32", "int64", "list",
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_any_input_layout_or_dtype_gives_the_same_result(rng, layout, batch_first, dtype):
    spec = GRUSpec(4, 6, 2, True, batch_first, dtype=dtype)
    weights = random_weights(spec, rng)
    gru = fastgru.GRU.from_spec(spec, weights)
    x_shape = (3, 5, 4) if batch_first else (5, 3, 4)
    if layout.startswith("int"):
        x = rng.integers(-2, 3, size=x_shape).astype(np.float64)
        h0 = rng.integers(-1, 2, size=(4, 3, 6)).astype(np.float64)
    else:  # quarters are exact in float16 too
        x = rng.integers(-8, 9, size=x_shape) / 4.0
        h0 = rng.integers(-4, 5, size=(4, 3, 6)) / 4.0
    lengths = np.array([2, 5, 4])

    output, h_n = _check_result(
        gru(_with_layout(x, layout, dtype), _with_layout(h0, layout, dtype), lengths), spec, 5, 3
    )

    baseline_output, baseline_h_n = gru(_with_layout(x, "contiguous", dtype), _with_layout(h0, "contiguous", dtype), lengths)
    # the same numbers in the model dtype: the layout must not change the result beyond rounding noise
    _assert_max_diff(output, baseline_output.astype(np.float64), TOLERANCE[dtype] / 10, "output vs contiguous")
    _assert_max_diff(h_n, baseline_h_n.astype(np.float64), TOLERANCE[dtype] / 10, "h_n vs contiguous")
    expected_output, expected_h_n = reference.forward(spec, weights, x, h0, lengths)
    _assert_max_diff(output, expected_output, TOLERANCE[dtype], "output vs reference")
    _assert_max_diff(h_n, expected_h_n, TOLERANCE[dtype], "h_n vs reference")


@pytest.mark.parametrize(
    "convert", [list, tuple, lambda a: a.astype(np.int32), lambda a: a.astype(np.uint8), lambda a: a[::-1].copy()[::-1]],
    ids=["list", "tuple", "int32", "uint8", "negative_strides"],
)
def test_lengths_accept_any_integer_sequence(rng, convert):
    spec = GRUSpec(3, 4, 1, True, dtype="float64")
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x, h0, _ = random_inputs(spec, rng, steps=6, batch=4, with_h0=True)
    lengths = np.array([3, 6, 1, 4], dtype=np.int64)
    output, h_n = gru(x, h0, convert(lengths))
    expected_output, expected_h_n = gru(x, h0, lengths)
    np.testing.assert_array_equal(output, expected_output)
    np.testing.assert_array_equal(h_n, expected_h_n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("sequences", ["lengths", "mask", "full"])
def test_inputs_are_never_modified(rng, sequences, batch_first, dtype):
    spec = GRUSpec(3, 5, 2, True, batch_first, dtype=dtype)
    weights = {name: value.astype(dtype) for name, value in random_weights(spec, rng).items()}
    weights_before = {name: value.copy() for name, value in weights.items()}
    gru = fastgru.GRU.from_arrays(weights, batch_first=batch_first, dtype=dtype)
    x, h0, _ = random_inputs(spec, rng, steps=6, batch=4, with_h0=True)
    # in the model dtype and C order, so a core that skipped the copy would be handed these buffers
    x, h0 = x.astype(dtype), h0.astype(dtype)
    arguments = {}
    if sequences == "lengths":
        arguments["lengths"] = np.array([2, 6, 1, 4])  # unsorted: a core must not sort it in place
    elif sequences == "mask":
        arguments["mask"] = _random_mask(rng, 6, 4)
    before = {"x": x.copy(), "h0": h0.copy(), **{k: v.copy() for k, v in arguments.items()}}

    gru(x, h0, **arguments)
    gru.forward(x, h0, **arguments)

    after = {"x": x, "h0": h0, **arguments}
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=f"{name} was modified")
    for name, value in weights_before.items():
        np.testing.assert_array_equal(weights[name], value, err_msg=f"weights[{name!r}] was modified")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_h0", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
def test_empty_batch_gives_empty_outputs(rng, batch_first, with_lengths, with_h0, dtype):
    spec = GRUSpec(3, 5, 2, True, batch_first, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x = np.zeros((0, 4, 3) if batch_first else (4, 0, 3))
    h0 = np.zeros((4, 0, 5)) if with_h0 else None
    lengths = np.zeros(0, dtype=np.int64) if with_lengths else None
    _check_result(gru(x, h0, lengths), spec, steps=4, batch=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_h0", [False, True], ids=["no_h0", "h0"])
def test_no_time_steps_gives_empty_output_and_h0(rng, with_h0, dtype):
    spec = GRUSpec(3, 5, 2, True, dtype=dtype)
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    h0 = rng.uniform(-1, 1, size=(4, 2, 5)).astype(dtype) if with_h0 else None
    output, h_n = _check_result(gru(np.zeros((0, 2, 3)), h0), spec, steps=0, batch=2)
    np.testing.assert_array_equal(h_n, h0 if with_h0 else np.zeros((4, 2, 5)))
