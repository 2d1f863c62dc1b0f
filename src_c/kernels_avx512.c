/* kernels_avx512.c: the tables on 512-bit vectors, for CPUs whose 512-bit FMAs run at full rate (cpu.c
 * decides): float32 panel products over two adjacent unit blocks at once, whose 48 columns are three
 * 512-bit vectors, the gate math of the two blocks in one 512-bit vector per gate, and (with AVX-512
 * VNNI) int8 products on 512-bit vpdpbusd. float64 and, without VNNI, int8 take the AVX2 kernels.
 *
 * Why pairs of 8-unit blocks and not 16-unit blocks: the packed layout (internal.h) stays the same
 * for every table, so forcing another table never repacks a model, and the tape, the backward and the
 * int8 panels do not depend on the table. bench/panel_product.c measured the cost on a Zen 5 (family
 * 26 model 2, one core, 512-bit FMA peak 265.6 GFLOP/s in the same run; docs/kernels.md has the
 * table): 8-row tiles over two 8-unit blocks reach 94-96% of that peak at K = 512 and 1024, 16-unit
 * panels 95-97%; at batch 1 the one-block product below (two k at once, three full 512-bit loads per
 * 48 weights) streams W_hh at 94-98% of the 512-bit read loop's rate from L2 and L3, 16-unit panels at
 * 93-97%.
 *
 * Only this file is built for AVX-512 (by pragma, never by a build flag); fg_select_kernels uses its
 * tables only on CPUs that report the features (status.c). */
#include "templates.h"

#if defined(__x86_64__) || defined(_M_X64)

/* prefer-vector-width: the gate math is plain C that the compiler vectorises; some GCC tunings would
 * split its 16-unit loops into two 256-bit halves. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512")
#endif

#include <immintrin.h>

#include "activations.h"

/* the gate math of every kernel below (gate_math_f32, gate_math_pair_f32): inlined, it is compiled for
 * this file's target, so its 16-unit loops are 512-bit */
#define REAL float
#define SFX f32
#include "gates_impl.h"

/* Lanes 0..7 of a from a, 8..15 from b. */
#define FG_HALVES(a, b) _mm512_mask_blend_ps(0xFF00, (a), (b))
/* The upper 256 bits of a, then the lower 256 bits of b. */
#define FG_HIGH_LOW(a, b) _mm512_shuffle_f32x4((a), (b), 0x4E)

/* Two blocks' rows of C four-byte columns each (a float32 panel row, an int8 panel's 4 k of each
 * column, a block's int32 column sums: 4C bytes at u and at v) as the 2C / 16 512-bit vectors of the
 * two-block products: C = 24: u's 0..15, u's 16..23 with v's 0..7, v's 8..23; C = 16: u's, v's; C = 8:
 * u's with v's. */
FG_INLINE void pair_vectors(int C, const void *u, const void *v, __m512 *out) {
    const float *a = (const float *)u, *b = (const float *)v;
    if (C == 24) {
        out[0] = _mm512_loadu_ps(a);
        out[1] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a + 16)), _mm256_loadu_ps(b), 1);
        out[2] = _mm512_loadu_ps(b + 8);
    } else if (C == 16) {
        out[0] = _mm512_loadu_ps(a);
        out[1] = _mm512_loadu_ps(b);
    } else {
        out[0] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a)), _mm256_loadu_ps(b), 1);
    }
}

/* Stores the 2C / 16 vectors of a two-block product row (pair_vectors' order: u's C columns, then v's)
 * at out, as they are or deinterleaved by gate: gate g of both blocks at [16g, 16g + 16). Bit moves
 * only, so int32 sums pass through it as well. */
