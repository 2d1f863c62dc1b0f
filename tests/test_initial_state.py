"""A learned initial state (GRU.initial_state): used when a call or a stream gets no h0, bit for bit the
same as passing it broadcast over the batch; its gradient against PyTorch's for an nn.Parameter h0; kept
by save/load, pickle and quantize; picked up by the importers only when named; and the shape errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastgru
from conftest import random_weights
from fastgru.io.safetensors import read_safetensors, write_safetensors
from fastgru.spec import GRUSpec

SPECS = [
    GRUSpec(3, 5),
    GRUSpec(2, 4, num_layers=2, bidirectional=True, batch_first=True, dtype="float64"),
    GRUSpec(4, 3, num_layers=3, reset_after=False, gate_activation="hard_sigmoid"),
]
SPEC_IDS = ["L1", "L2-bidirectional-batch_first-float64", "L3-reset_before"]


def _model(spec, rng):
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng, scale=0.8))
    state = rng.uniform(-1, 1, (spec.num_layers * spec.num_directions, spec.hidden_size)).astype(spec.dtype)
    return gru.with_initial_state(state), state


def _x(spec, rng, steps=6, batch=3):
    shape = (batch, steps, spec.input_size) if spec.batch_first else (steps, batch, spec.input_size)
    return rng.standard_normal(shape).astype(spec.dtype)


def _explicit_h0(state, batch):
    return np.repeat(state[:, None, :], batch, axis=1)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
@pytest.mark.parametrize("extra", ["plain", "lengths", "mask"])
def test_call_without_h0_equals_passing_the_initial_state_bit_for_bit(rng, spec, extra):
    gru, state = _model(spec, rng)
    x = _x(spec, rng)
    options = {"lengths": {"lengths": [6, 1, 4]}, "mask": {"mask": rng.random((6, 3)) > 0.3}, "plain": {}}[extra]
    learned = gru(x, **options)
    explicit = gru(x, _explicit_h0(state, 3), **options)
    for actual, expected in zip(learned, explicit):
        np.testing.assert_array_equal(actual, expected)
    plain = fastgru.GRU.from_spec(spec, gru.weights)  # the same weights without an initial state
    for actual, expected in zip(plain(x, _explicit_h0(state, 3), **options), explicit):
        np.testing.assert_array_equal(actual, expected)
    assert not np.array_equal(plain(x, **options)[1], learned[1])  # zeros are not the learned state


def test_an_explicit_h0_wins_and_zero_steps_return_the_initial_state(rng):
    spec = SPECS[1]
    gru, state = _model(spec, rng)
    x = _x(spec, rng)
    h0 = rng.uniform(-1, 1, (4, 3, 4))
    np.testing.assert_array_equal(gru(x, h0)[1], fastgru.GRU.from_spec(spec, gru.weights)(x, h0)[1])
    output, h_n = gru(np.zeros((3, 0, 2)))
    assert output.shape == (3, 0, 8)
    np.testing.assert_array_equal(h_n, _explicit_h0(state, 3))
    _, h_n = gru(np.zeros((0, 5, 2)))  # batch_first: B = 0
    assert h_n.shape == (4, 0, 4)


@pytest.mark.parametrize("stored_as", ["(L*D, H)", "(L*D, 1, H)", "(H,)", "float64 list"])
def test_shapes_accepted_and_the_array_is_copied_read_only(rng, stored_as):
    spec = SPECS[0]
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    state = rng.uniform(-1, 1, (1, 5)).astype(np.float32)
    given = {"(L*D, H)": state.copy(), "(L*D, 1, H)": state[:, None].copy(), "(H,)": state[0].copy(),
             "float64 list": state.astype(np.float64).tolist()}[stored_as]
    learned = gru.with_initial_state(given)
    assert learned.initial_state.shape == (1, 5) and learned.initial_state.dtype == np.float32
    np.testing.assert_array_equal(learned.initial_state, state)
    assert not learned.initial_state.flags.writeable
    if isinstance(given, np.ndarray):
        given[...] = 7  # the model keeps its own copy
        np.testing.assert_array_equal(learned.initial_state, state)
    assert gru.initial_state is None  # the original is unchanged
    assert learned.with_initial_state(None).initial_state is None
    assert "with_initial_state" in repr(learned) and "with_initial_state" not in repr(gru)


@pytest.mark.parametrize("spec", [SPECS[0], SPECS[2]], ids=[SPEC_IDS[0], SPEC_IDS[2]])
def test_stream_starts_from_and_resets_to_the_initial_state(rng, spec):
    gru, state = _model(spec, rng)
    x = rng.standard_normal((5, 2, spec.input_size)).astype(spec.dtype)
    learned, explicit = gru.stream(2), gru.stream(2, _explicit_h0(state, 2))
    np.testing.assert_array_equal(learned.state, _explicit_h0(state, 2))
    for x_t in x:
        np.testing.assert_array_equal(learned.step(x_t), explicit.step(x_t))
    learned.reset()
    np.testing.assert_array_equal(learned.state, _explicit_h0(state, 2))
    np.testing.assert_array_equal(learned.step(x[0]), gru(x[:1])[0][0])
    learned.reset(np.zeros((spec.num_layers, 2, spec.hidden_size)))
    np.testing.assert_array_equal(learned.state, 0)


def test_backward_gives_the_gradient_of_the_learned_state_as_pytorch_does(rng, torch):
    """A torch model with h0 = nn.Parameter((L*D, 1, H)) expanded over the batch: fastgru's
    grads["initial_state"] is h0.grad, and grads["h0"] the per-row gradient of an explicit h0."""
    from conftest import torch_gru

    spec = GRUSpec(3, 4, num_layers=2, bidirectional=True, dtype="float64")
    gru, state = _model(spec, rng)
    module = torch_gru(torch, spec, gru.weights)
    h0 = torch.nn.Parameter(torch.tensor(state[:, None, :]))
    x = _x(spec, rng, batch=5)
    grad_output = rng.standard_normal((6, 5, 8))
    output, h_n = module(torch.tensor(x), h0.expand(-1, 5, -1).contiguous())
    (output * torch.tensor(grad_output)).sum().backward()

    output, _, tape = gru.forward(x, return_tape=True)
    grads = gru.backward(tape, grad_output)
    np.testing.assert_allclose(grads["initial_state"], h0.grad.numpy()[:, 0], rtol=0, atol=1e-10)
    assert grads["initial_state"].shape == gru.initial_state.shape
    _, _, explicit_tape = gru.forward(x, _explicit_h0(state, 5), return_tape=True)
    explicit = gru.backward(explicit_tape, grad_output)
    assert "initial_state" not in explicit
    np.testing.assert_array_equal(grads["h0"], explicit["h0"])
    np.testing.assert_array_equal(grads["x"], explicit["x"])


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_save_load_and_pickle_keep_the_initial_state(rng, tmp_path, spec):
    gru, state = _model(spec, rng)
    gru.save(tmp_path / "model.fastgru")
    tensors, _ = read_safetensors(tmp_path / "model.fastgru")
    np.testing.assert_array_equal(tensors["initial_state"], state)
    x = _x(spec, rng)
    for loaded in (fastgru.load(tmp_path / "model.fastgru"), pickle.loads(pickle.dumps(gru))):
        assert loaded.initial_state.dtype == state.dtype
        np.testing.assert_array_equal(loaded.initial_state, state)
        for actual, expected in zip(loaded(x), gru(x)):
            np.testing.assert_array_equal(actual, expected)


def test_a_file_without_initial_state_loads_without_one(rng, tmp_path):
    spec = SPECS[0]
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    gru.save(tmp_path / "plain.fastgru")
    assert "initial_state" not in read_safetensors(tmp_path / "plain.fastgru")[0]
    assert fastgru.load(tmp_path / "plain.fastgru").initial_state is None


def test_a_misshaped_initial_state_in_a_file_names_the_file(rng, tmp_path):
    import json

    spec = SPECS[0]
    weights = {name: value.astype(np.float32) for name, value in random_weights(spec, rng).items()}
    path = tmp_path / "bad.fastgru"
    write_safetensors(path, {**weights, "initial_state": np.zeros((2, 5), np.float32)},
                      {"format": "fastgru", "format_version": "1", "spec": json.dumps(spec.to_dict())})
    with pytest.raises(ValueError, match=r"bad.fastgru: tensor 'initial_state': initial_state must have shape"):
        fastgru.load(path)


def test_a_weights_layout_file_with_an_initial_state_tensor_loads_it(rng, tmp_path):
    """The "spec" layout with an extra ``initial_state`` tensor (how an earlier version wrote it) still loads."""
    import json

    spec = SPECS[0]
    gru, state = _model(spec, rng)
    path = tmp_path / "spec_layout.fastgru"
    write_safetensors(path, {**gru.weights, "initial_state": state},
                      {"format": "fastgru", "format_version": "1", "spec": json.dumps(spec.to_dict())})
    np.testing.assert_array_equal(fastgru.load(path).initial_state, state)


def test_quantize_and_models_keep_the_initial_state(rng, tmp_path):
    from fastgru.layers import KerasRecurrent

    spec = GRUSpec(3, 5, batch_first=True)
    gru, state = _model(spec, rng)
    x = _x(spec, rng)
    quantized = gru.quantize("int8")
    np.testing.assert_array_equal(quantized.initial_state, state)
    np.testing.assert_array_equal(quantized(x)[1], quantized(x, _explicit_h0(state, 3))[1])
    quantized.save(tmp_path / "int8.fastgru")
    for loaded in (fastgru.load(tmp_path / "int8.fastgru"), pickle.loads(pickle.dumps(quantized))):
        assert loaded.weight_format == "int8"
        np.testing.assert_array_equal(loaded.initial_state, state)
        np.testing.assert_array_equal(loaded(x)[1], quantized(x)[1])
    model = fastgru.Model([KerasRecurrent("gru", gru, return_sequences=True)])
    np.testing.assert_array_equal(model(x), gru(x)[0])  # Keras calls pass no state: the learned one is used
    for kept in (model, model.quantize("int8")):
        kept.save(tmp_path / "model.fastgru")
        loaded = fastgru.load(tmp_path / "model.fastgru")
        np.testing.assert_array_equal(loaded.gru.initial_state, state)
        np.testing.assert_array_equal(loaded(x), kept(x))


@pytest.mark.parametrize("given, error, match", [
    (np.zeros((2, 5)), ValueError, r"initial_state must have shape \(num_layers\*num_directions, H\) = \(1, 5\), "
                                   r"or \(1, 1, 5\) or \(5,\), got \(2, 5\)"),
    (np.zeros((1, 3, 5)), ValueError, r"got \(1, 3, 5\)"),
    (np.zeros((1, 4)), ValueError, r"got \(1, 4\)"),
    (np.zeros((1, 5), dtype=bool), TypeError, r"initial_state must hold real numbers"),
    ("zeros", TypeError, r"initial_state must hold real numbers"),
])
def test_initial_state_errors(rng, given, error, match):
    spec = SPECS[0]
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    with pytest.raises(error, match=match):
        gru.with_initial_state(given)
    with pytest.raises(error, match=match):
        fastgru.GRU.from_arrays(gru.weights, initial_state=given)


def test_a_vector_is_refused_for_several_layers(rng):
    spec = SPECS[2]
    gru = fastgru.GRU.from_spec(spec, random_weights(spec, rng))
    with pytest.raises(ValueError, match=r"= \(3, 3\), or \(3, 1, 3\), got \(3,\)"):
        gru.with_initial_state(np.zeros(3))


# ---------------------------------------------------------------------------------------------
# importers


def _torch_model_with_h0(torch):
    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(3, 4, num_layers=2)
            self.h0 = torch.nn.Parameter(torch.randn(2, 1, 4))

        def forward(self, x):
            return self.rnn(x, self.h0.expand(-1, x.shape[1], -1).contiguous())

    torch.manual_seed(0)
    return Encoder()


@pytest.mark.parametrize("source", ["module", "state_dict", "checkpoint_file", "safetensors_file"])
def test_torch_importers_pick_up_the_named_initial_state(torch, tmp_path, source):
    model = _torch_model_with_h0(torch)
    x = np.random.default_rng(2).standard_normal((5, 3, 3)).astype(np.float32)
    with torch.no_grad():
        expected_output, expected_h_n = (t.numpy() for t in model(torch.from_numpy(x)))
    if source == "module":
        load = lambda **options: fastgru.GRU.from_torch(model, **options)  # noqa: E731
    elif source == "state_dict":
        load = lambda **options: fastgru.GRU.from_torch({"model": model.state_dict()}, **options)  # noqa: E731
    elif source == "checkpoint_file":
        torch.save(model.state_dict(), tmp_path / "model.pt")
        load = lambda **options: fastgru.load(tmp_path / "model.pt", **options)  # noqa: E731
    else:
        safetensors_torch = pytest.importorskip("safetensors.torch")
        safetensors_torch.save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
        load = lambda **options: fastgru.load(tmp_path / "model.safetensors", **options)  # noqa: E731
    name = "model.h0" if source == "state_dict" else "h0"
    assert load().initial_state is None  # never guessed
    gru = load(initial_state=name)
    np.testing.assert_array_equal(gru.initial_state, model.h0.detach().numpy()[:, 0])
    output, h_n = gru(x)
    np.testing.assert_allclose(output, expected_output, rtol=0, atol=1e-5)
    np.testing.assert_allclose(h_n, expected_h_n, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"no tensor 'state0' for initial_state; the other tensors are \[.*h0'\]"):
        load(initial_state="state0")


def test_from_arrays_and_from_cells_take_an_initial_state(rng):
    spec = SPECS[0]
    weights = random_weights(spec, rng)
    state = rng.uniform(-1, 1, (1, 1, 5))
    gru = fastgru.GRU.from_arrays(weights, dtype=np.float32, initial_state=state)
    np.testing.assert_array_equal(gru.initial_state, state[:, 0].astype(np.float32))
    cells = {"r": rng.standard_normal((5, 8)), "z": rng.standard_normal((5, 8)), "n": rng.standard_normal((5, 8)),
             "h0": state}
    gru = fastgru.GRU.from_cells(cells, gates={"r": "r", "z": "z", "n": "n"}, concat="hx", reset_after=False,
                                 update="z_keeps_state", initial_state="h0")
    np.testing.assert_array_equal(gru.initial_state, state[:, 0])
