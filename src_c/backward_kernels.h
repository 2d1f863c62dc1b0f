/* backward_kernels.h: the product of the backward pass's reverse time loop, dh += dG_h . W_hh over the
 * active rows, as a hand-written AVX2+FMA kernel (backward_kernels_impl.h, instantiated by
 * backward_kernels_avx2.c).
 *
 * It runs once per time step on a few rows (the batch), so a BLAS call pays its fixed costs (repacking
 * W_hh, 3 MB at H = 512, on every call) a hundred times per sequence. Here W_hh is packed once per call
 * into column panels and each step streams them once, with every weight vector used for up to three
 * batch rows while in registers.
 *
 * Panels: the (K, N) row-major matrix W becomes ceil(N / P) panels of P = 128 / sizeof(REAL) columns
 * (32 floats or 16 doubles: four AVX2 vectors), panel p at panels + p * panel_stride holding
 * panel[k][j] = W[k][p * P + j] for k in [0, K), zeros past column N. A row range [k0, k1) of W is the
 * same panels from panels + k0 * P. */
#ifndef FASTGRU_BACKWARD_KERNELS_H
#define FASTGRU_BACKWARD_KERNELS_H

#include <stdint.h>

#define FG_PANEL_BYTES 128

/* c (rows, cols; row stride ldc) += a (rows, K; row stride lda) . W (K, cols) with W as panels, from the
 * last panel to the first when `reverse`. The backward reverses every other step: where W is larger
 * than the L2, the panels a step read last are then still there for the next one, which reads them
 * first (in one order, each step evicts what the next reads first). Panels are independent column
 * ranges: the order changes no bit. */
typedef void (*fg_panel_gemm_f32)(int64_t rows, int64_t cols, int64_t K, const float *a, int64_t lda,
                                  const float *panels, int64_t panel_stride, float *c, int64_t ldc, int reverse);
typedef void (*fg_panel_gemm_f64)(int64_t rows, int64_t cols, int64_t K, const double *a, int64_t lda,
                                  const double *panels, int64_t panel_stride, double *c, int64_t ldc,
                                  int reverse);

/* The instances, fg_panel_gemm_f32_avx2 and fg_panel_gemm_f64_avx2, are declared in templates.h. */
#if defined(__x86_64__) || defined(_M_X64)
#define FG_HAVE_AVX2_PANEL_GEMM 1
#endif

#endif /* FASTGRU_BACKWARD_KERNELS_H */