FG_INLINE void pair_store(int C, const __m512 *t, int deinterleave, float *out) {
    if (!deinterleave || C == 8) {
        /* C = 8: [u's n | v's n] is already gate 0 of both */
        for (int v = 0; v < 2 * C / 16; v++) _mm512_storeu_ps(out + 16 * v, t[v]);
    } else if (C == 24) {
        /* t[0] = [r_u z_u], t[1] = [n_u r_v], t[2] = [z_v n_v] */
        _mm512_storeu_ps(out, FG_HALVES(t[0], t[1]));
        _mm512_storeu_ps(out + 16, FG_HIGH_LOW(t[0], t[2]));
        _mm512_storeu_ps(out + 32, FG_HALVES(t[1], t[2]));
    } else {
        /* t[0] = [r_u z_u], t[1] = [r_v z_v] */
        _mm512_storeu_ps(out, _mm512_shuffle_f32x4(t[0], t[1], 0x44));
        _mm512_storeu_ps(out + 16, _mm512_shuffle_f32x4(t[0], t[1], 0xEE));
    }
}

/* Requests into L1 the bytes [2 KiB, 2 KiB + bytes) ahead of p: a batch-1 product streams W_hh from
 * L3 at the pace the hardware prefetchers keep, and this ahead of the loads measured 12-18% more per
 * step on the Zen 5 at H = 512 and 1024 (W_hh in L3; no change at H = 256, in L2; prefetching into
 * L2 instead lost 15%), 3-7% per call of a batch-1 sequence. The int8 product, a quarter of the bytes
 * per multiply-add, lost 4-6% with it and goes without (at H = 2816, 23.8 MB of W_hh, 2 to 32 KiB
 * ahead into L1 or L2 lost 7-27%). A prefetch never faults, so past the end of a panel it is only a
 * wasted fetch. */
#define FG_PREFETCH_AHEAD(p, bytes)                                                                   \
    for (int line = 0; line < (bytes); line += 64) _mm_prefetch((const char *)(p) + 2048 + line, _MM_HINT_T0)

/* ---------------------------------------------------------------- batch 1: one row, one block
 *
 * At one row the product reads every weight once: its pace is how fast the weights stream in. Rows k
 * and k + 1 of a (K, C) panel are 2C adjacent floats, so two k at once are 2C / 16 full 512-bit
 * loads of one stream; for C = 24 the middle vector holds k's columns 16..23 and k + 1's 0..7 and is
 * multiplied by the blend of the two broadcasts. Two sets of k pairs (k = 0, 1 mod 4 and 2, 3 mod 4)
 * keep 2 * 2C / 16 FMA chains in flight. The sums are then folded back to C columns: a deterministic
 * order, but not the 8-row tiles' (a row's bits depend on the tile it falls in, as in every table).
 * out + g * gate_stride receives gate g's 8 columns. */
FG_INLINE void row_f32_avx512(int C, int64_t K, const float *a, const float *panel, float *out, int gate_stride) {
    __m512 s[2][3];
    for (int j = 0; j < 2; j++)
        for (int v = 0; v < 3; v++) s[j][v] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 3 < K; k += 4)
        for (int j = 0; j < 2; j++) {
            const float *w = panel + (k + 2 * j) * C;
            FG_PREFETCH_AHEAD(w, 2 * C * 4);
            const __m512 x0 = _mm512_set1_ps(a[k + 2 * j]), x1 = _mm512_set1_ps(a[k + 2 * j + 1]);
            if (C == 24) {
                s[j][0] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w), s[j][0]);
                s[j][1] = _mm512_fmadd_ps(FG_HALVES(x0, x1), _mm512_loadu_ps(w + 16), s[j][1]);
                s[j][2] = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w + 32), s[j][2]);
            } else if (C == 16) {
                s[j][0] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w), s[j][0]);
                s[j][1] = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w + 16), s[j][1]);
            } else {
                s[j][0] = _mm512_fmadd_ps(FG_HALVES(x0, x1), _mm512_loadu_ps(w), s[j][0]);
            }
        }
    /* the last K % 4 inputs, one k at a time into the first set (masked where a vector spans two k) */
    for (; k < K; k++) {
        const float *w = panel + k * C;
        const __m512 x = _mm512_set1_ps(a[k]);
        if (C == 24) {
            s[0][0] = _mm512_fmadd_ps(x, _mm512_loadu_ps(w), s[0][0]);
            s[0][1] = _mm512_mask3_fmadd_ps(x, _mm512_castps256_ps512(_mm256_loadu_ps(w + 16)), s[0][1], 0x00FF);
        } else if (C == 16) {
            s[0][0] = _mm512_fmadd_ps(x, _mm512_loadu_ps(w), s[0][0]);
        } else {
            s[0][0] = _mm512_mask3_fmadd_ps(x, _mm512_castps256_ps512(_mm256_loadu_ps(w)), s[0][0], 0x00FF);
        }
    }
    const __m512 p0 = _mm512_add_ps(s[0][0], s[1][0]), p1 = _mm512_add_ps(s[0][1], s[1][1]);
    const __m512 p2 = _mm512_add_ps(s[0][2], s[1][2]);
    if (C == 24) {
        /* columns 0..7: p0's low half (even k) + p1's high half (odd k); 8..15: p0 high + p2 low; 16..23:
         * p1 low + p2 high */
        _mm256_storeu_ps(out, _mm256_add_ps(_mm512_castps512_ps256(p0), _mm512_extractf32x8_ps(p1, 1)));
        _mm256_storeu_ps(out + gate_stride, _mm256_add_ps(_mm512_extractf32x8_ps(p0, 1), _mm512_castps512_ps256(p2)));
        _mm256_storeu_ps(out + 2 * gate_stride,
                         _mm256_add_ps(_mm512_castps512_ps256(p1), _mm512_extractf32x8_ps(p2, 1)));
    } else if (C == 16) {
        const __m512 sum = _mm512_add_ps(p0, p1);
        _mm256_storeu_ps(out, _mm512_castps512_ps256(sum));
        _mm256_storeu_ps(out + gate_stride, _mm512_extractf32x8_ps(sum, 1));
    } else {
        _mm256_storeu_ps(out, _mm256_add_ps(_mm512_castps512_ps256(p0), _mm512_extractf32x8_ps(p0, 1)));
    }
}

