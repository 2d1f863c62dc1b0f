/* backward_impl.h: the backward pass (BPTT) as a template over REAL and SFX (templates.h),
 * instantiated by backward.c; needs activations.h.
 *
 * Per layer, from the last to the first:
 *   1. the state each step started from, gathered from the tape's outputs (h0 at a sequence's first
 *      step), and the layer input, both in (t, i) rows (backward.c, backward_buffers);
 *   2. per direction, the reverse time loop: the elementwise gate derivatives of every active row,
 *      which store the step's gate gradients, and one GEMM dh += dG_h . W_hh over the active rows
 *      (two for reset-before: W_hn first, because dr needs W_hn^T da_n); only dh is sequential;
 *   3. after the loop, over all steps at once: dL/d(input) = dG_x . W_ih (both directions in one GEMM),
 *      dW_ih = dG_x^T . X (both directions in one GEMM), dW_hh = dG_h^T . H_prev, biases = column
 *      sums; weight gradients are unpacked into the caller's (r, z, n) layout.
 * The model holds its weights as the forward's panels only: the row-major W_ih and W_hh that the GEMMs
 * take are built from them into this call's workspace (prepare_recurrent_weights, and W_ih in
 * grad_weight), so nothing is cached in the shared, immutable model.
 *
 * Formulas (docs/design.md, "Backward"), with dh' = dL/dh_t and a_* the pre-activations:
 *   dn = dh' (1 - z)   dz = dh' (h - n)   dh = dh' z   da_n = dn (1 - n^2)   da_z = dz z'
 *   linear-before-reset: g = W_hn h + b_hn; dr = da_n g; dg = da_n r; dG_h = [da_r, da_z, dg]
 *   reset-before:        d(rh) = W_hn^T da_n; dr = d(rh) h; dh += d(rh) r; dG_h = [da_r, da_z, da_n]
 *   da_r = dr r';  dG_x = [da_r, da_z, da_n]
 * where r' = r (1 - r) for the sigmoid and alpha where 0 < r < 1 for the hard sigmoid. With clip, a
 * pre-activation that was clamped has derivative 0: the tape holds activated values only, and since the
 * activations are monotonic a clamped value equals act(+-clip); values within a few rounding errors of
 * those bounds count as clamped (an error confined to where the derivative is discontinuous anyway). */

#if !defined(REAL) || !defined(SFX)
#error "backward_impl.h takes REAL and SFX (templates.h)"
#endif

/* The constants of the derivative pass. */
typedef struct FN(derivative_params) {
    int hard_sigmoid, clipping;
    REAL alpha;
    REAL gate_low, gate_high; /* a gate value <= low or >= high came from a clamped pre-activation */
    REAL candidate_high;      /* |n| >= this came from a clamped pre-activation */
} FN(derivative_params);

static FN(derivative_params) FN(derivative_params_of)(const fg_spec *spec) {
    FN(derivative_params) p;
    p.hard_sigmoid = spec->gate_activation == FG_HARD_SIGMOID;
    p.clipping = spec->clip > 0;
    p.alpha = (REAL)spec->gate_alpha;
    p.gate_low = 0;
    p.gate_high = 2;
    p.candidate_high = 2;
    if (p.clipping) {
        /* The forward's rounding of act(clip) may differ from ours by an ulp or two (different ISA). */
        const REAL tolerance = 8 * (sizeof(REAL) == sizeof(float) ? (REAL)1.1920929e-7 : (REAL)2.220446049250313e-16);
        const REAL clip = (REAL)spec->clip;
        REAL low, high;
        if (p.hard_sigmoid) {
            low = (REAL)spec->gate_alpha * -clip + (REAL)spec->gate_beta;
            high = (REAL)spec->gate_alpha * clip + (REAL)spec->gate_beta;
        } else {
            low = FG_SIGMOID(-clip);
            high = FG_SIGMOID(clip);
        }
        p.gate_low = low + tolerance * (low < 0 ? -low : low);
        p.gate_high = high - tolerance * (high < 0 ? -high : high);
        p.candidate_high = (REAL)FG_TANH(clip) * (1 - tolerance);
    }
    return p;
}

/* d(gate)/d(pre-activation) from the gate's value. */
static inline REAL FN(gate_derivative)(const FN(derivative_params) *p, REAL v) {
    REAL derivative = p->hard_sigmoid ? (v > 0 && v < 1 ? p->alpha : (REAL)0) : v * (1 - v);
    if (p->clipping && (v <= p->gate_low || v >= p->gate_high)) derivative = 0;
    return derivative;
}

