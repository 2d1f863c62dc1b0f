/* forward.c: argument checks, the workspace layout and the entry points of the forward pass and of
 * streaming steps. The computation itself is forward_impl.h. */
#include "templates.h"

#include <math.h>
#include <stdatomic.h>

/* Where each scratch array of a forward call lives in the caller's workspace. */
typedef struct forward_buffers {
    int64_t chunk_steps;  /* time steps per input projection */
    int64_t *perm;        /* (B) batch rows ordered by length, longest first */
    int64_t *active;      /* (T + 1) active[t] = sequences longer than t; NULL without lengths */
    void *gates_x;        /* (chunk, B, D*3H) input projection of the current chunk */
    void *x_gather;       /* (2, chunk, B, max(I, D*H)) time-major copies of batch-first input rows */
    void *state;          /* (2, D, B, H) double-buffered state, rows in perm order */
    void *gates_rz;       /* (D, B, 2H) activated r and z, reset-before only */
    void *reset_h;        /* (D, B, H) r * h, reset-before only */
    void *intermediate;   /* (T, B, D*H) output of a non-final layer, L >= 2 only */
    /* int8 models only (internal.h, "int8 panels"): code bytes, rows padded to a multiple of 16 */
    uint8_t *x_codes;      /* (2, chunk, B, padded(max(I, D*H))) the layer input rows' codes ... */
    float *x_scales;       /* (2, chunk, B) ... and their scales (slots as x_gather) */
    uint8_t *state_codes;  /* (2, D, B, padded(H)) the state's codes, double buffered as state */
    float *state_scales;   /* (2, D, B) per row of the state: its scale, then the inverse */
    uint8_t *reset_h_codes;/* (D, B, padded(H)) r * h's codes, reset-before only */
} forward_buffers;

/* forward_f32 */
#define REAL float
#define SFX f32
#include "forward_impl.h"

/* forward_f64 */
#define REAL double
#define SFX f64
#include "forward_impl.h"

/* forward_i8: int8 weights, float32 activations: the float32 driver with the int8 codes of its
 * activations */
#define REAL float
#define SFX i8
#define FG_QUANTIZED
#include "forward_impl.h"

/* Time steps per input projection: as many as keep the chunk's gates_x within fg_cpu_info.chunk_bytes
 * (cpu.c, from the caches), at least one. */
static int64_t chunk_steps(const fg_spec *spec, int64_t seq_len, int64_t batch) {
    int64_t per_step = fg_mul(fg_mul(batch, spec->num_directions * 3 * spec->hidden_size),
                              (int64_t)fg_dtype_size(spec->dtype));
    int64_t chunk = per_step > 0 ? fg_cpu_info_get()->chunk_bytes / per_step : seq_len;
    if (chunk < 1) chunk = 1;
    return chunk < seq_len ? chunk : seq_len;
}

/* The one place that knows the workspace layout: counts bytes when layout->base is NULL. */
static fg_status layout_forward(const fg_gru *gru, int64_t seq_len, int64_t batch, fg_layout *layout,
                                forward_buffers *buf) {
    const fg_spec *spec = &gru->spec;
    const int64_t H = spec->hidden_size, D = spec->num_directions;
    const int64_t width = spec->input_size > D * H ? spec->input_size : D * H;
    const size_t elem = fg_dtype_size(spec->dtype);
    buf->chunk_steps = chunk_steps(spec, seq_len, batch);
    const int64_t chunk_rows = fg_mul(buf->chunk_steps, batch);
    buf->perm = (int64_t *)fg_layout_take(layout, batch, sizeof(int64_t));
    buf->active = (int64_t *)fg_layout_take(layout, seq_len < INT64_MAX ? seq_len + 1 : -1, sizeof(int64_t));
    buf->gates_x = fg_layout_take(layout, fg_mul(chunk_rows, D * 3 * H), elem);
    buf->x_gather = fg_layout_take(layout, fg_mul(fg_mul(2, chunk_rows), width), elem);
    const int rb = spec->variant == FG_RESET_BEFORE;
    const int64_t state_rows = fg_mul(D, batch); /* D <= 2, H <= INT64_MAX / 8 (check_spec) */
    buf->state = fg_layout_take(layout, fg_mul(fg_mul(2, state_rows), H), elem);
    buf->gates_rz = fg_layout_take(layout, rb ? fg_mul(state_rows, 2 * H) : 0, elem);
    buf->reset_h = fg_layout_take(layout, rb ? fg_mul(state_rows, H) : 0, elem);
    buf->intermediate =
        fg_layout_take(layout, spec->num_layers > 1 ? fg_mul(fg_mul(seq_len, batch), D * H) : 0, elem);
    const int int8 = gru->weight_format == FG_WEIGHTS_INT8;
    buf->x_codes = (uint8_t *)fg_layout_take(layout, int8 ? fg_mul(fg_mul(2, chunk_rows), fg_i8_padded(width)) : 0, 1);
    buf->x_scales = (float *)fg_layout_take(layout, int8 ? fg_mul(2, chunk_rows) : 0, sizeof(float));
    buf->state_codes = (uint8_t *)fg_layout_take(layout, int8 ? fg_mul(2 * D * batch, fg_i8_padded(H)) : 0, 1);
    buf->reset_h_codes = (uint8_t *)fg_layout_take(layout, int8 && rb ? fg_mul(D * batch, fg_i8_padded(H)) : 0, 1);
    buf->state_scales = (float *)fg_layout_take(layout, int8 ? fg_mul(2 * D, batch) : 0, sizeof(float));
    return layout->overflow ? FG_ERR_SIZE_OVERFLOW : FG_OK;
}

