"""fastgru's own file: one safetensors file whose metadata describes the model as JSON.

Layout (readable with numpy and ``json`` alone, or with any safetensors reader):

- tensors: the weights, in their dtype, bytes exactly as in memory (so save -> load is bit-exact);
- ``__metadata__``: ``{"format": "fastgru", "format_version": "1", ...}`` and then either
  - ``"spec": <GRUSpec.to_dict() as JSON>`` for a float `fastgru.GRU`, its tensors under their
    `fastgru.spec` names (the layout of every file since format_version 1), or
  - ``"model": <JSON>`` for anything else: ``{"class": "Model", "convention", "name", "layers": [{"class",
    "name", "config"}, ...]}`` with the tensors of layer i named ``layers.<i>.<name>`` (a recurrent
    layer's config holds its GRU's ``{"class": "GRU", "spec", "weight_format"}``), or ``{"class": "GRU",
    ...}`` for a GRU that carries more than float weights: int8 (``"weight_format": "int8"``: its int8
    codes as I8 tensors under the weights' names, their float32 row scales as ``<name>.scale`` and the
    float32 biases, loaded exactly, never quantized again; docs/int8.md, "Stored int8 models"; files
    that hold float32 weights under that flag, as fastgru wrote them before, are quantized on load) or a
    learned initial state, the tensor ``initial_state`` (L*D, H) beside the weights (optional: a file
    without it loads with none; ``GRU._portable`` decides what a GRU stores, so a Model's GRU layers keep
    theirs too).
- ``"crc32"`` in every file this fastgru writes: the CRC-32 of the whole file with this value read as
  ``00000000`` (eight hex digits, so writing it moves no byte). A file whose bytes were truncated or
  changed anywhere raises ValueError on load instead of loading other weights; files without ``crc32``
  (written before fastgru kept one) load unchecked. A field this fastgru does not know is refused, not
  skipped, because it may change what the file means (it is also how a damaged ``crc32`` name shows):
  at the top (`_FIELDS`) here, and inside ``"model"`` by the objects that read their descriptions
  (``GRU._from_portable``, ``Model._from_portable``, `fastgru.layers.build_layer`).

Files written before whole models existed (a Keras or ONNX GRU wrapper: ``"spec"`` plus ``"call"``) load
as the equivalent one-layer `fastgru.Model`. Any extension works; ``.fastgru`` is the conventional one.

This module is the format only. `dumps` takes any object with ``_portable() -> (config, arrays)``;
`loads` builds objects with the constructors registered by class name (`register`: ``fastgru`` registers
`fastgru.GRU` and `fastgru.Model` when it is imported, which happens before this module can be).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Callable

from fastgru.io.safetensors import decode_safetensors, encode_safetensors, read_metadata
from fastgru.spec import GRUSpec

FORMAT = "fastgru"
FORMAT_VERSION = "1"
CHECKSUM = "crc32"
_UNSEALED = "00000000"
_DEFAULT_LABEL = "<fastgru model bytes>"
# Every metadata field this fastgru reads ("call": files of the Keras/ONNX wrappers before Model existed).
_FIELDS = {"format", "format_version", "spec", "call", "model", CHECKSUM}
_BUILDERS: dict[str, Callable] = {}


def register(class_name: str, build: Callable) -> None:
    """Makes `loads` build descriptions of ``{"class": class_name}`` with ``build(config, arrays, label)``."""
    _BUILDERS[class_name] = build


def dumps(obj) -> bytes:
    """The bytes of fastgru's own file for a `fastgru.GRU` or `fastgru.Model`.

    This is the one serialized form: `save` writes it to a file and ``pickle`` / ``copy`` carry it (each
    model's ``__reduce__`` calls `loads` on it), so a pickled model holds portable weights, never the
    packed panels, whose layout depends on the CPU's kernel table.
    """
    portable = getattr(obj, "_portable", None)
    if portable is None:
        raise TypeError(f"fastgru files hold a fastgru.GRU or fastgru.Model, got {type(obj).__name__}")
    config, arrays = portable()
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION}
    # A float GRU with nothing but its weights keeps the layout every fastgru version reads; anything more
    # (int8, another option or array a GRU may carry) goes in "model", which older versions refuse.
    plain_gru = (config.get("class") == "GRU" and set(config) == {"class", "spec", "weight_format"}
                 and config["weight_format"] == config["spec"]["dtype"]
                 and set(arrays) <= set(GRUSpec.from_dict(config["spec"]).weight_shapes()))
    if plain_gru:
        metadata["spec"] = json.dumps(config["spec"])
    else:
        metadata["model"] = json.dumps(config)
    metadata[CHECKSUM] = _UNSEALED
    return _seal(encode_safetensors(arrays, metadata))


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
    at = _checksum_at(data, 8 + header_size, stored) if isinstance(stored, str) and len(stored) == 8 else -1
    view = memoryview(data)
    actual = zlib.crc32(view[at + 8 :], zlib.crc32(_UNSEALED.encode(), zlib.crc32(view[:at]))) if at >= 0 else None
    if actual is None or f"{actual:08x}" != stored:
        raise ValueError(f"{label}: damaged fastgru data: the CRC-32 of its {len(data)} bytes does not match the "
                         f"one stored ({stored!r}); it was truncated or changed after it was written")


def save(obj, path) -> None:
    """Writes `dumps` of ``obj`` to ``path``."""
    data = dumps(obj)
    with open(os.fspath(path), "wb") as file:
        file.write(data)


def is_fastgru_file(path) -> bool:
    """Whether a safetensors file is fastgru's own (its metadata's ``format``), from its header alone."""
    return read_metadata(path).get("format") == FORMAT


def read(path) -> tuple[dict, dict]:
    """``(config, arrays)`` of a file, using numpy only (see `parse`)."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        return parse(file.read(), path)