/* ---------------------------------------------------------------- one block, R rows
 *
 * acc[r][0:C] (+)= sum_k a[r][k] * panel[k][0:C], acc rows 48 apart (kernels_impl.h, FG_ACC_COLUMNS;
 * accumulate continues the sums in acc, its K-blocking): a block left without a partner. Its columns 0..15 are one 512-bit vector and 16..23 a 256-bit one, each
 * output the same chain of FMAs in k order as in the two-block product below, so pairing changes no
 * bit. One row: row_f32_avx512. */
FG_INLINE void dot_f32_avx512(int R, int C, int64_t K, const float *a, int64_t lda, const float *panel, float *acc,
                              int accumulate) {
    if (R == 1) { /* never continued: kernels_impl.h takes a single row's K in one pass */
        row_f32_avx512(C, K, a, panel, acc, 8);
        return;
    }
    __m512 wide[8];
    __m256 narrow[8];
    for (int r = 0; r < R; r++) {
        wide[r] = accumulate && C >= 16 ? _mm512_loadu_ps(acc + r * 48) : _mm512_setzero_ps();
        narrow[r] = accumulate && C != 16 ? _mm256_loadu_ps(acc + r * 48 + (C == 24 ? 16 : 0)) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < K; k++) {
        const float *w = panel + k * C;
        const __m512 w16 = C >= 16 ? _mm512_loadu_ps(w) : _mm512_setzero_ps();
        const __m256 w8 = C == 24 ? _mm256_loadu_ps(w + 16) : C == 8 ? _mm256_loadu_ps(w) : _mm256_setzero_ps();
        for (int r = 0; r < R; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            if (C >= 16) wide[r] = _mm512_fmadd_ps(x, w16, wide[r]);
            if (C != 16) narrow[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(x), w8, narrow[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        if (C >= 16) _mm512_storeu_ps(acc + r * 48, wide[r]);
        if (C != 16) _mm256_storeu_ps(acc + r * 48 + (C == 24 ? 16 : 0), narrow[r]);
    }
}

/* ---------------------------------------------------------------- two blocks, R rows
 *
 * The products of two adjacent blocks' panels (C columns each) at once: 2C columns, 2C / 16 vectors of
 * 16 per row and k. For C = 24 the middle vector is block u's columns 16..23 with block v's 0..7 (one
 * 256-bit load and one insert: the two panels are H * C floats apart). 8 rows x 3 vectors = 24
 * accumulators, 3 weight vectors and a broadcast: 28 of AVX-512's 32 registers. The accumulators come
 * out either as the two blocks' columns one after the other (the projection, which writes gates_x in
 * that order) or deinterleaved, gate g of both blocks in [16g, 16g + 16) (the step's gate math).
 * One row: row_f32_avx512 for each block. */
FG_INLINE void pair_dot_f32_avx512(int R, int C, int64_t K, const float *a, int64_t lda, const float *panel_u,
                                   const float *panel_v, float *acc, int deinterleave, int accumulate) {
    if (R == 1) { /* never continued (kernels_impl.h) */
        row_f32_avx512(C, K, a, panel_u, acc, deinterleave ? 16 : 8);
        row_f32_avx512(C, K, a, panel_v, acc + (deinterleave ? 8 : C), deinterleave ? 16 : 8);
        return;
    }
    const int V = 2 * C / 16;
    __m512 sum[8][3];
    /* continued sums come back in the order the vectors hold them: u's C columns, then v's */
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 3; v++)
            sum[r][v] = accumulate && v < V ? _mm512_loadu_ps(acc + r * 48 + 16 * v) : _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 weights[3];
        pair_vectors(C, panel_u + k * C, panel_v + k * C, weights);
        for (int r = 0; r < R; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            for (int v = 0; v < V; v++) sum[r][v] = _mm512_fmadd_ps(x, weights[v], sum[r][v]);
        }
    }
    for (int r = 0; r < R; r++) pair_store(C, sum[r], deinterleave, acc + r * 48);
}

/* out = the `gates` gates of two adjacent full blocks in packed order ([g0 g1 ..] of u, then of v, 8
 * each) deinterleaved by gate: gate g of both at [16g, 16g + 16). In registers: gathering 8-float
 * halves through memory would make the 512-bit loads after it wait for two stores each. */
FG_INLINE void pair_gather_f32_avx512(int gates, const float *packed, float *out) {
    /* the two blocks' gates are adjacent, [u's 8 * gates | v's]: the vectors of a product row */
    __m512 t[3];
    for (int v = 0; v < gates; v++) t[v] = _mm512_loadu_ps(packed + 16 * v);
    pair_store(8 * gates, t, 1, out);
}

/* step_lbr_f32_avx512, step_rb1_f32_avx512, step_rb2_f32_avx512, project_f32_avx512 */
#define REAL float
#define SFX f32
#define ISA avx512
#define FG_ROWS 8
#define DOT dot_f32_avx512
#define PAIR_DOT pair_dot_f32_avx512
#define PAIR_GATHER pair_gather_f32_avx512
#include "kernels_impl.h"

/* ---------------------------------------------------------------- int8 on 512-bit vpdpbusd
 *
 * The products of dot_i8_avx512vl_vnni (kernels_avx2.c) on 512-bit vectors: vpdpbusd multiplies
 * unsigned by signed bytes and adds each group of four into an int32 lane; the offset codes a + 128
 * (internal.h) are that unsigned operand, and the blocks' column sums take 128 * column_sum back out.
 * The sums are exact, so these are the bits of every table. An int8 panel block holds 4 consecutive k of a column together: 4 k of
 * 8 columns are 32 bytes, of 24 columns 96 bytes. */
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,prefer-vector-width=512")
#endif

/* acc += vpdpbusd(x, w), through inline assembly: GCC 12 keeps the intrinsic's accumulator in a copy of
 * the register, a move per product (kernels_avx2.c) */
#define FG_DPBUSD512(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

/* Lanes 0..7 of a from a, 8..15 from b (int32), by an insert: written as a blend, GCC 12 made it a copy
 * and a masked broadcast load, and the batch-1 product (row_i8_avx512_vnni) lost 4% on the Intel Xeon. */
#define FG_HALVES_I(a, b) _mm512_inserti64x4((a), _mm512_castsi512_si256(b), 1)

/* The 4 offset codes a[k..k+3] broadcast to every int32 lane. */
FG_INLINE __m512i quad_i8(const uint8_t *a) {
    int32_t quad;
    memcpy(&quad, a, sizeof quad);
    return _mm512_set1_epi32(quad);
}

/* One row, one block: the batch-1 product, bound by reading the weights as row_f32_avx512 is. Two
 * consecutive groups of 4 k of a block are 2 * 4C adjacent bytes, 2C / 16 full 512-bit loads; for C = 24
 * the middle vector holds the first group's columns 16..23 and the second's 0..7, multiplied by the
 * two broadcasts' halves (FG_HALVES_I). Two sets of group pairs: 16 k per iteration (Kp is a multiple of 16).
 * out + g * gate_stride receives gate g's 8 exact sums. */
FG_INLINE void row_i8_avx512_vnni(int C, int64_t Kp, const uint8_t *a, const char *block, int32_t *out, int gate_stride) {
    const int32_t *column_sum = (const int32_t *)block;
    const int8_t *panel = (const int8_t *)(block + 8 * C);
    __m512i s[2][3];
    for (int j = 0; j < 2; j++)
        for (int v = 0; v < 3; v++) s[j][v] = _mm512_setzero_si512();
    for (int64_t k = 0; k < Kp; k += 16)
        for (int j = 0; j < 2; j++) {
            const int8_t *q = panel + (k + 8 * j) * C;
            const __m512i x0 = quad_i8(a + k + 8 * j), x1 = quad_i8(a + k + 8 * j + 4);
            if (C == 24) {
                const __m512i w0 = _mm512_loadu_si512(q), w1 = _mm512_loadu_si512(q + 64);
                const __m512i w2 = _mm512_loadu_si512(q + 128), mixed = FG_HALVES_I(x0, x1);
                FG_DPBUSD512(s[j][0], x0, w0);
                FG_DPBUSD512(s[j][1], mixed, w1);
                FG_DPBUSD512(s[j][2], x1, w2);
            } else if (C == 16) {
                const __m512i w0 = _mm512_loadu_si512(q), w1 = _mm512_loadu_si512(q + 64);
                FG_DPBUSD512(s[j][0], x0, w0);
                FG_DPBUSD512(s[j][1], x1, w1);
            } else {
                const __m512i w0 = _mm512_loadu_si512(q), mixed = FG_HALVES_I(x0, x1);
                FG_DPBUSD512(s[j][0], mixed, w0);
            }
        }
    const __m512i p0 = _mm512_add_epi32(s[0][0], s[1][0]), p1 = _mm512_add_epi32(s[0][1], s[1][1]);
    const __m512i p2 = _mm512_add_epi32(s[0][2], s[1][2]);
    __m256i gate[3];
    if (C == 24) {
        gate[0] = _mm256_add_epi32(_mm512_castsi512_si256(p0), _mm512_extracti64x4_epi64(p1, 1));
        gate[1] = _mm256_add_epi32(_mm512_extracti64x4_epi64(p0, 1), _mm512_castsi512_si256(p2));
        gate[2] = _mm256_add_epi32(_mm512_castsi512_si256(p1), _mm512_extracti64x4_epi64(p2, 1));
    } else if (C == 16) {
        const __m512i sum = _mm512_add_epi32(p0, p1);
        gate[0] = _mm512_castsi512_si256(sum);
        gate[1] = _mm512_extracti64x4_epi64(sum, 1);
    } else {
        gate[0] = _mm256_add_epi32(_mm512_castsi512_si256(p0), _mm512_extracti64x4_epi64(p0, 1));
    }
    for (int g = 0; g < C / 8; g++) {
        const __m256i offset = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(column_sum + 8 * g)), 7);
        _mm256_storeu_si256((__m256i *)(out + g * gate_stride), _mm256_sub_epi32(gate[g], offset));
    }
}

