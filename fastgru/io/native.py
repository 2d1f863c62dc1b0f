"""fastgru's own file: one safetensors file whose metadata holds the spec as JSON.

Layout (readable with numpy and ``json`` alone, or with any safetensors reader):

- tensors: the weights under their `fastgru.spec` names, in the spec's dtype, bytes exactly as in memory
  (so save -> load is bit-exact); plus, when the model has a learned initial state, the tensor
  ``initial_state`` (L*D, H) (optional: files without it load with no initial state);
- an int8 model (``"weight_format": "int8"`` in the metadata) stores its int8 codes instead: each
  ``weight_*`` tensor as I8 (3H, K) in -127..127, its float32 row scales (3H,) as ``<name>.scale``, and the
  biases F32 (docs/int8.md, "Stored int8 models"). Loading builds the int8 model from them exactly
  (`fastgru.GRU.from_int8_weights`), never quantizing again. Files that flag ``"int8"`` over float32
  weights (no ``.scale`` tensors) load by quantizing those, as they always did;
- ``__metadata__``: ``{"format": "fastgru", "format_version": "1", "spec": <GRUSpec.to_dict() as JSON>}``,
  plus ``"call": <JSON>`` when the model is a Keras/ONNX wrapper, so that it comes back calling like its
  source (masks, ``go_backwards``, ONNX output shapes), and ``"weight_format": "int8"`` for an int8 model.

Any extension works; ``.fastgru`` is the conventional one.
"""

from __future__ import annotations

import json
import os

from fastgru.io.safetensors import decode_safetensors, encode_safetensors
from fastgru.spec import SCALE_SUFFIX, GRUSpec

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
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": json.dumps(gru.spec.to_dict())}
    if hasattr(model, "call_config"):
        metadata["call"] = json.dumps(model.call_config())
    tensors, weight_metadata = _stored_weights(gru)
    metadata.update(weight_metadata)
    if getattr(gru, "initial_state", None) is not None:
        tensors[INITIAL_STATE] = gru.initial_state
    return encode_safetensors(tensors, metadata)


def _stored_weights(gru) -> tuple[dict, dict]:
    """The tensors and metadata that stand for ``gru``'s weights, which `_build` turns back into it: the
    float weights, or an int8 model's codes, scales and biases exactly."""
    if gru.weight_format == "int8":
        return dict(gru.int8_weights), {"weight_format": "int8"}
    weights = gru.weights
    return {name: weights[name] for name in gru.spec.weight_shapes()}, {}


def _build(spec: GRUSpec, tensors: dict, metadata: dict, label: str):
    """The plain GRU of a file's spec, weight tensors (``initial_state`` removed) and metadata."""
    from fastgru.io import build_gru

    weight_format = metadata.get("weight_format")
    if weight_format is None:
        return build_gru(spec, tensors, label)
    if weight_format != "int8" or spec.dtype != "float32":
        raise ValueError(f"{label}: weight_format {weight_format!r} is not supported for a {spec.dtype} model "
                         f"(fastgru writes 'int8', for float32 models only)")
    if not any(name.endswith(SCALE_SUFFIX) for name in tensors):
        # float32 weights flagged int8 (no codes stored): quantizing them is deterministic
        try:
            return build_gru(spec, tensors, label).quantize("int8")
        except ValueError as error:
            raise ValueError(f"{label}: {error}") from None
    import fastgru

    return fastgru.GRU.from_int8_weights(spec, tensors, source=label)


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
    """`read` on bytes in memory; errors name ``label``. For an int8 model (``weight_format`` in
    `parse_metadata`), the weights are its codes and ``.scale`` tensors."""
    spec, tensors, call, _ = parse_metadata(data, label)
    return spec, tensors, call


def parse_metadata(data: bytes, label: str = "<fastgru bytes>"):
    """`parse`, and the file's metadata as a fourth value."""
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
    return spec, tensors, call, metadata


def load(path):
    """Loads a file written by `save`: a `fastgru.GRU`, or the Keras/ONNX wrapper that was saved."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        return loads(file.read(), path)


def loads(data: bytes, label: str = "<fastgru bytes>"):
    """The model that `dumps` turned into ``data``; errors name ``label``. Unpickling calls this."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{label}: expected the bytes written by fastgru.io.native.dumps, got {type(data).__name__}")
    spec, weights, call, metadata = parse_metadata(data, label)
    initial_state = weights.pop(INITIAL_STATE, None)
    gru = _build(spec, weights, metadata, label)
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
