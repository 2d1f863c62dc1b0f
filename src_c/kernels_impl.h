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
 * whose arithmetic per output is the same: pairing changes no bit. */
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

/* acc[r][c] = sum_k a[r][k] * panel[k][c] for R rows and C columns; acc rows are FG_ACC_COLUMNS apart. */
FG_INLINE void FN_ISA(dot_generic)(int R, int C, int64_t K, const REAL *a, int64_t lda, const REAL *panel,
                                   REAL *acc) {
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

/* The panel product for R = rows (1..FG_ROWS), each R a constant for the compiler. */
FG_INLINE void FN_ISA(dot_rows)(int R, int C, int64_t K, const REAL *a, int64_t lda, const REAL *panel, REAL *acc) {
    switch (R) {
    case 1: DOT(1, C, K, a, lda, panel, acc); break;
    case 2: DOT(2, C, K, a, lda, panel, acc); break;
    case 3: DOT(3, C, K, a, lda, panel, acc); break;
#if FG_ROWS == 8
    case 4: DOT(4, C, K, a, lda, panel, acc); break;
    case 5: DOT(5, C, K, a, lda, panel, acc); break;
    case 6: DOT(6, C, K, a, lda, panel, acc); break;
    case 7: DOT(7, C, K, a, lda, panel, acc); break;
#endif
    default: DOT(FG_ROWS, C, K, a, lda, panel, acc); break;
    }
}

#ifdef PAIR_DOT
/* PAIR_DOT(R, C, K, a, lda, panel_u, panel_v, acc, deinterleave): the product of two adjacent blocks'
 * panels (C columns each), acc rows FG_ACC_COLUMNS apart holding u's C columns then v's, or with
 * deinterleave gate g of both at [16g, 16g + 16) (u's 8 units, then v's), for R = rows (1..FG_ROWS). */
FG_INLINE void FN_ISA(pair_rows)(int R, int C, int64_t K, const REAL *a, int64_t lda, const REAL *panel_u,
                                 const REAL *panel_v, REAL *acc, int deinterleave) {
    switch (R) {
    case 1: PAIR_DOT(1, C, K, a, lda, panel_u, panel_v, acc, deinterleave); break;
    case 2: PAIR_DOT(2, C, K, a, lda, panel_u, panel_v, acc, deinterleave); break;
    case 3: PAIR_DOT(3, C, K, a, lda, panel_u, panel_v, acc, deinterleave); break;
#if FG_ROWS == 8
    case 4: PAIR_DOT(4, C, K, a, lda, panel_u, panel_v, acc, deinterleave); break;
    case 5: PAIR_DOT(5, C, K, a, lda, panel_u, panel_v, acc, deinterleave); break;
    case 6: PAIR_DOT(6, C, K, a, lda, panel_u, panel_v, acc, deinterleave); break;
    case 7: PAIR_DOT(7, C, K, a, lda, panel_u, panel_v, acc, deinterleave); break;
#endif
    default: PAIR_DOT(FG_ROWS, C, K, a, lda, panel_u, panel_v, acc, deinterleave); break;
    }
}

/* The step kernel `kind` for the two full blocks u, u + 1 (units [j0, j0 + 16)). */
FG_INLINE void FN_ISA(step_pair)(int kind, const fg_step_args *s, int C, const REAL *rows, const REAL *panel_u,
                                 int64_t j0, REAL *acc) {
    const int64_t H = s->hidden;
    REAL x48[3 * FG_GATE_SPAN] __attribute__((aligned(64))), rz32[2 * FG_GATE_SPAN] __attribute__((aligned(64)));
    for (int64_t i0 = 0; i0 < s->rows; i0 += FG_ROWS) {
        const int R = (int)(s->rows - i0 < FG_ROWS ? s->rows - i0 : FG_ROWS);
        FN_ISA(pair_rows)(R, C, H, rows + i0 * H, H, panel_u, panel_u + H * C, acc, 1);
        for (int r = 0; r < R; r++) {
            const int64_t i = i0 + r, b = s->perm[i];
            if (s->mask && !s->mask[b]) {
                if (kind == FG_STEP_RB1) memset((REAL *)s->reset_h + i * H + j0, 0, FG_GATE_SPAN * sizeof(REAL));
                continue;
            }
            PAIR_GATHER(3, (const REAL *)s->gates_x + b * s->gates_x_stride + 3 * j0, x48);
            if (kind == FG_STEP_RB2) PAIR_GATHER(2, (const REAL *)s->gates_rz + i * 2 * H + 2 * j0, rz32);
            FN(gate_math_pair)(kind, 0, s, i, b, j0, x48, acc + r * FG_ACC_COLUMNS, rz32);
        }
    }
}
#endif

/* The step kernel `kind` (templates.h) over the unit blocks [block_begin, block_end). */
FG_INLINE void FN_ISA(step)(int kind, const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden;
    /* a block's panel columns: [r z n], [r z], or reset-before's W_hn, which multiplies r * h */
    const int C = kind == FG_STEP_LBR ? 24 : kind == FG_STEP_RB1 ? 16 : 8;
    const REAL *panels = (const REAL *)(kind == FG_STEP_RB2 ? s->panels_n : s->panels);
    const REAL *rows = (const REAL *)(kind == FG_STEP_RB2 ? s->reset_h : s->h_prev);
    REAL acc[FG_ROWS * FG_ACC_COLUMNS] __attribute__((aligned(64))), packed[FG_PANEL_COLUMNS];
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const REAL *panel = panels + u * H * C;
#ifdef PAIR_DOT
        if (u + 1 < block_end && fg_block_width(H, u + 1) == FG_BLOCK) {
            FN_ISA(step_pair)(kind, s, C, rows, panel, j0, acc);
            u++;
            continue;
        }
#endif
        for (int64_t i0 = 0; i0 < s->rows; i0 += FG_ROWS) {
            const int R = (int)(s->rows - i0 < FG_ROWS ? s->rows - i0 : FG_ROWS);
            FN_ISA(dot_rows)(R, C, H, rows + i0 * H, H, panel, acc);
            for (int r = 0; r < R; r++) {
                const int64_t i = i0 + r, b = s->perm[i];
                if (s->mask && !s->mask[b]) {
                    /* keeps the second half's product of this row finite (it is not used) */
                    if (kind == FG_STEP_RB1) memset((REAL *)s->reset_h + i * H + j0, 0, (size_t)width * sizeof(REAL));
                    continue;
                }
                /* W_hn's product has one gate: a tail block's values are already its first `width` */
                const REAL *product = acc + r * FG_ACC_COLUMNS;
                const REAL *gates_h = kind == FG_STEP_RB2 ? product : FN(unpad)(product, C / FG_BLOCK, width, packed);
                FN(gate_math)(kind, 0, s, width, i, b, j0, gates_h);
            }
        }
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
    REAL acc[FG_ROWS * FG_ACC_COLUMNS] __attribute__((aligned(64))), packed[FG_PANEL_COLUMNS];
    /* Block-outer: a block's panel (I x 24) stays in L2 while every input row passes over it. */
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const REAL *panel = (const REAL *)p->panels_ih + u * I * 24;
#ifdef PAIR_DOT
        if (u + 1 < block_end && fg_block_width(H, u + 1) == FG_BLOCK) {
            /* two full blocks: their 48 gates_x columns are adjacent, in the order the product has them */
            for (int64_t i0 = 0; i0 < p->rows; i0 += FG_ROWS) {
                const int R = (int)(p->rows - i0 < FG_ROWS ? p->rows - i0 : FG_ROWS);
                FN_ISA(pair_rows)(R, 24, I, input + i0 * p->input_stride, p->input_stride, panel, panel + I * 24, acc,
                                  0);
                for (int r = 0; r < R; r++) {
                    REAL *out = (REAL *)p->gates_x + (i0 + r) * p->gates_x_stride + 3 * j0;
                    for (int c = 0; c < 2 * FG_PANEL_COLUMNS; c++) out[c] = acc[r * FG_ACC_COLUMNS + c] + bias[3 * j0 + c];
                }
            }
            u++;
            continue;
        }
#endif
        for (int64_t i0 = 0; i0 < p->rows; i0 += FG_ROWS) {
            const int R = (int)(p->rows - i0 < FG_ROWS ? p->rows - i0 : FG_ROWS);
            FN_ISA(dot_rows)(R, 24, I, input + i0 * p->input_stride, p->input_stride, panel, acc);
            for (int r = 0; r < R; r++) {
                const REAL *values = FN(unpad)(acc + r * FG_ACC_COLUMNS, 3, width, packed);
                REAL *out = (REAL *)p->gates_x + (i0 + r) * p->gates_x_stride + 3 * j0;
                for (int c = 0; c < 3 * width; c++) out[c] = values[c] + bias[3 * j0 + c];
            }
        }
    }
}

#undef FG_ACC_COLUMNS
#undef REAL
#undef SFX
#undef ISA
#undef FG_ROWS
#undef DOT
#undef PAIR_DOT
#undef PAIR_GATHER
