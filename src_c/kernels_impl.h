/* kernels_impl.h: the fused recurrent step (internal.h, "kernels") and the input projection, as a
 * template over REAL, SFX, ISA, FG_ROWS, DOT, PAIR_DOT and PAIR_GATHER (templates.h); needs
 * gates_impl.h for the same REAL.
 *
 * A step takes, per unit block, the panel product of FG_ROWS batch rows at a time (DOT, or the
 * portable dot_generic below), then the gate math of those rows while the products are in cache
 * (gates_impl.h). The three step kernels are one function, step, specialised by its constant kind.
 * With PAIR_DOT (the 512-bit tables) two adjacent full blocks are taken at once: one product over
 * their 2C columns, whose 512-bit vectors span both blocks, then gate_math_pair over their 16 units.
 * A block left over (an odd count in a range, the narrower last block) takes the single-block DOT,
 * whose arithmetic per output is the same: pairing changes no bit.
 *
 * K-blocking (fg_cpu_info.k_block, from the L2 size): a multi-row product streams its panel once per
 * tile of FG_ROWS rows, so where the panel would not fit half the L2 (K > k_block) the rows are taken
 * in groups of FG_GROUP_ROWS whose accumulators wait in memory while the panel passes in blocks of
 * k_block rows, each block once for the whole group. An accumulator is loaded and continued, never
 * split into partial sums: the bits are those of one pass. A tile of one row (bound by reading the
 * weights, and summing in its own order) takes its whole K at once. */
#if !defined(REAL) || !defined(SFX) || !defined(ISA)
#error "kernels_impl.h takes REAL, SFX and ISA (templates.h)"
#endif
/* Batch rows per panel product: 4 rows x 24 columns fill 12 of AVX2's 16 vector registers, leaving
 * room for the weights and the broadcast. A table built with AVX-512VL (32 registers) sets 8. */
#ifndef FG_ROWS
#define FG_ROWS 4
#endif
#if FG_ROWS != 4 && FG_ROWS != 8
#error "FG_ROWS must be 4 or 8"
#endif
#if defined(PAIR_DOT) != defined(PAIR_GATHER)
#error "PAIR_DOT and PAIR_GATHER come together"
#endif
/* Distance between the rows of product accumulators that DOT and PAIR_DOT write. */
#ifdef PAIR_DOT
#define FG_ACC_COLUMNS (2 * FG_PANEL_COLUMNS)
#else
#define FG_ACC_COLUMNS FG_PANEL_COLUMNS
#endif

/* acc[r][c] (+)= sum_k a[r][k] * panel[k][c] for R rows and C columns, acc rows FG_ACC_COLUMNS apart;
 * accumulate: continue the sums already in acc (K-blocking) instead of starting from zero. */
FG_INLINE void FN_ISA(dot_generic)(int R, int C, int64_t K, const REAL *a, int64_t lda, const REAL *panel,
                                   REAL *acc, int accumulate) {
    if (!accumulate)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) acc[r * FG_ACC_COLUMNS + c] = 0;
    for (int64_t k = 0; k < K; k++) {
        const REAL *w = panel + k * C;
        for (int r = 0; r < R; r++) {
            REAL a_rk = a[r * lda + k];
            for (int c = 0; c < C; c++) acc[r * FG_ACC_COLUMNS + c] += a_rk * w[c];
        }
    }
}

#ifndef DOT
#define DOT FN_ISA(dot_generic)
#endif

/* Rows of a K-blocked group (a multiple of 8: whole tiles of either FG_ROWS). */
#define FG_GROUP_ROWS 64

