"""The machine's limits, measured in the same process (and so the same run) as the engines.

- **FMA peak per vector width** (``fma_peak.c``): a register-only loop of independent FMA chains for
  128-, 256- and 512-bit float32 vectors, each run only where the CPU has the width, on 1 thread and
  on t threads pinned one per core. GFLOP/s = 2 x lanes x FMAs / time. The widest width's figure at
  the worker's thread count is the compute limit; 512/256 tells whether 512-bit FMAs run at full
  width (about 2, e.g. Zen 5, Intel server cores) or as two 256-bit halves (about 1, e.g. Zen 4).
- **Read bandwidth per cache level** (``read_kernel.c``): a read loop (256-bit, and 512-bit where the
  CPU has AVX-512) over a buffer resident in L1, L2 or L3 (sizes from the CPU's cache sizes:
  roofline.level_probe_bytes), on 1 and t pinned threads, each thread reading its own slice; DRAM
  too when a working set of the run is larger than the L3. The limit of a batch-1 row is the level
  its weights live in (roofline.cache_level).
- **Read of a W_hh-sized buffer** (3H*H*4 bytes) per hidden size of the run, with the same loops,
  OpenBLAS ``sgemv`` of (3H, H) x (H,) (exactly a batch-1 step's product, Python overhead included)
  and ``numpy.add.reduce``; with the level it lives in at 1 and t threads. Without a C compiler,
  the best of these stands in for the level's figure.
- **sgemm** (``scipy.linalg.blas.sgemm``, the OpenBLAS fastgru's core is handed) on square float32
  matrices at the worker's BLAS thread count: a reference figure for one library's GEMM, not a limit.

Each figure is the best sample (load from other processes only ever lowers a rate, so the best
sample is the closest to the machine's and the strictest yardstick) with the median beside it. For
per-core resources (FMA units, L1, L2), a t-thread limit is at least min(t, cores) x the 1-thread
one measured in the same worker: on a shared machine a second core is often busy for part of the
run, and a limit that the engines can exceed is no limit. The L3 and DRAM are shared, so their
t-thread figures are taken as measured, but never below the 1-thread figure (t threads can always
do what one does).
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import compiled  # noqa: E402
import roofline  # noqa: E402

FMA_WIDTHS = (128, 256, 512)
READ_WIDTHS = (256, 512)
_P = ctypes.POINTER
DOT_I8_WIDTHS = (256, 512)
_LOOP_ARGS = [ctypes.c_int, ctypes.c_long, ctypes.c_int, _P(ctypes.c_int), _P(ctypes.c_double), _P(ctypes.c_double),
              _P(ctypes.c_double)]
_FMA_SIGNATURES = {
    "bench_fma_supported": ([ctypes.c_int], ctypes.c_int),
    "bench_fma": (_LOOP_ARGS, ctypes.c_int),
    "bench_dot_i8_supported": ([ctypes.c_int], ctypes.c_int),
    "bench_dot_i8": (_LOOP_ARGS, ctypes.c_int),
    "bench_madd_i8_supported": ([ctypes.c_int], ctypes.c_int),
    "bench_madd_i8": (_LOOP_ARGS, ctypes.c_int),
}
_READ_SIGNATURES = {
    "bench_read_supported": ([ctypes.c_int], ctypes.c_int),
    "bench_read": ([ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long, ctypes.c_int, _P(ctypes.c_int),
                    _P(ctypes.c_double), _P(ctypes.c_double), _P(ctypes.c_double)], ctypes.c_int),
}
_WIDTH_FLAG = {128: "fma", 256: "avx/fma", 512: "avx512f"}
_DOT_I8_FLAG = {256: "avx512_vnni/avx512vl", 512: "avx512_vnni"}
_MADD_I8_FLAG = {256: "avx2"}


def _calibrate(run, target_s: float) -> int:
    """Repetitions for which ``run(reps) -> (work, seconds)`` lasts about ``target_s``. Takes the
    fastest of three calls per step: a call that lost its CPU for a time slice (a busy machine) would
    otherwise pass for a long one and leave every sample too short."""
    reps = 1
    while True:
        seconds = min(run(reps)[1] for _ in range(3))
        if seconds >= target_s / 8 or reps >= 1 << 40:
            break
        reps *= 8 if seconds < target_s / 64 else 2
    return max(1, int(reps * target_s / max(seconds, 1e-9)))


def _interleaved(runs: dict, target_s: float, samples: int, calibration: dict | None = None) -> dict:
    """{key: {"best": work/s, "median": work/s}} (work in units of 1e9) of every ``run(reps) ->
    (work, seconds)`` in ``runs``, sampled in rounds that take one sample of each in an order rotated
    from round to round: a burst of load from other processes then lands on all of them alike instead of
    on whichever was being measured. (A register or read loop leaves nothing behind for the next, so a
    rotation will do here; the engines' orders are drawn afresh each round, fastgru/benchmark/timing.py.)

    ``calibration[key]``, where given, is a one-thread run of one thread's share of the work, used to
    choose the repetitions: on a busy machine a multi-threaded call waits for its slowest thread's CPU,
    and calibrating on that wait would leave samples with almost no work in them."""
    if not runs:  # nothing this CPU runs (an AVX2-only CPU's vpdpbusd loops): no rounds to rotate
        return {}
    calibration = calibration or {}
    reps = {key: _calibrate(calibration.get(key, run), target_s) for key, run in runs.items()}
    keys = list(runs)
    rates: dict = {key: [] for key in keys}
    for r in range(samples):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            work, seconds = runs[key](reps[key])
            rates[key].append(work / seconds / 1e9)
    return {key: {"best": float(max(v)), "median": float(np.median(v))} for key, v in rates.items()}


def _aligned_floats(count: int) -> np.ndarray:
    """A float32 array whose data starts on a 64-byte line (an unaligned 512-bit load touches two
    lines, which would halve an L1 read rate), filled with ones."""
    raw = np.empty(count + 16, dtype=np.float32)
    offset = (-raw.ctypes.data % 64) // 4
    out = raw[offset:offset + count]
    out[:] = 1.0
    return out


def _thread_counts(threads: int) -> list[int]:
    return sorted({1, threads})


def _per_core_limit(best: dict[str, float], threads: int, cores: int) -> tuple[float, str]:
    """The t-thread limit of a per-core resource: max(measured at t, min(t, cores) x measured at 1)."""
    measured = best[str(threads)]
    scale = min(threads, cores)
    if threads == 1 or scale * best["1"] <= measured:
        return measured, "measured"
    return scale * best["1"], f"{scale} x the 1-thread figure (measured at {threads} threads: {measured:.1f})"


def _loop_run(function, width: int, threads: int, cpu_array):
    def run(reps):
        work, seconds, sink = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        status = function(width, reps, threads, cpu_array, ctypes.byref(work), ctypes.byref(seconds),
                          ctypes.byref(sink))
        if status != 0:
            raise RuntimeError(f"{function.__name__}({width}, threads={threads}) returned {status}")
        return work.value, seconds.value
    return run


def _read_run(lib, width: int, buffer: np.ndarray, threads: int, cpu_array):
    def run(reps):
        nbytes, seconds, sink = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        status = lib.bench_read(width, buffer.ctypes.data, buffer.size, reps, threads, cpu_array,
                                ctypes.byref(nbytes), ctypes.byref(seconds), ctypes.byref(sink))
        if status != 0:
            raise RuntimeError(f"bench_read({width}, {buffer.nbytes} B, threads={threads}) returned {status}")
        return nbytes.value, seconds.value
    return run


def _loop_peaks(function: str, loop: str, widths: tuple, flags: dict, none: str, threads: int, cpus: list[int],
                cores: int, samples: int, target_s: float) -> dict:
    """{"widths": {width: {"by_threads": {t: {"best_gflops", "median_gflops"}}} or {"not_measured"}}, ...}
    of one register-only loop of fma_peak.c (``function``, described as ``loop``) at every width this CPU
    runs, interleaved; "widest", its t-thread figure as "peak_gflops" (per-core: _per_core_limit) and
    "peak_what". Without a compiler, or with no width this CPU runs (``none`` says why), "not_measured"."""
    lib = compiled.load("fma_peak", _FMA_SIGNATURES)
    if isinstance(lib, str):
        return {"not_measured": lib, "peak_gflops": None}
    cpu_array = (ctypes.c_int * len(cpus))(*cpus)
    out: dict = {"widths": {}, "peak_gflops": None}
    runs, calibration = {}, {}
    for width in widths:
        if not getattr(lib, function + "_supported")(width):
            out["widths"][str(width)] = {"not_measured": f"this CPU lacks {flags[width]}"}
            continue
        for t in _thread_counts(threads):
            runs[width, t] = _loop_run(getattr(lib, function), width, t, cpu_array)
            calibration[width, t] = _loop_run(getattr(lib, function), width, 1, cpu_array)  # reps per thread
    for (width, t), rate in _interleaved(runs, target_s, samples, calibration).items():
        entry = out["widths"].setdefault(str(width), {"by_threads": {}})
        entry["by_threads"][str(t)] = {"best_gflops": rate["best"], "median_gflops": rate["median"]}
    out["widths"] = {str(w): out["widths"][str(w)] for w in widths}
    measured = [w for w in widths if "by_threads" in out["widths"][str(w)]]
    if not measured:
        out["not_measured"] = none
        return out
    widest = max(measured)
    best = {t: v["best_gflops"] for t, v in out["widths"][str(widest)]["by_threads"].items()}
    out["widest"] = widest
    out["peak_gflops"], how = _per_core_limit(best, threads, cores)
    out["peak_what"] = f"{widest}-bit {loop}, {threads} pinned thread(s), best sample ({how})"
    return out


def fma_peaks(threads: int, cpus: list[int], cores: int, samples: int, target_s: float) -> dict:
    out = _loop_peaks("bench_fma", "FMA loop", FMA_WIDTHS, _WIDTH_FLAG, "this CPU has no FMA", threads, cpus, cores,
                      samples, target_s)
    if "widest" not in out:
        return out
    measured = [w for w in FMA_WIDTHS if "by_threads" in out["widths"][str(w)]]
    if 512 in measured and 256 in measured:
        # at 1 thread as measured; at t threads between the per-core limits of the two widths
        by = {w: {t: v["best_gflops"] for t, v in out["widths"][str(w)]["by_threads"].items()} for w in (256, 512)}
        out["ratio_512_256"] = {t: (by[512][t] / by[256][t] if t == "1" else
                                    _per_core_limit(by[512], int(t), cores)[0] / _per_core_limit(by[256], int(t), cores)[0])
                                for t in by[512]}
    return out


def int8_peaks(threads: int, cpus: list[int], cores: int, samples: int, target_s: float) -> dict:
    """The int8 dot-product peak (GOP/s counted as 2 per byte product), the compute limit of the int8
    engines, from the loop of the instructions fastgru's int8 products run on this CPU: vpdpbusd chains
    per width where it has AVX-512 VNNI, else vpmaddubsw + vpmaddwd (the AVX2 table's). "loop" names
    the one measured; "not_measured" where neither runs."""
    out = _loop_peaks("bench_dot_i8", "vpdpbusd loop", DOT_I8_WIDTHS, _DOT_I8_FLAG, "this CPU has no AVX-512 VNNI",
                      threads, cpus, cores, samples, target_s)
    if "widths" not in out:  # no compiler: neither loop can run
        return out
    if "widest" in out:
        out["loop"] = "vpdpbusd"
        return out
    avx2 = _loop_peaks("bench_madd_i8", "vpmaddubsw + vpmaddwd loop", (256,), _MADD_I8_FLAG,
                       "this CPU has neither AVX-512 VNNI nor AVX2", threads, cpus, cores, samples, target_s)
    avx2["loop"] = "vpmaddubsw"
    return avx2


def _read_rates(lib, buffers: dict, cpus: list[int], samples: int, target_s: float) -> dict:
    """{name: {"<width>": {"by_threads": {"<t>": {best_gbs, median_gbs}}} or {"not_measured": why}}} of the
    compiled read loops over ``buffers`` ({name: {t: buffer read by t threads}}), all interleaved."""
    cpu_array = (ctypes.c_int * len(cpus))(*cpus)
    out: dict = {name: {} for name in buffers}
    runs, calibration = {}, {}
    for width in READ_WIDTHS:
        if not lib.bench_read_supported(width):
            for name in buffers:
                out[name][str(width)] = {"not_measured": f"this CPU lacks {_WIDTH_FLAG[width]}"}
            continue
        for name, by_threads in buffers.items():
            for t, buffer in by_threads.items():
                if buffer.size // t < 128:  # read_kernel.c's block: a smaller slice is refused
                    out[name][str(width)] = {"not_measured": f"{buffer.nbytes} B is under one block per thread"}
                else:
                    runs[name, width, t] = _read_run(lib, width, buffer, t, cpu_array)
                    # one thread reading one thread's slice: the reps of each thread at t threads
                    calibration[name, width, t] = _read_run(lib, width, buffer[:buffer.size // t], 1, cpu_array)
    for (name, width, t), rate in _interleaved(runs, target_s, samples, calibration).items():
        if "not_measured" in out[name].get(str(width), {}):
            continue
        entry = out[name].setdefault(str(width), {"by_threads": {}})
        entry["by_threads"][str(t)] = {"best_gbs": rate["best"], "median_gbs": rate["median"]}
    return out


def level_bandwidths(threads: int, cpus: list[int], cores: int, caches: dict, need_dram: bool,
                     samples: int, target_s: float) -> dict:
    lib = compiled.load("read_kernel", _READ_SIGNATURES)
    out: dict = {}
    buffers: dict = {}
    threads_list = _thread_counts(threads)
    for level, total in roofline.level_probe_bytes(caches, threads).items():
        if isinstance(lib, str):
            out[level] = {"not_measured": lib}
        elif isinstance(total, str):
            out[level] = {"not_measured": total}
        elif level == "DRAM" and not need_dram:
            out[level] = {"not_measured": "no working set of this run is larger than the L3"}
        else:
            # every thread count reads the same bytes per thread
            out[level] = {"bytes_per_thread": total // threads}
            buffers[level] = {t: _aligned_floats(total // threads * t // 4) for t in threads_list}
    if not buffers:
        return out
    rates = _read_rates(lib, buffers, cpus, samples, target_s)
    for level in buffers:
        entry = out[level]
        entry["widths"] = rates[level]
        measured = [v for v in rates[level].values() if "by_threads" in v]
        if not measured:
            entry.pop("widths")
            entry["not_measured"] = "; ".join(v["not_measured"] for v in rates[level].values())
            continue
        best = {str(t): max(v["by_threads"][str(t)]["best_gbs"] for v in measured) for t in threads_list}
        if level in ("L1", "L2"):
            entry["limit_gbs"], how = _per_core_limit(best, threads, cores)
        elif threads == 1 or best[str(threads)] >= best["1"]:
            entry["limit_gbs"], how = best[str(threads)], "measured (a shared level: not scaled)"
        else:  # t threads can always do what one does: the limit never falls with more threads
            entry["limit_gbs"] = best["1"]
            how = f"the 1-thread figure (measured at {threads} threads: {best[str(threads)]:.1f}; a shared level)"
        widths_run = [w for w, v in rates[level].items() if "by_threads" in v]
        entry["limit_what"] = (f"best of the {'/'.join(widths_run)}-bit read loops, "
                               f"{entry['bytes_per_thread'] / 2**20:.2f} MiB per thread, {threads} pinned thread(s) ({how})")
    return out


def whh_read(hidden: int, threads: int, cpus: list[int], caches: dict, samples: int, target_s: float,
             min_sample_s: float, bytes_per_weight: int = 4) -> dict:
    """Read GB/s of a W_hh-sized buffer (3H*H weights of ``bytes_per_weight`` bytes: 4 for float32, 1
    for int8) by every available method, and its level. OpenBLAS's sgemv reads float32 W_hh only."""
    from scipy.linalg import blas

    nbytes = 3 * hidden * hidden * bytes_per_weight
    levels = {str(t): roofline.cache_level(nbytes, t, caches) for t in _thread_counts(threads)}
    out: dict = {"hidden": hidden, "bytes": nbytes, "bytes_per_weight": bytes_per_weight, "levels": levels,
                 "fits_l2": {t: level in ("L1", "L2") for t, level in levels.items()}, "methods": {}}
    lib = compiled.load("read_kernel", _READ_SIGNATURES)
    flat = _aligned_floats(nbytes // 4)
    if isinstance(lib, str):
        out["methods"]["c-read"] = {"not_measured": lib}
    else:
        rates = _read_rates(lib, {"whh": {t: flat for t in _thread_counts(threads)}}, cpus, samples, target_s)
        for width, value in rates["whh"].items():
            if "by_threads" not in value:
                out["methods"][f"c-read {width}-bit"] = value
                continue
            for t, rate in value["by_threads"].items():
                out["methods"][f"c-read {width}-bit x{t}"] = {
                    "what": f"compiled {width}-bit read loop, {t} pinned thread(s)", "threads": int(t),
                    "median_gbs": rate["median_gbs"], "best_gbs": rate["best_gbs"]}

    gb = nbytes / 1e9
    if bytes_per_weight == 4:
        weight_f = flat.reshape(3 * hidden, hidden).T  # Fortran-ordered (H, 3H) view: no copy in sgemv
        h = np.ones(hidden, dtype=np.float32)
        median, best = _python_rate(lambda: blas.sgemv(1.0, weight_f, h, trans=1), gb, min_sample_s, samples)
        out["methods"]["sgemv"] = {"what": f"OpenBLAS sgemv (3H,H)x(H), {threads} BLAS thread(s), "
                                           "Python overhead included", "threads": threads,
                                   "median_gbs": median, "best_gbs": best}
    median, best = _python_rate(lambda: np.add.reduce(flat), gb, min_sample_s, samples)
    out["methods"]["numpy-sum"] = {"what": "numpy.add.reduce float32, 1 thread, Python overhead included",
                                   "threads": 1, "median_gbs": median, "best_gbs": best}
    # The best figure at the worker's thread count (or fewer): the stand-in for a level not measured.
    usable = {k: v for k, v in out["methods"].items() if "best_gbs" in v and v["threads"] <= threads}
    best_method = max(usable, key=lambda k: usable[k]["best_gbs"])
    out["best_gbs"], out["best_method"] = usable[best_method]["best_gbs"], best_method
    return out


def _python_rate(run_once, work_per_call: float, min_sample_s: float, samples: int) -> tuple[float, float]:
    """(median, best) of work/second over ``samples`` timed batches of ``run_once`` calls."""
    run_once()
    start = time.perf_counter()
    run_once()
    per_call = max(time.perf_counter() - start, 1e-9)
    calls = max(1, int(min_sample_s / per_call))
    rates = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(calls):
            run_once()
        rates.append(work_per_call * calls / (time.perf_counter() - start))
    return float(np.median(rates)), float(max(rates))


def sgemm_rate(threads: int, size: int, samples: int) -> dict:
    from scipy.linalg import blas

    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((size, size), dtype=np.float32))
    b = np.asfortranarray(rng.standard_normal((size, size), dtype=np.float32))
    c = np.zeros((size, size), dtype=np.float32, order="F")

    def once():
        blas.sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)

    median, best = _python_rate(once, 2.0 * size ** 3 / 1e9, 0.0, samples)
    return {"what": f"scipy.linalg.blas.sgemm {size}x{size}x{size} float32, {threads} BLAS thread(s)",
            "threads": threads, "size": size, "median_gflops": median, "best_gflops": best}


def _sampling(quick: bool) -> tuple[int, float]:
    """(samples, seconds per sample) of the loops. Many short samples: on a shared machine a sample
    that falls between other processes' time slices is likelier when it is short, and the best sample
    is the figure kept."""
    return (5, 0.001) if quick else (21, 0.002)


def measure(threads: int, shapes, quick: bool) -> dict:
    """Every limit for a worker of ``threads`` threads running ``shapes`` (shapes.Shape rows)."""
    samples, target_s = _sampling(quick)
    caches = common.cache_sizes()
    ordered, cores = common.cpu_cores()
    cpus = [ordered[t % len(ordered)] for t in range(max(threads, 1))]
    largest = max((roofline.working_set_bytes(s.seq_len, s.hidden, s.input_size, 4) for s in shapes), default=0)
    need_dram = roofline.cache_level(largest, 1, caches) == "DRAM"
    return {
        "threads": threads,
        "caches": caches,
        "cpus": cpus,
        "cores": cores,
        "pinning": (f"threads pinned to CPUs {cpus} ({cores} core(s) allowed"
                    + (f"; {threads} threads share {cores} cores" if threads > cores else ", one thread per core") + ")"),
        "fma": fma_peaks(threads, cpus, cores, samples, target_s),
        "int8": int8_peaks(threads, cpus, cores, samples, target_s),
        "levels": level_bandwidths(threads, cpus, cores, caches, need_dram, samples, target_s),
        "read": {str(h): whh_read(h, threads, cpus, caches, samples, target_s, 0.002 if quick else 0.005)
                 for h in sorted({s.hidden for s in shapes})},
        # int8-only shapes: an int8 W_hh near the L3's size (23.8 MB at H = 2816 in a 32 MiB L3), where the
        # L3 level's small probe buffer overstates what a stream of that size gets
        "read_int8": {str(h): whh_read(h, threads, cpus, caches, samples, target_s, 0.002 if quick else 0.005,
                                       bytes_per_weight=1)
                      for h in sorted({s.hidden for s in shapes if s.group == "int8-large"})},
        "sgemm": sgemm_rate(threads, 256 if quick else 2048, 3 if quick else 7),
    }


def fma_after(limits: dict, quick: bool) -> dict:
    """The widest FMA loop of ``limits`` (measure's result) measured again, after the cases, at the
    worker's thread count: {"gflops", "width", "of_before", "median_gflops", "median_of_before"} (best
    and median samples, each against the same figure before) or {"not_measured"}. A shared VM or a
    power-limited core can slow down under the run's sustained load (one seen here ran the same call
    25-35% slower in a loop than after a second idle), or speed up; the report says how far the machine
    drifted, and takes the shares of the peak against the higher figure (report.fma_peak)."""
    fma = limits.get("fma", {})
    if not fma.get("peak_gflops") or "widest" not in fma:
        return {"not_measured": fma.get("not_measured", "no FMA peak was measured before the cases")}
    threads, cores, cpus = limits["threads"], limits["cores"], limits["cpus"]
    width = fma["widest"]
    again = _loop_peaks("bench_fma", "FMA loop", (width,), _WIDTH_FLAG, "this CPU has no FMA", threads, cpus, cores,
                        *_sampling(quick))
    if not again.get("peak_gflops"):
        return {"not_measured": again.get("not_measured", f"the {width}-bit loop did not run")}
    # medians too: a best sample can fall in a fast moment of a machine that is slow most of the time
    t = str(threads)
    median = again["widths"][str(width)]["by_threads"][t]["median_gflops"]
    median_before = fma["widths"][str(width)]["by_threads"][t]["median_gflops"]
    return {"gflops": again["peak_gflops"], "width": width, "of_before": again["peak_gflops"] / fma["peak_gflops"],
            "median_gflops": median, "median_of_before": median / median_before}


def _mb(nbytes: float) -> str:
    return f"{nbytes / 2**20:.2f} MiB"


def describe(limits: dict) -> list[str]:
    """One line per limit, for the worker's console and the report."""
    t = limits["threads"]
    lines = []
    fma = limits["fma"]
    if "widths" not in fma:
        lines.append(f"FMA peak: not measured: {fma['not_measured']}")
    else:
        parts = []
        for width, entry in fma["widths"].items():
            if "by_threads" not in entry:
                parts.append(f"{width}-bit not measured ({entry['not_measured']})")
                continue
            parts.append(f"{width}-bit " + " / ".join(f"{v['best_gflops']:.1f}" for v in entry["by_threads"].values()))
        counts = "/".join(fma["widths"][str(fma["widest"])]["by_threads"]) if "widest" in fma else str(t)
        ratio = fma.get("ratio_512_256")
        ratio_text = ("; 512/256 = " + " / ".join(f"{r:.2f}" for r in ratio.values())) if ratio else \
            "; 512/256: not measured (no 512-bit FMA here)"
        lines.append(f"FMA peak, GFLOP/s at {counts} thread(s): " + ", ".join(parts) + ratio_text
                     + (f" -> limit {fma['peak_gflops']:.1f} GFLOP/s ({fma['peak_what']})" if fma["peak_gflops"] else ""))
    int8 = limits.get("int8", {})
    if int8.get("widest") is None:
        lines.append(f"int8 peak: not measured: {int8.get('not_measured', '-')}")
    else:
        parts = [f"{width}-bit " + " / ".join(f"{v['best_gflops']:.0f}" for v in entry["by_threads"].values())
                 if "by_threads" in entry else f"{width}-bit not measured ({entry['not_measured']})"
                 for width, entry in int8["widths"].items()]
        lines.append(f"int8 {int8.get('loop', 'vpdpbusd')} peak, GOP/s at {'/'.join(str(c) for c in _thread_counts(t))} thread(s): "
                     + ", ".join(parts) + f" -> limit {int8['peak_gflops']:.0f} GOP/s ({int8['peak_what']})")
    for level, entry in limits["levels"].items():
        if "widths" not in entry:
            lines.append(f"read {level}: not measured: {entry['not_measured']}")
            continue
        parts = []
        for width, value in entry["widths"].items():
            if "by_threads" in value:
                parts.append(f"{width}-bit " + " / ".join(f"{v['best_gbs']:.0f}" for v in value["by_threads"].values()))
            else:
                parts.append(f"{width}-bit not measured ({value['not_measured']})")
        lines.append(f"read {level} ({_mb(entry['bytes_per_thread'])} per thread), GB/s at "
                     f"{'/'.join(str(c) for c in _thread_counts(t))} thread(s): " + ", ".join(parts)
                     + f" -> limit {entry['limit_gbs']:.0f} GB/s")
    for precision, h, r in roofline.whh_reads(limits):
        levels = ", ".join(f"{lvl} at {n} thread(s)" for n, lvl in r["levels"].items())
        kind = " int8" if precision == "int8" else ""
        lines.append(f"W_hh{kind} H={h} ({_mb(r['bytes'])}): lives in {levels}; read {roofline.read_methods_text(r)} "
                     "GB/s (best samples)")
    s = limits["sgemm"]
    lines.append(f"sgemm (reference, not a limit): {s['best_gflops']:.1f} GFLOP/s best, "
                 f"{s['median_gflops']:.1f} median ({s['what']})")
    return lines


if __name__ == "__main__":
    from shapes import DEFAULT

    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    print("\n".join(describe(measure(threads, DEFAULT, quick="--quick" in sys.argv))))
