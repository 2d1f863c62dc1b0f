"""fastgru's own file: one safetensors file whose metadata holds the spec as JSON.

Layout (readable with numpy and ``json`` alone, or with any safetensors reader):

- tensors: the weights under their `fastgru.spec` names, in the spec's dtype, bytes exactly as in memory
  (so save -> load is bit-exact); plus, when the model has a learned initial state, the tensor
  ``initial_state`` (L*D, H) (optional: files without it load with no initial state);
- ``__metadata__``: ``{"format": "fastgru", "format_version": "1", "spec": <GRUSpec.to_dict() as JSON>}``,
  plus ``"call": <JSON>`` when the model is a Keras/ONNX wrapper, so that it comes back calling like its
  source (masks, ``go_backwards``, ONNX output shapes).

Any extension works; ``.fastgru`` is the conventional one.
"""

from __future__ import annotations

import json
import os

from fastgru.io.safetensors import decode_safetensors, encode_safetensors
from fastgru.spec import GRUSpec

FORMAT = "fastgru"
FORMAT_VERSION = "1"
INITIAL_STATE = "initial_state"  # the optional tensor of a learned h0 (GRU.initial_state)


def dumps(model) -> bytes:
    """The bytes of fastgru's own file for a `fastgru.GRU` (or a Keras/ONNX wrapper around one).

    This is the one serialized form: `save` writes it to a file and ``pickle`` carries it (each model's
    ``__reduce__`` calls `loads` on it), so a pickled model holds portable weights, never the packed
    panels, whose layout depends on the CPU's kernel table.
    """
    gru = getattr(model, "gru", model)
    if getattr(gru, "weight_format", None) == "int8":
        raise ValueError("an int8 model is not saved: save the float32 model it came from and call "
                         "quantize('int8') after loading (quantization is deterministic)")
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": json.dumps(gru.spec.to_dict())}
    if hasattr(model, "call_config"):
        metadata["call"] = json.dumps(model.call_config())
    weights = gru.weights
    tensors = {name: weights[name] for name in gru.spec.weight_shapes()}
    if getattr(gru, "initial_state", None) is not None:
        tensors[INITIAL_STATE] = gru.initial_state
    return encode_safetensors(tensors, metadata)


def save(model, path) -> None:
    """Writes `dumps` of ``model`` to ``path``."""
    data = dumps(model)
    with open(os.fspath(path), "wb") as file:
        file.write(data)


def read(path):
    """Returns ``(spec, weights, call)`` of a file using numpy only; ``call`` is None for a plain GRU."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        return parse(file.read(), path)


def parse(data: bytes, label: str = "<fastgru bytes>"):
    """`read` on bytes in memory; errors name ``label``."""
    tensors, metadata = decode_safetensors(data, label)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{label}: not a fastgru file (safetensors metadata has no 'format': 'fastgru')")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{label}: fastgru file format_version {metadata.get('format_version')!r} is not supported "
                         f"(this fastgru reads {FORMAT_VERSION!r})")
    try:
        spec = GRUSpec.from_dict(json.loads(metadata["spec"]))
        call = json.loads(metadata["call"]) if "call" in metadata else None
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{label}: bad fastgru spec in metadata ({error})") from None
    return spec, tensors, call


def load(path):
    """Loads a file written by `save`: a `fastgru.GRU`, or the Keras/ONNX wrapper that was saved."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        return loads(file.read(), path)


def loads(data: bytes, label: str = "<fastgru bytes>"):
    """The model that `dumps` turned into ``data``; errors name ``label``. Unpickling calls this."""
    from fastgru.io import build_gru

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{label}: expected the bytes written by fastgru.io.native.dumps, got {type(data).__name__}")
    spec, weights, call = parse(data, label)
    initial_state = weights.pop(INITIAL_STATE, None)
    gru = build_gru(spec, weights, label)
    if initial_state is not None:
        gru = gru.with_initial_state(initial_state, source=f"{label}: tensor {INITIAL_STATE!r}")
    if call is None:
        return gru
    kind = call.pop("kind", None)
    if kind == "keras":
        from fastgru.io.keras import KerasGRU

        return KerasGRU(gru, **call)
    if kind == "onnx":
        from fastgru.io.onnx import OnnxGRU

        return OnnxGRU(gru, **call)
    raise ValueError(f"{label}: unknown call convention {kind!r} in metadata")
