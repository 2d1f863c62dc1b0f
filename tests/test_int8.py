"""int8 weights (GRU.quantize("int8"), docs/int8.md): accuracy against float32 on a trained model and on
random ones, the exact quantization arithmetic, bitwise agreement of every kernel set, the
structural behaviour (lengths, mask, streaming, threads, layers, directions) and the refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastgru
from conftest import STRUCTURE_CASES, case_id, case_spec, random_inputs, random_weights
from fastgru import _core
from fastgru.spec import GRUSpec, int8_weight_shapes

VARIANTS = pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
CASES = pytest.mark.parametrize("case", STRUCTURE_CASES, ids=[case_id(c) for c in STRUCTURE_CASES])

# Committed bounds (docs/int8.md). On the trained model of test_int8_keeps_a_trained_models_accuracy the
# measured values are a max |error| of 0.029 and an RMS error of 0.0039 over 300 steps x 64 sequences
# (PyTorch's dynamic int8 GRU: 0.069 and 0.0098), and accuracy within 0.04 points.
TRAINED_MAX_ERROR = 0.05
TRAINED_RMS_ERROR = 0.01
TRAINED_ACCURACY_POINTS = 0.5
# Random weights of torch's init scale, a few steps: the quantization error of one step is about 1e-2.
RANDOM_MAX_ERROR = 0.05


def _quantized(spec, weights):
    model = fastgru.GRU.from_spec(spec, weights)
    return model, model.quantize("int8")


@pytest.fixture(params=_core.supported_isas())
def isa(request):
    _core.set_backend(isa=request.param)
    yield request.param
    _core.set_backend()


def _run_each_isa(model, *args, **kwargs):
    results = {}
    try:
        for name in _core.supported_isas():
            _core.set_backend(isa=name)
            results[name] = model(*args, **kwargs)
    finally:
        _core.set_backend()
    return results


# ---------------------------------------------------------------------------------------------
# accuracy


def _noisy_delayed_recall(rng, steps, batch, symbols=6, noise=0.45):
    """Inputs: one-hot symbols plus Gaussian noise; target at step t: the symbol of step t - 3."""
    labels = rng.integers(0, symbols, size=(steps, batch))
    x = (np.eye(symbols)[labels] + noise * rng.standard_normal((steps, batch, symbols))).astype(np.float32)
    return x, labels


def test_int8_keeps_a_trained_models_accuracy(torch):
    """A torch.nn.GRU trained here (400 Adam steps, about 2 s) on noisy delayed recall, a task whose
    accuracy is far from 100%: int8 outputs stay within the committed error bounds of float32, the
    task accuracy within half a point, and both errors below PyTorch's own dynamic int8 GRU's."""
    delay, hidden, symbols = 3, 32, 6
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible training
    try:
        torch.manual_seed(0)
        gru, head = torch.nn.GRU(symbols, hidden), torch.nn.Linear(hidden, symbols)
        optimizer = torch.optim.Adam([*gru.parameters(), *head.parameters()], lr=1e-2)
        rng = np.random.default_rng(0)
        for _ in range(400):
            x, labels = _noisy_delayed_recall(rng, 24, 32)
            logits = head(gru(torch.from_numpy(x))[0][delay:])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, symbols),
                                                     torch.from_numpy(labels[:-delay]).reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        gru.eval()
        x, labels = _noisy_delayed_recall(np.random.default_rng(1), 300, 64)
        with torch.no_grad():
            expected = gru(torch.from_numpy(x))[0].numpy().astype(np.float64)
            holder = torch.nn.Module()
            holder.gru = gru
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch_int8 = torch.ao.quantization.quantize_dynamic(holder, {torch.nn.GRU}, dtype=torch.qint8).gru
            torch_output = torch_int8(torch.from_numpy(x))[0].numpy().astype(np.float64)
        weight, bias = head.weight.detach().numpy(), head.bias.detach().numpy()
    finally:
        torch.set_num_threads(threads)

    output = fastgru.GRU.from_torch(gru).quantize("int8")(x)[0].astype(np.float64)

    def accuracy(out):
        return 100 * np.mean((out @ weight.T + bias).argmax(-1)[delay:] == labels[:-delay])

    error, torch_error = np.abs(output - expected), np.abs(torch_output - expected)
    assert accuracy(expected) > 60, "the float model must have learnt the task for the comparison to mean much"
    assert error.max() <= TRAINED_MAX_ERROR, f"max |int8 - float32| {error.max():.3g}"
    assert np.sqrt(np.mean(error ** 2)) <= TRAINED_RMS_ERROR
    assert abs(accuracy(output) - accuracy(expected)) <= TRAINED_ACCURACY_POINTS, \
        f"accuracy float32 {accuracy(expected):.2f}% int8 {accuracy(output):.2f}%"
    assert error.max() <= torch_error.max() and np.mean(error ** 2) <= np.mean(torch_error ** 2), \
        f"fastgru int8 max {error.max():.3g}, torch dynamic int8 max {torch_error.max():.3g}"


@CASES
@VARIANTS
def test_int8_is_close_to_float32(rng, reset_after, case):
    spec = case_spec(case, "float32", reset_after)
    model, quantized = _quantized(spec, random_weights(spec, rng))
    x, h0, lengths = random_inputs(spec, rng, case["steps"], case["batch"], with_h0=case["h0"],
                                   with_lengths=case["lengths"])

    output, h_n = quantized(x, h0, lengths)
    expected_output, expected_h_n = model(x, h0, lengths)

    assert output.dtype == np.float32 and output.shape == expected_output.shape and h_n.shape == expected_h_n.shape
    assert np.max(np.abs(output - expected_output), initial=0) <= RANDOM_MAX_ERROR
    assert np.max(np.abs(h_n - expected_h_n)) <= RANDOM_MAX_ERROR
    if lengths is not None:  # zeros past each length, exactly
        for b, length in enumerate(lengths):
            rows = output[b, length:] if spec.batch_first else output[length:, b]
            assert not rows.any()


# ---------------------------------------------------------------------------------------------
# the arithmetic, exactly


def _code(values, scale):
    """round-half-even(values / scale) clamped to [-127, 127], in float32 as the core does it."""
    return np.clip(np.rint(np.float32(values) / np.float32(scale)), -127, 127)


def _emulate_one_step(spec, weights, x, h0, weight_bits=8):
    """One step of one int8 layer (docs/int8.md) in numpy: float32 scales and codes (``weight_bits`` 8:
    -127..127, 7: -63..63), exact integer sums, then the float gate math in float64."""
    H = spec.hidden_size
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731

    def codes_and_scales(w):
        top = np.float32(2 ** (weight_bits - 1) - 1)
        scale = f32(np.abs(f32(w)).max(axis=1)) / top
        safe = np.where(scale > 0, scale, np.float32(1))
        return np.where(scale[:, None] > 0, np.clip(np.rint(f32(w) / safe[:, None]), -top, top), 0), scale

    q_ih, s_ih = codes_and_scales(weights["weight_ih_l0"])
    q_hh, s_hh = codes_and_scales(weights["weight_hh_l0"])
    b_ih = weights.get("bias_ih_l0", np.zeros(3 * H))
    b_hh = weights.get("bias_hh_l0", np.zeros(3 * H))
    x_max = f32(np.abs(f32(x)).max(axis=1))
    x_codes = np.clip(np.rint(f32(x) * (np.float32(127) / x_max)[:, None]), -127, 127)
    x_scale = x_max / np.float32(127)
    gates_x = (x_codes @ q_ih.T).astype(np.float32) * (x_scale[:, None] * s_ih[None]) + b_ih
    h = f32(h0)
    h_codes = _code(h, np.float32(1) / np.float32(127))
    r_h = (h_codes @ q_hh[:2 * H].T).astype(np.float32) * (np.float32(1 / 127) * s_hh[:2 * H]) + b_hh[:2 * H]
    sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    r = sigmoid(gates_x[:, :H] + r_h[:, :H])
    z = sigmoid(gates_x[:, H:2 * H] + r_h[:, H:])
    if spec.reset_after:
        g = (h_codes @ q_hh[2 * H:].T).astype(np.float32) * (np.float32(1 / 127) * s_hh[2 * H:]) + b_hh[2 * H:]
        n = np.tanh(gates_x[:, 2 * H:] + r * g)
    else:
        reset_codes = np.clip(np.rint(f32(r * h) * np.float32(127)), -127, 127)
        g = (reset_codes @ q_hh[2 * H:].T).astype(np.float32) * (np.float32(1 / 127) * s_hh[2 * H:])
        n = np.tanh(gates_x[:, 2 * H:] + g + b_hh[2 * H:])
    return n + z * (h - n)


WEIGHT_BITS = pytest.mark.parametrize("weight_bits", [8, 7], ids=["8bit", "7bit"])


@VARIANTS
@WEIGHT_BITS
@pytest.mark.parametrize("sizes", [(3, 5), (40, 19), (16, 32)], ids=lambda s: f"I={s[0]}-H={s[1]}")
def test_int8_step_is_the_documented_arithmetic(rng, isa, reset_after, weight_bits, sizes):
    spec = GRUSpec(*sizes, reset_after=reset_after)
    weights = random_weights(spec, rng, scale=0.8)
    weights["weight_hh_l0"][3, :] = 0  # an all-zero row: scale 0, codes 0
    x = rng.standard_normal((1, 6, spec.input_size))
    h0 = rng.uniform(-1, 1, (1, 6, spec.hidden_size))

    output, _ = fastgru.GRU.from_spec(spec, weights).quantize(weight_bits=weight_bits)(x, h0)

    expected = _emulate_one_step(spec, weights, x[0], h0[0], weight_bits)
    # float32 gate math with fastgru's sigmoid/tanh against float64 numpy: a few float32 ulps
    np.testing.assert_allclose(output[0], expected, rtol=0, atol=5e-6)


# ---------------------------------------------------------------------------------------------
# every kernel set, bitwise


@VARIANTS
@WEIGHT_BITS
@pytest.mark.parametrize("gate_activation, clip", [("sigmoid", None), ("hard_sigmoid", 0.8)])
@pytest.mark.parametrize("layers, bidirectional, batch, sizes", [
    (1, False, 1, (5, 19)),     # batch 1: the one-row products; a tail block of 3 units
    (2, True, 5, (33, 16)),     # rows in groups of 4 and 1; input not a multiple of 16
    (1, False, 7, (1, 40)),
    (1, False, 19, (40, 48)),   # full 8-row tiles of pairs of blocks (the 512-bit table's), then 3 rows
])
def test_every_kernel_set_gives_identical_int8_results(rng, reset_after, weight_bits, gate_activation, clip,
                                                        layers, bidirectional, batch, sizes):
    """The integer sums are exact and the float32 code after them is compiled without contraction, so
    the portable kernels and the vector ones (AVX2, AVX-512 VNNI where the CPU has them; with 7-bit
    weights the AVX2 and AVX-512F tables' narrow products) agree bit for bit."""
    spec = GRUSpec(*sizes, layers, bidirectional, reset_after=reset_after, gate_activation=gate_activation,
                   clip=clip)
    quantized = fastgru.GRU.from_spec(spec, random_weights(spec, rng, scale=1.2)).quantize(weight_bits=weight_bits)
    assert quantized.int8_narrow == (weight_bits == 7)
    x, h0, lengths = random_inputs(spec, rng, 11, batch, with_h0=True, with_lengths=batch > 1)
    x[3] *= 40  # rows of very different magnitudes: each gets its own scale

    results = _run_each_isa(quantized, x, h0, lengths)

    first = results["generic"]
    for name, (output, h_n) in results.items():
        np.testing.assert_array_equal(output, first[0], err_msg=f"{name} output differs from generic")
        np.testing.assert_array_equal(h_n, first[1], err_msg=f"{name} h_n differs from generic")


def _int8_model_with_codes(rng, spec, top):
    """An int8 model (from_int8_weights) whose weight codes are random in -top..top, each row holding
    both extremes, with random scales and biases."""
    weights = {}
    for name, shape in int8_weight_shapes(spec).items():
        if name.endswith(".scale"):
            weights[name] = rng.uniform(0.001, 0.02, shape).astype(np.float32)
        elif name.startswith("weight"):
            codes = rng.integers(-top, top + 1, shape).astype(np.int8)
            codes[:, 0], codes[:, -1] = top, -top
            weights[name] = codes
        else:
            weights[name] = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
    return fastgru.GRU.from_int8_weights(spec, weights)


@VARIANTS
@pytest.mark.parametrize("top, narrow", [(64, True), (65, False), (127, False)])
def test_codes_at_the_narrow_limit_give_identical_results_on_every_kernel_set(rng, reset_after, top, narrow):
    """The narrow products' worst case: codes of +-64 against saturating activation codes (inputs and
    states far beyond their scales' range code to +-127, offset bytes 255 and 1) sum pairs of 2 * 255 * 64,
    just below int16's limit. One code of 65 makes the model wide (the sign-using products); both give
    the generic kernels' bits."""
    spec = GRUSpec(40, 48, reset_after=reset_after)
    model = _int8_model_with_codes(rng, spec, top)
    assert model.int8_narrow is narrow
    x = np.where(rng.random((9, 6, 40)) < 0.5, -1.0, 1.0).astype(np.float32) * 50
    x[:, :, ::7] = 0  # each row's scale comes from its +-50s: every nonzero code is +-127
    h0 = np.where(rng.random((1, 6, 48)) < 0.5, -1.0, 1.0).astype(np.float32)

    results = _run_each_isa(model, x, h0)

    first = results["generic"]
    for name, (output, h_n) in results.items():
        np.testing.assert_array_equal(output, first[0], err_msg=f"{name} output differs from generic")
        np.testing.assert_array_equal(h_n, first[1], err_msg=f"{name} h_n differs from generic")


def test_7bit_codes_and_scales_are_the_documented_ones(rng):
    spec = GRUSpec(24, 20, 2, True)
    model = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    stored = model.quantize("int8", weight_bits=7).int8_weights
    for name, value in model.weights.items():
        if name.startswith("weight"):
            codes, scale = stored[name], stored[name + ".scale"]
            assert np.abs(codes).max() == 63 and np.all(np.abs(codes).max(axis=1) == 63)
            np.testing.assert_array_equal(scale, np.abs(value).max(axis=1) / np.float32(63))
            np.testing.assert_array_equal(codes, np.clip(np.rint(value / scale[:, None]), -63, 63))
    assert not model.quantize().int8_narrow and not model.int8_narrow


@CASES
@VARIANTS
def test_7bit_int8_is_close_to_float32(rng, reset_after, case):
    spec = case_spec(case, "float32", reset_after)
    model = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    x, h0, lengths = random_inputs(spec, rng, case["steps"], case["batch"], with_h0=case["h0"],
                                   with_lengths=case["lengths"])

    output, h_n = model.quantize(weight_bits=7)(x, h0, lengths)
    expected_output, expected_h_n = model(x, h0, lengths)

    assert np.max(np.abs(output - expected_output), initial=0) <= RANDOM_MAX_ERROR
    assert np.max(np.abs(h_n - expected_h_n)) <= RANDOM_MAX_ERROR


def test_narrow_int8_survives_save_load_and_pickle(rng, tmp_path):
    """A 7-bit model is stored as any int8 model (its codes); loaded or unpickled it is narrow again
    and gives the same bits."""
    import pickle
    spec = GRUSpec(10, 30)
    quantized = fastgru.GRU.from_spec(spec, random_weights(spec, rng)).quantize(weight_bits=7)
    x = rng.standard_normal((5, 3, 10)).astype(np.float32)
    quantized.save(tmp_path / "q7.fastgru")
    for copy in (fastgru.load(tmp_path / "q7.fastgru"), pickle.loads(pickle.dumps(quantized))):
        assert copy.int8_narrow and copy.weight_format == "int8"
        for got, expected in zip(copy(x), quantized(x)):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("weight_bits", [6, 9, 0, True, 7.0, "7", None])
def test_quantize_refuses_other_weight_bits(weight_bits):
    with pytest.raises(ValueError, match="weight_bits must be 8 or 7"):
        fastgru.GRU(3, 4, seed=0).quantize("int8", weight_bits=weight_bits)


# ---------------------------------------------------------------------------------------------
# structure


@VARIANTS
@pytest.mark.parametrize("layers", [1, 2])
def test_int8_stream_equals_the_sequence(rng, isa, reset_after, layers):
    spec = GRUSpec(7, 20, layers, reset_after=reset_after)
    _, quantized = _quantized(spec, random_weights(spec, rng))
    x, h0, _ = random_inputs(spec, rng, 9, 3, with_h0=True)

    output, h_n = quantized(x, h0)
    stream = quantized.stream(3, h0)
    steps = np.stack([stream.step(x_t).copy() for x_t in x])

    np.testing.assert_array_equal(steps, output)
    np.testing.assert_array_equal(stream.state, h_n)


@VARIANTS
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_int8_lengths_equal_separate_runs(rng, reset_after, bidirectional):
    """Scales are per row and per step, so a sequence's result does not depend on its batch: with
    lengths, each sequence equals running it alone, cut to its length, bit for bit."""
    spec = GRUSpec(5, 12, 2, bidirectional, reset_after=reset_after)
    _, quantized = _quantized(spec, random_weights(spec, rng))
    x, h0, lengths = random_inputs(spec, rng, 8, 5, with_h0=True, with_lengths=True)

    output, h_n = quantized(x, h0, lengths)

    for b, length in enumerate(lengths):
        alone_output, alone_h_n = quantized(x[:length, b:b + 1], h0[:, b:b + 1])
        np.testing.assert_array_equal(output[:length, b:b + 1], alone_output)
        np.testing.assert_array_equal(h_n[:, b:b + 1], alone_h_n)
        assert not output[length:, b].any()


@VARIANTS
def test_int8_masked_steps_are_skipped(rng, reset_after):
    """A masked step carries the state (and its int8 code) and outputs zeros: the other steps equal a
    run on the sequence with the masked steps removed."""
    spec = GRUSpec(4, 10, 2, reset_after=reset_after)
    _, quantized = _quantized(spec, random_weights(spec, rng))
    x, h0, _ = random_inputs(spec, rng, 9, 2, with_h0=True)
    mask = np.ones((9, 2), dtype=bool)
    mask[[0, 4, 5], 0] = False
    mask[8, 1] = False

    output, h_n = quantized(x, h0, mask=mask)

    for b in range(2):
        kept = mask[:, b]
        alone_output, alone_h_n = quantized(x[kept, b:b + 1], h0[:, b:b + 1])
        np.testing.assert_array_equal(output[kept, b:b + 1], alone_output)
        np.testing.assert_array_equal(h_n[:, b:b + 1], alone_h_n)
        assert not output[~kept, b].any()
    np.testing.assert_array_equal(quantized(x, h0, mask=np.ones((9, 2), bool))[0], quantized(x, h0)[0])


def test_int8_large_initial_states_do_not_saturate(rng):
    """A row's state scale is max(1, max|h0 row|) / 127 for the whole call: states never leave that
    bound, so an h0 far outside [-1, 1] costs resolution, not saturation."""
    spec = GRUSpec(6, 24, reset_after=True)
    model, quantized = _quantized(spec, random_weights(spec, rng))
    x, _, _ = random_inputs(spec, rng, 5, 3)
    h0 = rng.uniform(-1, 1, (1, 3, 24))
    h0[0, 1] *= 4
    h0[0, 2, 0] = -30.0
    error = np.abs(quantized(x, h0)[0] - model(x, h0)[0]).max(axis=(0, 2))
    saturated = np.abs(model(x, np.clip(h0, -1, 1))[0] - model(x, h0)[0]).max(axis=(0, 2))
    assert error[0] <= RANDOM_MAX_ERROR and error[1] <= RANDOM_MAX_ERROR
    assert error[2] <= 30 / 127  # one code step of that row
    assert np.all(error[1:] < saturated[1:] / 10), f"errors {error}, clipping h0 would give {saturated}"


@VARIANTS
def test_int8_threads_do_not_change_results(rng, reset_after):
    """Big enough that the core splits steps (>= 64K multiply-adds per part) and the input rows'
    quantization across threads; the tail block of 96 + 5 units is split unevenly."""
    spec = GRUSpec(700, 101, 2, True, reset_after=reset_after)
    _, quantized = _quantized(spec, random_weights(spec, rng))
    x, h0, lengths = random_inputs(spec, rng, 40, 6, with_h0=True, with_lengths=True)
    single = quantized(x, h0, lengths, num_threads=1)
    for threads in (2, 3):
        for expected, actual in zip(single, quantized(x, h0, lengths, num_threads=threads)):
            np.testing.assert_array_equal(actual, expected)


def test_int8_long_sequence_runs_in_chunks(rng):
    """Long sequences are projected chunk by chunk (both directions at different times)."""
    spec = GRUSpec(3, 600, 1, True)
    model, quantized = _quantized(spec, random_weights(spec, rng))
    # float32 gates_x of both directions: 2 * 3 * 600 * 4 bytes a step; 2.4 chunks, the last partial
    chunk = _core.cpu_info()["chunk bytes"] // (2 * 3 * 600 * 4)
    x, _, _ = random_inputs(spec, rng, int(2.4 * chunk), 1)
    output, _ = quantized(x)
    assert np.max(np.abs(output - model(x)[0])) <= RANDOM_MAX_ERROR
    # Direction 1 projected its chunks at other times than direction 0: a model with the directions'
    # weights swapped, run on the reversed input, gives the same numbers mirrored.
    swapped = {(name[:-len("_reverse")] if name.endswith("_reverse") else name + "_reverse"): value
               for name, value in model.weights.items()}
    mirrored, _ = fastgru.GRU.from_spec(spec, swapped).quantize()(x[::-1])
    np.testing.assert_array_equal(mirrored[::-1, :, :600], output[:, :, 600:])


def test_int8_model_is_smaller_and_reports_its_format(rng):
    spec = GRUSpec(64, 64, 2, True)
    model, quantized = _quantized(spec, random_weights(spec, rng))
    assert model.weight_format == "float32" and quantized.weight_format == "int8"
    assert quantized.packed_bytes < model.packed_bytes / 3  # 1 byte per weight instead of 4
    assert repr(quantized).endswith(".quantize('int8')")
    assert quantized.spec == model.spec and quantized.dtype == np.float32
    stored = quantized.int8_weights
    for name, value in quantized.weights.items():  # dequantized: codes * scale, biases as they were
        if name.startswith("weight"):
            np.testing.assert_array_equal(value, stored[name].astype(np.float32) * stored[name + ".scale"][:, None])
            # round to nearest: within half a scale step of the float32 weight it came from
            assert np.all(np.abs(value - model.weights[name]) <= 0.5001 * stored[name + ".scale"][:, None])
        else:
            np.testing.assert_array_equal(value, model.weights[name])


def test_int8_of_a_zero_input_and_zero_weights(rng):
    spec = GRUSpec(4, 9, bias=False)
    weights = {name: np.zeros(shape) for name, shape in spec.weight_shapes().items()}
    output, h_n = fastgru.GRU.from_spec(spec, weights).quantize()(np.zeros((3, 2, 4)))
    np.testing.assert_array_equal(output, 0)
    np.testing.assert_array_equal(h_n, 0)


def test_int8_passes_nan_inputs_through(rng):
    spec = GRUSpec(4, 9)
    _, quantized = _quantized(spec, random_weights(spec, rng))
    x = rng.standard_normal((3, 2, 4))
    x[1, 0, 2] = np.nan
    output, _ = quantized(x)
    assert np.isnan(output[1:, 0]).all() and np.isfinite(output[:, 1]).all() and np.isfinite(output[0]).all()


# ---------------------------------------------------------------------------------------------
# refusals


def test_int8_needs_a_float32_model(rng):
    spec = GRUSpec(3, 4, dtype="float64")
    with pytest.raises(TypeError, match="float32"):
        fastgru.GRU.from_spec(spec, random_weights(spec, rng)).quantize("int8")


def test_int8_refuses_other_formats_and_requantizing(rng):
    model = fastgru.GRU(3, 4)
    with pytest.raises(ValueError, match="'int8'"):
        model.quantize("int4")
    with pytest.raises(ValueError, match="already int8"):
        model.quantize().quantize()


def test_int8_refuses_non_finite_weights(rng):
    spec = GRUSpec(3, 4)
    weights = random_weights(spec, rng)
    weights["weight_hh_l0"][2, 1] = np.inf
    with pytest.raises(ValueError, match="weight_hh_l0.*finite"):
        fastgru.GRU.from_spec(spec, weights).quantize()


def test_int8_is_inference_only(rng):
    quantized = fastgru.GRU(3, 4, seed=0).quantize()
    x = rng.standard_normal((2, 1, 3))
    with pytest.raises(NotImplementedError, match="inference-only"):
        quantized.forward(x, return_tape=True)
    with pytest.raises(NotImplementedError, match="inference-only"):
        quantized.backward(None)
    with pytest.raises(NotImplementedError, match="not supported"):  # the core refuses a tape too
        quantized._model.tape_bytes(2, 1)
