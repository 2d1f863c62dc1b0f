/* kernels_impl.h: the fused recurrent step (internal.h, "kernels"), as a template.
 *
 * Included once per (ISA, dtype) by kernels_generic.c and kernels_avx2.c with REAL (float/double),
 * SFX (f32/f64), ISA (generic/avx2), SIGMOID and TANH defined, and optionally DOT naming a faster
 * panel product for this (ISA, dtype). The block functions are forced inline and called with constant
 * widths and flags, so the compiler emits one branch-free vector loop per combination of
 * (gate activation, clip, full or tail block). */

#define FG_CAT3_(a, b, c) a##_##b##_##c
#define FG_CAT3(a, b, c) FG_CAT3_(a, b, c)
#define FN(name) FG_CAT3(name, SFX, ISA)
#define FG_INLINE static inline __attribute__((always_inline))
/* Batch rows per panel product: 4 rows x 24 columns fill 12 of AVX2's 16 vector registers, leaving
 * room for the weights and the broadcast. A table built with AVX-512VL (32 registers) sets 8. */
#ifndef FG_ROWS
#define FG_ROWS 4
#endif
#define FG_PANEL_MAX 24

FG_INLINE REAL FN(clamp)(REAL a, int clipping, const fg_activation *act) {
    if (clipping) {
        a = a < (REAL)-act->clip ? (REAL)-act->clip : a;
        a = a > (REAL)act->clip ? (REAL)act->clip : a;
    }
    return a;
}

FG_INLINE REAL FN(gate)(REAL a, int hard, int clipping, const fg_activation *act) {
    a = FN(clamp)(a, clipping, act);
    if (!hard) return SIGMOID(a);
    REAL v = (REAL)act->alpha * a + (REAL)act->beta;
    v = v < 0 ? 0 : v;
    return v > 1 ? 1 : v;
}

/* acc[r][c] = sum_k a[r][k] * panel[k][c] for R rows and C columns; acc rows are FG_PANEL_MAX apart. */
FG_INLINE void FN(dot_generic)(int R, int C, int64_t K, const REAL *a, int64_t lda, const REAL *panel,
                               REAL *acc) {
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r * FG_PANEL_MAX + c] = 0;
    for (int64_t k = 0; k < K; k++) {
        const REAL *w = panel + k * C;
        for (int r = 0; r < R; r++) {
            REAL a_rk = a[r * lda + k];
            for (int c = 0; c < C; c++) acc[r * FG_PANEL_MAX + c] += a_rk * w[c];
        }
    }
}

#ifndef DOT
#define DOT FN(dot_generic)
#endif

#if FG_ROWS == 8
#define FG_DOT_ROWS_4_TO_7(C, K, a, lda, panel, acc)                                                  \
        case 4: DOT(4, C, K, a, lda, panel, acc); break;                                              \
        case 5: DOT(5, C, K, a, lda, panel, acc); break;                                              \
        case 6: DOT(6, C, K, a, lda, panel, acc); break;                                              \
        case 7: DOT(7, C, K, a, lda, panel, acc); break;
#elif FG_ROWS == 4
#define FG_DOT_ROWS_4_TO_7(C, K, a, lda, panel, acc)
#else
#error "FG_ROWS must be 4 or 8"
#endif

/* The panel product for R = rows (1..FG_ROWS), each R a constant for the compiler. */
#define FG_DOT_ROWS(R, C, K, a, lda, panel, acc)                                                      \
    do {                                                                                              \
        switch (R) {                                                                                  \
        case 1: DOT(1, C, K, a, lda, panel, acc); break;                                              \
        case 2: DOT(2, C, K, a, lda, panel, acc); break;                                              \
        case 3: DOT(3, C, K, a, lda, panel, acc); break;                                              \
        FG_DOT_ROWS_4_TO_7(C, K, a, lda, panel, acc)                                                  \
        default: DOT(FG_ROWS, C, K, a, lda, panel, acc); break;                                       \
        }                                                                                             \
    } while (0)

