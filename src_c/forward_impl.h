/* forward_impl.h: the forward pass as a template over REAL (float/double), included by forward.c.
 *
 * Per layer:
 *   1. the input projection gates_x = x W_ih^T + bias for a chunk of time steps, both directions in
 *      one GEMM when the whole sequence is one chunk (forward.c, chunk_steps);
 *   2. per time step and direction: one recurrent GEMM over the active batch rows (two for
 *      reset-before, where W_hn multiplies r * h), then the fused gate pass per row (kernels_impl.h).
 * Variable lengths shrink the active batch: rows are ordered by length once (perm), so at time t the
 * sequences still running are the first active[t] rows of the state. The reverse direction visits t
 * from T-1 down, and a sequence joins it at t = length - 1 with its initial state: the same rows. */

#define FG_CAT2_(a, b) a##_##b
#define FG_CAT2(a, b) FG_CAT2_(a, b)
#define FN(name) FG_CAT2(name, SFX)

typedef struct FN(forward_state) {
    const fg_gru *gru;
    const fg_sequence *seq;
    const fg_kernels *kernels;
    FN(gemm_fn) gemm;
    fg_activation act;
    forward_buffers buf;
    REAL *tape_gates;   /* (L, D, T, B, 4H) or NULL */
    REAL *tape_outputs; /* (L, T, B, D*H) or NULL */
} FN(forward_state);

/* Rows of the layer input for times [t_begin, t_begin + steps) as a time-major (steps*B, width)
 * matrix: the input itself when it is time-major, else gathered into the workspace. */
static const REAL *FN(time_major_rows)(const FN(forward_state) *s, const REAL *input, int64_t width,
                                       int64_t t_begin, int64_t steps) {
    const int64_t T = s->seq->seq_len, B = s->seq->batch;
    if (!s->seq->batch_first) return input + t_begin * B * width;
    REAL *gathered = (REAL *)s->buf.x_gather;
    for (int64_t j = 0; j < steps; j++)
        for (int64_t b = 0; b < B; b++)
            memcpy(gathered + (j * B + b) * width, input + (b * T + t_begin + j) * width, (size_t)width * sizeof(REAL));
    return gathered;
}

/* gates_x[:, col0:col0+cols] = rows(input, times) . W_ih[row0:row0+cols]^T + bias_x[row0:...]. */
static void FN(project)(const FN(forward_state) *s, const fg_packed_layer *layer, const REAL *input,
                        int64_t t_begin, int64_t steps, int64_t row0, int64_t cols) {
    const int64_t B = s->seq->batch, G = 3 * s->gru->spec.hidden_size;
    const int64_t ld = s->gru->spec.num_directions * G, width = layer->input_size;
    REAL *gates_x = (REAL *)s->buf.gates_x + row0;
    const REAL *bias = (const REAL *)layer->bias_x + row0;
    for (int64_t row = 0; row < steps * B; row++) memcpy(gates_x + row * ld, bias, (size_t)cols * sizeof(REAL));
    const REAL *rows = FN(time_major_rows)(s, input, width, t_begin, steps);
    s->gemm(0, 1, steps * B, cols, width, 1, rows, width, (const REAL *)layer->weight_ih + row0 * width, width,
            1, gates_x, ld);
}

/* One time step t of direction d of layer l; `local` is t's row block in gates_x. */
static void FN(step)(const FN(forward_state) *s, int64_t l, int d, int64_t t, int64_t local, REAL *out) {
    const fg_spec *spec = &s->gru->spec;
    const fg_sequence *seq = s->seq;
    const int64_t T = seq->seq_len, B = seq->batch, H = spec->hidden_size, D = spec->num_directions;
    const int64_t G = 3 * H, out_width = D * H;
    const fg_packed_direction *dir = &s->gru->layers[l].directions[d];
    const REAL *w_hh = (const REAL *)dir->weight_hh;
    const int64_t *perm = s->buf.perm;
    const int64_t active = s->buf.active ? s->buf.active[t] : B;
    REAL *state = (REAL *)s->buf.state + d * B * H;
    REAL *gates_h = (REAL *)s->buf.gates_h + d * B * G;
    const REAL *gates_x = (const REAL *)s->buf.gates_x + local * B * D * G + d * G;
    const uint8_t *mask = seq->mask ? seq->mask + t * B : NULL;
    REAL *tape = s->tape_gates ? s->tape_gates + ((l * D + d) * T + t) * B * 4 * H : NULL;

#define OUT_ROW(b) (out + (seq->batch_first ? (b) * T + t : t * B + (b)) * out_width + d * H)
#define TAPE_ROW(b) (tape ? tape + (b) * 4 * H : NULL)
#define MASKED(b) (mask && !mask[b])
    if (spec->variant == FG_LINEAR_BEFORE_RESET) {
        const REAL *bias_hn = (const REAL *)dir->bias_hn;
        s->gemm(0, 1, active, G, H, 1, state, H, w_hh, H, 0, gates_h, G);
        for (int64_t i = 0; i < active; i++) {
            int64_t b = perm[i];
            if (MASKED(b)) continue;
            s->kernels->FN(gates_lbr)(&s->act, H, gates_x + b * D * G, gates_h + i * G, bias_hn, state + i * H,
                                      OUT_ROW(b), TAPE_ROW(b));
        }
    } else {
        REAL *gates_rz = gates_h, *gates_hn = gates_h + B * 2 * H;
        REAL *reset_h = (REAL *)s->buf.reset_h + d * B * H;
        s->gemm(0, 1, active, 2 * H, H, 1, state, H, w_hh, H, 0, gates_rz, 2 * H);
        for (int64_t i = 0; i < active; i++)
            s->kernels->FN(gates_rb1)(&s->act, H, gates_x + perm[i] * D * G, gates_rz + i * 2 * H, state + i * H,
                                      reset_h + i * H);
        s->gemm(0, 1, active, H, H, 1, reset_h, H, w_hh + 2 * H * H, H, 0, gates_hn, H);
        for (int64_t i = 0; i < active; i++) {
            int64_t b = perm[i];
            if (MASKED(b)) continue;
            s->kernels->FN(gates_rb2)(&s->act, H, gates_x + b * D * G, gates_rz + i * 2 * H, gates_hn + i * H,
                                      state + i * H, OUT_ROW(b), TAPE_ROW(b));
        }
    }
    /* Finished sequences and masked steps output zeros. A masked step's tape row reads r = 0, z = 1,
     * n = 0: the backward formulas then pass the state's gradient through untouched. */
    for (int64_t i = active; i < B; i++) memset(OUT_ROW(perm[i]), 0, (size_t)H * sizeof(REAL));
    if (mask) {
        for (int64_t b = 0; b < B; b++) {
            if (!MASKED(b)) continue;
            memset(OUT_ROW(b), 0, (size_t)H * sizeof(REAL));
            if (tape) {
                REAL *row = TAPE_ROW(b);
                memset(row, 0, (size_t)(4 * H) * sizeof(REAL));
                for (int64_t j = 0; j < H; j++) row[fg_packed_index(H, 3, 1, j)] = 1;
            }
        }
    }
#undef OUT_ROW
#undef TAPE_ROW
#undef MASKED
}