def parse(data: bytes, label: str = _DEFAULT_LABEL) -> tuple[dict, dict]:
    """The portable description in ``data``: ``config`` (``{"class": "GRU" | "Model", ...}``) and the
    tensors by name. Errors name ``label``. Checks the CRC-32 when the data has one."""
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
        if "model" in metadata:
            config = json.loads(metadata["model"])
            if not isinstance(config, dict) or not isinstance(config.get("class"), str):
                raise ValueError("'model' is not a JSON object with a 'class'")
            return config, tensors
        spec = json.loads(metadata["spec"])
        call = json.loads(metadata["call"]) if "call" in metadata else None
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{label}: bad fastgru spec in metadata ({error})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{label}: bad fastgru spec in metadata (not a JSON object)")
    gru = {"class": "GRU", "spec": spec, "weight_format": spec.get("dtype", "float32")}
    if call is None:
        return gru, tensors
    return _wrapper_model(gru, call, tensors, label)


def _wrapper_model(gru: dict, call: dict, tensors: dict, label: str) -> tuple[dict, dict]:
    """A file of a Keras or ONNX GRU wrapper (``"call"`` metadata, before whole models) as the same
    one-layer Model (a Masking layer first when the wrapper had a ``mask_value``)."""
    if not isinstance(call, dict):
        raise ValueError(f"{label}: bad call convention in metadata ({call!r})")
    kind = call.get("kind")
    if kind == "onnx":
        layers = [{"class": "OnnxGRU", "name": "GRU", "config": {"gru": gru, "reverse": bool(call.get("reverse"))}}]
        convention = "onnx"
    elif kind == "keras":
        keys = ("return_sequences", "return_state", "go_backwards", "zero_output_for_mask", "merge_mode")
        options = {key: call[key] for key in keys if key in call}
        layers = [{"class": "KerasGRU", "name": "gru", "config": {"gru": gru, **options}}]
        if call.get("mask_value") is not None:
            layers.insert(0, {"class": "Masking", "name": "masking", "config": {"mask_value": call["mask_value"]}})
        convention = "keras"
    else:
        raise ValueError(f"{label}: unknown call convention {kind!r} in metadata")
    index = len(layers) - 1
    arrays = {f"layers.{index}.{name}": value for name, value in tensors.items()}
    return {"class": "Model", "convention": convention, "name": "model", "layers": layers}, arrays


def load(path):
    """Loads a file written by `save`: the `fastgru.GRU` or `fastgru.Model` that was saved."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        return loads(file.read(), path)


def loads(data: bytes, label: str = _DEFAULT_LABEL):
    """The object that `dumps` turned into ``data``; errors name ``label``. Unpickling calls this.

    Damaged data (truncated, or any byte changed) raises ValueError; nothing but fastgru's own parser
    and the registered constructors run on it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{label}: expected the bytes written by fastgru.io.native.dumps, got {type(data).__name__}")
    return build(*parse(bytes(data), label), label)


def build(config: dict, arrays: dict, label: str):
    """The object a parsed description (`parse`) stands for, built by the constructor registered for its
    class; errors name ``label``."""
    builder = _BUILDERS.get(config["class"])
    if builder is None:
        raise ValueError(f"{label}: unknown object class {config['class']!r} in metadata "
                         f"(this fastgru builds {sorted(_BUILDERS)})")
    return builder(config, arrays, label)
