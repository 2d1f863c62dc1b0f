/* internal.h: what the core's files share and the caller never sees: the packed model, the gate
 * layout, the kernel table and small helpers. */
#ifndef FASTGRU_INTERNAL_H
#define FASTGRU_INTERNAL_H

#include "backward_kernels.h"
#include "fastgru.h"

#include <stdint.h>
#include <string.h>

/* Hidden units per packed block: one AVX2 vector of floats. */
#define FG_BLOCK 8
/* The most units one pass of the gate math takes: two adjacent blocks, whose products the 512-bit
 * tables compute together (one AVX-512 vector of floats per gate). */
#define FG_GATE_SPAN (2 * FG_BLOCK)
/* Every workspace segment and packed array starts on a cache line. */
#define FG_ALIGN 64

/* ---------------------------------------------------------------- packed gate order
 *
 * Gate vectors inside the core are not stored as [r(H), z(H), n(H)] but block by block:
 * [r(8), z(8), n(8)] for units 0..7, then units 8..15, ... (a last block of H % 8 units is narrower).
 * One pass over a block then meets r, z and n of the same units in neighbouring memory, so the gate
 * math runs while the values are in registers, and the rows of W_hh that produce them are adjacent.
 * The same permutation is applied to the rows of W_ih, W_hh and the biases, so every product (the
 * panel kernels forward, the BLAS GEMMs backward) writes its result directly in this order. fg_packed_index maps (gate, unit) to the position, for a layout of
 * `ngates` gates (3 for [r z n], 2 for the [r z] part of the reset-before recurrent weights). */
static inline int64_t fg_packed_index(int64_t hidden, int ngates, int gate, int64_t unit) {
    int64_t start = unit - unit % FG_BLOCK;
    int64_t width = hidden - start < FG_BLOCK ? hidden - start : FG_BLOCK;
    return ngates * start + gate * width + unit % FG_BLOCK;
}

/* A weight row (gate, unit) is column fg_panel_column of panel block fg_unit_block (fg_packed_direction);
 * `gate` counts from the panel set's first gate (fg_panel_set). In a float panel set over `inputs`
 * inputs with `columns` columns, its element k lies at fg_panel_index. */
static inline int64_t fg_unit_block(int64_t unit) { return unit / FG_BLOCK; }
static inline int fg_panel_column(int gate, int64_t unit) { return gate * FG_BLOCK + (int)(unit % FG_BLOCK); }
static inline int64_t fg_panel_index(int64_t inputs, int columns, int gate, int64_t unit, int64_t k) {
    return (fg_unit_block(unit) * inputs + k) * columns + fg_panel_column(gate, unit);
}

/* One (layer, direction) of a packed model. Each weight is held once, as panels: the layout the
 * forward's kernels stream.
 *   panels_ih: W_ih, for unit block u a (I_k, C = 24) row-major panel with panel[k][g*8 + w] =
 *              W_ih[gate g, unit 8u + w][k] (zero past the last unit).
 *   panels:    W_hh the same way, transposed block by block for the fused step kernels: for unit block
 *              u, a (H, C) panel with panel[k][g*8 + w] = W_hh[gate g, unit 8u + w][k]. C = 24
 *              ([r z n]) for linear-before-reset, 16 ([r z]) for reset-before, whose W_hn panels
 *              (C = 8) are panels_n, because W_hn multiplies r * h, which only exists once r is known.
 *              A step then streams each block's weights once, contiguously, for every batch row.
 *   bias_hn:   linear-before-reset only, natural order: b_hn stays inside r * (W_hn h + b_hn).
 *   bias_ih, bias_hh: the caller's biases as given (3H, natural order; zeros for NULL), kept so that
 *              fg_gru_get_weights returns them bit for bit: the folded bias_x cannot be split back.
 * fg_panel_index says where each weight lies. The backward pass's GEMMs want W_ih and W_hh row-major;
 * it builds them from the panels into its own workspace on each call (backward_impl.h), so a model
 * holds nothing beyond what the forward reads, and nothing in it is ever written after creation. */
typedef struct fg_packed_direction {
    void *panels_ih;
    void *panels;
    void *panels_n;
    void *bias_hn;
    void *bias_ih;
    void *bias_hh;
} fg_packed_direction;

/* The panel set of one direction that holds `gate` of W_ih (recurrent = 0) or W_hh (1), its column
 * count, and the gate's index within the set (float and int8 models alike). */