/* d(tanh)/d(pre-activation) from n. */
static inline REAL FN(candidate_derivative)(const FN(derivative_params) *p, REAL n) {
    REAL derivative = 1 - n * n;
    if (p->clipping && (n >= p->candidate_high || -n >= p->candidate_high)) derivative = 0;
    return derivative;
}

/* The packed blocks of FG_BLOCK units (the last one narrower): j0 = first unit, width = units. */
#define FG_FOR_BLOCKS(hidden)                                                                         \
    for (int64_t j0 = 0, width = (hidden) < FG_BLOCK ? (hidden) : FG_BLOCK; j0 < (hidden);              \
         j0 += FG_BLOCK, width = (hidden) - j0 < FG_BLOCK ? (hidden) - j0 : FG_BLOCK)

/* Linear-before-reset, one batch row: dh (in: dL/dh_t without this step's output gradient; out: the
 * part of dL/dh_{t-1} that flows through z, dh' z) and the row's gate gradients dgx, dgh (3H packed).
 * tape: r z n packed, then g natural. grad_out may be NULL (zeros). */
static void FN(derivatives_lbr)(const FN(derivative_params) *p, int64_t hidden, const REAL *restrict tape,
                                const REAL *restrict h_prev, const REAL *restrict grad_out, REAL *restrict dh,
                                REAL *restrict dgx, REAL *restrict dgh) {
    const REAL *g = tape + 3 * hidden;
    FG_FOR_BLOCKS(hidden) {
        const REAL *rzn = tape + 3 * j0;
        for (int64_t k = 0; k < width; k++) {
            const int64_t j = j0 + k;
            const REAL r = rzn[k], z = rzn[width + k], n = rzn[2 * width + k];
            const REAL dh_t = dh[j] + (grad_out ? grad_out[j] : (REAL)0);
            const REAL da_n = dh_t * (1 - z) * FN(candidate_derivative)(p, n);
            const REAL da_z = dh_t * (h_prev[j] - n) * FN(gate_derivative)(p, z);
            const REAL da_r = da_n * g[j] * FN(gate_derivative)(p, r);
            dh[j] = dh_t * z;
            dgx[3 * j0 + k] = da_r;
            dgx[3 * j0 + width + k] = da_z;
            dgx[3 * j0 + 2 * width + k] = da_n;
            dgh[3 * j0 + k] = da_r;
            dgh[3 * j0 + width + k] = da_z;
            dgh[3 * j0 + 2 * width + k] = da_n * r;
        }
    }
}

/* Reset-before, first half: everything but r, whose gradient needs d(r*h) = W_hn^T da_n. Writes the z
 * and n parts of dgx (3H packed) and dgh ([r z] packed (2H), then n natural (H)). */
static void FN(derivatives_rb1)(const FN(derivative_params) *p, int64_t hidden, const REAL *restrict tape,
                                const REAL *restrict h_prev, const REAL *restrict grad_out, REAL *restrict dh,
                                REAL *restrict dgx, REAL *restrict dgh) {
    FG_FOR_BLOCKS(hidden) {
        const REAL *rzn = tape + 3 * j0;
        for (int64_t k = 0; k < width; k++) {
            const int64_t j = j0 + k;
            const REAL z = rzn[width + k], n = rzn[2 * width + k];
            const REAL dh_t = dh[j] + (grad_out ? grad_out[j] : (REAL)0);
            const REAL da_n = dh_t * (1 - z) * FN(candidate_derivative)(p, n);
            const REAL da_z = dh_t * (h_prev[j] - n) * FN(gate_derivative)(p, z);
            dh[j] = dh_t * z;
            dgx[3 * j0 + width + k] = da_z;
            dgx[3 * j0 + 2 * width + k] = da_n;
            dgh[2 * j0 + width + k] = da_z;
            dgh[2 * hidden + j] = da_n;
        }
    }
}

/* Reset-before, second half: with grad_reset_h = d(r*h) (H natural), the r parts of dgx and dgh and the
 * share of dL/dh_{t-1} that flows through r * h. */