/* The full tile of pair_dot_i8_avx512_vnni below (8 rows, C = 24: 24 accumulators), its loop as one
 * asm statement with every register named: accumulator (r, v) in zmm(8 + 3r + v), the three weight
 * vectors in zmm0..2 (pair_vectors' order: u's 0..15, u's 16..23 with v's 0..7, v's 8..23) and a
 * row's offset codes, broadcast by a load (no ALU operation on the products' ports), in zmm4. When the
 * codes were signed, making them unsigned here (a vpxord per broadcast, 8 beside 24 vpdpbusd) cost the
 * tile 27% on the Intel Xeon of docs/kernels.md: the offset codes exist for it. Left to allocate the same
 * instructions written one asm each (FG_DPBUSD512), GCC 12 kept one of the 24 accumulators in memory,
 * with a store and a load on its chain every group of 4 k, and reloaded row offsets from the stack;
 * pinning the accumulators with register variables instead is not safe (a sanitizer's calls between
 * two asm statements clobber them: the ThreadSanitizer build of tests/c/test_core.c caught it). Per
 * accumulator the same vpdpbusd in k order as the loop below: the sums (exact anyway) are unchanged.
 * out[r][v] = the sums; Kp, a multiple of 16, is at least 16. */
#define FG_T8_ZERO(n) "vpxord %%zmm" #n ", %%zmm" #n ", %%zmm" #n "\n\t"
#define FG_T8_STORE(n, offset) "vmovdqu64 %%zmm" #n ", " #offset "(%[out])\n\t"
#define FG_T8_ROW(codes, s0, s1, s2)                                                                              \
    "vpbroadcastd " codes ", %%zmm4\n\t"                                                                         \
    "vpdpbusd %%zmm0, %%zmm4, %%zmm" #s0 "\n\t"                                                                   \
    "vpdpbusd %%zmm1, %%zmm4, %%zmm" #s1 "\n\t"                                                                   \
    "vpdpbusd %%zmm2, %%zmm4, %%zmm" #s2 "\n\t"
