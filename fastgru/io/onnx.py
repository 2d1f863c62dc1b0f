"""ONNX: a ``GRU`` node (or a chain of them) of a ModelProto, a ``.onnx`` file or its bytes.

ONNX's layout: ``W`` (D, 3H, I), ``R`` (D, 3H, H), ``B`` (D, 6H) = input then recurrent biases, gates
z, r, h. ``linear_before_reset`` picks the cell variant, ``layout=1`` means batch-first ``X``, ``clip``
clamps every activation's input, ``direction`` is forward, reverse or bidirectional. ``X``,
``sequence_lens`` and ``initial_h`` are run-time inputs: pass them when calling the result. ``W``, ``R``
and ``B`` must be initializers or ``Constant`` outputs (or given with ``values={name: array}``).
`read_onnx` describes a `fastgru.Model` that calls like the node; `read_onnx_gru` the GRU alone.

Activations: the gate function may be ``Sigmoid`` or ``HardSigmoid`` with (alpha, beta) = (0.2, 0.5)
(ONNX's default, Keras 2) or (1/6, 0.5) (Keras 3), the same in both directions; the candidate function
must be ``Tanh``. Anything else is refused with the attribute and its value.
"""

from __future__ import annotations

import os

import numpy as np

from fastgru.io.common import GRUDescription, UnsupportedModelError, replaced, spec_dtype, zrh_to_rzn
from fastgru.spec import GATE_ACTIVATIONS, GRUSpec

# ONNX activation functions that take alpha and/or beta, in the order they consume activation_alpha/_beta.
_TAKES_ALPHA = {"affine", "leakyrelu", "thresholdedrelu", "scaledtanh", "hardsigmoid", "elu"}
_TAKES_BETA = {"affine", "scaledtanh", "hardsigmoid"}
_DEFAULT_ALPHA = {"hardsigmoid": 0.2, "leakyrelu": 0.01, "elu": 1.0}
_DEFAULT_BETA = {"hardsigmoid": 0.5}


def read_onnx(obj, node_name=None, *, values=None):
    """``(config, arrays, source)``: the `fastgru.Model` description of GRU node(s) of an ONNX model (one
    `fastgru.layers.OnnxRecurrent` layer, called like the node: ONNX's shapes, ``direction="reverse"``)."""
    spec, weights, reverse, name, source = _read(obj, node_name, values)
    gru = {"class": "GRU", "spec": spec.to_dict(), "weight_format": spec.dtype}
    layer = {"class": "OnnxGRU", "name": name, "config": {"gru": gru, "reverse": reverse}}
    config = {"class": "Model", "convention": "onnx", "name": source, "layers": [layer]}
    return config, {f"layers.0.{key}": value for key, value in weights.items()}, source


def read_onnx_gru(obj, node_name=None, *, values=None):
    """The `GRUDescription` of the GRU node(s) alone, PyTorch's semantics; a reverse node is refused
    (a GRU runs forwards or both ways)."""
    spec, weights, reverse, name, source = _read(obj, node_name, values)
    if reverse:
        raise UnsupportedModelError(f"{source}: GRU node {name!r} has direction='reverse', which a fastgru.GRU "
                                    f"cannot express; fastgru.Model.from_onnx imports it with ONNX's semantics")
    return GRUDescription(spec, weights, source)


def __getattr__(name):
    raise replaced(__name__, name, {"from_onnx": "fastgru.Model.from_onnx(obj) (ONNX's calling convention) or "
                                                 "fastgru.GRU.from_onnx(obj) (the GRU alone)",
                                    "OnnxGRU": "fastgru.Model (fastgru.Model.from_onnx returns one)"})


