/* The float32 panel product alone, in the candidate shapes of a 512-bit kernel table, against the FMA
 * peak and the read bandwidth measured in the same run. A measuring device for choosing the layout of
 * the 512-bit kernels (docs/kernels.md says what it measured and what was chosen), not part of
 * fastgru; built by hand:
 *
 *     cc -O3 -std=c11 -D_POSIX_C_SOURCE=200809L bench/panel_product.c -o /tmp/panel_product && /tmp/panel_product
 *
 * Candidates over 8 batch rows (one recurrent step's products, block-outer as the step kernels run):
 *   ymm8           8 rows x 3 ymm over one 8-unit block, a (K, 24) panel: the avx512vl table's tile
 *                  (src_c/tiles_avx2.h's dot_f32_avx2, in AVX-512VL's 32 registers)
 *   zmm8x2         8 rows x 3 zmm over two adjacent 8-unit blocks u, u+1: 48 columns, the middle zmm
 *                  built from u's columns 16..23 and u+1's 0..7 (one 256-bit load + one insert)
 *   zmm16          8 rows x 3 zmm over one 16-unit block, a (K, 48) panel: the layout a 16-unit packing
 *                  would need (models, tape and backward following the block width)
 *   zmm8x2/padded  zmm8x2 with the block panels 64 bytes further apart than their size
 *   t16x24         16 rows x 24 columns of one block with the rows transposed, (K, rows): each 512-bit
 *                  accumulator holds one column of 16 rows, each weight is broadcast from the panel (an
 *                  FMA with an embedded broadcast), so one pass over a block's panel serves 16 rows
 *   t32x12         the same over 32 rows (two vectors) and half a block's columns, two passes per block
 *   (the transposed ones include transposing the rows once per step, in the time they report; they need
 *   rows in multiples of 16 or 32, "-" where they do not apply. Their sums are the 8-row tiles' FMA
 *   chains in k order, so a table built on them would keep those bits.)
 * Candidates over one row (batch 1: bound by reading W_hh, all of it, from L2 or L3), each with two
 * independent sets of accumulators:
 *   ymm            one block, 3 ymm per k, even and odd k apart (the 256-bit tables)
 *   zmm8x2         two blocks, 3 zmm per k
 *   zmm16          one 16-unit block, 3 zmm per k
 *   zmm+ymm        one block, one zmm and one ymm per k
 *   kpair          one block, two k at once: rows k and k+1 are 48 adjacent floats, 3 full zmm loads
 *
 * Each kernel is compiled for its own target by __attribute__((target)); the file is built with -O3
 * (as the core: the tiles' small loops must unroll into registers), never -march=native. The
 * candidates take one sample each in turn, 40 rounds, and each reports its best sample (load from
 * other processes only ever lowers a rate). */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define TARGET512 __attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq,avx512bw")))

/* ------------------------------------------------------------------ R rows, compute-bound */

/* dot_f32_avx2, the product of the avx512vl table (at R = 8, C = 24): the core's own tile, compiled here
 * for that table's target */
#define FG_TILES_TARGET "avx2,fma,avx512f,avx512vl,avx512dq,avx512bw"
#include "../src_c/tiles_avx2.h"

TARGET512 static inline __attribute__((always_inline)) void tile_ymm8(long K, const float *a, long lda,
                                                                     const float *panel, float *acc) {
    dot_f32_avx2(8, 24, K, a, lda, panel, acc, 0);
}

TARGET512 static void tile_zmm8x2(long K, const float *a, long lda, const float *pu, const float *pv, float *acc) {
    __m512 s[8][3];
    for (int r = 0; r < 8; r++)
        for (int v = 0; v < 3; v++) s[r][v] = _mm512_setzero_ps();
    for (long k = 0; k < K; k++) {
        const float *wu = pu + k * 24, *wv = pv + k * 24;
        const __m512 w0 = _mm512_loadu_ps(wu);
        const __m512 w1 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(wu + 16)), _mm256_loadu_ps(wv), 1);
        const __m512 w2 = _mm512_loadu_ps(wv + 8);
        for (int r = 0; r < 8; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            s[r][0] = _mm512_fmadd_ps(x, w0, s[r][0]);
            s[r][1] = _mm512_fmadd_ps(x, w1, s[r][1]);
            s[r][2] = _mm512_fmadd_ps(x, w2, s[r][2]);
        }
    }
    for (int r = 0; r < 8; r++)
        for (int v = 0; v < 3; v++) _mm512_storeu_ps(acc + r * 48 + 16 * v, s[r][v]);
}

