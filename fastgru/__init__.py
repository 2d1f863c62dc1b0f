"""fastgru: a fast GRU engine for the CPU (C core, Cython binding, numpy API).

    import fastgru
    gru = fastgru.GRU.from_torch(torch_gru)      # or fastgru.load("model.onnx"), GRU.from_keras(...)
    output, h_n = gru(x)                          # torch.nn.GRU's shapes and semantics
"""
from .config import show_config
from .model import GRU, GRUStream, Tape, default_num_threads
from .spec import GRUSpec

__version__ = "0.1.0"


def load(path, **options):
    """Loads a GRU from a file: torch .pt/.pth, .safetensors, .keras, .h5/.weights.h5, .onnx, .npz, or
    fastgru's own file (see fastgru.io)."""
    from .io import load as _load
    return _load(path, **options)


__all__ = ["GRU", "GRUSpec", "GRUStream", "Tape", "load", "default_num_threads", "show_config", "__version__"]
