"""Pins ``fastgru.reference`` itself: against torch.nn.GRU, against hand computation and an
independent scalar loop, and its backward against torch.autograd and finite differences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conftest import random_inputs, random_weights, torch_gru, torch_run
from fastgru import reference
from fastgru.spec import GATE_ACTIVATIONS, GRUSpec

STRUCTURE = list(itertools.product([1, 2, 3], [False, True], [False, True], [False, True], [False, True]))
STRUCTURE_IDS = [
    f"L{layers}-{'bi' if bidi else 'uni'}-{'bf' if bf else 'tm'}-{'h0' if h0 else 'noh0'}-{'len' if ln else 'full'}"
    for layers, bidi, bf, h0, ln in STRUCTURE
]


def _random_grads(rng, spec, output_shape, batch):
    grad_output = rng.standard_normal(output_shape)
    grad_h_n = rng.standard_normal((spec.num_layers * spec.num_directions, batch, spec.hidden_size))
    return grad_output, grad_h_n


# ---------------------------------------------------------------------------------------------
# forward


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layers, bidirectional, batch_first, with_h0, with_lengths", STRUCTURE, ids=STRUCTURE_IDS)
def test_forward_matches_torch(torch, rng, layers, bidirectional, batch_first, with_h0, with_lengths, bias):
    spec = GRUSpec(3, 5, layers, bidirectional, batch_first, bias=bias, dtype="float64")
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, steps=6, batch=4, with_h0=with_h0, with_lengths=with_lengths)

    output, h_n = reference.forward(spec, weights, x, h0, lengths)

    module = torch_gru(torch, spec, weights)
    with torch.no_grad():
        expected_output, expected_h_n = torch_run(
            torch, module, torch.tensor(x), None if h0 is None else torch.tensor(h0), lengths
        )
    np.testing.assert_allclose(output, expected_output.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n, expected_h_n.numpy(), rtol=0, atol=1e-12)


def test_one_unit_step_by_hand():
    """H = I = 1, one step, numbers written out from the formulas of docs/design.md, "The GRU"."""
    weights = {
        "weight_ih_l0": np.array([[1.0], [2.0], [3.0]]),
        "weight_hh_l0": np.array([[0.5], [-1.0], [2.0]]),
        "bias_ih_l0": np.array([0.1, 0.2, 0.3]),
        "bias_hh_l0": np.array([-0.1, 0.0, 0.4]),
    }
    x, h = 1.0, 0.5
    sig = lambda a: 1.0 / (1.0 + math.exp(-a))  # noqa: E731
    r = sig(1.0 + 0.1 + 0.5 * h - 0.1)
    z = sig(2.0 + 0.2 - 1.0 * h + 0.0)
    n_after = math.tanh(3.0 + 0.3 + r * (2.0 * h + 0.4))  # the recurrent bias is scaled by r
    n_before = math.tanh(3.0 + 0.3 + 2.0 * (r * h) + 0.4)  # the recurrent bias is not
    for reset_after, n in [(True, n_after), (False, n_before)]:
        spec = GRUSpec(1, 1, reset_after=reset_after, dtype="float64")
        output, h_n = reference.forward(spec, weights, np.full((1, 1, 1), x), np.full((1, 1, 1), h))
        expected = z * h + (1.0 - z) * n
        assert output[0, 0, 0] == pytest.approx(expected, abs=1e-15)
        assert h_n[0, 0, 0] == pytest.approx(expected, abs=1e-15)


def test_zero_weights_halve_the_state_each_step():
    """All weights 0: r = z = 1/2 and n = 0, so h' = h / 2."""
    spec = GRUSpec(2, 3, dtype="float64")
    weights = {name: np.zeros(shape) for name, shape in spec.weight_shapes().items()}
    h0 = np.array([[[1.0, -2.0, 4.0]]])
    output, h_n = reference.forward(spec, weights, np.ones((3, 1, 2)), h0)
    np.testing.assert_array_equal(output[:, 0, :], [[0.5, -1.0, 2.0], [0.25, -0.5, 1.0], [0.125, -0.25, 0.5]])
    np.testing.assert_array_equal(h_n, output[-1:])


