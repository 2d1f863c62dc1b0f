"""The float32 sigmoid and tanh of the C core (branch-free polynomials, src_c/activations.h) hold their
documented error bound on every kernel set: within 1e-7 absolute on [-100, 100], tanh also within 2 ulp.

A one-unit GRU exposes each function exactly: with zero recurrent weights, h0 = 1 and a zero candidate,
h' = z * 1 + (1 - z) * 0 = sigmoid(a_z); with the update gate saturated to 0 (its bias -200 makes z a
denormal, flushed to zero), h' = n = tanh(a_n)."""
import numpy as np
import pytest

import fastgru
from fastgru import _core

GRID = np.concatenate([np.linspace(-100, 100, 200_001), np.linspace(-1, 1, 200_001),
                       np.geomspace(1e-8, 1, 20_000), -np.geomspace(1e-8, 1, 20_000)])


def single_unit(function: str, dtype) -> fastgru.GRU:
    weights = {"weight_ih_l0": np.zeros((3, 1)), "weight_hh_l0": np.zeros((3, 1)),
               "bias_ih_l0": np.zeros(3), "bias_hh_l0": np.zeros(3)}
    if function == "sigmoid":
        weights["weight_ih_l0"][1, 0] = 1.0
    else:
        weights["weight_ih_l0"][2, 0] = 1.0
        weights["bias_ih_l0"][1] = -200.0
    return fastgru.GRU.from_arrays(weights, dtype=dtype)


def evaluate(function: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    x = GRID.astype(dtype)
    gru = single_unit(function, dtype)
    h0 = np.ones((1, x.size, 1)) if function == "sigmoid" else None
    output, _ = gru(x.reshape(1, -1, 1), h0)
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64))) if function == "sigmoid" else np.tanh(x.astype(np.float64))
    return output.ravel().astype(np.float64), exact


@pytest.fixture(params=_core.kernel_tables())
def kernels(request):
    """Every kernel table, each compiled for its own instructions: the 512-bit tables run the same
    polynomials 16 lanes at a time."""
    if request.param not in _core.supported_isas():
        pytest.skip(f"this CPU lacks {', '.join(_core.missing_features(request.param))}")
    _core.set_backend(isa=request.param)
    yield request.param
    _core.set_backend()


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_float32_activation_is_within_1e7_absolute(kernels, function):
    got, exact = evaluate(function, np.float32)
    assert np.abs(got - exact).max() <= 1e-7


def test_float32_tanh_is_within_2_ulp(kernels):
    got, exact = evaluate("tanh", np.float32)
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(got - exact) / ulp).max() <= 2.0


@pytest.mark.parametrize("function", ["sigmoid", "tanh"])
def test_float64_activation_matches_libm_to_an_ulp(kernels, function):
    got, exact = evaluate(function, np.float64)
    np.testing.assert_allclose(got, exact, rtol=1e-15, atol=1e-300)  # libm and numpy may differ by an ulp
