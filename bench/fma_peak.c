/* The float32 FMA peak of each vector width: a register-only loop of independent FMA chains; and the
 * int8 dot-product peak (vpdpbusd, AVX-512 VNNI) of each width, the same way.
 *
 * Each chain is a = a * m + c on one vector register. A chain waits for its previous FMA (4-5 cycles
 * of latency on current x86 cores), and a core retires up to two FMAs a cycle, so about 8-10 chains
 * must be in flight to fill both units; 12 (16 for 512-bit, which has 32 registers) leave margin and
 * still fit the register file with the two constants, so nothing touches memory. m is just below 1
 * and c small, so every value converges to c / (1 - m): no overflow, no denormals.
 *
 * Each width's function is compiled for its own instruction set with __attribute__((target)) and
 * called only where __builtin_cpu_supports says the CPU (and OS) has it: the file is built with
 * plain -O2, never -march=native. FLOPs = 2 per lane per FMA.
 *
 * The int8 loops are chains acc = vpdpbusd(acc, u, s): each adds 4 byte products to every int32 lane,
 * the instruction fastgru's int8 products are made of, so 2 x 4 x lanes operations per instruction
 * (a multiply and an add per byte pair, as GOP/s of int8 GEMMs are counted). Written in inline assembly,
 * as fastgru's kernels are: GCC 12 otherwise copies the accumulator register before each one. Integer
 * lanes wrap silently, so the values need no care. */
#include "pinned_threads.h"

#include <immintrin.h>

#define REPEAT12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define REPEAT16(X) REPEAT12(X) X(12) X(13) X(14) X(15)

/* The body of every loop here, float32 and int8: CONSTANTS, DECLARE, STEP and STORE name the width's
 * intrinsics; the lanes of every chain are summed at the end, so the compiler keeps all the work. */
#define CHAIN_LOOP(LANE, LANES, REPEAT)                                        \
    CONSTANTS                                                                  \
    REPEAT(DECLARE)                                                            \
    for (long r = 0; r < reps; r++) {                                          \
        REPEAT(STEP)                                                           \
    }                                                                          \
    LANE lanes[LANES];                                                         \
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
#define CONSTANTS const __m128 m = _mm_set1_ps(0.99999994f), c = _mm_set1_ps(1e-6f);
    CHAIN_LOOP(float, 4, REPEAT12)
#undef CONSTANTS
#undef DECLARE
#undef STEP
#undef STORE
}

__attribute__((target("avx,fma")))
static double fma_256(long reps) {
#define DECLARE(k) __m256 a##k = _mm256_set1_ps((float)(k));
#define STEP(k) a##k = _mm256_fmadd_ps(a##k, m, c);
#define STORE _mm256_storeu_ps
#define CONSTANTS const __m256 m = _mm256_set1_ps(0.99999994f), c = _mm256_set1_ps(1e-6f);
    CHAIN_LOOP(float, 8, REPEAT12)
#undef CONSTANTS
#undef DECLARE
#undef STEP
#undef STORE
}

__attribute__((target("avx512f")))
static double fma_512(long reps) {
#define DECLARE(k) __m512 a##k = _mm512_set1_ps((float)(k));
#define STEP(k) a##k = _mm512_fmadd_ps(a##k, m, c);
#define STORE _mm512_storeu_ps
#define CONSTANTS const __m512 m = _mm512_set1_ps(0.99999994f), c = _mm512_set1_ps(1e-6f);
    CHAIN_LOOP(float, 16, REPEAT16)
#undef CONSTANTS
#undef DECLARE
#undef STEP
#undef STORE
}

#define DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

__attribute__((target("avx512f,avx512vl,avx512vnni")))
static double dot_i8_256(long reps) {
#define DECLARE(k) __m256i a##k = _mm256_set1_epi32(k);
#define STEP(k) DPBUSD(a##k, u, w);
#define STORE(out, v) _mm256_storeu_si256((__m256i *)(out), (v))
#define CONSTANTS const __m256i u = _mm256_set1_epi32(0x01010101), w = _mm256_set1_epi32(0x02020202);
    CHAIN_LOOP(int, 8, REPEAT16)
#undef CONSTANTS
#undef DECLARE
#undef STEP
#undef STORE
}

__attribute__((target("avx512f,avx512vnni")))
static double dot_i8_512(long reps) {
#define DECLARE(k) __m512i a##k = _mm512_set1_epi32(k);
#define STEP(k) DPBUSD(a##k, u, w);
#define STORE(out, v) _mm512_storeu_si512((void *)(out), (v))
#define CONSTANTS const __m512i u = _mm512_set1_epi32(0x01010101), w = _mm512_set1_epi32(0x02020202);
    CHAIN_LOOP(int, 16, REPEAT16)
#undef CONSTANTS
#undef DECLARE
#undef STEP
#undef STORE
}

/* The AVX2 int8 peak, where there is no VNNI: chains acc += vpmaddwd(vpmaddubsw(u, s), ones), the
 * instructions of fastgru's AVX2 int8 product (kernels_avx2.c, dot_i8_avx2; it also applies a sign per
 * row, vpsignb, not counted here): 32 byte products into 8 int32 lanes per pair of instructions, so 2 x
 * 32 operations per chain and iteration. The products do not depend on the chains (only the adds do),
 * so 12 chains fill 12 of the 16 registers with room for the three constants and a product. */
