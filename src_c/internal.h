/* internal.h: what the core's files share and the caller never sees: the packed model, the gate
 * layout, the kernel table and small helpers. */
#ifndef FASTGRU_INTERNAL_H
#define FASTGRU_INTERNAL_H

#include "fastgru.h"

#include <stdint.h>
#include <string.h>

/* Hidden units per packed block: one AVX2 vector of floats. */
#define FG_BLOCK 8
/* Every workspace segment and packed array starts on a cache line. */
#define FG_ALIGN 64
/* The input projection is computed for a chunk of time steps at once: enough rows to make the GEMM
 * efficient, few enough that the chunk's gates stay in cache and the workspace stays bounded for any
 * sequence length. Budget in elements of gates_x per chunk. */
#define FG_CHUNK_ELEMENTS ((int64_t)1 << 20)

/* ---------------------------------------------------------------- packed gate order
 *
 * Gate vectors inside the core are not stored as [r(H), z(H), n(H)] but block by block:
 * [r(8), z(8), n(8)] for units 0..7, then units 8..15, ... (a last block of H % 8 units is narrower).
 * One pass over a block then meets r, z and n of the same units in neighbouring memory, so the gate
 * math runs while the values are in registers, and the rows of W_hh that produce them are adjacent.
 * The same permutation is applied to the rows of W_ih, W_hh and the biases, so every GEMM writes its
 * result directly in this order. fg_packed_index maps (gate, unit) to the position, for a layout of
 * `ngates` gates (3 for [r z n], 2 for the [r z] part of the reset-before recurrent weights). */
static inline int64_t fg_packed_index(int64_t hidden, int ngates, int gate, int64_t unit) {
    int64_t start = unit - unit % FG_BLOCK;
    int64_t width = hidden - start < FG_BLOCK ? hidden - start : FG_BLOCK;
    return ngates * start + gate * width + unit % FG_BLOCK;
}

/* One (layer, direction) of a packed model.
 *   weight_hh, linear-before-reset: (3H, H), rows in packed [r z n] order.
 *   weight_hh, reset-before: (2H, H) rows in packed [r z] order, then (H, H) W_hn in natural order,
 *              because W_hn multiplies r*h, which only exists once r is known.
 *   bias_hn:   linear-before-reset only, natural order: b_hn stays inside r * (W_hn h + b_hn).
 * The input weights of both directions of a layer are stacked in fg_packed_layer.weight_ih so one GEMM
 * projects the input for both. */
typedef struct fg_packed_direction {
    void *weight_hh;
    void *bias_hn;
} fg_packed_direction;

typedef struct fg_packed_layer {
    int64_t input_size;     /* I_k */
    void *weight_ih;        /* (D*3H, I_k): direction d in rows [d*3H, (d+1)*3H), packed order */
    void *bias_x;           /* (D*3H): b_ih plus the parts of b_hh that can be folded in */
    fg_packed_direction directions[2];
} fg_packed_layer;

struct fg_gru {
    fg_spec spec;
    fg_packed_layer *layers;
    void *memory;           /* one allocation holding every packed array */
    size_t packed_bytes;
};

/* ---------------------------------------------------------------- kernels
 *
 * The fused gate math of one step for one batch row, compiled once per ISA (kernels_generic.c,
 * kernels_avx2.c) from the same source (kernels_impl.h). Arguments in packed order unless noted.
 *   gates_lbr:  gates_x (3H), gates_h = W_hh h (3H) -> updates h (H, natural) in place, writes output
 *               (H) and, when tape is not NULL, the tape row (4H: r z n packed, then W_hn h + b_hn).
 *   gates_rb1:  reset-before, first half: gates_h (2H, [r z] packed) is overwritten with the activated
 *               r and z; reset_h (H) = r * h.
 *   gates_rb2:  reset-before, second half: gates_hn = W_hn (r * h) (H, natural); updates h, output, tape.
 */
typedef struct fg_activation {
    int hard_sigmoid;
    double alpha, beta;     /* hard sigmoid: clip(alpha * a + beta, 0, 1) */
    double clip;            /* > 0: clamp pre-activations */
} fg_activation;

#define FG_KERNEL_DECLS(REAL, SFX)                                                                    \
    typedef void (*fg_gates_lbr_##SFX)(const fg_activation *act, int64_t hidden, const REAL *gates_x, \
                                       const REAL *gates_h, const REAL *bias_hn, REAL *h, REAL *output, \
                                       REAL *tape);                                                   \
    typedef void (*fg_gates_rb1_##SFX)(const fg_activation *act, int64_t hidden, const REAL *gates_x, \
                                       REAL *gates_h, const REAL *h, REAL *reset_h);                  \
    typedef void (*fg_gates_rb2_##SFX)(const fg_activation *act, int64_t hidden, const REAL *gates_x, \
                                       const REAL *gates_rz, const REAL *gates_hn, REAL *h,           \
                                       REAL *output, REAL *tape);

