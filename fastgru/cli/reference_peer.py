"""The float64 reference the command compares every engine with: `fastgru.reference` for each GRU, and for
a `fastgru.Model` its other layers in numpy in float64 (`reference_peer`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from fastgru.cli.inputs import Inputs, is_gru
from fastgru.cli.peers import Peer, outputs
from fastgru.cli.source import Source


class ReferenceGRU:
    """Stands in for a `fastgru.GRU` (a layer calls ``gru(x, h0, lengths, mask=)``): `fastgru.reference`
    in float64 on the GRU's weights (for an int8 GRU, the float32 weights it was quantized from)."""

    def __init__(self, gru):
        self.spec = dataclasses.replace(gru.spec, dtype="float64")
        self.weights = {name: np.asarray(value, np.float64) for name, value in gru.weights.items()}
        self.initial_state = gru.initial_state
        self.dtype = np.dtype(np.float64)
        self._check_lengths = gru._check_lengths

    def __call__(self, x, h0=None, lengths=None, *, mask=None, num_threads=None):
        from fastgru import reference

        if h0 is None and self.initial_state is not None:
            batch = np.shape(x)[0 if self.spec.batch_first else 1]
            h0 = np.repeat(np.asarray(self.initial_state, np.float64)[:, None], batch, axis=1)
        if lengths is not None:
            lengths = np.asarray(lengths).astype(np.int64)
        return reference.forward(self.spec, self.weights, x, h0, lengths, mask)


def reference_peer(source: Source, model, inputs: Inputs) -> Peer:
    """The float64 reference: for a GRU, `fastgru.reference` itself; for a Model, a float64 twin of the
    model built from the file's description, each of its GRUs replaced by a `ReferenceGRU`, so that the
    other layers (numpy, the same code as the model's) run in float64 around the reference GRUs."""
    if is_gru(model):
        twin = ReferenceGRU(model)
    else:
        twin = _float64_twin(source)
        for layer in twin.layers:
            if layer.grus:
                layer.gru = ReferenceGRU(layer.gru)  # the twin is ours alone: nothing else holds it
    others = not is_gru(model) and any(not layer.grus for layer in model.layers)
    what = "fastgru.reference (float64)" + (", the other layers in float64 numpy" if others else "")
    args = tuple(np.asarray(a, np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                 for a in inputs.args)
    return Peer("reference", "float64", what, lambda: outputs(twin(*args)), lambda n: None)


def _float64_twin(source: Source):
    """A Model from the file's description with every float array, GRU spec and weight format in float64."""
    from fastgru.io.load import FileDescription, build

    config, arrays, label = source.found.description
    config = json.loads(json.dumps(config))

    def widen(node):
        if isinstance(node, dict):
            if node.get("class") == "GRU" and isinstance(node.get("spec"), dict):
                node["spec"]["dtype"] = node["weight_format"] = "float64"
            for value in node.values():
                widen(value)
        elif isinstance(node, list):
            for value in node:
                widen(value)

    widen(config)
    arrays = {key: np.asarray(value, np.float64) if np.asarray(value).dtype.kind == "f" else value
              for key, value in arrays.items()}
    return build(FileDescription(source.found.kind, (config, arrays, label), source.path))
