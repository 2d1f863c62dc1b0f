/* kernels_int8_impl.h: the recurrent step and the input projection of int8 models (internal.h, "int8
 * panels"), as a template over ISA and DOT (templates.h); its SFX is i8. Needs gates_impl.h for float.
 *
 * The int8 kernels reuse the float32 gate math (gate_math_f32, unpad_f32) unchanged. They differ from
 * the float32 kernels in two places only: the panel product is integer (DOT, or the portable
 * dot_generic below), and after the gate math the new state (or r * h) is also written as int8 for the
 * next product. Integer sums are exact and the float32 code after them is the same source for every
 * ISA (built with -ffp-contract=off, so no ISA fuses a multiply-add the other does not), hence every
 * ISA gives bitwise identical results.
 *
 * Dequantisation: a panel product of int8 activations a (scale a_scale) and int8 weights q (column
 * scale s[c]) is float(sum) * (a_scale * s[c]); the state's a_scale is 1/127, the layer input's is per
 * row (forward_impl.h). The activations arrive as code bytes in the form CODES (internal.h, "int8
 * panels"): FG_CODES_INT8, a itself, here and in the AVX2 product; FG_CODES_OFFSET, a + 128, in the
 * VNNI ones. The tables that take these kernels name the same form (fg_kernels.int8_codes).
 *
 * With PAIR_DOT and PAIR_GATHER (the 512-bit VNNI table) two adjacent full blocks are taken at once,
 * as in kernels_impl.h: one product over both blocks' columns in FG_I8_PAIR_ROWS-row tiles, then
 * gate_math_pair over their 16 units. The sums are exact and the float code after them the same, so
 * the bits are those of every other table. */

#if !defined(ISA) || !defined(CODES) || defined(REAL) || defined(SFX)
#error "kernels_int8_impl.h takes ISA, CODES, DOT, PAIR_DOT, PAIR_GATHER and NARROW only (templates.h)"
#endif
#if defined(PAIR_DOT) != defined(PAIR_GATHER)
#error "PAIR_DOT and PAIR_GATHER come together"
#endif
#ifdef NARROW
#define SFX i8n
#else
#define SFX i8
#endif
/* Batch rows per panel product (the int8 products hold 4 rows of accumulators). */
#define FG_I8_ROWS 4

/* acc[r][c] = sum_k a[r][k] * q[k][c] for R rows and C columns over Kp inputs (a multiple of 16), a
 * the rows' codes (FG_CODES_INT8: the bytes are the int8 codes), q the weights of int8 panel block
 * `block` (internal.h), in [k / 4][c][k % 4] order; acc rows FG_PANEL_COLUMNS apart. Plain integer arithmetic:
 * the sums are exact (internal.h), and this is what every ISA's kernel must reproduce. */
FG_INLINE void FN_ISA(dot_generic)(int R, int C, int64_t Kp, const uint8_t *a, int64_t lda, const char *block,
                                   int32_t *acc) {
    const int8_t *panel = (const int8_t *)(block + 8 * C);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r * FG_PANEL_COLUMNS + c] = 0;
    for (int64_t k = 0; k < Kp; k += 4) {
        const int8_t *q = panel + k * C;
        for (int r = 0; r < R; r++) {
            const int8_t *x = (const int8_t *)(a + r * lda + k);
            int32_t *sum = acc + r * FG_PANEL_COLUMNS;
            for (int c = 0; c < C; c++)
                sum[c] += x[0] * q[4 * c] + x[1] * q[4 * c + 1] + x[2] * q[4 * c + 2] + x[3] * q[4 * c + 3];
        }
    }
}

#ifndef DOT
#define DOT FN_ISA(dot_generic)
#endif