__attribute__((target("avx2")))
static double madd_i8_256(long reps) {
/* the empty volatile asm "changes" u before each product, so the compiler cannot compute one product
 * for all chains, hoist it out of the loop, or fold the chains' sums into a closed form */
#define DECLARE(k) __m256i a##k = _mm256_set1_epi32(k);
#define STEP(k)                                                                                      \
    __asm__ volatile("" : "+x"(u));                                                                  \
    a##k = _mm256_add_epi32(a##k, _mm256_madd_epi16(_mm256_maddubs_epi16(u, w), ones));
#define STORE(out, v) _mm256_storeu_si256((__m256i *)(out), (v))
#define CONSTANTS                                                                                    \
    __m256i u = _mm256_set1_epi8(1);                                                                 \
    const __m256i w = _mm256_set1_epi8(2), ones = _mm256_set1_epi16(1);
    CHAIN_LOOP(int, 8, REPEAT12)
#undef CONSTANTS
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

/* 1 if this CPU runs the int8 loop of `width` bits (256 or 512: AVX-512 VNNI), else 0. */
int bench_dot_i8_supported(int width) {
    __builtin_cpu_init();
    const int vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
    switch (width) {
    case 256: return vnni && __builtin_cpu_supports("avx512vl");
    case 512: return vnni;
    default: return 0;
    }
}

/* int8 operations of one loop iteration: chains x int32 lanes x 4 byte pairs x 2. */
double bench_dot_i8_ops_per_rep(int width) {
    return width == 512 ? 16 * 16 * 4 * 2 : width == 256 ? 16 * 8 * 4 * 2 : 0;
}

/* 1 if this CPU runs the AVX2 int8 loop (only 256 bits), else 0. */
int bench_madd_i8_supported(int width) {
    __builtin_cpu_init();
    return width == 256 && __builtin_cpu_supports("avx2");
}

/* int8 operations of one AVX2 int8 loop iteration: chains x 32 byte pairs x 2. */
double bench_madd_i8_ops_per_rep(int width) {
    return width == 256 ? 12 * 32 * 2 : 0;
}

static void madd_i8_work(bench_job *job) {
    job->sink = madd_i8_256(job->reps);
}

static void dot_i8_work(bench_job *job) {
    job->sink = job->width == 512 ? dot_i8_512(job->reps) : dot_i8_256(job->reps);
}

static void fma_work(bench_job *job) {
    job->sink = job->width == 512   ? fma_512(job->reps)
                : job->width == 256 ? fma_256(job->reps)
                                    : fma_128(job->reps);
}

/* Runs `work` (a loop of `width` bits, `per_rep` operations an iteration) `reps` times on each of
 * `threads` threads (thread t pinned to cpus[t]); *ops = the operations of all threads, *seconds = wall
 * time from the first start to the last end. Returns 0, -1 (not `supported` by this CPU, or a bad
 * thread count) or -2 (a thread failed to start). */
static int run_loops(int supported, void (*work)(bench_job *), int width, double per_rep, long reps, int threads,
                     const int *cpus, double *ops, double *seconds, double *sink) {
    if (!supported || threads < 1 || threads > BENCH_MAX_THREADS) return -1;
    bench_job jobs[BENCH_MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        jobs[t].work = work;
        jobs[t].reps = reps;
        jobs[t].width = width;
        jobs[t].sink = 0;
    }
    int status = bench_run_pinned(jobs, threads, cpus, seconds);
    if (status != 0) return status;
    *ops = (double)threads * (double)reps * per_rep;
    *sink = 0;
    for (int t = 0; t < threads; t++) *sink += jobs[t].sink;
    return 0;
}

/* Runs the `width`-bit FMA loop `reps` times on each of `threads` threads (thread t pinned to cpus[t]);
 * *flops = the FLOPs done by all threads, *seconds = wall time from the first start to the last end.
 * Returns 0, -1 (width not run by this CPU, or bad thread count) or -2 (a thread failed to start). */
int bench_fma(int width, long reps, int threads, const int *cpus, double *flops, double *seconds,
              double *sink) {
    return run_loops(bench_fma_supported(width), fma_work, width, bench_fma_flops_per_rep(width), reps, threads,
                     cpus, flops, seconds, sink);
}

/* The int8 loop of `width` bits, as bench_fma; *ops = int8 operations (2 per byte product). */
int bench_dot_i8(int width, long reps, int threads, const int *cpus, double *ops, double *seconds,
                 double *sink) {
    return run_loops(bench_dot_i8_supported(width), dot_i8_work, width, bench_dot_i8_ops_per_rep(width), reps,
                     threads, cpus, ops, seconds, sink);
}

/* The AVX2 int8 loop, as bench_dot_i8. */
int bench_madd_i8(int width, long reps, int threads, const int *cpus, double *ops, double *seconds,
                  double *sink) {
    return run_loops(bench_madd_i8_supported(width), madd_i8_work, width, bench_madd_i8_ops_per_rep(width), reps,
                     threads, cpus, ops, seconds, sink);
}