TARGET512 static void tile_zmm16(long K, const float *a, long lda, const float *panel, float *acc) {
    __m512 s[8][3];
    for (int r = 0; r < 8; r++)
        for (int v = 0; v < 3; v++) s[r][v] = _mm512_setzero_ps();
    for (long k = 0; k < K; k++) {
        const float *w = panel + k * 48;
        const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16), w2 = _mm512_loadu_ps(w + 32);
        for (int r = 0; r < 8; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            s[r][0] = _mm512_fmadd_ps(x, w0, s[r][0]);
            s[r][1] = _mm512_fmadd_ps(x, w1, s[r][1]);
            s[r][2] = _mm512_fmadd_ps(x, w2, s[r][2]);
        }
    }
    for (int r = 0; r < 8; r++)
        for (int v = 0; v < 3; v++) _mm512_storeu_ps(acc + r * 48 + 16 * v, s[r][v]);
}

/* 16 rows (one vector of aT's row k) x 24 columns of a (K, 24) panel: 24 accumulators, column c of
 * the 16 rows in s[c]. GCC 12 keeps the accumulators in registers only with the loops unrolled. */
TARGET512 static void tile_t16x24(long K, const float *aT, long ldt, const float *panel, float *acc) {
    __m512 s[24];
#pragma GCC unroll 24
    for (int c = 0; c < 24; c++) s[c] = _mm512_setzero_ps();
    for (long k = 0; k < K; k++) {
        const __m512 x = _mm512_loadu_ps(aT + k * ldt);
        const float *w = panel + k * 24;
#pragma GCC unroll 24
        for (int c = 0; c < 24; c++) s[c] = _mm512_fmadd_ps(x, _mm512_set1_ps(w[c]), s[c]);
    }
#pragma GCC unroll 24
    for (int c = 0; c < 24; c++) _mm512_storeu_ps(acc + 16 * c, s[c]);
}

/* 32 rows (two vectors) x columns c0..c0+11 of a (K, 24) panel: 24 accumulators, each broadcast
 * weight used twice. */
TARGET512 static void tile_t32x12(long K, const float *aT, long ldt, const float *panel, int c0, float *acc) {
    __m512 s[2][12];
#pragma GCC unroll 12
    for (int c = 0; c < 12; c++) s[0][c] = s[1][c] = _mm512_setzero_ps();
    for (long k = 0; k < K; k++) {
        const __m512 x0 = _mm512_loadu_ps(aT + k * ldt), x1 = _mm512_loadu_ps(aT + k * ldt + 16);
        const float *w = panel + k * 24 + c0;
#pragma GCC unroll 12
        for (int c = 0; c < 12; c++) {
            const __m512 b = _mm512_set1_ps(w[c]);
            s[0][c] = _mm512_fmadd_ps(x0, b, s[0][c]);
            s[1][c] = _mm512_fmadd_ps(x1, b, s[1][c]);
        }
    }
#pragma GCC unroll 12
    for (int c = 0; c < 12; c++) {
        _mm512_storeu_ps(acc + 32 * c, s[0][c]);
        _mm512_storeu_ps(acc + 32 * c + 16, s[1][c]);
    }
}

/* aT[k][r] = a[r][k]: the rows of one step as the transposed tiles read them. */
static void transpose_rows(long rows, long K, const float *a, float *aT) {
    for (long r = 0; r < rows; r++)
        for (long k = 0; k < K; k++) aT[k * rows + r] = a[r * K + k];
}

