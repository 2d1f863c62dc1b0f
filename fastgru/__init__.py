"""fastgru: a fast GRU engine for the CPU (C core, Cython binding, numpy API).

    import fastgru
    gru = fastgru.GRU.from_torch(torch_gru)       # the bare GRU, torch.nn.GRU's shapes and semantics
    output, h_n = gru(x)
    model = fastgru.load("model.keras")           # a whole model (fastgru.Model): layers, GRUs, heads
    y = model(x)                                  # what keras_model.predict(x) returns
"""
from . import _threadpoolctl
from .config import show_config
from .model import GRU, GRUStream, Tape
from .spec import GRUSpec
from .threads import default_num_threads, get_num_threads, set_num_threads
from .whole_model import Model, ModelStream
from .io import native as _native
from .io.common import UnsupportedModelError

from ._version import __version__

# fastgru.io.native (the file format) builds objects by class name; it sits below the classes, so the
# package wires them in (any import of fastgru.io.native runs this first).
_native.register("GRU", GRU._from_portable)
_native.register("Model", Model._from_portable)


def load(path, **options):
    """Loads a model from a file: a `GRU` from torch .pt/.pth, .safetensors or .npz, a `Model` from .keras,
    .h5/.weights.h5 or .onnx, or whatever fastgru's own file holds (see fastgru.io)."""
    from .io import load as _load
    return _load(path, **options)


_threadpoolctl.install()  # threadpoolctl sees fastgru once it is imported (never imported here)

__all__ = ["GRU", "GRUSpec", "GRUStream", "Model", "ModelStream", "Tape", "UnsupportedModelError", "load",
           "default_num_threads", "get_num_threads", "set_num_threads", "show_config", "__version__"]