/* Expands BODY(hard, clipping, width) once per combination with constants. */
#define FG_SPECIALISE(act, width, BODY)                                                               \
    do {                                                                                              \
        const int hard_ = (act)->hard_sigmoid, clipping_ = (act)->clip > 0;                            \
        if ((width) == FG_BLOCK) {                                                                    \
            if (!hard_ && !clipping_) BODY(0, 0, FG_BLOCK);                                           \
            else if (!hard_) BODY(0, 1, FG_BLOCK);                                                    \
            else if (!clipping_) BODY(1, 0, FG_BLOCK);                                                \
            else BODY(1, 1, FG_BLOCK);                                                                \
        } else {                                                                                      \
            BODY(hard_, clipping_, (width));                                                          \
        }                                                                                             \
    } while (0)

/* A tail block has width < 8 units but its panel columns are padded to 8 per gate: pack the product
 * into the [g0 (width), g1 (width), ...] order that the gate vectors use. */
FG_INLINE const REAL *FN(unpad)(const REAL *acc, int gates, int width, REAL *packed) {
    if (width == FG_BLOCK) return acc;
    for (int g = 0; g < gates; g++)
        for (int w = 0; w < width; w++) packed[g * width + w] = acc[g * FG_BLOCK + w];
    return packed;
}

/* Linear-before-reset gate math for one block of one row. */
FG_INLINE void FN(lbr_block)(int hard, int clipping, int width, const fg_activation *act,
                              const REAL *restrict gates_x, const REAL *restrict gates_h,
                              const REAL *restrict bias_hn, const REAL *restrict h_prev,
                              REAL *restrict h_next, REAL *restrict output, REAL *restrict tape_rzn,
                              REAL *restrict tape_g) {
    /* The gate values go through small arrays so that the loop has no branch (the tape is optional)
     * and vectorises; the tape is written by a second loop. */
    REAL r[FG_BLOCK], z[FG_BLOCK], n[FG_BLOCK], g[FG_BLOCK];
    for (int k = 0; k < width; k++) {
        r[k] = FN(gate)(gates_x[k] + gates_h[k], hard, clipping, act);
        z[k] = FN(gate)(gates_x[width + k] + gates_h[width + k], hard, clipping, act);
        g[k] = gates_h[2 * width + k] + bias_hn[k];
        n[k] = TANH(FN(clamp)(gates_x[2 * width + k] + r[k] * g[k], clipping, act));
        REAL h = n[k] + z[k] * (h_prev[k] - n[k]); /* = z * h + (1 - z) * n with one multiply */
        h_next[k] = h;
        output[k] = h;
    }
    if (tape_rzn) {
        for (int k = 0; k < width; k++) {
            tape_rzn[k] = r[k];
            tape_rzn[width + k] = z[k];
            tape_rzn[2 * width + k] = n[k];
            tape_g[k] = g[k];
        }
    }
}

/* Reset-before, first half, one block of one row: r and z, and r * h. */
FG_INLINE void FN(rb1_block)(int hard, int clipping, int width, const fg_activation *act,
                              const REAL *restrict gates_x, const REAL *restrict gates_h,
                              REAL *restrict gates_rz, const REAL *restrict h_prev, REAL *restrict reset_h) {
    for (int k = 0; k < width; k++) {
        REAL r = FN(gate)(gates_x[k] + gates_h[k], hard, clipping, act);
        REAL z = FN(gate)(gates_x[width + k] + gates_h[width + k], hard, clipping, act);
        gates_rz[k] = r;
        gates_rz[width + k] = z;
        reset_h[k] = r * h_prev[k];
    }
}

