/* backward_kernels_avx2.c: the panel product of backward_kernels.h for AVX2+FMA. Only this file is built
 * for that target (by pragma, like kernels_avx2.c); the backward uses it only when the context's kernel
 * set is the AVX2 one, which fg_select_kernels gives only on CPUs with both features. */
#include "backward_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif

#include <immintrin.h>

/* One tile: R (1..3) rows of c times one panel (four vectors of columns). Each weight vector is loaded
 * once for all R rows (from L1: see FG_PANEL_CHUNK). With one row, even and odd k go to separate
 * accumulators: four FMA chains alone would wait on the FMA latency instead of streaming the weights.
 * The accumulators are named variables, not an array: GCC keeps an array of vectors in memory and
 * stores it on every iteration. 12 accumulators + 3 broadcasts + 1 weight vector = all 16 registers.
 * `width` < P: a partial last panel, whose columns past the matrix must not be written. */
#define FG_PANEL_TILE(REAL, VEC, LANES, ZERO, LOAD, BROADCAST, FMA, ADD, STORE, NAME)                    \
    static inline __attribute__((always_inline)) void NAME(int R, int64_t K, const REAL *a, int64_t lda, \
                                                           const REAL *panel, REAL *c, int64_t ldc,      \
                                                           int64_t width) {                             \
        enum { P = FG_PANEL_BYTES / sizeof(REAL) };                                                    \
        VEC s00 = ZERO(), s01 = ZERO(), s02 = ZERO(), s03 = ZERO();                                    \
        VEC s10 = ZERO(), s11 = ZERO(), s12 = ZERO(), s13 = ZERO();                                    \
        VEC s20 = ZERO(), s21 = ZERO(), s22 = ZERO(), s23 = ZERO();                                    \
        int64_t k = 0;                                                                                 \
        if (R == 1) {                                                                                  \
            for (; k + 1 < K; k += 2) {                                                                \
                const VEC a0 = BROADCAST(a + k), a1 = BROADCAST(a + k + 1);                            \
                const REAL *w = panel + k * P;                                                         \
                s00 = FMA(a0, LOAD(w), s00);                                                           \
                s01 = FMA(a0, LOAD(w + LANES), s01);                                                   \
                s02 = FMA(a0, LOAD(w + 2 * LANES), s02);                                               \
                s03 = FMA(a0, LOAD(w + 3 * LANES), s03);                                               \
                s10 = FMA(a1, LOAD(w + P), s10);                                                       \
                s11 = FMA(a1, LOAD(w + P + LANES), s11);                                               \
                s12 = FMA(a1, LOAD(w + P + 2 * LANES), s12);                                           \
                s13 = FMA(a1, LOAD(w + P + 3 * LANES), s13);                                           \
            }                                                                                          \
            s00 = ADD(s00, s10), s01 = ADD(s01, s11), s02 = ADD(s02, s12), s03 = ADD(s03, s13);        \
            s10 = s11 = s12 = s13 = ZERO();                                                            \
        }                                                                                              \
        for (; k < K; k++) {                                                                           \
            const REAL *w = panel + k * P;                                                             \
            const VEC a0 = BROADCAST(a + k);                                                           \
            const VEC a1 = R > 1 ? BROADCAST(a + lda + k) : ZERO();                                    \
            const VEC a2 = R > 2 ? BROADCAST(a + 2 * lda + k) : ZERO();                                \
            VEC weight = LOAD(w);                                                                      \
            s00 = FMA(a0, weight, s00);                                                                \
            if (R > 1) s10 = FMA(a1, weight, s10);                                                     \
            if (R > 2) s20 = FMA(a2, weight, s20);                                                     \
            weight = LOAD(w + LANES);                                                                  \
            s01 = FMA(a0, weight, s01);                                                                \
            if (R > 1) s11 = FMA(a1, weight, s11);                                                     \
            if (R > 2) s21 = FMA(a2, weight, s21);                                                     \
            weight = LOAD(w + 2 * LANES);                                                              \
            s02 = FMA(a0, weight, s02);                                                                \
            if (R > 1) s12 = FMA(a1, weight, s12);                                                     \
            if (R > 2) s22 = FMA(a2, weight, s22);                                                     \
            weight = LOAD(w + 3 * LANES);                                                              \
            s03 = FMA(a0, weight, s03);                                                                \
            if (R > 1) s13 = FMA(a1, weight, s13);                                                     \
            if (R > 2) s23 = FMA(a2, weight, s23);                                                     \
        }                                                                                              \
        for (int r = 0; r < R; r++) {                                                                  \
            const VEC v0 = r == 0 ? s00 : r == 1 ? s10 : s20;                                          \
            const VEC v1 = r == 0 ? s01 : r == 1 ? s11 : s21;                                          \
            const VEC v2 = r == 0 ? s02 : r == 1 ? s12 : s22;                                          \
            const VEC v3 = r == 0 ? s03 : r == 1 ? s13 : s23;                                          \
            REAL *row = c + r * ldc;                                                                   \
            if (width == P) {                                                                          \
                STORE(row, ADD(LOAD(row), v0));                                                        \
                STORE(row + LANES, ADD(LOAD(row + LANES), v1));                                        \
                STORE(row + 2 * LANES, ADD(LOAD(row + 2 * LANES), v2));                                \
                STORE(row + 3 * LANES, ADD(LOAD(row + 3 * LANES), v3));                                \
            } else {                                                                                   \
                REAL partial[P];                                                                       \
                STORE(partial, v0);                                                                    \
                STORE(partial + LANES, v1);                                                            \
                STORE(partial + 2 * LANES, v2);                                                        \
                STORE(partial + 3 * LANES, v3);                                                        \
                for (int64_t j = 0; j < width; j++) row[j] += partial[j];                              \
            }                                                                                          \
        }                                                                                              \
    }

