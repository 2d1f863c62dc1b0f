/* backward.c: argument checks, the workspace layout and the entry point of the backward pass (BPTT).
 * The computation itself is backward_impl.h. */
#include "templates.h"
#include "activations.h"

typedef fg_sgemm_fn gemm_fn_f32;
typedef fg_dgemm_fn gemm_fn_f64;

/* Where each scratch array of a backward call lives in the caller's workspace. Rows called "(t, i)"
 * are time-major with the batch in length order: row t * B + i holds the caller's batch row perm[i],
 * so at every step the active sequences are a contiguous block of rows and the per-step GEMMs read
 * the stored gate gradients in place. */
typedef struct backward_buffers {
    int64_t *perm;        /* (B) batch rows ordered by length, longest first */
    int64_t *active;      /* (T + 1) sequences longer than t; NULL without lengths */
    void *grad_gates_x;   /* (T*B, D*3H) dL/d(input projection), (t, i) rows, packed [r z n] per direction */
    void *grad_gates_h;   /* (D, T*B, 3H) dL/d(recurrent projection), (t, i) rows, laid out as the packed
                           * weight_hh: [r z n] packed, or for reset-before [r z] packed then n natural */
    void *state_before;   /* (D, T*B, H) the state each step started from, (t, i) rows */
    void *grad_state;     /* (D, B, H) dL/dh, rows in perm order */
    void *grad_reset_h;   /* (B, H) dL/d(r * h), reset-before only */
    void *grad_rows;      /* (T*B, max(I, D*H)) dL/d(layer output), (t, i) rows; then dL/d(layer input) */
    void *input_rows;     /* (T*B, max(I, D*H)) the layer input gathered into (t, i) rows */
    void *grad_weight;    /* (D*3H, max(I, D*H, H)) a layer's W_ih (packed rows), then a weight gradient */
    double *bias_sums;    /* (2 * D*3H) column sums of the gate gradients */
    void *panels;         /* one direction's W_hh (3H, H): column panels (backward_kernels.h) for the
                           * panel kernel, else row-major for the BLAS */
    int64_t panel_stride; /* elements from one panel to the next: 3H * panel width */
} backward_buffers;

/* backward_f32 */
#define REAL float
#define SFX f32
#include "backward_impl.h"

/* backward_f64 */
#define REAL double
#define SFX f64
#include "backward_impl.h"

/* The one place that knows the workspace layout: counts bytes when layout->base is NULL. */
static fg_status layout_backward(const fg_gru *gru, int64_t seq_len, int64_t batch, fg_layout *layout,
                                 backward_buffers *buf) {
    const fg_spec *spec = &gru->spec;
    const int64_t H = spec->hidden_size, D = spec->num_directions;
    const int64_t width = spec->input_size > D * H ? spec->input_size : D * H;
    const size_t elem = fg_dtype_size(spec->dtype);
    const int64_t rows = fg_mul(seq_len, batch);
    buf->perm = (int64_t *)fg_layout_take(layout, batch, sizeof(int64_t));
    buf->active = (int64_t *)fg_layout_take(layout, seq_len + 1, sizeof(int64_t));
    buf->grad_gates_x = fg_layout_take(layout, fg_mul(rows, D * 3 * H), elem);
    buf->grad_gates_h = fg_layout_take(layout, fg_mul(rows, D * 3 * H), elem);
    buf->state_before = fg_layout_take(layout, fg_mul(rows, D * H), elem);
    buf->grad_state = fg_layout_take(layout, fg_mul(fg_mul(D, batch), H), elem);
    buf->grad_reset_h = fg_layout_take(layout, spec->variant == FG_RESET_BEFORE ? fg_mul(batch, H) : 0, elem);
    buf->grad_rows = fg_layout_take(layout, fg_mul(rows, width), elem);
    buf->input_rows = fg_layout_take(layout, fg_mul(rows, width), elem);
    buf->grad_weight = fg_layout_take(layout, fg_mul(D * 3 * H, width), elem);
    buf->bias_sums = (double *)fg_layout_take(layout, 2 * D * 3 * H, sizeof(double));
    const int64_t panel_width = FG_PANEL_BYTES / (int64_t)elem;
    buf->panel_stride = 3 * H * panel_width;
    buf->panels = fg_layout_take(layout, fg_mul((H + panel_width - 1) / panel_width, buf->panel_stride), elem);
    return layout->overflow ? FG_ERR_SIZE_OVERFLOW : FG_OK;
}

