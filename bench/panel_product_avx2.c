/* The AVX2 table's panel products alone (float32 and int8), against the loops of their instructions
 * measured in the same run: the measuring device behind docs/kernels.md, "Measured on a Zen 3 (AVX2
 * only)", not part of fastgru; built by hand:
 *
 *     cc -O3 -std=c11 -pthread bench/panel_product_avx2.c -o /tmp/panel_product_avx2 && /tmp/panel_product_avx2
 *
 * One recurrent step's products, block-outer as the step kernels run (each block's (K, 24) panel, then
 * every tile of 4 rows over it), at H = 512 and 1024:
 *   f32            the core's dot_f32_avx2 (src_c/tiles_avx2.h) at R = 4: 12 accumulators, 3 weight
 *                  vectors, a broadcast
 *   f32/next-L2    the same loop, each tile requesting its share of the next block's panel into L2
 *   f32/ahead-L1   the same loop, each tile requesting its own panel 8 KiB ahead of its loads into L1
 *   i8             the core's dot_i8_avx2 at R = 4: vpsignb, vpmaddubsw, vpmaddwd, vpaddd
 *   i8n            the core's dot_i8n_avx2 at R = 4 (narrow weights, |q| <= 64, on offset code bytes):
 *                  vpmaddubsw, vpmaddwd, vpaddd in one asm statement (tile4_i8n_avx2)
 * each over all of W_hh ("L3" where it exceeds the L2) and over its first 4 blocks only ("L2").
 * References, fma_peak.c's loops as the benchmark runs them: 12 chains of 256-bit FMAs, 12 chains of
 * vpmaddubsw + vpmaddwd (its AVX2 int8 loop), and the same with a vpsignb before each product. The
 * candidates take one sample each in turn, 30 rounds, and each reports its best sample (load from other
 * processes only lowers a rate).
 * The prefetching candidates were not adopted: whole calls ran slower with them (docs/kernels.md). */
/* fma_peak.c's loops, the very ones the benchmark reports (fma_256, madd_i8_256), its CHAIN_LOOP for the
 * one added below (madd_i8_256's chains with a vpsignb before each product, as dot_i8_avx2 has), and
 * pinned_threads.h's bench_now */
#include "fma_peak.c"

#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dot_f32_avx2 and dot_i8_avx2, the core's own tiles, compiled here as kernels_avx2.c compiles them */
#define FG_TILES_TARGET "avx2,fma"
#include "../src_c/tiles_avx2.h"

#define AVX2 __attribute__((target("avx2,fma")))

/* ------------------------------------------------------------------ float32, 4 rows x 24 columns */

enum { PLAIN, NEXT_L2, AHEAD_L1 };

/* acc[r][0:24] = sum_k a[r][k] * panel[k][0:24], r < 4: dot_f32_avx2's loop at R = 4, requesting `lines`
 * cache lines from `pf` (mode NEXT_L2 or AHEAD_L1), spread evenly over K (counted in whole lines,
 * without a division in the loop) */
AVX2 static inline __attribute__((always_inline)) void tile_f32_prefetching(int64_t K, const float *a, int64_t lda,
                                                                            const float *panel, float *acc, int mode,
                                                                            const char *pf, int64_t lines) {
    __m256 sum[4][3];
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < 3; v++) sum[r][v] = _mm256_setzero_ps();
    int64_t owed = 0, done = 0;
    for (int64_t k = 0; k < K; k++) {
        for (owed += lines; owed >= K && done < lines; owed -= K, done++) {
                if (mode == AHEAD_L1) _mm_prefetch(pf + 64 * done, _MM_HINT_T0);
                else _mm_prefetch(pf + 64 * done, _MM_HINT_T1);
            }
        const float *w = panel + k * 24;
        const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8), w2 = _mm256_loadu_ps(w + 16);
        for (int r = 0; r < 4; r++) {
            const __m256 x = _mm256_broadcast_ss(a + r * lda + k);
            sum[r][0] = _mm256_fmadd_ps(x, w0, sum[r][0]);
            sum[r][1] = _mm256_fmadd_ps(x, w1, sum[r][1]);
            sum[r][2] = _mm256_fmadd_ps(x, w2, sum[r][2]);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < 3; v++) _mm256_storeu_ps(acc + r * 24 + 8 * v, sum[r][v]);
}

AVX2 static void step_f32(int mode, long H, long blocks, long rows, const float *a, const float *panels, float *acc) {
    const long panel_floats = H * 24, lines = panel_floats * 4 / 64, tiles = rows / 4;
    const long share = (lines + tiles - 1) / tiles;
    for (long u = 0; u < blocks; u++) {
        const float *panel = panels + u * panel_floats;
        for (long i = 0; i < rows; i += 4) {
            const char *pf = NULL;
            long n = 0;
            if (mode == NEXT_L2 && u + 1 < blocks) {
                pf = (const char *)(panel + panel_floats) + 64 * (i / 4) * share;
                n = share;
            } else if (mode == AHEAD_L1) {
                pf = (const char *)panel + 8192;
                n = lines;
            }
            if (pf) tile_f32_prefetching(H, a + i * H, H, panel, acc + (u * rows + i) * 24, mode, pf, n);
            else dot_f32_avx2(4, 24, H, a + i * H, H, panel, acc + (u * rows + i) * 24, 0);
        }
    }
}

/* ------------------------------------------------------------------ int8, 4 rows x 24 columns */

/* dot_i8_avx2 at R = 4, C = 24 over every block: a block is its 24 column sums and scales (8 * 24 bytes,
 * which this product does not read) and then its (K, 24) int8 panel in [k/4][c][k%4] order */
#define I8_HEADER (8 * 24)

AVX2 static void step_i8(long H, long blocks, long rows, const uint8_t *a, const char *panels, int32_t *acc) {
    for (long u = 0; u < blocks; u++)
        for (long i = 0; i < rows; i += 4)
            dot_i8_avx2(4, 24, H, a + i * H, H, panels + u * (I8_HEADER + H * 24), acc + (u * rows + i) * 24);
}

AVX2 static void step_i8n(long H, long blocks, long rows, const uint8_t *a, const char *panels, int32_t *acc) {
    for (long u = 0; u < blocks; u++)
        for (long i = 0; i < rows; i += 4)
            dot_i8n_avx2(4, 24, H, a + i * H, H, panels + u * (I8_HEADER + H * 24), acc + (u * rows + i) * 24);
}

/* ------------------------------------------------------------------ references */

__attribute__((target("avx2")))
static double sign_i8_256(long reps) {
#define DECLARE(k) __m256i a##k = _mm256_set1_epi32(k);
#define STEP(k)                                                                                      \
    __asm__ volatile("" : "+x"(u));                                                                  \
    a##k = _mm256_add_epi32(a##k, _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_sign_epi8(u, s)), ones));
#define STORE(out, v) _mm256_storeu_si256((__m256i *)(out), (v))
#define CONSTANTS                                                                                    \
    __m256i u = _mm256_set1_epi8(1);                                                                 \
    const __m256i w = _mm256_set1_epi8(2), s = _mm256_set1_epi8(-3), ones = _mm256_set1_epi16(1);
    CHAIN_LOOP(int, 8, REPEAT12)
#undef CONSTANTS
#undef DECLARE
#undef STEP
#undef STORE
}

static volatile double sink;

/* ------------------------------------------------------------------ harness */

#define ROUNDS 30
#define SAMPLE_S 0.02

/* the best rate (work / s) of the candidates in `kinds`, sampled in turn, ROUNDS rounds; candidate k runs
 * run(k) and does work[k] per run */
static void best_rates(int kinds, void (*run)(int), const double *work, double *best) {
    for (int k = 0; k < kinds; k++) best[k] = 0;
    for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < kinds; k++) {
            int n = 0;
            const double t0 = bench_now();
            double t;
            do {
                run(k);
                n++;
            } while ((t = bench_now() - t0) < SAMPLE_S);
            const double rate = work[k] * n / t;
            best[k] = rate > best[k] ? rate : best[k];
        }
}

/* read at run time, so that no loop's trip count is a constant the compiler could fold */
static volatile long reference_reps = 200000;

