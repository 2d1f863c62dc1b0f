/* gemm_reference.c: plain-loop row-major GEMMs behind the fg_blas interface. Slow and obviously
 * correct: they let the core run (and be tested) with no BLAS at all. */
#include "internal.h"

#define FG_REFERENCE_GEMM(NAME, REAL)                                                                  \
    static void NAME(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, REAL alpha,            \
                     const REAL *a, int64_t lda, const REAL *b, int64_t ldb, REAL beta, REAL *c,       \
                     int64_t ldc) {                                                                   \
        for (int64_t i = 0; i < m; i++) {                                                              \
            for (int64_t j = 0; j < n; j++) {                                                          \
                REAL sum = 0;                                                                          \
                for (int64_t p = 0; p < k; p++) {                                                      \
                    REAL a_ip = trans_a ? a[p * lda + i] : a[i * lda + p];                             \
                    REAL b_pj = trans_b ? b[j * ldb + p] : b[p * ldb + j];                             \
                    sum += a_ip * b_pj;                                                                \
                }                                                                                      \
                /* beta == 0 must not read C: it may hold NaN from uninitialised memory. */            \
                c[i * ldc + j] = alpha * sum + (beta == 0 ? (REAL)0 : beta * c[i * ldc + j]);          \
            }                                                                                          \
        }                                                                                              \
    }

FG_REFERENCE_GEMM(reference_sgemm, float)
FG_REFERENCE_GEMM(reference_dgemm, double)

static const fg_blas reference_blas = {reference_sgemm, reference_dgemm};

const fg_blas *fg_reference_blas(void) { return &reference_blas; }