fg_status fg_forward_workspace_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes) {
    if (!gru || !bytes) return FG_ERR_NULL_POINTER;
    if (seq_len < 1 || batch < 0) return FG_ERR_INVALID_SIZE;
    forward_buffers buf;
    fg_layout layout = {NULL, 0, 0};
    fg_status status = layout_forward(gru, seq_len, batch, &layout, &buf);
    *bytes = layout.used;
    return status;
}

fg_status fg_tape_layout(const fg_gru *gru, int64_t seq_len, int64_t batch, void *tape, void **gates,
                         void **outputs, size_t *bytes) {
    const fg_spec *spec = &gru->spec;
    /* int8 models are inference-only: no tape, hence no fg_backward either (it reads the tape's layout) */
    if (gru->weight_format != FG_WEIGHTS_NATIVE) return FG_ERR_UNSUPPORTED;
    const int64_t rows = fg_mul(fg_mul(spec->num_layers, seq_len), batch);
    const int64_t D = spec->num_directions, H = spec->hidden_size;
    fg_layout layout = {(char *)tape, 0, 0};
    *gates = fg_layout_take(&layout, fg_mul(rows, D * 4 * H), fg_dtype_size(spec->dtype));
    *outputs = fg_layout_take(&layout, fg_mul(rows, D * H), fg_dtype_size(spec->dtype));
    *bytes = layout.used;
    return layout.overflow ? FG_ERR_SIZE_OVERFLOW : FG_OK;
}

fg_status fg_tape_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes) {
    if (!gru || !bytes) return FG_ERR_NULL_POINTER;
    if (seq_len < 1 || batch < 0) return FG_ERR_INVALID_SIZE;
    void *gates, *outputs;
    return fg_tape_layout(gru, seq_len, batch, NULL, &gates, &outputs, bytes);
}

fg_status fg_order_by_length(const fg_sequence *seq, int64_t *perm, int64_t *active) {
    const int64_t T = seq->seq_len, B = seq->batch;
    if (!seq->lengths) {
        for (int64_t b = 0; b < B; b++) perm[b] = b;
        return FG_OK;
    }
    int64_t *count = active; /* count[len] first, then turned into active[] in place */
    memset(count, 0, (size_t)(T + 1) * sizeof(int64_t));
    for (int64_t b = 0; b < B; b++) {
        int64_t len = seq->lengths[b];
        if (len < 1 || len > T) return FG_ERR_INVALID_LENGTHS;
        count[len]++;
    }
    /* Rows of length len go to positions [#longer, #longer + count[len]). */
    int64_t longer = 0;
    for (int64_t len = T; len >= 1; len--) {
        int64_t here = count[len];
        count[len] = longer; /* first position of length len */
        longer += here;
    }
    for (int64_t b = 0; b < B; b++) perm[count[seq->lengths[b]]++] = b;
    /* Now count[len] = #rows of length >= len; active[t] = #rows longer than t = that at len = t + 1. */
    for (int64_t t = 0; t < T; t++) active[t] = active[t + 1];
    active[T] = 0;
    return FG_OK;
}

/* Multiply-adds of a whole forward call, in double: only compared with a threshold, never overflows. */
static double forward_macs(const fg_spec *spec, int64_t seq_len, int64_t batch) {
    const double H = (double)spec->hidden_size, D = (double)spec->num_directions;
    const double per_row = D * 3 * H * ((double)spec->input_size + H + (double)(spec->num_layers - 1) * (D * H + H));
    return (double)seq_len * (double)batch * per_row;
}