@pytest.mark.parametrize(
    "gate_activation, a, expected",
    [
        ("hard_sigmoid", 1.5, 0.75),  # Keras 3: a / 6 + 1/2
        ("hard_sigmoid", 4.0, 1.0),
        ("hard_sigmoid", -3.5, 0.0),
        ("hard_sigmoid_keras2", 1.5, 0.8),  # Keras 2: 0.2 a + 1/2
        ("hard_sigmoid_keras2", -2.0, 0.1),
        ("hard_sigmoid_keras2", 2.6, 1.0),
    ],
)
def test_hard_sigmoid_definitions_by_hand(gate_activation, a, expected):
    """With W_hn = b = 0, h0 = 1 and x = 1: n = tanh(0) = 0, so h' = z, and z's pre-activation is a."""
    spec = GRUSpec(1, 1, gate_activation=gate_activation, dtype="float64")
    weights = {
        "weight_ih_l0": np.array([[0.0], [a], [0.0]]),
        "weight_hh_l0": np.zeros((3, 1)),
        "bias_ih_l0": np.zeros(3),
        "bias_hh_l0": np.zeros(3),
    }
    _, h_n = reference.forward(spec, weights, np.ones((1, 1, 1)), np.ones((1, 1, 1)))
    assert h_n[0, 0, 0] == pytest.approx(expected, abs=1e-15)


def test_clip_clamps_the_whole_candidate_pre_activation():
    """Linear-before-reset with clip: tanh sees clip(W_in x + b_in + r * (W_hn h + b_hn)), not a
    sum of separately clipped parts. Here the input part alone (5) exceeds clip and the recurrent
    part (-4 * r = -2) brings the sum back inside, so n = tanh(3) only if the whole sum is clipped."""
    spec = GRUSpec(1, 1, clip=4.0, dtype="float64")
    weights = {
        "weight_ih_l0": np.array([[0.0], [0.0], [5.0]]),  # r = z = sigmoid(0) = 1/2
        "weight_hh_l0": np.array([[0.0], [0.0], [-4.0]]),
        "bias_ih_l0": np.zeros(3),
        "bias_hh_l0": np.zeros(3),
    }
    _, h_n = reference.forward(spec, weights, np.ones((1, 1, 1)), np.ones((1, 1, 1)))
    assert h_n[0, 0, 0] == pytest.approx(0.5 * 1.0 + 0.5 * math.tanh(3.0), abs=1e-15)


def _scalar_gru_layer(spec, weights, x, h0):
    """One layer, one direction, written with scalar loops over units: an independent spelling."""
    hidden = spec.hidden_size
    w_ih, w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]
    b_ih, b_hh = weights["bias_ih_l0"], weights["bias_hh_l0"]
    alpha_beta = GATE_ACTIVATIONS[spec.gate_activation]
    clip = (lambda a: a) if spec.clip is None else (lambda a: min(max(a, -spec.clip), spec.clip))

    def gate(a):
        a = clip(a)
        if alpha_beta is None:
            return 1.0 / (1.0 + math.exp(-a))
        return min(max(alpha_beta[0] * a + alpha_beta[1], 0.0), 1.0)

    def dot(row, vector):
        return sum(row[k] * vector[k] for k in range(len(vector)))

    outputs = []
    h = list(h0)
    for x_t in x:
        r = [gate(dot(w_ih[j], x_t) + b_ih[j] + dot(w_hh[j], h) + b_hh[j]) for j in range(hidden)]
        z = [gate(dot(w_ih[hidden + j], x_t) + b_ih[hidden + j] + dot(w_hh[hidden + j], h) + b_hh[hidden + j])
             for j in range(hidden)]
        rh = [r[k] * h[k] for k in range(hidden)]
        n = []
        for j in range(hidden):
            row = 2 * hidden + j
            if spec.reset_after:
                a = dot(w_ih[row], x_t) + b_ih[row] + r[j] * (dot(w_hh[row], h) + b_hh[row])
            else:
                a = dot(w_ih[row], x_t) + b_ih[row] + dot(w_hh[row], rh) + b_hh[row]
            n.append(math.tanh(clip(a)))
        h = [z[j] * h[j] + (1.0 - z[j]) * n[j] for j in range(hidden)]
        outputs.append(h)
    return np.array(outputs)