/* The panel product for R = rows (1..4), each R a constant for the compiler. */
FG_INLINE void FN_ISA(dot_rows)(int R, int C, int64_t Kp, const uint8_t *a, int64_t lda, const char *block,
                                int32_t *acc) {
    switch (R) {
    case 1: DOT(1, C, Kp, a, lda, block, acc); break;
    case 2: DOT(2, C, Kp, a, lda, block, acc); break;
    case 3: DOT(3, C, Kp, a, lda, block, acc); break;
    default: DOT(4, C, Kp, a, lda, block, acc); break;
    }
}

/* gates[c] = float(acc[c]) * (activation_scale * column_scale[c]) for the C (padded) columns. */
FG_INLINE void FN_ISA(dequantize)(int C, const int32_t *acc, float activation_scale, const float *column_scale,
                                  float *gates) {
    for (int c = 0; c < C; c++) gates[c] = (float)acc[c] * (activation_scale * column_scale[c]);
}

/* The step kernels take the products of FG_I8_GROUP blocks, then the gate math of those blocks. (Meant to
 * let the gate math of several blocks overlap; on Zen 4 it measured the same as block by block, 1 to
 * 16 blocks: the products stream the weights at the L2/L3 bandwidth, and the gate math adds about 30
 * ns per block either way.) */
#define FG_I8_GROUP 4

/* gates[gb][r][0:C] = the dequantised products of rows [i0, i0 + R) of `codes` (row stride Hp) with
 * the C-column int8 panels of blocks [u0, u0 + blocks): float(sum) * (row scale * column scale). */
FG_INLINE void FN_ISA(products)(const fg_step_args *s, const void *panels, int C, const uint8_t *codes, int64_t u0,
                                int blocks, int64_t i0, int R, float gates[][FG_I8_ROWS][FG_PANEL_COLUMNS]) {
    const int64_t H = s->hidden, Hp = fg_i8_padded(H);
    int32_t acc[FG_I8_ROWS * FG_PANEL_COLUMNS];
    for (int gb = 0; gb < blocks; gb++) {
        const char *block = fg_i8_block(panels, u0 + gb, C, H);
        FN_ISA(dot_rows)(R, C, Hp, codes + i0 * Hp, Hp, block, acc);
        for (int r = 0; r < R; r++)
            FN_ISA(dequantize)(C, acc + r * FG_PANEL_COLUMNS, s->state_scale[i0 + r], fg_i8_block_scale(block, C),
                               gates[gb][r]);
    }
}


#ifdef PAIR_DOT
/* Batch rows per product of two blocks: 8 rows x 3 vectors = 24 accumulators in AVX-512's registers. */
#define FG_I8_PAIR_ROWS 8

/* PAIR_DOT(R, C, Kp, a, lda, block_u, block_v, acc, deinterleave): the exact int32 products of two
 * adjacent int8 panel blocks (C columns each), acc rows 2 * FG_PANEL_COLUMNS apart holding u's C
 * columns then v's, or with deinterleave gate g of both at [16g, 16g + 16), for R = rows. */
FG_INLINE void FN_ISA(pair_rows)(int R, int C, int64_t Kp, const uint8_t *a, int64_t lda, const char *block_u,
                                 const char *block_v, int32_t *acc, int deinterleave) {
    switch (R) {
    case 1: PAIR_DOT(1, C, Kp, a, lda, block_u, block_v, acc, deinterleave); break;
    case 2: PAIR_DOT(2, C, Kp, a, lda, block_u, block_v, acc, deinterleave); break;
    case 3: PAIR_DOT(3, C, Kp, a, lda, block_u, block_v, acc, deinterleave); break;
    case 4: PAIR_DOT(4, C, Kp, a, lda, block_u, block_v, acc, deinterleave); break;
    case 5: PAIR_DOT(5, C, Kp, a, lda, block_u, block_v, acc, deinterleave); break;
    case 6: PAIR_DOT(6, C, Kp, a, lda, block_u, block_v, acc, deinterleave); break;
    case 7: PAIR_DOT(7, C, Kp, a, lda, block_u, block_v, acc, deinterleave); break;
    default: PAIR_DOT(8, C, Kp, a, lda, block_u, block_v, acc, deinterleave); break;
    }
}

