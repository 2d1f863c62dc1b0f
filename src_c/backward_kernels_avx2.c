/* backward_kernels_avx2.c: the panel product of backward_kernels.h for AVX2+FMA, from the template
 * backward_kernels_impl.h with the vector operations below. Only this file is built for that target
 * (by pragma, like kernels_avx2.c). Every table but the portable one names it as its backward product
 * (fg_kernels.backward_product_f32/_f64, internal.h): fg_select_kernels gives those tables only on CPUs
 * with both features. */
#include "templates.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif

#include <immintrin.h>

/* The vector operations of backward_kernels_impl.h for each REAL: one 256-bit vector of 8 floats or
 * 4 doubles. */
typedef __m256 vec_f32_avx2;
FG_INLINE __m256 zero_f32_avx2(void) { return _mm256_setzero_ps(); }
FG_INLINE __m256 load_f32_avx2(const float *p) { return _mm256_loadu_ps(p); }
FG_INLINE __m256 broadcast_f32_avx2(const float *p) { return _mm256_broadcast_ss(p); }
FG_INLINE __m256 fma_f32_avx2(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
FG_INLINE __m256 add_f32_avx2(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
FG_INLINE void store_f32_avx2(float *p, __m256 v) { _mm256_storeu_ps(p, v); }

typedef __m256d vec_f64_avx2;
FG_INLINE __m256d zero_f64_avx2(void) { return _mm256_setzero_pd(); }
FG_INLINE __m256d load_f64_avx2(const double *p) { return _mm256_loadu_pd(p); }
FG_INLINE __m256d broadcast_f64_avx2(const double *p) { return _mm256_broadcast_sd(p); }
FG_INLINE __m256d fma_f64_avx2(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }
FG_INLINE __m256d add_f64_avx2(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
FG_INLINE void store_f64_avx2(double *p, __m256d v) { _mm256_storeu_pd(p, v); }

/* fg_panel_gemm_f32_avx2 */
#define REAL float
#define SFX f32
#define ISA avx2
#include "backward_kernels_impl.h"

/* fg_panel_gemm_f64_avx2 */
#define REAL double
#define SFX f64
#define ISA avx2
#include "backward_kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif
