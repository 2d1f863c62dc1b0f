"""fastgru.show_config(): what fastgru runs on this machine and why, like ``numpy.show_config()``.

Everything here is read from the C core (``fg_cpu_info``, src_c/fastgru.h: what it read from cpuid and
decided once per process) and from the binding's kernel-table switch (``FASTGRU_KERNELS``,
``fastgru._core.set_backend``); the BLAS of the backward pass is scipy's, described by threadpoolctl
where it is installed, else by ``scipy.show_config``. Nothing is timed here: the calibration figures
are the ones the core measured when it chose its table (docs/kernels.md).
"""

from __future__ import annotations

import os

from . import _core, threads
from ._version import __version__

_MODES = ("stdout", "dicts")


def _size(count: int) -> str:
    if count <= 0:
        return "none"
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift and count % (1 << shift) == 0:
            return f"{count >> shift} {unit}"
    return f"{count} bytes"


# Each table's int8 panel product (docs/int8.md, "The kernel layout"), as src_c/kernels_*.c build them.
_INT8_PRODUCTS = {
    "generic": "portable integer loops",
    "avx2": "vpsignb + vpmaddubsw + vpmaddwd; narrow models (weight codes within +-64, GRU.int8_narrow): "
            "vpmaddubsw + vpmaddwd, no sign",
    "avx512vl_vnni": "vpdpbusd, 256-bit; 7- and 8-bit weights alike",
    "avx512_vnni": "vpdpbusd, 512-bit; 7- and 8-bit weights alike",
}
_INT8_PRODUCTS["avx512vl"] = _INT8_PRODUCTS["avx512"] = _INT8_PRODUCTS["avx2"]


def _kernel_table(cpu: dict) -> dict:
    running, how = _core.kernel_table()
    automatic = cpu["table"]
    section = {
        "running": running if running is not None else f"none: {how}",
        "chosen by": how if running is not None else "FASTGRU_KERNELS (invalid: every call raises the error above)",
        "automatic choice": automatic,
        "why the automatic choice": cpu["width reason"],
    }
    if cpu["fma256 gflops"] > 0:
        ratio = cpu["fma512 gflops"] / cpu["fma256 gflops"]
        section["calibration"] = {"256-bit FMA GFLOP/s": round(cpu["fma256 gflops"], 1),
                                  "512-bit FMA GFLOP/s": round(cpu["fma512 gflops"], 1),
                                  "ratio": round(ratio, 2), "threshold": 1.5}
    else:
        section["calibration"] = "not run: cpuid settles the width on this CPU"
    if running is not None:
        section["int8 products"] = _INT8_PRODUCTS[running]
    section["tables this CPU runs"] = _core.supported_isas()
    section["all tables"] = _core.kernel_tables()
    section[_core.KERNELS_VARIABLE] = os.environ.get(_core.KERNELS_VARIABLE)
    return section


def _blocking(cpu: dict, table: str | None) -> dict:
    wide = table in ("avx512", "avx512_vnni")
    return {
        "input projection chunk": f"{_size(cpu['chunk bytes'])} of gates_x (four L2s, 1-16 MiB)",
        "panel rows per pass (K block)": f"{cpu['k block']} (a multi-row product whose panel would not fit half "
                                         "the L2 takes it in blocks of this many rows)",
        "batch rows per product tile": 4 if table in ("generic", "avx2") else 8,
        "unit blocks per product": "2 adjacent 8-unit blocks (512-bit vectors)" if wide else "1 block of 8 units",
        "thread split": "contiguous ranges of pairs of unit blocks, per step",
    }


def _threads() -> dict:
    """The thread count a call uses when neither it nor its model names one, and which rule of the
    budget (fastgru/threads.py) gave it."""
    count, rule = threads.process_budget()
    source = {"set_num_threads": "fastgru.set_num_threads (or threadpoolctl.threadpool_limits)",
              "OMP_NUM_THREADS": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')!r}",
              "physical cores": "the physical cores of this process's affinity mask"}[rule]
    return {"default": count, "from": source, "physical cores": threads.default_num_threads()}


def _blas() -> dict:
    """The BLAS the backward pass calls (scipy's): threadpoolctl's description where it is installed,
    else scipy's build configuration."""
    try:
        import scipy.linalg  # noqa: F401 - loads the BLAS, so threadpoolctl sees it
    except ImportError as exc:
        return {"used by": "the backward pass (scipy.linalg.cython_blas)", "status": f"scipy unavailable: {exc}"}
    section: dict = {"used by": "the backward pass (scipy.linalg.cython_blas)"}
    try:
        import threadpoolctl
    except ImportError:
        import scipy

        section["source"] = "scipy.show_config (threadpoolctl is not installed)"
        try:
            blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
            section["library"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")
                                  if blas.get(k) is not None}
        except Exception as exc:  # noqa: BLE001 - a scipy without this report: say so
            section["library"] = f"unknown ({type(exc).__name__}: {exc})"
        return section
    section["source"] = "threadpoolctl"
    section["libraries"] = [
        {k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
        for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]
    return section


_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def _memory() -> dict:
    """Whether models' weights can be on transparent huge pages, and the kernel's setting for them."""
    try:
        with open(_THP_SETTING) as file:
            setting = file.read().strip()
    except OSError:
        setting = "not available (no transparent huge pages on this system)"
    return {"huge pages": f"models of {_size(_core.HUGE_PAGE_BYTES)} and more are advised for them (madvise)",
            "transparent huge pages": setting}


def config() -> dict:
    """show_config's dict (mode="dicts")."""
    cpu = _core.cpu_info()
    running, _ = _core.kernel_table()
    return {
        "fastgru": {"version": __version__, "location": os.path.dirname(os.path.abspath(__file__))},
        "cpu": {"vendor": cpu["vendor"] or "unknown", "model name": cpu["model name"] or "unknown",
                "family": cpu["family"], "model": cpu["model"], "stepping": cpu["stepping"],
                "flags": cpu["features"], "flags fastgru looks at": cpu["feature names"]},
        "kernel table": _kernel_table(cpu),
        "caches": {"L1d": _size(cpu["l1d bytes"]), "L2": _size(cpu["l2 bytes"]), "L3": _size(cpu["l3 bytes"]),
                   "source": cpu["cache source"]},
        "blocking": _blocking(cpu, running),
        "memory": _memory(),
        "threads": _threads(),
        "blas": _blas(),
    }


def _lines(value, depth: int = 0) -> list[str]:
    pad = "  " * depth
    out = []
    for key, item in value.items():
        if isinstance(item, dict):
            out.append(f"{pad}{key}:")
            out += _lines(item, depth + 1)
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            out.append(f"{pad}{key}:")
            for entry in item:
                out.append(f"{pad}  - " + ", ".join(f"{k}: {v}" for k, v in entry.items()))
        elif isinstance(item, list):
            out.append(f"{pad}{key}: {', '.join(map(str, item)) if item else '(none)'}")
        else:
            out.append(f"{pad}{key}: {item}")
    return out


def show_config(mode: str = "stdout") -> dict | None:
    """Shows what fastgru runs on this machine and why: the CPU (vendor, model name, family, model and
    stepping, the feature flags fastgru looks at), the kernel table running and how it was chosen (cpuid,
    or the calibration's FMA figures where cpuid cannot tell; FASTGRU_KERNELS or set_backend when
    forced), the cache sizes read and the blocking derived from them, whether models' weights may sit on
    transparent huge pages, the default thread count and the BLAS the backward pass uses.

    ``mode="stdout"`` prints it, ``mode="dicts"`` returns it as a dict of dicts (as
    ``numpy.show_config`` does). Any other mode raises ``ValueError``."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in _MODES)}, got {mode!r}")
    result = config()
    if mode == "dicts":
        return result
    print("\n".join(_lines(result)))
    return None
