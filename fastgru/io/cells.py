"""Hand-written GRU cells: one Linear (PyTorch) or Dense (Keras) layer per gate over the concatenation of
the state h and the input x, as tutorials, textbooks and many research codebases write them.

The two common forms, both with the reset applied to h before the candidate's product:

- PyTorch, ``nn.Linear(H + I, H)`` per gate (weight (H, H+I), bias (H,)), ``v = cat([h, x])``::

      r  = sigmoid(W_r v + b_r)
      z  = sigmoid(W_z v + b_z)
      n  = tanh(W_n [r * h, x] + b_n)
      h' = (1 - z) * h + z * n

- Keras, ``Dense(H)`` per gate (kernel (H+I, H), bias (H,)) inside a custom cell run by
  ``keras.layers.RNN``: the same gates, and ``h' = z * h + (1 - z) * n``.

What the caller states, and how each choice maps onto fastgru's GRU (PyTorch's weight names and gate
order r, z, n; ``W_g`` below is a gate's weight in (out, in) orientation, a Keras kernel transposed):

``concat="hx"`` / ``"xh"``
    the concatenation is ``[h, x]`` / ``[x, h]``. fastgru splits each gate's columns into the h part
    ``W_gh`` (H, H) and the x part ``W_gx`` (H, I): ``weight_hh = [W_rh; W_zh; W_nh]`` and
    ``weight_ih = [W_rx; W_zx; W_nx]``.
``reset_after=False``
    the reset scales h before the candidate's product, ``n = tanh(W_n [r * h, x] + b_n)``
    ``= tanh(W_nx x + W_nh (r * h) + b_n)`` (Cho et al. 2014; fastgru's reset-before variant).
``reset_after=True``
    the reset scales the product, ``n = tanh(W_nx x + b_nx + r * (W_nh h + b_nh))`` (``torch.nn.GRU``'s
    cell). The two candidate biases sit on either side of the reset, so they are given apart (see
    "biases"); a single candidate bias is refused, since where the cell adds it changes the result.
``update="z_keeps_state"`` / ``"z_takes_candidate"``
    ``h' = z * h + (1 - z) * n`` (the Keras form) / ``h' = (1 - z) * h + z * n`` (the PyTorch form
    above). The latter is loaded by negating z's weights and bias: ``1 - sigmoid(a) = sigmoid(-a)``,
    and the same holds for both hard sigmoids.
``gate_activation`` (r and z), ``activation`` (n)
    ``"sigmoid"``, ``"hard_sigmoid"`` (``clip(a / 6 + 0.5, 0, 1)``: Keras 3's ``hard_sigmoid`` and
    torch's ``F.hardsigmoid``) or ``"hard_sigmoid_keras2"`` (``clip(0.2 a + 0.5, 0, 1)``: Keras 2's);
    the candidate's is ``"tanh"``, the only one the core runs. Anything else raises
    `fastgru.io.UnsupportedModelError`. A Keras ``Dense`` that applies an activation itself (``Dense(H,
    activation="sigmoid")``) must apply the one stated for its gate.

Biases: a gate's one bias goes to its block of ``bias_ih``, with zeros in ``bias_hh`` (for r, z and the
reset-before candidate both biases are added outside the reset, so only their sum matters). A bias given
as ``{"x": b_x, "h": b_h}`` goes to ``bias_ih`` and ``bias_hh`` respectively: that is how the candidate
of a ``reset_after=True`` cell gives ``b_nx`` and ``b_nh``. Missing biases are zeros; a model with no bias
anywhere has ``bias=False``.

A gate may also be written as two layers, one over x and one over h (``{"x": Linear(I, H), "h":
Linear(H, H)}``, ``a = W_gx x + b_gx + W_gh h + b_gh``, the reset-after candidate being
``tanh(W_nx x + b_nx + r * (W_nh h + b_nh))``); ``concat`` then does not apply to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from fastgru.io.common import GRUDescription, UnsupportedModelError, flip_update_gate, spec_dtype
from fastgru.io.torch import to_numpy
from fastgru.spec import GATE_ACTIVATIONS, GRUSpec

GATES = ("r", "z", "n")
_UPDATES = ("z_keeps_state", "z_takes_candidate")
_ORIENTATION = {"torch": "a torch Linear weight, (out, in)", "keras": "a Keras Dense kernel, (in, out)"}


@dataclasses.dataclass
class _Linear:
    """One Linear or Dense layer as found: its weight in the source's orientation, its bias (None, an
    array, or {"x": ..., "h": ...}), and "torch", "keras" or None (not known: read from the shape)."""

    weight: np.ndarray
    bias: object
    layout: str | None
    activation: str | None = None  # the name of a Keras Dense's own activation ("linear" when it has none)


def read_cells(cells, *, reset_after: bool, update: str, concat: str | None = None, gates=None,
               gate_activation: str = "sigmoid", activation: str = "tanh", layout: str | None = None,
               batch_first: bool = False, dtype=None, initial_state=None, source: str = "cells") -> GRUDescription:
    """The `GRUDescription` of hand-written cells (formulas and mapping: the module docstring);
    `fastgru.GRU.from_cells` builds the model.

    ``cells`` is one layer's gates, or a list of them for a stack (layer k > 0 takes layer k-1's
    state sequence as its input; unidirectional, equal H in every layer). One layer is:

    - ``{"r": gate, "z": gate, "n": gate}``, each gate an ``nn.Linear``, a Keras ``Dense``, a
      ``(weight, bias)`` pair (``bias`` None, an (H,) array or ``{"x": b_x, "h": b_h}``), a bare weight,
      ``{"weight" or "kernel": W, "bias": b}``, or ``{"x": layer, "h": layer}`` for a gate written as two
      layers; weights are torch (H, H+I) or Keras (H+I, H), told apart by their shape (arrays and tensors
      of either framework, float16 to float64);
    - a state dict (torch tensors or numpy arrays) with ``gates={"r": "reset_gate", "z": "update_gate",
      "n": "candidate"}``: ``reset_gate.weight`` (or ``.kernel``, or ``/`` for ``.``) and
      ``reset_gate.bias``; a name that is itself a tensor is the gate's weight, without bias. A gate may
      be named ``{"x": name, "h": name}``, or by full tensor names ``{"weight": "W_n", "bias": "b_n"}``
      (``"kernel"`` for a Keras kernel; a split bias ``{"x": "b_nx", "h": "b_nh"}``);
    - a module or layer object (a torch cell module, a Keras cell) with ``gates`` naming its
      attributes (``{"r": "r", "z": "z", "n": "n"}``, dotted paths allowed).

    For a stack, ``gates`` is one dict used for every layer or a list with one per layer; a single state
    dict with a list of ``gates`` holds all layers.

    ``reset_after``, ``update`` and (for gates over a concatenation) ``concat`` must be stated: they
    change the numbers and no default would be right for both common forms. ``layout="torch"`` or
    ``"keras"`` says how bare arrays are oriented where the shape cannot (the h part of a two-layer gate
    is square). ``dtype`` defaults to float64 for float64 weights, float32 otherwise; ``initial_state``
    is a learned h0 (an array, or the name of one in the state dict / attribute of the object; see
    `fastgru.GRU.with_initial_state`). Errors name ``source``, the layer, the gate, the expected and the
    actual shape.
    """
    if not isinstance(reset_after, (bool, np.bool_)):
        raise TypeError(f"{source}: reset_after must be True or False, got {reset_after!r}")
    if update not in _UPDATES:
        raise ValueError(f"{source}: update must be 'z_keeps_state' (h' = z*h + (1-z)*n) or 'z_takes_candidate' "
                         f"(h' = (1-z)*h + z*n), got {update!r}")
    if concat not in (None, "hx", "xh"):
        raise ValueError(f"{source}: concat must be 'hx' (the gates read [h, x]) or 'xh' ([x, h]), got {concat!r}")
    if layout not in (None, "torch", "keras"):
        raise ValueError(f"{source}: layout must be None, 'torch' or 'keras', got {layout!r}")
    _check_activations(gate_activation, activation, source)

    layers = _layer_sources(cells, gates, source)
    found, hidden, input_size = [], None, None
    for index, (owner, names) in enumerate(layers):
        where = f"{source}: layer {index}" if len(layers) > 1 else source
        gate_values = _gate_values(owner, names, where)
        parsed = {gate: _parse_gate(gate_values[gate], f"{where} gate {gate!r}", layout) for gate in GATES}
        for gate in GATES:
            option = ("activation", activation) if gate == "n" else ("gate_activation", gate_activation)
            _check_dense_activation(parsed[gate], *option, f"{where} gate {gate!r}")
        layer_hidden, layer_inputs = _sizes(parsed["r"], f"{where} gate 'r'")
        if index == 0:
            hidden, input_size = layer_hidden, layer_inputs
        elif (layer_hidden, layer_inputs) != (hidden, hidden):
            raise ValueError(f"{where}: a layer above the first reads the state sequence of the one below, so "
                             f"its gates must have H={hidden} and I={hidden}; gate 'r' has H={layer_hidden}, "
                             f"I={layer_inputs}")
        found.append({gate: _split_gate(parsed[gate], gate, f"{where} gate {gate!r}", layer_hidden, layer_inputs,
                                        concat, reset_after) for gate in GATES})

    arrays = [a for layer in found for parts in layer.values() for a in parts if a is not None]
    dtype = np.dtype(dtype if dtype is not None else spec_dtype(*arrays)).name
    has_bias = any(parts[2] is not None or parts[3] is not None for layer in found for parts in layer.values())
    spec = GRUSpec(input_size, hidden, num_layers=len(found), batch_first=bool(batch_first), bias=has_bias,
                   reset_after=bool(reset_after), gate_activation=gate_activation, dtype=dtype)
    zeros = np.zeros(hidden, dtype=dtype)
    weights = {}
    for index, layer in enumerate(found):
        w_x, w_h, b_x, b_h = zip(*(layer[gate] for gate in GATES))
        weights[f"weight_ih_l{index}"] = np.concatenate(w_x)
        weights[f"weight_hh_l{index}"] = np.concatenate(w_h)
        if has_bias:
            weights[f"bias_ih_l{index}"] = np.concatenate([zeros if b is None else b for b in b_x])
            weights[f"bias_hh_l{index}"] = np.concatenate([zeros if b is None else b for b in b_h])
    if update == "z_takes_candidate":
        weights = flip_update_gate(spec, weights)
    if isinstance(initial_state, str):
        if isinstance(cells, (list, tuple)):
            raise ValueError(f"{source}: initial_state={initial_state!r} names a tensor, but cells is a list of "
                             f"layers: pass the array itself")
        initial_state = _lookup(cells, initial_state, f"{source}: initial_state")
    if initial_state is not None:
        initial_state = to_numpy(initial_state)
    return GRUDescription(spec, weights, source, initial_state)


def _check_activations(gate_activation, activation, source: str) -> None:
    if gate_activation not in GATE_ACTIVATIONS:
        raise UnsupportedModelError(
            f"{source}: gate_activation {gate_activation!r} is not supported: the core runs r and z through one "
            f"of {sorted(GATE_ACTIVATIONS)} ('hard_sigmoid' is clip(a/6 + 0.5, 0, 1), Keras 3's and torch's "
            f"F.hardsigmoid; 'hard_sigmoid_keras2' is clip(0.2a + 0.5, 0, 1))")
    if activation != "tanh":
        raise UnsupportedModelError(f"{source}: activation {activation!r} is not supported: the core runs the "
                                    f"candidate n through tanh only")


# The Keras activation that a Dense may apply itself for each activation fastgru runs ("linear": the
# cell applies it outside the layer). Keras 3 has no function for Keras 2's hard sigmoid.
_KERAS_ACTIVATIONS = {"sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid", "tanh": "tanh"}


def _check_dense_activation(gate, option: str, stated: str, where: str) -> None:
    """A Keras Dense that applies an activation itself must apply the one stated for its gate."""
    for linear in gate.values() if isinstance(gate, dict) else (gate,):
        if linear.activation in (None, "linear"):
            continue
        if isinstance(gate, dict):
            raise ValueError(f"{where}: a gate written as two layers adds their outputs before the activation, "
                             f"but its Dense applies {linear.activation!r} itself")
        if linear.activation != _KERAS_ACTIVATIONS.get(stated):
            raise ValueError(f"{where}: the Dense applies activation {linear.activation!r}, but {option}={stated!r} "
                             f"was stated")


# ---------------------------------------------------------------------------------------------
# finding each layer's gates


def _layer_sources(cells, gates, source: str) -> list[tuple[object, object]]:
    """(owner, gate names or None) per layer, from ``cells`` and ``gates`` each given once or per layer."""
    owners = list(cells) if isinstance(cells, (list, tuple)) else [cells]
    names = list(gates) if isinstance(gates, (list, tuple)) else [gates]
    if not owners or not names:
        raise ValueError(f"{source}: no layers given (an empty list)")
    if len(owners) == 1:
        owners = owners * len(names)
    elif len(names) == 1:
        names = names * len(owners)
    elif len(owners) != len(names):
        raise ValueError(f"{source}: {len(owners)} cells but {len(names)} gate name dicts: give one per layer, or "
                         f"one for all")
    return list(zip(owners, names))


def _gate_values(owner, names, where: str) -> dict:
    """The three gates of one layer: the values themselves, or what ``names`` points at in ``owner``."""
    if names is None:
        if isinstance(owner, Mapping) and set(owner) == set(GATES):
            return dict(owner)
        found = sorted(map(str, owner)) if isinstance(owner, Mapping) else type(owner).__name__
        raise ValueError(f"{where}: expected {{'r': gate, 'z': gate, 'n': gate}}, or a state dict or cell object "
                         f"with gates={{'r': name, 'z': name, 'n': name}}; got {found}"[:600])
    if not isinstance(names, Mapping) or set(names) != set(GATES):
        got = sorted(names) if isinstance(names, Mapping) else repr(names)
        raise ValueError(f"{where}: gates must name the three gates 'r', 'z' and 'n', got {got}")
    return {gate: _resolve(owner, names[gate], f"{where} gate {gate!r}") for gate in GATES}


def _resolve(owner, name, where: str):
    """What a gate's name points at. In a state dict a string is a prefix: ``<name>.weight`` (or
    ``.kernel``; ``/`` works as the separator) and ``<name>.bias``, or the name of the weight itself (no
    bias); on an object it is an attribute path."""
    if isinstance(name, str):
        if not isinstance(owner, Mapping):
            return _lookup(owner, name, where)
        if name in owner:
            return owner[name]
        for separator in (".", "/"):
            for kind in ("weight", "kernel"):
                if f"{name}{separator}{kind}" in owner:
                    return {kind: owner[f"{name}{separator}{kind}"], "bias": owner.get(f"{name}{separator}bias")}
        raise ValueError(f"{where}: no tensor {name + '.weight'!r} or {name + '.kernel'!r}; tensors: "
                         f"{list(owner)[:30]}")
    if isinstance(name, Mapping) and name and set(name) <= {"x", "h"}:
        return {part: _resolve(owner, name[part], f"{where} {part} part") for part in name}
    if isinstance(name, Mapping) and set(name) & {"weight", "kernel"}:
        resolved = {}
        for key, value in name.items():
            if isinstance(value, Mapping):
                resolved[key] = {part: _lookup(owner, item, f"{where} {key} {part}") for part, item in value.items()}
            else:
                resolved[key] = None if value is None else _lookup(owner, value, f"{where} {key}")
        return resolved
    raise TypeError(f"{where}: a gate is named by a string, {{'x': name, 'h': name}} or {{'weight': name, "
                    f"'bias': name}}, got {name!r}")


def _lookup(owner, name: str, where: str):
    """``owner[name]`` in a state dict, the attribute path ``name`` of an object."""
    if not isinstance(name, str):
        raise TypeError(f"{where}: expected a tensor name, got {name!r}")
    if isinstance(owner, Mapping):
        if name not in owner:
            raise ValueError(f"{where}: no tensor {name!r}; tensors: {list(owner)[:30]}")
        return owner[name]
    target = owner
    for attribute in name.split("."):
        if not hasattr(target, attribute):
            raise ValueError(f"{where}: {type(owner).__name__} has no attribute {name!r}")
        target = getattr(target, attribute)
    return target


# ---------------------------------------------------------------------------------------------
# one gate: its layers, sizes and columns


def _parse_gate(value, where: str, layout):
    """A gate as one _Linear over the concatenation, or {"x": _Linear, "h": _Linear}."""
    if isinstance(value, Mapping) and value and set(value) <= {"x", "h"}:
        if set(value) != {"x", "h"}:
            raise ValueError(f"{where}: a gate written as two layers needs both 'x' and 'h', got {sorted(value)}")
        return {part: _parse_linear(value[part], f"{where} {part} part", layout) for part in ("x", "h")}
    return _parse_linear(value, where, layout)


def _parse_linear(value, where: str, layout) -> _Linear:
    if isinstance(value, Mapping):
        kinds = set(value) & {"weight", "kernel"}
        if len(kinds) != 1 or set(value) - {"weight", "kernel", "bias"}:
            raise ValueError(f"{where}: expected {{'weight' (torch) or 'kernel' (Keras): W, 'bias': b}}, "
                             f"got keys {sorted(value)}")
        kind = kinds.pop()
        return _Linear(_array(value[kind], where), value.get("bias"), "torch" if kind == "weight" else "keras")
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where}: expected (weight, bias), got a sequence of {len(value)} items")
        return _Linear(_array(value[0], where), value[1], layout)
    if hasattr(value, "kernel") and not hasattr(value, "shape"):  # a Keras Dense (bias is None without use_bias)
        activation = getattr(getattr(value, "activation", None), "__name__", None)
        return _Linear(_array(value.kernel, where), getattr(value, "bias", None), "keras", activation)
    if hasattr(value, "weight") and not hasattr(value, "shape"):  # a torch nn.Linear
        return _Linear(_array(value.weight, where), getattr(value, "bias", None), "torch")
    return _Linear(_array(value, where), None, layout)


def _array(value, where: str, expected_ndim: int = 2) -> np.ndarray:
    if value is None:
        raise ValueError(f"{where}: the weight is missing (None)")
    array = to_numpy(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{where}: expected a float array, got {type(value).__name__} of dtype {array.dtype}")
    if array.ndim != expected_ndim:
        what = "weight" if expected_ndim == 2 else "bias"
        raise ValueError(f"{where}: {what} must be {expected_ndim}-D, got shape {array.shape}")
    return array


def _sizes(gate, where: str) -> tuple[int, int]:
    """(H, I) read from a gate's shapes: a weight over [h, x] is (H, H+I) or (H+I, H), I >= 1."""
    if isinstance(gate, dict):
        h_shape, x_shape = gate["h"].weight.shape, gate["x"].weight.shape
        if h_shape[0] != h_shape[1]:
            raise ValueError(f"{where}: the h part's weight must be square (H, H), got shape {h_shape}")
        hidden = h_shape[0]
        if gate["x"].layout is not None:
            return hidden, x_shape[1] if gate["x"].layout == "torch" else x_shape[0]
        if hidden not in x_shape:
            raise ValueError(f"{where}: the x part's weight must be (H, I) or (I, H) with H={hidden}, got {x_shape}")
        return hidden, x_shape[1] if x_shape[0] == hidden else x_shape[0]
    rows, cols = gate.weight.shape
    if gate.layout == "torch":
        hidden, width = rows, cols
    elif gate.layout == "keras":
        hidden, width = cols, rows
    elif rows == cols:
        raise ValueError(f"{where}: weight has shape {gate.weight.shape}; a weight over the concatenation of h and x "
                         f"is (H, H+I) ({_ORIENTATION['torch']}) or (H+I, H) ({_ORIENTATION['keras']}), never square")
    else:
        hidden, width = min(rows, cols), max(rows, cols)
    if width <= hidden:
        raise ValueError(f"{where}: weight has shape {gate.weight.shape}, {_ORIENTATION[gate.layout]}: it has no "
                         f"columns left for x after the H={hidden} of h")
    return hidden, width - hidden


