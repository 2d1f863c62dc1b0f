"""The thread budget: how many threads a call uses when it is not told.

A call runs on the first of these that is set, read when the call runs:

1. ``num_threads=`` passed to the call: ``gru(x, num_threads=n)``, ``gru.stream(b, num_threads=n)``;
2. ``num_threads=`` the model was built with (``GRU(..., num_threads=n)``, ``from_spec``, ``from_arrays``,
   or ``gru.num_threads = n`` later): the model's own choice, which no setting below overrides. It
   belongs to that Python object only: it is not pickled or saved, so a model sent to another process
   follows that process's budget;
3. the process-wide setting, `set_num_threads` (``threadpoolctl.threadpool_limits`` sets it too);
4. the environment variable ``OMP_NUM_THREADS``, which Dask, Ray and Spark set in their workers to size
   them, read at every call (see `omp_num_threads` for the values it accepts);
5. the physical cores this process may run on (`default_num_threads`).

So a model built without ``num_threads`` follows ``set_num_threads``, ``threadpool_limits`` and
``OMP_NUM_THREADS`` whenever they change, also after it was built. A stream settles its count when it is
created: its worker pool is started then.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np

#: The largest pool the C core starts (fg_pool_create).
MAX_THREADS = 1024

_process_setting: int | None = None
_omp_parsed: dict[str, int | None] = {}


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


def check_num_threads(num_threads, name: str = "num_threads") -> int:
    """``num_threads`` as an int, or ValueError naming ``name`` unless it is an integer >= 1 (not bool)."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"{name} must be a positive integer, got {num_threads!r}")
    return int(num_threads)


def set_num_threads(num_threads: int | None) -> None:
    """Sets how many threads calls use in this process when neither the call nor the model says
    (``None`` removes the setting: ``OMP_NUM_THREADS``, then the physical cores, apply again).

    Takes effect at the next call, in every thread, for every model built without ``num_threads``.
    ``threadpoolctl.threadpool_limits`` calls this (fastgru registers itself with threadpoolctl), and
    restores on exit the number that `get_num_threads` gave on entry.
    """
    global _process_setting
    if num_threads is not None:
        num_threads = check_num_threads(num_threads)
        if num_threads > MAX_THREADS:
            raise ValueError(f"num_threads must be at most {MAX_THREADS} (the largest thread pool), got {num_threads}")
    _process_setting = num_threads


def get_num_threads() -> int:
    """How many threads a call uses now when neither the call nor its model names a number: the
    `set_num_threads` setting, else ``OMP_NUM_THREADS``, else the physical cores (`default_num_threads`)."""
    return process_budget()[0]


def process_budget() -> tuple[int, str]:
    """`get_num_threads`'s count and the rule that gave it: ``"set_num_threads"``, ``"OMP_NUM_THREADS"``
    or ``"physical cores"`` (``fastgru.show_config`` reports both)."""
    if _process_setting is not None:
        return _process_setting, "set_num_threads"
    from_environment = omp_num_threads()
    if from_environment is not None:
        return from_environment, "OMP_NUM_THREADS"
    return default_num_threads(), "physical cores"


def resolve_num_threads(call: int | None = None, model: int | None = None) -> int:
    """The threads of a call given its own ``num_threads`` and its model's (either None); checks ``call``."""
    if call is not None:
        return check_num_threads(call)
    if model is not None:
        return model
    return get_num_threads()


def omp_num_threads() -> int | None:
    """``OMP_NUM_THREADS`` as fastgru reads it, or None when unset, empty or invalid.

    As in OpenMP, the value may be a comma-separated list (one number per nesting level) and fastgru,
    which nests no parallel region, takes the first; spaces around numbers are ignored. A value that is
    not such a list of integers 1..1024 (``"0"``, ``"-2"``, ``"abc"``, ``"2.5"``, ``"4,"``, ``"5000"``) is
    ignored with a `RuntimeWarning` naming it, once per value, as libgomp ignores it with a message:
    fastgru then uses the physical cores. Never raises: a bad variable must not break every call.
    """
    raw = os.environ.get("OMP_NUM_THREADS")
    if raw is None:
        return None
    if raw not in _omp_parsed:
        _omp_parsed[raw] = _parse_omp_num_threads(raw)
    return _omp_parsed[raw]


def _parse_omp_num_threads(raw: str) -> int | None:
    if not raw.strip():
        return None
    entries = [entry.strip() for entry in raw.split(",")]
    if all(entry.isascii() and entry.isdigit() for entry in entries):
        first = int(entries[0])
        if 1 <= first <= MAX_THREADS and all(int(entry) >= 1 for entry in entries):
            return first
    warnings.warn(f"OMP_NUM_THREADS={raw!r} is not a positive integer at most {MAX_THREADS} (or a comma-separated "
                  f"list of positive integers, the first at most {MAX_THREADS}); fastgru ignores it and uses the "
                  f"{default_num_threads()} physical cores", RuntimeWarning)
    return None