static void FN(derivatives_rb2)(const FN(derivative_params) *p, int64_t hidden, const REAL *restrict tape,
                                const REAL *restrict h_prev, const REAL *restrict grad_reset_h, REAL *restrict dh,
                                REAL *restrict dgx, REAL *restrict dgh) {
    FG_FOR_BLOCKS(hidden) {
        const REAL *rzn = tape + 3 * j0;
        for (int64_t k = 0; k < width; k++) {
            const int64_t j = j0 + k;
            const REAL r = rzn[k];
            const REAL da_r = grad_reset_h[j] * h_prev[j] * FN(gate_derivative)(p, r);
            dh[j] += grad_reset_h[j] * r;
            dgx[3 * j0 + k] = da_r;
            dgh[2 * j0 + k] = da_r;
        }
    }
}

#undef FG_FOR_BLOCKS

typedef struct FN(backward_state) {
    const fg_gru *gru;
    const fg_sequence *seq;
    FN(gemm_fn) gemm;
    FN(fg_panel_gemm) panel_gemm; /* NULL: the per-step products go to the BLAS */
    FN(derivative_params) params;
    backward_buffers buf;
    const REAL *tape_gates;   /* (L, D, T, B, 4H) */
    const REAL *tape_outputs; /* (L, T, B, D*H) */
    const REAL *grad_output;  /* caller's layout, or NULL */
    const REAL *grad_h_n;     /* (L*D, B, H) or NULL */
} FN(backward_state);

/* Whether step t of caller row b ran (not past its length, not masked). */
static inline int FN(step_ran)(const FN(backward_state) *s, int64_t t, int64_t i) {
    const fg_sequence *seq = s->seq;
    if (s->buf.active) return i < s->buf.active[t];
    return !seq->mask || seq->mask[t * seq->batch + s->buf.perm[i]];
}

/* Row of the caller's (T, B, .) or (B, T, .) array for time t, batch row b. */
static inline int64_t FN(caller_row)(const fg_sequence *seq, int64_t t, int64_t b) {
    return seq->batch_first ? b * seq->seq_len + t : t * seq->batch + b;
}

/* state_before[d] in (t, i) rows: for each step that ran, the state it started from, i.e. the
 * layer's output at the previous step that ran in direction d (h0 or zeros before the first);
 * zeros where the step did not run. */
static void FN(gather_state_before)(const FN(backward_state) *s, int64_t l, int d) {
    const fg_sequence *seq = s->seq;
    const int64_t T = seq->seq_len, B = seq->batch, H = s->gru->spec.hidden_size, D = s->gru->spec.num_directions;
    const REAL *outputs = s->tape_outputs + l * T * B * D * H;
    const REAL *h0 = (const REAL *)seq->h0;
    REAL *before = (REAL *)s->buf.state_before + d * T * B * H;
    const size_t row_bytes = (size_t)H * sizeof(REAL);
    for (int64_t i = 0; i < B; i++) {
        const int64_t b = s->buf.perm[i];
        const REAL *carry = h0 ? h0 + ((l * D + d) * B + b) * H : NULL;
        for (int64_t step = 0; step < T; step++) {
            const int64_t t = d == 0 ? step : T - 1 - step;
            REAL *row = before + (t * B + i) * H;
            if (!FN(step_ran)(s, t, i)) {
                memset(row, 0, row_bytes);
                continue;
            }
            if (carry) memcpy(row, carry, row_bytes);
            else memset(row, 0, row_bytes);
            carry = outputs + (t * B + b) * D * H + d * H;
        }
    }
}

/* The layer input as (t, i) rows of input_size columns: the input itself when that is already its
 * layout, else a gathered copy with zeros where a sequence has ended. */
static const REAL *FN(layer_input_rows)(const FN(backward_state) *s, int64_t l) {
    const fg_sequence *seq = s->seq;
    const int64_t T = seq->seq_len, B = seq->batch;
    const int64_t width = s->gru->layers[l].input_size;
    const REAL *input = l == 0 ? (const REAL *)seq->x
                               : s->tape_outputs + (l - 1) * T * B * s->gru->spec.num_directions * s->gru->spec.hidden_size;
    const int batch_first = l == 0 && seq->batch_first;
    if (!s->buf.active && !batch_first) return input;
    REAL *rows = (REAL *)s->buf.input_rows;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < B; i++) {
            REAL *row = rows + (t * B + i) * width;
            const int64_t b = s->buf.perm[i];
            if (s->buf.active && i >= s->buf.active[t]) memset(row, 0, (size_t)width * sizeof(REAL));
            else
                memcpy(row, input + (batch_first ? b * T + t : t * B + b) * width, (size_t)width * sizeof(REAL));
        }
    return rows;
}