/* The panel product for R = rows (1..FG_ROWS), each R a constant for the compiler. */
FG_INLINE void FN_ISA(dot_rows)(int R, int C, int64_t K, const REAL *a, int64_t lda, const REAL *panel, REAL *acc,
                                int accumulate) {
    switch (R) {
    case 1: DOT(1, C, K, a, lda, panel, acc, accumulate); break;
    case 2: DOT(2, C, K, a, lda, panel, acc, accumulate); break;
    case 3: DOT(3, C, K, a, lda, panel, acc, accumulate); break;
#if FG_ROWS == 8
    case 4: DOT(4, C, K, a, lda, panel, acc, accumulate); break;
    case 5: DOT(5, C, K, a, lda, panel, acc, accumulate); break;
    case 6: DOT(6, C, K, a, lda, panel, acc, accumulate); break;
    case 7: DOT(7, C, K, a, lda, panel, acc, accumulate); break;
#endif
    default: DOT(FG_ROWS, C, K, a, lda, panel, acc, accumulate); break;
    }
}

#ifdef PAIR_DOT
/* PAIR_DOT(R, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate): the product of two adjacent
 * blocks' panels (C columns each), acc rows FG_ACC_COLUMNS apart holding u's C columns then v's, or
 * with deinterleave gate g of both at [16g, 16g + 16) (u's 8 units, then v's); accumulate continues
 * sums left in the first order (never with deinterleave). For R = rows (1..FG_ROWS). */
FG_INLINE void FN_ISA(pair_rows)(int R, int C, int64_t K, const REAL *a, int64_t lda, const REAL *panel_u,
                                 const REAL *panel_v, REAL *acc, int deinterleave, int accumulate) {
    switch (R) {
    case 1: PAIR_DOT(1, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate); break;
    case 2: PAIR_DOT(2, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate); break;
    case 3: PAIR_DOT(3, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate); break;
#if FG_ROWS == 8
    case 4: PAIR_DOT(4, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate); break;
    case 5: PAIR_DOT(5, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate); break;
    case 6: PAIR_DOT(6, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate); break;
    case 7: PAIR_DOT(7, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate); break;
#endif
    default: PAIR_DOT(FG_ROWS, C, K, a, lda, panel_u, panel_v, acc, deinterleave, accumulate); break;
    }
}
#endif

/* Rows per group of one product pass: a whole K-blocked group, or one tile when the panel fits. */
FG_INLINE int64_t FN_ISA(group_rows)(int64_t K, int64_t k_block, int64_t rows) {
    return k_block > 0 && K > k_block && rows > FG_ROWS ? FG_GROUP_ROWS : FG_ROWS;
}

/* The products of n rows (at most FG_GROUP_ROWS) at a with block u's panel (panel_v NULL) or with two
 * blocks' panels, in tiles of FG_ROWS rows, K in passes of k_block rows when the group is more than
 * one tile: acc row r (FG_ACC_COLUMNS apart) gets row r's products. */
FG_INLINE void FN_ISA(products)(int C, int64_t K, int64_t k_block, const REAL *a, int64_t lda, int64_t n,
                                const REAL *panel_u, const REAL *panel_v, REAL *acc, int deinterleave) {
    const int64_t kb = n > FG_ROWS && k_block > 0 && K > k_block ? k_block : K;
    for (int64_t k0 = 0; k0 < K; k0 += kb) {
        const int64_t len = K - k0 < kb ? K - k0 : kb;
        for (int64_t t = 0; t < n; t += FG_ROWS) {
            const int R = (int)(n - t < FG_ROWS ? n - t : FG_ROWS);
            int64_t from = k0, count = len;
            if (R == 1) { /* one row: its whole K in one pass, with the first block */
                if (k0 > 0) continue;
                from = 0, count = K;
            }
            const REAL *rows = a + t * lda + from;
            REAL *out = acc + t * FG_ACC_COLUMNS;
            const int more = from > 0;
#ifdef PAIR_DOT
            if (panel_v) {
                /* deinterleaved only once the sums are complete: continued ones come back as stored */
                FN_ISA(pair_rows)(R, C, count, rows, lda, panel_u + from * C, panel_v + from * C, out,
                                  deinterleave && from + count == K, more);
                continue;
            }
#endif
            FN_ISA(dot_rows)(R, C, count, rows, lda, panel_u + from * C, out, more);
        }
    }
    (void)deinterleave;
    (void)panel_v;
}

