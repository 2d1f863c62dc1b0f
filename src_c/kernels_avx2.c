/* kernels_avx2.c: the kernels of kernels_generic.c compiled for AVX2+FMA, with a hand-written panel
 * product for float32. Only this file is built for that target (by pragma, not by a build flag, so the
 * package never needs -march=native); fg_select_kernels uses it only after the CPU has reported both
 * features. */
#include "internal.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif

#include <immintrin.h>

#include "activations.h"

/* acc[r][0:C] = sum_k a[r][k] * panel[k][0:C] (C = 8, 16 or 24; acc rows 24 apart). Each weight
 * vector is loaded once and used for all R rows. With one row, even and odd k go to separate
 * accumulators: three FMA chains alone would wait on the FMA latency instead of on memory. */
static inline __attribute__((always_inline)) void dot_f32_avx2(int R, int C, int64_t K, const float *a,
                                                               int64_t lda, const float *panel, float *acc) {
    const int V = C / 8;
    __m256 sum[4][3], odd[3];
    for (int r = 0; r < 4; r++)
        for (int v = 0; v < 3; v++) sum[r][v] = _mm256_setzero_ps();
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

#define ISA avx2

#define REAL float
#define SFX f32
#define SIGMOID fg_sigmoidf
#define TANH fg_tanhf
#define DOT dot_f32_avx2
#include "kernels_impl.h"
#undef REAL
#undef SFX
#undef SIGMOID
#undef TANH

#define REAL double
#define SFX f64
#define SIGMOID fg_sigmoid
#define TANH tanh
#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif

const fg_kernels fg_kernels_avx2 = {
    step_lbr_f32_avx2, step_rb1_f32_avx2, step_rb2_f32_avx2, project_f32_avx2,
    step_lbr_f64_avx2, step_rb1_f64_avx2, step_rb2_f64_avx2, project_f64_avx2,
};

#endif
