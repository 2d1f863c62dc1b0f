/* kernels_impl.h: the fused gate math of one step (see internal.h, "kernels"), as a template.
 *
 * Included once per (ISA, dtype) by kernels_generic.c and kernels_avx2.c with REAL (float/double),
 * SFX (f32/f64), ISA (generic/avx2), SIGMOID and TANH defined. Each pass walks the packed blocks of
 * FG_BLOCK units; the block functions are forced inline and called with constant width and flags, so
 * the compiler emits one branch-free vector loop per combination of (gate activation, clip). */

#define FG_CAT3_(a, b, c) a##_##b##_##c
#define FG_CAT3(a, b, c) FG_CAT3_(a, b, c)
#define FN(name) FG_CAT3(name, SFX, ISA)
#define FG_INLINE static inline __attribute__((always_inline))

FG_INLINE REAL FN(gate)(REAL a, int hard, int clipping, const fg_activation *act) {
    if (clipping) {
        a = a < (REAL)-act->clip ? (REAL)-act->clip : a;
        a = a > (REAL)act->clip ? (REAL)act->clip : a;
    }
    if (!hard) return SIGMOID(a);
    REAL v = (REAL)act->alpha * a + (REAL)act->beta;
    v = v < 0 ? 0 : v;
    return v > 1 ? 1 : v;
}

FG_INLINE REAL FN(candidate)(REAL a, int clipping, const fg_activation *act) {
    if (clipping) {
        a = a < (REAL)-act->clip ? (REAL)-act->clip : a;
        a = a > (REAL)act->clip ? (REAL)act->clip : a;
    }
    return TANH(a);
}

/* Linear-before-reset, one block of `width` units. gates_x / gates_h / tape_rzn point at the block's
 * [r z n] triple, the others at its first unit. */
FG_INLINE void FN(lbr_block)(int width, int hard, int clipping, const fg_activation *act,
                              const REAL *restrict gates_x, const REAL *restrict gates_h,
                              const REAL *restrict bias_hn, REAL *restrict h, REAL *restrict output,
                              REAL *restrict tape_rzn, REAL *restrict tape_g) {
    for (int k = 0; k < width; k++) {
        REAL r = FN(gate)(gates_x[k] + gates_h[k], hard, clipping, act);
        REAL z = FN(gate)(gates_x[width + k] + gates_h[width + k], hard, clipping, act);
        REAL g = gates_h[2 * width + k] + bias_hn[k];
        REAL n = FN(candidate)(gates_x[2 * width + k] + r * g, clipping, act);
        REAL h_new = n + z * (h[k] - n); /* = z * h + (1 - z) * n with one multiply */
        h[k] = h_new;
        output[k] = h_new;
        if (tape_rzn) {
            tape_rzn[k] = r;
            tape_rzn[width + k] = z;
            tape_rzn[2 * width + k] = n;
            tape_g[k] = g;
        }
    }
}

/* Reset-before, first half: activate r and z in place in gates_rz ([r z] blocks) and form r * h. */
FG_INLINE void FN(rb1_block)(int width, int hard, int clipping, const fg_activation *act,
                              const REAL *restrict gates_x, REAL *restrict gates_rz,
                              const REAL *restrict h, REAL *restrict reset_h) {
    for (int k = 0; k < width; k++) {
        REAL r = FN(gate)(gates_x[k] + gates_rz[k], hard, clipping, act);
        REAL z = FN(gate)(gates_x[width + k] + gates_rz[width + k], hard, clipping, act);
        gates_rz[k] = r;
        gates_rz[width + k] = z;
        reset_h[k] = r * h[k];
    }
}

