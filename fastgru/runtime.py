"""What every call into the core shares: input conversion and each calling thread's scratch workspace and
worker pools (how many threads a call uses is `fastgru.threads`).

`fastgru.model` (forward, streams) and `fastgru.backward` both use these; they live here so that neither
module needs the other's internals.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _core

# Workspaces up to this size are kept per thread for the next call; larger ones are freed after use.
_CACHED_WORKSPACE_LIMIT = 64 << 20
_thread_state = threading.local()


def _thread_pool(num_threads: int):
    """This thread's worker pool of that size (None for one thread: the caller computes alone)."""
    if num_threads == 1:
        return None
    pools = getattr(_thread_state, "pools", None)
    if pools is None:
        pools = _thread_state.pools = {}
    if num_threads not in pools:
        pools[num_threads] = _core.Pool(num_threads)
    return pools[num_threads]


def _thread_workspace(nbytes: int):
    if nbytes > _CACHED_WORKSPACE_LIMIT:
        return _core.new_workspace()
    workspace = getattr(_thread_state, "workspace", None)
    if workspace is None:
        workspace = _thread_state.workspace = _core.new_workspace()
    return workspace


def _c_array(array: np.ndarray, dtype) -> np.ndarray:
    """`array` as C-ordered, aligned, native-byte-order `dtype`, copying only when needed (numpy's
    ascontiguousarray keeps an unaligned array as it is, and the core reads its elements directly)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    return array if array.flags.aligned else array.copy()


def _as_real_array(value, name: str, dtype: np.dtype) -> np.ndarray:
    """`value` as a C-ordered array of `dtype`; a copy only when needed. Rejects non-real input."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    if array.dtype.kind not in "fiu":  # float, signed or unsigned integer (not bool, complex, object)
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return _c_array(array, dtype)