static inline void *fg_panel_set(const fg_packed_direction *dir, int recurrent, int lbr, int gate, int *columns,
                                 int *set_gate) {
    *set_gate = gate;
    *columns = 3 * FG_BLOCK;
    if (!recurrent) return dir->panels_ih;
    if (lbr) return dir->panels;
    if (gate < 2) {
        *columns = 2 * FG_BLOCK;
        return dir->panels;
    }
    *columns = FG_BLOCK;
    *set_gate = 0;
    return dir->panels_n;
}

typedef struct fg_packed_layer {
    int64_t input_size;     /* I_k */
    void *bias_x;           /* (D*3H), packed order: b_ih plus the parts of b_hh that can be folded in */
    fg_packed_direction directions[2];
} fg_packed_layer;

struct fg_gru {
    fg_spec spec;
    fg_weight_format weight_format;
    /* int8 models: some weight code lies outside -FG_I8_NARROW..FG_I8_NARROW, so the tables' narrow
     * int8 kernels (fg_kernels.step_lbr_i8n, ...) cannot take it (set_column of model_int8.c) */
    int int8_wide;
    fg_packed_layer *layers;
    void *memory;           /* one allocation holding every packed array */
    size_t packed_bytes;
    int huge_pages;         /* memory advised for transparent huge pages (model.c) */
};

/* model.c: the checks of fg_gru_create's spec, and a model of `format` with every packed array
 * allocated (zeroed) and assigned, its weights not yet written (the spec is checked). */
fg_status fg_check_spec(const fg_spec *spec);
fg_status fg_gru_allocate(const fg_spec *spec, fg_weight_format format, fg_gru **out);

/* ---------------------------------------------------------------- int8 panels
 *
 * An int8 model (fg_gru_quantize, weight_format FG_WEIGHTS_INT8) is the same layout in another format:
 * the same fg_packed_layer / fg_packed_direction, the same unit blocks and panel columns (c = g*8 + w),
 * the same biases (float32, folded and as given), and the forward pass is the same template
 * (forward_impl.h compiled with FG_QUANTIZED). What changes:
 *   - panels_ih, panels and panels_n hold int8 panel blocks. Block u of a panel with C columns over K
 *     inputs is fg_i8_block_bytes(C, K) bytes, 64-byte aligned, starting at u * that:
 *         int32  column_sum[C]    sum over k of q[k][c] (the VNNI kernels' zero-point correction)
 *         float  column_scale[C]  the row's scale s: W[row][k] ~= s * q[k][c]
 *         int8   q[Kp / 4][C][4]  q[k][c] at [k / 4][c][k % 4], Kp = K rounded up to 16, zero padded
 *     Four consecutive k of one column are adjacent: one 32-byte load holds 8 columns x 4 k, which is
 *     what vpmaddubsw + vpmaddwd (and vpdpbusd) sum into 8 int32 lanes against a broadcast of 4 inputs.
 *   - activations reach the panel products as rows of Kp code bytes (padding: the byte of code 0): the
 *     state (and r * h) as round(h * 127 / m), m = max(1, max|h0 row|) per row and call
 *     (forward_impl.h), the layer input per row with a dynamic scale (each table's quantize_i8,
 *     kernels_int8_impl.h). A code's byte depends on the table's int8_codes (fg_code_byte):
 *     FG_CODES_OFFSET, code + 128 (unsigned), on the VNNI tables, where that is the unsigned operand
 *     vpdpbusd multiplies (their kernels take 128 * column_sum back out); FG_CODES_INT8, the code
 *     itself (two's complement), on the others, whose vpmaddubsw products take |a| and a's sign.
 *     The bytes are written once per row and read once per block pair: making signed codes unsigned
 *     in the 512-bit tile cost an ALU operation per broadcast on the products' ports (27% of the tile
 *     alone on the Intel Xeon of docs/kernels.md, 10-13% of whole int8 batch calls), and making offset
 *     codes signed in the AVX2 product cost 7% there.
 *   - narrow models, whose weight codes all lie within +-FG_I8_NARROW (7-bit ones, fg_gru_quantize_bits;
 *     fg_gru.int8_wide == 0), run the tables' _i8n kernels where they have them (AVX2, AVX-512F): those
 *     take offset code bytes against the codes in vpmaddubsw with no sign operation, and subtract
 *     128 * column_sum as the VNNI kernels do. The same panels, the same exact sums.
 * Every integer product is exact: |q| <= 127 on both sides, so K * 127^2 < 2^31 for K <= 131072
 * (FG_INT8_MAX_K), and the kernels of every ISA produce the same int32 sums; with the float32 steps
 * after them written identically, every ISA gives bitwise identical outputs. */
