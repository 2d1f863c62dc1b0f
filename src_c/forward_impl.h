/* forward_impl.h: the forward pass as a template over REAL, SFX and FG_QUANTIZED (templates.h),
 * instantiated by forward.c.
 *
 * Per layer:
 *   1. the input projection gates_x = x W_ih^T + bias for a chunk of time steps (forward.c,
 *      chunk_steps), on W_ih's panels with the same kernel as the recurrence; direction 1 projects the
 *      mirrored chunk from the end, so both directions' gates for a step are ready together;
 *   2. per time step, both directions: the fused recurrent kernel (kernels_impl.h) over the active
 *      batch rows, its unit blocks split across the pool's threads; reset-before takes two passes,
 *      because W_hn multiplies r * h, which needs every r first.
 * Variable lengths shrink the active batch: rows are ordered by length once (perm), so at time t the
 * sequences still running are the first active[t] rows of the state. The reverse direction visits t
 * from T-1 down, and a sequence joins it at t = length - 1 with its initial state: the same rows.
 *
 * With FG_QUANTIZED (int8 models, REAL = float) the driver also keeps the code bytes (internal.h) the
 * int8 kernels multiply: the input rows of each chunk are quantized per row before the projection, and
 * the state's codes live next to the state (the step kernels write them; the driver seeds and carries
 * them). */

#if !defined(REAL) || !defined(SFX)
#error "forward_impl.h takes REAL, SFX and FG_QUANTIZED (templates.h)"
#endif

typedef struct FN(forward_state) {
    const fg_gru *gru;
    const fg_sequence *seq;
    const fg_kernels *kernels;
    fg_pool *pool;
    fg_activation act;
    forward_buffers buf;
    REAL *tape_gates;   /* (L, D, T, B, 4H) or NULL */
    REAL *tape_outputs; /* (L, T, B, D*H) or NULL */
    int64_t k_block;    /* fg_cpu_info.k_block */
    int odd_call;       /* this call's blocks in reverse order, if it is one step (FN(single_step)) */
} FN(forward_state);

/* Rows of the layer input for times [t_begin, t_begin + steps) as a time-major (steps*B, width)
 * matrix: the input itself when it is time-major, else gathered into the workspace (slot 0 or 1, one
 * per direction projected at once). */
static const REAL *FN(time_major_rows)(const FN(forward_state) *s, const REAL *input, int64_t width,
                                       int64_t t_begin, int64_t steps, int64_t slot) {
    const int64_t T = s->seq->seq_len, B = s->seq->batch;
    if (!s->seq->batch_first) return input + t_begin * B * width;
    REAL *gathered = (REAL *)s->buf.x_gather + slot * s->buf.chunk_steps * B * width;
    for (int64_t j = 0; j < steps; j++)
        for (int64_t b = 0; b < B; b++)
            memcpy(gathered + (j * B + b) * width, input + (b * T + t_begin + j) * width, (size_t)width * sizeof(REAL));
    return gathered;
}

/* Work split across the pool: the unit blocks of every direction, in pairs (the 512-bit tables take two
 * adjacent blocks at once, kernels_impl.h), pair p of direction d numbered d * pairs + p, cut into
 * `parts` contiguous ranges (a range may span both directions). Either a step or a projection.
 *
 * reverse: a step takes its range's pairs from the last to the first. Steps alternate (FN(step)), so
 * the panels a step read last, still in the core's L2 where W_hh is larger than it, are the ones the
 * next step reads first; in one order every step, a W_hh larger than the L2 evicts itself and every
 * step reads all of it from the L3. Blocks are independent within a step: the order changes no bit.
 *
 * With both a step and a projection (FN(single_step)), each pair is projected, then stepped. */
