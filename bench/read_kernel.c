/* Read bandwidth of a float32 buffer: sum it over and over with 8 independent vector accumulators.
 *
 * A recurrent step at batch 1 reads all of W_hh once and does one FMA per weight, so its limit is
 * how fast the cache level holding W_hh delivers bytes; this loop is that rate with nothing else in
 * the way. One add per loaded vector, 8 accumulators (enough to hide the add latency of current
 * cores at two loads a cycle). The 256-bit loop needs AVX, the 512-bit one AVX-512F, each compiled
 * for its own instruction set with __attribute__((target)) and called only where
 * __builtin_cpu_supports says the CPU has it; width 32 is a plain scalar loop for any CPU.
 *
 * Threads split the buffer into contiguous slices and read their own slice concurrently (each
 * slice then lives in the cache of the core reading it, as W_hh's rows do when fastgru splits them
 * over threads). */
#include "pinned_threads.h"

#include <immintrin.h>

#define REPEAT8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

/* Floats one iteration of the widest loop consumes: slices are multiples of it. */
#define BENCH_READ_BLOCK 128

__attribute__((target("avx")))
static double read_256(const float *buf, size_t n, long reps) {
#define DECLARE(k) __m256 a##k = _mm256_setzero_ps();
#define STEP(k) a##k = _mm256_add_ps(a##k, _mm256_loadu_ps(buf + i + 8 * (k)));
#define SUM(k) _mm256_storeu_ps(lanes, a##k); for (int l = 0; l < 8; l++) total += lanes[l];
    REPEAT8(DECLARE)
    for (long r = 0; r < reps; r++)
        for (size_t i = 0; i + 64 <= n; i += 64) {
            REPEAT8(STEP)
        }
    float lanes[8];
    double total = 0;
    REPEAT8(SUM)
    return total;
#undef DECLARE
#undef STEP
#undef SUM
}

__attribute__((target("avx512f")))
static double read_512(const float *buf, size_t n, long reps) {
#define DECLARE(k) __m512 a##k = _mm512_setzero_ps();
#define STEP(k) a##k = _mm512_add_ps(a##k, _mm512_loadu_ps(buf + i + 16 * (k)));
#define SUM(k) _mm512_storeu_ps(lanes, a##k); for (int l = 0; l < 16; l++) total += lanes[l];
    REPEAT8(DECLARE)
    for (long r = 0; r < reps; r++)
        for (size_t i = 0; i + 128 <= n; i += 128) {
            REPEAT8(STEP)
        }
    float lanes[16];
    double total = 0;
    REPEAT8(SUM)
    return total;
#undef DECLARE
#undef STEP
#undef SUM
}

static double read_scalar(const float *buf, size_t n, long reps) {
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (long r = 0; r < reps; r++)
        for (size_t i = 0; i + 4 <= n; i += 4) {
            a0 += buf[i];
            a1 += buf[i + 1];
            a2 += buf[i + 2];
            a3 += buf[i + 3];
        }
    return (double)a0 + a1 + a2 + a3;
}

/* 1 if this CPU runs the read loop of `width` bits (32 = scalar, 256 or 512), else 0. */
int bench_read_supported(int width) {
    __builtin_cpu_init();
    switch (width) {
    case 32: return 1;
    case 256: return __builtin_cpu_supports("avx") != 0;
    case 512: return __builtin_cpu_supports("avx512f") != 0;
    default: return 0;
    }
}

static void read_work(bench_job *job) {
    job->sink = job->width == 512   ? read_512(job->buf, job->n, job->reps)
                : job->width == 256 ? read_256(job->buf, job->n, job->reps)
                                    : read_scalar(job->buf, job->n, job->reps);
}

/* Reads buf[0:n] `reps` times with the `width`-bit loop, split into `threads` contiguous slices read
 * concurrently (thread t pinned to cpus[t]). *bytes = the bytes read by all threads (slices are
 * rounded down to BENCH_READ_BLOCK floats), *seconds = wall time from the first start to the last end.
 * Returns 0, -1 (width not run by this CPU, bad thread count, or a slice under one block) or -2 (a
 * thread failed to start). */
int bench_read(int width, const float *buf, size_t n, long reps, int threads, const int *cpus,
               double *bytes, double *seconds, double *sink) {
    bench_job jobs[BENCH_MAX_THREADS];
    if (!bench_read_supported(width) || threads < 1 || threads > BENCH_MAX_THREADS) return -1;
    size_t slice = (n / (size_t)threads) / BENCH_READ_BLOCK * BENCH_READ_BLOCK;
    if (slice == 0) return -1;
    for (int t = 0; t < threads; t++) {
        jobs[t].work = read_work;
        jobs[t].buf = buf + (size_t)t * slice;
        jobs[t].n = slice;
        jobs[t].reps = reps;
        jobs[t].width = width;
        jobs[t].sink = 0;
    }
    int status = bench_run_pinned(jobs, threads, cpus, seconds);
    if (status != 0) return status;
    *bytes = (double)threads * (double)reps * (double)slice * sizeof(float);
    *sink = 0;
    for (int t = 0; t < threads; t++) *sink += jobs[t].sink;
    return 0;
}