def _oriented(linear: _Linear, rows: int, cols: int, where: str) -> np.ndarray:
    """The weight as (rows, cols), torch's (out, in); a Keras kernel is transposed."""
    shape = linear.weight.shape
    torch_shape, keras_shape = (rows, cols), (cols, rows)
    if linear.layout is None and rows == cols and shape == torch_shape:
        raise ValueError(f"{where}: weight of shape {shape} is square, so it may be {_ORIENTATION['torch']} or "
                         f"{_ORIENTATION['keras']}: pass layout='torch' or layout='keras'")
    if linear.layout in (None, "torch") and shape == torch_shape:
        return linear.weight
    if linear.layout in (None, "keras") and shape == keras_shape:
        return linear.weight.T
    expected = {"torch": f"{torch_shape} ({_ORIENTATION['torch']})", "keras": f"{keras_shape} ({_ORIENTATION['keras']})"}
    wanted = " or ".join(expected.values()) if linear.layout is None else expected[linear.layout]
    raise ValueError(f"{where}: weight has shape {shape}, expected {wanted}")


def _bias(value, hidden: int, where: str):
    if value is None:
        return None
    bias = _array(value, where, expected_ndim=1)
    if bias.shape != (hidden,):
        raise ValueError(f"{where}: bias has shape {bias.shape}, expected ({hidden},)")
    return bias