FG_KERNEL_DECLS(float, f32)
FG_KERNEL_DECLS(double, f64)

typedef struct fg_kernels {
    fg_gates_lbr_f32 gates_lbr_f32;
    fg_gates_rb1_f32 gates_rb1_f32;
    fg_gates_rb2_f32 gates_rb2_f32;
    fg_gates_lbr_f64 gates_lbr_f64;
    fg_gates_rb1_f64 gates_rb1_f64;
    fg_gates_rb2_f64 gates_rb2_f64;
} fg_kernels;

extern const fg_kernels fg_kernels_generic;
#if defined(__x86_64__) || defined(_M_X64)
#define FG_HAVE_AVX2_KERNELS 1
extern const fg_kernels fg_kernels_avx2;
#endif

/* The kernel table for ctx->isa, or NULL if that ISA cannot run here. */
const fg_kernels *fg_select_kernels(fg_isa isa);

/* ---------------------------------------------------------------- threads */

/* Runs task(arg, i) for i in [0, n_tasks) on the pool's threads (the caller is one of them) and returns
 * when all are done. pool may be NULL: then everything runs on the calling thread. */
typedef void (*fg_task_fn)(void *arg, int64_t index);
fg_status fg_pool_run(fg_pool *pool, int64_t n_tasks, fg_task_fn task, void *arg);

/* ---------------------------------------------------------------- small helpers */

static inline size_t fg_align_up(size_t bytes) { return (bytes + FG_ALIGN - 1) & ~(size_t)(FG_ALIGN - 1); }

/* *total += align(count * elem_size), with overflow checks. Returns 0 on overflow. */
static inline int fg_add_segment(size_t *total, int64_t count, size_t elem_size) {
    if (count < 0) return 0;
    if ((uint64_t)count > (SIZE_MAX - FG_ALIGN) / elem_size) return 0;
    size_t bytes = fg_align_up((size_t)count * elem_size);
    if (*total > SIZE_MAX - bytes) return 0;
    *total += bytes;
    return 1;
}

/* a * b for non-negative sizes, or -1 when it would overflow int64. */
static inline int64_t fg_mul(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > INT64_MAX / a) return -1;
    return a * b;
}

/* Lays out aligned segments in one block of memory. The same sequence of fg_layout_take calls runs
 * twice: with base NULL to count the bytes (and detect overflow), then over the real memory. Keeping
 * one code path for "how big" and "where" means the two can never disagree. */
typedef struct fg_layout {
    char *base;     /* NULL while counting */
    size_t used;
    int overflow;
} fg_layout;

static inline void *fg_layout_take(fg_layout *layout, int64_t count, size_t elem_size) {
    size_t offset = layout->used;
    if (!fg_add_segment(&layout->used, count, elem_size)) {
        layout->overflow = 1;
        return NULL;
    }
    return layout->base ? layout->base + offset : NULL;
}

/* The tape of a forward pass (fg_tape_size bytes at `tape`; NULL to count only):
 *   gates   (L, D, T, B, 4H): per step and batch row, r z n in packed order (3H), then g (H, natural):
 *           g = W_hn h + b_hn for linear-before-reset, g = W_hn (r * h) for reset-before.
 *           Rows of finished sequences are not written; masked steps hold r = 0, z = 1, n = 0, g = 0.
 *   outputs (L, T, B, D*H): each layer's output, time-major whatever the caller's layout, 0 past lengths.
 * Time t and batch row b are the caller's (not the length order). */
fg_status fg_tape_layout(const fg_gru *gru, int64_t seq_len, int64_t batch, void *tape, void **gates,
                         void **outputs, size_t *bytes);

/* Orders the batch rows by length, longest first (stable): perm (B) lists the caller's rows in that
 * order, and active (T + 1) gets active[t] = the number of sequences longer than t, so the sequences
 * still running at time t are the first active[t] rows in perm order (for either direction: the
 * reverse direction visits t from T-1 down and a sequence joins it at t = length - 1). Without
 * lengths perm is the identity and active is left untouched. FG_ERR_INVALID_LENGTHS for a length
 * outside 1..T. Shared by the forward and the backward pass. */
fg_status fg_order_by_length(const fg_sequence *seq, int64_t *perm, int64_t *active);

size_t fg_dtype_size(fg_dtype dtype);
fg_status fg_check_context(const fg_gru *gru, const fg_context *ctx, const fg_kernels **kernels);
fg_activation fg_activation_of(const fg_spec *spec);

/* Flush-to-zero and denormals-are-zero for the duration of a call: denormal states in a decaying
 * recurrence otherwise slow every multiply by 20x or more. The previous mode is restored on return. */
unsigned fg_denormals_off(void);
void fg_denormals_restore(unsigned saved);

#endif /* FASTGRU_INTERNAL_H */