#define FG_INT8_MAX_K ((int64_t)1 << 17)

/* The largest |code| of a narrow int8 model's weights. The narrow products (dot_i8n_avx2,
 * tiles_avx2.h) feed vpmaddubsw activation bytes a + 128 (<= 255, unsigned) against the weight codes
 * themselves: a pair of products is at most 2 * 255 * 64 = 32640 < 32767, so it never saturates, and
 * the int32 sums of (a + 128) q stay within 255 * 64 * FG_INT8_MAX_K < 2^31. */
#define FG_I8_NARROW 64

/* Rows of codes and panels are padded to a multiple of 16 inputs (panels with zeros): the kernels then
 * take four groups of 4 per iteration (independent accumulators for vpdpbusd's latency), no tail. */
static inline int64_t fg_i8_padded(int64_t k) { return (k + 15) & ~(int64_t)15; }

static inline int64_t fg_i8_block_bytes(int columns, int64_t k) {
    return (int64_t)(((size_t)(8 * columns + fg_i8_padded(k) * columns) + FG_ALIGN - 1) & ~(size_t)(FG_ALIGN - 1));
}

/* Block u of an int8 panel of `columns` columns over k inputs, and that block's column scales. */
static inline const char *fg_i8_block(const void *panels, int64_t u, int columns, int64_t k) {
    return (const char *)panels + u * fg_i8_block_bytes(columns, k);
}
static inline const float *fg_i8_block_scale(const char *block, int columns) {
    return (const float *)(block + 4 * columns);
}

/* round-half-even(v) clamped to [-127, 127]: the int8 code of a value already divided by its scale
 * (|v| <= 127 up to rounding for every caller; +-inf and NaN arrive from non-finite data). Adding
 * 1.5 * 2^23 leaves the integer nearest v (ties to even, the default rounding mode) in the low
 * mantissa bits, read out by subtracting the sum's bit pattern for 0; exact for |v| < 2^22, and +-inf
 * saturate, NaN codes as +-127. The subtraction is unsigned (wraps, never overflows), and there is no
 * float-to-int conversion: no undefined behaviour for any input, and the compiler vectorises it (a
 * clamp of v before the addition, or a guard on the subtraction, cost it that, and 20% of a step). */
static inline int8_t fg_quantize_code(float v) {
    const float shifted = v + 12582912.0f;
    uint32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    int32_t code = (int32_t)(bits - 0x4B400000u);
    code = code < -127 ? -127 : code;
    code = code > 127 ? 127 : code;
    return (int8_t)code;
}

/* How activation codes are stored as bytes (above, "int8 panels"): a kernel table's int8_codes, and
 * the `codes` argument of the gate math (gates_impl.h), where FG_CODES_NONE means a float model. */
enum { FG_CODES_NONE = 0, FG_CODES_INT8 = 1, FG_CODES_OFFSET = 2 };
/* What a code's byte adds to the code (so also the byte of code 0), and the byte of an activation's code. */
static inline int fg_code_offset(int codes) { return codes == FG_CODES_OFFSET ? 128 : 0; }
static inline uint8_t fg_code_byte(float v, int codes) {
    return (uint8_t)(fg_quantize_code(v) + fg_code_offset(codes));
}

/* Number of unit blocks, the first unit of block u, and its width. */
static inline int64_t fg_num_blocks(int64_t hidden) { return (hidden + FG_BLOCK - 1) / FG_BLOCK; }
static inline int64_t fg_block_start(int64_t block) { return block * FG_BLOCK; }
static inline int fg_block_width(int64_t hidden, int64_t block) {
    int64_t left = hidden - block * FG_BLOCK;
    return (int)(left < FG_BLOCK ? left : FG_BLOCK);
}