def _read(obj, node_name, values):
    """``(spec, weights, reverse, node name, source)`` from a ModelProto, a path or serialized bytes.

    ``node_name`` picks the GRU node by name (or by its first output's name) when there are several; a
    list of names stacks those nodes, in order, into one multi-layer GRU (as ``torch.onnx.export`` writes
    a multi-layer ``nn.GRU``: each node reads the previous node's ``Y``, reshaped to (T, B, D*H)).
    ``values`` supplies arrays for weights that are graph inputs rather than initializers.
    """
    model, source = _load_model(obj)
    graph = model.graph
    grus = [node for node in graph.node if node.op_type == "GRU" and node.domain in ("", "ai.onnx")]
    labels = [node.name or node.output[0] or node.output[1] for node in grus]
    if not grus:
        raise ValueError(f"{source}: no GRU node in the graph (op types: {sorted({n.op_type for n in graph.node})})")
    if node_name is None:
        if len(grus) > 1:
            raise ValueError(f"{source}: {len(grus)} GRU nodes, pass node_name= one of (or a list of) {labels}")
        nodes = grus
    else:
        names = [node_name] if isinstance(node_name, str) else list(node_name)
        nodes = []
        for name in names:
            found = [node for node in grus if name in (node.name, *node.output)]
            if not found:
                raise ValueError(f"{source}: no GRU node named {name!r}; GRU nodes: {labels}")
            nodes.append(found[0])
    constants = _constants(graph, values or {})
    layers = [_node_layer(node, constants, source) for node in nodes]
    first = layers[0]
    for layer in layers[1:]:
        for key in ("direction", "linear_before_reset", "gate_activation", "clip", "layout", "bias", "hidden_size"):
            if layer[key] != first[key]:
                raise UnsupportedModelError(f"{source}: nodes {first['name']!r} and {layer['name']!r} differ in {key} "
                                            f"({first[key]!r} vs {layer[key]!r}); they cannot stack into one GRU")
    if len(layers) > 1 and first["direction"] == "reverse":
        raise UnsupportedModelError(f"{source}: a chain of direction='reverse' nodes is not supported; "
                                    f"import them one at a time")
    weights = {}
    for index, layer in enumerate(layers):
        for name, array in layer["weights"].items():
            weights[name.replace("_l0", f"_l{index}")] = array
    spec = GRUSpec(
        input_size=weights["weight_ih_l0"].shape[1],
        hidden_size=first["hidden_size"],
        num_layers=len(layers),
        bidirectional=first["direction"] == "bidirectional",
        batch_first=first["layout"] == 1,
        bias=first["bias"],
        reset_after=bool(first["linear_before_reset"]),
        gate_activation=first["gate_activation"],
        clip=first["clip"],
        dtype=spec_dtype(*weights.values()),
    )
    return spec, weights, first["direction"] == "reverse", first["name"], source