/* products for each panel width, as functions of their own: inlined into a step, the product's loop
 * shared its registers with the gate math around it, and GCC 12 kept one of the 24 accumulators in
 * memory. */
__attribute__((noinline)) static void FN_ISA(products_24)(int64_t K, int64_t k_block, const REAL *a, int64_t lda,
                                                          int64_t n, const REAL *panel_u, const REAL *panel_v,
                                                          REAL *acc, int deinterleave) {
    FN_ISA(products)(24, K, k_block, a, lda, n, panel_u, panel_v, acc, deinterleave);
}
__attribute__((noinline)) static void FN_ISA(products_16)(int64_t K, int64_t k_block, const REAL *a, int64_t lda,
                                                          int64_t n, const REAL *panel_u, const REAL *panel_v,
                                                          REAL *acc, int deinterleave) {
    FN_ISA(products)(16, K, k_block, a, lda, n, panel_u, panel_v, acc, deinterleave);
}
__attribute__((noinline)) static void FN_ISA(products_8)(int64_t K, int64_t k_block, const REAL *a, int64_t lda,
                                                         int64_t n, const REAL *panel_u, const REAL *panel_v,
                                                         REAL *acc, int deinterleave) {
    FN_ISA(products)(8, K, k_block, a, lda, n, panel_u, panel_v, acc, deinterleave);
}
FG_INLINE void FN_ISA(products_of)(int C, int64_t K, int64_t k_block, const REAL *a, int64_t lda, int64_t n,
                                   const REAL *panel_u, const REAL *panel_v, REAL *acc, int deinterleave) {
    if (C == 24) FN_ISA(products_24)(K, k_block, a, lda, n, panel_u, panel_v, acc, deinterleave);
    else if (C == 16) FN_ISA(products_16)(K, k_block, a, lda, n, panel_u, panel_v, acc, deinterleave);
    else FN_ISA(products_8)(K, k_block, a, lda, n, panel_u, panel_v, acc, deinterleave);
}

#ifdef PAIR_DOT
/* The gate math of row i (batch entry b) for the two full blocks at j0, from its deinterleaved products. */
FG_INLINE void FN_ISA(gates_pair)(int kind, const fg_step_args *s, int64_t i, int64_t b, int64_t j0, const REAL *product) {
    const int64_t H = s->hidden;
    REAL x48[3 * FG_GATE_SPAN] __attribute__((aligned(64))), rz32[2 * FG_GATE_SPAN] __attribute__((aligned(64)));
    PAIR_GATHER(3, (const REAL *)s->gates_x + b * s->gates_x_stride + 3 * j0, x48);
    if (kind == FG_STEP_RB2) PAIR_GATHER(2, (const REAL *)s->gates_rz + i * 2 * H + 2 * j0, rz32);
    FN(gate_math_pair)(kind, FG_CODES_NONE, s, i, b, j0, x48, product, rz32);
}
#endif

