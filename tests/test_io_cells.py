"""Hand-written GRU cells (one Linear or Dense per gate over the concatenation of h and x) loaded with
GRU.from_cells: compared with the same cell run step by step in PyTorch and in Keras (torch backend), in
both update conventions, both concatenation orders, with and without biases, both reset placements,
float32 and float64, one layer and stacks; and the errors for what does not fit."""

from __future__ import annotations

import itertools
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch needs no TensorFlow

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastgru  # noqa: E402
from fastgru import reference  # noqa: E402
from fastgru.io import UnsupportedModelError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
I, H, T, B = 3, 5, 7, 4
VARIANTS = [dict(zip(("concat", "update", "bias", "reset_after"), values))
            for values in itertools.product(("hx", "xh"), ("z_takes_candidate", "z_keeps_state"), (True, False),
                                            (False, True))]


def _variant_id(variant):
    return "-".join([variant["concat"], variant["update"], "bias" if variant["bias"] else "nobias",
                     "reset_after" if variant["reset_after"] else "reset_before"])


def _inputs(dtype, input_size=I, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, input_size)).astype(dtype)
    h0 = rng.uniform(-1, 1, (B, H)).astype(dtype)
    return x, h0


def _check(gru, x, h0s, expected_output, expected_h_n, dtype):
    """fastgru against the framework's cell and against the float64 reference, on the same weights."""
    output, h_n = gru(x, h0s)
    tolerance = TOLERANCE[dtype]
    assert output.dtype == dtype
    np.testing.assert_allclose(output, expected_output, rtol=0, atol=tolerance)
    np.testing.assert_allclose(h_n, expected_h_n, rtol=0, atol=tolerance)
    ref_output, ref_h_n = reference.forward(gru.spec, gru.weights, x, h0s)
    np.testing.assert_allclose(output, ref_output, rtol=0, atol=tolerance)
    np.testing.assert_allclose(h_n, ref_h_n, rtol=0, atol=tolerance)


# ---------------------------------------------------------------------------------------------
# PyTorch: nn.Linear(I + H, H) per gate


def _torch_cell_class(torch):
    class HandWrittenCell(torch.nn.Module):
        """The tutorial cell: r, z, n as nn.Linear over cat([h, x]) (or [x, h]).

        reset_after=False: n = tanh(W_n [r*h, x] + b_n); reset_after=True: the candidate's product is split
        into its x and h columns and the reset scales the h product and its own bias, b_nh."""

        def __init__(self, input_size, hidden_size, concat, update, bias, reset_after, gate="sigmoid"):
            super().__init__()
            self.hidden_size, self.concat, self.update, self.reset_after = hidden_size, concat, update, reset_after
            self.gate = torch.sigmoid if gate == "sigmoid" else torch.nn.functional.hardsigmoid
            self.reset_gate = torch.nn.Linear(input_size + hidden_size, hidden_size, bias=bias)
            self.update_gate = torch.nn.Linear(input_size + hidden_size, hidden_size, bias=bias)
            self.candidate = torch.nn.Linear(input_size + hidden_size, hidden_size, bias=bias)
            self.candidate_bias_h = torch.nn.Parameter(torch.randn(hidden_size) * 0.5) if bias and reset_after else None

        def cat(self, h, x):
            return torch.cat([h, x] if self.concat == "hx" else [x, h], dim=1)

        def forward(self, x, h):
            hx = self.cat(h, x)
            r = self.gate(self.reset_gate(hx))
            z = self.gate(self.update_gate(hx))
            if not self.reset_after:
                n = torch.tanh(self.candidate(self.cat(r * h, x)))
            else:
                w = self.candidate.weight
                w_h, w_x = (w[:, : self.hidden_size], w[:, self.hidden_size :]) if self.concat == "hx" else (
                    w[:, -self.hidden_size :], w[:, : -self.hidden_size])
                product_h = h @ w_h.T + (0 if self.candidate_bias_h is None else self.candidate_bias_h)
                n = torch.tanh(torch.nn.functional.linear(x, w_x, self.candidate.bias) + r * product_h)
            if self.update == "z_takes_candidate":
                return (1 - z) * h + z * n
            return z * h + (1 - z) * n

    return HandWrittenCell