/* Panels outermost, then chunks of FG_PANEL_CHUNK rows of W (16 KB of a panel, in L1) that every row
 * tile reads while they are cached: W streams from memory once per call, not once per row tile. R is a
 * constant in each call so the tile's loops unroll into registers. */
#define FG_PANEL_CHUNK 128
#define FG_PANEL_GEMM(REAL, TILE, NAME)                                                                 \
    void NAME(int64_t rows, int64_t cols, int64_t K, const REAL *a, int64_t lda, const REAL *panels,   \
              int64_t panel_stride, REAL *c, int64_t ldc) {                                             \
        enum { P = FG_PANEL_BYTES / sizeof(REAL) };                                                    \
        for (int64_t j0 = 0; j0 < cols; j0 += P) {                                                     \
            const int64_t width = cols - j0 < P ? cols - j0 : P;                                       \
            for (int64_t k0 = 0; k0 < K; k0 += FG_PANEL_CHUNK) {                                       \
                const REAL *panel = panels + (j0 / P) * panel_stride + k0 * P;                         \
                const int64_t kc = K - k0 < FG_PANEL_CHUNK ? K - k0 : FG_PANEL_CHUNK;                  \
                const REAL *a0 = a + k0;                                                               \
                int64_t r = 0;                                                                         \
                for (; r + 3 <= rows; r += 3) TILE(3, kc, a0 + r * lda, lda, panel, c + r * ldc + j0, ldc, width); \
                if (rows - r == 2) TILE(2, kc, a0 + r * lda, lda, panel, c + r * ldc + j0, ldc, width); \
                else if (rows - r == 1) TILE(1, kc, a0 + r * lda, lda, panel, c + r * ldc + j0, ldc, width); \
            }                                                                                          \
        }                                                                                              \
    }

FG_PANEL_TILE(float, __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
              _mm256_add_ps, _mm256_storeu_ps, panel_tile_f32)
FG_PANEL_TILE(double, __m256d, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd,
              _mm256_add_pd, _mm256_storeu_pd, panel_tile_f64)
FG_PANEL_GEMM(float, panel_tile_f32, fg_panel_gemm_f32_avx2)
FG_PANEL_GEMM(double, panel_tile_f64, fg_panel_gemm_f64_avx2)

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif
