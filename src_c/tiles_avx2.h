/* tiles_avx2.h: the AVX2 table's panel products, one tile of batch rows over one block's panel:
 * dot_f32_avx2 (float32, also the avx512vl tables' product) and dot_i8_avx2 (int8). Included by
 * kernels_avx2.c, inside its AVX2 target region, and by the benchmark's harnesses
 * (bench/panel_product.c, bench/panel_product_avx2.c), which time these very tiles alone and define
 * FG_TILES_TARGET, the target string these functions are then compiled for (kernels_avx2.c does not:
 * its own region selects the instructions). Nothing here needs the rest of the core. */
#ifndef FASTGRU_TILES_AVX2_H
#define FASTGRU_TILES_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#ifdef FG_TILES_TARGET
#define FG_TILES_PRAGMA_(text) _Pragma(#text)
#define FG_TILES_PRAGMA(text) FG_TILES_PRAGMA_(text)
#if defined(__clang__)
FG_TILES_PRAGMA(clang attribute push(__attribute__((target(FG_TILES_TARGET))), apply_to = function))
#else
FG_TILES_PRAGMA(GCC push_options)
FG_TILES_PRAGMA(GCC target(FG_TILES_TARGET))
#endif
#endif

/* acc[r][0:C] (+)= sum_k a[r][k] * panel[k][0:C] (C = 8, 16 or 24; acc rows 24 apart; R <= 8, and R > 4
 * only where AVX-512VL gives 32 registers; accumulate: continue the sums in acc, kernels_impl.h's
 * K-blocking). Each weight vector is loaded once and used for all R rows.
 * With one row, even and odd k go to separate accumulators: three FMA chains alone would wait on the
 * FMA latency instead of on memory. */
static inline __attribute__((always_inline)) void dot_f32_avx2(int R, int C, int64_t K, const float *a,
                                                               int64_t lda, const float *panel, float *acc,
                                                               int accumulate) {
    const int V = C / 8;
    __m256 sum[8][3], odd[3];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 3; v++)
            sum[r][v] = accumulate && v < V ? _mm256_loadu_ps(acc + r * 24 + 8 * v) : _mm256_setzero_ps();
    for (int v = 0; v < 3; v++) odd[v] = _mm256_setzero_ps();
    int64_t k = 0;
    if (R == 1) {
        for (; k + 1 < K; k += 2) {
            const __m256 a0 = _mm256_broadcast_ss(a + k), a1 = _mm256_broadcast_ss(a + k + 1);
            const float *w = panel + k * C;
            for (int v = 0; v < V; v++) {
                sum[0][v] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(w + 8 * v), sum[0][v]);
                odd[v] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(w + C + 8 * v), odd[v]);
            }
        }
    }
    for (; k < K; k++) {
        const float *w = panel + k * C;
        __m256 weights[3];
        for (int v = 0; v < V; v++) weights[v] = _mm256_loadu_ps(w + 8 * v);
        for (int r = 0; r < R; r++) {
            const __m256 a_rk = _mm256_broadcast_ss(a + r * lda + k);
            for (int v = 0; v < V; v++) sum[r][v] = _mm256_fmadd_ps(a_rk, weights[v], sum[r][v]);
        }
    }
    if (R == 1)
        for (int v = 0; v < V; v++) sum[0][v] = _mm256_add_ps(sum[0][v], odd[v]);
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) _mm256_storeu_ps(acc + r * 24 + 8 * v, sum[r][v]);
}

/* acc[r][0:C] = sum_k a[r][k] * q[k][0:C] for rows a of int8 codes (FG_CODES_INT8, internal.h) and an
 * int8 panel in [k/4][c][k%4] order (C = 8, 16 or 24; acc rows 24 apart); the same exact int32 sums as
 * the portable dot_generic of kernels_int8_impl.h. vpmaddubsw multiplies unsigned by signed bytes and
 * adds adjacent pairs into int16 with saturation: fed codes + 128 (up to 255), a pair could reach
 * 2 * 255 * 127 and saturate, so it is fed |a| (unsigned, <= 127) against q with a's sign applied
 * (vpsignb, |.| <= 127): a pair is at most 2 * 127 * 127 = 32258 < 32767, so it never saturates and
 * |a| * (sign(a) q) = a q exactly. vpmaddwd against ones then adds the pairs into int32. The |a| of a broadcast serves all C / 8 weight vectors;
 * per 32 weights the cost is one vpsignb, vpmaddubsw, vpmaddwd and vpaddd. */
static inline __attribute__((always_inline)) void dot_i8_avx2(int R, int C, int64_t Kp, const uint8_t *a,
                                                              int64_t lda, const char *block, int32_t *acc) {
    const int8_t *panel = (const int8_t *)(block + 8 * C);
    const int V = C / 8;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i sum[4][3];
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < 3; v++) sum[r][v] = _mm256_setzero_si256();
    for (int64_t k = 0; k < Kp; k += 4) {
        const int8_t *q = panel + k * C;
        __m256i weights[3];
        for (int v = 0; v < V; v++) weights[v] = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
        for (int r = 0; r < R; r++) {
            int32_t quad;
            memcpy(&quad, a + r * lda + k, sizeof quad);
            const __m256i x = _mm256_set1_epi32(quad), magnitude = _mm256_abs_epi8(x);
            for (int v = 0; v < V; v++) {
                const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(weights[v], x));
                sum[r][v] = _mm256_add_epi32(sum[r][v], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) _mm256_storeu_si256((__m256i *)(acc + r * 24 + 8 * v), sum[r][v]);
}

#ifdef FG_TILES_TARGET
#if defined(__clang__)
FG_TILES_PRAGMA(clang attribute pop)
#else
FG_TILES_PRAGMA(GCC pop_options)
#endif
#endif

#endif