typedef struct FN(block_work) {
    const fg_step_args *step_args;       /* one per direction, with step */
    fg_step_fn step;
    const fg_project_args *project_args; /* one per direction, with project */
    fg_project_fn project;
    int64_t blocks, pairs, parts, directions;
    int reverse;
    /* With a step's one task per thread (FG_STEP_TASKS_PER_THREAD): range r taken (1) or not (0). A
     * task takes the range of its thread's index (fg_pool_thread_index) if it is free, else the next
     * free one, so a thread computes the same range every step, as long as it comes in time, whichever
     * task index the pool handed it: the range, not the task, decides which W_hh panels it reads. */
    atomic_int *owned;
} FN(block_work);

/* The range a task of `work` computes: the one of the thread running it if free, else the next free one
 * (parts tasks take parts ranges, so each is taken once). */
static int64_t FN(owned_range)(const FN(block_work) *work) {
    const int64_t want = fg_pool_thread_index() % work->parts;
    for (int64_t k = 0; k < work->parts; k++) {
        const int64_t range = (want + k) % work->parts;
        int expected = 0;
        if (atomic_compare_exchange_strong(&work->owned[range], &expected, 1)) return range;
    }
    return want; /* unreachable: there are as many ranges as tasks */
}

static void FN(block_task)(void *opaque, int64_t part) {
    const FN(block_work) *work = (const FN(block_work) *)opaque;
    const int64_t total = work->pairs * work->directions;
    if (work->owned) part = FN(owned_range)(work);
    const int64_t begin = part * total / work->parts, end = (part + 1) * total / work->parts;
    if (work->step && (work->reverse || work->project)) {
        for (int64_t k = begin; k < end; k++) {
            const int64_t index = work->reverse ? end - 1 - (k - begin) : k;
            const int64_t d = index / work->pairs, p = index % work->pairs;
            const int64_t u_end = 2 * p + 2 < work->blocks ? 2 * p + 2 : work->blocks;
            if (work->project) work->project(&work->project_args[d], 2 * p, u_end);
            work->step(&work->step_args[d], 2 * p, u_end);
        }
        return;
    }
    for (int64_t index = begin; index < end;) {
        const int64_t d = index / work->pairs, p = index % work->pairs;
        const int64_t stop = end < (d + 1) * work->pairs ? end : (d + 1) * work->pairs;
        const int64_t u_end = 2 * (p + stop - index) < work->blocks ? 2 * (p + stop - index) : work->blocks;
        if (work->step) work->step(&work->step_args[d], 2 * p, u_end);
        else work->project(&work->project_args[d], 2 * p, u_end);
        index = stop;
    }
}

/* Runs the work over `macs` multiply-adds in as many parts as pay off (fg_parallel_parts). */
static void FN(run_blocks)(const FN(forward_state) *s, FN(block_work) *work, int64_t macs) {
    work->blocks = fg_num_blocks(s->gru->spec.hidden_size);
    work->pairs = (work->blocks + 1) / 2;
    work->parts = fg_parallel_parts(s->pool, macs, work->pairs * work->directions,
                                    work->step ? FG_STEP_TASKS_PER_THREAD : FG_TASKS_PER_THREAD);
    atomic_int owned[FG_MAX_OWNED_RANGES];
    work->owned = NULL;
    if (work->step && work->parts > 1 && work->parts <= FG_MAX_OWNED_RANGES) {
        for (int64_t r = 0; r < work->parts; r++) atomic_init(&owned[r], 0);
        work->owned = owned;
    }
    fg_pool_run(s->pool, work->parts, FN(block_task), work);
}

#ifdef FG_QUANTIZED
/* The input rows of a chunk quantized per row (the table's quantize_i8), split in row ranges. */
typedef struct FN(quantize_work) {
    const REAL *rows;
    int64_t width, count, splits;
    fg_quantize_fn quantize;
    uint8_t *codes;
    float *scales;
} FN(quantize_work);

static void FN(quantize_task)(void *opaque, int64_t part) {
    const FN(quantize_work) *work = (const FN(quantize_work) *)opaque;
    work->quantize(work->rows, work->width, work->width, part * work->count / work->splits,
                   (part + 1) * work->count / work->splits, work->codes, work->scales);
}
#endif

/* The projection arguments of a chunk: direction d (of `dirs` starting at first_dir) projects the rows
 * of times [t_begin[d], t_begin[d] + steps) into gates_x (int8 models: the rows quantized first). */
static void FN(project_args)(const FN(forward_state) *s, const fg_packed_layer *layer, const REAL *input,
                             const int64_t *t_begin, int64_t first_dir, int64_t dirs, int64_t steps,
                             fg_project_args *args) {
    const int64_t B = s->seq->batch, H = s->gru->spec.hidden_size, D = s->gru->spec.num_directions;
    const int64_t G = 3 * H, width = layer->input_size;
    for (int64_t k = 0; k < dirs; k++) {
        const int64_t d = first_dir + k;
        fg_project_args *a = &args[k];
        a->hidden = H;
        a->input_size = width;
        a->rows = steps * B;
        a->input = FN(time_major_rows)(s, input, width, t_begin[k], steps, k);
        a->input_stride = width;
        a->panels_ih = layer->directions[d].panels_ih;
        a->bias_x = (const REAL *)layer->bias_x + d * G;
        a->gates_x = (REAL *)s->buf.gates_x + d * G;
        a->gates_x_stride = D * G;
        a->k_block = s->k_block;
#ifdef FG_QUANTIZED
        /* The int8 kernels read codes (slot k of x_codes, as of x_gather); both directions of a
         * one-chunk sequence read the same rows, quantized once. */
        const int64_t rows = steps * B, padded = fg_i8_padded(width);
        if (k == 1 && t_begin[1] == t_begin[0]) {
            a->input = args[0].input;
            a->input_scale = args[0].input_scale;
        } else {
            uint8_t *codes = s->buf.x_codes + k * s->buf.chunk_steps * B * padded;
            float *scales = s->buf.x_scales + k * s->buf.chunk_steps * B;
            const int64_t splits = fg_parallel_parts(s->pool, rows * width, rows, FG_TASKS_PER_THREAD);
            FN(quantize_work) work = {(const REAL *)a->input, width, rows, splits, s->kernels->quantize_i8,
                                      codes, scales};
            fg_pool_run(s->pool, splits, FN(quantize_task), &work);
            a->input = codes;
            a->input_scale = scales;
        }
        a->input_stride = padded;
#endif
    }
}

/* gates_x for the chunk (FN(project_args)). */
static void FN(project)(const FN(forward_state) *s, const fg_packed_layer *layer, const REAL *input,
                        const int64_t *t_begin, int64_t first_dir, int64_t dirs, int64_t steps) {
    fg_project_args args[2];
    FN(project_args)(s, layer, input, t_begin, first_dir, dirs, steps, args);
    FN(block_work) work = {NULL, NULL, args, s->kernels->FN(project), 0, 0, 0, dirs, 0, NULL};
    FN(run_blocks)(s, &work, dirs * steps * s->seq->batch * 3 * s->gru->spec.hidden_size * layer->input_size);
}

/* Runs a step kernel over all blocks of every direction, split across the pool's threads, the pairs of
 * each range in reverse order when `reverse` (FN(block_work)). */
static void FN(run_step_kernel)(const FN(forward_state) *s, const fg_step_args *args, int64_t dirs,
                                fg_step_fn kernel, int reverse) {
    const int64_t H = s->gru->spec.hidden_size;
    int64_t macs = 0;
    for (int64_t d = 0; d < dirs; d++) macs += args[d].rows * 3 * H * H;
    FN(block_work) work = {args, kernel, NULL, NULL, 0, 0, 0, dirs, reverse, NULL};
    FN(run_blocks)(s, &work, macs);
}

/* The step arguments of time step j of the chunk starting at t0 (`steps` long), both directions, layer
 * l. The state is double buffered by the parity of the step count: step `count` reads state[count % 2]
 * and writes state[(count + 1) % 2]. */
static void FN(step_args)(const FN(forward_state) *s, int64_t l, int64_t t0, int64_t steps, int64_t j, REAL *out,
                          fg_step_args *args) {
    const fg_spec *spec = &s->gru->spec;
    const fg_sequence *seq = s->seq;
    const int64_t T = seq->seq_len, B = seq->batch, H = spec->hidden_size, D = spec->num_directions;
    const int64_t G = 3 * H, out_width = D * H, count = t0 + j;
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    for (int64_t d = 0; d < D; d++) {
        /* Direction 1 walks the chunk mirrored from the end (run_layer). */
        const int64_t t = d ? T - 1 - count : count, local = d ? steps - 1 - j : j;
        const fg_packed_direction *dir = &s->gru->layers[l].directions[d];
        fg_step_args *a = &args[d];
        a->act = s->act;
        a->hidden = H;
        a->rows = s->buf.active ? s->buf.active[t] : B;
        a->perm = s->buf.perm;
        a->h_prev = (REAL *)s->buf.state + ((count % 2) * D + d) * B * H;
        a->h_next = (REAL *)s->buf.state + (((count + 1) % 2) * D + d) * B * H;
        a->panels = dir->panels;
        a->panels_n = dir->panels_n;
        a->bias_hn = dir->bias_hn;
        a->gates_x = (const REAL *)s->buf.gates_x + local * B * D * G + d * G;
        a->gates_x_stride = D * G;
        a->output = out + (seq->batch_first ? t : t * B) * out_width + d * H;
        a->output_stride = seq->batch_first ? T * out_width : out_width;
        a->tape = s->tape_gates ? s->tape_gates + ((l * D + d) * T + t) * B * 4 * H : NULL;
        a->mask = seq->mask ? seq->mask + t * B : NULL;
        a->gates_rz = lbr ? NULL : (REAL *)s->buf.gates_rz + d * B * 2 * H;
        a->reset_h = lbr ? NULL : (REAL *)s->buf.reset_h + d * B * H;
        a->k_block = s->k_block;
#ifdef FG_QUANTIZED
        const int64_t Hp = fg_i8_padded(H);
        a->h_prev_q = s->buf.state_codes + ((count % 2) * D + d) * B * Hp;
        a->h_next_q = s->buf.state_codes + (((count + 1) % 2) * D + d) * B * Hp;
        a->reset_h_q = lbr ? NULL : s->buf.reset_h_codes + d * B * Hp;
        a->state_scale = s->buf.state_scales + d * B;
        a->state_inverse = s->buf.state_scales + (D + d) * B;
#endif
    }
}

/* After a step's kernels (args of FN(step_args)). Finished sequences output zeros. Masked steps carry
 * the state, output zeros, and leave a tape row with r = 0, z = 1, n = 0: the backward formulas then
 * pass the state's gradient through. */
static void FN(step_finish)(const FN(forward_state) *s, const fg_step_args *args) {
    const int64_t B = s->seq->batch, H = s->gru->spec.hidden_size, D = s->gru->spec.num_directions;
    for (int64_t d = 0; d < D; d++) {
        const fg_step_args *a = &args[d];
        for (int64_t i = a->rows; i < B; i++)
            memset((REAL *)a->output + s->buf.perm[i] * a->output_stride, 0, (size_t)H * sizeof(REAL));
        if (!a->mask) continue;
        for (int64_t i = 0; i < B; i++) {
            const int64_t b = s->buf.perm[i];
            if (a->mask[b]) continue;
            memcpy((REAL *)a->h_next + i * H, (const REAL *)a->h_prev + i * H, (size_t)H * sizeof(REAL));
#ifdef FG_QUANTIZED
            memcpy(a->h_next_q + i * fg_i8_padded(H), a->h_prev_q + i * fg_i8_padded(H), (size_t)H);
#endif
            memset((REAL *)a->output + b * a->output_stride, 0, (size_t)H * sizeof(REAL));
            if (a->tape) {
                REAL *row = (REAL *)a->tape + b * 4 * H;
                memset(row, 0, (size_t)(4 * H) * sizeof(REAL));
                for (int64_t u = 0; u < H; u++) row[fg_packed_index(H, 3, 1, u)] = 1;
            }
        }
    }
}

/* Time step j of the chunk starting at t0 (FN(step_args)), after the chunk's projection. */
static void FN(step)(const FN(forward_state) *s, int64_t l, int64_t t0, int64_t steps, int64_t j, REAL *out) {
    const int64_t D = s->gru->spec.num_directions;
    fg_step_args args[2];
    FN(step_args)(s, l, t0, steps, j, out, args);
    /* every other step in reverse block order (FN(block_work)): the panels read last come first */
    const int reverse = (int)((t0 + j) % 2);
    if (s->gru->spec.variant == FG_LINEAR_BEFORE_RESET) {
        FN(run_step_kernel)(s, args, D, s->kernels->FN(step_lbr), reverse);
    } else {
        FN(run_step_kernel)(s, args, D, s->kernels->FN(step_rb1), reverse);
        FN(run_step_kernel)(s, args, D, s->kernels->FN(step_rb2), reverse);
    }
    FN(step_finish)(s, args);
}

/* A layer of a one-step sequence (a stream's call): the projection and the first step kernel of each
 * pair of blocks in one task, one after the other (a block's gate math reads only its own units'
 * gates_x), the pairs in reverse order on odd calls. Projected in a pass of its own, every call read all
 * of W_ih and then all of W_hh; where the two exceed the L2, each call evicted what the next one reads
 * first. Alternating, the panels of both that a call read last, still in the L2, are the first the
 * next call reads. The order of independent blocks changes no bit. */
static void FN(single_step)(const FN(forward_state) *s, int64_t l, const REAL *input, REAL *out) {
    const fg_spec *spec = &s->gru->spec;
    const fg_packed_layer *layer = &s->gru->layers[l];
    const int64_t B = s->seq->batch, H = spec->hidden_size, D = spec->num_directions;
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    const int64_t whole[2] = {0, 0};
    fg_project_args project[2];
    fg_step_args step[2];
    FN(project_args)(s, layer, input, whole, 0, D, 1, project);
    FN(step_args)(s, l, 0, 1, 0, out, step);
    FN(block_work) work = {step, lbr ? s->kernels->FN(step_lbr) : s->kernels->FN(step_rb1), project,
                           s->kernels->FN(project), 0, 0, 0, D, s->odd_call, NULL};
    FN(run_blocks)(s, &work, D * B * 3 * H * (layer->input_size + H));
    if (!lbr) FN(run_step_kernel)(s, step, D, s->kernels->FN(step_rb2), s->odd_call);
    FN(step_finish)(s, step);
}