/* One recurrent step's products at batch `rows` (a multiple of 8) and hidden H: block-outer (a
 * block's panel stays in L2 while every row tile passes), as the step kernels do. aT: room for the
 * transposed rows (kinds 4 and 5). */
TARGET512 static void step_products(int kind, long H, long rows, const float *a, float *aT, const float *panels,
                                    float *acc) {
    const long blocks = H / 8;
    if (kind == 4) {
        transpose_rows(rows, H, a, aT);
        for (long u = 0; u < blocks; u++)
            for (long i = 0; i < rows; i += 16) tile_t16x24(H, aT + i, rows, panels + u * H * 24, acc);
    } else if (kind == 5) {
        transpose_rows(rows, H, a, aT);
        for (long u = 0; u < blocks; u++)
            for (long i = 0; i < rows; i += 32)
                for (int c0 = 0; c0 < 24; c0 += 12) tile_t32x12(H, aT + i, rows, panels + u * H * 24, c0, acc);
    } else if (kind == 0) {
        /* inlined here, on a local array, as in the core: a standalone function made GCC 12 store
         * seven rows' accumulators to the stack every iteration */
        float local[8 * 24];
        for (long u = 0; u < blocks; u++)
            for (long i = 0; i < rows; i += 8) {
                tile_ymm8(H, a + i * H, H, panels + u * H * 24, local);
                memcpy(acc, local, sizeof local);
            }
    } else if (kind == 1) {
        for (long u = 0; u < blocks; u += 2)
            for (long i = 0; i < rows; i += 8)
                tile_zmm8x2(H, a + i * H, H, panels + u * H * 24, panels + (u + 1) * H * 24, acc);
    } else if (kind == 3) {
        /* block panels 64 bytes apart more than their size: the two blocks' rows k no longer fall in
         * the same L1 set when a panel is a multiple of 4 KiB */
        const long stride = H * 24 + 16;
        for (long u = 0; u < blocks; u += 2)
            for (long i = 0; i < rows; i += 8)
                tile_zmm8x2(H, a + i * H, H, panels + u * stride, panels + (u + 1) * stride, acc);
    } else {
        for (long u = 0; u < blocks; u += 2)
            for (long i = 0; i < rows; i += 8) tile_zmm16(H, a + i * H, H, panels + u * H * 24, acc);
    }
}

/* ------------------------------------------------------------------ one row, bandwidth-bound */

/* the 256-bit tables' batch-1 product: dot_f32_avx2 at R = 1, even and odd k apart */
TARGET512 static void row_ymm(long K, const float *a, const float *panel, float *acc) {
    dot_f32_avx2(1, 24, K, a, 0, panel, acc, 0);
}

TARGET512 static void row_zmm8x2(long K, const float *a, const float *pu, const float *pv, float *acc) {
    __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, o0 = e0, o1 = e0, o2 = e0;
    for (long k = 0; k < K; k += 2) {
        const float *wu = pu + k * 24, *wv = pv + k * 24;
        const __m512 x0 = _mm512_set1_ps(a[k]), x1 = _mm512_set1_ps(a[k + 1]);
        e0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(wu), e0);
        e1 = _mm512_fmadd_ps(
            x0, _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(wu + 16)), _mm256_loadu_ps(wv), 1), e1);
        e2 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(wv + 8), e2);
        o0 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(wu + 24), o0);
        o1 = _mm512_fmadd_ps(
            x1, _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(wu + 40)), _mm256_loadu_ps(wv + 24), 1),
            o1);
        o2 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(wv + 32), o2);
    }
    _mm512_storeu_ps(acc, _mm512_add_ps(e0, o0));
    _mm512_storeu_ps(acc + 16, _mm512_add_ps(e1, o1));
    _mm512_storeu_ps(acc + 32, _mm512_add_ps(e2, o2));
}

/* one block at a time, its 24 columns as one zmm (16) and one ymm (8): half a 512-bit FMA idles, which
 * a product bound by reading the weights can afford, and the weights are one stream */
