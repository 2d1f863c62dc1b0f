"""fastgru's own file: one safetensors file whose metadata holds the spec as JSON.

Layout (readable with numpy and ``json`` alone, or with any safetensors reader):

- tensors: the weights under their `fastgru.spec` names, in the spec's dtype, bytes exactly as in memory
  (so save -> load is bit-exact);
- ``__metadata__``: ``{"format": "fastgru", "format_version": "1", "spec": <GRUSpec.to_dict() as JSON>}``,
  plus ``"call": <JSON>`` when the model is a Keras/ONNX wrapper, so that it comes back calling like its
  source (masks, ``go_backwards``, ONNX output shapes).

Any extension works; ``.fastgru`` is the conventional one.
"""

from __future__ import annotations

import json
import os

from fastgru.io.safetensors import read_safetensors, write_safetensors
from fastgru.spec import GRUSpec

FORMAT = "fastgru"
FORMAT_VERSION = "1"


def save(model, path) -> None:
    """Writes a `fastgru.GRU` (or a Keras/ONNX wrapper around one) to ``path``."""
    gru = getattr(model, "gru", model)
    if getattr(gru, "weight_format", None) == "int8":
        raise ValueError("an int8 model is not saved: save the float32 model it came from and call "
                         "quantize('int8') after loading (quantization is deterministic)")
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": json.dumps(gru.spec.to_dict())}
    if hasattr(model, "call_config"):
        metadata["call"] = json.dumps(model.call_config())
    weights = gru.weights
    write_safetensors(path, {name: weights[name] for name in gru.spec.weight_shapes()}, metadata)


def read(path):
    """Returns ``(spec, weights, call)`` using numpy only; ``call`` is None for a plain GRU."""
    path = os.fspath(path)
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastgru file (safetensors metadata has no 'format': 'fastgru')")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: fastgru file format_version {metadata.get('format_version')!r} is not supported "
                         f"(this fastgru reads {FORMAT_VERSION!r})")
    try:
        spec = GRUSpec.from_dict(json.loads(metadata["spec"]))
        call = json.loads(metadata["call"]) if "call" in metadata else None
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: bad fastgru spec in metadata ({error})") from None
    return spec, tensors, call


def load(path):
    """Loads a file written by `save`: a `fastgru.GRU`, or the Keras/ONNX wrapper that was saved."""
    from fastgru.io import build_gru

    spec, weights, call = read(path)
    gru = build_gru(spec, weights, os.fspath(path))
    if call is None:
        return gru
    kind = call.pop("kind", None)
    if kind == "keras":
        from fastgru.io.keras import KerasGRU

        return KerasGRU(gru, **call)
    if kind == "onnx":
        from fastgru.io.onnx import OnnxGRU

        return OnnxGRU(gru, **call)
    raise ValueError(f"{os.fspath(path)}: unknown call convention {kind!r} in metadata")