/* The per-step products' W_hh (3H, H), rows in the backward's order (dgh's columns), built from the
 * model's panels into the workspace (buf.panels) on each call: as column panels (backward_kernels.h)
 * when the panel kernel runs, else row-major for the BLAS. Returns the row-major matrix (NULL for
 * panels). Costs one pass over W_hh per call and direction, against T of them in the products. */
static const REAL *FN(prepare_recurrent_weights)(const FN(backward_state) *s, int64_t l, int d) {
    const int64_t H = s->gru->spec.hidden_size, K = 3 * H, P = FG_PANEL_BYTES / sizeof(REAL);
    REAL *panels = (REAL *)s->buf.panels;
    if (!s->panel_gemm) {
        FN(backward_weight_hh)(s->gru, l, d, panels, H, H, 0);
        return panels;
    }
    FN(backward_weight_hh)(s->gru, l, d, panels, P, P, s->buf.panel_stride);
    if (H % P) { /* the last panel's columns past H are zeros */
        REAL *last = panels + (H / P) * s->buf.panel_stride;
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = H % P; j < P; j++) last[k * P + j] = 0;
    }
    return NULL;
}

/* c (rows, H) += a (rows, K; row stride lda) . W_hh[k0 : k0 + K] (K, H), on the panels when there
 * are (prepare_recurrent_weights; in reverse order on odd steps, backward_kernels.h), else through the
 * BLAS on the row-major w_hh. */
static void FN(recurrent_product)(const FN(backward_state) *s, int64_t step, int64_t rows, int64_t k0, int64_t K,
                                  const REAL *a, int64_t lda, const REAL *w_hh, REAL *c) {
    const int64_t H = s->gru->spec.hidden_size, P = FG_PANEL_BYTES / sizeof(REAL);
    if (s->panel_gemm)
        s->panel_gemm(rows, H, K, a, lda, (const REAL *)s->buf.panels + k0 * P, s->buf.panel_stride, c, H,
                      (int)(step % 2));
    else s->gemm(0, 0, rows, H, K, 1, a, lda, w_hh + k0 * H, H, 1, c, H);
}

/* The reverse time loop of direction d of layer l. grad_out_rows: dL/d(this layer's output) in (t, i)
 * rows of D*H columns, or NULL for the last layer, which reads the caller's grad_output. */
static void FN(reverse_loop)(const FN(backward_state) *s, int64_t l, int d, const REAL *grad_out_rows) {
    const fg_spec *spec = &s->gru->spec;
    const fg_sequence *seq = s->seq;
    const int64_t T = seq->seq_len, B = seq->batch, H = spec->hidden_size, D = spec->num_directions;
    const int64_t G = 3 * H, out_width = D * H;
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    const int64_t *perm = s->buf.perm;
    REAL *dh = (REAL *)s->buf.grad_state + d * B * H;
    REAL *dgx_all = (REAL *)s->buf.grad_gates_x;
    REAL *dgh_all = (REAL *)s->buf.grad_gates_h + d * T * B * G;
    const REAL *before_all = (const REAL *)s->buf.state_before + d * T * B * H;
    REAL *grad_reset_h = (REAL *)s->buf.grad_reset_h;
    const size_t gate_bytes = (size_t)G * sizeof(REAL);

    const REAL *w_hh = FN(prepare_recurrent_weights)(s, l, d);
    for (int64_t i = 0; i < B; i++) {
        if (s->grad_h_n) memcpy(dh + i * H, s->grad_h_n + ((l * D + d) * B + perm[i]) * H, (size_t)H * sizeof(REAL));
        else memset(dh + i * H, 0, (size_t)H * sizeof(REAL));
    }
    for (int64_t step = 0; step < T; step++) {
        /* Backwards through the direction's own order: direction 0 from T-1 down, direction 1 up. */
        const int64_t t = d == 0 ? T - 1 - step : step;
        const int64_t active = s->buf.active ? s->buf.active[t] : B;
        const REAL *tape = s->tape_gates + ((l * D + d) * T + t) * B * 4 * H;
        REAL *dgh = dgh_all + t * B * G;
        for (int64_t i = 0; i < B; i++) {
            REAL *dgx_row = dgx_all + (t * B + i) * D * G + d * G;
            if (i >= active || !FN(step_ran)(s, t, i)) {
                /* No step ran: no gate gradient, and dh passes through a masked step untouched. */
                memset(dgx_row, 0, gate_bytes);
                memset(dgh + i * G, 0, gate_bytes);
                continue;
            }
            const int64_t b = perm[i];
            const REAL *grad_out = grad_out_rows ? grad_out_rows + (t * B + i) * out_width + d * H
                                   : s->grad_output ? s->grad_output + FN(caller_row)(seq, t, b) * out_width + d * H
                                                    : NULL;
            const REAL *h_prev = before_all + (t * B + i) * H;
            if (lbr) FN(derivatives_lbr)(&s->params, H, tape + b * 4 * H, h_prev, grad_out, dh + i * H, dgx_row, dgh + i * G);
            else FN(derivatives_rb1)(&s->params, H, tape + b * 4 * H, h_prev, grad_out, dh + i * H, dgx_row, dgh + i * G);
        }
        if (lbr) {
            FN(recurrent_product)(s, step, active, 0, G, dgh, G, w_hh, dh);
        } else {
            memset(grad_reset_h, 0, (size_t)(active * H) * sizeof(REAL));
            FN(recurrent_product)(s, step, active, 2 * H, H, dgh + 2 * H, G, w_hh, grad_reset_h);
            for (int64_t i = 0; i < active; i++) {
                if (!FN(step_ran)(s, t, i)) continue;
                const REAL *h_prev = before_all + (t * B + i) * H;
                FN(derivatives_rb2)(&s->params, H, tape + perm[i] * 4 * H, h_prev, grad_reset_h + i * H, dh + i * H,
                                    dgx_all + (t * B + i) * D * G + d * G, dgh + i * G);
            }
            FN(recurrent_product)(s, step, active, 0, 2 * H, dgh, G, w_hh, dh);
        }
    }
}

