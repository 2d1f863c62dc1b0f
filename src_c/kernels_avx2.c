/* kernels_avx2.c: the kernels of kernels_generic.c compiled for AVX2+FMA, with hand-written panel
 * products for float32 and int8; and the tables of AVX-512 CPUs whose 512-bit FMAs are no faster than
 * two 256-bit ones (Zen 4, Intel parts with one 512-bit FMA unit: cpu.c decides): float32 kernels that
 * take 8 batch rows per panel product in AVX-512VL's 32 registers on 256-bit vectors, and, with AVX-512
 * VNNI, int8 products on vpdpbusd. Only this file is built for those targets (by pragma, not by a
 * build flag, so the package never needs -march=native); fg_select_kernels uses a table only after
 * the CPU has reported its features (status.c). */
#include "templates.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif

#include <immintrin.h>

#include "activations.h"

/* the gate math of every kernel below (gate_math_f32, gate_math_f64): inlined, it is compiled in each
 * kernel's target */
#define REAL float
#define SFX f32
#include "gates_impl.h"
#define REAL double
#define SFX f64
#include "gates_impl.h"

/* dot_f32_avx2, dot_i8_avx2, dot_i8n_avx2: compiled here for AVX2+FMA (and inlined into the avx512vl kernels below) */
#include "tiles_avx2.h"

/* step_lbr_f32_avx2, step_rb1_f32_avx2, step_rb2_f32_avx2, project_f32_avx2 */
#define REAL float
#define SFX f32
#define ISA avx2
#define DOT dot_f32_avx2
#include "kernels_impl.h"

/* step_lbr_f64_avx2, step_rb1_f64_avx2, step_rb2_f64_avx2, project_f64_avx2: the portable product,
 * compiled for AVX2+FMA */
#define REAL double
#define SFX f64
#define ISA avx2
#include "kernels_impl.h"

/* step_lbr_i8_avx2, step_rb1_i8_avx2, step_rb2_i8_avx2, project_i8_avx2, quantize_i8_avx2 */
#define ISA avx2
#define CODES FG_CODES_INT8
#define DOT dot_i8_avx2
#include "kernels_int8_impl.h"

/* step_lbr_i8n_avx2, step_rb1_i8n_avx2, step_rb2_i8n_avx2, project_i8n_avx2, quantize_i8n_avx2: narrow
 * weights (codes within +-64), whose products need no sign operation, on offset code bytes */
#define ISA avx2
#define CODES FG_CODES_OFFSET
#define DOT dot_i8n_avx2
#define NARROW
#include "kernels_int8_impl.h"

/* float32 with 8-row panel products: AVX-512VL's registers ymm16-31 hold the 24 accumulators. The
 * vectors stay 256 bits wide: Zen 4 runs a 512-bit FMA as two 256-bit halves, so wider vectors would
 * add no throughput, while the bigger tile halves the weight loads and the per-product overhead. Built
 * without VNNI: the table of AVX-512 CPUs without it (Skylake-X) runs these too.
 * step_lbr_f32_avx512vl, step_rb1_f32_avx512vl, step_rb2_f32_avx512vl, project_f32_avx512vl */
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")
#endif

#define REAL float
#define SFX f32
#define ISA avx512vl
#define FG_ROWS 8
#define DOT dot_f32_avx2
#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#endif

/* The int8 panel product of dot_i8_avx2 (same exact sums) with vpdpbusd, which multiplies unsigned by
 * signed bytes and adds each group of four into an int32 lane without intermediate saturation. The
 * code bytes a + 128 (FG_CODES_OFFSET, internal.h) are its unsigned operand as they are, so each lane
 * accumulates sum (a + 128) q = sum a q + 128 * column_sum, and the block's column sums (internal.h)
 * take the 128 * column_sum back out. int32 lanes wrap, and the true result fits, so the result is
 * exact.
 * vpdpbusd's latency is several cycles and each accumulator is one dependency chain: with few rows,
 * consecutive groups of k go to separate accumulators (S sets) so enough chains are in flight. */
/* acc += vpdpbusd(x, w). Through inline assembly: GCC 12 keeps the intrinsic's accumulator in a copy
 * of the register, adding a move per product in the loop (a third of its instructions). */
#define FG_DPBUSD_REG(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

static inline __attribute__((always_inline)) void dot_i8_avx512vl_vnni(int R, int C, int64_t Kp,
                                                                       const uint8_t *a, int64_t lda,
                                                                       const char *block, int32_t *acc) {
    const int32_t *column_sum = (const int32_t *)block;
    const int8_t *panel = (const int8_t *)(block + 8 * C);
    const int V = C / 8, S = R == 1 ? 4 : R == 2 ? 2 : 1;
    __m256i sum[4][4][3];
    for (int set = 0; set < S; set++)
        for (int r = 0; r < R; r++)
            for (int v = 0; v < V; v++) sum[set][r][v] = _mm256_setzero_si256();
    for (int64_t k = 0; k < Kp; k += 16)
        for (int group = 0; group < 4; group++) {
            const int set = group % S;
            const int8_t *q = panel + (k + 4 * group) * C;
            /* each weight vector is loaded once for all R rows (as a memory operand of vpdpbusd it
             * would be loaded once per row, and the loads, not the products, would set the pace) */
            __m256i weights[3];
            for (int v = 0; v < V; v++) weights[v] = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
            for (int r = 0; r < R; r++) {
                int32_t quad;
                memcpy(&quad, a + r * lda + k + 4 * group, sizeof quad);
                const __m256i x = _mm256_set1_epi32(quad);
                for (int v = 0; v < V; v++) FG_DPBUSD_REG(sum[set][r][v], x, weights[v]);
            }
        }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) {
            __m256i total = sum[0][r][v];
            for (int set = 1; set < S; set++) total = _mm256_add_epi32(total, sum[set][r][v]);
            const __m256i offset = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(column_sum + 8 * v)), 7);
            _mm256_storeu_si256((__m256i *)(acc + r * 24 + 8 * v), _mm256_sub_epi32(total, offset));
        }
}

