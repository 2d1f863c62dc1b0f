"""safetensors files, read and written with numpy alone (no torch, no safetensors package needed).

The format: an 8-byte little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {str: str}}``, then the raw little-endian tensor bytes,
offsets relative to the end of the header. A state dict saved from PyTorch
(``safetensors.torch.save_file(model.state_dict(), path)``) uses PyTorch's names, so the tensors go
through the PyTorch importer's name matching (`fastgru.io.torch`); a file whose metadata says
``"format": "fastgru"`` is fastgru's own file (`fastgru.io.native`). This module is only the format.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
          np.dtype(np.int8): "I8"}
_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Returns ``(tensors, metadata)`` of a file; bfloat16 widens to float32. Errors name the file and the tensor."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        data = file.read()
    return decode_safetensors(data, path)


def read_metadata(path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, reading its header only (`decode_metadata`). A header
    that claims more than the file holds, or more than any header may, is judged on the whole file, so
    the error is `decode_safetensors`'s."""
    path = os.fspath(path)
    with open(path, "rb") as file:
        data = file.read(8)
        if len(data) == 8:
            (size,) = struct.unpack("<Q", data)
            if size <= _MAX_HEADER:
                data += file.read(size)
            if len(data) < 8 + size:
                data += file.read()
    return decode_metadata(data, path)


def decode_metadata(data: bytes, label: str = "<bytes>") -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes, from the header alone: no tensor is decoded or checked
    (`decode_safetensors` does both). Errors as for `decode_safetensors`'s header."""
    return _header(bytes(data), label)[1]


def _header(data: bytes, label: str) -> tuple[dict, dict, int]:
    """(tensor entries, metadata, header size) of safetensors bytes; errors name ``label``."""
    if len(data) < 8:
        raise ValueError(f"{label}: not a safetensors file (only {len(data)} bytes)")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > min(len(data) - 8, _MAX_HEADER):
        raise ValueError(f"{label}: not a safetensors file or truncated "
                         f"(header of {header_size} bytes, file of {len(data)})")
    try:
        header = json.loads(data[8 : 8 + header_size])
    except ValueError as error:
        raise ValueError(f"{label}: not a safetensors file (header is not JSON: {error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{label}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{label}: not a safetensors file ('__metadata__' is not a JSON object)")
    return header, metadata, header_size


def decode_safetensors(data: bytes, label: str = "<bytes>") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """`read_safetensors` on bytes already in memory; errors name ``label`` (a file, or what the bytes are)."""
    data = bytes(data)
    header, metadata, header_size = _header(data, label)
    body = memoryview(data)[8 + header_size :]
    tensors = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(n) for n in info["shape"])
            begin, end = (int(n) for n in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{label}: tensor {name!r} has a bad header entry {info!r} ({error!r})") from None
        if not 0 <= begin <= end <= len(body):
            raise ValueError(f"{label}: tensor {name!r} lies outside the file (bytes {begin}..{end} of {len(body)}); "
                             f"truncated?")
        if end - begin != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(f"{label}: tensor {name!r} has {end - begin} bytes, shape {shape} of {info['dtype']} needs "
                             f"{int(np.prod(shape)) * dtype.itemsize}")
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        if info["dtype"] == "BF16":  # bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array.astype(array.dtype.newbyteorder("="))
    return tensors, metadata


def encode_safetensors(tensors: dict, metadata: dict | None = None, label: str = "<bytes>") -> bytes:
    """The bytes of a safetensors file: float16/32/64 and int8 arrays exactly (raw bytes), tensors in the
    given order, 8-byte aligned data. Errors name ``label``."""
    header, offset, chunks = {}, 0, []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        if array.dtype not in _NAMES:
            raise TypeError(f"{label}: tensor {name!r} has dtype {array.dtype}; only float16/32/64 and int8 are written")
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return b"".join([struct.pack("<Q", len(encoded)), encoded, *chunks])


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Writes `encode_safetensors` to ``path``."""
    data = encode_safetensors(tensors, metadata, os.fspath(path))
    with open(os.fspath(path), "wb") as file:
        file.write(data)


def looks_like_safetensors(head: bytes) -> bool:
    """Whether a file's first bytes are a safetensors header: an 8-byte length, then a JSON object."""
    return len(head) >= 9 and head[8:9] == b"{"


def __getattr__(name):
    from fastgru.io.common import replaced

    raise replaced(__name__, name, {"from_safetensors": "fastgru.load(path) (fastgru's own files and torch "
                                                        "state dicts) or fastgru.GRU.from_torch(path)"})
