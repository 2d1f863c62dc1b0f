/* gates_impl.h: the gate math of the fused recurrent step (internal.h, "kernels"), as a template over
 * REAL and SFX (templates.h); needs activations.h.
 *
 * Instantiated once per REAL in each kernels_*.c file, after its target pragma and before its kernel
 * templates, which all call gate_math: the float kernels of every ISA in the file (kernels_impl.h) and,
 * with REAL float, the int8 ones (kernels_int8_impl.h), so the float32 code after an int8 product is
 * the same source on every ISA (internal.h, "int8 panels"). Everything here is forced inline and
 * compiled in the calling kernel's target. gate_math calls the block functions with constant widths
 * and flags, so the compiler emits one branch-free vector loop per combination of (gate activation,
 * clip, full or tail block). */
#if !defined(REAL) || !defined(SFX)
#error "gates_impl.h takes REAL and SFX (templates.h)"
#endif

FG_INLINE REAL FN(clamp)(REAL a, int clipping, const fg_activation *act) {
    if (clipping) {
        a = a < (REAL)-act->clip ? (REAL)-act->clip : a;
        a = a > (REAL)act->clip ? (REAL)act->clip : a;
    }
    return a;
}

FG_INLINE REAL FN(gate)(REAL a, int hard, int clipping, const fg_activation *act) {
    a = FN(clamp)(a, clipping, act);
    if (!hard) return FG_SIGMOID(a);
    REAL v = (REAL)act->alpha * a + (REAL)act->beta;
    v = v < 0 ? 0 : v;
    return v > 1 ? 1 : v;
}

/* Prefetches the input projections (gates_x) of rows [i0, i0 + n) for the `width` units at j0 (3 gates
 * each). They were written a chunk ago and have left the caches: fetched before a step's product, they
 * arrive while it runs instead of stalling the gate math after it. */
FG_INLINE void FN(prefetch_gates_x)(const fg_step_args *s, int64_t i0, int64_t n, int64_t j0, int width) {
    for (int64_t r = 0; r < n; r++) {
        const char *x = (const char *)((const REAL *)s->gates_x + s->perm[i0 + r] * s->gates_x_stride + 3 * j0);
        for (int64_t line = 0; line < (int64_t)(3 * width * sizeof(REAL)); line += 64) __builtin_prefetch(x + line);
    }
}

/* A tail block has width < 8 units but its panel columns are padded to 8 per gate: pack the product
 * into the [g0 (width), g1 (width), ...] order that the gate vectors use. */
FG_INLINE const REAL *FN(unpad)(const REAL *acc, int gates, int width, REAL *packed) {
    if (width == FG_BLOCK) return acc;
    for (int g = 0; g < gates; g++)
        for (int w = 0; w < width; w++) packed[g * width + w] = acc[g * FG_BLOCK + w];
    return packed;
}

/* Linear-before-reset gate math for one block of one row (width <= FG_BLOCK), or for two adjacent full
 * blocks at once (width 2 * FG_BLOCK, gate_math_pair: the vectors are then deinterleaved by gate). */