/* The step kernel `kind` (templates.h) over the unit blocks [block_begin, block_end). */
FG_INLINE void FN_ISA(step)(int kind, const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden;
    /* a block's panel columns: [r z n], [r z], or reset-before's W_hn, which multiplies r * h */
    const int C = kind == FG_STEP_LBR ? 24 : kind == FG_STEP_RB1 ? 16 : 8;
    const REAL *panels = (const REAL *)(kind == FG_STEP_RB2 ? s->panels_n : s->panels);
    const REAL *rows = (const REAL *)(kind == FG_STEP_RB2 ? s->reset_h : s->h_prev);
    const int64_t group = FN_ISA(group_rows)(H, s->k_block, s->rows);
    REAL acc[FG_GROUP_ROWS * FG_ACC_COLUMNS] __attribute__((aligned(64))), packed[FG_PANEL_COLUMNS];
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        /* two full blocks together where the table pairs them, else this block alone */
        int span = 1;
#ifdef PAIR_DOT
        if (u + 1 < block_end && fg_block_width(H, u + 1) == FG_BLOCK) span = 2;
#endif
        const int width = span == 2 ? FG_GATE_SPAN : fg_block_width(H, u);
        const REAL *panel = panels + u * H * C;
        for (int64_t i0 = 0; i0 < s->rows; i0 += group) {
            const int64_t n = s->rows - i0 < group ? s->rows - i0 : group;
            FN(prefetch_gates_x)(s, i0, n, j0, width);
            FN_ISA(products_of)(C, H, s->k_block, rows + i0 * H, H, n, panel, span == 2 ? panel + H * C : NULL, acc, 1);
            for (int64_t r = 0; r < n; r++) {
                const int64_t i = i0 + r, b = s->perm[i];
                if (s->mask && !s->mask[b]) {
                    /* keeps the second half's product of this row finite (it is not used) */
                    if (kind == FG_STEP_RB1) memset((REAL *)s->reset_h + i * H + j0, 0, (size_t)width * sizeof(REAL));
                    continue;
                }
                const REAL *product = acc + r * FG_ACC_COLUMNS;
#ifdef PAIR_DOT
                if (span == 2) {
                    FN_ISA(gates_pair)(kind, s, i, b, j0, product);
                    continue;
                }
#endif
                /* W_hn's product has one gate: a tail block's values are already its first `width` */
                const REAL *gates_h = kind == FG_STEP_RB2 ? product : FN(unpad)(product, C / FG_BLOCK, width, packed);
                FN(gate_math)(kind, FG_CODES_NONE, s, width, i, b, j0, gates_h);
            }
        }
        u += span - 1;
    }
}

void FN_ISA(step_lbr)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    FN_ISA(step)(FG_STEP_LBR, s, block_begin, block_end);
}

void FN_ISA(step_rb1)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    FN_ISA(step)(FG_STEP_RB1, s, block_begin, block_end);
}

void FN_ISA(step_rb2)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    FN_ISA(step)(FG_STEP_RB2, s, block_begin, block_end);
}

void FN_ISA(project)(const fg_project_args *p, int64_t block_begin, int64_t block_end) {
    const int64_t H = p->hidden, I = p->input_size;
    const REAL *input = (const REAL *)p->input, *bias = (const REAL *)p->bias_x;
    const int64_t group = FN_ISA(group_rows)(I, p->k_block, p->rows);
    REAL acc[FG_GROUP_ROWS * FG_ACC_COLUMNS] __attribute__((aligned(64))), packed[FG_PANEL_COLUMNS];
    /* Block-outer: a block's panel (I x 24) stays in L2 while every input row passes over it. */
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        int span = 1;
#ifdef PAIR_DOT
        /* two full blocks: their 48 gates_x columns are adjacent, in the order the product has them */
        if (u + 1 < block_end && fg_block_width(H, u + 1) == FG_BLOCK) span = 2;
#endif
        const int width = fg_block_width(H, u);
        const REAL *panel = (const REAL *)p->panels_ih + u * I * 24;
        for (int64_t i0 = 0; i0 < p->rows; i0 += group) {
            const int64_t n = p->rows - i0 < group ? p->rows - i0 : group;
            FN_ISA(products_of)(24, I, p->k_block, input + i0 * p->input_stride, p->input_stride, n, panel,
                                span == 2 ? panel + I * 24 : NULL, acc, 0);
            for (int64_t r = 0; r < n; r++) {
                REAL *out = (REAL *)p->gates_x + (i0 + r) * p->gates_x_stride + 3 * j0;
                if (span == 2) {
                    for (int c = 0; c < 2 * FG_PANEL_COLUMNS; c++) out[c] = acc[r * FG_ACC_COLUMNS + c] + bias[3 * j0 + c];
                    continue;
                }
                const REAL *values = FN(unpad)(acc + r * FG_ACC_COLUMNS, 3, width, packed);
                for (int c = 0; c < 3 * width; c++) out[c] = values[c] + bias[3 * j0 + c];
            }
        }
        u += span - 1;
    }
}

#undef FG_GROUP_ROWS
#undef FG_ACC_COLUMNS
#undef REAL
#undef SFX
#undef ISA
#undef FG_ROWS
#undef DOT
#undef PAIR_DOT
#undef PAIR_GATHER
