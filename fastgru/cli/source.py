"""Opening the user's file for the command line: which format and framework wrote it, what the importer
for that format describes (`fastgru.io.load.describe`), and the model built from that description.

``--layer NAME`` is the importer's own selector: ``prefix=`` for torch state dicts, safetensors and
``.npz`` archives, ``layer=`` for Keras files, ``node_name=`` for ONNX files (a comma-separated list
stacks GRU nodes into one multi-layer GRU, as ``torch.onnx.export`` writes a multi-layer ``nn.GRU``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile

from fastgru.io.load import FileDescription, build, describe, sniff

# sniff's kinds, as a person names them; "framework" is what wrote the file.
FORMATS = {
    "fastgru": ("fastgru file (safetensors with a JSON description)", "fastgru"),
    "safetensors": ("safetensors state dict", "torch"),
    "torch": ("torch.save file", "torch"),
    "npz": ("NumPy .npz archive", "numpy"),
    "keras": ("Keras 3 archive (.keras)", "keras"),
    "h5": ("Keras HDF5 file", "keras"),
    "onnx": ("ONNX model", "onnx"),  # the framework is the file's producer (onnx.ModelProto.producer_name)
}
_SELECTOR = {"safetensors": "prefix", "torch": "prefix", "npz": "prefix", "keras": "layer", "h5": "layer",
             "onnx": "node_name"}
# What reading a format needs beyond numpy, for the message when it is missing.
_PACKAGES = {"torch": "torch", "onnx": "onnx", "h5py": "h5py", "safetensors": "safetensors"}


class CommandError(Exception):
    """A refused or unreadable file, a missing package, a file that cannot be written: the command prints
    the message (one line, naming the file) and exits with status 2."""


@dataclasses.dataclass
class Source:
    """The user's file as the command line sees it."""

    path: str
    kind: str  # sniff's kind, "fastgru" for fastgru's own file
    format: dict  # {"kind", "name", "framework", "framework_version", "details"}
    found: FileDescription | None = None  # None when the importer refused the file
    model: object = None  # the fastgru.GRU or fastgru.Model built from ``found``
    refused: str | None = None  # why fastgru refuses the file (the importer's message)
    layer: str | None = None


def one_line(error: BaseException, path: str) -> str:
    """An exception's message on one line, naming ``path`` (importers start their messages with it)."""
    if isinstance(error, OSError) and error.strerror:  # "[Errno 2] No such file or directory: 'x'" -> "x: No such ..."
        return f"{path}: {error.strerror}" if path else error.strerror
    text = " ".join(str(error).split()) or type(error).__name__
    return text if path in text else f"{path}: {text}"


def open_source(path, layer: str | None = None) -> Source:
    """Recognises, describes and builds the model in ``path``.

    A file whose format is not recognised, or that cannot be opened, raises `CommandError`; a file that
    the importer refuses comes back with ``refused`` set (``inspect`` reports what it could read)."""
    path = os.fspath(path)
    try:
        kind = sniff(path)
    except (OSError, ValueError) as error:
        raise CommandError(one_line(error, path)) from None
    source = Source(path, kind, {}, layer=layer)
    try:
        found = describe(path, **_selector(source, layer))
        kind = source.kind = found.kind
        source.model = build(found)
        source.found = found
    except ImportError as error:
        raise CommandError(missing_package(error, f"{path}: reading a {FORMATS[kind][0]}")) from None
    except (OSError, ValueError, TypeError, MemoryError) as error:
        # UnsupportedModelError is a ValueError; the options are the command's own, so a TypeError or
        # MemoryError comes from the file's content (a damaged header, a tensor claiming terabytes)
        source.refused = one_line(error, path)
        if layer is None and re.search(r"\b(prefix|layer|node_name)=", source.refused):
            chain = ", or --layer NAME1,NAME2 for a chain of nodes" if kind == "onnx" else ""
            source.refused += f" (on the command line: --layer NAME{chain})"
    source.format = file_format(path, kind)
    return source


def require(source: Source) -> Source:
    """``source``, or `CommandError` with the reason fastgru refuses it."""
    if source.refused is not None:
        raise CommandError(source.refused)
    return source


