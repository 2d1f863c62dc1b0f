/* kernels_int8_impl.h: the recurrent step and the input projection of int8 models (internal.h, "int8
 * panels"), as a template.
 *
 * Included once per ISA by kernels_*.c, after kernels_impl.h's float32 instantiation (for GATE_ISA, by
 * default ISA): the int8 kernels reuse its gate math (lbr_block, rb1_block, rb2_block, unpad) unchanged.
 * They differ
 * from the float32 kernels in two places only: the panel product is integer (DOT_I8, or the portable
 * dot_i8_generic), and after the gate math the new state (or r * h) is also written as int8 for the
 * next product. Integer sums are exact and the float32 code after them is the same source for every
 * ISA (built with -ffp-contract=off, so no ISA fuses a multiply-add the other does not), hence every
 * ISA gives bitwise identical results.
 *
 * Dequantisation: a panel product of int8 activations a (scale a_scale) and int8 weights q (column
 * scale s[c]) is float(sum) * (a_scale * s[c]); the state's a_scale is 1/127, the layer input's is per
 * row (forward_impl.h). */

#define FG_I8_CAT_(a, b, c) a##_##b##_##c
#define FG_I8_CAT(a, b, c) FG_I8_CAT_(a, b, c)
#define FNI(name) FG_I8_CAT(name, i8, ISA)   /* this template's functions */
#ifndef GATE_ISA
#define GATE_ISA ISA
#endif
#define FNF(name) FG_I8_CAT(name, f32, GATE_ISA)  /* the float32 gate math of kernels_impl.h */
#define FG_I8_INLINE static inline __attribute__((always_inline))
#define FG_I8_ROWS 4
#define FG_I8_COLUMNS 24

/* acc[r][c] = sum_k a[r][k] * q[k][c] for R rows and C columns over Kp inputs (a multiple of 16), q
 * the weights of int8 panel block `block` (internal.h), in [k / 4][c][k % 4] order; acc rows
 * FG_I8_COLUMNS apart. Plain integer arithmetic: the sums are exact (internal.h), and this is what
 * every ISA's kernel must reproduce. */
FG_I8_INLINE void FNI(dot_generic)(int R, int C, int64_t Kp, const int8_t *a, int64_t lda, const char *block,
                                   int32_t *acc) {
    const int8_t *panel = (const int8_t *)(block + 8 * C);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r * FG_I8_COLUMNS + c] = 0;
    for (int64_t k = 0; k < Kp; k += 4) {
        const int8_t *q = panel + k * C;
        for (int r = 0; r < R; r++) {
            const int8_t *x = a + r * lda + k;
            int32_t *sum = acc + r * FG_I8_COLUMNS;
            for (int c = 0; c < C; c++)
                sum[c] += x[0] * q[4 * c] + x[1] * q[4 * c + 1] + x[2] * q[4 * c + 2] + x[3] * q[4 * c + 3];
        }
    }
}

#ifndef DOT_I8
#define DOT_I8 FNI(dot_generic)
#endif

#define FG_I8_DOT_ROWS(R, C, Kp, a, lda, panel, acc)                                                  \
    do {                                                                                              \
        switch (R) {                                                                                  \
        case 1: DOT_I8(1, C, Kp, a, lda, panel, acc); break;                                          \
        case 2: DOT_I8(2, C, Kp, a, lda, panel, acc); break;                                          \
        case 3: DOT_I8(3, C, Kp, a, lda, panel, acc); break;                                          \
        default: DOT_I8(4, C, Kp, a, lda, panel, acc); break;                                         \
        }                                                                                             \
    } while (0)

/* As kernels_impl.h's FG_SPECIALISE: BODY(hard, clipping, width) with constants where it pays. */
#define FG_I8_SPECIALISE(act, width, BODY)                                                            \
    do {                                                                                              \
        const int hard_ = (act)->hard_sigmoid, clipping_ = (act)->clip > 0;                            \
        if ((width) == FG_BLOCK) {                                                                    \
            if (!hard_ && !clipping_) { BODY(0, 0, FG_BLOCK); }                                       \
            else if (!hard_) { BODY(0, 1, FG_BLOCK); }                                                \
            else if (!clipping_) { BODY(1, 0, FG_BLOCK); }                                            \
            else { BODY(1, 1, FG_BLOCK); }                                                            \
        } else {                                                                                      \
            BODY(hard_, clipping_, (width));                                                          \
        }                                                                                             \
    } while (0)

/* The header of int8 panel block u (internal.h): column sums, column scales, then the weights. */
#define BLOCK(panels, u, C, K) ((const char *)(panels) + (u) * fg_i8_block_bytes(C, K))
#define BLOCK_SCALE(block, C) ((const float *)((block) + 4 * (C)))

/* gates[c] = float(acc[c]) * (activation_scale * column_scale[c]) for the C (padded) columns. */
FG_I8_INLINE void FNI(dequantize)(int C, const int32_t *acc, float activation_scale, const float *column_scale,
                                  float *gates) {
    for (int c = 0; c < C; c++) gates[c] = (float)acc[c] * (activation_scale * column_scale[c]);
}

/* codes[k] = the int8 code of values[k] * inverse (inverse = 1 / the row's state scale). */
FG_I8_INLINE void FNI(quantize_units)(int width, const float *restrict values, float inverse,
                                      int8_t *restrict codes) {
    /* float steps in a local array first: stores through int8_t may alias anything, which keeps the
     * compiler from vectorising a loop that mixes them with float loads */
    int32_t rounded[FG_BLOCK];
    for (int k = 0; k < width; k++) rounded[k] = (int32_t)fg_quantize_code(values[k] * inverse);
    for (int k = 0; k < width; k++) codes[k] = (int8_t)rounded[k];
}

#define ROW_SKIPPED(s, b) ((s)->mask && !(s)->mask[b])
#define GATES_X(s, b) ((const float *)(s)->gates_x + (b) * (s)->gates_x_stride)
#define OUTPUT(s, b) ((float *)(s)->output + (b) * (s)->output_stride)

/* The step kernels take the products of FG_I8_GROUP blocks, then the gate math of those blocks. (Meant to
 * let the gate math of several blocks overlap; on Zen 4 it measured the same as block by block, 1 to
 * 16 blocks: the products stream the weights at the L2/L3 bandwidth, and the gate math adds about 30
 * ns per block either way.) */
#define FG_I8_GROUP 4

/* gates[gb][r][0:C] = the dequantised products of rows [i0, i0 + R) of `codes` (row stride Hp) with
 * the C-column int8 panels of blocks [u0, u0 + blocks): float(sum) * (row scale * column scale). */
FG_I8_INLINE void FNI(products)(const fg_step_args *s, const void *panels, int C, const int8_t *codes, int64_t u0,
                                int blocks, int64_t i0, int R, float gates[][FG_I8_ROWS][FG_I8_COLUMNS]) {
    const int64_t H = s->hidden, Hp = fg_i8_padded(H);
    int32_t acc[FG_I8_ROWS * FG_I8_COLUMNS];
    for (int gb = 0; gb < blocks; gb++) {
        const char *block = BLOCK(panels, u0 + gb, C, H);
        FG_I8_DOT_ROWS(R, C, Hp, codes + i0 * Hp, Hp, block, acc);
        for (int r = 0; r < R; r++)
            FNI(dequantize)(C, acc + r * FG_I8_COLUMNS, s->state_scale[i0 + r], BLOCK_SCALE(block, C), gates[gb][r]);
    }
}

/* Loops over groups of blocks and groups of rows: BODY(gb, r, u, i, b) runs the gate math of block u
 * (gb-th of its group), row i (r-th of its group; batch entry b) after the group's products. */
#define FG_I8_STEP_LOOP(s, panels, C, codes, block_begin, block_end, BODY)                            \
    do {                                                                                              \
        float gates[FG_I8_GROUP][FG_I8_ROWS][FG_I8_COLUMNS];                                          \
        for (int64_t u0 = (block_begin); u0 < (block_end); u0 += FG_I8_GROUP) {                       \
            const int blocks = (int)((block_end) - u0 < FG_I8_GROUP ? (block_end) - u0 : FG_I8_GROUP); \
            for (int64_t i0 = 0; i0 < (s)->rows; i0 += FG_I8_ROWS) {                                  \
                const int R = (int)((s)->rows - i0 < FG_I8_ROWS ? (s)->rows - i0 : FG_I8_ROWS);        \
                FNI(products)(s, panels, C, codes, u0, blocks, i0, R, gates);                         \
                for (int gb = 0; gb < blocks; gb++)                                                   \
                    for (int r = 0; r < R; r++) {                                                     \
                        const int64_t u = u0 + gb, i = i0 + r, b = (s)->perm[i];                      \
                        BODY;                                                                         \
                    }                                                                                 \
            }                                                                                         \
        }                                                                                             \
    } while (0)

static void FNI(step_lbr)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden, Hp = fg_i8_padded(H);
    const float *h_prev = (const float *)s->h_prev, *bias_hn = (const float *)s->bias_hn;
    float *h_next = (float *)s->h_next;
    float packed[FG_I8_COLUMNS];
#define LBR(HARD, CLIP, WIDTH)                                                                        \
    FNF(lbr_block)(HARD, CLIP, WIDTH, &s->act, GATES_X(s, b) + 3 * j0, gates_h, bias_hn + j0, h_prev + i * H + j0, \
                   h_next + i * H + j0, OUTPUT(s, b) + j0, NULL, NULL);                                \
    FNI(quantize_units)(WIDTH, h_next + i * H + j0, s->state_inverse[i], s->h_next_q + i * Hp + j0)
    FG_I8_STEP_LOOP(s, s->panels, 24, s->h_prev_q, block_begin, block_end, {
        if (ROW_SKIPPED(s, b)) continue;
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const float *gates_h = FNF(unpad)(gates[gb][r], 3, width, packed);
        FG_I8_SPECIALISE(&s->act, width, LBR);
    });
