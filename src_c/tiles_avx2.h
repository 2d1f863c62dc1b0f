/* tiles_avx2.h: the AVX2 table's panel products, one tile of batch rows over one block's panel:
 * dot_f32_avx2 (float32, also the avx512vl tables' product), dot_i8_avx2 (int8) and dot_i8n_avx2
 * (int8 with narrow weights). Included by
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

/* acc[r][8v:8v+8] = sum[r][v], less the block's 128 * column_sum (its header) for narrow sums, whose
 * activation bytes carry the offset 128 */
static inline __attribute__((always_inline)) void store_i8_sums_avx2(int narrow, int R, int V, __m256i sum[4][3],
                                                                     const char *block, int32_t *acc) {
    const int32_t *column_sum = (const int32_t *)block;
    for (int v = 0; v < V; v++) {
        const __m256i offset = narrow ? _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(column_sum + 8 * v)), 7)
                                      : _mm256_setzero_si256();
        for (int r = 0; r < R; r++)
            _mm256_storeu_si256((__m256i *)(acc + r * 24 + 8 * v), _mm256_sub_epi32(sum[r][v], offset));
    }
}

/* acc[r][0:C] = sum_k a[r][k] * q[k][0:C] for R rows of activation codes and an int8 panel in
 * [k/4][c][k%4] order (C = 8, 16 or 24; acc rows 24 apart); the same exact int32 sums as the portable
 * dot_generic of kernels_int8_impl.h. vpmaddubsw multiplies unsigned by signed bytes and adds adjacent
 * pairs into int16 with saturation, and vpmaddwd against ones then adds the pairs into int32. Two ways
 * to keep the pairs under 32767, `narrow` a constant of each caller:
 *   - 8-bit weights (narrow 0; code bytes FG_CODES_INT8, internal.h): fed codes + 128 (up to 255) a
 *     pair could reach 2 * 255 * 127, so the product takes |a| (unsigned, <= 127) against q with a's
 *     sign applied (vpsignb, |.| <= 127): at most 2 * 127 * 127 = 32258, and |a| * (sign(a) q) = a q.
 *     Per 32 weights one vpsignb, vpmaddubsw, vpmaddwd and vpaddd; one vpabsb per broadcast.
 *   - narrow weights (narrow 1: every code within +-64, FG_I8_NARROW; code bytes FG_CODES_OFFSET, a +
 *     128): the bytes as they are against q, at most 2 * 255 * 64 = 32640, and the block's 128 *
 *     column_sum (its header) off once at the end. No vpsignb. */