static void run_references(int k) {
    const long reps = reference_reps;
    sink = k == 0 ? fma_256(reps) : k == 1 ? madd_i8_256(reps) : sign_i8_256(reps);
}

static long g_H, g_blocks, g_rows;
static float *g_a, *g_panels, *g_acc;
static uint8_t *g_codes;
static char *g_q;
static int32_t *g_iacc;

static void run_products(int k) {
    if (k < 3) step_f32(k, g_H, g_blocks, g_rows, g_a, g_panels, g_acc);
    else if (k == 3) step_i8(g_H, g_blocks, g_rows, g_codes, g_q, g_iacc);
    else step_i8n(g_H, g_blocks, g_rows, g_codes, g_q, g_iacc);
}

int main(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("this CPU lacks AVX2/FMA: nothing to compare\n");
        return 0;
    }
    const double ref_work[3] = {200000.0 * 12 * 8 * 2, 200000.0 * 12 * 32 * 2, 200000.0 * 12 * 32 * 2};
    double ref[3];
    best_rates(3, run_references, ref_work, ref);
    printf("loops, 1 thread: 256-bit FMA %.1f GFLOP/s; vpmaddubsw + vpmaddwd %.0f GOP/s, with vpsignb %.0f GOP/s\n\n",
           ref[0] / 1e9, ref[1] / 1e9, ref[2] / 1e9);
    printf("one step's products, block-outer, 4-row tiles: GFLOP/s (f32, %% of the FMA loop) and GOP/s (i8, %% of\n"
           "the vpmaddubsw loop without / with vpsignb; i8n: without)\n");
    static const char *const names[] = {"f32", "f32/next-L2", "f32/ahead-L1", "i8", "i8n"};
    const long shapes[][2] = {{512, 16}, {512, 64}, {1024, 4}, {1024, 32}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const long H = shapes[s][0], rows = shapes[s][1], blocks = H / 8;
        g_H = H, g_rows = rows;
        g_a = aligned_alloc(64, (size_t)(rows * H) * 4);
        g_panels = aligned_alloc(64, (size_t)(blocks * H * 24) * 4 + 16384);
        g_acc = aligned_alloc(64, (size_t)(blocks * rows * 24) * 4);
        g_codes = aligned_alloc(64, (size_t)(rows * H));
        g_q = aligned_alloc(64, (size_t)(blocks * (I8_HEADER + H * 24)));
        g_iacc = aligned_alloc(64, (size_t)(blocks * rows * 24) * 4);
        for (long i = 0; i < rows * H; i++) g_a[i] = (float)((i * 7) % 13) * 0.01f, g_codes[i] = (uint8_t)(i % 251);
        for (long i = 0; i < blocks * H * 24; i++) g_panels[i] = (float)((i * 5) % 11) * 0.01f;
        for (long i = 0; i < blocks * (I8_HEADER + H * 24); i++) g_q[i] = (char)(i % 255 - 127);
        for (int fits = 0; fits < 2; fits++) {
            g_blocks = fits ? 4 : blocks;
            const double macs = (double)rows * H * g_blocks * 24;
            const double work[5] = {2 * macs, 2 * macs, 2 * macs, 2 * macs, 2 * macs};
            double best[5];
            best_rates(5, run_products, work, best);
            printf("  H=%ld rows=%ld, %s (%.2f MiB of float panels):", H, rows, fits ? "4 blocks, L2" : "all of W_hh",
                   g_blocks * H * 24 * 4 / 1048576.0);
            for (int k = 0; k < 3; k++) printf("  %s %.1f (%.0f%%)", names[k], best[k] / 1e9, 100 * best[k] / ref[0]);
            printf("  %s %.0f (%.0f%% / %.0f%%)", names[3], best[3] / 1e9, 100 * best[3] / ref[1], 100 * best[3] / ref[2]);
            printf("  %s %.0f (%.0f%%)\n", names[4], best[4] / 1e9, 100 * best[4] / ref[1]);
        }
        free(g_a), free(g_panels), free(g_acc), free(g_codes), free(g_q), free(g_iacc);
    }
    return 0;
}