/* Reset-before, second half, one block of one row: gates_hn = W_hn (r * h) for the block's units. */
FG_INLINE void FN(rb2_block)(int hard, int clipping, int width, const fg_activation *act,
                              const REAL *restrict gates_x, const REAL *restrict gates_rz,
                              const REAL *restrict gates_hn, const REAL *restrict h_prev,
                              REAL *restrict h_next, REAL *restrict output, REAL *restrict tape_rzn,
                              REAL *restrict tape_g) {
    (void)hard;
    REAL n[FG_BLOCK];
    for (int k = 0; k < width; k++) {
        n[k] = TANH(FN(clamp)(gates_x[2 * width + k] + gates_hn[k], clipping, act));
        REAL h = n[k] + gates_rz[width + k] * (h_prev[k] - n[k]);
        h_next[k] = h;
        output[k] = h;
    }
    if (tape_rzn) {
        for (int k = 0; k < width; k++) {
            tape_rzn[k] = gates_rz[k];
            tape_rzn[width + k] = gates_rz[width + k];
            tape_rzn[2 * width + k] = n[k];
            tape_g[k] = gates_hn[k];
        }
    }
}

#define ROW_SKIPPED(s, b) ((s)->mask && !(s)->mask[b])
#define GATES_X(s, b) ((const REAL *)(s)->gates_x + (b) * (s)->gates_x_stride)
#define OUTPUT(s, b) ((REAL *)(s)->output + (b) * (s)->output_stride)
#define TAPE(s, b) ((s)->tape ? (REAL *)(s)->tape + (b) * 4 * (s)->hidden : NULL)

static void FN(step_lbr)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden;
    const REAL *h_prev = (const REAL *)s->h_prev, *bias_hn = (const REAL *)s->bias_hn;
    REAL *h_next = (REAL *)s->h_next;
    REAL acc[FG_ROWS * FG_PANEL_MAX], packed[FG_PANEL_MAX];
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const REAL *panel = (const REAL *)s->panels + u * H * 24;
        for (int64_t i0 = 0; i0 < s->rows; i0 += FG_ROWS) {
            const int R = (int)(s->rows - i0 < FG_ROWS ? s->rows - i0 : FG_ROWS);
            FG_DOT_ROWS(R, 24, H, h_prev + i0 * H, H, panel, acc);
            for (int r = 0; r < R; r++) {
                const int64_t i = i0 + r, b = s->perm[i];
                if (ROW_SKIPPED(s, b)) continue;
                const REAL *gates_h = FN(unpad)(acc + r * FG_PANEL_MAX, 3, width, packed);
                REAL *tape = TAPE(s, b);
#define LBR(HARD, CLIP, WIDTH)                                                                        \
    FN(lbr_block)(HARD, CLIP, WIDTH, &s->act, GATES_X(s, b) + 3 * j0, gates_h, bias_hn + j0,            \
                  h_prev + i * H + j0, h_next + i * H + j0, OUTPUT(s, b) + j0, tape ? tape + 3 * j0 : NULL, \
                  tape ? tape + 3 * H + j0 : NULL)
                FG_SPECIALISE(&s->act, width, LBR);
#undef LBR
            }
        }
    }
}

static void FN(step_rb1)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden;
    const REAL *h_prev = (const REAL *)s->h_prev;
    REAL *gates_rz = (REAL *)s->gates_rz, *reset_h = (REAL *)s->reset_h;
    REAL acc[FG_ROWS * FG_PANEL_MAX], packed[FG_PANEL_MAX];
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const REAL *panel = (const REAL *)s->panels + u * H * 16;
        for (int64_t i0 = 0; i0 < s->rows; i0 += FG_ROWS) {
            const int R = (int)(s->rows - i0 < FG_ROWS ? s->rows - i0 : FG_ROWS);
            FG_DOT_ROWS(R, 16, H, h_prev + i0 * H, H, panel, acc);
            for (int r = 0; r < R; r++) {
                const int64_t i = i0 + r, b = s->perm[i];
                if (ROW_SKIPPED(s, b)) {
                    /* keeps the second half's product of this row finite (it is not used) */
                    memset(reset_h + i * H + j0, 0, (size_t)width * sizeof(REAL));
                    continue;
                }
                const REAL *gates_h = FN(unpad)(acc + r * FG_PANEL_MAX, 2, width, packed);
#define RB1(HARD, CLIP, WIDTH)                                                                        \
    FN(rb1_block)(HARD, CLIP, WIDTH, &s->act, GATES_X(s, b) + 3 * j0, gates_h, gates_rz + i * 2 * H + 2 * j0, \
                  h_prev + i * H + j0, reset_h + i * H + j0)
                FG_SPECIALISE(&s->act, width, RB1);
#undef RB1
            }
        }
    }
}