static inline __attribute__((always_inline)) void dot_i8_rows_avx2(int narrow, int R, int C, int64_t Kp,
                                                                   const uint8_t *a, int64_t lda, const char *block,
                                                                   int32_t *acc) {
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
            const __m256i x = _mm256_set1_epi32(quad), magnitude = narrow ? x : _mm256_abs_epi8(x);
            for (int v = 0; v < V; v++) {
                const __m256i pairs = _mm256_maddubs_epi16(magnitude, narrow ? weights[v] : _mm256_sign_epi8(weights[v], x));
                sum[r][v] = _mm256_add_epi32(sum[r][v], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    store_i8_sums_avx2(narrow, R, V, sum, block, acc);
}

static inline __attribute__((always_inline)) void dot_i8_avx2(int R, int C, int64_t Kp, const uint8_t *a,
                                                              int64_t lda, const char *block, int32_t *acc) {
    dot_i8_rows_avx2(0, R, C, Kp, a, lda, block, acc);
}

/* The full tile (4 rows, 24 columns) of the narrow dot_i8_rows_avx2 as one asm statement with every register
 * named: accumulator (r, v) in ymm(4 + 3r + v), a row's offset codes broadcast by a load into ymm0, the
 * product in ymm1, the ones in ymm2, the weights read as memory operands of vpmaddubsw: 15 of AVX2's 16
 * registers. Left to allocate the same intrinsics, GCC 12 loaded the 3 weight vectors of a group of 4 k
 * into registers besides the 12 accumulators and so kept 6-7 accumulators on the stack, a store and a
 * load on their chains (66 stack references in the loop, by objdump), inlined into the step kernels or
 * not. On the Zen 3 of docs/kernels.md whole 7-bit int8 batch calls ran 1.10-1.17x faster with this
 * tile. (dot_i8_avx2's loop, written so with the weights loaded per row for its vpsignb, ran 8% slower
 * than the compiler's, spills and all, and stays in intrinsics.) Per accumulator the same operations in k
 * order as dot_i8_rows_avx2: the sums (exact anyway) are unchanged. out[r][v] = the sums before the
 * 128 * column_sum; Kp, a multiple of 16, is at least 16. */
#define FG_T4_ZERO(n) "vpxor %%ymm" #n ", %%ymm" #n ", %%ymm" #n "\n\t"
#define FG_T4_STORE(n, offset) "vmovdqu %%ymm" #n ", " #offset "(%[out])\n\t"
#define FG_T4_PRODUCT(offset, s)                                                                                  \
    "vpmaddubsw " #offset "(%[q]), %%ymm0, %%ymm1\n\t"                                                           \
    "vpmaddwd %%ymm2, %%ymm1, %%ymm1\n\t"                                                                        \
    "vpaddd %%ymm1, %%ymm" #s ", %%ymm" #s "\n\t"
#define FG_T4_ROW(codes, s0, s1, s2)                                                                              \
    "vpbroadcastd " codes ", %%ymm0\n\t" FG_T4_PRODUCT(0, s0) FG_T4_PRODUCT(32, s1) FG_T4_PRODUCT(64, s2)
static inline __attribute__((always_inline)) void tile4_i8n_avx2(int64_t Kp, const uint8_t *a, int64_t lda,
                                                                 const int8_t *panel, __m256i out[4][3]) {
    const int64_t l3 = 3 * lda;
    int64_t groups = Kp / 4;
    const __m256i ones = _mm256_set1_epi16(1);
    __asm__ volatile(
        "vmovdqu %[ones], %%ymm2\n\t"
        FG_T4_ZERO(4) FG_T4_ZERO(5) FG_T4_ZERO(6) FG_T4_ZERO(7) FG_T4_ZERO(8) FG_T4_ZERO(9) FG_T4_ZERO(10)
        FG_T4_ZERO(11) FG_T4_ZERO(12) FG_T4_ZERO(13) FG_T4_ZERO(14) FG_T4_ZERO(15)
        "1:\n\t"
        FG_T4_ROW("(%[a])", 4, 5, 6)
        FG_T4_ROW("(%[a],%[lda])", 7, 8, 9)
        FG_T4_ROW("(%[a],%[lda],2)", 10, 11, 12)
        FG_T4_ROW("(%[a],%[l3])", 13, 14, 15)
        "add $96, %[q]\n\t"
        "add $4, %[a]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        FG_T4_STORE(4, 0) FG_T4_STORE(5, 32) FG_T4_STORE(6, 64) FG_T4_STORE(7, 96) FG_T4_STORE(8, 128)
        FG_T4_STORE(9, 160) FG_T4_STORE(10, 192) FG_T4_STORE(11, 224) FG_T4_STORE(12, 256) FG_T4_STORE(13, 288)
        FG_T4_STORE(14, 320) FG_T4_STORE(15, 352)
        : [q] "+r"(panel), [a] "+r"(a), [n] "+r"(groups)
        : [lda] "r"(lda), [l3] "r"(l3), [out] "r"(out), [ones] "m"(ones)
        : "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
          "xmm13", "xmm14", "xmm15", "memory", "cc");
}
#undef FG_T4_ZERO
#undef FG_T4_STORE
#undef FG_T4_PRODUCT
#undef FG_T4_ROW

static inline __attribute__((always_inline)) void dot_i8n_avx2(int R, int C, int64_t Kp, const uint8_t *a,
                                                               int64_t lda, const char *block, int32_t *acc) {
    if (R == 4 && C == 24 && Kp > 0) {
        __m256i sum[4][3];
        tile4_i8n_avx2(Kp, a, lda, (const int8_t *)(block + 8 * 24), sum);
        store_i8_sums_avx2(1, 4, 3, sum, block, acc);
    } else {
        dot_i8_rows_avx2(1, R, C, Kp, a, lda, block, acc);
    }
}

#ifdef FG_TILES_TARGET
#if defined(__clang__)
FG_TILES_PRAGMA(clang attribute pop)
#else
FG_TILES_PRAGMA(GCC pop_options)
#endif
#endif

#endif