/* ---------------------------------------------------------------- kernels
 *
 * One recurrent step of one direction, for the unit blocks [block_begin, block_end): the dot products
 * of the state rows with each block's panel, then the gate math while the results are in registers
 * (kernels_impl.h, gates_impl.h). Compiled once per ISA (kernels_generic.c, kernels_avx2.c) from the
 * same source; templates.h lists every kernel by name.
 * Different block ranges touch disjoint outputs, so threads split a step by blocks; the arithmetic of
 * each output value is the same whatever the split, hence results do not depend on the thread count.
 *
 * Rows are the active batch rows in length order: row i is batch entry perm[i]. The state is double
 * buffered (h_prev read, h_next written) because every block reads the whole previous state.
 *   step_lbr:  linear-before-reset; writes h_next, the output and (if tape) the tape rows.
 *   step_rb1:  reset-before, first half: gates_rz row i (2H, [r z] packed) = activated r, z;
 *              reset_h row i (H) = r * h_prev.
 *   step_rb2:  reset-before, second half: n from W_hn (r * h) (panels_n); writes h_next, output, tape.
 * Masked rows (mask[perm[i]] == 0) are skipped; the driver carries their state.
 * The _i8 kernels (kernels_int8_impl.h) do the same for int8 models: integer panel products on the
 * code bytes of the state (h_prev_q, reset_h_q), the same float32 gate math, and the codes of the new
 * state (h_next_q) written next to it; they never write a tape. */
typedef struct fg_activation {
    int hard_sigmoid;
    double alpha, beta;     /* hard sigmoid: clip(alpha * a + beta, 0, 1) */
    double clip;            /* > 0: clamp pre-activations */
} fg_activation;

typedef struct fg_step_args {
    fg_activation act;
    int64_t hidden;
    int64_t rows;
    const int64_t *perm;
    const void *h_prev;         /* (rows, H) */
    void *h_next;               /* (rows, H) */
    const void *panels;         /* this direction's panels (see fg_packed_direction) */
    const void *panels_n;
    const void *bias_hn;        /* (H) */
    const void *gates_x;        /* batch entry b's input projection at gates_x + b * gates_x_stride */
    int64_t gates_x_stride;
    void *output;               /* batch entry b's output at output + b * output_stride */
    int64_t output_stride;
    void *tape;                 /* batch entry b's tape row at tape + b * 4H, or NULL */
    const uint8_t *mask;        /* indexed by batch entry, or NULL */
    void *gates_rz;             /* reset-before scratch (rows, 2H) */
    void *reset_h;              /* reset-before scratch (rows, H) */
    /* int8 models only: the code bytes (fg_code_byte) of the state and of r * h, rows of
     * fg_i8_padded(H) bytes; row i is coded as round(v * state_inverse[i]) and decoded with
     * state_scale[i] (forward_impl.h) */
    const uint8_t *h_prev_q;    /* (rows, Hp), read by the panel product */
    uint8_t *h_next_q;          /* (rows, Hp), written next to h_next */
    uint8_t *reset_h_q;         /* reset-before (rows, Hp) */
    const float *state_scale;   /* (rows) */
    const float *state_inverse; /* (rows) */
    int64_t k_block;            /* panel rows per pass of a multi-row product (fg_cpu_info.k_block) */
} fg_step_args;

typedef void (*fg_step_fn)(const fg_step_args *args, int64_t block_begin, int64_t block_end);

/* The input projection of `rows` input rows for one direction and the unit blocks [block_begin,
 * block_end): gates_x row i = input row i . W_ih^T + bias_x, in packed order. */
typedef struct fg_project_args {
    int64_t hidden;
    int64_t input_size;
    int64_t rows;
    const void *input;          /* row i at input + i * input_stride (int8 models: code bytes) */
    int64_t input_stride;
    const float *input_scale;   /* int8 models: row i ~= input_scale[i] * input row i */
    const void *panels_ih;      /* this direction's W_ih panels */
    const void *bias_x;         /* this direction's folded bias (3H, packed) */
    void *gates_x;              /* row i at gates_x + i * gates_x_stride */
    int64_t gates_x_stride;
    int64_t k_block;            /* as fg_step_args.k_block */
} fg_project_args;

typedef void (*fg_project_fn)(const fg_project_args *args, int64_t block_begin, int64_t block_end);

/* The int8 projection's input rows [begin, end) of `rows` (width floats each, stride apart) as code
 * bytes, padded(width) per row, and one scale per row (kernels_int8_impl.h, quantize). */
typedef void (*fg_quantize_fn)(const float *rows, int64_t stride, int64_t width, int64_t begin, int64_t end,
                               uint8_t *codes, float *scales);