FG_INLINE void tile8_i8_avx512_vnni(int64_t Kp, const uint8_t *a, int64_t lda, const int8_t *panel_u,
                                    const int8_t *panel_v, __m512i out[8][3]) {
    const uint8_t *lo = a, *hi = a + 4 * lda; /* rows 0..3 and 4..7, at (lo|hi) + {0, 1, 2, 3} * lda */
    const int64_t l3 = 3 * lda;
    int64_t groups = Kp / 4;
    __asm__ volatile(
        FG_T8_ZERO(8) FG_T8_ZERO(9) FG_T8_ZERO(10) FG_T8_ZERO(11) FG_T8_ZERO(12) FG_T8_ZERO(13) FG_T8_ZERO(14)
        FG_T8_ZERO(15) FG_T8_ZERO(16) FG_T8_ZERO(17) FG_T8_ZERO(18) FG_T8_ZERO(19) FG_T8_ZERO(20) FG_T8_ZERO(21)
        FG_T8_ZERO(22) FG_T8_ZERO(23) FG_T8_ZERO(24) FG_T8_ZERO(25) FG_T8_ZERO(26) FG_T8_ZERO(27) FG_T8_ZERO(28)
        FG_T8_ZERO(29) FG_T8_ZERO(30) FG_T8_ZERO(31)
        "1:\n\t"
        "vmovdqu64 (%[u]), %%zmm0\n\t"
        "vmovdqu32 64(%[u]), %%ymm1\n\t"
        "vinserti32x8 $1, (%[v]), %%zmm1, %%zmm1\n\t"
        "vmovdqu64 32(%[v]), %%zmm2\n\t"
        FG_T8_ROW("(%[lo])", 8, 9, 10)
        FG_T8_ROW("(%[lo],%[lda])", 11, 12, 13)
        FG_T8_ROW("(%[lo],%[lda],2)", 14, 15, 16)
        FG_T8_ROW("(%[lo],%[l3])", 17, 18, 19)
        FG_T8_ROW("(%[hi])", 20, 21, 22)
        FG_T8_ROW("(%[hi],%[lda])", 23, 24, 25)
        FG_T8_ROW("(%[hi],%[lda],2)", 26, 27, 28)
        FG_T8_ROW("(%[hi],%[l3])", 29, 30, 31)
        "add $96, %[u]\n\t"
        "add $96, %[v]\n\t"
        "add $4, %[lo]\n\t"
        "add $4, %[hi]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        FG_T8_STORE(8, 0) FG_T8_STORE(9, 64) FG_T8_STORE(10, 128) FG_T8_STORE(11, 192) FG_T8_STORE(12, 256)
        FG_T8_STORE(13, 320) FG_T8_STORE(14, 384) FG_T8_STORE(15, 448) FG_T8_STORE(16, 512) FG_T8_STORE(17, 576)
        FG_T8_STORE(18, 640) FG_T8_STORE(19, 704) FG_T8_STORE(20, 768) FG_T8_STORE(21, 832) FG_T8_STORE(22, 896)
        FG_T8_STORE(23, 960) FG_T8_STORE(24, 1024) FG_T8_STORE(25, 1088) FG_T8_STORE(26, 1152)
        FG_T8_STORE(27, 1216) FG_T8_STORE(28, 1280) FG_T8_STORE(29, 1344) FG_T8_STORE(30, 1408)
        FG_T8_STORE(31, 1472)
        : [u] "+r"(panel_u), [v] "+r"(panel_v), [lo] "+r"(lo), [hi] "+r"(hi), [n] "+r"(groups)
        : [lda] "r"(lda), [l3] "r"(l3), [out] "r"(out)
        : "xmm0", "xmm1", "xmm2", "xmm4", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
          "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",
          "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "memory", "cc");
}
#undef FG_T8_ZERO
#undef FG_T8_STORE
#undef FG_T8_ROW

/* The exact int32 products of two adjacent int8 panel blocks (C columns each) for R rows at once: per
 * group of 4 k, 2C / 16 vectors of 16 columns (C = 24: block u's columns 16..23 with block v's 0..7 in
 * the middle one), each loaded once for all rows. acc rows 48 apart, the two blocks' columns one after
 * the other or deinterleaved by gate (kernels_int8_impl.h, PAIR_DOT). One row: row_i8_avx512_vnni for
 * each block. */
FG_INLINE void pair_dot_i8_avx512_vnni(int R, int C, int64_t Kp, const uint8_t *a, int64_t lda, const char *block_u,
                                       const char *block_v, int32_t *acc, int deinterleave) {
    if (R == 1) {
        row_i8_avx512_vnni(C, Kp, a, block_u, acc, deinterleave ? 16 : 8);
        row_i8_avx512_vnni(C, Kp, a, block_v, acc + (deinterleave ? 8 : C), deinterleave ? 16 : 8);
        return;
    }
    const int8_t *panel_u = (const int8_t *)(block_u + 8 * C), *panel_v = (const int8_t *)(block_v + 8 * C);
    const int V = 2 * C / 16;
    __m512i sum[8][3];
    const int tiled = R == 8 && C == 24 && Kp > 0; /* the whole loop in tile8_i8_avx512_vnni */
    if (tiled) {
        tile8_i8_avx512_vnni(Kp, a, lda, panel_u, panel_v, sum);
    } else {
        for (int r = 0; r < R; r++)
            for (int v = 0; v < 3; v++) sum[r][v] = _mm512_setzero_si512();
    }
    for (int64_t k = tiled ? Kp : 0; k < Kp; k += 4) {
        __m512 vectors[3];
        pair_vectors(C, panel_u + k * C, panel_v + k * C, vectors);
        __m512i weights[3];
        for (int v = 0; v < V; v++) weights[v] = _mm512_castps_si512(vectors[v]);
        for (int r = 0; r < R; r++) {
            const __m512i x = quad_i8(a + r * lda + k);
            for (int v = 0; v < V; v++) FG_DPBUSD512(sum[r][v], x, weights[v]);
        }
    }
    /* 128 * column sum, in the order of the vectors above (the column sums head each block) */
    __m512 sums[3];
    pair_vectors(C, block_u, block_v, sums);
    for (int r = 0; r < R; r++) {
        __m512 t[3];
        for (int v = 0; v < V; v++)
            t[v] = _mm512_castsi512_ps(
                _mm512_sub_epi32(sum[r][v], _mm512_slli_epi32(_mm512_castps_si512(sums[v]), 7)));
        pair_store(C, t, deinterleave, (float *)(acc + r * 48));
    }
}

/* The products of one block alone (a block left without a partner): the 8-row tiles of the pair product
 * with a block of zeros as the partner would cost a second stream; this is the portable loop of
 * kernels_int8_impl.h, vectorised by the compiler (the sums are exact either way). */
FG_INLINE void dot_i8_avx512_vnni(int R, int C, int64_t Kp, const uint8_t *a, int64_t lda, const char *block,
                                  int32_t *acc) {
    if (R == 1) {
        row_i8_avx512_vnni(C, Kp, a, block, acc, 8);
        return;
    }
    const int8_t *panel = (const int8_t *)(block + 8 * C);
    const int32_t *column_sum = (const int32_t *)block;
    const int V = C / 8;
    __m256i sum[4][3];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 3; v++) sum[r][v] = _mm256_setzero_si256();
    for (int64_t k = 0; k < Kp; k += 4) {
        const int8_t *q = panel + k * C;
        __m256i weights[3];
        for (int v = 0; v < V; v++) weights[v] = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
        for (int r = 0; r < R; r++) {
            const __m256i x = _mm512_castsi512_si256(quad_i8(a + r * lda + k));
            for (int v = 0; v < V; v++) FG_DPBUSD512(sum[r][v], x, weights[v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) {
            const __m256i offset = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(column_sum + 8 * v)), 7);
            _mm256_storeu_si256((__m256i *)(acc + r * 24 + 8 * v), _mm256_sub_epi32(sum[r][v], offset));
        }
}

/* step_lbr_i8_avx512_vnni, step_rb1_i8_avx512_vnni, step_rb2_i8_avx512_vnni, project_i8_avx512_vnni,
 * quantize_i8_avx512_vnni */
#define ISA avx512_vnni
#define CODES FG_CODES_OFFSET
#define DOT dot_i8_avx512_vnni
#define PAIR_DOT pair_dot_i8_avx512_vnni
#define PAIR_GATHER pair_gather_f32_avx512
#include "kernels_int8_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif

const fg_kernels fg_kernels_avx512 = {
    .step_lbr_f32 = step_lbr_f32_avx512, .step_rb1_f32 = step_rb1_f32_avx512,
    .step_rb2_f32 = step_rb2_f32_avx512, .project_f32 = project_f32_avx512,
    .step_lbr_f64 = step_lbr_f64_avx2, .step_rb1_f64 = step_rb1_f64_avx2,
    .step_rb2_f64 = step_rb2_f64_avx2, .project_f64 = project_f64_avx2,
    .step_lbr_i8 = step_lbr_i8_avx2, .step_rb1_i8 = step_rb1_i8_avx2,
    .step_rb2_i8 = step_rb2_i8_avx2, .project_i8 = project_i8_avx2,
    .quantize_i8 = quantize_i8_avx2,
    .backward_product_f32 = fg_panel_gemm_f32_avx512, .backward_product_f64 = fg_panel_gemm_f64_avx2,
    .int8_codes = FG_CODES_INT8,
    .step_lbr_i8n = step_lbr_i8n_avx2, .step_rb1_i8n = step_rb1_i8n_avx2,
    .step_rb2_i8n = step_rb2_i8n_avx2, .project_i8n = project_i8n_avx2,
    .quantize_i8n = quantize_i8n_avx2,
    .int8n_codes = FG_CODES_OFFSET,
};

const fg_kernels fg_kernels_avx512_vnni = {
    .step_lbr_f32 = step_lbr_f32_avx512, .step_rb1_f32 = step_rb1_f32_avx512,
    .step_rb2_f32 = step_rb2_f32_avx512, .project_f32 = project_f32_avx512,
    .step_lbr_f64 = step_lbr_f64_avx2, .step_rb1_f64 = step_rb1_f64_avx2,
    .step_rb2_f64 = step_rb2_f64_avx2, .project_f64 = project_f64_avx2,
    .step_lbr_i8 = step_lbr_i8_avx512_vnni, .step_rb1_i8 = step_rb1_i8_avx512_vnni,
    .step_rb2_i8 = step_rb2_i8_avx512_vnni, .project_i8 = project_i8_avx512_vnni,
    .quantize_i8 = quantize_i8_avx512_vnni,
    .backward_product_f32 = fg_panel_gemm_f32_avx512, .backward_product_f64 = fg_panel_gemm_f64_avx2,
    .int8_codes = FG_CODES_OFFSET,
};

#endif