def _load_model(obj):
    import onnx

    if isinstance(obj, onnx.ModelProto):
        return obj, f"ONNX model {obj.graph.name!r}"
    if isinstance(obj, (bytes, bytearray)):
        source = "ONNX bytes"
        loader = lambda: onnx.load_from_string(bytes(obj))  # noqa: E731
    elif isinstance(obj, (str, os.PathLike)):
        source = os.fspath(obj)
        loader = lambda: onnx.load(source)  # noqa: E731
    else:
        raise TypeError(f"from_onnx expects a ModelProto, a path or bytes, got {type(obj).__name__}")
    try:
        model = loader()
    except Exception as error:  # protobuf DecodeError, missing external data, ...
        raise ValueError(f"{source}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    if not model.graph.node:
        raise ValueError(f"{source}: not a readable ONNX model (empty graph)")
    return model, source


def _constants(graph, values):
    """Arrays known before run time: initializers, Constant node outputs, and user-supplied values."""
    from onnx import numpy_helper

    known = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            known[node.output[0]] = node.attribute[0].t
    arrays = {name: numpy_helper.to_array(tensor) for name, tensor in known.items()}
    arrays.update({name: np.asarray(value) for name, value in values.items()})
    return arrays


def _attributes(node):
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _text(value, where: str):
    """An ONNX string attribute as str; a ValueError naming `where` (file and node) if it is not UTF-8."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError as error:
        raise ValueError(f"{where}: a string attribute is not UTF-8 text ({error})") from None


def _gate_activation(attributes, directions, where) -> str:
    """The spec's gate_activation from activations/activation_alpha/activation_beta; refuses the rest."""
    functions = [_text(f, where) for f in attributes.get("activations", [])] or ["Sigmoid", "Tanh"] * directions
    if len(functions) != 2 * directions:
        raise UnsupportedModelError(f"{where}: activations={functions!r} must name 2 functions per direction")
    alphas = list(attributes.get("activation_alpha", []))
    betas = list(attributes.get("activation_beta", []))
    chosen = set()
    for position, function in enumerate(functions):
        lower = function.lower()
        alpha = alphas.pop(0) if lower in _TAKES_ALPHA and alphas else _DEFAULT_ALPHA.get(lower)
        beta = betas.pop(0) if lower in _TAKES_BETA and betas else _DEFAULT_BETA.get(lower)
        if position % 2 == 1:
            if lower != "tanh":
                raise UnsupportedModelError(f"{where}: activations={functions!r}: candidate function {function!r} is "
                                            f"not supported (only Tanh)")
        elif lower == "sigmoid":
            chosen.add("sigmoid")
        elif lower == "hardsigmoid":
            matches = [name for name, params in GATE_ACTIVATIONS.items()
                       if params and np.allclose((alpha, beta), params, rtol=0, atol=1e-7)]
            if not matches:
                raise UnsupportedModelError(f"{where}: activations={functions!r} with HardSigmoid alpha={alpha}, "
                                            f"beta={beta} is not supported (only (0.2, 0.5) and (1/6, 0.5))")
            chosen.add(matches[0])
        else:
            raise UnsupportedModelError(f"{where}: activations={functions!r}: gate function {function!r} is not "
                                        f"supported (Sigmoid or HardSigmoid)")
    if len(chosen) != 1:
        raise UnsupportedModelError(f"{where}: activations={functions!r} differ between directions; not supported")
    return chosen.pop()


def _node_layer(node, constants, source):
    """One GRU node as attributes plus layer-0 weights in fastgru's layout."""
    where = f"{source}: GRU node {node.name or node.output[0]!r}"
    attributes = _attributes(node)
    direction = _text(attributes.get("direction", "forward"), where)
    if direction not in ("forward", "reverse", "bidirectional"):
        raise UnsupportedModelError(f"{where}: direction={direction!r} is not supported")
    directions = 2 if direction == "bidirectional" else 1
    inputs = list(node.input) + [""] * (6 - len(node.input))

    def weight(index, label):
        name = inputs[index]
        if name == "":
            return None
        if name not in constants:
            raise ValueError(f"{where}: input {label} ({name!r}) is computed at run time, not an initializer or "
                             f"Constant; fastgru needs the weights when importing (pass values={{{name!r}: array}})")
        return np.asarray(constants[name])

    W, R, B = weight(1, "W"), weight(2, "R"), weight(3, "B")
    if W is None or R is None:
        raise ValueError(f"{where}: missing tensor {'W' if W is None else 'R'}")
    if R.ndim != 3 or R.shape[0] != directions or R.shape[1] != 3 * R.shape[2]:
        raise ValueError(f"{where}: tensor R ({inputs[2]!r}) has shape {R.shape}, expected ({directions}, 3H, H)")
    hidden = R.shape[2]
    if attributes.get("hidden_size", hidden) != hidden:
        raise ValueError(f"{where}: hidden_size={attributes['hidden_size']} but R ({inputs[2]!r}) has shape {R.shape}")
    if W.ndim != 3 or W.shape[:2] != (directions, 3 * hidden):
        raise ValueError(f"{where}: tensor W ({inputs[1]!r}) has shape {W.shape}, "
                         f"expected ({directions}, {3 * hidden}, input_size)")
    if B is not None and B.shape != (directions, 6 * hidden):
        raise ValueError(f"{where}: tensor B ({inputs[3]!r}) has shape {B.shape}, "
                         f"expected ({directions}, {6 * hidden})")
    for index, label in ((4, "sequence_lens"), (5, "initial_h")):
        constant = constants.get(inputs[index]) if inputs[index] else None
        # Exporters bake zeros for initial_h (torch's dynamo exporter does): the same as no initial_h.
        if constant is not None and not (label == "initial_h" and not np.any(constant)):
            raise UnsupportedModelError(f"{where}: {label} is a constant of the graph ({inputs[index]!r}); "
                                        f"fastgru takes it at call time: pass {label}= when calling the imported model")
    clip = attributes.get("clip")
    weights = {}
    for d in range(directions):
        suffix = "_reverse" if d else ""
        weights[f"weight_ih_l0{suffix}"] = zrh_to_rzn(W[d])
        weights[f"weight_hh_l0{suffix}"] = zrh_to_rzn(R[d])
        if B is not None:
            weights[f"bias_ih_l0{suffix}"] = zrh_to_rzn(B[d, : 3 * hidden])
            weights[f"bias_hh_l0{suffix}"] = zrh_to_rzn(B[d, 3 * hidden :])
    return {
        "name": node.name or node.output[0],
        "direction": direction,
        "linear_before_reset": int(attributes.get("linear_before_reset", 0)),
        "layout": int(attributes.get("layout", 0)),
        "clip": None if clip is None else float(clip),
        "gate_activation": _gate_activation(attributes, directions, where),
        "bias": B is not None,
        "hidden_size": hidden,
        "weights": weights,
    }