@pytest.mark.parametrize("clip", [None, 0.7])
@pytest.mark.parametrize("gate_activation", sorted(GATE_ACTIVATIONS))
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_forward_matches_scalar_loop(rng, reset_after, gate_activation, clip):
    spec = GRUSpec(3, 4, reset_after=reset_after, gate_activation=gate_activation, clip=clip, dtype="float64")
    weights = random_weights(spec, rng, scale=1.5)  # large enough to saturate hard sigmoids and hit clip
    x = rng.standard_normal((5, 1, 3))
    h0 = rng.uniform(-1, 1, size=(1, 1, 4))
    output, _ = reference.forward(spec, weights, x, h0)
    np.testing.assert_allclose(output[:, 0, :], _scalar_gru_layer(spec, weights, x[:, 0, :], h0[0, 0]), atol=1e-14)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lengths_are_the_mask_of_valid_steps(rng, bidirectional):
    spec = GRUSpec(3, 4, 2, bidirectional, dtype="float64")
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, steps=6, batch=5, with_h0=True, with_lengths=True)
    mask = np.arange(6)[:, None] < lengths[None, :]
    by_lengths = reference.forward(spec, weights, x, h0, lengths=lengths)
    by_mask = reference.forward(spec, weights, x, h0, mask=mask)
    np.testing.assert_array_equal(by_lengths[0], by_mask[0])
    np.testing.assert_array_equal(by_lengths[1], by_mask[1])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_masked_steps_act_as_if_removed(rng, bidirectional):
    """A masked step carries the state over: h_n equals running the sequence without that step,
    in both directions, and the output there is 0."""
    spec = GRUSpec(2, 3, bidirectional=bidirectional, dtype="float64")
    weights = random_weights(spec, rng)
    x = rng.standard_normal((6, 1, 2))
    h0 = rng.uniform(-1, 1, size=(spec.num_directions, 1, 3))
    keep = np.array([True, False, True, True, False, True])
    output, h_n = reference.forward(spec, weights, x, h0, mask=keep[:, None])
    compact_output, compact_h_n = reference.forward(spec, weights, x[keep], h0)
    np.testing.assert_allclose(h_n, compact_h_n, atol=1e-15)
    np.testing.assert_allclose(output[keep], compact_output, atol=1e-15)
    assert np.all(output[~keep] == 0.0)


def test_bad_arguments_raise(rng):
    spec = GRUSpec(3, 4, dtype="float64")
    weights = random_weights(spec, rng)
    x = rng.standard_normal((5, 2, 3))
    with pytest.raises(ValueError, match="x"):
        reference.forward(spec, weights, x[0])
    with pytest.raises(ValueError, match="features"):
        reference.forward(spec, weights, x[:, :, :2])
    with pytest.raises(ValueError, match="h0"):
        reference.forward(spec, weights, x, np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="lengths"):
        reference.forward(spec, weights, x, lengths=[0, 5])
    with pytest.raises(ValueError, match="lengths"):
        reference.forward(spec, weights, x, lengths=[2.5, 5.0])
    with pytest.raises(ValueError, match="mask"):
        reference.forward(spec, weights, x, lengths=[1, 5], mask=np.ones((5, 2), bool))


# ---------------------------------------------------------------------------------------------
# backward


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layers, bidirectional, batch_first, with_h0, with_lengths", STRUCTURE, ids=STRUCTURE_IDS)
def test_backward_matches_torch_autograd(torch, rng, layers, bidirectional, batch_first, with_h0, with_lengths, bias):
    spec = GRUSpec(3, 5, layers, bidirectional, batch_first, bias=bias, dtype="float64")
    weights = random_weights(spec, rng)
    x, h0, lengths = random_inputs(spec, rng, steps=6, batch=4, with_h0=with_h0, with_lengths=with_lengths)
    output, _ = reference.forward(spec, weights, x, h0, lengths)
    # grad_output is nonzero at padded positions too: they must contribute nothing
    grad_output, grad_h_n = _random_grads(rng, spec, output.shape, 4)

    grads = reference.backward(spec, weights, x, h0, lengths, grad_output, grad_h_n)

    module = torch_gru(torch, spec, weights)
    x_t = torch.tensor(x, requires_grad=True)
    h0_t = torch.tensor(np.zeros_like(grad_h_n) if h0 is None else h0, requires_grad=True)
    out_t, h_n_t = torch_run(torch, module, x_t, h0_t, lengths)
    ((out_t * torch.tensor(grad_output)).sum() + (h_n_t * torch.tensor(grad_h_n)).sum()).backward()
    expected = {"x": x_t.grad.numpy(), "h0": h0_t.grad.numpy()}
    expected.update((name, p.grad.numpy()) for name, p in module.named_parameters())

    assert set(grads) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=0, atol=1e-10, err_msg=name)