typedef struct fg_kernels {
    fg_step_fn step_lbr_f32, step_rb1_f32, step_rb2_f32;
    fg_project_fn project_f32;
    fg_step_fn step_lbr_f64, step_rb1_f64, step_rb2_f64;
    fg_project_fn project_f64;
    fg_step_fn step_lbr_i8, step_rb1_i8, step_rb2_i8;  /* int8 weights, float32 activations */
    fg_project_fn project_i8;
    fg_quantize_fn quantize_i8; /* the input rows' codes for project_i8, in the form int8_codes */
    int int8_codes;  /* the code bytes its _i8 kernels read: FG_CODES_INT8 or FG_CODES_OFFSET (above) */
    /* The kernels for narrow int8 models (weight codes within +-FG_I8_NARROW, fg_gru.int8_wide == 0)
     * and the code bytes they read; NULL where the _i8 kernels are no slower on them (the generic and
     * VNNI tables). fg_forward swaps them in (forward.c, int8_kernels). */
    fg_step_fn step_lbr_i8n, step_rb1_i8n, step_rb2_i8n;
    fg_project_fn project_i8n;
    fg_quantize_fn quantize_i8n;
    int int8n_codes;
    /* the backward's per-step product dh += dG_h . W_hh (backward_kernels.h); NULL: the BLAS does it */
    fg_panel_gemm_f32 backward_product_f32;
    fg_panel_gemm_f64 backward_product_f64;
} fg_kernels;

/* The tables (fastgru.h, fg_isa, says what each runs) */
extern const fg_kernels fg_kernels_generic;
#if defined(__x86_64__) || defined(_M_X64)
#define FG_HAVE_AVX2_KERNELS 1
extern const fg_kernels fg_kernels_avx2;          /* kernels_avx2.c */
extern const fg_kernels fg_kernels_avx512vl;      /* kernels_avx2.c */
extern const fg_kernels fg_kernels_avx512vl_vnni; /* kernels_avx2.c */
extern const fg_kernels fg_kernels_avx512;        /* kernels_avx512.c */
extern const fg_kernels fg_kernels_avx512_vnni;   /* kernels_avx512.c */
#endif

/* The kernel table for ctx->isa, or NULL if that table cannot run here. */
const fg_kernels *fg_select_kernels(fg_isa isa);

/* ---------------------------------------------------------------- the CPU (cpu.c)
 *
 * The parts of fg_cpu_info_get that are pure functions of what cpuid said, so that tests can hand
 * them any CPU (tests/c/test_cpu.c). */

/* What the table decision looks at. */
typedef struct fg_cpu_facts {
    char vendor[16];
    int family, model;
    unsigned features; /* FG_CPU_* */
} fg_cpu_facts;

/* 512-bit FMA chains at this many times the 256-bit rate or more run the 512-bit tables (a full-rate
 * unit measures about 2, a split or single unit about 1). */
#define FG_FULL_WIDTH_RATIO 1.5

/* The table FG_ISA_AUTO runs on `cpu`, and why. Where cpuid cannot tell whether 512-bit FMAs run at
 * full rate, fma256 and fma512 (GFLOP/s of the calibration, cpu.c) decide; without them (0) the
 * answer is FG_ISA_AUTO: time them first. */
fg_isa fg_isa_choose(const fg_cpu_facts *cpu, double fma256_gflops, double fma512_gflops, fg_width_reason *reason);

/* The calibration (cpu.c): the best float32 GFLOP/s of 256- and of 512-bit FMA chains on this thread,
 * about 0.5 ms. x86 CPUs with AVX-512F only (elsewhere neither loop can run). */
void fg_calibrate_fma(double *gflops_256, double *gflops_512);

/* Display family, model and stepping from cpuid leaf 1's EAX (the extended fields included where
 * Intel's and AMD's rules add them). */
void fg_parse_signature(uint32_t eax, int *family, int *model, int *stepping);

/* One cpuid subleaf's registers. */
typedef struct fg_cpuid_regs {
    uint32_t eax, ebx, ecx, edx;
} fg_cpuid_regs;

/* Data and unified cache sizes from the subleaves of cpuid leaf 4 (Intel) or 0x8000001D (AMD, the same
 * format), in order, up to the first of type 0: size = ways x partitions x line size x sets. Sets the
 * sizes of the levels found (L1d, L2, L3) and returns how many were. */
int fg_parse_cache_leaf(const fg_cpuid_regs *subleaves, int count, int64_t *l1d, int64_t *l2, int64_t *l3);
/* The same from AMD's older leaves (0x80000005 ECX: L1d KiB in bits 31-24; 0x80000006 ECX: L2 KiB in
 * bits 31-16, EDX: L3 in 512 KiB units in bits 31-18). Returns the levels found, 0 if none. */
int fg_parse_amd_legacy_caches(uint32_t ecx_80000005, uint32_t ecx_80000006, uint32_t edx_80000006, int64_t *l1d,
                               int64_t *l2, int64_t *l3);