def _split_gate(gate, name: str, where: str, hidden: int, inputs: int, concat, reset_after: bool):
    """(W_x (H, I), W_h (H, H), b_x, b_h) of one gate; b_x goes to bias_ih, b_h to bias_hh (None: zeros)."""
    if isinstance(gate, dict):
        for part in ("x", "h"):
            if isinstance(gate[part].bias, Mapping):
                raise ValueError(f"{where} {part} part: a layer over {part} alone has one bias, got {{'x', 'h'}} parts")
        return (_oriented(gate["x"], hidden, inputs, f"{where} x part"),
                _oriented(gate["h"], hidden, hidden, f"{where} h part"),
                _bias(gate["x"].bias, hidden, f"{where} x part"), _bias(gate["h"].bias, hidden, f"{where} h part"))
    if concat is None:
        raise ValueError(f"{where}: one weight over the concatenation of h and x: state its order with concat='hx' "
                         f"([h, x]) or concat='xh' ([x, h])")
    weight = _oriented(gate, hidden, hidden + inputs, where)
    if concat == "hx":
        w_h, w_x = weight[:, :hidden], weight[:, hidden:]
    else:
        w_x, w_h = weight[:, :inputs], weight[:, inputs:]
    if isinstance(gate.bias, Mapping):
        if not set(gate.bias) <= {"x", "h"}:
            raise ValueError(f"{where}: a split bias is {{'x': b_x, 'h': b_h}}, got keys {sorted(gate.bias)}")
        return (w_x, w_h, _bias(gate.bias.get("x"), hidden, f"{where} x bias"),
                _bias(gate.bias.get("h"), hidden, f"{where} h bias"))
    bias = _bias(gate.bias, hidden, where)
    if bias is not None and name == "n" and reset_after:
        raise ValueError(
            f"{where}: reset_after=True puts the reset between the candidate's two biases, "
            f"n = tanh(W_nx x + b_nx + r * (W_nh h + b_nh)), and one bias was given: say on which side the cell "
            f"adds it with (weight, {{'x': bias}}) for tanh(W_nx x + b + r * (W_nh h)) or (weight, {{'h': bias}}) "
            f"for tanh(W_nx x + r * (W_nh h + b)) (in a state dict: {{'weight': name, 'bias': {{'x': name}}}})")
    return w_x, w_h, bias, None