static void FN(run_layer)(const FN(forward_state) *s, int64_t l, const REAL *input, REAL *out) {
    const fg_spec *spec = &s->gru->spec;
    const fg_sequence *seq = s->seq;
    const int64_t T = seq->seq_len, B = seq->batch, H = spec->hidden_size, D = spec->num_directions;
    const int64_t G = 3 * H, chunk = s->buf.chunk_steps;
    const fg_packed_layer *layer = &s->gru->layers[l];
    const int64_t *perm = s->buf.perm;
    const REAL *h0 = (const REAL *)seq->h0;
    REAL *h_n = (REAL *)seq->h_n;

    /* The state lives in perm order so the active rows are always a prefix. */
    for (int64_t d = 0; d < D; d++) {
        REAL *state = (REAL *)s->buf.state + d * B * H;
        for (int64_t i = 0; i < B; i++) {
            if (h0) memcpy(state + i * H, h0 + ((l * D + d) * B + perm[i]) * H, (size_t)H * sizeof(REAL));
            else memset(state + i * H, 0, (size_t)H * sizeof(REAL));
        }
    }
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t steps = T - t0 < chunk ? T - t0 : chunk;
        /* Direction 1 walks the chunk mirrored from the end: times [T - t0 - steps, T - t0). */
        if (steps == T) FN(project)(s, layer, input, 0, T, 0, D * G);
        else
            for (int64_t d = 0; d < D; d++) FN(project)(s, layer, input, d ? T - t0 - steps : t0, steps, d * G, G);
        for (int64_t j = 0; j < steps; j++) {
            FN(step)(s, l, 0, t0 + j, j, out);
            if (D == 2) FN(step)(s, l, 1, T - 1 - t0 - j, steps - 1 - j, out);
        }
    }
    for (int64_t d = 0; d < D; d++) {
        const REAL *state = (const REAL *)s->buf.state + d * B * H;
        for (int64_t i = 0; i < B; i++)
            memcpy(h_n + ((l * D + d) * B + perm[i]) * H, state + i * H, (size_t)H * sizeof(REAL));
    }
    if (s->tape_outputs) {
        REAL *saved = s->tape_outputs + l * T * B * D * H;
        const int64_t rows = T * B, width = D * H;
        if (!seq->batch_first) memcpy(saved, out, (size_t)(rows * width) * sizeof(REAL));
        else
            for (int64_t t = 0; t < T; t++)
                for (int64_t b = 0; b < B; b++)
                    memcpy(saved + (t * B + b) * width, out + (b * T + t) * width, (size_t)width * sizeof(REAL));
    }
}

static void FN(forward)(const fg_gru *gru, const fg_sequence *seq, void *tape_gates, void *tape_outputs,
                        const forward_buffers *buf, const fg_kernels *kernels, FN(gemm_fn) gemm) {
    const fg_spec *spec = &gru->spec;
    const int64_t L = spec->num_layers;
    FN(forward_state) s;
    s.gru = gru;
    s.seq = seq;
    s.kernels = kernels;
    s.gemm = gemm;
    s.act = fg_activation_of(spec);
    s.buf = *buf;
    s.tape_gates = (REAL *)tape_gates;
    s.tape_outputs = (REAL *)tape_outputs;

    /* Layers alternate between the caller's output and one intermediate buffer, arranged so that the
     * last layer lands in the output. */
    const REAL *input = (const REAL *)seq->x;
    for (int64_t l = 0; l < L; l++) {
        REAL *out = (L - 1 - l) % 2 == 0 ? (REAL *)seq->output : (REAL *)buf->intermediate;
        FN(run_layer)(&s, l, input, out);
        input = out;
    }
}

#undef FN
#undef FG_CAT2
#undef FG_CAT2_
