"""fastgru.torch.GRU: a drop-in nn.GRU whose forward and backward run in fastgru.

Held against torch itself: torch.autograd.gradcheck in float64, nn.GRU's outputs, gradients and
optimiser trajectories from the same seed, and nn.GRU's state_dict and PackedSequence conventions.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch.func import functional_call  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import fastgru.torch  # noqa: E402

CONFIGS = [
    dict(num_layers=1, bidirectional=False, batch_first=False, bias=True),
    dict(num_layers=2, bidirectional=True, batch_first=False, bias=True),
    dict(num_layers=2, bidirectional=True, batch_first=True, bias=True),
    dict(num_layers=3, bidirectional=False, batch_first=True, bias=False),
]
CONFIG_IDS = ["1layer", "2layer-bi", "2layer-bi-batch_first", "3layer-no_bias-batch_first"]
configs = pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
packing = pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])

INPUT, HIDDEN, STEPS, BATCH = 3, 4, 5, 3
LENGTHS = [2, 5, 1]  # unsorted, including 1 and T


def _pair(config, dtype, seed=0):
    """(nn.GRU, fastgru.torch.GRU) built from the same seed: their initial weights are identical."""
    torch.manual_seed(seed)
    reference = torch.nn.GRU(INPUT, HIDDEN, dtype=dtype, **config)
    torch.manual_seed(seed)
    ours = fastgru.torch.GRU(INPUT, HIDDEN, dtype=dtype, **config)
    return reference, ours


def _inputs(config, dtype, seed=1, with_hx=True):
    generator = torch.Generator().manual_seed(seed)
    shape = (BATCH, STEPS, INPUT) if config["batch_first"] else (STEPS, BATCH, INPUT)
    x = torch.randn(shape, dtype=dtype, generator=generator)
    directions = 2 if config["bidirectional"] else 1
    hx = torch.randn((config["num_layers"] * directions, BATCH, HIDDEN), dtype=dtype, generator=generator)
    return x, hx if with_hx else None


def _run(module, x, hx, packed, batch_first):
    """Output and h_n of module; with packed, through pack_padded_sequence and back as packed data."""
    if not packed:
        return module(x, hx)
    sequence = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=batch_first, enforce_sorted=False)
    output, h_n = module(sequence, hx)
    return output.data, h_n


def test_import_fastgru_does_not_import_torch():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import sys, fastgru; assert 'torch' not in sys.modules, 'fastgru imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# ---------------------------------------------------------------------------------------------
# gradients


@configs
@packing
def test_gradcheck_float64(config, packed):
    _, module = _pair(config, torch.float64)
    x, hx = _inputs(config, torch.float64)
    params = {name: p.detach().clone().requires_grad_(True) for name, p in module.named_parameters()}
    names = list(params)

    def function(x_, hx_, *weights):
        return _run(lambda a, b: functional_call(module, dict(zip(names, weights)), (a, b)), x_, hx_, packed,
                    config["batch_first"])

    inputs = (x.requires_grad_(True), hx.requires_grad_(True), *params.values())
    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@configs
@packing
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_outputs_and_gradients_match_nn_gru(config, packed, dtype):
    reference, ours = _pair(config, dtype)
    results = []
    for module in (reference, ours):
        x, hx = _inputs(config, dtype)
        x.requires_grad_(True)
        hx.requires_grad_(True)
        output, h_n = _run(module, x, hx, packed, config["batch_first"])
        loss = (output * torch.linspace(-1, 1, output.numel(), dtype=dtype).view_as(output)).sum() + (h_n**2).sum()
        loss.backward()
        results.append([output, h_n, x.grad, hx.grad] + [p.grad for p in module.parameters()])
    tolerance = 1e-12 if dtype == torch.float64 else 2e-5
    for expected, actual in zip(*results):
        torch.testing.assert_close(actual, expected, atol=tolerance, rtol=tolerance)


def test_hx_none_gives_no_hx_gradient_and_zero_initial_state():
    config = CONFIGS[1]
    reference, ours = _pair(config, torch.float64)
    x, _ = _inputs(config, torch.float64, with_hx=False)
    torch.testing.assert_close(ours(x)[0], reference(x)[0], atol=1e-12, rtol=0)
    x.requires_grad_(True)
    output, h_n = ours(x)
    output.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_double_backward_is_refused():
    _, module = _pair(CONFIGS[0], torch.float64)
    x, hx = _inputs(CONFIGS[0], torch.float64)
    x.requires_grad_(True)
    output, _ = module(x, hx)
    (grad_x,) = torch.autograd.grad(output.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad_x.sum().backward()


# ---------------------------------------------------------------------------------------------
# training


@pytest.mark.parametrize("config, packed", [(CONFIGS[0], False), (CONFIGS[2], True), (CONFIGS[3], False)],
                         ids=["1layer", "2layer-bi-packed", "3layer-no_bias"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_five_optimizer_steps_give_nn_gru_losses(config, packed, optimizer):
    """A GRU + linear head regressing a fixed target, trained from the same seed with each GRU."""
    losses = []
    for cls in (torch.nn.GRU, fastgru.torch.GRU):
        torch.manual_seed(3)
        rnn = cls(INPUT, HIDDEN, **config)
        head = torch.nn.Linear(HIDDEN * (2 if config["bidirectional"] else 1), 2)
        parameters = list(rnn.parameters()) + list(head.parameters())
        opt = torch.optim.SGD(parameters, lr=0.5) if optimizer == "sgd" else torch.optim.Adam(parameters, lr=0.05)
        x, hx = _inputs(config, torch.float32, seed=4)
        target = torch.randn(x.shape[:2] + (2,), generator=torch.Generator().manual_seed(5))
        curve = []
        for _ in range(5):
            opt.zero_grad()
            if packed:
                sequence = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=config["batch_first"],
                                                enforce_sorted=False)
                output, _ = rnn(sequence, hx)
                output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=config["batch_first"],
                                                                   total_length=STEPS)
            else:
                output, _ = rnn(x, hx)
            loss = ((head(output) - target) ** 2).mean()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        losses.append(curve)
    reference, ours = losses
    assert reference[0] != reference[-1]  # it trained
    for step, (expected, actual) in enumerate(zip(reference, ours)):
        assert abs(actual - expected) <= 1e-5, f"step {step}: nn.GRU loss {expected} vs fastgru {actual}"


# ---------------------------------------------------------------------------------------------
# drop-in compatibility


@configs
def test_state_dict_round_trip_with_nn_gru(config):
    reference, _ = _pair(config, torch.float32, seed=7)
    ours = fastgru.torch.GRU(INPUT, HIDDEN, **config)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    back = torch.nn.GRU(INPUT, HIDDEN, **config)
    back.load_state_dict(ours.state_dict(), strict=True)
    x, hx = _inputs(config, torch.float32)
    for module in (ours, back):
        for actual, expected in zip(module(x, hx), reference(x, hx)):
            torch.testing.assert_close(actual, expected, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_output_is_packed_like_nn_gru(enforce_sorted):
    config = CONFIGS[2]
    reference, ours = _pair(config, torch.float64)
    x, hx = _inputs(config, torch.float64)
    lengths = torch.tensor(sorted(LENGTHS, reverse=True) if enforce_sorted else LENGTHS)
    sequence = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=enforce_sorted)
    (expected, expected_h), (actual, actual_h) = reference(sequence, hx), ours(sequence, hx)
    assert isinstance(actual, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(actual.batch_sizes, expected.batch_sizes)
    for name in ("sorted_indices", "unsorted_indices"):
        a, e = getattr(actual, name), getattr(expected, name)
        assert (a is None and e is None) or torch.equal(a, e), name
    torch.testing.assert_close(actual.data, expected.data, atol=1e-12, rtol=0)
    torch.testing.assert_close(actual_h, expected_h, atol=1e-12, rtol=0)


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input_matches_nn_gru(batch_first):
    config = dict(CONFIGS[1], batch_first=batch_first)
    reference, ours = _pair(config, torch.float64)
    x = torch.randn(STEPS, INPUT, dtype=torch.float64)
    hx = torch.randn(4, HIDDEN, dtype=torch.float64)
    for actual, expected in zip(ours(x, hx), reference(x, hx)):
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, atol=1e-12, rtol=0)


def test_inference_under_no_grad_matches():
    reference, ours = _pair(CONFIGS[1], torch.float32)
    x, hx = _inputs(CONFIGS[1], torch.float32)
    with torch.no_grad():
        actual, expected = ours(x, hx), reference(x, hx)
    for a, e in zip(actual, expected):
        assert not a.requires_grad
        torch.testing.assert_close(a, e, atol=2e-6, rtol=1e-5)


def test_module_converts_with_double_and_repr_matches():
    reference, ours = _pair(CONFIGS[2], torch.float32)
    assert repr(ours).replace("GRU", "", 1) == repr(reference).replace("GRU", "", 1)
    ours.double()
    x, hx = _inputs(CONFIGS[2], torch.float64)
    assert ours(x, hx)[0].dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dropout=0.5), NotImplementedError, "dropout"),
        (dict(dropout=2.0), ValueError, "dropout"),
        (dict(device="meta"), NotImplementedError, "CPU"),
        (dict(dtype=torch.float16), TypeError, "float32 or torch.float64"),
        (dict(num_layers=0), ValueError, "num_layers"),
    ],
)
def test_unsupported_constructor_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastgru.torch.GRU(INPUT, HIDDEN, **kwargs)


def test_bad_inputs_raise_clear_errors():
    _, module = _pair(CONFIGS[0], torch.float32)
    with pytest.raises(RuntimeError, match="dtype"):
        module(torch.zeros(STEPS, BATCH, INPUT, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="input_size"):
        module(torch.zeros(STEPS, BATCH, INPUT + 1))
    with pytest.raises(RuntimeError, match="hidden size"):
        module(torch.zeros(STEPS, BATCH, INPUT), torch.zeros(2, BATCH, HIDDEN))
    with pytest.raises(ValueError, match="3D"):
        module(torch.zeros(1, STEPS, BATCH, INPUT))
    with pytest.raises(TypeError, match="PackedSequence"):
        module([[0.0] * INPUT])