/* step_lbr_i8_avx512vl_vnni, step_rb1_i8_avx512vl_vnni, step_rb2_i8_avx512vl_vnni,
 * project_i8_avx512vl_vnni, quantize_i8_avx512vl_vnni */
#define ISA avx512vl_vnni
#define CODES FG_CODES_OFFSET
#define DOT dot_i8_avx512vl_vnni
#include "kernels_int8_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif

const fg_kernels fg_kernels_avx2 = {
    .step_lbr_f32 = step_lbr_f32_avx2, .step_rb1_f32 = step_rb1_f32_avx2,
    .step_rb2_f32 = step_rb2_f32_avx2, .project_f32 = project_f32_avx2,
    .step_lbr_f64 = step_lbr_f64_avx2, .step_rb1_f64 = step_rb1_f64_avx2,
    .step_rb2_f64 = step_rb2_f64_avx2, .project_f64 = project_f64_avx2,
    .step_lbr_i8 = step_lbr_i8_avx2, .step_rb1_i8 = step_rb1_i8_avx2,
    .step_rb2_i8 = step_rb2_i8_avx2, .project_i8 = project_i8_avx2,
    .quantize_i8 = quantize_i8_avx2,
    .backward_product_f32 = fg_panel_gemm_f32_avx2, .backward_product_f64 = fg_panel_gemm_f64_avx2,
    .int8_codes = FG_CODES_INT8,
    .step_lbr_i8n = step_lbr_i8n_avx2, .step_rb1_i8n = step_rb1_i8n_avx2,
    .step_rb2_i8n = step_rb2_i8n_avx2, .project_i8n = project_i8n_avx2,
    .quantize_i8n = quantize_i8n_avx2,
    .int8n_codes = FG_CODES_OFFSET,
};

const fg_kernels fg_kernels_avx512vl = {
    .step_lbr_f32 = step_lbr_f32_avx512vl, .step_rb1_f32 = step_rb1_f32_avx512vl,
    .step_rb2_f32 = step_rb2_f32_avx512vl, .project_f32 = project_f32_avx512vl,
    .step_lbr_f64 = step_lbr_f64_avx2, .step_rb1_f64 = step_rb1_f64_avx2,
    .step_rb2_f64 = step_rb2_f64_avx2, .project_f64 = project_f64_avx2,
    .step_lbr_i8 = step_lbr_i8_avx2, .step_rb1_i8 = step_rb1_i8_avx2,
    .step_rb2_i8 = step_rb2_i8_avx2, .project_i8 = project_i8_avx2,
    .quantize_i8 = quantize_i8_avx2,
    .backward_product_f32 = fg_panel_gemm_f32_avx2, .backward_product_f64 = fg_panel_gemm_f64_avx2,
    .int8_codes = FG_CODES_INT8,
    .step_lbr_i8n = step_lbr_i8n_avx2, .step_rb1_i8n = step_rb1_i8n_avx2,
    .step_rb2_i8n = step_rb2_i8n_avx2, .project_i8n = project_i8n_avx2,
    .quantize_i8n = quantize_i8n_avx2,
    .int8n_codes = FG_CODES_OFFSET,
};

const fg_kernels fg_kernels_avx512vl_vnni = {
    .step_lbr_f32 = step_lbr_f32_avx512vl, .step_rb1_f32 = step_rb1_f32_avx512vl,
    .step_rb2_f32 = step_rb2_f32_avx512vl, .project_f32 = project_f32_avx512vl,
    .step_lbr_f64 = step_lbr_f64_avx2, .step_rb1_f64 = step_rb1_f64_avx2,
    .step_rb2_f64 = step_rb2_f64_avx2, .project_f64 = project_f64_avx2,
    .step_lbr_i8 = step_lbr_i8_avx512vl_vnni, .step_rb1_i8 = step_rb1_i8_avx512vl_vnni,
    .step_rb2_i8 = step_rb2_i8_avx512vl_vnni, .project_i8 = project_i8_avx512vl_vnni,
    .quantize_i8 = quantize_i8_avx512vl_vnni,
    .backward_product_f32 = fg_panel_gemm_f32_avx2, .backward_product_f64 = fg_panel_gemm_f64_avx2,
    .int8_codes = FG_CODES_OFFSET,
};

#endif
