"""`load(path, **options)`: recognises the file by its first bytes, then by its extension, and hands it to
the importer for that format. The top of `fastgru.io`: it builds the objects the importers describe.
`describe` stops before building (the ``fastgru inspect`` command reads files that way) and `build`
finishes the job."""

from __future__ import annotations

import contextlib
import os
import zipfile
from typing import NamedTuple

from fastgru.io.safetensors import looks_like_safetensors

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
    if looks_like_safetensors(head):
        return "safetensors"
    if extension in _EXTENSIONS:  # content not decisive (truncated, or a format without a magic number)
        return _EXTENSIONS[extension]
    if head[:1] == b"\x80":  # pickle protocol >= 2: torch's legacy (non-zip) format
        return "torch"
    if head[:1] == b"\x08":  # ModelProto field 1 (ir_version), a varint
        return "onnx"
    raise ValueError(f"{path}: unrecognised file (not torch, safetensors, .keras, .h5, .onnx or a fastgru file)")


class FileDescription(NamedTuple):
    """What `describe` found in a file, before anything is built (`build` builds it)."""

    kind: str  # "fastgru" (its own file), "safetensors" or "torch" (state dicts), "npz", "keras", "h5", "onnx"
    description: object  # a GRUDescription (state dicts, npz), else (config, arrays, source): a Model or fastgru file
    path: str


def load(path, **options):
    """Loads a model from any supported file; ``options`` go to the importer for that format.

    ===============================  ======================  ===================================  =============
    file                             read by                 useful options                       returns
    ===============================  ======================  ===================================  =============
    fastgru's own (``save``)         `native.loads`          (none)                               what was saved
    ``.safetensors`` (torch names)   `torch.read_torch_file` ``prefix``, ``batch_first``          `GRU`
    ``.pt``/``.pth`` (state dict)    `torch.read_torch_file` ``prefix``, ``batch_first``          `GRU`
    ``.npz`` (``np.savez``)          `npz.read_npz_gru`      ``prefix``, ``names``, ``gates``,    `GRU`
                                                             ``batch_first``
    ``.keras``, ``.h5``              `keras.read_keras`      ``layer``, ``keras_version``, ...    `Model`
    ``.onnx``                        `onnx.read_onnx`        ``node_name``                        `Model`
    ===============================  ======================  ===================================  =============

    torch state dicts, safetensors and ``.npz`` archives also take ``initial_state="<name>"``, the tensor
    of a learned h0. ``load(path)`` is ``build(describe(path))``.
    """
    return build(describe(path, **options))


def describe(path, **options) -> FileDescription:
    """What the file holds, as the importer for its format describes it (`FileDescription`), without
    building a model; ``options`` as for `load`. Errors as for `load`."""
    with _errors_name(path):
        return _describe(os.fspath(path), **options)


def build(found: FileDescription):
    """The `fastgru.GRU` or `fastgru.Model` that `describe` found."""
    from fastgru.model import GRU
    from fastgru.whole_model import Model

    with _errors_name(found.path):
        if found.kind == "fastgru":
            from fastgru.io import native

            return native.build(*found.description)
        if found.kind in ("torch", "safetensors", "npz"):
            return GRU._from_description(found.description)
        return Model._from_portable(*found.description)


@contextlib.contextmanager
def _errors_name(path):
    try:
        yield
    except (ImportError, MemoryError, TypeError, FileNotFoundError, PermissionError):
        raise  # a missing optional package, a bad option, no such file: not a damaged file
    except Exception as error:
        # Importers name the file in their own errors; anything else that escapes a damaged file (a
        # KeyError from h5py, a UnicodeDecodeError from a zip or protobuf name, ...) gets it here.
        if isinstance(error, ValueError) and os.fspath(path) in str(error):
            raise
        raise ValueError(f"{os.fspath(path)}: not a readable weight file ({type(error).__name__}: {error})") from error


def _describe(path: str, **options) -> FileDescription:
    kind = sniff(path)
    if kind == "safetensors":
        from fastgru.io import native

        # the header says whose file it is; the whole file is read (and its tensors decoded) once, by the reader
        if native.is_fastgru_file(path):
            if options:
                raise TypeError(f"{path}: a fastgru file holds its own description; options "
                                f"{sorted(options)} do not apply")
            return FileDescription("fastgru", (*native.read(path), path), path)
        # a state dict with torch's names (read_torch_file reads safetensors with numpy)
    if kind in ("torch", "safetensors"):
        from fastgru.io.torch import read_torch_file

        return FileDescription(kind, read_torch_file(path, **options), path)
    if kind == "npz":
        from fastgru.io.npz import read_npz_gru

        return FileDescription(kind, read_npz_gru(path, **options), path)
    if kind in ("keras", "h5"):
        from fastgru.io.keras import read_keras

        return FileDescription(kind, read_keras(path, **options), path)
    from fastgru.io.onnx import read_onnx

    return FileDescription(kind, read_onnx(path, **options), path)