/* Reset-before, second half: gates_hn = W_hn (r * h), natural order. */
FG_INLINE void FN(rb2_block)(int width, int clipping, const fg_activation *act,
                              const REAL *restrict gates_x, const REAL *restrict gates_rz,
                              const REAL *restrict gates_hn, REAL *restrict h, REAL *restrict output,
                              REAL *restrict tape_rzn, REAL *restrict tape_g) {
    for (int k = 0; k < width; k++) {
        REAL z = gates_rz[width + k];
        REAL n = FN(candidate)(gates_x[2 * width + k] + gates_hn[k], clipping, act);
        REAL h_new = n + z * (h[k] - n);
        h[k] = h_new;
        output[k] = h_new;
        if (tape_rzn) {
            tape_rzn[k] = gates_rz[k];
            tape_rzn[width + k] = z;
            tape_rzn[2 * width + k] = n;
            tape_g[k] = gates_hn[k];
        }
    }
}

/* Walks the blocks: full ones with the constant width FG_BLOCK, then the narrower tail. */
#define FG_FOR_BLOCKS(hidden, CALL)                                                                   \
    do {                                                                                              \
        const int64_t full_ = (hidden) - (hidden) % FG_BLOCK;                                          \
        for (int64_t j0 = 0; j0 < full_; j0 += FG_BLOCK) {                                             \
            const int width = FG_BLOCK;                                                               \
            CALL;                                                                                     \
        }                                                                                             \
        if (full_ < (hidden)) {                                                                       \
            const int64_t j0 = full_;                                                                 \
            const int width = (int)((hidden) - full_);                                                \
            CALL;                                                                                     \
        }                                                                                             \
    } while (0)

/* Expands BODY(hard, clipping) once per combination with constants, so each gets its own loop. */
#define FG_SPECIALISE(act, BODY)                                                                      \
    do {                                                                                              \
        const int hard_ = (act)->hard_sigmoid, clipping_ = (act)->clip > 0;                            \
        if (!hard_ && !clipping_) BODY(0, 0);                                                         \
        else if (!hard_) BODY(0, 1);                                                                  \
        else if (!clipping_) BODY(1, 0);                                                              \
        else BODY(1, 1);                                                                              \
    } while (0)

static void FN(gates_lbr)(const fg_activation *act, int64_t hidden, const REAL *gates_x, const REAL *gates_h,
                          const REAL *bias_hn, REAL *h, REAL *output, REAL *tape) {
#define LBR_BODY(HARD, CLIP)                                                                          \
    FG_FOR_BLOCKS(hidden, FN(lbr_block)(width, HARD, CLIP, act, gates_x + 3 * j0, gates_h + 3 * j0,    \
                                        bias_hn + j0, h + j0, output + j0,                            \
                                        tape ? tape + 3 * j0 : NULL, tape ? tape + 3 * hidden + j0 : NULL))
    FG_SPECIALISE(act, LBR_BODY);
#undef LBR_BODY
}

static void FN(gates_rb1)(const fg_activation *act, int64_t hidden, const REAL *gates_x, REAL *gates_h,
                          const REAL *h, REAL *reset_h) {
#define RB1_BODY(HARD, CLIP)                                                                          \
    FG_FOR_BLOCKS(hidden, FN(rb1_block)(width, HARD, CLIP, act, gates_x + 3 * j0, gates_h + 2 * j0,    \
                                        h + j0, reset_h + j0))
    FG_SPECIALISE(act, RB1_BODY);
#undef RB1_BODY
}

static void FN(gates_rb2)(const fg_activation *act, int64_t hidden, const REAL *gates_x, const REAL *gates_rz,
                          const REAL *gates_hn, REAL *h, REAL *output, REAL *tape) {
#define RB2_BODY(HARD, CLIP)                                                                          \
    FG_FOR_BLOCKS(hidden, FN(rb2_block)(width, CLIP, act, gates_x + 3 * j0, gates_rz + 2 * j0,         \
                                        gates_hn + j0, h + j0, output + j0,                           \
                                        tape ? tape + 3 * j0 : NULL, tape ? tape + 3 * hidden + j0 : NULL))
    FG_SPECIALISE(act, RB2_BODY);
#undef RB2_BODY
}

#undef FG_FOR_BLOCKS
#undef FG_SPECIALISE
#undef FG_INLINE
#undef FN
#undef FG_CAT3
#undef FG_CAT3_
