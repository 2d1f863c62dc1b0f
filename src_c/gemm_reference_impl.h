/* gemm_reference_impl.h: a plain-loop row-major GEMM behind the fg_blas interface (fastgru.h), as a
 * template over REAL and SFX (templates.h), instantiated by gemm_reference.c. */
#if !defined(REAL) || !defined(SFX)
#error "gemm_reference_impl.h takes REAL and SFX (templates.h)"
#endif

void FN(reference_gemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, REAL alpha, const REAL *a,
                        int64_t lda, const REAL *b, int64_t ldb, REAL beta, REAL *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            REAL sum = 0;
            for (int64_t p = 0; p < k; p++) {
                REAL a_ip = trans_a ? a[p * lda + i] : a[i * lda + p];
                REAL b_pj = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                sum += a_ip * b_pj;
            }
            /* beta == 0 must not read C: it may hold NaN from uninitialised memory. */
            c[i * ldc + j] = alpha * sum + (beta == 0 ? (REAL)0 : beta * c[i * ldc + j]);
        }
    }
}

#undef REAL
#undef SFX