/* Column sums of a (rows, cols) matrix with row stride ld, in double. */
static void FN(column_sums)(const REAL *a, int64_t rows, int64_t cols, int64_t ld, double *sums) {
    for (int64_t c = 0; c < cols; c++) sums[c] = 0;
    for (int64_t row = 0; row < rows; row++)
        for (int64_t c = 0; c < cols; c++) sums[c] += a[row * ld + c];
}

/* The weight and bias gradients of layer l, from the stored gate gradients. */
static void FN(weight_gradients)(const FN(backward_state) *s, int64_t l, const REAL *input,
                                 const fg_gradients *grads) {
    const fg_spec *spec = &s->gru->spec;
    const fg_sequence *seq = s->seq;
    const int64_t T = seq->seq_len, B = seq->batch, H = spec->hidden_size, D = spec->num_directions;
    const int64_t G = 3 * H, rows = T * B, in = s->gru->layers[l].input_size;
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    const REAL *dgx = (const REAL *)s->buf.grad_gates_x;
    REAL *packed = (REAL *)s->buf.grad_weight;
    double *sums_x = s->buf.bias_sums, *sums_h = s->buf.bias_sums + D * G;

    /* dW_ih of both directions: (D*3H, rows) . (rows, I_k), packed rows. */
    s->gemm(1, 0, D * G, in, rows, 1, dgx, D * G, input, in, 0, packed, in);
    FN(column_sums)(dgx, rows, D * G, D * G, sums_x);
    for (int64_t d = 0; d < D; d++) {
        const fg_layer_weights *out = &grads->layers[l * D + d];
        REAL *w_ih = (REAL *)out->weight_ih;
        for (int gate = 0; gate < 3; gate++)
            for (int64_t j = 0; j < H; j++) {
                const int64_t row = d * G + fg_packed_index(H, 3, gate, j);
                memcpy(w_ih + (gate * H + j) * in, packed + row * in, (size_t)in * sizeof(REAL));
                if (out->bias_ih) ((REAL *)out->bias_ih)[gate * H + j] = (REAL)sums_x[row];
            }
    }

    for (int64_t d = 0; d < D; d++) {
        const fg_layer_weights *out = &grads->layers[l * D + d];
        const REAL *dgh = (const REAL *)s->buf.grad_gates_h + d * rows * G;
        REAL *before = (REAL *)s->buf.state_before + d * rows * H;
        if (lbr) {
            s->gemm(1, 0, G, H, rows, 1, dgh, G, before, H, 0, packed, H);
        } else {
            /* [r z] rows multiply h; the W_hn rows multiply r * h, formed in place once h is used. */
            s->gemm(1, 0, 2 * H, H, rows, 1, dgh, G, before, H, 0, packed, H);
            const REAL *tape = s->tape_gates + (l * D + d) * T * B * 4 * H;
            for (int64_t t = 0; t < T; t++)
                for (int64_t i = 0; i < B; i++) {
                    if (!FN(step_ran)(s, t, i)) continue;
                    const REAL *rzn = tape + (t * B + s->buf.perm[i]) * 4 * H;
                    REAL *row = before + (t * B + i) * H;
                    for (int64_t j = 0; j < H; j++) row[j] *= rzn[fg_packed_index(H, 3, 0, j)];
                }
            s->gemm(1, 0, H, H, rows, 1, dgh + 2 * H, G, before, H, 0, packed + 2 * H * H, H);
        }
        FN(column_sums)(dgh, rows, G, G, sums_h);
        REAL *w_hh = (REAL *)out->weight_hh;
        for (int gate = 0; gate < 3; gate++)
            for (int64_t j = 0; j < H; j++) {
                const int64_t row = lbr ? fg_packed_index(H, 3, gate, j)
                                        : gate < 2 ? fg_packed_index(H, 2, gate, j) : 2 * H + j;
                memcpy(w_hh + (gate * H + j) * H, packed + row * H, (size_t)H * sizeof(REAL));
                if (out->bias_hh) ((REAL *)out->bias_hh)[gate * H + j] = (REAL)sums_h[row];
            }
    }
}

