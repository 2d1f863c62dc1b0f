"""Importers: each maps one framework's layout to fastgru's descriptions; `fastgru.GRU` and `fastgru.Model`
build themselves from those.

======================  ==================================  ===============================================
source                  read by                             object (constructor)
======================  ==================================  ===============================================
PyTorch, safetensors    ``fastgru.io.torch.read_torch``     `fastgru.GRU` (``GRU.from_torch``)
Keras 3 / tf.keras 2    ``fastgru.io.keras.read_keras``     `fastgru.Model` (``Model.from_keras``); the GRU
                                                            alone: ``GRU.from_keras``
ONNX                    ``fastgru.io.onnx.read_onnx``       `fastgru.Model` (``Model.from_onnx``); the GRU
                                                            alone: ``GRU.from_onnx``
hand-written cells      ``fastgru.io.cells.read_cells``     `fastgru.GRU` (``GRU.from_cells``)
NumPy ``.npz``          ``fastgru.io.npz.read_npz_gru``     `fastgru.GRU` (``fastgru.load``)
fastgru's own file      ``fastgru.io.native.loads``         what was saved
any file                ``fastgru.io.load(path)``           by content / extension
======================  ==================================  ===============================================

Layers, bottom to top (no module imports one above it; ``tests/test_layering.py`` checks the whole
package has no import cycle): the file formats (``safetensors``, ``h5``, ``keras_archive``, and
``native``, fastgru's own format), ``common`` (what importers share), one importer per framework
(``torch``, ``keras``, ``onnx``), those built on them (``cells`` for hand-written cells, ``npz`` for
archives, which uses ``torch``'s state-dict reader and ``cells``), and ``load``, which recognises a file and
dispatches.

Framework packages are imported inside functions only: safetensors, ``.keras``, ``.h5``, ``.npz`` and
fastgru files load with numpy, h5py and the standard library alone.
"""

from __future__ import annotations

from fastgru.io.common import UnsupportedModelError, flip_update_gate, spec_dtype, zrh_to_rzn
from fastgru.io.load import load

__all__ = ["UnsupportedModelError", "flip_update_gate", "load", "spec_dtype", "zrh_to_rzn"]