fg_status fg_backward_workspace_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes) {
    if (!gru || !bytes) return FG_ERR_NULL_POINTER;
    if (seq_len < 1 || batch < 0) return FG_ERR_INVALID_SIZE;
    backward_buffers buf;
    fg_layout layout = {NULL, 0, 0};
    fg_status status = layout_backward(gru, seq_len, batch, &layout, &buf);
    *bytes = layout.used;
    return status;
}

static fg_status check_gradients(const fg_gru *gru, const fg_gradients *grads) {
    if (!grads || !grads->layers) return FG_ERR_NULL_POINTER;
    const int64_t n = gru->spec.num_layers * gru->spec.num_directions;
    for (int64_t k = 0; k < n; k++)
        if (!grads->layers[k].weight_ih || !grads->layers[k].weight_hh) return FG_ERR_NULL_POINTER;
    return FG_OK;
}

/* Zeros every weight gradient: the result of an empty batch. */
static void zero_weight_gradients(const fg_gru *gru, const fg_gradients *grads) {
    const fg_spec *spec = &gru->spec;
    const int64_t H = spec->hidden_size, D = spec->num_directions;
    const size_t elem = fg_dtype_size(spec->dtype);
    for (int64_t l = 0; l < spec->num_layers; l++)
        for (int64_t d = 0; d < D; d++) {
            const fg_layer_weights *w = &grads->layers[l * D + d];
            memset(w->weight_ih, 0, (size_t)(3 * H * gru->layers[l].input_size) * elem);
            memset(w->weight_hh, 0, (size_t)(3 * H * H) * elem);
            if (w->bias_ih) memset(w->bias_ih, 0, (size_t)(3 * H) * elem);
            if (w->bias_hh) memset(w->bias_hh, 0, (size_t)(3 * H) * elem);
        }
}

fg_status fg_backward(const fg_gru *gru, const fg_sequence *seq, const void *tape, const void *grad_output,
                      const void *grad_h_n, const fg_gradients *grads, void *workspace, size_t workspace_bytes,
                      const fg_context *ctx) {
    const fg_kernels *kernels;
    fg_status status = fg_check_context(gru, ctx, 1, &kernels);
    if (status != FG_OK) return status;
    if (gru->weight_format != FG_WEIGHTS_NATIVE) return FG_ERR_UNSUPPORTED; /* int8 models: inference only */
    if (!seq) return FG_ERR_NULL_POINTER;
    if (seq->seq_len < 1 || seq->batch < 0) return FG_ERR_INVALID_SIZE;
    if (seq->lengths && seq->mask) return FG_ERR_INVALID_LENGTHS;
    status = check_gradients(gru, grads);
    if (status != FG_OK) return status;
    if (seq->batch == 0) {
        zero_weight_gradients(gru, grads);
        return FG_OK;
    }
    if (!seq->x || !tape) return FG_ERR_NULL_POINTER;
    backward_buffers buf;
    fg_layout layout = {NULL, 0, 0};
    status = layout_backward(gru, seq->seq_len, seq->batch, &layout, &buf);
    if (status != FG_OK) return status;
    void *tape_gates, *tape_outputs;
    size_t tape_bytes;
    status = fg_tape_layout(gru, seq->seq_len, seq->batch, (void *)tape, &tape_gates, &tape_outputs, &tape_bytes);
    if (status != FG_OK) return status;
    if (!workspace) return FG_ERR_NULL_POINTER;
    if (workspace_bytes < layout.used) return FG_ERR_WORKSPACE_TOO_SMALL;
    layout = (fg_layout){(char *)workspace, 0, 0};
    layout_backward(gru, seq->seq_len, seq->batch, &layout, &buf);
    status = fg_order_by_length(seq, buf.perm, buf.active);
    if (status != FG_OK) return status;
    if (!seq->lengths) buf.active = NULL;

    unsigned saved_csr = fg_denormals_off();
    if (gru->spec.dtype == FG_FLOAT32)
        backward_f32(gru, seq, tape_gates, tape_outputs, grad_output, grad_h_n, grads, &buf, ctx->blas->sgemm,
                     kernels->backward_product_f32);
    else
        backward_f64(gru, seq, tape_gates, tape_outputs, grad_output, grad_h_n, grads, &buf, ctx->blas->dgemm,
                     kernels->backward_product_f64);
    fg_denormals_restore(saved_csr);
    return FG_OK;
}