def _torch_cells(torch, dtype, layers, input_size=I, gate="sigmoid", **variant):
    torch.manual_seed(7)
    cell_class = _torch_cell_class(torch)
    cells = [cell_class(input_size if k == 0 else H, H, gate=gate, **variant).to(getattr(torch, dtype))
             for k in range(layers)]
    with torch.no_grad():  # larger weights than the default init, so that gates saturate differently
        for cell in cells:
            for parameter in cell.parameters():
                parameter.mul_(2.0)
    return cells


def _torch_run(torch, cells, x, h0s):
    """The stack run step by step, as the cells' users run it: (output (T, B, H), h_n (L, B, H))."""
    sequence = torch.from_numpy(x)
    finals = []
    with torch.no_grad():
        for cell, h0 in zip(cells, h0s):
            h, outputs = torch.from_numpy(h0), []
            for t in range(sequence.shape[0]):
                h = cell(sequence[t], h)
                outputs.append(h)
            sequence = torch.stack(outputs)
            finals.append(h)
    return sequence.numpy(), torch.stack(finals).numpy()


def _torch_gate_map(cell):
    """The gates as from_cells takes them from nn.Linear objects (the candidate's biases split for reset_after)."""
    candidate = cell.candidate
    if cell.candidate_bias_h is not None:
        candidate = (candidate.weight, {"x": candidate.bias, "h": cell.candidate_bias_h})
    return {"r": cell.reset_gate, "z": cell.update_gate, "n": candidate}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_torch_hand_written_cell_matches_pytorch(torch, variant, dtype, layers):
    cells = _torch_cells(torch, dtype, layers, **variant)
    x, h0 = _inputs(dtype)
    h0s = np.stack([h0 * (k + 1) / layers for k in range(layers)])
    expected = _torch_run(torch, cells, x, h0s)
    gru = fastgru.GRU.from_cells([_torch_gate_map(cell) for cell in cells], concat=variant["concat"],
                                 reset_after=variant["reset_after"], update=variant["update"])
    assert gru.spec.num_layers == layers and gru.spec.bias == variant["bias"] and gru.dtype == dtype
    assert gru.spec.reset_after == variant["reset_after"]
    _check(gru, x, h0s, *expected, dtype)


def _state_dict_gates(cell):
    candidate = "candidate"
    if cell.candidate_bias_h is not None:
        candidate = {"weight": "candidate.weight", "bias": {"x": "candidate.bias", "h": "candidate_bias_h"}}
    return {"r": "reset_gate", "z": "update_gate", "n": candidate}


@pytest.mark.parametrize("form", ["module_attributes", "state_dict", "numpy_state_dict", "arrays", "keras_kernels"])
@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[5], VARIANTS[11], VARIANTS[14]], ids=_variant_id)
def test_every_input_form_gives_the_same_model(torch, variant, form):
    """A cell module with gate attribute names, its state dict (torch tensors or numpy arrays) with tensor
    prefixes, bare (weight, bias) arrays, and the same weights as Keras kernels (transposed) all load alike."""
    (cell,) = _torch_cells(torch, "float32", 1, **variant)
    x, h0 = _inputs("float32")
    expected = _torch_run(torch, [cell], x, h0[None])
    options = dict(concat=variant["concat"], reset_after=variant["reset_after"], update=variant["update"])
    state = cell.state_dict()
    if form == "module_attributes":
        names = {"r": "reset_gate", "z": "update_gate", "n": "candidate"}
        if cell.candidate_bias_h is not None:
            names["n"] = {"weight": "candidate.weight", "bias": {"x": "candidate.bias", "h": "candidate_bias_h"}}
        gru = fastgru.GRU.from_cells(cell, gates=names, **options)
    elif form in ("state_dict", "numpy_state_dict"):
        if form == "numpy_state_dict":
            state = {name: value.numpy() for name, value in state.items()}
        gru = fastgru.GRU.from_cells(state, gates=_state_dict_gates(cell), **options)
    else:
        arrays = {name: value.numpy() for name, value in state.items()}

        def gate(name, split_bias=None):
            weight = arrays[f"{name}.weight"]
            if form == "keras_kernels":
                weight = weight.T.copy()
            bias = arrays.get(f"{name}.bias")
            return (weight, {"x": bias, "h": split_bias}) if split_bias is not None else (weight, bias)

        gru = fastgru.GRU.from_cells({"r": gate("reset_gate"), "z": gate("update_gate"),
                                      "n": gate("candidate", arrays.get("candidate_bias_h"))}, **options)
    _check(gru, x, h0[None], *expected, "float32")


