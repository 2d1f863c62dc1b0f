"""The ``.keras`` file (Keras 3): a zip archive of ``config.json`` (the model), ``metadata.json``
(``keras_version``, ...) and ``model.weights.h5`` (the variables). Read with zipfile and json alone."""

from __future__ import annotations

import io
import json
import zipfile


def read_keras_archive(path) -> tuple[dict, dict, io.BytesIO]:
    """``(config, metadata, weights)`` of a ``.keras`` file; ``weights`` is the HDF5 file in memory.
    A damaged archive raises ValueError naming the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            names = archive.namelist()
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            weights = io.BytesIO(archive.read("model.weights.h5"))
    except (KeyError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a readable .keras archive ({error})") from None
    if not isinstance(config, dict) or not isinstance(metadata, dict):
        raise ValueError(f"{path}: not a readable .keras archive (config.json or metadata.json is not a JSON object)")
    return config, metadata, weights
