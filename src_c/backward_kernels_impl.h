/* backward_kernels_impl.h: the panel product of backward_kernels.h, as a template over REAL, SFX and
 * ISA (templates.h). The file that instantiates it defines, for its ISA and each REAL, the vector type
 * vec_SFX_ISA and the operations zero, load, broadcast, fma, add and store (named op_SFX_ISA), on one
 * vector of 32 bytes: P = 4 vectors per panel row. */
#if !defined(REAL) || !defined(SFX) || !defined(ISA)
#error "backward_kernels_impl.h takes REAL, SFX and ISA (templates.h)"
#endif

/* One tile: R (1..3) rows of c times one panel (four vectors of columns). Each weight vector is loaded
 * once for all R rows (from L1: see FG_PANEL_CHUNK). With one row, even and odd k go to separate
 * accumulators: four FMA chains alone would wait on the FMA latency instead of streaming the weights.
 * The accumulators are named variables, not an array: GCC keeps an array of vectors in memory and
 * stores it on every iteration. 12 accumulators + 3 broadcasts + 1 weight vector = all 16 registers.
 * `width` < P: a partial last panel, whose columns past the matrix must not be written. */
FG_INLINE void FN_ISA(panel_tile)(int R, int64_t K, const REAL *a, int64_t lda, const REAL *panel, REAL *c,
                                  int64_t ldc, int64_t width) {
    enum { P = FG_PANEL_BYTES / sizeof(REAL), LANES = P / 4 };
    typedef FN_ISA(vec) vec;
    vec s00 = FN_ISA(zero)(), s01 = FN_ISA(zero)(), s02 = FN_ISA(zero)(), s03 = FN_ISA(zero)();
    vec s10 = FN_ISA(zero)(), s11 = FN_ISA(zero)(), s12 = FN_ISA(zero)(), s13 = FN_ISA(zero)();
    vec s20 = FN_ISA(zero)(), s21 = FN_ISA(zero)(), s22 = FN_ISA(zero)(), s23 = FN_ISA(zero)();
    int64_t k = 0;
    if (R == 1) {
        for (; k + 1 < K; k += 2) {
            const vec a0 = FN_ISA(broadcast)(a + k), a1 = FN_ISA(broadcast)(a + k + 1);
            const REAL *w = panel + k * P;
            s00 = FN_ISA(fma)(a0, FN_ISA(load)(w), s00);
            s01 = FN_ISA(fma)(a0, FN_ISA(load)(w + LANES), s01);
            s02 = FN_ISA(fma)(a0, FN_ISA(load)(w + 2 * LANES), s02);
            s03 = FN_ISA(fma)(a0, FN_ISA(load)(w + 3 * LANES), s03);
            s10 = FN_ISA(fma)(a1, FN_ISA(load)(w + P), s10);
            s11 = FN_ISA(fma)(a1, FN_ISA(load)(w + P + LANES), s11);
            s12 = FN_ISA(fma)(a1, FN_ISA(load)(w + P + 2 * LANES), s12);
            s13 = FN_ISA(fma)(a1, FN_ISA(load)(w + P + 3 * LANES), s13);
        }
        s00 = FN_ISA(add)(s00, s10), s01 = FN_ISA(add)(s01, s11), s02 = FN_ISA(add)(s02, s12);
        s03 = FN_ISA(add)(s03, s13);
        s10 = s11 = s12 = s13 = FN_ISA(zero)();
    }
    for (; k < K; k++) {
        const REAL *w = panel + k * P;
        const vec a0 = FN_ISA(broadcast)(a + k);
        const vec a1 = R > 1 ? FN_ISA(broadcast)(a + lda + k) : FN_ISA(zero)();
        const vec a2 = R > 2 ? FN_ISA(broadcast)(a + 2 * lda + k) : FN_ISA(zero)();
        vec weight = FN_ISA(load)(w);
        s00 = FN_ISA(fma)(a0, weight, s00);
        if (R > 1) s10 = FN_ISA(fma)(a1, weight, s10);
        if (R > 2) s20 = FN_ISA(fma)(a2, weight, s20);
        weight = FN_ISA(load)(w + LANES);
        s01 = FN_ISA(fma)(a0, weight, s01);
        if (R > 1) s11 = FN_ISA(fma)(a1, weight, s11);
        if (R > 2) s21 = FN_ISA(fma)(a2, weight, s21);
        weight = FN_ISA(load)(w + 2 * LANES);
        s02 = FN_ISA(fma)(a0, weight, s02);
        if (R > 1) s12 = FN_ISA(fma)(a1, weight, s12);
        if (R > 2) s22 = FN_ISA(fma)(a2, weight, s22);
        weight = FN_ISA(load)(w + 3 * LANES);
        s03 = FN_ISA(fma)(a0, weight, s03);
        if (R > 1) s13 = FN_ISA(fma)(a1, weight, s13);
        if (R > 2) s23 = FN_ISA(fma)(a2, weight, s23);
    }
    for (int r = 0; r < R; r++) {
        const vec v0 = r == 0 ? s00 : r == 1 ? s10 : s20;
        const vec v1 = r == 0 ? s01 : r == 1 ? s11 : s21;
        const vec v2 = r == 0 ? s02 : r == 1 ? s12 : s22;
        const vec v3 = r == 0 ? s03 : r == 1 ? s13 : s23;
        REAL *row = c + r * ldc;
        if (width == P) {
            FN_ISA(store)(row, FN_ISA(add)(FN_ISA(load)(row), v0));
            FN_ISA(store)(row + LANES, FN_ISA(add)(FN_ISA(load)(row + LANES), v1));
            FN_ISA(store)(row + 2 * LANES, FN_ISA(add)(FN_ISA(load)(row + 2 * LANES), v2));
            FN_ISA(store)(row + 3 * LANES, FN_ISA(add)(FN_ISA(load)(row + 3 * LANES), v3));
        } else {
            REAL partial[P];
            FN_ISA(store)(partial, v0);
            FN_ISA(store)(partial + LANES, v1);
            FN_ISA(store)(partial + 2 * LANES, v2);
            FN_ISA(store)(partial + 3 * LANES, v3);
            for (int64_t j = 0; j < width; j++) row[j] += partial[j];
        }
    }
}