@pytest.mark.parametrize("reset_after", [False, True])
def test_candidate_written_as_two_layers(torch, reset_after):
    """n = tanh(W_nx x + b_nx + r * (W_nh h + b_nh)) (reset_after) or tanh(W_nx x + b_nx + W_nh (r*h) + b_nh),
    with separate nn.Linear layers over x and over h; r and z over the concatenation."""
    torch.manual_seed(3)
    gate_r, gate_z = torch.nn.Linear(H + I, H), torch.nn.Linear(H + I, H)
    cand_x, cand_h = torch.nn.Linear(I, H), torch.nn.Linear(H, H)
    x, h0 = _inputs("float32")
    h, outputs = torch.from_numpy(h0), []
    with torch.no_grad():
        for x_t in torch.from_numpy(x):
            hx = torch.cat([x_t, h], 1)
            r, z = torch.sigmoid(gate_r(hx)), torch.sigmoid(gate_z(hx))
            n = torch.tanh(cand_x(x_t) + (r * cand_h(h) if reset_after else cand_h(r * h)))
            h = z * h + (1 - z) * n
            outputs.append(h)
    expected = torch.stack(outputs).numpy(), h[None].numpy()
    gru = fastgru.GRU.from_cells({"r": gate_r, "z": gate_z, "n": {"x": cand_x, "h": cand_h}}, concat="xh",
                                 reset_after=reset_after, update="z_keeps_state")
    _check(gru, x, h0[None], *expected, "float32")
    # the same as bare arrays: the h part is square, so the orientation must be stated
    arrays = {"x": (cand_x.weight.detach().numpy(), cand_x.bias.detach().numpy()),
              "h": (cand_h.weight.detach().numpy(), cand_h.bias.detach().numpy())}
    with pytest.raises(ValueError, match="square.*layout='torch' or layout='keras'"):
        fastgru.GRU.from_cells({"r": gate_r, "z": gate_z, "n": arrays}, concat="xh", reset_after=reset_after,
                               update="z_keeps_state")
    gru = fastgru.GRU.from_cells({"r": gate_r, "z": gate_z, "n": arrays}, concat="xh", reset_after=reset_after,
                                 update="z_keeps_state", layout="torch")
    _check(gru, x, h0[None], *expected, "float32")


def test_torch_hard_sigmoid_gates(torch):
    """torch's F.hardsigmoid is clip(a/6 + 1/2, 0, 1): gate_activation='hard_sigmoid'."""
    (cell,) = _torch_cells(torch, "float64", 1, gate="hard_sigmoid", **VARIANTS[0])
    x, h0 = _inputs("float64")
    expected = _torch_run(torch, [cell], x, h0[None])
    gru = fastgru.GRU.from_cells(_torch_gate_map(cell), concat="hx", reset_after=False, update="z_takes_candidate",
                                 gate_activation="hard_sigmoid")
    _check(gru, x, h0[None], *expected, "float64")


