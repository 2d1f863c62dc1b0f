"""The compiled backward (BPTT) against torch.autograd, fastgru.reference and finite differences.

The loss throughout is ``sum(output * grad_output) + sum(h_n * grad_h_n)`` with random
``grad_output`` that is nonzero at padded positions too: those must contribute nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastgru
from conftest import STRUCTURE_CASES, case_id, case_spec, random_inputs, random_weights, rounded, torch_gru, torch_run
from fastgru import reference
from fastgru.spec import GATE_ACTIVATIONS, GRUSpec

DTYPES = ["float32", "float64"]
# float64: max |difference| <= 1e-9 * max(1, max |expected|); float32: <= 1e-4 * max |expected|
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
VARIANTS = pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
CASES = pytest.mark.parametrize("case", STRUCTURE_CASES, ids=[case_id(c) for c in STRUCTURE_CASES])


def _output_shape(spec, steps, batch):
    width = spec.num_directions * spec.hidden_size
    return (batch, steps, width) if spec.batch_first else (steps, batch, width)


def _random_grads(rng, spec, steps, batch):
    grad_output = rounded(rng.standard_normal(_output_shape(spec, steps, batch)), spec.dtype)
    grad_h_n = rounded(rng.standard_normal((spec.num_layers * spec.num_directions, batch, spec.hidden_size)), spec.dtype)
    return grad_output, grad_h_n


def _core_grads(gru, x, h0, lengths, grad_output, grad_h_n, mask=None):
    output, h_n, tape = gru.forward(x, h0, lengths, mask=mask, return_tape=True)
    return gru.backward(tape, grad_output, grad_h_n)


def _torch_grads(torch, spec, weights, x, h0, lengths, grad_output, grad_h_n):
    """torch.autograd through nn.GRU, in float64 whatever the model dtype, so that a float32 core
    is measured against the exact gradient of the same (float32-representable) numbers."""
    spec64 = GRUSpec(**{**spec.to_dict(), "dtype": "float64"})
    module = torch_gru(torch, spec64, weights)
    x_t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    h0_shape = grad_h_n.shape
    h0_t = torch.tensor(np.zeros(h0_shape) if h0 is None else h0, dtype=torch.float64, requires_grad=True)
    output, h_n = torch_run(torch, module, x_t, h0_t, lengths)
    loss = (output * torch.tensor(grad_output)).sum() + (h_n * torch.tensor(grad_h_n)).sum()
    loss.backward()
    grads = {"x": x_t.grad.numpy(), "h0": h0_t.grad.numpy()}
    grads.update((name, parameter.grad.numpy()) for name, parameter in module.named_parameters())
    return grads


def _assert_grads_close(actual, expected, dtype):
    assert set(actual) == set(expected), f"gradient names {sorted(actual)} != {sorted(expected)}"
    for name, value in expected.items():
        got = actual[name]
        assert isinstance(got, np.ndarray) and got.dtype == np.dtype(dtype), f"{name}: {type(got)} {getattr(got, 'dtype', '')}"
        assert got.shape == value.shape, f"{name}: shape {got.shape} != {value.shape}"
        magnitude = np.max(np.abs(value), initial=0.0)
        scale = max(1.0, magnitude) if dtype == "float64" else max(magnitude, 1e-30)
        diff = np.max(np.abs(got.astype(np.float64) - value), initial=0.0)
        assert diff <= TOLERANCE[dtype] * scale, f"{name}: max |difference| {diff:.3g} (scale {scale:.3g})"


def _case_setup(case, dtype, reset_after, rng):
    spec = case_spec(case, dtype, reset_after)
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, case["steps"], case["batch"], case["h0"], case["lengths"])
    grad_output, grad_h_n = _random_grads(rng, spec, case["steps"], case["batch"])
    return spec, weights, x, h0, lengths, grad_output, grad_h_n


# ---------------------------------------------------------------------------------------------
# numbers


@CASES
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_torch_autograd(torch, rng, dtype, case):
    spec, weights, x, h0, lengths, grad_output, grad_h_n = _case_setup(case, dtype, True, rng)
    gru = fastgru.GRU.from_spec(spec, weights)
    grads = _core_grads(gru, x, h0, lengths, grad_output, grad_h_n)
    _assert_grads_close(grads, _torch_grads(torch, spec, weights, x, h0, lengths, grad_output, grad_h_n), dtype)


@CASES
@VARIANTS
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_reference(rng, dtype, reset_after, case):
    spec, weights, x, h0, lengths, grad_output, grad_h_n = _case_setup(case, dtype, reset_after, rng)
    gru = fastgru.GRU.from_spec(spec, weights)
    grads = _core_grads(gru, x, h0, lengths, grad_output, grad_h_n)
    _assert_grads_close(grads, reference.backward(spec, weights, x, h0, lengths, grad_output, grad_h_n), dtype)


@CASES
@VARIANTS
def test_backward_matches_finite_differences(rng, reset_after, case):
    """Directional central differences of the core's own float64 forward, one random direction
    per gradient (x, h0 and each weight), so every tensor is checked with 2 forwards."""
    spec, weights, x, h0, lengths, grad_output, grad_h_n = _case_setup(case, "float64", reset_after, rng)
    if h0 is None:
        h0_for_fd = np.zeros(grad_h_n.shape)
    else:
        h0_for_fd = h0
    grads = _core_grads(fastgru.GRU.from_spec(spec, weights), x, h0, lengths, grad_output, grad_h_n)

    def loss(weights_, x_, h0_):
        output, h_n = fastgru.GRU.from_spec(spec, weights_)(x_, h0_, lengths)
        return np.sum(output * grad_output) + np.sum(h_n * grad_h_n)

    eps = 1e-5
    inputs = {"x": x, "h0": h0_for_fd, **weights}
    for name, value in inputs.items():
        direction = rng.standard_normal(value.shape)
        losses = []
        for step in (eps, -eps):
            perturbed = {**inputs, name: value + step * direction}
            losses.append(loss({k: perturbed[k] for k in weights}, perturbed["x"], perturbed["h0"]))
        numeric = (losses[0] - losses[1]) / (2 * eps)
        analytic = np.sum(grads[name] * direction)
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), f"{name}: {analytic} vs FD {numeric}"


@pytest.mark.parametrize("dtype", DTYPES)
@VARIANTS
@pytest.mark.parametrize("clip", [None, 0.5, 3.0])
@pytest.mark.parametrize("gate_activation", sorted(GATE_ACTIVATIONS))
def test_gate_activation_and_clip_gradients_match_reference(rng, gate_activation, clip, reset_after, dtype):
    spec = GRUSpec(4, 9, 2, True, reset_after=reset_after, gate_activation=gate_activation, clip=clip, dtype=dtype)
    weights = random_weights(spec, rng, scale=2.0)  # large enough to saturate hard sigmoids and hit clip
    x, h0, lengths = random_inputs(spec, rng, steps=7, batch=3, with_h0=True, with_lengths=True)
    grad_output, grad_h_n = _random_grads(rng, spec, 7, 3)
    grads = _core_grads(fastgru.GRU.from_spec(spec, weights), x, h0, lengths, grad_output, grad_h_n)
    _assert_grads_close(grads, reference.backward(spec, weights, x, h0, lengths, grad_output, grad_h_n), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@VARIANTS
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_mask_gradients_match_reference(rng, bidirectional, batch_first, reset_after, dtype):
    spec = GRUSpec(3, 6, 2, bidirectional, batch_first, reset_after=reset_after, dtype=dtype)
    weights = random_weights(spec, rng)
    x, h0, _ = random_inputs(spec, rng, steps=9, batch=5, with_h0=True)
    mask = rng.random((9, 5)) < 0.6
    mask[:, 0], mask[:, 1] = False, True
    grad_output, grad_h_n = _random_grads(rng, spec, 9, 5)
    grads = _core_grads(fastgru.GRU.from_spec(spec, weights), x, h0, None, grad_output, grad_h_n, mask=mask)
    expected = reference.backward(spec, weights, x, h0, None, grad_output, grad_h_n, mask=mask)
    _assert_grads_close(grads, expected, dtype)


# ---------------------------------------------------------------------------------------------
# the API around the numbers


def _small_model(rng, dtype="float64", batch_first=True):
    spec = GRUSpec(3, 5, 2, True, batch_first, dtype=dtype)
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, steps=6, batch=4, with_h0=True, with_lengths=True)
    return spec, weights, fastgru.GRU.from_spec(spec, weights), x, h0, lengths


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_with_tape_returns_the_same_outputs(rng, dtype):
    spec, _, gru, x, h0, lengths = _small_model(rng, dtype)
    output, h_n, _ = gru.forward(x, h0, lengths, return_tape=True)
    expected_output, expected_h_n = gru(x, h0, lengths)
    np.testing.assert_array_equal(output, expected_output)
    np.testing.assert_array_equal(h_n, expected_h_n)


@pytest.mark.parametrize("missing", ["grad_output", "grad_h_n"])
def test_missing_gradients_count_as_zero(rng, missing):
    spec, _, gru, x, h0, lengths = _small_model(rng)
    grad_output, grad_h_n = _random_grads(rng, spec, 6, 4)
    given = {"grad_output": grad_output, "grad_h_n": grad_h_n}
    zeros = {**given, missing: np.zeros_like(given[missing])}
    _, _, tape = gru.forward(x, h0, lengths, return_tape=True)
    without = gru.backward(tape, **{k: v for k, v in given.items() if k != missing})
    with_zeros = gru.backward(tape, **zeros)
    for name, value in with_zeros.items():
        np.testing.assert_array_equal(without[name], value, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_twice_on_one_tape_gives_the_same_gradients(rng, dtype):
    spec, _, gru, x, h0, lengths = _small_model(rng, dtype)
    grad_output, grad_h_n = _random_grads(rng, spec, 6, 4)
    _, _, tape = gru.forward(x, h0, lengths, return_tape=True)
    first = gru.backward(tape, grad_output, grad_h_n)
    second = gru.backward(tape, grad_output, grad_h_n)
    for name, value in first.items():
        np.testing.assert_array_equal(second[name], value, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_never_modifies_its_inputs(rng, dtype):
    spec, weights, gru, x, h0, lengths = _small_model(rng, dtype)
    x, h0 = x.astype(dtype), h0.astype(dtype)
    grad_output, grad_h_n = (g.astype(dtype) for g in _random_grads(rng, spec, 6, 4))
    before = [a.copy() for a in (x, h0, lengths, grad_output, grad_h_n)]
    weights_before = {name: value.copy() for name, value in gru.weights.items()}
    _, _, tape = gru.forward(x, h0, lengths, return_tape=True)
    gru.backward(tape, grad_output, grad_h_n)
    for original, array in zip(before, (x, h0, lengths, grad_output, grad_h_n)):
        np.testing.assert_array_equal(array, original)
    for name, value in weights_before.items():
        np.testing.assert_array_equal(gru.weights[name], value, err_msg=name)


@pytest.mark.parametrize(
    "argument, shape",
    [("grad_output", (6, 4, 10)), ("grad_output", (4, 6, 9)), ("grad_h_n", (4, 4, 6)), ("grad_h_n", (2, 4, 5))],
)
def test_backward_rejects_misshapen_gradients(rng, argument, shape):
    """The batch-first model expects grad_output (4, 6, 10) and grad_h_n (4, 4, 5)."""
    _, _, gru, x, h0, lengths = _small_model(rng)
    _, _, tape = gru.forward(x, h0, lengths, return_tape=True)
    with pytest.raises(ValueError, match=argument):
        gru.backward(tape, **{argument: np.zeros(shape)})


@pytest.mark.parametrize("argument", ["grad_output", "grad_h_n"])
@pytest.mark.parametrize("bad", [np.complex64, object, "U1"])
def test_backward_refuses_gradients_that_are_not_real(rng, argument, bad):
    _, _, gru, x, h0, lengths = _small_model(rng)
    _, _, tape = gru.forward(x, h0, lengths, return_tape=True)
    shape = (4, 6, 10) if argument == "grad_output" else (4, 4, 5)
    with pytest.raises(TypeError, match=argument):
        gru.backward(tape, **{argument: np.zeros(shape, dtype=bad)})