/* The column scales of two blocks in the order of their products: one after the other, or
 * deinterleaved by gate. */
FG_INLINE void FN_ISA(pair_scales)(int C, const char *block_u, const char *block_v, int deinterleave, float *scales) {
    const float *su = fg_i8_block_scale(block_u, C), *sv = fg_i8_block_scale(block_v, C);
    for (int g = 0; g < C / FG_BLOCK; g++)
        for (int w = 0; w < FG_BLOCK; w++) {
            scales[deinterleave ? g * FG_GATE_SPAN + w : g * FG_BLOCK + w] = su[g * FG_BLOCK + w];
            scales[deinterleave ? g * FG_GATE_SPAN + FG_BLOCK + w : C + g * FG_BLOCK + w] = sv[g * FG_BLOCK + w];
        }
}

/* The step kernel `kind` for the two full blocks u, u + 1 (units [j0, j0 + 16)). */
FG_INLINE void FN_ISA(step_pair)(int kind, const fg_step_args *s, int C, const void *panels, const uint8_t *codes,
                                 int64_t u) {
    const int64_t H = s->hidden, Hp = fg_i8_padded(H), j0 = u * FG_BLOCK;
    const char *block_u = fg_i8_block(panels, u, C, H), *block_v = fg_i8_block(panels, u + 1, C, H);
    int32_t acc[FG_I8_PAIR_ROWS * 2 * FG_PANEL_COLUMNS] __attribute__((aligned(64)));
    float scales[2 * FG_PANEL_COLUMNS], gates[2 * FG_PANEL_COLUMNS] __attribute__((aligned(64)));
    float x48[3 * FG_GATE_SPAN] __attribute__((aligned(64))), rz32[2 * FG_GATE_SPAN] __attribute__((aligned(64)));
    FN_ISA(pair_scales)(C, block_u, block_v, 1, scales);
    for (int64_t i0 = 0; i0 < s->rows; i0 += FG_I8_PAIR_ROWS) {
        const int R = (int)(s->rows - i0 < FG_I8_PAIR_ROWS ? s->rows - i0 : FG_I8_PAIR_ROWS);
        prefetch_gates_x_f32(s, i0, R, j0, FG_GATE_SPAN);
        FN_ISA(pair_rows)(R, C, Hp, codes + i0 * Hp, Hp, block_u, block_v, acc, 1);
        for (int r = 0; r < R; r++) {
            const int64_t i = i0 + r, b = s->perm[i];
            if (s->mask && !s->mask[b]) {
                if (kind == FG_STEP_RB1) memset(s->reset_h_q + i * Hp + j0, fg_code_offset(CODES), FG_GATE_SPAN);
                continue;
            }
            FN_ISA(dequantize)(2 * C, acc + r * 2 * FG_PANEL_COLUMNS, s->state_scale[i], scales, gates);
            PAIR_GATHER(3, (const float *)s->gates_x + b * s->gates_x_stride + 3 * j0, x48);
            if (kind == FG_STEP_RB2) PAIR_GATHER(2, (const float *)s->gates_rz + i * 2 * H + 2 * j0, rz32);
            gate_math_pair_f32(kind, CODES, s, i, b, j0, x48, gates, rz32);
        }
    }
}
#endif

/* The step kernel `kind` (templates.h) over the unit blocks [block_begin, block_end): per group of
 * blocks and group of rows, the products, then the gate math of each (block, row). */