TARGET512 static void row_zy(long K, const float *a, const float *panel, float *acc) {
    __m512 e0 = _mm512_setzero_ps(), o0 = e0;
    __m256 e1 = _mm256_setzero_ps(), o1 = e1;
    for (long k = 0; k < K; k += 2) {
        const float *w = panel + k * 24;
        const __m512 x0 = _mm512_set1_ps(a[k]), x1 = _mm512_set1_ps(a[k + 1]);
        e0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w), e0);
        e1 = _mm256_fmadd_ps(_mm512_castps512_ps256(x0), _mm256_loadu_ps(w + 16), e1);
        o0 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w + 24), o0);
        o1 = _mm256_fmadd_ps(_mm512_castps512_ps256(x1), _mm256_loadu_ps(w + 40), o1);
    }
    _mm512_storeu_ps(acc, _mm512_add_ps(e0, o0));
    _mm256_storeu_ps(acc + 16, _mm256_add_ps(e1, o1));
}

/* one block, two consecutive k at once: rows k and k+1 of a (K, 24) panel are 48 adjacent floats,
 * three full 512-bit loads of one stream; the middle vector holds k's columns 16..23 and k+1's 0..7,
 * multiplied by a blend of the two broadcasts. Two sets of k pairs for enough FMA chains. */
TARGET512 static void row_kpair(long K, const float *a, const float *panel, float *acc) {
    __m512 s[2][3];
    for (int j = 0; j < 2; j++)
        for (int v = 0; v < 3; v++) s[j][v] = _mm512_setzero_ps();
    for (long k = 0; k < K; k += 4)
        for (int j = 0; j < 2; j++) {
            const float *w = panel + (k + 2 * j) * 24;
            const __m512 x0 = _mm512_set1_ps(a[k + 2 * j]), x1 = _mm512_set1_ps(a[k + 2 * j + 1]);
            s[j][0] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w), s[j][0]);
            s[j][1] = _mm512_fmadd_ps(_mm512_mask_blend_ps(0xFF00, x0, x1), _mm512_loadu_ps(w + 16), s[j][1]);
            s[j][2] = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w + 32), s[j][2]);
        }
    const __m512 p0 = _mm512_add_ps(s[0][0], s[1][0]), p1 = _mm512_add_ps(s[0][1], s[1][1]);
    const __m512 p2 = _mm512_add_ps(s[0][2], s[1][2]);
    /* columns 0..7: p0.lo + p1.hi; 8..15: p0.hi + p2.lo; 16..23: p1.lo + p2.hi */
    const __m512 swapped1 = _mm512_shuffle_f32x4(p1, p1, 0x4E), swapped2 = _mm512_shuffle_f32x4(p2, p2, 0x4E);
    _mm256_storeu_ps(acc, _mm256_add_ps(_mm512_castps512_ps256(p0), _mm512_castps512_ps256(swapped1)));
    _mm256_storeu_ps(acc + 8, _mm256_add_ps(_mm512_extractf32x8_ps(p0, 1), _mm512_castps512_ps256(p2)));
    _mm256_storeu_ps(acc + 16, _mm256_add_ps(_mm512_castps512_ps256(p1), _mm512_castps512_ps256(swapped2)));
}

TARGET512 static void row_zmm16(long K, const float *a, const float *panel, float *acc) {
    __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, o0 = e0, o1 = e0, o2 = e0;
    for (long k = 0; k < K; k += 2) {
        const float *w = panel + k * 48;
        const __m512 x0 = _mm512_set1_ps(a[k]), x1 = _mm512_set1_ps(a[k + 1]);
        e0 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w), e0);
        e1 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w + 16), e1);
        e2 = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w + 32), e2);
        o0 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w + 48), o0);
        o1 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w + 64), o1);
        o2 = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w + 80), o2);
    }
    _mm512_storeu_ps(acc, _mm512_add_ps(e0, o0));
    _mm512_storeu_ps(acc + 16, _mm512_add_ps(e1, o1));
    _mm512_storeu_ps(acc + 32, _mm512_add_ps(e2, o2));
}