def test_stack_from_one_state_dict_with_gate_names_per_layer(torch):
    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cells = torch.nn.ModuleList(_torch_cells(torch, "float32", 2, **VARIANTS[2]))

    stack = Stack()
    x, h0 = _inputs("float32")
    h0s = np.stack([h0, -h0])
    expected = _torch_run(torch, list(stack.cells), x, h0s)
    gates = [{"r": f"cells.{k}.reset_gate", "z": f"cells.{k}.update_gate", "n": f"cells.{k}.candidate"}
             for k in range(2)]
    gru = fastgru.GRU.from_cells(stack.state_dict(), gates=gates, concat="hx", reset_after=False,
                                 update="z_takes_candidate")
    _check(gru, x, h0s, *expected, "float32")
    # one gate dict for a list of cell modules
    gru = fastgru.GRU.from_cells(list(stack.cells), gates={"r": "reset_gate", "z": "update_gate", "n": "candidate"},
                                 concat="hx", reset_after=False, update="z_takes_candidate")
    _check(gru, x, h0s, *expected, "float32")


def test_batch_first_lengths_and_initial_state_apply(torch):
    """The result is a plain fastgru.GRU: batch_first, lengths and a learned initial state work as usual."""
    (cell,) = _torch_cells(torch, "float32", 1, **VARIANTS[0])
    x, h0 = _inputs("float32")
    options = dict(concat="hx", reset_after=False, update="z_takes_candidate")
    gru = fastgru.GRU.from_cells(_torch_gate_map(cell), batch_first=True, initial_state=h0[:1], **options)
    output, h_n = gru(x.swapaxes(0, 1), lengths=[T, 2, 5, 1])
    plain = fastgru.GRU.from_cells(_torch_gate_map(cell), **options)
    expected_output, expected_h_n = plain(x, np.repeat(h0[None, :1], B, axis=1), lengths=[T, 2, 5, 1])
    np.testing.assert_array_equal(output, expected_output.swapaxes(0, 1))
    np.testing.assert_array_equal(h_n, expected_h_n)


# ---------------------------------------------------------------------------------------------
# Keras: Dense(H) per gate inside a custom cell run by keras.layers.RNN


def _keras_cell(keras, units, concat, update, bias, reset_after, dtype, gate="sigmoid", name=None):
    ops = keras.ops

    class HandWrittenKerasCell(keras.layers.Layer):
        """r, z, n as Dense(units) over concatenate([h, x]) (or [x, h]); h' = z h + (1 - z) n by default."""

        def __init__(self, **kwargs):
            super().__init__(dtype=dtype, name=name, **kwargs)
            self.units, self.state_size, self.output_size = units, units, units
            dense = dict(use_bias=bias, dtype=dtype, kernel_initializer=keras.initializers.RandomUniform(-0.8, 0.8),
                         bias_initializer=keras.initializers.RandomUniform(-0.8, 0.8))
            self.reset_gate = keras.layers.Dense(units, activation=gate, **dense)
            self.update_gate = keras.layers.Dense(units, activation=gate, **dense)
            self.candidate = keras.layers.Dense(units, **dense)

        def build(self, input_shape):
            width = input_shape[-1] + self.units
            for layer in (self.reset_gate, self.update_gate, self.candidate):
                layer.build((None, width))
            self.candidate_bias_h = self.add_weight(
                shape=(self.units,), initializer=keras.initializers.RandomUniform(-0.8, 0.8), name="candidate_bias_h"
            ) if bias and reset_after else None

        def cat(self, h, x):
            return ops.concatenate([h, x] if concat == "hx" else [x, h], axis=-1)

        def call(self, inputs, states):
            h = states[0]
            hx = self.cat(h, inputs)
            r, z = self.reset_gate(hx), self.update_gate(hx)
            if not reset_after:
                n = ops.tanh(self.candidate(self.cat(r * h, inputs)))
            else:
                kernel = self.candidate.kernel
                k_h, k_x = (kernel[: self.units], kernel[self.units :]) if concat == "hx" else (
                    kernel[-self.units :], kernel[: -self.units])
                product_x = ops.matmul(inputs, k_x) + (self.candidate.bias if bias else 0)
                product_h = ops.matmul(h, k_h) + (self.candidate_bias_h if bias else 0)
                n = ops.tanh(product_x + r * product_h)
            new = (1 - z) * h + z * n if update == "z_takes_candidate" else z * h + (1 - z) * n
            return new, [new]

    return HandWrittenKerasCell()