def _loss(spec, weights, x, h0, lengths, grad_output, grad_h_n):
    output, h_n = reference.forward(spec, weights, x, h0, lengths)
    return np.sum(output * grad_output) + np.sum(h_n * grad_h_n)


def _finite_difference_grads(spec, weights, x, h0, lengths, grad_output, grad_h_n, eps=1e-6):
    """Central differences of the same scalar loss, one element at a time."""
    inputs = {"x": x, "h0": h0, **weights}
    grads = {}
    for name, value in inputs.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            values = []
            for step in (eps, -eps):
                perturbed = {key: array.copy() for key, array in inputs.items()}
                perturbed[name][index] += step
                weights_p = {key: perturbed[key] for key in weights}
                values.append(_loss(spec, weights_p, perturbed["x"], perturbed["h0"], lengths, grad_output, grad_h_n))
            grad[index] = (values[0] - values[1]) / (2 * eps)
        grads[name] = grad
    return grads


def _fraction_zero_slope(spec, weights, x, h0, lengths):
    """The fraction of gate pre-activations (r, z, n) where the saturated hard sigmoid or an
    active clip makes the slope zero, so the FD test is known to cover those branches."""
    x_tm, h0_tm, mask = reference._prepare(spec, x, h0, lengths, None)
    _, _, caches = reference._run(spec, weights, x_tm, h0_tm, mask)
    zero_slope = []
    for steps in caches.values():
        for _, cache in steps:
            for key in ("raw_r", "raw_z"):
                a = reference._clip(spec, cache[key])
                slope = reference._gate_derivative(spec, a, reference._gate(spec, a))
                zero_slope.append((slope * reference._clip_derivative(spec, cache[key]) == 0).ravel())
            zero_slope.append((reference._clip_derivative(spec, cache["raw_n"]) == 0).ravel())
    return np.mean(np.concatenate(zero_slope))


@pytest.mark.parametrize(
    "gate_activation, clip",
    [("sigmoid", None), ("sigmoid", 0.8), ("hard_sigmoid", None), ("hard_sigmoid_keras2", 1.0)],
)
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_backward_matches_finite_differences(rng, reset_after, gate_activation, clip):
    """Every gradient element of a tiny 2-layer bidirectional model with lengths, both variants."""
    spec = GRUSpec(2, 3, 2, True, reset_after=reset_after, gate_activation=gate_activation, clip=clip,
                   dtype="float64")
    scale = None if gate_activation == "sigmoid" and clip is None else 2.0
    weights = random_weights(spec, rng, scale=scale)
    x, h0, lengths = random_inputs(spec, rng, steps=4, batch=3, with_h0=True, with_lengths=True)
    if scale is not None:
        # the zero-slope branches (saturated hard sigmoid, active clip) must really be exercised
        assert _fraction_zero_slope(spec, weights, x, h0, lengths) > 0.05
    output, _ = reference.forward(spec, weights, x, h0, lengths)
    grad_output, grad_h_n = _random_grads(rng, spec, output.shape, 3)

    grads = reference.backward(spec, weights, x, h0, lengths, grad_output, grad_h_n)
    expected = _finite_difference_grads(spec, weights, x, h0, lengths, grad_output, grad_h_n)

    assert set(grads) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=0, atol=1e-7, err_msg=name)


def test_backward_of_masked_steps_passes_the_state_gradient_through(rng):
    """A masked step is a copy of the state: the gradient equals that of the compacted sequence."""
    spec = GRUSpec(2, 3, reset_after=False, dtype="float64")
    weights = random_weights(spec, rng)
    x = rng.standard_normal((5, 1, 2))
    h0 = rng.uniform(-1, 1, size=(1, 1, 3))
    keep = np.array([True, False, False, True, True])
    grad_output = rng.standard_normal((5, 1, 3))
    grad_h_n = rng.standard_normal((1, 1, 3))
    grads = reference.backward(spec, weights, x, h0, None, grad_output, grad_h_n, mask=keep[:, None])
    compact = reference.backward(spec, weights, x[keep], h0, None, grad_output[keep], grad_h_n)
    for name in compact:
        if name == "x":
            np.testing.assert_allclose(grads["x"][keep], compact["x"], atol=1e-14)
            assert np.all(grads["x"][~keep] == 0.0)
        else:
            np.testing.assert_allclose(grads[name], compact[name], atol=1e-14, err_msg=name)