TARGET512 static void step_row(int kind, long H, const float *a, const float *panels, float *acc) {
    const long blocks = H / 8;
    if (kind == 0)
        for (long u = 0; u < blocks; u++) row_ymm(H, a, panels + u * H * 24, acc + u * 24);
    else if (kind == 4)
        for (long u = 0; u < blocks; u++) row_kpair(H, a, panels + u * H * 24, acc + u * 24);
    else if (kind == 3)
        for (long u = 0; u < blocks; u++) row_zy(H, a, panels + u * H * 24, acc + u * 24);
    else if (kind == 1)
        for (long u = 0; u < blocks; u += 2) row_zmm8x2(H, a, panels + u * H * 24, panels + (u + 1) * H * 24, acc + u * 24);
    else
        for (long u = 0; u < blocks; u += 2) row_zmm16(H, a, panels + u * H * 24, acc + u * 24);
}

/* ------------------------------------------------------------------ references: FMA peak, read */

#define REPEAT8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define REPEAT16(X) REPEAT8(X) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

/* 16 independent FMA chains in registers (fma_peak.c's loop), spelled out so no compiler keeps them
 * in an array in memory */
TARGET512 static double fma_peak_512(long reps) {
    const __m512 m = _mm512_set1_ps(0.99999994f), c = _mm512_set1_ps(1e-6f);
#define DECLARE(i) __m512 a##i = _mm512_set1_ps((float)(i));
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define SUM(i) total += _mm512_reduce_add_ps(a##i);
    REPEAT16(DECLARE)
    for (long r = 0; r < reps; r++) {
        REPEAT16(STEP)
    }
    double total = 0;
    REPEAT16(SUM)
    return total;
#undef DECLARE
#undef STEP
#undef SUM
}

/* read_kernel.c's 512-bit loop: 8 accumulators, one add per loaded vector */
TARGET512 static double read_512(const float *buf, size_t n) {
#define DECLARE(i) __m512 s##i = _mm512_setzero_ps();
#define STEP(i) s##i = _mm512_add_ps(s##i, _mm512_loadu_ps(buf + j + 16 * (i)));
#define SUM(i) total += _mm512_reduce_add_ps(s##i);
    REPEAT8(DECLARE)
    for (size_t j = 0; j + 128 <= n; j += 128) {
        REPEAT8(STEP)
    }
    double total = 0;
    REPEAT8(SUM)
    return total;
#undef DECLARE
#undef STEP
#undef SUM
}

static volatile double sink;

/* ------------------------------------------------------------------ harness */

#define BEST_OF 15 /* samples of the FMA peak */

/* Rounds in which every candidate takes one sample, in turn, so load bursts from other processes hit
 * all of them alike; each candidate's figure is its best sample. */
#define ROUNDS 40

/* The rows each product kind needs a multiple of (8: every tile of 8 rows). */
static long rows_multiple(int kind) { return kind == 4 ? 16 : kind == 5 ? 32 : 8; }

static void best_seconds_products(int kinds, long H, long rows, const float *a, float *aT, const float *panels,
                                  float *acc, int reps, double *best) {
    for (int kind = 0; kind < kinds; kind++) best[kind] = 1e30;
    for (int round = 0; round < ROUNDS; round++)
        for (int kind = 0; kind < kinds; kind++) {
            if (rows % rows_multiple(kind)) continue;
            const double t0 = bench_now();
            for (int r = 0; r < reps; r++) step_products(kind, H, rows, a, aT, panels, acc);
            const double t = (bench_now() - t0) / reps;
            best[kind] = t < best[kind] ? t : best[kind];
        }
}

static void best_seconds_row(int kinds, long H, const float *a, const float *panels, float *acc, int reps,
                             double *best) {
    for (int kind = 0; kind < kinds; kind++) best[kind] = 1e30;
    for (int round = 0; round < ROUNDS; round++)
        for (int kind = 0; kind < kinds; kind++) {
            const double t0 = bench_now();
            for (int r = 0; r < reps; r++) step_row(kind, H, a, panels, acc);
            const double t = (bench_now() - t0) / reps;
            best[kind] = t < best[kind] ? t : best[kind];
        }
}

int main(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq")) {
        printf("this CPU lacks AVX-512F/DQ: nothing to compare\n");
        return 0;
    }
    double peak = 0;
    for (int b = 0; b < BEST_OF; b++) {
        const long reps = 2000000;
        const double t0 = bench_now();
        sink = fma_peak_512(reps);
        const double g = reps * 16.0 * 16 * 2 / (bench_now() - t0) / 1e9;
        peak = g > peak ? g : peak;
    }
    printf("512-bit FMA peak, 1 thread: %.1f GFLOP/s\n\n", peak);

    printf("R = 8 row tiles, one step's products (block-outer), GFLOP/s and %% of the peak:\n");
    const long shapes[][2] = {{512, 64}, {512, 16}, {1024, 32}, {1024, 8}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const long H = shapes[s][0], rows = shapes[s][1];
        float *a = aligned_alloc(64, (size_t)(rows * H) * 4), *aT = aligned_alloc(64, (size_t)(rows * H) * 4);
        float *panels = aligned_alloc(64, (size_t)(3 * H * H + 16 * H) * 4);
        float *acc = aligned_alloc(64, (size_t)(rows * 48) * 4);
        for (long i = 0; i < rows * H; i++) a[i] = (float)((i * 7) % 13) * 0.01f;
        for (long i = 0; i < 3 * H * H + 16 * H; i++) panels[i] = (float)((i * 5) % 11) * 0.01f;
        const double flops = 2.0 * rows * 3 * H * H;
        printf("  H=%ld (K=%ld) rows=%ld:", H, H, rows);
        static const char *const names[] = {"ymm8", "zmm8x2", "zmm16", "zmm8x2/padded", "t16x24", "t32x12"};
        double best[6];
        best_seconds_products(6, H, rows, a, aT, panels, acc, 3, best);
        for (int kind = 0; kind < 6; kind++) {
            const double t = best[kind];
            if (rows % rows_multiple(kind)) printf("  %s -", names[kind]);
            else printf("  %s %.1f (%.0f%%)", names[kind], flops / t / 1e9, 100 * flops / t / 1e9 / peak);
        }
        printf("\n");
        free(aT);
        free(a);
        free(panels);
        free(acc);
    }

    printf("\nR = 1 (batch 1): one step's products over all of W_hh, GB/s of weights and %% of the read rate:\n");
    const long hiddens[] = {256, 512, 1024};
    for (size_t s = 0; s < sizeof hiddens / sizeof hiddens[0]; s++) {
        const long H = hiddens[s];
        const size_t n = (size_t)(3 * H * H);
        float *a = aligned_alloc(64, (size_t)H * 4), *panels = aligned_alloc(64, n * 4);
        float *acc = aligned_alloc(64, (size_t)(3 * H + 48) * 4);
        for (long i = 0; i < H; i++) a[i] = (float)(i % 13) * 0.01f;
        for (size_t i = 0; i < n; i++) panels[i] = (float)((i * 5) % 11) * 0.01f;
        double read = 0;
        for (int b = 0; b < ROUNDS; b++) {
            const double t0 = bench_now();
            for (int r = 0; r < 10; r++) sink = read_512(panels, n);
            const double g = 10.0 * n * 4 / (bench_now() - t0) / 1e9;
            read = g > read ? g : read;
        }
        printf("  H=%ld (W_hh %.2f MiB), read loop %.1f GB/s:", H, n * 4 / 1048576.0, read);
        double best[5];
        best_seconds_row(5, H, a, panels, acc, 10, best);
        for (int kind = 0; kind < 5; kind++) {
            const double t = best[kind];
            printf("  %s %.1f (%.0f%%)",
                   kind == 0 ? "ymm" : kind == 1 ? "zmm8x2" : kind == 2 ? "zmm16" : kind == 3 ? "zmm+ymm" : "kpair", n * 4 / t / 1e9,
                   100 * n * 4 / t / 1e9 / read);
        }
        printf("\n");
        free(a);
        free(panels);
        free(acc);
    }
    return 0;
}
