"""fastgru's own file: one safetensors file whose metadata holds the spec as JSON.

Layout (readable with numpy and ``json`` alone, or with any safetensors reader):

- tensors: the weights under their `fastgru.spec` names, in the spec's dtype, bytes exactly as in memory
  (so save -> load is bit-exact);
- ``__metadata__``: ``{"format": "fastgru", "format_version": "1", "spec": <GRUSpec.to_dict() as JSON>}``,
  plus ``"call": <JSON>`` when the model is a Keras/ONNX wrapper, so that it comes back calling like its
  source (masks, ``go_backwards``, ONNX output shapes); ``"weight_format": "int8"`` for an int8 model
  (`_stored_weights`); and ``"crc32"``, the CRC-32 of the whole file with this value read as ``00000000``
  (eight hex digits, so writing it moves no byte). A file whose bytes were truncated or changed anywhere
  raises ValueError on load instead of loading other weights; files without ``crc32`` (written before
  fastgru kept one) load unchecked. A field this fastgru does not know is refused, not skipped: it
  may change what the file means (it is also how a damaged ``crc32`` name shows).

Any extension works; ``.fastgru`` is the conventional one.
"""

from __future__ import annotations

import json
import os
import struct
import zlib

from fastgru.io.safetensors import decode_safetensors, encode_safetensors
from fastgru.spec import GRUSpec

FORMAT = "fastgru"
FORMAT_VERSION = "1"
CHECKSUM = "crc32"
_UNSEALED = "00000000"
_DEFAULT_LABEL = "<fastgru model bytes>"
_FIELDS = {"format", "format_version", "spec", "call", "weight_format", CHECKSUM}


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
    metadata[CHECKSUM] = _UNSEALED
    return _seal(encode_safetensors(tensors, metadata))


def _stored_weights(gru) -> tuple[dict, dict]:
    """The tensors and metadata that stand for ``gru``'s weights, and `_restore_weight_format` undoes.

    An int8 model stores the float32 weights it was quantized from and ``"weight_format": "int8"``;
    loading quantizes them again, which is deterministic, so the int8 model comes back bit for bit.
    """
    weights = gru.weights
    tensors = {name: weights[name] for name in gru.spec.weight_shapes()}
    return tensors, ({"weight_format": "int8"} if gru.weight_format == "int8" else {})


def _restore_weight_format(gru, metadata: dict, label: str):
    weight_format = metadata.get("weight_format")
    if weight_format is None:
        return gru
    if weight_format != "int8" or gru.spec.dtype != "float32":
        raise ValueError(f"{label}: weight_format {weight_format!r} is not supported for a {gru.spec.dtype} "
                         f"model (fastgru writes 'int8', for float32 models only)")
    try:
        return gru.quantize("int8")
    except ValueError as error:  # non-finite weights: a damaged file that passed the checksum
        raise ValueError(f"{label}: {error}") from None


def _checksum_at(data, header_end: int, value: str) -> int:
    """Where the eight digits of ``"crc32": value`` lie in the header, or -1."""
    marker = f'"{CHECKSUM}":"{value}"'.encode()
    found = bytes(data[8:header_end]).find(marker)
    return -1 if found < 0 else 8 + found + len(marker) - 9


def _seal(data: bytes) -> bytes:
    """``data`` with its placeholder checksum replaced by the CRC-32 of the whole (placeholder) file."""
    (header_size,) = struct.unpack("<Q", data[:8])
    at = _checksum_at(data, 8 + header_size, _UNSEALED)
    return b"".join([data[:at], f"{zlib.crc32(data):08x}".encode(), data[at + 8 :]])


def _verify(data, metadata: dict, label: str) -> None:
    stored = metadata.get(CHECKSUM)
    if stored is None:
        return  # written before fastgru kept a checksum
    (header_size,) = struct.unpack("<Q", data[:8])
    at = _checksum_at(data, 8 + header_size, stored) if len(stored) == 8 else -1
    view = memoryview(data)
    actual = zlib.crc32(view[at + 8 :], zlib.crc32(_UNSEALED.encode(), zlib.crc32(view[:at]))) if at >= 0 else None
    if actual is None or f"{actual:08x}" != stored:
        raise ValueError(f"{label}: damaged fastgru data: the CRC-32 of its {len(data)} bytes does not match the "
                         f"one stored ({stored!r}); it was truncated or changed after it was written")


def save(model, path) -> None:
    """Writes `dumps` of ``model`` to ``path``."""
    data = dumps(model)
    with open(os.fspath(path), "wb") as file:
        file.write(data)


def read(path):
    """Returns ``(spec, weights, call)`` of a file using numpy only; ``call`` is None for a plain GRU."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        return parse(file.read(), path)[:3]


def parse(data: bytes, label: str = _DEFAULT_LABEL):
    """`read` on bytes in memory; errors name ``label``. Checks the CRC-32 when the data has one."""
    tensors, metadata = decode_safetensors(data, label)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{label}: not a fastgru file (safetensors metadata has no 'format': 'fastgru')")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{label}: fastgru file format_version {metadata.get('format_version')!r} is not supported "
                         f"(this fastgru reads {FORMAT_VERSION!r})")
    unknown = sorted(set(metadata) - _FIELDS)
    if unknown:
        raise ValueError(f"{label}: fastgru metadata has field(s) {unknown} that this fastgru does not know "
                         f"(a file from a newer fastgru, or damaged)")
    _verify(data, metadata, label)
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


def loads(data: bytes, label: str = _DEFAULT_LABEL):
    """The model that `dumps` turned into ``data``; errors name ``label``. Unpickling calls this.

    Damaged data (truncated, or any byte changed) raises ValueError; nothing but fastgru's own parser
    and model constructor runs on it.
    """
    from fastgru.io import build_gru

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{label}: expected the bytes written by fastgru.io.native.dumps, got {type(data).__name__}")
    spec, weights, call, metadata = parse(bytes(data), label)
    gru = _restore_weight_format(build_gru(spec, weights, label), metadata, label)
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