#undef LBR
}

static void FNI(step_rb1)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden, Hp = fg_i8_padded(H);
    const float *h_prev = (const float *)s->h_prev;
    float *gates_rz = (float *)s->gates_rz, *reset_h = (float *)s->reset_h;
    float packed[FG_I8_COLUMNS];
#define RB1(HARD, CLIP, WIDTH)                                                                        \
    FNF(rb1_block)(HARD, CLIP, WIDTH, &s->act, GATES_X(s, b) + 3 * j0, gates_h, gates_rz + i * 2 * H + 2 * j0, \
                   h_prev + i * H + j0, reset_h + i * H + j0);                                         \
    FNI(quantize_units)(WIDTH, reset_h + i * H + j0, s->state_inverse[i], s->reset_h_q + i * Hp + j0)
    FG_I8_STEP_LOOP(s, s->panels, 16, s->h_prev_q, block_begin, block_end, {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        if (ROW_SKIPPED(s, b)) {
            /* keeps the second half's product of this row defined (it is not used) */
            memset(s->reset_h_q + i * Hp + j0, 0, (size_t)width);
            continue;
        }
        const float *gates_h = FNF(unpad)(gates[gb][r], 2, width, packed);
        FG_I8_SPECIALISE(&s->act, width, RB1);
    });
#undef RB1
}

static void FNI(step_rb2)(const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden, Hp = fg_i8_padded(H);
    const float *h_prev = (const float *)s->h_prev, *gates_rz = (const float *)s->gates_rz;
    float *h_next = (float *)s->h_next;
#define RB2(HARD, CLIP, WIDTH)                                                                        \
    FNF(rb2_block)(HARD, CLIP, WIDTH, &s->act, GATES_X(s, b) + 3 * j0, gates_rz + i * 2 * H + 2 * j0, gates[gb][r], \
                   h_prev + i * H + j0, h_next + i * H + j0, OUTPUT(s, b) + j0, NULL, NULL);             \
    FNI(quantize_units)(WIDTH, h_next + i * H + j0, s->state_inverse[i], s->h_next_q + i * Hp + j0)
    FG_I8_STEP_LOOP(s, s->panels_n, 8, s->reset_h_q, block_begin, block_end, {
        if (ROW_SKIPPED(s, b)) continue;
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        FG_I8_SPECIALISE(&s->act, width, RB2);
    });
#undef RB2
}

static void FNI(project)(const fg_project_args *p, int64_t block_begin, int64_t block_end) {
    const int64_t H = p->hidden, I = p->input_size, Ip = fg_i8_padded(I);
    const int8_t *input = (const int8_t *)p->input;
    const float *bias = (const float *)p->bias_x;
    int32_t acc[FG_I8_ROWS * FG_I8_COLUMNS];
    float gates[FG_I8_COLUMNS], packed[FG_I8_COLUMNS];
    /* Block-outer: a block's panel (Ip x 24 bytes) stays in L1/L2 while every input row passes over it. */
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const char *block = BLOCK(p->panels_ih, u, 24, I);
        for (int64_t i0 = 0; i0 < p->rows; i0 += FG_I8_ROWS) {
            const int R = (int)(p->rows - i0 < FG_I8_ROWS ? p->rows - i0 : FG_I8_ROWS);
            FG_I8_DOT_ROWS(R, 24, Ip, input + i0 * p->input_stride, p->input_stride, block, acc);
            for (int r = 0; r < R; r++) {
                FNI(dequantize)(24, acc + r * FG_I8_COLUMNS, p->input_scale[i0 + r], BLOCK_SCALE(block, 24), gates);
                const float *values = FNF(unpad)(gates, 3, width, packed);
                float *out = (float *)p->gates_x + (i0 + r) * p->gates_x_stride + 3 * j0;
                for (int c = 0; c < 3 * width; c++) out[c] = values[c] + bias[3 * j0 + c];
            }
        }
    }
}

#undef ROW_SKIPPED
#undef GATES_X
#undef OUTPUT
#undef BLOCK
#undef BLOCK_SCALE
#undef FG_I8_STEP_LOOP
#undef FG_I8_GROUP
#undef FG_I8_SPECIALISE
#undef FG_I8_DOT_ROWS
#undef DOT_I8
#undef FG_I8_COLUMNS
#undef FG_I8_ROWS
#undef FG_I8_INLINE
#undef FNF
#undef GATE_ISA
#undef FNI
#undef FG_I8_CAT
#undef FG_I8_CAT_