def missing_package(error: ImportError, doing: str) -> str:
    """"<doing> needs <package>: pip install <package>" for an ImportError of an optional package."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    package = _PACKAGES.get(name, name)
    if not package:
        return f"{doing} failed to import a package: {one_line(error, '')}"
    return f"{doing} needs {package}, which is not installed: pip install {package}"


def _selector(source: Source, layer: str | None) -> dict:
    from fastgru.io import native

    if layer is None:
        return {}
    if source.kind == "safetensors" and native.is_fastgru_file(source.path):
        raise CommandError(f"{source.path}: --layer does not apply to a fastgru file (it holds one model)")
    option = _SELECTOR[source.kind]
    if option == "node_name" and "," in layer:
        return {option: [name.strip() for name in layer.split(",") if name.strip()]}
    return {option: layer}


# ------------------------------------------------------------------------------------------ formats


def file_format(path: str, kind: str) -> dict:
    """The format and the version of the framework that wrote the file, where the file records it.
    Reads headers only; a header that cannot be read leaves ``details`` saying so."""
    name, framework = FORMATS[kind]
    out = {"kind": kind, "name": name, "framework": framework, "framework_version": None, "details": {}}
    try:
        _READERS.get(kind, lambda path, out: None)(path, out)
    except Exception as error:  # noqa: BLE001 - metadata is a courtesy; the importer judges the file
        out["details"]["unreadable"] = one_line(error, path)
    return out


def _torch_format(path: str, out: dict) -> None:
    """torch.save writes a zip archive (or, before torch 1.6 or with the legacy option, a pickle); neither
    records the torch version, only the archive's serialization version."""
    if not zipfile.is_zipfile(path):
        out["details"]["archive"] = "legacy pickle"
        return
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        out["details"]["archive"] = "zip"
        for member, key in (("version", "serialization version"), ("byteorder", "byteorder")):
            found = [n for n in names if n.endswith("/" + member)]
            if found:
                out["details"][key] = archive.read(found[0]).decode("ascii", "replace").strip()


def _safetensors_format(path: str, out: dict) -> None:
    from fastgru.io.safetensors import read_safetensors

    tensors, metadata = read_safetensors(path)
    out["details"] = {"tensors": len(tensors), "metadata": metadata or "none"}


def _fastgru_format(path: str, out: dict) -> None:
    from fastgru.io.safetensors import read_safetensors

    metadata = read_safetensors(path)[1]
    out["framework_version"] = None  # the file records its format version, not the fastgru that wrote it
    out["details"] = {"format_version": metadata.get("format_version"),
                      "holds": "a fastgru.Model or int8/learned-state GRU" if "model" in metadata else "a fastgru.GRU"}


def _npz_format(path: str, out: dict) -> None:
    with zipfile.ZipFile(path) as archive:
        out["details"]["arrays"] = len(archive.namelist())


def _keras_format(path: str, out: dict) -> None:
    with zipfile.ZipFile(path) as archive:
        if "metadata.json" in archive.namelist():
            metadata = json.loads(archive.read("metadata.json"))
            out["framework_version"] = metadata.get("keras_version")
            if "date_saved" in metadata:
                out["details"]["date saved"] = metadata["date_saved"]


def _h5_format(path: str, out: dict) -> None:
    from fastgru.io.h5 import open_h5, text

    with open_h5(path, path) as store:
        attrs = store.attrs
        version = attrs.get("keras_version")
        out["framework_version"] = text(version) if version is not None else None
        if "backend" in attrs:
            out["details"]["backend"] = text(attrs["backend"])
        if "model_config" in attrs:
            out["details"]["holds"] = "a whole model (model.save)"
        elif "layer_names" in attrs or "model_weights" in store:
            out["details"]["holds"] = "weights only (save_weights, legacy format)"
        else:
            out["details"]["holds"] = "weights only (Keras 3 .weights.h5)"


def _onnx_format(path: str, out: dict) -> None:
    import onnx

    model = onnx.load(path, load_external_data=False)
    out["framework"] = model.producer_name or "an unrecorded producer"
    out["framework_version"] = model.producer_version or None
    out["details"] = {"ir_version": model.ir_version,
                      "opset": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
                      "GRU nodes": [node.name or node.output[0] for node in model.graph.node if node.op_type == "GRU"]}


_READERS = {"torch": _torch_format, "safetensors": _safetensors_format, "fastgru": _fastgru_format,
            "npz": _npz_format, "keras": _keras_format, "h5": _h5_format, "onnx": _onnx_format}