static fg_status check_sequence(const fg_gru *gru, const fg_sequence *seq) {
    if (!seq) return FG_ERR_NULL_POINTER;
    if (seq->seq_len < 1 || seq->batch < 0) return FG_ERR_INVALID_SIZE;
    if (seq->lengths && seq->mask) return FG_ERR_INVALID_LENGTHS;
    if (seq->batch > 0 && (!seq->x || !seq->output || !seq->h_n)) return FG_ERR_NULL_POINTER;
    (void)gru;
    return FG_OK;
}

/* The table an int8 model runs: `table`, or where the model is narrow (fg_gru.int8_wide == 0) and the
 * table has narrow kernels, a copy of it holding those (and their code bytes) as its _i8 kernels, so
 * that the driver (forward_impl.h) needs no second path. Both give the same exact sums. */
static const fg_kernels *int8_kernels(const fg_gru *gru, const fg_kernels *table, fg_kernels *narrow) {
    if (gru->int8_wide || !table->step_lbr_i8n) return table;
    *narrow = *table;
    narrow->step_lbr_i8 = table->step_lbr_i8n;
    narrow->step_rb1_i8 = table->step_rb1_i8n;
    narrow->step_rb2_i8 = table->step_rb2_i8n;
    narrow->project_i8 = table->project_i8n;
    narrow->quantize_i8 = table->quantize_i8n;
    narrow->int8_codes = table->int8n_codes;
    return narrow;
}

fg_status fg_forward(const fg_gru *gru, const fg_sequence *seq, void *tape, void *workspace,
                     size_t workspace_bytes, const fg_context *ctx) {
    const fg_kernels *kernels;
    fg_status status = fg_check_context(gru, ctx, 0, &kernels);
    if (status == FG_OK) status = check_sequence(gru, seq);
    if (status != FG_OK) return status;
    if (seq->batch == 0) return FG_OK;
    forward_buffers buf;
    fg_layout layout = {NULL, 0, 0};
    status = layout_forward(gru, seq->seq_len, seq->batch, &layout, &buf);
    if (status != FG_OK) return status;
    void *tape_gates = NULL, *tape_outputs = NULL;
    if (tape) {
        size_t tape_bytes;
        status = fg_tape_layout(gru, seq->seq_len, seq->batch, tape, &tape_gates, &tape_outputs, &tape_bytes);
        if (status != FG_OK) return status;
    }
    if (!workspace) return FG_ERR_NULL_POINTER;
    if (workspace_bytes < layout.used) return FG_ERR_WORKSPACE_TOO_SMALL;
    layout = (fg_layout){(char *)workspace, 0, 0};
    layout_forward(gru, seq->seq_len, seq->batch, &layout, &buf);
    status = fg_order_by_length(seq, buf.perm, buf.active);
    if (status != FG_OK) return status;
    if (!seq->lengths) buf.active = NULL;

    fg_pool *pool = fg_pool_engage(ctx->pool, forward_macs(&gru->spec, seq->seq_len, seq->batch)) ? ctx->pool : NULL;
    /* one-step calls of a thread alternate their block order (forward_impl.h, single_step) */
    static _Thread_local unsigned one_step_calls;
    const int odd_call = seq->seq_len == 1 ? (int)(one_step_calls++ & 1) : 0;
    unsigned saved_csr = fg_denormals_off();
    fg_kernels narrow;
    if (gru->weight_format == FG_WEIGHTS_INT8)
        forward_i8(gru, seq, NULL, NULL, &buf, int8_kernels(gru, kernels, &narrow), pool, odd_call);
    else if (gru->spec.dtype == FG_FLOAT32)
        forward_f32(gru, seq, tape_gates, tape_outputs, &buf, kernels, pool, odd_call);
    else forward_f64(gru, seq, tape_gates, tape_outputs, &buf, kernels, pool, odd_call);
    fg_denormals_restore(saved_csr);
    return FG_OK;
}

fg_status fg_step_workspace_size(const fg_gru *gru, int64_t batch, size_t *bytes) {
    if (gru && gru->spec.num_directions != 1) return FG_ERR_UNSUPPORTED;
    return fg_forward_workspace_size(gru, 1, batch, bytes);
}

/* A step is a forward pass of length 1 whose initial and final states are the same array: the forward
 * pass reads a layer's initial state before it writes that layer's final one, so the aliasing is safe. */
fg_status fg_step(const fg_gru *gru, int64_t batch, const void *x_t, void *h, void *output, void *workspace,
                  size_t workspace_bytes, const fg_context *ctx) {
    if (gru && gru->spec.num_directions != 1) return FG_ERR_UNSUPPORTED;
    if (!h) return FG_ERR_NULL_POINTER;
    fg_sequence seq = {1, batch, 0, x_t, h, NULL, NULL, output, h};
    return fg_forward(gru, &seq, NULL, workspace, workspace_bytes, ctx);
}