def _keras_gate_map(cell):
    candidate = cell.candidate
    if cell.candidate_bias_h is not None:
        candidate = {"kernel": candidate.kernel, "bias": {"x": candidate.bias, "h": cell.candidate_bias_h}}
    return {"r": cell.reset_gate, "z": cell.update_gate, "n": candidate}


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_keras_hand_written_cell_matches_keras(keras, variant, dtype):
    keras.utils.set_random_seed(11)
    cell = _keras_cell(keras, H, dtype=dtype, **variant)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True, dtype=dtype)
    x, h0 = _inputs(dtype)
    output, state = rnn(x.swapaxes(0, 1), initial_state=[h0])
    gru = fastgru.GRU.from_cells(_keras_gate_map(cell), concat=variant["concat"], reset_after=variant["reset_after"],
                                 update=variant["update"], batch_first=True)
    expected_output = keras.ops.convert_to_numpy(output)
    expected_h_n = keras.ops.convert_to_numpy(state)[None]
    assert expected_output.dtype == dtype
    output, h_n = gru(x.swapaxes(0, 1), h0[None])
    # Keras 3 on a non-TensorFlow backend runs float64 products in float32 (BIT64_TO_BIT32_DTYPE in
    # keras/src/backend/common/dtypes.py, to match JAX's default), so Keras itself is only float32-accurate
    # here; the float64 model is held to 1e-10 by the reference below and by the PyTorch cells.
    np.testing.assert_allclose(output, expected_output, rtol=0, atol=TOLERANCE["float32"])
    np.testing.assert_allclose(h_n, expected_h_n, rtol=0, atol=TOLERANCE["float32"])
    ref_output, ref_h_n = reference.forward(gru.spec, gru.weights, x.swapaxes(0, 1), h0[None])
    np.testing.assert_allclose(output, ref_output, rtol=0, atol=TOLERANCE[dtype])
    np.testing.assert_allclose(h_n, ref_h_n, rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("gate, gate_activation", [("sigmoid", "sigmoid"), ("hard_sigmoid", "hard_sigmoid")])
def test_keras_stacked_cells_and_hard_sigmoid(keras, gate, gate_activation):
    """keras.layers.RNN over a list of cells is a stack; Keras 3's hard_sigmoid is clip(a/6 + 1/2, 0, 1)."""
    keras.utils.set_random_seed(5)
    cells = [_keras_cell(keras, H, "xh", "z_keeps_state", True, False, "float32", gate=gate, name=f"cell{k}")
             for k in range(3)]
    rnn = keras.layers.RNN(cells, return_sequences=True, return_state=True)
    x, h0 = _inputs("float32")
    h0s = np.stack([h0, 0.5 * h0, -h0])
    output, *states = rnn(x.swapaxes(0, 1), initial_state=list(h0s))
    gru = fastgru.GRU.from_cells([_keras_gate_map(cell) for cell in cells], concat="xh", reset_after=False,
                                 update="z_keeps_state", gate_activation=gate_activation, batch_first=True)
    actual_output, actual_h_n = gru(x.swapaxes(0, 1), h0s)
    np.testing.assert_allclose(actual_output, keras.ops.convert_to_numpy(output), rtol=0, atol=1e-5)
    np.testing.assert_allclose(actual_h_n, np.stack([keras.ops.convert_to_numpy(s) for s in states]), rtol=0,
                               atol=1e-5)
    # the same Keras cells by attribute name
    gru = fastgru.GRU.from_cells(cells, gates={"r": "reset_gate", "z": "update_gate", "n": "candidate"},
                                 concat="xh", reset_after=False, update="z_keeps_state",
                                 gate_activation=gate_activation, batch_first=True)
    np.testing.assert_array_equal(gru(x.swapaxes(0, 1), h0s)[0], actual_output)


# ---------------------------------------------------------------------------------------------
# errors


def _gates(input_size=I, hidden=H, keras_layout=False, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    shape = (hidden + input_size, hidden) if keras_layout else (hidden, hidden + input_size)
    return {gate: (rng.standard_normal(shape), rng.standard_normal(hidden) if bias else None) for gate in "rzn"}


OPTIONS = dict(concat="hx", reset_after=False, update="z_keeps_state")


def test_float64_arrays_give_a_float64_model_and_dtype_overrides():
    assert fastgru.GRU.from_cells(_gates(), **OPTIONS).dtype == np.float64
    assert fastgru.GRU.from_cells(_gates(), dtype=np.float32, **OPTIONS).dtype == np.float32
    assert fastgru.GRU.from_cells(_gates(), dtype=np.dtype("float32"), **OPTIONS).dtype == np.float32
    gates = {name: (w.astype(np.float16), b.astype(np.float16)) for name, (w, b) in _gates().items()}
    assert fastgru.GRU.from_cells(gates, **OPTIONS).dtype == np.float32


def test_no_bias_anywhere_gives_a_model_without_bias_and_one_bias_fills_zeros():
    assert not fastgru.GRU.from_cells(_gates(bias=False), **OPTIONS).spec.bias
    gates = _gates(bias=False)
    gates["z"] = (gates["z"][0], np.ones(H))
    gru = fastgru.GRU.from_cells(gates, **OPTIONS)
    expected = np.zeros(3 * H)
    expected[H : 2 * H] = 1
    np.testing.assert_array_equal(gru.weights["bias_ih_l0"], expected)
    np.testing.assert_array_equal(gru.weights["bias_hh_l0"], np.zeros(3 * H))


def _with(gates, gate, value):
    changed = dict(gates)
    changed[gate] = value
    return changed


@pytest.mark.parametrize("cells, options, error, match", [
    (_with(_gates(), "z", (np.zeros((H, H + I + 1)), None)), {}, ValueError,
     r"gate 'z': weight has shape \(5, 9\), expected \(5, 8\) \(a torch Linear weight, \(out, in\)\) or \(8, 5\)"),
    (_with(_gates(), "r", (np.zeros((H, H)), None)), {}, ValueError, r"gate 'r': weight has shape \(5, 5\).*never square"),
    (_with(_gates(), "n", (np.zeros((H, H + I)), np.zeros(H + 1))), {}, ValueError,
     r"gate 'n': bias has shape \(6,\), expected \(5,\)"),
    (_with(_gates(), "n", (np.zeros((H, H + I)), np.zeros(H))), {"reset_after": True}, ValueError,
     r"gate 'n': reset_after=True puts the reset between the candidate's two biases"),
    (_with(_gates(), "r", (np.zeros((H, H + I)), {"x": np.zeros(H), "y": np.zeros(H)})), {}, ValueError,
     r"gate 'r': a split bias is \{'x': b_x, 'h': b_h\}"),
    (_with(_gates(), "n", {"x": np.zeros((H, I))}), {}, ValueError, r"gate 'n': a gate written as two layers needs both"),
    (_with(_gates(), "r", (np.zeros((H, H + I)), None, None)), {}, ValueError, r"gate 'r': expected \(weight, bias\)"),
    (_with(_gates(), "r", np.zeros((H, H + I), dtype=complex)), {}, TypeError, r"gate 'r': expected a float array"),
    (_with(_gates(), "r", np.zeros(H)), {}, ValueError, r"gate 'r': weight must be 2-D, got shape \(5,\)"),
    (_with(_gates(), "r", None), {}, ValueError, r"gate 'r': the weight is missing"),
    ({"r": 1, "z": 2}, {}, ValueError, r"expected \{'r': gate, 'z': gate, 'n': gate\}"),
    (_gates(), {"concat": None}, ValueError, r"gate 'r': one weight over the concatenation.*concat='hx'"),
    (_gates(), {"concat": "h,x"}, ValueError, r"concat must be 'hx'"),
    (_gates(), {"update": "textbook"}, ValueError, r"update must be 'z_keeps_state'"),
    (_gates(), {"reset_after": "yes"}, TypeError, r"reset_after must be True or False"),
    (_gates(), {"layout": "tf"}, ValueError, r"layout must be None, 'torch' or 'keras'"),
    (_gates(), {"layout": "keras"}, ValueError, r"gate 'r': weight has shape \(5, 8\), a Keras Dense kernel.*no columns"),
    (_gates(), {"gate_activation": "tanh"}, UnsupportedModelError, r"gate_activation 'tanh' is not supported"),
    (_gates(), {"activation": "relu"}, UnsupportedModelError, r"activation 'relu' is not supported.*tanh only"),
    ([_gates(), _gates(input_size=I)], {}, ValueError, r"layer 1: .* must have H=5 and I=5; gate 'r' has H=5, I=3"),
    ([_gates(), _gates()], {"gates": [None, None, None]}, ValueError, r"2 cells but 3 gate name dicts"),
    ([], {}, ValueError, r"no layers given"),
])
def test_bad_cells_raise_naming_the_gate_and_the_shapes(cells, options, error, match):
    with pytest.raises(error, match=match):
        fastgru.GRU.from_cells(cells, **{**OPTIONS, **options})


def test_a_dense_activation_must_match_the_stated_one(keras):
    dense = {}
    for name, activation in (("r", "sigmoid"), ("z", "hard_sigmoid"), ("n", "tanh")):
        dense[name] = keras.layers.Dense(H, activation=activation)
        dense[name].build((None, H + I))
    with pytest.raises(ValueError, match=r"gate 'z': the Dense applies activation 'hard_sigmoid', but "
                                         r"gate_activation='sigmoid' was stated"):
        fastgru.GRU.from_cells(dense, **OPTIONS)
    dense["z"] = keras.layers.Dense(H, activation="sigmoid")
    dense["z"].build((None, H + I))
    assert fastgru.GRU.from_cells(dense, **OPTIONS).spec.gate_activation == "sigmoid"
    with pytest.raises(ValueError, match=r"gate 'r': the Dense applies activation 'sigmoid', but "
                                         r"gate_activation='hard_sigmoid_keras2' was stated"):
        fastgru.GRU.from_cells(dense, **OPTIONS, gate_activation="hard_sigmoid_keras2")


def test_state_dict_errors_name_the_missing_tensor():
    state = {"reset_gate.weight": np.zeros((H, H + I)), "update_gate.weight": np.zeros((H, H + I))}
    gates = {"r": "reset_gate", "z": "update_gate", "n": "candidate"}
    with pytest.raises(ValueError, match=r"gate 'n': no tensor 'candidate.weight' or 'candidate.kernel'"):
        fastgru.GRU.from_cells(state, gates=gates, **OPTIONS)
    with pytest.raises(ValueError, match=r"gates must name the three gates 'r', 'z' and 'n', got \['r', 'z'\]"):
        fastgru.GRU.from_cells(state, gates={"r": "reset_gate", "z": "update_gate"}, **OPTIONS)
    with pytest.raises(ValueError, match=r"a state dict or cell object with gates="):
        fastgru.GRU.from_cells(state, **OPTIONS)
    with pytest.raises(ValueError, match=r"gate 'n' weight: no tensor 'cand.w'"):
        fastgru.GRU.from_cells(state, gates={**gates, "n": {"weight": "cand.w"}}, **OPTIONS)
    with pytest.raises(TypeError, match=r"a gate is named by a string"):
        fastgru.GRU.from_cells(state, gates={**gates, "n": 3}, **OPTIONS)


def test_object_without_the_named_attribute(torch):
    (cell,) = _torch_cells(torch, "float32", 1, **VARIANTS[0])
    with pytest.raises(ValueError, match=r"gate 'n': HandWrittenCell has no attribute 'cand'"):
        fastgru.GRU.from_cells(cell, gates={"r": "reset_gate", "z": "update_gate", "n": "cand"}, **OPTIONS)


def test_inputs_are_not_modified():
    gates = _gates()
    copies = {name: (w.copy(), b.copy()) for name, (w, b) in gates.items()}
    fastgru.GRU.from_cells(gates, concat="xh", reset_after=False, update="z_takes_candidate")
    for name, (weight, bias) in gates.items():
        np.testing.assert_array_equal(weight, copies[name][0])
        np.testing.assert_array_equal(bias, copies[name][1])