/* Panels outermost, then chunks of FG_PANEL_CHUNK rows of W (16 KB of a panel, in L1) that every row
 * tile reads while they are cached: W streams from memory once per call, not once per row tile. R is a
 * constant in each call so the tile's loops unroll into registers. */
#define FG_PANEL_CHUNK 128

void FN_ISA(fg_panel_gemm)(int64_t rows, int64_t cols, int64_t K, const REAL *a, int64_t lda, const REAL *panels,
                           int64_t panel_stride, REAL *c, int64_t ldc, int reverse) {
    enum { P = FG_PANEL_BYTES / sizeof(REAL) };
    const int64_t n_panels = (cols + P - 1) / P;
    for (int64_t p = 0; p < n_panels; p++) {
        const int64_t j0 = (reverse ? n_panels - 1 - p : p) * P;
        const int64_t width = cols - j0 < P ? cols - j0 : P;
        for (int64_t k0 = 0; k0 < K; k0 += FG_PANEL_CHUNK) {
            const REAL *panel = panels + (j0 / P) * panel_stride + k0 * P;
            const int64_t kc = K - k0 < FG_PANEL_CHUNK ? K - k0 : FG_PANEL_CHUNK;
            const REAL *a0 = a + k0;
            int64_t r = 0;
            for (; r + 3 <= rows; r += 3)
                FN_ISA(panel_tile)(3, kc, a0 + r * lda, lda, panel, c + r * ldc + j0, ldc, width);
            if (rows - r == 2) FN_ISA(panel_tile)(2, kc, a0 + r * lda, lda, panel, c + r * ldc + j0, ldc, width);
            else if (rows - r == 1) FN_ISA(panel_tile)(1, kc, a0 + r * lda, lda, panel, c + r * ldc + j0, ldc, width);
        }
    }
}

#undef FG_PANEL_CHUNK
#undef REAL
#undef SFX
#undef ISA
