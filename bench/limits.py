"""The machine's limits, measured in the same process (and so the same run) as the engines.

- sgemm peak: ``scipy.linalg.blas.sgemm`` (the OpenBLAS that fastgru's core is handed) on square
  float32 matrices, output preallocated, at the worker's BLAS thread count. GFLOP/s = 2*N^3 / time.
  This is the roof for the batched shapes (B >= 16).
- Read bandwidth of a buffer the size of ``W_hh`` (3H*H*4 bytes), read over and over so it stays
  as warm in cache as a batch-1 recurrent step finds it. This is the roof for batch-1 shapes.
  Measured three ways, each reported:
    * ``c-read``: a tiny C loop (AVX2 with 8 accumulators where the CPU has it, else scalar)
      compiled at run time with the system C compiler and called through ctypes, the repeats inside
      C, split over ``threads`` pthreads pinned to distinct CPUs (each reads its own slice, no barrier). Skipped if no
      compiler: the loop is a measuring device, not part of fastgru.
    * ``sgemv``: OpenBLAS ``sgemv`` of (3H, H) x (H,), i.e. exactly a batch-1 step's product;
      Python call overhead (a few us) is included, which matters at small H.
    * ``numpy-sum``: ``numpy.add.reduce`` of the float32 buffer; one thread; overhead included.
  The limit used in the report is the best sample of the best method: load from other processes
  only ever lowers a measured rate, so the best sample is the closest to the true roof (and the
  strictest yardstick for fastgru). The same holds for the sgemm peak (best of its samples).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

READ_KERNEL_C = r"""
#define _GNU_SOURCE
#include <immintrin.h>
#include <sched.h>
#include <pthread.h>
#include <stddef.h>

__attribute__((target("avx2")))
static float read_avx2(const float *buf, size_t n, long reps) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (long r = 0; r < reps; r++) {
        for (size_t i = 0; i + 64 <= n; i += 64) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(buf + i));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(buf + i + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(buf + i + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(buf + i + 24));
            a4 = _mm256_add_ps(a4, _mm256_loadu_ps(buf + i + 32));
            a5 = _mm256_add_ps(a5, _mm256_loadu_ps(buf + i + 40));
            a6 = _mm256_add_ps(a6, _mm256_loadu_ps(buf + i + 48));
            a7 = _mm256_add_ps(a7, _mm256_loadu_ps(buf + i + 56));
        }
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

static float read_scalar(const float *buf, size_t n, long reps) {
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (long r = 0; r < reps; r++)
        for (size_t i = 0; i + 4 <= n; i += 4) {
            a0 += buf[i]; a1 += buf[i + 1]; a2 += buf[i + 2]; a3 += buf[i + 3];
        }
    return a0 + a1 + a2 + a3;
}

typedef struct { const float *buf; size_t n; long reps; float sink; } job;

static void *run_job(void *arg) {
    job *j = (job *)arg;
    j->sink = __builtin_cpu_supports("avx2") ? read_avx2(j->buf, j->n, j->reps)
                                             : read_scalar(j->buf, j->n, j->reps);
    return NULL;
}

/* Reads buf[0:n] reps times, split in `threads` contiguous slices read concurrently, each by its
 * own new thread pinned to a distinct allowed CPU (left to the scheduler, a new thread often starts
 * on its creator's CPU and the two share it for milliseconds). */
int bench_read(const float *buf, size_t n, long reps, int threads, float *sink) {
    job jobs[64];
    pthread_t tids[64];
    cpu_set_t allowed;
    int cpus[64], ncpus = 0;
    if (threads < 1 || threads > 64) return -1;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
        for (int c = 0; c < CPU_SETSIZE && ncpus < 64; c++)
            if (CPU_ISSET(c, &allowed)) cpus[ncpus++] = c;
    size_t slice = (n / threads) & ~(size_t)63;
    for (int t = 0; t < threads; t++) {
        jobs[t].buf = buf + t * slice;
        jobs[t].n = slice;
        jobs[t].reps = reps;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        if (ncpus >= threads) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpus[t], &one);
            pthread_attr_setaffinity_np(&attr, sizeof one, &one);
        }
        int failed = pthread_create(&tids[t], &attr, run_job, &jobs[t]);
        pthread_attr_destroy(&attr);
        if (failed) {
            while (t-- > 0) pthread_join(tids[t], NULL);
            return -2;
        }
    }
    float total = 0;
    for (int t = 0; t < threads; t++) { pthread_join(tids[t], NULL); total += jobs[t].sink; }
    *sink = total;
    return 0;
}

