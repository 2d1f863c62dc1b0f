"""What every call into the core shares: input conversion, the thread count, and each calling thread's
scratch workspace and worker pools.

`fastgru.model` (forward, streams) and `fastgru.backward` both use these; they live here so that neither
module needs the other's internals.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from . import _core

# Workspaces up to this size are kept per thread for the next call; larger ones are freed after use.
_CACHED_WORKSPACE_LIMIT = 64 << 20
_thread_state = threading.local()


@functools.lru_cache(maxsize=1)
def default_num_threads() -> int:
    """The physical cores this process may run on (hyperthreads of one core count once: two busy
    workers on one core only compete for its FMA units and its cache bandwidth). Read once."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/core_id") as core, \
                    open(f"/sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id") as package:
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:  # no topology exposed: count logical CPUs
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


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


def _check_num_threads(num_threads) -> int:
    if num_threads is None:
        return default_num_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
    return int(num_threads)


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