FG_INLINE void FN(lbr_block)(int hard, int clipping, int width, const fg_activation *act,
                             const REAL *restrict gates_x, const REAL *restrict gates_h,
                             const REAL *restrict bias_hn, const REAL *restrict h_prev,
                             REAL *restrict h_next, REAL *restrict output, REAL *restrict tape_rzn,
                             REAL *restrict tape_g) {
    /* The gate values go through small arrays so that the loop has no branch (the tape is optional)
     * and vectorises; the tape is written by a second loop. */
    REAL r[FG_GATE_SPAN], z[FG_GATE_SPAN], n[FG_GATE_SPAN], g[FG_GATE_SPAN];
    for (int k = 0; k < width; k++) {
        r[k] = FN(gate)(gates_x[k] + gates_h[k], hard, clipping, act);
        z[k] = FN(gate)(gates_x[width + k] + gates_h[width + k], hard, clipping, act);
        g[k] = gates_h[2 * width + k] + bias_hn[k];
        n[k] = FG_TANH(FN(clamp)(gates_x[2 * width + k] + r[k] * g[k], clipping, act));
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

/* Reset-before, first half, one block of one row (or a pair, as lbr_block): r and z, and r * h. */
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

/* Reset-before, second half, one block of one row (or a pair, as lbr_block): gates_hn = W_hn (r * h)
 * for the block's units. */
FG_INLINE void FN(rb2_block)(int hard, int clipping, int width, const fg_activation *act,
                             const REAL *restrict gates_x, const REAL *restrict gates_rz,
                             const REAL *restrict gates_hn, const REAL *restrict h_prev,
                             REAL *restrict h_next, REAL *restrict output, REAL *restrict tape_rzn,
                             REAL *restrict tape_g) {
    (void)hard;
    REAL n[FG_GATE_SPAN];
    for (int k = 0; k < width; k++) {
        n[k] = FG_TANH(FN(clamp)(gates_x[2 * width + k] + gates_hn[k], clipping, act));
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

/* codes[k] = the code byte (internal.h, fg_code_byte, in the constant form `form`) of values[k] *
 * inverse (inverse = 1 / the row's state scale); int8 models only, whose REAL is float. */
FG_INLINE void FN(quantize_units)(int width, int form, const REAL *restrict values, float inverse,
                                  uint8_t *restrict codes) {
    /* float steps in a local array first: stores through uint8_t may alias anything, which keeps the
     * compiler from vectorising a loop that mixes them with float loads; the form must be a constant
     * (with the table's form read at run time, GCC 12 left the loop scalar and int8 steps lost 12%) */
    int32_t rounded[FG_GATE_SPAN];
    for (int k = 0; k < width; k++) rounded[k] = (int32_t)fg_code_byte((float)values[k] * inverse, form);
    for (int k = 0; k < width; k++) codes[k] = (uint8_t)rounded[k];
}

/* The gate math of step `kind` (templates.h) for the units [j0, j0 + width) of row i (batch entry b)
 * of a step, from gates_h, the block's recurrent product with the padding removed; hard, clipping and
 * width are constants for the compiler (gate_math). With `codes` (int8 models: the form of their code
 * bytes, internal.h; FG_CODES_NONE for float models) the new state, or r * h, is also written as code
 * bytes for the next product, and no tape is written. */
FG_INLINE void FN(gate_math_constant)(int kind, int codes, int hard, int clipping, int width, const fg_step_args *s,
                                      int64_t i, int64_t b, int64_t j0, const REAL *gates_h) {
    const int64_t H = s->hidden, Hp = fg_i8_padded(H);
    const REAL *gates_x = (const REAL *)s->gates_x + b * s->gates_x_stride + 3 * j0;
    const REAL *h_prev = (const REAL *)s->h_prev + i * H + j0;
    if (kind == FG_STEP_RB1) {
        REAL *reset_h = (REAL *)s->reset_h + i * H + j0;
        FN(rb1_block)(hard, clipping, width, &s->act, gates_x, gates_h, (REAL *)s->gates_rz + i * 2 * H + 2 * j0,
                      h_prev, reset_h);
        if (codes) FN(quantize_units)(width, codes, reset_h, s->state_inverse[i], s->reset_h_q + i * Hp + j0);
        return;
    }
    REAL *tape = !codes && s->tape ? (REAL *)s->tape + b * 4 * H : NULL;
    REAL *h_next = (REAL *)s->h_next + i * H + j0, *output = (REAL *)s->output + b * s->output_stride + j0;
    REAL *tape_rzn = tape ? tape + 3 * j0 : NULL, *tape_g = tape ? tape + 3 * H + j0 : NULL;
    if (kind == FG_STEP_LBR)
        FN(lbr_block)(hard, clipping, width, &s->act, gates_x, gates_h, (const REAL *)s->bias_hn + j0, h_prev,
                      h_next, output, tape_rzn, tape_g);
    else
        FN(rb2_block)(hard, clipping, width, &s->act, gates_x, (const REAL *)s->gates_rz + i * 2 * H + 2 * j0,
                      gates_h, h_prev, h_next, output, tape_rzn, tape_g);
    if (codes) FN(quantize_units)(width, codes, h_next, s->state_inverse[i], s->h_next_q + i * Hp + j0);
}

/* gate_math_constant with constants where they pay: the four (activation, clip) combinations of a full
 * block, and a tail block (at most one per row) with the flags as variables. */
FG_INLINE void FN(gate_math)(int kind, int codes, const fg_step_args *s, int width, int64_t i, int64_t b, int64_t j0,
                             const REAL *gates_h) {
    const int hard = s->act.hard_sigmoid, clipping = s->act.clip > 0;
    if (width == FG_BLOCK) {
        if (!hard && !clipping) FN(gate_math_constant)(kind, codes, 0, 0, FG_BLOCK, s, i, b, j0, gates_h);
        else if (!hard) FN(gate_math_constant)(kind, codes, 0, 1, FG_BLOCK, s, i, b, j0, gates_h);
        else if (!clipping) FN(gate_math_constant)(kind, codes, 1, 0, FG_BLOCK, s, i, b, j0, gates_h);
        else FN(gate_math_constant)(kind, codes, 1, 1, FG_BLOCK, s, i, b, j0, gates_h);
    } else {
        FN(gate_math_constant)(kind, codes, hard, clipping, width, s, i, b, j0, gates_h);
    }
}

/* ---------------------------------------------------------------- two blocks at once
 *
 * The 512-bit tables take the products of two adjacent full blocks u, u + 1 together (kernels_impl.h,
 * PAIR_DOT), and then their gate math over 16 units in one vector per gate. The packed order keeps a
 * block's gates together ([r z n] of u, then of u + 1: internal.h), so the inputs arrive deinterleaved
 * by gate first (PAIR_GATHER, in registers): x48 = gates_x as [r(16) z(16) n(16)], h48 = the product
 * in the same order (RB1: [r z], RB2: [n]), rz32 (RB2) = the first half's [r(16) z(16)]. The state,
 * output and b_hn are in natural order, 16 adjacent units; what goes back in packed order (the tape's
 * r z n, RB1's gates_rz) is written from a local copy. The arithmetic of each unit is that of
 * gate_math: a unit's bits do not depend on whether its block was paired. */
FG_INLINE void FN(scatter_pair)(int gates, const REAL *deinterleaved, REAL *packed) {
    for (int g = 0; g < gates; g++)
        for (int w = 0; w < FG_BLOCK; w++) {
            packed[g * FG_BLOCK + w] = deinterleaved[g * FG_GATE_SPAN + w];
            packed[gates * FG_BLOCK + g * FG_BLOCK + w] = deinterleaved[g * FG_GATE_SPAN + FG_BLOCK + w];
        }
}

FG_INLINE void FN(gate_math_pair_constant)(int kind, int codes, int hard, int clipping, const fg_step_args *s,
                                           int64_t i, int64_t b, int64_t j0, const REAL *x48, const REAL *h48,
                                           const REAL *rz32) {
    enum { W = FG_GATE_SPAN };
    const int64_t H = s->hidden, Hp = fg_i8_padded(H);
    const REAL *h_prev = (const REAL *)s->h_prev + i * H + j0;
    if (kind == FG_STEP_RB1) {
        REAL *reset_h = (REAL *)s->reset_h + i * H + j0;
        REAL rz[2 * W];
        FN(rb1_block)(hard, clipping, W, &s->act, x48, h48, rz, h_prev, reset_h);
        FN(scatter_pair)(2, rz, (REAL *)s->gates_rz + i * 2 * H + 2 * j0);
        if (codes) FN(quantize_units)(W, codes, reset_h, s->state_inverse[i], s->reset_h_q + i * Hp + j0);
        return;
    }
    REAL *tape = !codes && s->tape ? (REAL *)s->tape + b * 4 * H : NULL;
    REAL *h_next = (REAL *)s->h_next + i * H + j0, *output = (REAL *)s->output + b * s->output_stride + j0;
    REAL rzn[3 * W];
    REAL *tape_rzn = tape ? rzn : NULL, *tape_g = tape ? tape + 3 * H + j0 : NULL;
    if (kind == FG_STEP_LBR)
        FN(lbr_block)(hard, clipping, W, &s->act, x48, h48, (const REAL *)s->bias_hn + j0, h_prev, h_next, output,
                      tape_rzn, tape_g);
    else
        FN(rb2_block)(hard, clipping, W, &s->act, x48, rz32, h48, h_prev, h_next, output, tape_rzn, tape_g);
    if (tape) FN(scatter_pair)(3, rzn, tape + 3 * j0);
    if (codes) FN(quantize_units)(W, codes, h_next, s->state_inverse[i], s->h_next_q + i * Hp + j0);
}

/* gate_math_pair_constant with constant flags, as gate_math does for a full block. */
FG_INLINE void FN(gate_math_pair)(int kind, int codes, const fg_step_args *s, int64_t i, int64_t b, int64_t j0,
                                  const REAL *x48, const REAL *h48, const REAL *rz32) {
    const int hard = s->act.hard_sigmoid, clipping = s->act.clip > 0;
    if (!hard && !clipping) FN(gate_math_pair_constant)(kind, codes, 0, 0, s, i, b, j0, x48, h48, rz32);
    else if (!hard) FN(gate_math_pair_constant)(kind, codes, 0, 1, s, i, b, j0, x48, h48, rz32);
    else if (!clipping) FN(gate_math_pair_constant)(kind, codes, 1, 0, s, i, b, j0, x48, h48, rz32);
    else FN(gate_math_pair_constant)(kind, codes, 1, 1, s, i, b, j0, x48, h48, rz32);
}

#undef REAL
#undef SFX
