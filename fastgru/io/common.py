"""What every importer shares: the error for unsupported features, gate reordering, the update-convention
flip, and how a source's dtype maps to the spec's. Nothing here builds a model: importers return specs,
weights and layer descriptions, and `fastgru.GRU` / `fastgru.Model` build themselves from those."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastgru.spec import GRUSpec


class UnsupportedModelError(ValueError):
    """The source uses a feature fastgru does not implement; the message names the attribute and value."""


class GRUDescription(NamedTuple):
    """What an importer finds for a bare GRU; `fastgru.GRU` builds itself from it."""

    spec: GRUSpec
    weights: dict  # PyTorch's names and layout (fastgru.spec)
    source: str  # what errors name: the file, or the kind of object
    initial_state: np.ndarray | None = None  # a learned h0 as found (GRU.with_initial_state checks its shape)


def flip_update_gate(spec: GRUSpec, weights: dict) -> dict:
    """Turns the textbook convention ``h' = (1 - z) * h + z * n`` into fastgru's ``h' = z * h + (1 - z) * n``.

    ``1 - sigmoid(a) = sigmoid(-a)`` (and the same for both hard sigmoids, which are symmetric about 0.5,
    and for ``clip``), so negating every term of the z pre-activation (rows H:2H of the weights and biases
    in r, z, n order) gives the same model. Returns new arrays; the input is not modified.
    """
    hidden = spec.hidden_size
    flipped = {name: np.array(array, copy=True) for name, array in weights.items()}
    for name in spec.weight_shapes():
        if name in flipped:
            flipped[name][hidden : 2 * hidden] *= -1
    return flipped


def zrh_to_rzn(array: np.ndarray, axis: int = 0) -> np.ndarray:
    """Reorders the three gate blocks along ``axis`` from Keras/ONNX (z, r, h) to PyTorch (r, z, n)."""
    z, r, n = np.split(np.asarray(array), 3, axis=axis)
    return np.concatenate([r, z, n], axis=axis)


def spec_dtype(*arrays) -> str:
    """float64 when the source stored float64 weights, float32 otherwise (float16/bfloat16 widen)."""
    return "float64" if any(np.asarray(a).dtype == np.float64 for a in arrays) else "float32"


def replaced(module: str, name: str, replacements: dict[str, str]) -> Exception:
    """What a module's ``__getattr__`` raises for ``name``: for a name it no longer has, an ImportError
    saying what replaced it (an ImportError, not an AttributeError, because ``from module import name``
    turns an AttributeError into a bare "cannot import name" and drops the directions); for any other
    name, the usual AttributeError."""
    if name in replacements:
        return ImportError(f"{module}.{name} was replaced: use {replacements[name]}", name=name, path=module)
    return AttributeError(f"module {module!r} has no attribute {name!r}")
