/* The float32 FMA peak of each vector width: a register-only loop of independent FMA chains.
 *
 * Each chain is a = a * m + c on one vector register. A chain waits for its previous FMA (4-5 cycles
 * of latency on current x86 cores), and a core retires up to two FMAs a cycle, so about 8-10 chains
 * must be in flight to fill both units; 12 (16 for 512-bit, which has 32 registers) leave margin and
 * still fit the register file with the two constants, so nothing touches memory. m is just below 1
 * and c small, so every value converges to c / (1 - m): no overflow, no denormals.
 *
 * Each width's function is compiled for its own instruction set with __attribute__((target)) and
 * called only where __builtin_cpu_supports says the CPU (and OS) has it: the file is built with
 * plain -O2, never -march=native. FLOPs = 2 per lane per FMA. */
#include "pinned_threads.h"

#include <immintrin.h>

#define REPEAT12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define REPEAT16(X) REPEAT12(X) X(12) X(13) X(14) X(15)

/* The body of each width's loop; DECLARE, STEP and STORE name that width's intrinsics. */
#define FMA_LOOP(VEC, SET1, LANES, REPEAT)                                     \
    const VEC m = SET1(0.99999994f), c = SET1(1e-6f);                          \
    REPEAT(DECLARE)                                                            \
    for (long r = 0; r < reps; r++) {                                          \
        REPEAT(STEP)                                                           \
    }                                                                          \
    float lanes[LANES];                                                        \
    double total = 0;                                                          \
    REPEAT(SUM)                                                                \
    return total;

#define SUM(k)                                                                 \
    STORE(lanes, a##k);                                                        \
    for (int i = 0; i < (int)(sizeof lanes / sizeof lanes[0]); i++) total += lanes[i];

__attribute__((target("fma")))
static double fma_128(long reps) {
#define DECLARE(k) __m128 a##k = _mm_set1_ps((float)(k));
#define STEP(k) a##k = _mm_fmadd_ps(a##k, m, c);
#define STORE _mm_storeu_ps
    FMA_LOOP(__m128, _mm_set1_ps, 4, REPEAT12)
#undef DECLARE
#undef STEP
#undef STORE
}

__attribute__((target("avx,fma")))
static double fma_256(long reps) {
#define DECLARE(k) __m256 a##k = _mm256_set1_ps((float)(k));
#define STEP(k) a##k = _mm256_fmadd_ps(a##k, m, c);
#define STORE _mm256_storeu_ps
    FMA_LOOP(__m256, _mm256_set1_ps, 8, REPEAT12)
#undef DECLARE
#undef STEP
#undef STORE
}

__attribute__((target("avx512f")))
static double fma_512(long reps) {
#define DECLARE(k) __m512 a##k = _mm512_set1_ps((float)(k));
#define STEP(k) a##k = _mm512_fmadd_ps(a##k, m, c);
#define STORE _mm512_storeu_ps
    FMA_LOOP(__m512, _mm512_set1_ps, 16, REPEAT16)
#undef DECLARE
#undef STEP
#undef STORE
}

/* 1 if this CPU runs the FMA loop of `width` bits (128, 256 or 512), else 0. */
int bench_fma_supported(int width) {
    __builtin_cpu_init();
    switch (width) {
    case 128: return __builtin_cpu_supports("fma") != 0;
    case 256: return __builtin_cpu_supports("avx") && __builtin_cpu_supports("fma");
    case 512: return __builtin_cpu_supports("avx512f") != 0;
    default: return 0;
    }
}

/* FLOPs of one loop iteration: chains x lanes x 2. */
double bench_fma_flops_per_rep(int width) {
    switch (width) {
    case 128: return 12 * 4 * 2;
    case 256: return 12 * 8 * 2;
    case 512: return 16 * 16 * 2;
    default: return 0;
    }
}

static void fma_work(bench_job *job) {
    job->sink = job->width == 512   ? fma_512(job->reps)
                : job->width == 256 ? fma_256(job->reps)
                                    : fma_128(job->reps);
}

/* Runs the `width`-bit loop `reps` times on each of `threads` threads (thread t pinned to cpus[t]);
 * *flops = the FLOPs done by all threads, *seconds = wall time from the first start to the last end.
 * Returns 0, -1 (width not run by this CPU, or bad thread count) or -2 (a thread failed to start). */
int bench_fma(int width, long reps, int threads, const int *cpus, double *flops, double *seconds,
              double *sink) {
    bench_job jobs[BENCH_MAX_THREADS];
    if (!bench_fma_supported(width) || threads < 1 || threads > BENCH_MAX_THREADS) return -1;
    for (int t = 0; t < threads; t++) {
        jobs[t].work = fma_work;
        jobs[t].reps = reps;
        jobs[t].width = width;
        jobs[t].sink = 0;
    }
    int status = bench_run_pinned(jobs, threads, cpus, seconds);
    if (status != 0) return status;
    *flops = (double)threads * (double)reps * bench_fma_flops_per_rep(width);
    *sink = 0;
    for (int t = 0; t < threads; t++) *sink += jobs[t].sink;
    return 0;
}