/* Bytes of one panel row of one unit block in float32: [r z n] x 8 units. */
#define FG_PANEL_BLOCK_BYTES (3 * FG_BLOCK * (int64_t)sizeof(float))

/* fg_cpu_info's blocking for an L2 of l2_bytes per core (docs/kernels.md). */
void fg_blocking_for(int64_t l2_bytes, int64_t *chunk_bytes, int64_t *k_block);

/* ---------------------------------------------------------------- threads */

/* Handing work to a worker costs about a microsecond (more on a busy machine): a run is split only
 * when it carries at least FG_MIN_PARALLEL_MACS multiply-adds per thread. A projection is then cut
 * into a few tasks per thread (claimed dynamically, pool.c) rather than one: a worker preempted by
 * another process then holds up the run for one small task, while the caller takes the rest. A step
 * is cut into one task per thread (FG_STEP_TASKS_PER_THREAD), each computing its thread's own range
 * (forward_impl.h, block_work.owned): each thread then reads the same share of W_hh every step, which
 * stays in its core's L2 (with several small tasks the shares moved between cores, and every step read
 * them from the L3 again: on an Intel Xeon with 2 MiB of L2, 2 threads, batch 1, T=100, H=1024 took
 * 28.5 ms with four tasks per thread and 22.3 ms with one; batch 16 ran alike). */
#define FG_MIN_PARALLEL_MACS ((int64_t)1 << 16)
#define FG_TASKS_PER_THREAD 4
#define FG_STEP_TASKS_PER_THREAD 1
/* Threads whose step ranges stay their own from step to step (forward_impl.h, block_work.owned); a
 * larger pool takes its step ranges first come. */
#define FG_MAX_OWNED_RANGES 256

/* How many tasks (at most max_parts) to cut a run of `macs` multiply-adds into on this pool,
 * `per_thread` of them per thread that gets enough work. */
static inline int64_t fg_parallel_parts(const fg_pool *pool, int64_t macs, int64_t max_parts, int per_thread) {
    const int64_t threads = fg_pool_num_threads(pool);
    int64_t worth = macs / FG_MIN_PARALLEL_MACS; /* threads that get enough work */
    if (worth < 2 || threads < 2) return 1;
    int64_t parts = (threads < worth ? threads : worth) * per_thread;
    return parts < max_parts ? parts : max_parts;
}

/* Which thread of a pool the calling thread is: its workers are 1 .. n - 1 in the order they started,
 * and every other thread (a pool's caller) is 0. Lets a task prefer the share of work this thread had
 * last time (forward_impl.h, block_work.owned), since the pool hands out task indices first come. */
int fg_pool_thread_index(void);

/* Runs task(arg, i) for i in [0, n_tasks) on the pool's threads (the caller is one of them) and returns
 * when all are done. pool may be NULL: then everything runs on the calling thread. */
typedef void (*fg_task_fn)(void *arg, int64_t index);
fg_status fg_pool_run(fg_pool *pool, int64_t n_tasks, fg_task_fn task, void *arg);

/* Called by fg_forward once per call: whether this call should hand work to the pool's workers (else
 * it runs on the caller alone, with the same bits: threads never change results). Yes when the call
 * is big (FG_MIN_WAKE_MACS multiply-adds or more), when no worker sleeps, or when the previous call
 * began less than a worker's spin ago (calls back to back: wake the workers once, and they keep
 * spinning between the calls). No for a small call after a pause: a woken worker arrives tens of
 * microseconds later with cold caches, and the caller then waits for the tasks it claims. Measured on
 * the 2-core VM, one stream.step every 5 ms at H=256 (0.4M multiply-adds) took 63-124 us on one thread
 * and 30-50 us more when it woke a worker; at H=512 (1.6M) the two were even. */
#define FG_MIN_WAKE_MACS 1048576.0
int fg_pool_engage(fg_pool *pool, double macs);

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
/* Checks the context (the BLAS table too when needs_blas) and picks the kernels. */
fg_status fg_check_context(const fg_gru *gru, const fg_context *ctx, int needs_blas, const fg_kernels **kernels);
fg_activation fg_activation_of(const fg_spec *spec);

/* Flush-to-zero and denormals-are-zero for the duration of a call: denormal states in a decaying
 * recurrence otherwise slow every multiply by 20x or more. The previous mode is restored on return. */
unsigned fg_denormals_off(void);
void fg_denormals_restore(unsigned saved);

#endif /* FASTGRU_INTERNAL_H */