void FN(backward)(const fg_gru *gru, const fg_sequence *seq, const void *tape_gates, const void *tape_outputs,
                  const void *grad_output, const void *grad_h_n, const fg_gradients *grads,
                  const backward_buffers *buf, FN(gemm_fn) gemm, FN(fg_panel_gemm) panel_gemm) {
    const fg_spec *spec = &gru->spec;
    const int64_t T = seq->seq_len, B = seq->batch, H = spec->hidden_size, D = spec->num_directions;
    const int64_t L = spec->num_layers, G = 3 * H, rows = T * B;
    FN(backward_state) s;
    s.gru = gru;
    s.seq = seq;
    s.gemm = gemm;
    s.panel_gemm = panel_gemm;
    s.params = FN(derivative_params_of)(spec);
    s.buf = *buf;
    s.tape_gates = (const REAL *)tape_gates;
    s.tape_outputs = (const REAL *)tape_outputs;
    s.grad_output = (const REAL *)grad_output;
    s.grad_h_n = (const REAL *)grad_h_n;
    REAL *grad_rows = (REAL *)buf->grad_rows;
    REAL *grad_h0 = (REAL *)grads->grad_h0;

    for (int64_t l = L - 1; l >= 0; l--) {
        for (int d = 0; d < D; d++) {
            FN(gather_state_before)(&s, l, d);
            FN(reverse_loop)(&s, l, d, l == L - 1 ? NULL : grad_rows);
            if (grad_h0) {
                const REAL *dh = (const REAL *)buf->grad_state + d * B * H;
                for (int64_t i = 0; i < B; i++)
                    memcpy(grad_h0 + ((l * D + d) * B + buf->perm[i]) * H, dh + i * H, (size_t)H * sizeof(REAL));
            }
        }
        /* dL/d(layer input) = dG_x . W_ih over both directions: the next layer down's output gradient,
         * or the caller's grad_x, which takes (t, i) rows directly only when they are its layout. W_ih
         * (D*3H, I_k), packed rows, is built from the panels into grad_weight, which the weight
         * gradients below then overwrite: one pass over W_ih per call, against the GEMM's T*B. */
        const int64_t in = gru->layers[l].input_size;
        if (l > 0 || grads->grad_x) {
            const int direct = l == 0 && !buf->active && !seq->batch_first;
            REAL *target = direct ? (REAL *)grads->grad_x : grad_rows;
            REAL *w_ih = (REAL *)buf->grad_weight;
            FN(backward_weight_ih)(gru, l, w_ih);
            gemm(0, 0, rows, in, D * G, 1, (const REAL *)buf->grad_gates_x, D * G, w_ih, in, 0, target, in);
            if (l == 0 && !direct) {
                REAL *grad_x = (REAL *)grads->grad_x;
                for (int64_t t = 0; t < T; t++)
                    for (int64_t i = 0; i < B; i++)
                        memcpy(grad_x + FN(caller_row)(seq, t, buf->perm[i]) * in, grad_rows + (t * B + i) * in,
                               (size_t)in * sizeof(REAL));
            }
        }
        FN(weight_gradients)(&s, l, FN(layer_input_rows)(&s, l), grads);
    }
}

#undef REAL
#undef SFX
