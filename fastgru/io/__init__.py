"""Importers: each maps one framework's layout to a `GRUSpec` plus weights in PyTorch layout.

=====================  ==========================================  =====================================
source                 entry point                                 returns
=====================  ==========================================  =====================================
PyTorch                ``fastgru.io.torch.from_torch(obj)``        `fastgru.GRU`
safetensors            ``fastgru.io.safetensors.from_safetensors``  `fastgru.GRU`
Keras 3 / tf.keras 2   ``fastgru.io.keras.from_keras(obj)``        `fastgru.io.keras.KerasGRU`
ONNX                   ``fastgru.io.onnx.from_onnx(obj)``          `fastgru.io.onnx.OnnxGRU`
hand-written cells     ``fastgru.io.cells.from_cells(cells)``      `fastgru.GRU`
NumPy ``.npz``         ``fastgru.io.npz.from_npz(path)``           `fastgru.GRU`
fastgru's own file     ``fastgru.io.native.load(path)``            what was saved
any file               ``fastgru.io.load(path)``                   by content / extension
=====================  ==========================================  =====================================

Keras and ONNX results are thin wrappers around a `fastgru.GRU` (their ``.gru``): they are called like the
layer or node they came from (Keras masks, ``go_backwards``, ``return_sequences``; ONNX ``Y``/``Y_h``
shapes, ``direction="reverse"``), which a plain GRU call cannot express.

Framework packages are imported inside functions only: safetensors, ``.keras``, ``.h5`` and fastgru files
load with numpy, h5py and the standard library alone.
"""

from __future__ import annotations

import numpy as np

from fastgru.spec import GRUSpec, check_weights


class UnsupportedModelError(ValueError):
    """The source uses a feature fastgru does not implement; the message names the attribute and value."""


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


def build_gru(spec: GRUSpec, weights: dict, source: str):
    """Validates shapes (errors name ``source`` and the tensor) and builds the `fastgru.GRU`."""
    import fastgru

    return fastgru.GRU.from_spec(spec, check_weights(spec, weights, source), source=source)


def spec_dtype(*arrays) -> str:
    """float64 when the source stored float64 weights, float32 otherwise (float16/bfloat16 widen)."""
    return "float64" if any(np.asarray(a).dtype == np.float64 for a in arrays) else "float32"


from fastgru.io.load import load  # noqa: E402  (load needs the helpers above)

__all__ = ["UnsupportedModelError", "build_gru", "flip_update_gate", "load", "spec_dtype", "zrh_to_rzn"]