FG_INLINE void FN_ISA(step)(int kind, const fg_step_args *s, int64_t block_begin, int64_t block_end) {
    const int64_t H = s->hidden, Hp = fg_i8_padded(H);
    /* a block's panel columns: [r z n], [r z], or reset-before's W_hn, which multiplies r * h */
    const int C = kind == FG_STEP_LBR ? 24 : kind == FG_STEP_RB1 ? 16 : 8;
    const void *panels = kind == FG_STEP_RB2 ? s->panels_n : s->panels;
    const uint8_t *codes = kind == FG_STEP_RB2 ? s->reset_h_q : s->h_prev_q;
    float gates[FG_I8_GROUP][FG_I8_ROWS][FG_PANEL_COLUMNS], packed[FG_PANEL_COLUMNS];
#ifdef PAIR_DOT
    /* pairs of full blocks first; what is left (an odd block, the narrower last one) below */
    for (; block_begin + 1 < block_end && fg_block_width(H, block_begin + 1) == FG_BLOCK; block_begin += 2)
        FN_ISA(step_pair)(kind, s, C, panels, codes, block_begin);
#endif
    for (int64_t u0 = block_begin; u0 < block_end; u0 += FG_I8_GROUP) {
        const int blocks = (int)(block_end - u0 < FG_I8_GROUP ? block_end - u0 : FG_I8_GROUP);
        for (int64_t i0 = 0; i0 < s->rows; i0 += FG_I8_ROWS) {
            const int R = (int)(s->rows - i0 < FG_I8_ROWS ? s->rows - i0 : FG_I8_ROWS);
            FN_ISA(products)(s, panels, C, codes, u0, blocks, i0, R, gates);
            for (int gb = 0; gb < blocks; gb++)
                for (int r = 0; r < R; r++) {
                    const int64_t u = u0 + gb, i = i0 + r, b = s->perm[i];
                    const int64_t j0 = u * FG_BLOCK;
                    const int width = fg_block_width(H, u);
                    if (s->mask && !s->mask[b]) {
                        /* keeps the second half's product of this row defined (it is not used) */
                        if (kind == FG_STEP_RB1)
                            memset(s->reset_h_q + i * Hp + j0, fg_code_offset(CODES), (size_t)width);
                        continue;
                    }
                    /* W_hn's product has one gate: a tail block's values are already its first `width` */
                    const float *gates_h =
                        kind == FG_STEP_RB2 ? gates[gb][r] : unpad_f32(gates[gb][r], C / FG_BLOCK, width, packed);
                    gate_math_f32(kind, CODES, s, width, i, b, j0, gates_h);
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
    const int64_t H = p->hidden, I = p->input_size, Ip = fg_i8_padded(I);
    const uint8_t *input = (const uint8_t *)p->input;
    const float *bias = (const float *)p->bias_x;
    int32_t acc[FG_I8_ROWS * FG_PANEL_COLUMNS];
    float gates[FG_PANEL_COLUMNS], packed[FG_PANEL_COLUMNS];
    /* Block-outer: a block's panel (Ip x 24 bytes) stays in L1/L2 while every input row passes over it. */
#ifdef PAIR_DOT
    for (; block_begin + 1 < block_end && fg_block_width(H, block_begin + 1) == FG_BLOCK; block_begin += 2) {
        const int64_t j0 = block_begin * FG_BLOCK;
        const char *block_u = fg_i8_block(p->panels_ih, block_begin, 24, I);
        const char *block_v = fg_i8_block(p->panels_ih, block_begin + 1, 24, I);
        int32_t pair_acc[FG_I8_PAIR_ROWS * 2 * FG_PANEL_COLUMNS] __attribute__((aligned(64)));
        float scales[2 * FG_PANEL_COLUMNS], values[2 * FG_PANEL_COLUMNS];
        FN_ISA(pair_scales)(24, block_u, block_v, 0, scales);
        for (int64_t i0 = 0; i0 < p->rows; i0 += FG_I8_PAIR_ROWS) {
            const int R = (int)(p->rows - i0 < FG_I8_PAIR_ROWS ? p->rows - i0 : FG_I8_PAIR_ROWS);
            FN_ISA(pair_rows)(R, 24, Ip, input + i0 * p->input_stride, p->input_stride, block_u, block_v, pair_acc, 0);
            for (int r = 0; r < R; r++) {
                FN_ISA(dequantize)(2 * FG_PANEL_COLUMNS, pair_acc + r * 2 * FG_PANEL_COLUMNS, p->input_scale[i0 + r],
                                   scales, values);
                float *out = (float *)p->gates_x + (i0 + r) * p->gates_x_stride + 3 * j0;
                for (int c = 0; c < 2 * FG_PANEL_COLUMNS; c++) out[c] = values[c] + bias[3 * j0 + c];
            }
        }
    }
#endif
    for (int64_t u = block_begin; u < block_end; u++) {
        const int64_t j0 = u * FG_BLOCK;
        const int width = fg_block_width(H, u);
        const char *block = fg_i8_block(p->panels_ih, u, 24, I);
        for (int64_t i0 = 0; i0 < p->rows; i0 += FG_I8_ROWS) {
            const int R = (int)(p->rows - i0 < FG_I8_ROWS ? p->rows - i0 : FG_I8_ROWS);
            FN_ISA(dot_rows)(R, 24, Ip, input + i0 * p->input_stride, p->input_stride, block, acc);
            for (int r = 0; r < R; r++) {
                FN_ISA(dequantize)(24, acc + r * FG_PANEL_COLUMNS, p->input_scale[i0 + r],
                                   fg_i8_block_scale(block, 24), gates);
                const float *values = unpad_f32(gates, 3, width, packed);
                float *out = (float *)p->gates_x + (i0 + r) * p->gates_x_stride + 3 * j0;
                for (int c = 0; c < 3 * width; c++) out[c] = values[c] + bias[3 * j0 + c];
            }
        }
    }
}

/* Rows [begin, end) of `rows` (width floats each, stride apart) as code bytes (internal.h, fg_code_byte,
 * in this instantiation's form CODES) with one scale per row: fbgemm's dynamic quantization (the scale
 * is computed from the data at run time, just before the product), but symmetric and per row: scale =
 * max|row| / 127, code = round-half-even(v * 127 / max|row|). A row holding a NaN gets a NaN scale, so
 * the NaN reaches the outputs as in float32; an all-zero row gets scale 0. Padding columns up to
 * padded(width) hold the code of zero. Elementwise and exact but for the one rounding of v * inverse,
 * so every table's vector width gives the same bytes; compiled for each table's ISA because in the
 * portable build (SSE2: its integer max has no pmaxsd) int8 batch calls on the Zen 5 of docs/kernels.md
 * took 3-7% longer. */
void FN_ISA(quantize)(const float *rows, int64_t stride, int64_t width, int64_t begin, int64_t end, uint8_t *codes,
                      float *scales) {
    const int64_t padded = fg_i8_padded(width);
    for (int64_t i = begin; i < end; i++) {
        const float *restrict row = rows + i * stride;
        uint8_t *restrict code = codes + i * padded;
        /* max |v| on the bits: for non-negative floats, integer order is float order, and every NaN
         * is above infinity, so a NaN wins as the float loop's NaN check made it; integer max is a
         * reduction the compiler vectorizes, float max with NaNs is not */
        int32_t largest_bits = 0;
        for (int64_t k = 0; k < width; k++) {
            int32_t bits;
            memcpy(&bits, row + k, sizeof bits);
            bits &= 0x7FFFFFFF;
            largest_bits = bits > largest_bits ? bits : largest_bits;
        }
        float largest;
        memcpy(&largest, &largest_bits, sizeof largest);
        const float inverse = largest > 0 ? 127.0f / largest : 0.0f;
        for (int64_t k = 0; k < width; k++) code[k] = fg_code_byte(row[k] * inverse, CODES);
        for (int64_t k = width; k < padded; k++) code[k] = (uint8_t)fg_code_offset(CODES);
        scales[i] = largest / 127.0f;
    }
}

#undef FG_I8_GROUP
#undef FG_I8_ROWS
#undef FG_I8_PAIR_ROWS
#undef SFX
#undef ISA
#undef CODES
#undef DOT
#undef PAIR_DOT
#undef PAIR_GATHER
#undef NARROW