int bench_has_avx2(void) { return __builtin_cpu_supports("avx2"); }
"""


def _compile_read_kernel():
    """Compiles READ_KERNEL_C into a cached shared library; returns the ctypes handle or a reason."""
    compiler = os.environ.get("CC", "cc")
    digest = hashlib.sha1(READ_KERNEL_C.encode()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"fastgru-bench-read-{digest}-{os.getuid()}"
    library = cache / "read.so"
    if not library.exists():
        cache.mkdir(exist_ok=True)
        source = cache / "read.c"
        source.write_text(READ_KERNEL_C)
        tmp_library = cache / f"read.{os.getpid()}.so"
        try:
            proc = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-pthread", str(source),
                                   "-o", str(tmp_library)], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"no C compiler ({compiler}: {exc})"
        if proc.returncode != 0:
            return f"compiling the read loop failed: {proc.stderr.strip()[:200]}"
        os.replace(tmp_library, library)
    lib = ctypes.CDLL(str(library))
    lib.bench_read.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long, ctypes.c_int,
                               ctypes.POINTER(ctypes.c_float)]
    lib.bench_read.restype = ctypes.c_int
    return lib


def _median_rate(run_once, work_per_call: float, min_sample_s: float, samples: int) -> tuple[float, float]:
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


def sgemm_peak(threads: int, size: int, samples: int) -> dict:
    from scipy.linalg import blas

    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((size, size), dtype=np.float32))
    b = np.asfortranarray(rng.standard_normal((size, size), dtype=np.float32))
    c = np.zeros((size, size), dtype=np.float32, order="F")

    def once():
        blas.sgemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)

    median, best = _median_rate(once, 2.0 * size ** 3 / 1e9, 0.0, samples)
    return {"what": f"scipy.linalg.blas.sgemm {size}x{size}x{size} float32, {threads} BLAS thread(s)",
            "threads": threads, "size": size, "median_gflops": median, "best_gflops": best}


def read_bandwidth(hidden: int, threads: int, samples: int, min_sample_s: float) -> dict:
    """Read GB/s of a W_hh-sized buffer (3H*H float32), by each available method."""
    from scipy.linalg import blas

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3 * hidden, hidden), dtype=np.float32)
    nbytes = weight.nbytes
    gb = nbytes / 1e9
    out: dict = {"hidden": hidden, "bytes": nbytes, "methods": {}}

    lib = _compile_read_kernel()
    if isinstance(lib, str):
        out["methods"]["c-read"] = {"skipped": lib}
    else:
        flat = weight.reshape(-1)
        sink = ctypes.c_float()
        # repeats inside C so one call lasts ~5 ms: thread start-up and ctypes overhead vanish
        reps = max(1, int(5e-3 * 60e9 / nbytes))
        for t in sorted({1, threads}):
            def once(t=t):
                if lib.bench_read(flat.ctypes.data, flat.size, reps, t, ctypes.byref(sink)) != 0:
                    raise RuntimeError("bench_read failed")
            median, best = _median_rate(once, gb * reps, 0.0, samples)
            isa = "AVX2" if lib.bench_has_avx2() else "scalar"
            out["methods"][f"c-read x{t}"] = {
                "what": f"compiled {isa} read loop, {t} thread(s)", "threads": t,
                "median_gbs": median, "best_gbs": best}

    weight_f = weight.T  # Fortran-ordered view (H, 3H) of the same memory: no copy in sgemv
    h = rng.standard_normal(hidden, dtype=np.float32)
    median, best = _median_rate(lambda: blas.sgemv(1.0, weight_f, h, trans=1), gb, min_sample_s, samples)
    out["methods"]["sgemv"] = {"what": f"OpenBLAS sgemv (3H,H)x(H), {threads} BLAS thread(s), "
                                       "Python overhead included", "threads": threads,
                               "median_gbs": median, "best_gbs": best}

    flat = weight.reshape(-1)
    median, best = _median_rate(lambda: np.add.reduce(flat), gb, min_sample_s, samples)
    out["methods"]["numpy-sum"] = {"what": "numpy.add.reduce float32, 1 thread, Python overhead included",
                                   "threads": 1, "median_gbs": median, "best_gbs": best}
    measured = {k: v for k, v in out["methods"].items() if "median_gbs" in v}
    best_method = max(measured, key=lambda k: measured[k]["best_gbs"])
    out["limit_gbs"] = measured[best_method]["best_gbs"]
    out["limit_method"] = best_method
    return out


def measure(threads: int, hiddens, quick: bool) -> dict:
    samples = 3 if quick else 7
    return {
        "sgemm": sgemm_peak(threads, 256 if quick else 2048, samples),
        "read": {str(h): read_bandwidth(h, threads, samples, 0.002 if quick else 0.01)
                 for h in sorted(set(hiddens))},
    }


def describe(limits: dict) -> list[str]:
    lines = []
    s = limits["sgemm"]
    lines.append(f"sgemm peak: {s['best_gflops']:.1f} GFLOP/s best, {s['median_gflops']:.1f} median ({s['what']})")
    for h, r in limits["read"].items():
        parts = []
        for name, m in r["methods"].items():
            parts.append(f"{name} {m['median_gbs']:.1f}/{m['best_gbs']:.1f}" if "median_gbs" in m
                         else f"{name} skipped")
        lines.append(f"read W_hh H={h} ({r['bytes'] / 1e6:.2f} MB): " + ", ".join(parts)
                     + f" GB/s (median/best) -> limit {r['limit_gbs']:.1f} GB/s ({r['limit_method']})")
    return lines


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    print("\n".join(describe(measure(threads, [256, 512, 1024], quick="--quick" in sys.argv))))
