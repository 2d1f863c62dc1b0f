"""`load(path, **options)`: recognises the file by its first bytes, then by its extension."""

from __future__ import annotations

import os
import zipfile

_HDF5 = b"\x89HDF\r\n\x1a\n"
_EXTENSIONS = {
    ".pt": "torch", ".pth": "torch", ".bin": "torch", ".ckpt": "torch", ".safetensors": "safetensors",
    ".fastgru": "safetensors", ".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".onnx": "onnx", ".npz": "npz",
}


def sniff(path) -> str:
    """One of "safetensors" (fastgru's own file is one), "keras", "h5", "torch", "onnx", "npz".

    Raises ValueError naming the file when it is none of them.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory (TensorFlow SavedModel directories are not supported; "
                         f"save the Keras model as .keras or .h5)")
    with open(path, "rb") as file:
        head = file.read(1 << 16)
    extension = os.path.splitext(path)[1].lower()
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: corrupted zip archive ({error})") from None
        if "config.json" in names and "model.weights.h5" in names:
            return "keras"
        if any(name.endswith("data.pkl") for name in names):
            return "torch"
        if (names and all(name.endswith(".npy") for name in names)) or extension == ".npz":
            return "npz"  # np.savez writes one .npy member per array
        raise ValueError(f"{path}: a zip archive that is neither a .keras model, a torch.save file nor a .npz "
                         f"archive: {names[:10]}")
    if head.startswith(_HDF5):
        return "h5"
    if len(head) >= 9 and head[8:9] == b"{":  # 8-byte header length, then the JSON header
        return "safetensors"
    if extension in _EXTENSIONS:  # content not decisive (truncated, or a format without a magic number)
        return _EXTENSIONS[extension]
    if head[:1] == b"\x80":  # pickle protocol >= 2: torch's legacy (non-zip) format
        return "torch"
    if head[:1] == b"\x08":  # ModelProto field 1 (ir_version), a varint
        return "onnx"
    raise ValueError(f"{path}: unrecognised file (not torch, safetensors, .keras, .h5, .onnx or a fastgru file)")


def load(path, **options):
    """Loads a GRU from any supported file; ``options`` go to the importer for that format.

    ===============================  =====================  ==========================================
    file                             importer               useful options
    ===============================  =====================  ==========================================
    fastgru's own (``gru.save``)     `native.load`          (none)
    ``.safetensors`` (torch names)   `from_safetensors`     ``prefix``, ``batch_first``
    ``.pt``/``.pth`` (state dict)    `from_torch`           ``prefix``, ``batch_first``
    ``.keras``, ``.h5``              `from_keras`           ``layer``, ``keras_version``, ...
    ``.onnx``                        `from_onnx`            ``node_name``
    ``.npz`` (``np.savez``)          `from_npz`             ``prefix``, ``names``, ``gates``, ``batch_first``
    ===============================  =====================  ==========================================

    torch state dicts, safetensors and ``.npz`` archives also take ``initial_state="<name>"``, the tensor
    of a learned h0.
    """
    try:
        return _load(path, **options)
    except (ImportError, MemoryError, TypeError, FileNotFoundError, PermissionError):
        raise  # a missing optional package, a bad option, no such file: not a damaged file
    except Exception as error:
        # Importers name the file in their own errors; anything else that escapes a damaged file (a
        # KeyError from h5py, a UnicodeDecodeError from a zip or protobuf name, ...) gets it here.
        if isinstance(error, ValueError) and os.fspath(path) in str(error):
            raise
        raise ValueError(f"{os.fspath(path)}: not a readable weight file ({type(error).__name__}: {error})") from error


def _load(path, **options):
    kind = sniff(path)
    if kind == "safetensors":
        from fastgru.io.safetensors import from_safetensors

        return from_safetensors(path, **options)
    if kind == "torch":
        from fastgru.io.torch import load_torch_file

        return load_torch_file(path, **options)
    if kind == "npz":
        from fastgru.io.npz import from_npz

        return from_npz(path, **options)
    if kind in ("keras", "h5"):
        from fastgru.io.keras import from_keras

        return from_keras(os.fspath(path), **options)
    from fastgru.io.onnx import from_onnx

    return from_onnx(os.fspath(path), **options)