static void FN(run_layer)(const FN(forward_state) *s, int64_t l, const REAL *input, REAL *out) {
    const fg_spec *spec = &s->gru->spec;
    const fg_sequence *seq = s->seq;
    const int64_t T = seq->seq_len, B = seq->batch, H = spec->hidden_size, D = spec->num_directions;
    const int64_t chunk = s->buf.chunk_steps;
    const fg_packed_layer *layer = &s->gru->layers[l];
    const int64_t *perm = s->buf.perm;
    const REAL *h0 = (const REAL *)seq->h0;
    REAL *h_n = (REAL *)seq->h_n;

    /* The state lives in perm order so the active rows are always a prefix. Both buffers start at
     * h0: a sequence that joins the reverse direction late reads whichever one its first step reads. */
    for (int64_t parity = 0; parity < 2; parity++)
        for (int64_t d = 0; d < D; d++) {
            REAL *state = (REAL *)s->buf.state + (parity * D + d) * B * H;
            for (int64_t i = 0; i < B; i++) {
                if (h0) memcpy(state + i * H, h0 + ((l * D + d) * B + perm[i]) * H, (size_t)H * sizeof(REAL));
                else memset(state + i * H, 0, (size_t)H * sizeof(REAL));
            }
#ifdef FG_QUANTIZED
            /* The codes of h0 (bytes: fg_code_byte), padding columns the code of zero. Row i's scale is
             * m / 127 with m = max(1, max|h0 row|):
             * h' = z h + (1 - z) n with z in [0, 1] and |n| <= 1 never leaves [-m, m], so no state
             * (nor r * h) of this call saturates its code. For |h0| <= 1 (every state a GRU produces
             * from zeros) m = 1: the fixed 1/127 of RNNoise/LPCNet. */
            const int64_t Hp = fg_i8_padded(H);
            uint8_t *codes = s->buf.state_codes + (parity * D + d) * B * Hp;
            float *scale = s->buf.state_scales + d * B, *inverse = s->buf.state_scales + (D + d) * B;
            const int form = s->kernels->int8_codes;
            memset(codes, fg_code_offset(form), (size_t)(B * Hp));
            for (int64_t i = 0; i < B; i++) {
                float largest = 1.0f;
                for (int64_t k = 0; k < H; k++)
                    largest = fabsf(state[i * H + k]) > largest ? fabsf(state[i * H + k]) : largest;
                scale[i] = largest / 127.0f;
                inverse[i] = 127.0f / largest;
                for (int64_t k = 0; k < H; k++) codes[i * Hp + k] = fg_code_byte(state[i * H + k] * inverse[i], form);
            }
#endif
        }
#ifdef FG_QUANTIZED
    if (spec->variant == FG_RESET_BEFORE)
        memset(s->buf.reset_h_codes, fg_code_offset(s->kernels->int8_codes), (size_t)(D * B * fg_i8_padded(H)));
#endif
    if (T == 1) {
        FN(single_step)(s, l, input, out);
    } else {
        for (int64_t t0 = 0; t0 < T; t0 += chunk) {
            const int64_t steps = T - t0 < chunk ? T - t0 : chunk;
            /* Direction 1 walks the chunk mirrored from the end: times [T - t0 - steps, T - t0). */
            const int64_t t_begin[2] = {t0, T - t0 - steps};
            if (steps == T) {
                const int64_t whole[2] = {0, 0}; /* one chunk: both directions read the same rows */
                FN(project)(s, layer, input, whole, 0, D, T);
            } else {
                FN(project)(s, layer, input, t_begin, 0, D, steps);
            }
            for (int64_t j = 0; j < steps; j++) FN(step)(s, l, t0, steps, j, out);
        }
    }
    /* A sequence of length len took len steps in each direction. Its forward state was last written at
     * step len - 1, into state[len % 2]; the reverse direction ends at the last step, in state[T % 2]. */
    for (int64_t d = 0; d < D; d++)
        for (int64_t i = 0; i < B; i++) {
            const int64_t len = d == 0 && seq->lengths ? seq->lengths[perm[i]] : T;
            const REAL *state = (const REAL *)s->buf.state + ((len % 2) * D + d) * B * H;
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

void FN(forward)(const fg_gru *gru, const fg_sequence *seq, void *tape_gates, void *tape_outputs,
                 const forward_buffers *buf, const fg_kernels *kernels, fg_pool *pool, int odd_call) {
    const fg_spec *spec = &gru->spec;
    const int64_t L = spec->num_layers;
    FN(forward_state) s;
    s.gru = gru;
    s.seq = seq;
    s.kernels = kernels;
    s.pool = pool;
    s.act = fg_activation_of(spec);
    s.buf = *buf;
    s.tape_gates = (REAL *)tape_gates;
    s.tape_outputs = (REAL *)tape_outputs;
    s.k_block = fg_cpu_info_get()->k_block;
    s.odd_call = odd_call;

    /* Layers alternate between the caller's output and one intermediate buffer, arranged so that the
     * last layer lands in the output. */
    const REAL *input = (const REAL *)seq->x;
    for (int64_t l = 0; l < L; l++) {
        REAL *out = (L - 1 - l) % 2 == 0 ? (REAL *)seq->output : (REAL *)buf->intermediate;
        FN(run_layer)(&s, l, input, out);
        input = out;
    }
}

#undef REAL
#undef SFX
#undef FG_QUANTIZED