static void FN(step_rb2)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden;
    const REAL *h_prev = (const REAL *)s->h_prev, *gates_rz = (const REAL *)s->gates_rz;
    const REAL *reset_h = (const REAL *)s->reset_h;
    REAL *h_next = (REAL *)s->h_next;
    REAL acc[FG_ROWS * FG_PANEL_MAX];
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const REAL *panel = (const REAL *)s->panels_n + u * H * 8;
        for (int64_t i0 = 0; i0 < s->rows; i0 += FG_ROWS) {
            const int R = (int)(s->rows - i0 < FG_ROWS ? s->rows - i0 : FG_ROWS);
            FG_DOT_ROWS(R, 8, H, reset_h + i0 * H, H, panel, acc);
            for (int r = 0; r < R; r++) {
                const int64_t i = i0 + r, b = s->perm[i];
                if (ROW_SKIPPED(s, b)) continue;
                REAL *tape = TAPE(s, b);
#define RB2(HARD, CLIP, WIDTH)                                                                        \
    FN(rb2_block)(HARD, CLIP, WIDTH, &s->act, GATES_X(s, b) + 3 * j0, gates_rz + i * 2 * H + 2 * j0,     \
                  acc + r * FG_PANEL_MAX, h_prev + i * H + j0, h_next + i * H + j0, OUTPUT(s, b) + j0,     \
                  tape ? tape + 3 * j0 : NULL, tape ? tape + 3 * H + j0 : NULL)
                FG_SPECIALISE(&s->act, width, RB2);
#undef RB2
            }
        }
    }
}

static void FN(project)(const fg_project_args *p, int64_t block_begin, int64_t block_end) {
    const int64_t H = p->hidden, I = p->input_size;
    const REAL *input = (const REAL *)p->input, *bias = (const REAL *)p->bias_x;
    REAL acc[FG_ROWS * FG_PANEL_MAX], packed[FG_PANEL_MAX];
    /* Block-outer: a block's panel (I x 24) stays in L2 while every input row passes over it. */
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const REAL *panel = (const REAL *)p->panels_ih + u * I * 24;
        for (int64_t i0 = 0; i0 < p->rows; i0 += FG_ROWS) {
            const int R = (int)(p->rows - i0 < FG_ROWS ? p->rows - i0 : FG_ROWS);
            FG_DOT_ROWS(R, 24, I, input + i0 * p->input_stride, p->input_stride, panel, acc);
            for (int r = 0; r < R; r++) {
                const REAL *values = FN(unpad)(acc + r * FG_PANEL_MAX, 3, width, packed);
                REAL *out = (REAL *)p->gates_x + (i0 + r) * p->gates_x_stride + 3 * j0;
                for (int c = 0; c < 3 * width; c++) out[c] = values[c] + bias[3 * j0 + c];
            }
        }
    }
}

#undef ROW_SKIPPED
#undef GATES_X
#undef OUTPUT
#undef TAPE
#undef FG_SPECIALISE
#undef FG_DOT_ROWS
#undef FG_DOT_ROWS_4_TO_7
#undef DOT
#undef FG_ROWS
#undef FG_PANEL_MAX
#undef FG_INLINE
#undef FN
#undef FG_CAT3
#undef FG_CAT3_
