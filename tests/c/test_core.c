/* test_core.c: the C core tested through its public header alone (fastgru.h), with no Python and no
 * BLAS (fg_reference_blas). tools/sanitize.sh builds it with -fsanitize=address,undefined and runs it
 * with leak detection on; tests/test_c_core.py builds it with the system cc and runs it.
 *
 * What it pins down:
 *   - every fg_status has a description, and every error path of every entry point returns its status
 *     (NULL pointers, bad sizes, bad lengths, lengths with a mask, a short workspace, invalid spec
 *     values, sizes whose byte counts overflow) without touching the caller's outputs;
 *   - fg_forward against a plain double-precision GRU written here (both variants, dtypes, gate
 *     activations, clip, layers, directions, batch-first, lengths, mask, h0, several input chunks);
 *   - fg_step against fg_forward, including an output that aliases the state;
 *   - every kernel table the CPU runs agrees with the generic one; on each table, pools of 1, 2 and 3
 *     threads give bitwise identical results (threads split unit blocks, never a reduction), and so
 *     does a second run; threads sharing one model agree with one thread; the table names and
 *     requirements, and a table the CPU lacks refused;
 *   - the floating-point control word is restored after a call;
 *   - fg_backward, when the core has it, against finite differences;
 *   - int8 models (fg_gru_quantize, 8- and 7-bit fg_gru_quantize_bits): refusals, closeness to the reference, identical bits from every
 *     kernel set and thread count, fg_step equal to fg_forward;
 *   - the weights out again: fg_gru_get_weights returns what fg_gru_create took, bit for bit, and a
 *     float model holds them once (fg_gru_packed_bytes); an int8 model's codes and scales out
 *     (fg_gru_get_int8_weights) and back in (fg_gru_create_int8) give the same bits on every kernel
 *     set; bad codes and scales, NULLs and wrong formats are refused.
 *
 * The last line printed is "N passed, N failed"; the exit status is nonzero on any failure.
 * Build: cc -std=c11 -D_POSIX_C_SOURCE=200809L -Isrc_c tests/c/test_core.c src_c/[a-z]*.c -lm -pthread */
#include "fastgru.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

/* The backward pass may not be built into every core this test meets: weak references are NULL when
 * absent, and the backward tests are then skipped. */
#pragma weak fg_backward
#pragma weak fg_backward_workspace_size

/* ---------------------------------------------------------------- bookkeeping */

static int passed, failed, skipped;
/* With --one-table (the ThreadSanitizer run of tests/test_c_core.py: races do not depend on the table)
 * the per-table loops take the automatic table only. */
static int every_table = 1;
static int table_wanted(int isa) { return fg_isa_supported((fg_isa)isa) && (every_table || isa == (int)fg_isa_detect()); }
static const char *current_test = "";

static void check_at(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "FAIL %s (%s:%d): ", current_test, file, line);
    va_list args;
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
}
#define CHECK(cond, ...) check_at((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_STATUS(call, expected)                                                                  \
    do {                                                                                              \
        fg_status got_ = (call);                                                                      \
        CHECK(got_ == (expected), "%s returned %d (%s), expected %d (%s)", #call, (int)got_,           \
              fg_status_string(got_), (int)(expected), fg_status_string(expected));                  \
    } while (0)

static void skip(const char *why) {
    skipped++;
    printf("skip %s: %s\n", current_test, why);
}

static const fg_status ALL_STATUSES[] = {
    FG_OK, FG_ERR_NULL_POINTER, FG_ERR_INVALID_SIZE, FG_ERR_INVALID_LENGTHS, FG_ERR_INVALID_SPEC,
    FG_ERR_SIZE_OVERFLOW, FG_ERR_OUT_OF_MEMORY, FG_ERR_WORKSPACE_TOO_SMALL, FG_ERR_UNSUPPORTED,
    FG_ERR_THREAD, FG_ERR_NO_BLAS, FG_ERR_INVALID_WEIGHTS,
};
#define NUM_STATUSES (sizeof ALL_STATUSES / sizeof ALL_STATUSES[0])

/* ---------------------------------------------------------------- random numbers and buffers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double uniform(double low, double high) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return low + (high - low) * (double)(rng_state >> 11) / 9007199254740992.0;
}

static size_t dtype_size(fg_dtype dtype) { return dtype == FG_FLOAT64 ? sizeof(double) : sizeof(float); }

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory in the test itself\n");
        exit(2);
    }
    return p;
}

/* A 64-byte aligned block (the workspace contract), at least 64 bytes so that 0 is a valid request. */
static void *aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes < 64 ? 64 : bytes) != 0) {
        fprintf(stderr, "out of memory in the test itself\n");
        exit(2);
    }
    return p;
}

/* n values uniform in [low, high), rounded to `dtype` so that the double reference sees the same numbers. */
static double *random_values(int64_t n, double low, double high, fg_dtype dtype) {
    double *v = (double *)xmalloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        double value = uniform(low, high);
        v[i] = dtype == FG_FLOAT32 ? (double)(float)value : value;
    }
    return v;
}

static void *typed(const double *values, int64_t n, fg_dtype dtype) {
    if (!values) return NULL;
    void *out = xmalloc((size_t)n * dtype_size(dtype));
    for (int64_t i = 0; i < n; i++) {
        if (dtype == FG_FLOAT32) ((float *)out)[i] = (float)values[i];
        else ((double *)out)[i] = values[i];
    }
    return out;
}

static double value_at(const void *array, int64_t i, fg_dtype dtype) {
    return dtype == FG_FLOAT32 ? (double)((const float *)array)[i] : ((const double *)array)[i];
}

static double max_diff(const void *actual, const double *expected, int64_t n, fg_dtype dtype) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(value_at(actual, i, dtype) - expected[i]);
        if (!(d <= worst)) worst = d; /* NaN wins */
    }
    return worst;
}

/* ---------------------------------------------------------------- a model and its reference */

#define MAX_LD 8

typedef struct model_case {
    fg_spec spec;
    int has_bias;
    double *weights[MAX_LD][4];  /* per (layer, direction): w_ih, w_hh, b_ih, b_hh as doubles */
    void *typed_weights[MAX_LD][4];
    fg_layer_weights table[MAX_LD];
    fg_gru *gru;
} model_case;

static fg_spec make_spec(int64_t input, int64_t hidden, int64_t layers, int64_t dirs, fg_dtype dtype,
                         fg_variant variant, int gate_kind, double clip) {
    fg_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.input_size = input;
    spec.hidden_size = hidden;
    spec.num_layers = layers;
    spec.num_directions = dirs;
    spec.dtype = dtype;
    spec.variant = variant;
    spec.gate_activation = gate_kind ? FG_HARD_SIGMOID : FG_SIGMOID;
    spec.gate_alpha = gate_kind == 1 ? 1.0 / 6.0 : gate_kind == 2 ? 0.2 : 0.0;
    spec.gate_beta = gate_kind ? 0.5 : 0.0;
    spec.clip = clip;
    return spec;
}

static int64_t layer_input(const fg_spec *spec, int64_t layer) {
    return layer == 0 ? spec->input_size : spec->num_directions * spec->hidden_size;
}

/* Random weights (scale: uniform in [-scale, scale]) and fg_gru_create; returns its status. */
static fg_status model_init(model_case *m, fg_spec spec, int has_bias, double scale) {
    memset(m, 0, sizeof *m);
    m->spec = spec;
    m->has_bias = has_bias;
    const int64_t H = spec.hidden_size, LD = spec.num_layers * spec.num_directions;
    for (int64_t i = 0; i < LD; i++) {
        const int64_t in = layer_input(&spec, i / spec.num_directions);
        m->weights[i][0] = random_values(3 * H * in, -scale, scale, spec.dtype);
        m->weights[i][1] = random_values(3 * H * H, -scale, scale, spec.dtype);
        if (has_bias) {
            m->weights[i][2] = random_values(3 * H, -scale, scale, spec.dtype);
            m->weights[i][3] = random_values(3 * H, -scale, scale, spec.dtype);
        }
        m->typed_weights[i][0] = typed(m->weights[i][0], 3 * H * in, spec.dtype);
        m->typed_weights[i][1] = typed(m->weights[i][1], 3 * H * H, spec.dtype);
        m->typed_weights[i][2] = typed(m->weights[i][2], 3 * H, spec.dtype);
        m->typed_weights[i][3] = typed(m->weights[i][3], 3 * H, spec.dtype);
        m->table[i] = (fg_layer_weights){m->typed_weights[i][0], m->typed_weights[i][1], m->typed_weights[i][2],
                                         m->typed_weights[i][3]};
    }
    return fg_gru_create(&m->spec, m->table, &m->gru);
}

static void model_free(model_case *m) {
    fg_gru_destroy(m->gru);
    for (int i = 0; i < MAX_LD; i++)
        for (int j = 0; j < 4; j++) {
            free(m->weights[i][j]);
            free(m->typed_weights[i][j]);
        }
    memset(m, 0, sizeof *m);
}

static double ref_gate(const fg_spec *spec, double a) {
    if (spec->clip > 0) a = a < -spec->clip ? -spec->clip : a > spec->clip ? spec->clip : a;
    if (spec->gate_activation == FG_SIGMOID) return 1.0 / (1.0 + exp(-a));
    double v = spec->gate_alpha * a + spec->gate_beta;
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static double ref_tanh(const fg_spec *spec, double a) {
    if (spec->clip > 0) a = a < -spec->clip ? -spec->clip : a > spec->clip ? spec->clip : a;
    return tanh(a);
}

/* One GRU step of one batch row, written out from the formulas of fastgru.h: h is replaced by h'. */
static void ref_cell(const model_case *m, int64_t index, int64_t in, const double *x, double *h) {
    const fg_spec *spec = &m->spec;
    const int64_t H = spec->hidden_size;
    const double *w_ih = m->weights[index][0], *w_hh = m->weights[index][1];
    const double *b_ih = m->weights[index][2], *b_hh = m->weights[index][3];
    double *gx = (double *)xmalloc((size_t)(3 * H) * sizeof(double));
    double *gh = (double *)xmalloc((size_t)(3 * H) * sizeof(double));
    double *r = (double *)xmalloc((size_t)H * sizeof(double));
    double *next = (double *)xmalloc((size_t)H * sizeof(double));
    for (int64_t row = 0; row < 3 * H; row++) {
        double sx = b_ih ? b_ih[row] : 0, sh = b_hh ? b_hh[row] : 0;
        for (int64_t k = 0; k < in; k++) sx += w_ih[row * in + k] * x[k];
        for (int64_t k = 0; k < H; k++) sh += w_hh[row * H + k] * h[k];
        gx[row] = sx;
        gh[row] = sh;
    }
    for (int64_t u = 0; u < H; u++) r[u] = ref_gate(spec, gx[u] + gh[u]);
    for (int64_t u = 0; u < H; u++) {
        double z = ref_gate(spec, gx[H + u] + gh[H + u]), n;
        if (spec->variant == FG_LINEAR_BEFORE_RESET) {
            n = ref_tanh(spec, gx[2 * H + u] + r[u] * gh[2 * H + u]);
        } else {
            double g = b_hh ? b_hh[2 * H + u] : 0;
            for (int64_t k = 0; k < H; k++) g += w_hh[(2 * H + u) * H + k] * r[k] * h[k];
            n = ref_tanh(spec, gx[2 * H + u] + g);
        }
        next[u] = z * h[u] + (1 - z) * n;
    }
    memcpy(h, next, (size_t)H * sizeof(double));
    free(gx);
    free(gh);
    free(r);
    free(next);
}

/* The whole model in double: x in the caller's layout, output likewise; lengths as the mask t < len. */
static void ref_forward(const model_case *m, int64_t T, int64_t B, int batch_first, const double *x,
                        const double *h0, const int64_t *lengths, const uint8_t *mask, double *output,
                        double *h_n) {
    const fg_spec *spec = &m->spec;
    const int64_t H = spec->hidden_size, D = spec->num_directions, L = spec->num_layers, I = spec->input_size;
    const int64_t widest = I > D * H ? I : D * H;
    double *input = (double *)xmalloc((size_t)(T * B * widest) * sizeof(double));
    double *layer_out = (double *)xmalloc((size_t)(T * B * D * H) * sizeof(double));
    double *h = (double *)xmalloc((size_t)H * sizeof(double));
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < I; k++)
                input[(t * B + b) * I + k] = x[(batch_first ? b * T + t : t * B + b) * I + k];
    for (int64_t l = 0; l < L; l++) {
        const int64_t in = layer_input(spec, l);
        memset(layer_out, 0, (size_t)(T * B * D * H) * sizeof(double));
        for (int64_t d = 0; d < D; d++)
            for (int64_t b = 0; b < B; b++) {
                for (int64_t u = 0; u < H; u++) h[u] = h0 ? h0[((l * D + d) * B + b) * H + u] : 0;
                for (int64_t s = 0; s < T; s++) {
                    const int64_t t = d ? T - 1 - s : s;
                    const int valid = lengths ? t < lengths[b] : mask ? mask[t * B + b] != 0 : 1;
                    if (!valid) continue;
                    ref_cell(m, l * D + d, in, input + (t * B + b) * in, h);
                    memcpy(layer_out + (t * B + b) * D * H + d * H, h, (size_t)H * sizeof(double));
                }
                memcpy(h_n + ((l * D + d) * B + b) * H, h, (size_t)H * sizeof(double));
            }
        memcpy(input, layer_out, (size_t)(T * B * D * H) * sizeof(double));
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < B; b++)
            memcpy(output + (batch_first ? b * T + t : t * B + b) * D * H, layer_out + (t * B + b) * D * H,
                   (size_t)(D * H) * sizeof(double));
    free(input);
    free(layer_out);
    free(h);
}

/* ---------------------------------------------------------------- calls */

typedef struct call_data {
    int64_t T, B;
    int batch_first;
    double *x, *h0;           /* doubles (rounded to the dtype); h0 may be NULL */
    int64_t *lengths;
    uint8_t *mask;
    void *x_typed, *h0_typed; /* what the core reads */
    void *output, *h_n;       /* what the core writes */
} call_data;

static void call_init(call_data *c, const model_case *m, int64_t T, int64_t B, int batch_first, int with_h0,
                      int with_lengths, int with_mask) {
    const fg_spec *spec = &m->spec;
    const int64_t H = spec->hidden_size, D = spec->num_directions, L = spec->num_layers;
    memset(c, 0, sizeof *c);
    c->T = T;
    c->B = B;
    c->batch_first = batch_first;
    c->x = random_values(T * B * spec->input_size, -2, 2, spec->dtype);
    c->x_typed = typed(c->x, T * B * spec->input_size, spec->dtype);
    if (with_h0) {
        c->h0 = random_values(L * D * B * H, -1, 1, spec->dtype);
        c->h0_typed = typed(c->h0, L * D * B * H, spec->dtype);
    }
    if (with_lengths) {
        c->lengths = (int64_t *)xmalloc((size_t)B * sizeof(int64_t));
        for (int64_t b = 0; b < B; b++) c->lengths[b] = 1 + (int64_t)uniform(0, (double)T);
        if (B >= 2) { /* both extremes, unsorted */
            c->lengths[0] = 1;
            c->lengths[B - 1] = T;
        }
    }
    if (with_mask) {
        c->mask = (uint8_t *)xmalloc((size_t)(T * B));
        for (int64_t i = 0; i < T * B; i++) c->mask[i] = uniform(0, 1) < 0.6;
        if (B >= 1)
            for (int64_t t = 0; t < T; t++) c->mask[t * B] = 0; /* a row that never runs keeps h0 */
    }
    c->output = xmalloc((size_t)(T * B * D * H) * dtype_size(spec->dtype));
    c->h_n = xmalloc((size_t)(L * D * B * H) * dtype_size(spec->dtype));
}

static void call_free(call_data *c) {
    free(c->x);
    free(c->h0);
    free(c->lengths);
    free(c->mask);
    free(c->x_typed);
    free(c->h0_typed);
    free(c->output);
    free(c->h_n);
    memset(c, 0, sizeof *c);
}

static fg_sequence call_sequence(const call_data *c) {
    fg_sequence seq = {c->T, c->B, c->batch_first, c->x_typed, c->h0_typed, c->lengths, c->mask, c->output, c->h_n};
    return seq;
}

static fg_context context(fg_pool *pool, fg_isa isa) {
    fg_context ctx = {fg_reference_blas(), pool, isa};
    return ctx;
}

/* fg_forward with a workspace of exactly the size fg_forward_workspace_size reports. */
static fg_status run_forward(const model_case *m, const fg_sequence *seq, void *tape, const fg_context *ctx) {
    size_t bytes = 0;
    fg_status status = fg_forward_workspace_size(m->gru, seq->seq_len, seq->batch, &bytes);
    if (status != FG_OK) return status;
    void *workspace = aligned(bytes);
    status = fg_forward(m->gru, seq, tape, workspace, bytes, ctx);
    free(workspace);
    return status;
}

/* Runs the call and compares output and h_n with the double reference. */
static void check_against_reference(const model_case *m, call_data *c, const fg_context *ctx, const char *what) {
    const fg_spec *spec = &m->spec;
    const int64_t H = spec->hidden_size, D = spec->num_directions, L = spec->num_layers;
    const int64_t n_out = c->T * c->B * D * H, n_state = L * D * c->B * H;
    fg_sequence seq = call_sequence(c);
    fg_status status = run_forward(m, &seq, NULL, ctx);
    CHECK(status == FG_OK, "%s: fg_forward returned %s", what, fg_status_string(status));
    if (status != FG_OK) return;
    double *expected_out = (double *)xmalloc((size_t)n_out * sizeof(double));
    double *expected_h_n = (double *)xmalloc((size_t)n_state * sizeof(double));
    ref_forward(m, c->T, c->B, c->batch_first, c->x, c->h0, c->lengths, c->mask, expected_out, expected_h_n);
    const double tolerance = spec->dtype == FG_FLOAT32 ? 2e-5 : 1e-11;
    double diff_out = max_diff(c->output, expected_out, n_out, spec->dtype);
    double diff_h_n = max_diff(c->h_n, expected_h_n, n_state, spec->dtype);
    CHECK(diff_out <= tolerance, "%s: output differs from the reference by %g", what, diff_out);
    CHECK(diff_h_n <= tolerance, "%s: h_n differs from the reference by %g", what, diff_h_n);
    free(expected_out);
    free(expected_h_n);
}

/* ---------------------------------------------------------------- tests */

static void test_status_strings(void) {
    current_test = "status_strings";
    for (size_t i = 0; i < NUM_STATUSES; i++) {
        const char *text = fg_status_string(ALL_STATUSES[i]);
        CHECK(text != NULL && text[0] != '\0', "status %d has no description", (int)ALL_STATUSES[i]);
        for (size_t j = 0; j < i && text; j++)
            CHECK(strcmp(text, fg_status_string(ALL_STATUSES[j])) != 0, "statuses %d and %d share \"%s\"",
                  (int)ALL_STATUSES[i], (int)ALL_STATUSES[j], text);
    }
    CHECK(fg_status_string((fg_status)999) != NULL, "an unknown status has a description");
    CHECK(fg_status_string((fg_status)-1) != NULL, "a negative status has a description");
}

static void test_create_and_destroy_every_kind(void) {
    current_test = "create_and_destroy_every_kind";
    for (int dtype = 0; dtype < 2; dtype++)
        for (int variant = 0; variant < 2; variant++)
            for (int gate = 0; gate < 3; gate++)
                for (int64_t dirs = 1; dirs <= 2; dirs++)
                    for (int64_t layers = 1; layers <= 3; layers += 2)
                        for (int bias = 0; bias < 2; bias++) {
                            model_case m;
                            fg_spec spec = make_spec(3, 11, layers, dirs, (fg_dtype)dtype, (fg_variant)variant, gate,
                                                     gate == 2 ? 1.5 : 0.0);
                            fg_status status = model_init(&m, spec, bias, 0.5);
                            CHECK(status == FG_OK && m.gru, "create dtype=%d variant=%d gate=%d: %s", dtype, variant,
                                  gate, fg_status_string(status));
                            if (m.gru) {
                                const fg_spec *kept = fg_gru_spec(m.gru);
                                CHECK(kept && kept != &m.spec && memcmp(kept, &spec, sizeof spec) == 0,
                                      "fg_gru_spec returns a copy of the spec");
                                CHECK(fg_gru_packed_bytes(m.gru) >= (size_t)(layers * dirs * 6 * 11 * 11) * dtype_size(spec.dtype),
                                      "packed bytes %zu cover the weights", fg_gru_packed_bytes(m.gru));
                            }
                            model_free(&m);
                        }
    fg_gru_destroy(NULL);
    CHECK(fg_gru_spec(NULL) == NULL, "fg_gru_spec(NULL) is NULL");
    CHECK(fg_gru_packed_bytes(NULL) == 0, "fg_gru_packed_bytes(NULL) is 0");
}

/* The weights are copied: changing or freeing the caller's arrays after create changes nothing, and
 * NULL biases are zeros. */
static void test_create_copies_weights_and_null_bias_is_zero(void) {
    current_test = "create_copies_weights_and_null_bias_is_zero";
    for (int dtype = 0; dtype < 2; dtype++)
        for (int variant = 0; variant < 2; variant++) {
            model_case m;
            fg_spec spec = make_spec(4, 10, 2, 2, (fg_dtype)dtype, (fg_variant)variant, 0, 0);
            CHECK_STATUS(model_init(&m, spec, 0, 0.6), FG_OK);
            call_data c;
            call_init(&c, &m, 5, 3, 0, 1, 1, 0);
            /* explicit zero biases give the same model, bit for bit */
            fg_layer_weights table[MAX_LD];
            void *zeros = calloc((size_t)(3 * spec.hidden_size), dtype_size(spec.dtype));
            for (int i = 0; i < 4; i++) table[i] = (fg_layer_weights){m.table[i].weight_ih, m.table[i].weight_hh, zeros, zeros};
            fg_gru *with_zero_bias = NULL;
            CHECK_STATUS(fg_gru_create(&spec, table, &with_zero_bias), FG_OK);
            fg_context ctx = context(NULL, FG_ISA_AUTO);
            check_against_reference(&m, &c, &ctx, "null biases");
            const size_t out_bytes = (size_t)(5 * 3 * 2 * 10) * dtype_size(spec.dtype);
            void *first = xmalloc(out_bytes);
            memcpy(first, c.output, out_bytes);
            /* scribble over the caller's weights: the packed model must not see it */
            for (int i = 0; i < 4; i++) {
                memset(m.typed_weights[i][0], 0x7f, (size_t)(3 * 10 * layer_input(&spec, i / 2)) * dtype_size(spec.dtype));
                memset(m.typed_weights[i][1], 0x7f, (size_t)(3 * 10 * 10) * dtype_size(spec.dtype));
            }
            memset(zeros, 0x7f, (size_t)(3 * spec.hidden_size) * dtype_size(spec.dtype));
            fg_sequence seq = call_sequence(&c);
            CHECK_STATUS(run_forward(&m, &seq, NULL, &ctx), FG_OK);
            CHECK(memcmp(first, c.output, out_bytes) == 0, "the model kept its own copy of the weights");
            model_case other = m;
            other.gru = with_zero_bias;
            memset(c.output, 0, out_bytes);
            CHECK_STATUS(run_forward(&other, &seq, NULL, &ctx), FG_OK);
            /* the zero-bias model was built from the same weights before the scribbling */
            CHECK(memcmp(first, c.output, out_bytes) == 0, "NULL biases and zero biases give identical results");
            fg_gru_destroy(with_zero_bias);
            free(zeros);
            free(first);
            call_free(&c);
            model_free(&m);
        }
}

static void test_create_rejects_bad_arguments(void) {
    current_test = "create_rejects_bad_arguments";
    float w_ih[3 * 4 * 4] = {0}, w_hh[3 * 4 * 4] = {0};
    fg_layer_weights weights[2] = {{w_ih, w_hh, NULL, NULL}, {w_ih, w_hh, NULL, NULL}};
    const fg_spec good = make_spec(4, 4, 1, 1, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0);
    fg_gru *gru = (fg_gru *)&gru; /* must be reset to NULL on failure */
    CHECK_STATUS(fg_gru_create(NULL, weights, &gru), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_gru_create(&good, NULL, &gru), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_gru_create(&good, weights, NULL), FG_ERR_NULL_POINTER);
    fg_layer_weights no_ih[1] = {{NULL, w_hh, NULL, NULL}}, no_hh[1] = {{w_ih, NULL, NULL, NULL}};
    CHECK_STATUS(fg_gru_create(&good, no_ih, &gru), FG_ERR_NULL_POINTER);
    CHECK(gru == NULL, "a failed create sets *out to NULL");
    CHECK_STATUS(fg_gru_create(&good, no_hh, &gru), FG_ERR_NULL_POINTER);

    struct { const char *name; fg_spec spec; fg_status expected; } cases[32];
    int n = 0;
#define BAD(NAME, FIELD, VALUE, EXPECTED)                                                             \
    do {                                                                                              \
        cases[n].name = NAME;                                                                         \
        cases[n].spec = good;                                                                         \
        cases[n].spec.FIELD = VALUE;                                                                  \
        cases[n].expected = EXPECTED;                                                                 \
        n++;                                                                                          \
    } while (0)
    BAD("input_size 0", input_size, 0, FG_ERR_INVALID_SIZE);
    BAD("input_size -1", input_size, -1, FG_ERR_INVALID_SIZE);
    BAD("input_size INT64_MIN", input_size, INT64_MIN, FG_ERR_INVALID_SIZE);
    BAD("hidden_size 0", hidden_size, 0, FG_ERR_INVALID_SIZE);
    BAD("hidden_size -5", hidden_size, -5, FG_ERR_INVALID_SIZE);
    BAD("num_layers 0", num_layers, 0, FG_ERR_INVALID_SIZE);
    BAD("num_layers -1", num_layers, -1, FG_ERR_INVALID_SIZE);
    BAD("num_directions 0", num_directions, 0, FG_ERR_INVALID_SIZE);
    BAD("num_directions 3", num_directions, 3, FG_ERR_INVALID_SIZE);
    BAD("num_directions -1", num_directions, -1, FG_ERR_INVALID_SIZE);
    BAD("dtype 2", dtype, (fg_dtype)2, FG_ERR_INVALID_SPEC);
    BAD("dtype -1", dtype, (fg_dtype)-1, FG_ERR_INVALID_SPEC);
    BAD("variant 2", variant, (fg_variant)2, FG_ERR_INVALID_SPEC);
    BAD("gate_activation 7", gate_activation, (fg_gate_activation)7, FG_ERR_INVALID_SPEC);
    BAD("clip -1", clip, -1.0, FG_ERR_INVALID_SPEC);
    BAD("clip NaN", clip, NAN, FG_ERR_INVALID_SPEC);
    BAD("clip inf", clip, INFINITY, FG_ERR_INVALID_SPEC);
    /* byte counts that overflow: a clear status, never a crash or a huge allocation */
    BAD("hidden_size INT64_MAX/8", hidden_size, INT64_MAX / 8, FG_ERR_SIZE_OVERFLOW);
    BAD("hidden_size INT64_MAX/8+1", hidden_size, INT64_MAX / 8 + 1, FG_ERR_SIZE_OVERFLOW);
    BAD("hidden_size 2^32", hidden_size, (int64_t)1 << 32, FG_ERR_SIZE_OVERFLOW);
    BAD("input_size INT64_MAX", input_size, INT64_MAX, FG_ERR_SIZE_OVERFLOW);
    BAD("input_size INT64_MAX/3", input_size, INT64_MAX / 3, FG_ERR_SIZE_OVERFLOW);
    BAD("input_size 2^62", input_size, (int64_t)1 << 62, FG_ERR_SIZE_OVERFLOW);
#undef BAD
    for (int i = 0; i < n; i++) {
        gru = (fg_gru *)&gru;
        fg_status got = fg_gru_create(&cases[i].spec, weights, &gru);
        CHECK(got == cases[i].expected, "%s: got %s, expected %s", cases[i].name, fg_status_string(got),
              fg_status_string(cases[i].expected));
        CHECK(gru == NULL, "%s: *out is NULL after a failure", cases[i].name);
        if (got == FG_OK) fg_gru_destroy(gru);
    }
    fg_spec hard = good;
    hard.gate_activation = FG_HARD_SIGMOID;
    hard.gate_alpha = NAN;
    hard.gate_beta = 0.5;
    CHECK_STATUS(fg_gru_create(&hard, weights, &gru), FG_ERR_INVALID_SPEC);
    hard.gate_alpha = 0.2;
    hard.gate_beta = INFINITY;
    CHECK_STATUS(fg_gru_create(&hard, weights, &gru), FG_ERR_INVALID_SPEC);
    /* the hard sigmoid's parameters are ignored for the sigmoid */
    fg_spec sigmoid = good;
    sigmoid.gate_alpha = NAN;
    CHECK_STATUS(fg_gru_create(&sigmoid, weights, &gru), FG_OK);
    fg_gru_destroy(gru);
}

static void expect_create_overflow(int64_t input, int64_t hidden) {
    float w[1] = {0};
    fg_layer_weights weights[1] = {{w, w, NULL, NULL}};
    fg_spec spec = make_spec(input, hidden, 1, 1, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0);
    fg_gru *gru = NULL;
    fg_status got = fg_gru_create(&spec, weights, &gru);
    CHECK(got == FG_ERR_SIZE_OVERFLOW, "input_size %lld hidden_size %lld: got %s", (long long)input, (long long)hidden,
          fg_status_string(got));
    if (got == FG_OK) fg_gru_destroy(gru);
}

/* Sizes so large that the arithmetic itself would overflow int64 if done naively: a status, not
 * undefined behaviour (the sanitizer build halts on signed overflow). */
static void test_extreme_sizes_are_an_overflow(void) {
    current_test = "extreme_sizes_are_an_overflow";
    expect_create_overflow(4, INT64_MAX / 4);
    expect_create_overflow(4, INT64_MAX / 2);
    expect_create_overflow(INT64_MAX, INT64_MAX / 8);
}

/* Known bug (src_c/model.c, check_spec): `2 * spec->hidden_size` overflows int64 before the
 * `hidden_size > INT64_MAX / 8` test that would have caught it. */
static void test_hidden_size_past_half_int64_is_an_overflow(void) {
    current_test = "test_hidden_size_past_half_int64_is_an_overflow";
    expect_create_overflow(4, INT64_MAX / 2 + 1);
    expect_create_overflow(4, INT64_MAX);
}

static void test_pool_arguments(void) {
    current_test = "pool_arguments";
    fg_pool *pool = (fg_pool *)&pool;
    CHECK_STATUS(fg_pool_create(0, &pool), FG_ERR_INVALID_SIZE);
    CHECK(pool == NULL, "a failed pool create sets *out to NULL");
    CHECK_STATUS(fg_pool_create(-3, &pool), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_pool_create(1 << 20, &pool), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_pool_create(2, NULL), FG_ERR_NULL_POINTER);
    for (int threads = 1; threads <= 4; threads++) {
        CHECK_STATUS(fg_pool_create(threads, &pool), FG_OK);
        CHECK(fg_pool_num_threads(pool) == threads, "pool of %d reports %d", threads, fg_pool_num_threads(pool));
        fg_pool_destroy(pool);
    }
    CHECK(fg_pool_num_threads(NULL) == 1, "no pool means one thread");
    fg_pool_destroy(NULL);
}

static void test_size_queries(void) {
    current_test = "size_queries";
    model_case uni, bi;
    CHECK_STATUS(model_init(&uni, make_spec(5, 7, 2, 1, FG_FLOAT32, FG_RESET_BEFORE, 0, 0), 1, 0.5), FG_OK);
    CHECK_STATUS(model_init(&bi, make_spec(5, 7, 1, 2, FG_FLOAT64, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    size_t bytes = 12345;
    CHECK_STATUS(fg_forward_workspace_size(NULL, 3, 2, &bytes), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_forward_workspace_size(uni.gru, 3, 2, NULL), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_forward_workspace_size(uni.gru, 0, 2, &bytes), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_forward_workspace_size(uni.gru, -1, 2, &bytes), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_forward_workspace_size(uni.gru, 3, -1, &bytes), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_forward_workspace_size(uni.gru, 3, 0, &bytes), FG_OK);
    CHECK_STATUS(fg_tape_size(NULL, 3, 2, &bytes), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_tape_size(uni.gru, 3, 2, NULL), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_tape_size(uni.gru, 0, 2, &bytes), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_tape_size(uni.gru, 3, -2, &bytes), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_tape_size(bi.gru, 3, 2, &bytes), FG_OK);
    /* tape: per layer, direction, step and row 4H gate values, plus each layer's output */
    CHECK(bytes >= (size_t)(1 * 2 * 3 * 2 * 5 * 7) * sizeof(double), "tape of %zu bytes holds gates and outputs", bytes);
    CHECK_STATUS(fg_step_workspace_size(NULL, 2, &bytes), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_step_workspace_size(uni.gru, 2, NULL), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_step_workspace_size(uni.gru, -1, &bytes), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_step_workspace_size(uni.gru, 2, &bytes), FG_OK);
    CHECK_STATUS(fg_step_workspace_size(bi.gru, 2, &bytes), FG_ERR_UNSUPPORTED);
    /* The workspace grows with min(T, chunk) and B, not with T, for one layer (fastgru.h). */
    size_t short_seq, long_seq, longer_seq;
    CHECK_STATUS(fg_forward_workspace_size(bi.gru, 1000, 64, &short_seq), FG_OK);
    CHECK_STATUS(fg_forward_workspace_size(bi.gru, 100000, 64, &long_seq), FG_OK);
    CHECK_STATUS(fg_forward_workspace_size(bi.gru, 10000000, 64, &longer_seq), FG_OK);
    /* only the lengths bookkeeping (8 bytes per step) may grow with T */
    CHECK(long_seq - short_seq <= (size_t)(100000 - 1000) * 8 + 64 && longer_seq - long_seq <= (size_t)(10000000 - 100000) * 8 + 64,
          "one-layer workspace grows with T beyond the per-step bookkeeping: %zu, %zu, %zu", short_seq, long_seq, longer_seq);
    model_free(&uni);
    model_free(&bi);
}

/* A model of 2 MiB or more is advised for transparent huge pages where the kernel has them (Linux with
 * /sys/kernel/mm/transparent_hugepage), a smaller one never (a huge page would hold one small model);
 * either way its weights come back bit for bit. */
static void test_large_models_are_advised_for_huge_pages(void) {
    current_test = "large_models_are_advised_for_huge_pages";
    CHECK(fg_gru_huge_pages(NULL) == 0, "NULL is no model");
    model_case small, large;
    CHECK_STATUS(model_init(&small, make_spec(5, 7, 1, 1, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    CHECK_STATUS(model_init(&large, make_spec(300, 320, 1, 1, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    CHECK(fg_gru_packed_bytes(small.gru) < ((size_t)2 << 20) && fg_gru_packed_bytes(large.gru) >= ((size_t)2 << 20),
          "model sizes %zu and %zu straddle 2 MiB", fg_gru_packed_bytes(small.gru), fg_gru_packed_bytes(large.gru));
    CHECK(fg_gru_huge_pages(small.gru) == 0, "a model of %zu bytes advised for huge pages", fg_gru_packed_bytes(small.gru));
#if defined(__linux__)
    const int kernel_has_them = access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
#else
    const int kernel_has_them = 0;
#endif
    CHECK(fg_gru_huge_pages(large.gru) == kernel_has_them, "a model of %zu bytes: huge pages %d, kernel has them %d",
          fg_gru_packed_bytes(large.gru), fg_gru_huge_pages(large.gru), kernel_has_them);
    const int64_t gates = 3 * 320;
    float *w_ih = (float *)malloc(sizeof(float) * gates * 300), *w_hh = (float *)malloc(sizeof(float) * gates * 320);
    float *b_ih = (float *)malloc(sizeof(float) * gates), *b_hh = (float *)malloc(sizeof(float) * gates);
    fg_layer_weights out = {w_ih, w_hh, b_ih, b_hh};
    CHECK_STATUS(fg_gru_get_weights(large.gru, &out), FG_OK);
    CHECK(memcmp(w_ih, large.typed_weights[0][0], sizeof(float) * gates * 300) == 0 &&
              memcmp(w_hh, large.typed_weights[0][1], sizeof(float) * gates * 320) == 0,
          "the large model's weights come back as they were given");
    free(w_ih), free(w_hh), free(b_ih), free(b_hh);
    model_free(&small);
    model_free(&large);
}

/* Byte counts for absurd T or B: FG_ERR_SIZE_OVERFLOW from the size queries and from the calls, never
 * a wrapped-around small number (that would make a short workspace look big enough). */
static void expect_call_overflow(const int64_t (*big)[2], size_t count);

static void test_huge_call_sizes_are_an_overflow(void) {
    current_test = "huge_call_sizes_are_an_overflow";
    const int64_t big[][2] = {
        {INT64_MAX / 8, 1}, {1, INT64_MAX / 64}, {(int64_t)1 << 40, (int64_t)1 << 30}, {INT64_MAX - 1, 1},
        {(int64_t)1 << 62, (int64_t)1 << 40},
    };
    expect_call_overflow(big, sizeof big / sizeof big[0]);
}

/* Known bug (src_c/forward.c, layout_forward): `seq_len + 1` and `2 * D * batch`, `D * batch` are
 * computed unchecked, so T = INT64_MAX or B near INT64_MAX is signed overflow (undefined) before
 * fg_mul reports it. */
static void test_call_sizes_near_int64_max_are_an_overflow(void) {
    current_test = "test_call_sizes_near_int64_max_are_an_overflow";
    const int64_t big[][2] = {{INT64_MAX, 1}, {1, INT64_MAX}, {1, INT64_MAX / 2}, {INT64_MAX, INT64_MAX}};
    expect_call_overflow(big, sizeof big / sizeof big[0]);
    model_case m;
    CHECK_STATUS(model_init(&m, make_spec(3, 4, 1, 1, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    float dummy[64];
    void *workspace = aligned(64);
    fg_context ctx = context(NULL, FG_ISA_AUTO);
    CHECK_STATUS(fg_step(m.gru, INT64_MAX, dummy, dummy, dummy, workspace, 64, &ctx), FG_ERR_SIZE_OVERFLOW);
    size_t bytes;
    CHECK_STATUS(fg_step_workspace_size(m.gru, INT64_MAX, &bytes), FG_ERR_SIZE_OVERFLOW);
    free(workspace);
    model_free(&m);
}

static void expect_call_overflow(const int64_t (*big)[2], size_t count) {
    model_case m;
    CHECK_STATUS(model_init(&m, make_spec(5, 7, 2, 2, FG_FLOAT32, FG_RESET_BEFORE, 0, 0), 1, 0.5), FG_OK);
    for (size_t i = 0; i < count; i++) {
        size_t bytes = 0;
        fg_status got = fg_forward_workspace_size(m.gru, big[i][0], big[i][1], &bytes);
        CHECK(got == FG_ERR_SIZE_OVERFLOW, "workspace for T=%lld B=%lld: %s (%zu bytes)", (long long)big[i][0],
              (long long)big[i][1], fg_status_string(got), bytes);
        got = fg_tape_size(m.gru, big[i][0], big[i][1], &bytes);
        CHECK(got == FG_ERR_SIZE_OVERFLOW, "tape for T=%lld B=%lld: %s (%zu bytes)", (long long)big[i][0],
              (long long)big[i][1], fg_status_string(got), bytes);
        /* the call itself, handed a tiny workspace and dummy (never read) buffers */
        float dummy[64];
        void *workspace = aligned(64);
        fg_sequence seq = {big[i][0], big[i][1], 0, dummy, NULL, NULL, NULL, dummy, dummy};
        fg_context ctx = context(NULL, FG_ISA_AUTO);
        got = fg_forward(m.gru, &seq, NULL, workspace, 64, &ctx);
        CHECK(got == FG_ERR_SIZE_OVERFLOW, "fg_forward for T=%lld B=%lld: %s", (long long)big[i][0],
              (long long)big[i][1], fg_status_string(got));
        free(workspace);
    }
    model_free(&m);
}

static void test_forward_rejects_bad_arguments(void) {
    current_test = "forward_rejects_bad_arguments";
    for (int dtype = 0; dtype < 2; dtype++) {
        model_case m;
        CHECK_STATUS(model_init(&m, make_spec(3, 5, 2, 2, (fg_dtype)dtype, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
        const int64_t T = 4, B = 3;
        call_data c;
        call_init(&c, &m, T, B, 0, 1, 1, 0);
        const size_t out_bytes = (size_t)(T * B * 10) * dtype_size(m.spec.dtype);
        const size_t h_n_bytes = (size_t)(4 * B * 5) * dtype_size(m.spec.dtype);
        size_t bytes;
        CHECK_STATUS(fg_forward_workspace_size(m.gru, T, B, &bytes), FG_OK);
        void *workspace = aligned(bytes);
        fg_context ctx = context(NULL, FG_ISA_AUTO);
        fg_sequence good = call_sequence(&c);
        fg_sequence seq;
        /* outputs hold a sentinel that a failed call must leave alone */
        memset(c.output, 0x5a, out_bytes);
        memset(c.h_n, 0x5a, h_n_bytes);

        CHECK_STATUS(fg_forward(NULL, &good, NULL, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
        CHECK_STATUS(fg_forward(m.gru, NULL, NULL, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
        CHECK_STATUS(fg_forward(m.gru, &good, NULL, workspace, bytes, NULL), FG_ERR_NULL_POINTER);
        CHECK_STATUS(fg_forward(m.gru, &good, NULL, NULL, bytes, &ctx), FG_ERR_NULL_POINTER);
        fg_context bad_isa = {fg_reference_blas(), NULL, (fg_isa)FG_ISA_COUNT};
        CHECK_STATUS(fg_forward(m.gru, &good, NULL, workspace, bytes, &bad_isa), FG_ERR_INVALID_SPEC);
        bad_isa.isa = (fg_isa)-1;
        CHECK_STATUS(fg_forward(m.gru, &good, NULL, workspace, bytes, &bad_isa), FG_ERR_INVALID_SPEC);
        for (int isa = FG_ISA_GENERIC; isa < FG_ISA_COUNT; isa++) {
            if (fg_isa_supported((fg_isa)isa)) continue;
            fg_context lacking = context(NULL, (fg_isa)isa);
            CHECK_STATUS(fg_forward(m.gru, &good, NULL, workspace, bytes, &lacking), FG_ERR_UNSUPPORTED);
        }
        CHECK_STATUS(fg_forward(m.gru, &good, NULL, workspace, bytes - 1, &ctx), FG_ERR_WORKSPACE_TOO_SMALL);
        CHECK_STATUS(fg_forward(m.gru, &good, NULL, workspace, 0, &ctx), FG_ERR_WORKSPACE_TOO_SMALL);

        seq = good, seq.seq_len = 0;
        CHECK_STATUS(fg_forward(m.gru, &seq, NULL, workspace, bytes, &ctx), FG_ERR_INVALID_SIZE);
        seq = good, seq.seq_len = -3;
        CHECK_STATUS(fg_forward(m.gru, &seq, NULL, workspace, bytes, &ctx), FG_ERR_INVALID_SIZE);
        seq = good, seq.batch = -1;
        CHECK_STATUS(fg_forward(m.gru, &seq, NULL, workspace, bytes, &ctx), FG_ERR_INVALID_SIZE);
        seq = good, seq.x = NULL;
        CHECK_STATUS(fg_forward(m.gru, &seq, NULL, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
        seq = good, seq.output = NULL;
        CHECK_STATUS(fg_forward(m.gru, &seq, NULL, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
        seq = good, seq.h_n = NULL;
        CHECK_STATUS(fg_forward(m.gru, &seq, NULL, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
        uint8_t mask[4 * 3];
        memset(mask, 1, sizeof mask);
        seq = good, seq.mask = mask;
        CHECK_STATUS(fg_forward(m.gru, &seq, NULL, workspace, bytes, &ctx), FG_ERR_INVALID_LENGTHS);
        const int64_t bad_lengths[][3] = {{0, 2, 3}, {1, -1, 3}, {1, 2, 5}, {INT64_MIN, 1, 1}, {1, 1, INT64_MAX}};
        for (size_t i = 0; i < sizeof bad_lengths / sizeof bad_lengths[0]; i++) {
            seq = good, seq.lengths = bad_lengths[i];
            fg_status got = fg_forward(m.gru, &seq, NULL, workspace, bytes, &ctx);
            CHECK(got == FG_ERR_INVALID_LENGTHS, "lengths {%lld, %lld, %lld}: %s", (long long)bad_lengths[i][0],
                  (long long)bad_lengths[i][1], (long long)bad_lengths[i][2], fg_status_string(got));
        }
        int untouched = 1;
        for (size_t i = 0; i < out_bytes; i++) untouched &= ((unsigned char *)c.output)[i] == 0x5a;
        for (size_t i = 0; i < h_n_bytes; i++) untouched &= ((unsigned char *)c.h_n)[i] == 0x5a;
        CHECK(untouched, "failed calls leave output and h_n untouched");

        /* the forward pass needs no BLAS (fastgru.h: blas is for fg_backward only) */
        fg_context no_blas = {NULL, NULL, FG_ISA_AUTO};
        CHECK_STATUS(fg_forward(m.gru, &good, NULL, workspace, bytes, &no_blas), FG_OK);
        fg_blas half = *fg_reference_blas();
        if (m.spec.dtype == FG_FLOAT32) half.sgemm = NULL;
        else half.dgemm = NULL;
        fg_context half_blas = {&half, NULL, FG_ISA_AUTO};
        CHECK_STATUS(fg_forward(m.gru, &good, NULL, workspace, bytes, &half_blas), FG_OK);

        /* B = 0: nothing to do, no pointer is read */
        fg_sequence empty = {T, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
        CHECK_STATUS(fg_forward(m.gru, &empty, NULL, workspace, bytes, &ctx), FG_OK);
        /* and a good call after all this works */
        check_against_reference(&m, &c, &ctx, "good call after failures");
        free(workspace);
        call_free(&c);
        model_free(&m);
    }
}

/* Every structural combination against the double reference, with the generic kernels and the best
 * this CPU has. */
static void test_forward_matches_reference(void) {
    current_test = "forward_matches_reference";
    int index = 0;
    for (int dtype = 0; dtype < 2; dtype++)
        for (int variant = 0; variant < 2; variant++)
            for (int64_t dirs = 1; dirs <= 2; dirs++)
                for (int64_t layers = 1; layers <= 2; layers++)
                    for (int batch_first = 0; batch_first < 2; batch_first++)
                        for (int sequences = 0; sequences < 3; sequences++) /* full, lengths, mask */
                            for (int with_h0 = 0; with_h0 < 2; with_h0++) {
                                const int gate = index % 3;
                                const double clip = index % 4 == 1 ? 0.7 : 0.0;
                                const int64_t hidden = index % 2 ? 9 : 17, batch = 1 + index % 5, steps = 1 + index % 6;
                                index++;
                                model_case m;
                                fg_spec spec = make_spec(1 + index % 4, hidden, layers, dirs, (fg_dtype)dtype,
                                                         (fg_variant)variant, gate, clip);
                                CHECK_STATUS(model_init(&m, spec, index % 5 != 0, 1.2), FG_OK);
                                call_data c;
                                call_init(&c, &m, steps, batch, batch_first, with_h0, sequences == 1, sequences == 2);
                                char what[256];
                                snprintf(what, sizeof what,
                                         "dtype=%d variant=%d D=%lld L=%lld bf=%d seq=%d h0=%d gate=%d clip=%g H=%lld B=%lld T=%lld",
                                         dtype, variant, (long long)dirs, (long long)layers, batch_first, sequences,
                                         with_h0, gate, clip, (long long)hidden, (long long)batch, (long long)steps);
                                fg_context ctx = context(NULL, index % 2 ? FG_ISA_GENERIC : FG_ISA_AUTO);
                                check_against_reference(&m, &c, &ctx, what);
                                call_free(&c);
                                model_free(&m);
                            }
}

/* Shapes where the input projection takes several chunks (fg_cpu_info's chunk_bytes of gates_x per chunk,
 * which follows the L2): B * D * 3H = 64 * 2 * 96 float32 gate values a step, and T two and a half chunks of
 * them, so the call takes three, the last one partial, on any CPU (85 steps a chunk with a 1 MiB L2). */
static void test_forward_over_several_chunks(void) {
    current_test = "forward_over_several_chunks";
    const int64_t per_step = 64 * 2 * 96 * (int64_t)sizeof(float);
    const int64_t chunk = fg_cpu_info_get()->chunk_bytes / per_step;
    const int64_t T = chunk * 5 / 2;
    CHECK(chunk >= 1, "a chunk holds %lld steps", (long long)chunk);
    for (int variant = 0; variant < 2; variant++) {
        model_case m;
        CHECK_STATUS(model_init(&m, make_spec(3, 32, 1, 2, FG_FLOAT32, (fg_variant)variant, 0, 0), 1, 0.3), FG_OK);
        call_data c;
        call_init(&c, &m, T, 64, variant, 1, 1, 0);
        fg_pool *pool = NULL;
        CHECK_STATUS(fg_pool_create(2, &pool), FG_OK);
        fg_context ctx = context(pool, FG_ISA_AUTO);
        check_against_reference(&m, &c, &ctx, variant ? "reset-before, batch-first" : "linear-before-reset");
        fg_pool_destroy(pool);
        call_free(&c);
        model_free(&m);
    }
}

/* Runs a call into fresh output buffers and returns them (caller frees). */
static void run_into(const model_case *m, const call_data *c, const fg_context *ctx, void **output, void **h_n) {
    const fg_spec *spec = &m->spec;
    const size_t out_bytes = (size_t)(c->T * c->B * spec->num_directions * spec->hidden_size) * dtype_size(spec->dtype);
    const size_t h_n_bytes = (size_t)(spec->num_layers * spec->num_directions * c->B * spec->hidden_size) * dtype_size(spec->dtype);
    *output = xmalloc(out_bytes);
    *h_n = xmalloc(h_n_bytes);
    fg_sequence seq = call_sequence(c);
    seq.output = *output;
    seq.h_n = *h_n;
    fg_status status = run_forward(m, &seq, NULL, ctx);
    CHECK(status == FG_OK, "fg_forward: %s", fg_status_string(status));
}

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

static void test_thread_counts_give_identical_bits(void) {
    current_test = "thread_counts_give_identical_bits";
    fg_pool *pools[4] = {NULL, NULL, NULL, NULL}; /* none, 1, 2, 3 threads */
    for (int i = 1; i < 4; i++) CHECK_STATUS(fg_pool_create(i, &pools[i]), FG_OK);
    /* The core splits a step only when each part carries >= 64K multiply-adds (FG_MIN_PARALLEL_MACS):
     * these shapes give 2 or 3 parts. 45 units are six blocks, the last a 5-wide tail, which 2 or 3
     * threads split unevenly; 100 units are 13 blocks, one direction. */
    const int64_t shapes[2][3] = {{45, 24, 2}, {100, 6, 1}}; /* H, B, D */
    for (int isa = FG_ISA_GENERIC; isa < FG_ISA_COUNT; isa++) {
    if (!table_wanted(isa)) continue;
    for (int dtype = 0; dtype < 2; dtype++)
        for (int variant = 0; variant < 2; variant++)
            for (int sequences = 0; sequences < 6; sequences++) {
                model_case m;
                const int64_t H = shapes[sequences / 3][0], B = shapes[sequences / 3][1], D = shapes[sequences / 3][2];
                CHECK_STATUS(model_init(&m, make_spec(6, H, 2, D, (fg_dtype)dtype, (fg_variant)variant, sequences % 3, 0),
                                        1, 0.4), FG_OK);
                call_data c;
                call_init(&c, &m, 23, B, sequences == 1, 1, sequences % 3 == 1, sequences % 3 == 2);
                const size_t out_bytes = (size_t)(23 * B * D * H) * dtype_size(m.spec.dtype);
                const size_t h_n_bytes = (size_t)(2 * D * B * H) * dtype_size(m.spec.dtype);
                void *base_out, *base_h_n;
                fg_context ctx = context(NULL, (fg_isa)isa);
                run_into(&m, &c, &ctx, &base_out, &base_h_n);
                for (int i = 0; i < 4; i++) { /* i = 0: a second run on the calling thread */
                    void *out, *h_n;
                    ctx = context(pools[i], (fg_isa)isa);
                    run_into(&m, &c, &ctx, &out, &h_n);
                    CHECK(same_bits(out, base_out, out_bytes) && same_bits(h_n, base_h_n, h_n_bytes),
                          "%s dtype=%d variant=%d sequences=%d: %d threads differ from one", fg_isa_name((fg_isa)isa),
                          dtype, variant, sequences, i);
                    free(out);
                    free(h_n);
                }
                free(base_out);
                free(base_h_n);
                call_free(&c);
                model_free(&m);
            }
    }
    for (int i = 1; i < 4; i++) fg_pool_destroy(pools[i]);
}

static void test_every_table_agrees_with_generic(void) {
    current_test = "every_table_agrees_with_generic";
    if (!fg_isa_supported(FG_ISA_AVX2)) skip("this CPU has no AVX2+FMA: only the generic table runs");
    for (int isa = FG_ISA_AVX2; isa < FG_ISA_COUNT; isa++) {
        if (!table_wanted(isa)) continue;
        for (int dtype = 0; dtype < 2; dtype++)
            for (int variant = 0; variant < 2; variant++)
                for (int gate = 0; gate < 3; gate++) {
                    /* 37 units: two pairs of full blocks and a 5-wide tail; 6 rows, lengths shrinking */
                    model_case m;
                    CHECK_STATUS(model_init(&m, make_spec(13, 37, 2, 2, (fg_dtype)dtype, (fg_variant)variant, gate,
                                                          gate == 1 ? 0.9 : 0.0), 1, 0.8), FG_OK);
                    call_data c;
                    call_init(&c, &m, 11, 6, gate == 2, 1, 1, 0);
                    void *generic_out, *generic_h_n, *table_out, *table_h_n;
                    fg_context generic = context(NULL, FG_ISA_GENERIC), table = context(NULL, (fg_isa)isa);
                    run_into(&m, &c, &generic, &generic_out, &generic_h_n);
                    run_into(&m, &c, &table, &table_out, &table_h_n);
                    const int64_t n_out = 11 * 6 * 74, n_state = 4 * 6 * 37;
                    double *as_double = (double *)xmalloc((size_t)n_out * sizeof(double));
                    for (int64_t i = 0; i < n_out; i++) as_double[i] = value_at(generic_out, i, m.spec.dtype);
                    const double tolerance = m.spec.dtype == FG_FLOAT32 ? 1e-5 : 1e-12;
                    double diff = max_diff(table_out, as_double, n_out, m.spec.dtype);
                    for (int64_t i = 0; i < n_state; i++) as_double[i] = value_at(generic_h_n, i, m.spec.dtype);
                    double diff_h_n = max_diff(table_h_n, as_double, n_state, m.spec.dtype);
                    CHECK(diff <= tolerance && diff_h_n <= tolerance, "%s dtype=%d variant=%d gate=%d: vs generic %g, %g",
                          fg_isa_name((fg_isa)isa), dtype, variant, gate, diff, diff_h_n);
                    free(as_double);
                    free(generic_out);
                    free(generic_h_n);
                    free(table_out);
                    free(table_h_n);
                    call_free(&c);
                    model_free(&m);
                }
    }
}

/* Every table has a name and its requirements; the automatic choice is a table this CPU runs. */
static void test_table_names_and_requirements(void) {
    current_test = "table_names_and_requirements";
    CHECK(fg_isa_name(FG_ISA_AUTO) && strcmp(fg_isa_name(FG_ISA_AUTO), "auto") == 0, "auto's name");
    CHECK(fg_isa_name((fg_isa)-1) == NULL && fg_isa_name((fg_isa)FG_ISA_COUNT) == NULL, "names of invalid values");
    for (int isa = 0; isa < FG_ISA_COUNT; isa++) {
        CHECK(fg_isa_name((fg_isa)isa) != NULL, "table %d has a name", isa);
        const unsigned needs = fg_isa_requires((fg_isa)isa);
        const unsigned has = fg_cpu_info_get()->features;
        CHECK(fg_isa_supported((fg_isa)isa) == ((has & needs) == needs), "%s: supported iff its features are there",
              fg_isa_name((fg_isa)isa));
        for (unsigned bit = 0; bit < FG_CPU_FEATURE_COUNT; bit++)
            if (needs & (1u << bit)) CHECK(fg_cpu_feature_name(1u << bit) != NULL, "feature %u has a name", bit);
    }
    CHECK(fg_isa_requires(FG_ISA_GENERIC) == 0 && fg_isa_supported(FG_ISA_GENERIC), "generic runs anywhere");
    CHECK(fg_isa_supported((fg_isa)-1) == 0 && fg_isa_supported((fg_isa)FG_ISA_COUNT) == 0, "invalid values");
    CHECK(fg_cpu_feature_name(0) == NULL && fg_cpu_feature_name(3) == NULL, "names of non-features");
    const fg_isa chosen = fg_isa_detect();
    CHECK(chosen != FG_ISA_AUTO && fg_isa_supported(chosen), "the automatic choice (%d) runs here", (int)chosen);
    const fg_cpu_info *cpu = fg_cpu_info_get();
    CHECK(cpu == fg_cpu_info_get() && cpu->isa == chosen, "one fg_cpu_info per process");
    CHECK(cpu->l1d_bytes > 0 && cpu->l2_bytes > 0 && cpu->l3_bytes >= 0, "cache sizes %lld %lld %lld",
          (long long)cpu->l1d_bytes, (long long)cpu->l2_bytes, (long long)cpu->l3_bytes);
    CHECK(cpu->chunk_bytes > 0 && cpu->k_block >= 64 && cpu->k_block % 16 == 0, "blocking %lld %lld",
          (long long)cpu->chunk_bytes, (long long)cpu->k_block);
}

/* fg_step, step by step, against fg_forward over the whole sequence. */
static void test_step_matches_forward(void) {
    current_test = "step_matches_forward";
    for (int dtype = 0; dtype < 2; dtype++)
        for (int variant = 0; variant < 2; variant++)
            for (int alias = 0; alias < 2; alias++) {
                model_case m;
                const int64_t T = 9, B = 5, H = 12, L = 2, I = 4;
                CHECK_STATUS(model_init(&m, make_spec(I, H, L, 1, (fg_dtype)dtype, (fg_variant)variant, 0, 0), 1, 0.7), FG_OK);
                call_data c;
                call_init(&c, &m, T, B, 0, 1, 0, 0);
                fg_context ctx = context(NULL, FG_ISA_AUTO);
                fg_sequence seq = call_sequence(&c);
                CHECK_STATUS(run_forward(&m, &seq, NULL, &ctx), FG_OK);
                const size_t elem = dtype_size(m.spec.dtype);
                size_t bytes;
                CHECK_STATUS(fg_step_workspace_size(m.gru, B, &bytes), FG_OK);
                void *workspace = aligned(bytes);
                char *h = (char *)xmalloc((size_t)(L * B * H) * elem);
                memcpy(h, c.h0_typed, (size_t)(L * B * H) * elem);
                char *separate = (char *)xmalloc((size_t)(B * H) * elem);
                /* the output may alias the last layer of the state */
                char *out = alias ? h + (size_t)((L - 1) * B * H) * elem : separate;
                double worst = 0;
                for (int64_t t = 0; t < T; t++) {
                    const char *x_t = (const char *)c.x_typed + (size_t)(t * B * I) * elem;
                    fg_status status = fg_step(m.gru, B, x_t, h, out, workspace, bytes, &ctx);
                    CHECK(status == FG_OK, "step %lld: %s", (long long)t, fg_status_string(status));
                    for (int64_t i = 0; i < B * H; i++) {
                        double d = fabs(value_at(out, i, m.spec.dtype) - value_at(c.output, t * B * H + i, m.spec.dtype));
                        if (!(d <= worst)) worst = d;
                    }
                }
                for (int64_t i = 0; i < L * B * H; i++) {
                    double d = fabs(value_at(h, i, m.spec.dtype) - value_at(c.h_n, i, m.spec.dtype));
                    if (!(d <= worst)) worst = d;
                }
                const double tolerance = m.spec.dtype == FG_FLOAT32 ? 1e-6 : 1e-13;
                CHECK(worst <= tolerance, "dtype=%d variant=%d alias=%d: steps differ from forward by %g", dtype, variant,
                      alias, worst);
                free(h);
                free(separate);
                free(workspace);
                call_free(&c);
                model_free(&m);
            }
}

static void test_step_rejects_bad_arguments(void) {
    current_test = "step_rejects_bad_arguments";
    model_case uni, bi;
    CHECK_STATUS(model_init(&uni, make_spec(3, 4, 1, 1, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    CHECK_STATUS(model_init(&bi, make_spec(3, 4, 1, 2, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    size_t bytes;
    CHECK_STATUS(fg_step_workspace_size(uni.gru, 2, &bytes), FG_OK);
    void *workspace = aligned(bytes);
    float x[2 * 3] = {0}, h[2 * 4] = {0}, out[2 * 4];
    fg_context ctx = context(NULL, FG_ISA_AUTO);
    CHECK_STATUS(fg_step(NULL, 2, x, h, out, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_step(uni.gru, 2, NULL, h, out, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_step(uni.gru, 2, x, NULL, out, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_step(uni.gru, 2, x, h, NULL, workspace, bytes, &ctx), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_step(uni.gru, 2, x, h, out, NULL, bytes, &ctx), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_step(uni.gru, 2, x, h, out, workspace, bytes, NULL), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_step(uni.gru, 2, x, h, out, workspace, bytes - 1, &ctx), FG_ERR_WORKSPACE_TOO_SMALL);
    CHECK_STATUS(fg_step(uni.gru, -1, x, h, out, workspace, bytes, &ctx), FG_ERR_INVALID_SIZE);
    CHECK_STATUS(fg_step(uni.gru, INT64_MAX / 8, x, h, out, workspace, bytes, &ctx), FG_ERR_SIZE_OVERFLOW);
    CHECK_STATUS(fg_step(bi.gru, 2, x, h, out, workspace, bytes, &ctx), FG_ERR_UNSUPPORTED);
    CHECK_STATUS(fg_step(uni.gru, 0, NULL, h, NULL, workspace, bytes, &ctx), FG_OK);
    for (int i = 0; i < 8; i++) CHECK(h[i] == 0, "failed steps leave the state alone");
    CHECK_STATUS(fg_step(uni.gru, 2, x, h, out, workspace, bytes, &ctx), FG_OK);
    free(workspace);
    model_free(&uni);
    model_free(&bi);
}

#ifdef HAVE_MXCSR
/* The core flushes denormals during a call and must give the caller its floating-point mode back. */
static void test_float_mode_is_restored(void) {
    current_test = "float_mode_is_restored";
    model_case m;
    CHECK_STATUS(model_init(&m, make_spec(3, 9, 1, 2, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    call_data c;
    call_init(&c, &m, 4, 3, 0, 0, 0, 0);
    fg_context ctx = context(NULL, FG_ISA_AUTO);
    const unsigned before = _mm_getcsr();
    fg_sequence seq = call_sequence(&c);
    CHECK_STATUS(run_forward(&m, &seq, NULL, &ctx), FG_OK);
    CHECK((_mm_getcsr() & 0xffc0) == (before & 0xffc0), "MXCSR control bits %#x before, %#x after", before, _mm_getcsr());
    call_free(&c);
    model_free(&m);
}
#endif

/* Several threads share one model, each with its own workspace and pool (fastgru.h's contract). */
typedef struct shared_call {
    const model_case *m;
    const call_data *c;
    int threads;
    void *output, *h_n;
    int ok;
} shared_call;

static void *shared_call_main(void *opaque) {
    shared_call *job = (shared_call *)opaque;
    fg_pool *pool = NULL;
    job->ok = fg_pool_create(job->threads, &pool) == FG_OK;
    const fg_spec *spec = &job->m->spec;
    fg_sequence seq = call_sequence(job->c);
    seq.output = job->output;
    seq.h_n = job->h_n;
    fg_context ctx = context(pool, FG_ISA_AUTO);
    size_t bytes = 0;
    job->ok &= fg_forward_workspace_size(job->m->gru, seq.seq_len, seq.batch, &bytes) == FG_OK;
    void *workspace = aligned(bytes);
    for (int repeat = 0; repeat < 3 && job->ok; repeat++)
        job->ok &= fg_forward(job->m->gru, &seq, NULL, workspace, bytes, &ctx) == FG_OK;
    (void)spec;
    free(workspace);
    fg_pool_destroy(pool);
    return NULL;
}

static void test_threads_share_one_model(void) {
    current_test = "threads_share_one_model";
    model_case m;
    CHECK_STATUS(model_init(&m, make_spec(5, 20, 2, 2, FG_FLOAT32, FG_RESET_BEFORE, 0, 0), 1, 0.5), FG_OK);
    call_data c;
    call_init(&c, &m, 15, 6, 0, 1, 1, 0);
    fg_context ctx = context(NULL, FG_ISA_AUTO);
    void *base_out, *base_h_n;
    run_into(&m, &c, &ctx, &base_out, &base_h_n);
    const size_t out_bytes = (size_t)(15 * 6 * 40) * sizeof(float), h_n_bytes = (size_t)(4 * 6 * 20) * sizeof(float);
    enum { N = 4 };
    pthread_t threads[N];
    shared_call jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (shared_call){&m, &c, 1 + i % 2, xmalloc(out_bytes), xmalloc(h_n_bytes), 0};
        CHECK(pthread_create(&threads[i], NULL, shared_call_main, &jobs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < N; i++) {
        pthread_join(threads[i], NULL);
        CHECK(jobs[i].ok, "thread %d: a call failed", i);
        CHECK(same_bits(jobs[i].output, base_out, out_bytes) && same_bits(jobs[i].h_n, base_h_n, h_n_bytes),
              "thread %d: results differ from the serial call", i);
        free(jobs[i].output);
        free(jobs[i].h_n);
    }
    free(base_out);
    free(base_h_n);
    call_free(&c);
    model_free(&m);
}

/* NaN and Inf inputs run to completion (no trap, no crash) and NaN reaches the output. */
static void check_non_finite_inputs_propagate(fg_dtype dtype) {
    {
        model_case m;
        CHECK_STATUS(model_init(&m, make_spec(3, 9, 1, 1, dtype, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
        call_data c;
        call_init(&c, &m, 4, 3, 0, 0, 0, 0);
        /* batch row 0 gets a NaN at t = 1, row 1 an Inf; row 2 stays finite */
        c.x[(1 * 3 + 0) * 3] = NAN;
        c.x[(1 * 3 + 1) * 3] = INFINITY;
        free(c.x_typed);
        c.x_typed = typed(c.x, 4 * 3 * 3, m.spec.dtype);
        fg_context ctx = context(NULL, FG_ISA_AUTO);
        fg_sequence seq = call_sequence(&c);
        CHECK_STATUS(run_forward(&m, &seq, NULL, &ctx), FG_OK);
        CHECK(isnan(value_at(c.output, 0 * 3 * 9 + 0 * 9, m.spec.dtype)) == 0, "row 0 is finite before the NaN");
        CHECK(isnan(value_at(c.output, 1 * 3 * 9 + 0 * 9, m.spec.dtype)), "row 0 is NaN from the NaN on");
        CHECK(isnan(value_at(c.h_n, 0 * 9, m.spec.dtype)), "row 0's h_n is NaN");
        int finite = 1;
        for (int64_t t = 0; t < 4; t++)
            for (int64_t u = 0; u < 9; u++) finite &= isfinite(value_at(c.output, (t * 3 + 2) * 9 + u, m.spec.dtype)) != 0;
        CHECK(finite, "a finite row stays finite next to non-finite ones");
        call_free(&c);
        model_free(&m);
    }
}

static void test_non_finite_inputs_propagate(void) {
    current_test = "non_finite_inputs_propagate";
    check_non_finite_inputs_propagate(FG_FLOAT64);
}

/* Known bug (src_c/activations.h, fg_expf): for a NaN argument `(int32_t)n` converts NaN to int
 * (undefined; INT_MIN on x86) and `(... + 127) << 23` then shifts a negative value (undefined). The
 * float32 sigmoid and tanh call it, so any NaN reaching a float32 gate is undefined behaviour. */
static void test_float32_nan_input_is_well_defined(void) {
    current_test = "test_float32_nan_input_is_well_defined";
    check_non_finite_inputs_propagate(FG_FLOAT32);
}

/* ---------------------------------------------------------------- backward (when the core has it) */

static double loss_of(const model_case *m, call_data *c, const double *grad_output, const double *grad_h_n) {
    fg_context ctx = context(NULL, FG_ISA_GENERIC);
    fg_sequence seq = call_sequence(c);
    if (run_forward(m, &seq, NULL, &ctx) != FG_OK) return NAN;
    const fg_spec *spec = &m->spec;
    const int64_t n_out = c->T * c->B * spec->num_directions * spec->hidden_size;
    const int64_t n_state = spec->num_layers * spec->num_directions * c->B * spec->hidden_size;
    double loss = 0;
    for (int64_t i = 0; i < n_out; i++) loss += value_at(c->output, i, spec->dtype) * grad_output[i];
    for (int64_t i = 0; i < n_state; i++) loss += value_at(c->h_n, i, spec->dtype) * grad_h_n[i];
    return loss;
}

static void test_backward_matches_finite_differences(void) {
    current_test = "backward_matches_finite_differences";
    if (!fg_backward || !fg_backward_workspace_size) {
        skip("this core has no fg_backward");
        return;
    }
    for (int variant = 0; variant < 2; variant++) {
        model_case m;
        const int64_t T = 5, B = 3, I = 3, H = 6, L = 2, D = 2;
        CHECK_STATUS(model_init(&m, make_spec(I, H, L, D, FG_FLOAT64, (fg_variant)variant, 0, 0), 1, 0.6), FG_OK);
        call_data c;
        call_init(&c, &m, T, B, variant, 1, 1, 0);
        const int64_t n_out = T * B * D * H, n_state = L * D * B * H;
        double *grad_output = random_values(n_out, -1, 1, FG_FLOAT64);
        double *grad_h_n = random_values(n_state, -1, 1, FG_FLOAT64);
        size_t tape_bytes, bytes;
        CHECK_STATUS(fg_tape_size(m.gru, T, B, &tape_bytes), FG_OK);
        void *tape = aligned(tape_bytes);
        fg_context ctx = context(NULL, FG_ISA_GENERIC);
        fg_sequence seq = call_sequence(&c);
        CHECK_STATUS(run_forward(&m, &seq, tape, &ctx), FG_OK);
        CHECK_STATUS(fg_backward_workspace_size(NULL, T, B, &bytes), FG_ERR_NULL_POINTER);
        CHECK_STATUS(fg_backward_workspace_size(m.gru, 0, B, &bytes), FG_ERR_INVALID_SIZE);
        CHECK_STATUS(fg_backward_workspace_size(m.gru, T, B, &bytes), FG_OK);
        void *workspace = aligned(bytes);
        double *grad_x = (double *)xmalloc((size_t)(T * B * I) * sizeof(double));
        double *grad_h0 = (double *)xmalloc((size_t)n_state * sizeof(double));
        fg_layer_weights grad_layers[L * D];
        for (int64_t i = 0; i < L * D; i++) {
            const int64_t in = layer_input(&m.spec, i / D);
            grad_layers[i] = (fg_layer_weights){xmalloc((size_t)(3 * H * in) * sizeof(double)),
                                                xmalloc((size_t)(3 * H * H) * sizeof(double)),
                                                xmalloc((size_t)(3 * H) * sizeof(double)),
                                                xmalloc((size_t)(3 * H) * sizeof(double))};
        }
        fg_gradients grads = {grad_x, grad_h0, grad_layers};
        CHECK_STATUS(fg_backward(NULL, &seq, tape, grad_output, grad_h_n, &grads, workspace, bytes, &ctx),
                     FG_ERR_NULL_POINTER);
        CHECK_STATUS(fg_backward(m.gru, &seq, NULL, grad_output, grad_h_n, &grads, workspace, bytes, &ctx),
                     FG_ERR_NULL_POINTER);
        CHECK_STATUS(fg_backward(m.gru, &seq, tape, grad_output, grad_h_n, NULL, workspace, bytes, &ctx),
                     FG_ERR_NULL_POINTER);
        CHECK_STATUS(fg_backward(m.gru, &seq, tape, grad_output, grad_h_n, &grads, workspace, bytes - 1, &ctx),
                     FG_ERR_WORKSPACE_TOO_SMALL);
        fg_context no_blas = {NULL, NULL, FG_ISA_GENERIC};
        CHECK_STATUS(fg_backward(m.gru, &seq, tape, grad_output, grad_h_n, &grads, workspace, bytes, &no_blas),
                     FG_ERR_NO_BLAS);
        fg_blas half = *fg_reference_blas();
        half.dgemm = NULL;
        fg_context half_blas = {&half, NULL, FG_ISA_GENERIC};
        CHECK_STATUS(fg_backward(m.gru, &seq, tape, grad_output, grad_h_n, &grads, workspace, bytes, &half_blas),
                     FG_ERR_NO_BLAS);
        fg_status status = fg_backward(m.gru, &seq, tape, grad_output, grad_h_n, &grads, workspace, bytes, &ctx);
        CHECK(status == FG_OK, "fg_backward: %s", fg_status_string(status));
        if (status == FG_OK) {
            /* central differences on a few entries of x and of layer 1's reverse weight_hh */
            const double eps = 1e-6;
            double worst = 0;
            for (int k = 0; k < 6; k++) {
                const int64_t i = (k * 7919) % (T * B * I);
                const double saved = c.x[i];
                c.x[i] = saved + eps;
                ((double *)c.x_typed)[i] = c.x[i];
                const double up = loss_of(&m, &c, grad_output, grad_h_n);
                c.x[i] = saved - eps;
                ((double *)c.x_typed)[i] = c.x[i];
                const double down = loss_of(&m, &c, grad_output, grad_h_n);
                c.x[i] = saved;
                ((double *)c.x_typed)[i] = saved;
                const double d = fabs((up - down) / (2 * eps) - grad_x[i]);
                if (!(d <= worst)) worst = d;
            }
            for (int k = 0; k < 6; k++) {
                const int64_t index = L * D - 1, i = (k * 131) % (3 * H * H);
                double *w = m.weights[index][1];
                const double saved = w[i];
                double numeric[2];
                for (int side = 0; side < 2; side++) {
                    w[i] = saved + (side ? -eps : eps);
                    ((double *)m.typed_weights[index][1])[i] = w[i];
                    fg_gru *perturbed = NULL;
                    CHECK_STATUS(fg_gru_create(&m.spec, m.table, &perturbed), FG_OK);
                    model_case other = m;
                    other.gru = perturbed;
                    numeric[side] = loss_of(&other, &c, grad_output, grad_h_n);
                    fg_gru_destroy(perturbed);
                }
                w[i] = saved;
                ((double *)m.typed_weights[index][1])[i] = saved;
                const double d = fabs((numeric[0] - numeric[1]) / (2 * eps) - ((double *)grad_layers[index].weight_hh)[i]);
                if (!(d <= worst)) worst = d;
            }
            CHECK(worst <= 1e-6, "variant=%d: gradients differ from finite differences by %g", variant, worst);
        }
        for (int64_t i = 0; i < L * D; i++) {
            free(grad_layers[i].weight_ih);
            free(grad_layers[i].weight_hh);
            free(grad_layers[i].bias_ih);
            free(grad_layers[i].bias_hh);
        }
        free(grad_x);
        free(grad_h0);
        free(workspace);
        free(tape);
        free(grad_output);
        free(grad_h_n);
        call_free(&c);
        model_free(&m);
    }
}

/* int8 models (fg_gru_quantize, fg_gru_quantize_bits): the refusals, closeness to the double reference, and bitwise equal
 * results from every kernel set, thread count and fg_step. */
static void test_int8_models(void) {
    current_test = "int8_models";
    model_case m;
    fg_gru *q = NULL;
    CHECK_STATUS(model_init(&m, make_spec(5, 7, 1, 1, FG_FLOAT64, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_INT8, &q), FG_ERR_UNSUPPORTED); /* float64 */
    CHECK(q == NULL, "a refused quantization leaves *out NULL");
    model_free(&m);
    CHECK_STATUS(model_init(&m, make_spec(5, 7, 1, 1, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    CHECK_STATUS(fg_gru_quantize(NULL, FG_WEIGHTS_INT8, &q), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_INT8, NULL), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_NATIVE, &q), FG_ERR_UNSUPPORTED);
    CHECK_STATUS(fg_gru_quantize(m.gru, (fg_weight_format)7, &q), FG_ERR_UNSUPPORTED);
    CHECK_STATUS(fg_gru_quantize_bits(m.gru, FG_WEIGHTS_INT8, 6, &q), FG_ERR_INVALID_SPEC);
    CHECK_STATUS(fg_gru_quantize_bits(m.gru, FG_WEIGHTS_INT8, 9, &q), FG_ERR_INVALID_SPEC);
    CHECK(q == NULL, "a refused weight_bits leaves *out NULL");
    CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_INT8, &q), FG_OK);
    CHECK(fg_gru_weight_format(q) == FG_WEIGHTS_INT8 && fg_gru_weight_format(m.gru) == FG_WEIGHTS_NATIVE,
          "weight formats");
    CHECK(!fg_gru_int8_narrow(q) && !fg_gru_int8_narrow(m.gru) && !fg_gru_int8_narrow(NULL),
          "8-bit codes reach 127: not narrow");
    CHECK(fg_gru_packed_bytes(q) < fg_gru_packed_bytes(m.gru), "the int8 model is smaller");
    fg_gru *again = NULL;
    CHECK_STATUS(fg_gru_quantize(q, FG_WEIGHTS_INT8, &again), FG_ERR_UNSUPPORTED);
    size_t bytes = 0;
    CHECK_STATUS(fg_tape_size(q, 3, 2, &bytes), FG_ERR_UNSUPPORTED);
    {
        fg_gru *float_model = m.gru;
        m.gru = q;
        call_data c;
        call_init(&c, &m, 3, 2, 0, 1, 0, 0);
        fg_sequence seq = call_sequence(&c);
        fg_context ctx = context(NULL, FG_ISA_AUTO);
        char tape[64];
        CHECK_STATUS(run_forward(&m, &seq, tape, &ctx), FG_ERR_UNSUPPORTED);
        if (fg_backward) {
            fg_layer_weights grad_layer = {tape, tape, NULL, NULL};
            fg_gradients grads = {NULL, NULL, &grad_layer};
            char workspace[64];
            CHECK_STATUS(fg_backward(q, &seq, tape, NULL, NULL, &grads, workspace, sizeof workspace, &ctx),
                         FG_ERR_UNSUPPORTED);
        }
        call_free(&c);
        m.gru = float_model;
    }
    fg_gru_destroy(q);
    ((float *)m.typed_weights[0][1])[4] = (float)NAN;
    fg_gru *with_nan = NULL;
    fg_gru_destroy(m.gru);
    CHECK_STATUS(fg_gru_create(&m.spec, m.table, &m.gru), FG_OK);
    CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_INT8, &with_nan), FG_ERR_INVALID_SPEC);
    model_free(&m);

    fg_pool *pools[3] = {NULL, NULL, NULL};
    CHECK_STATUS(fg_pool_create(2, &pools[1]), FG_OK);
    CHECK_STATUS(fg_pool_create(3, &pools[2]), FG_OK);
    for (int variant = 0; variant < 2; variant++)
        for (int kind = 0; kind < 3; kind++) {
            /* kind 0: lengths, 1: mask + hard sigmoid + clip, 2: batch-first, big enough to split; 8- and
             * 7-bit weights in turn (the 7-bit ones take the narrow products of the AVX2 tables) */
            const int bits = (variant + kind) % 2 ? 7 : 8;
            const int64_t H = kind == 2 ? 45 : 19, B = kind == 2 ? 24 : 5, D = kind == 1 ? 1 : 2;
            CHECK_STATUS(model_init(&m, make_spec(kind == 2 ? 6 : 33, H, 2, D, FG_FLOAT32, (fg_variant)variant,
                                                  kind == 1 ? 2 : 0, kind == 1 ? 0.9 : 0), 1, 0.4), FG_OK);
            CHECK_STATUS(fg_gru_quantize_bits(m.gru, FG_WEIGHTS_INT8, bits, &q), FG_OK);
            CHECK(fg_gru_int8_narrow(q) == (bits == 7), "variant=%d kind=%d: %d-bit codes narrow", variant, kind,
                  bits);
            fg_gru *float_model = m.gru;
            m.gru = q;
            call_data c;
            call_init(&c, &m, 9, B, kind == 2, 1, kind == 0, kind == 1);
            const int64_t n_out = 9 * B * D * H, n_state = 2 * D * B * H;
            double *expected_out = (double *)xmalloc((size_t)n_out * sizeof(double));
            double *expected_h_n = (double *)xmalloc((size_t)n_state * sizeof(double));
            ref_forward(&m, 9, B, kind == 2, c.x, c.h0, c.lengths, c.mask, expected_out, expected_h_n);
            void *base_out, *base_h_n;
            fg_context ctx = context(NULL, FG_ISA_GENERIC);
            run_into(&m, &c, &ctx, &base_out, &base_h_n);
            const double diff = max_diff(base_out, expected_out, n_out, FG_FLOAT32);
            const double diff_h_n = max_diff(base_h_n, expected_h_n, n_state, FG_FLOAT32);
            CHECK(diff <= 0.06 && diff_h_n <= 0.06, "variant=%d kind=%d bits=%d: int8 vs double reference %g, %g",
                  variant, kind, bits, diff, diff_h_n);
            const size_t out_bytes = (size_t)n_out * sizeof(float), h_n_bytes = (size_t)n_state * sizeof(float);
            for (int isa = FG_ISA_GENERIC; isa < FG_ISA_COUNT; isa++)
                for (int p = 0; p < 3 && table_wanted(isa); p++) {
                    void *out, *h_n;
                    ctx = context(pools[p], (fg_isa)isa);
                    run_into(&m, &c, &ctx, &out, &h_n);
                    CHECK(same_bits(out, base_out, out_bytes) && same_bits(h_n, base_h_n, h_n_bytes),
                          "variant=%d kind=%d: isa %d with %d threads differs from generic", variant, kind, isa,
                          fg_pool_num_threads(pools[p]));
                    free(out);
                    free(h_n);
                }
            free(expected_out);
            free(expected_h_n);
            free(base_out);
            free(base_h_n);
            call_free(&c);
            m.gru = float_model;
            fg_gru_destroy(q);
            model_free(&m);
        }
    for (int p = 1; p < 3; p++) fg_pool_destroy(pools[p]);

    /* fg_step, step by step, equals one fg_forward bit for bit (states in [-1, 1]) */
    for (int variant = 0; variant < 2; variant++) {
        CHECK_STATUS(model_init(&m, make_spec(4, 13, 2, 1, FG_FLOAT32, (fg_variant)variant, 0, 0), 1, 0.5), FG_OK);
        CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_INT8, &q), FG_OK);
        fg_gru *float_model = m.gru;
        m.gru = q;
        call_data c;
        call_init(&c, &m, 6, 3, 0, 1, 0, 0);
        void *out, *h_n;
        fg_context ctx = context(NULL, FG_ISA_AUTO);
        run_into(&m, &c, &ctx, &out, &h_n);
        size_t step_bytes = 0;
        CHECK_STATUS(fg_step_workspace_size(q, 3, &step_bytes), FG_OK);
        void *workspace = aligned(step_bytes);
        float *state = (float *)xmalloc((size_t)(2 * 3 * 13) * sizeof(float));
        memcpy(state, c.h0_typed, (size_t)(2 * 3 * 13) * sizeof(float));
        float step_out[3 * 13];
        int same = 1;
        for (int64_t t = 0; t < 6; t++) {
            CHECK_STATUS(fg_step(q, 3, (const float *)c.x_typed + t * 3 * 4, state, step_out, workspace, step_bytes,
                                 &ctx), FG_OK);
            same &= same_bits(step_out, (const float *)out + t * 3 * 13, sizeof step_out);
        }
        CHECK(same && same_bits(state, h_n, (size_t)(2 * 3 * 13) * sizeof(float)),
              "variant=%d: int8 fg_step differs from fg_forward", variant);
        free(state);
        free(workspace);
        free(out);
        free(h_n);
        call_free(&c);
        m.gru = float_model;
        fg_gru_destroy(q);
        model_free(&m);
    }
}

/* ---------------------------------------------------------------- weights out and back in */

/* fg_gru_get_weights returns every array fg_gru_create took, bit for bit; a NULL bias given comes back
 * as zeros and a NULL bias asked for is skipped; the model holds each weight once. */
static void test_weights_come_back_bit_for_bit(void) {
    current_test = "weights_come_back_bit_for_bit";
    const int64_t sizes[][3] = {{1, 1, 1}, {5, 3, 2}, {7, 13, 3}, {16, 16, 1}, {3, 9, 2}}; /* I, H, L */
    for (int dtype = 0; dtype < 2; dtype++)
        for (int variant = 0; variant < 2; variant++)
            for (int dirs = 1; dirs <= 2; dirs++)
                for (int has_bias = 0; has_bias < 2; has_bias++)
                    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                        model_case m;
                        fg_spec spec = make_spec(sizes[s][0], sizes[s][1], sizes[s][2], dirs, (fg_dtype)dtype,
                                                 (fg_variant)variant, 0, 0);
                        CHECK_STATUS(model_init(&m, spec, has_bias, 1.5), FG_OK);
                        const int64_t H = spec.hidden_size, LD = spec.num_layers * dirs;
                        const size_t elem = dtype_size(spec.dtype);
                        /* a signed zero where a lossy path would lose it */
                        if (dtype == FG_FLOAT32) ((float *)m.typed_weights[0][1])[0] = -0.0f;
                        else ((double *)m.typed_weights[0][1])[0] = -0.0;
                        fg_gru_destroy(m.gru);
                        CHECK_STATUS(fg_gru_create(&m.spec, m.table, &m.gru), FG_OK);
                        fg_layer_weights out[MAX_LD];
                        size_t weight_bytes = 0;
                        for (int64_t i = 0; i < LD; i++) {
                            const int64_t in = layer_input(&spec, i / dirs);
                            out[i].weight_ih = xmalloc((size_t)(3 * H * in) * elem);
                            out[i].weight_hh = xmalloc((size_t)(3 * H * H) * elem);
                            out[i].bias_ih = xmalloc((size_t)(3 * H) * elem);
                            out[i].bias_hh = i == 0 ? NULL : xmalloc((size_t)(3 * H) * elem); /* skipped */
                            weight_bytes += (size_t)(3 * H * (in + H)) * elem;
                        }
                        CHECK_STATUS(fg_gru_get_weights(m.gru, out), FG_OK);
                        int same = 1, zeros = 1;
                        for (int64_t i = 0; i < LD; i++) {
                            const int64_t in = layer_input(&spec, i / dirs);
                            same &= same_bits(out[i].weight_ih, m.typed_weights[i][0], (size_t)(3 * H * in) * elem);
                            same &= same_bits(out[i].weight_hh, m.typed_weights[i][1], (size_t)(3 * H * H) * elem);
                            for (int b = 0; b < 2; b++) {
                                const void *got = b ? out[i].bias_hh : out[i].bias_ih;
                                if (!got) continue;
                                if (has_bias) same &= same_bits(got, m.typed_weights[i][2 + b], (size_t)(3 * H) * elem);
                                else
                                    for (int64_t j = 0; j < 3 * H; j++) zeros &= value_at(got, j, spec.dtype) == 0;
                            }
                        }
                        CHECK(same && zeros, "dtype=%d variant=%d D=%d bias=%d I=%lld H=%lld L=%lld: weights differ",
                              dtype, variant, dirs, has_bias, (long long)sizes[s][0], (long long)H,
                              (long long)sizes[s][2]);
                        /* once: the panels round the units up to blocks of 8; biases are a few rows */
                        const int64_t padded = (H + 7) / 8 * 8;
                        const size_t bound = weight_bytes * (size_t)padded / (size_t)H + (size_t)(LD * 10 * H) * elem +
                                             (size_t)(LD * 7 + spec.num_layers * 3) * 64;
                        CHECK(fg_gru_packed_bytes(m.gru) >= weight_bytes && fg_gru_packed_bytes(m.gru) <= bound,
                              "packed bytes %zu for %zu bytes of weights (bound %zu)", fg_gru_packed_bytes(m.gru),
                              weight_bytes, bound);
                        for (int64_t i = 0; i < LD; i++) {
                            free(out[i].weight_ih);
                            free(out[i].weight_hh);
                            free(out[i].bias_ih);
                            free(out[i].bias_hh);
                        }
                        model_free(&m);
                    }
}

static void test_get_weights_rejects_bad_arguments(void) {
    current_test = "get_weights_rejects_bad_arguments";
    model_case m;
    CHECK_STATUS(model_init(&m, make_spec(3, 4, 1, 1, FG_FLOAT32, FG_LINEAR_BEFORE_RESET, 0, 0), 1, 0.5), FG_OK);
    float w_ih[12 * 3], w_hh[12 * 4];
    memset(w_ih, 0x5a, sizeof w_ih);
    fg_layer_weights out = {w_ih, w_hh, NULL, NULL};
    CHECK_STATUS(fg_gru_get_weights(NULL, &out), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_gru_get_weights(m.gru, NULL), FG_ERR_NULL_POINTER);
    fg_layer_weights no_hh = {w_ih, NULL, NULL, NULL};
    CHECK_STATUS(fg_gru_get_weights(m.gru, &no_hh), FG_ERR_NULL_POINTER);
    CHECK(((unsigned char *)w_ih)[0] == 0x5a, "a refused call writes nothing");
    fg_gru *q = NULL;
    CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_INT8, &q), FG_OK);
    CHECK_STATUS(fg_gru_get_weights(q, &out), FG_ERR_UNSUPPORTED);
    int8_t codes_ih[12 * 3], codes_hh[12 * 4];
    float scale_ih[12], scale_hh[12];
    fg_int8_layer_weights int8_out = {codes_ih, scale_ih, codes_hh, scale_hh, NULL, NULL};
    CHECK_STATUS(fg_gru_get_int8_weights(m.gru, &int8_out), FG_ERR_UNSUPPORTED);
    CHECK_STATUS(fg_gru_get_int8_weights(NULL, &int8_out), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_gru_get_int8_weights(q, NULL), FG_ERR_NULL_POINTER);
    for (int missing = 0; missing < 4; missing++) {
        fg_int8_layer_weights partial = int8_out;
        if (missing == 0) partial.weight_ih = NULL;
        if (missing == 1) partial.weight_ih_scale = NULL;
        if (missing == 2) partial.weight_hh = NULL;
        if (missing == 3) partial.weight_hh_scale = NULL;
        CHECK_STATUS(fg_gru_get_int8_weights(q, &partial), FG_ERR_NULL_POINTER);
    }
    CHECK_STATUS(fg_gru_get_int8_weights(q, &int8_out), FG_OK);
    fg_gru_destroy(q);
    model_free(&m);
}

/* One int8 model's arrays, allocated for a spec. */
typedef struct int8_arrays {
    fg_int8_layer_weights table[MAX_LD];
} int8_arrays;

static void int8_arrays_init(int8_arrays *a, const fg_spec *spec, int with_bias) {
    const int64_t H = spec->hidden_size, LD = spec->num_layers * spec->num_directions;
    memset(a, 0, sizeof *a);
    for (int64_t i = 0; i < LD; i++) {
        const int64_t in = layer_input(spec, i / spec->num_directions);
        a->table[i].weight_ih = (int8_t *)xmalloc((size_t)(3 * H * in));
        a->table[i].weight_ih_scale = (float *)xmalloc((size_t)(3 * H) * sizeof(float));
        a->table[i].weight_hh = (int8_t *)xmalloc((size_t)(3 * H * H));
        a->table[i].weight_hh_scale = (float *)xmalloc((size_t)(3 * H) * sizeof(float));
        a->table[i].bias_ih = with_bias ? (float *)xmalloc((size_t)(3 * H) * sizeof(float)) : NULL;
        a->table[i].bias_hh = with_bias ? (float *)xmalloc((size_t)(3 * H) * sizeof(float)) : NULL;
    }
}

static int int8_arrays_equal(const int8_arrays *a, const int8_arrays *b, const fg_spec *spec) {
    const int64_t H = spec->hidden_size, LD = spec->num_layers * spec->num_directions;
    int same = 1;
    for (int64_t i = 0; i < LD; i++) {
        const int64_t in = layer_input(spec, i / spec->num_directions);
        same &= same_bits(a->table[i].weight_ih, b->table[i].weight_ih, (size_t)(3 * H * in));
        same &= same_bits(a->table[i].weight_hh, b->table[i].weight_hh, (size_t)(3 * H * H));
        same &= same_bits(a->table[i].weight_ih_scale, b->table[i].weight_ih_scale, (size_t)(3 * H) * sizeof(float));
        same &= same_bits(a->table[i].weight_hh_scale, b->table[i].weight_hh_scale, (size_t)(3 * H) * sizeof(float));
        if (a->table[i].bias_ih && b->table[i].bias_ih) {
            same &= same_bits(a->table[i].bias_ih, b->table[i].bias_ih, (size_t)(3 * H) * sizeof(float));
            same &= same_bits(a->table[i].bias_hh, b->table[i].bias_hh, (size_t)(3 * H) * sizeof(float));
        }
    }
    return same;
}

static void int8_arrays_free(int8_arrays *a) {
    for (int i = 0; i < MAX_LD; i++) {
        free(a->table[i].weight_ih);
        free(a->table[i].weight_ih_scale);
        free(a->table[i].weight_hh);
        free(a->table[i].weight_hh_scale);
        free(a->table[i].bias_ih);
        free(a->table[i].bias_hh);
    }
    memset(a, 0, sizeof *a);
}

/* fg_gru_create_int8 of fg_gru_get_int8_weights: the same arrays again and the same output bits on every
 * kernel set; the codes are those of docs/int8.md. */
static void test_int8_weights_round_trip_exactly(void) {
    current_test = "int8_weights_round_trip_exactly";
    const int64_t cases[][5] = {{5, 19, 2, 2, 0}, {33, 8, 1, 1, 1}, {2, 3, 3, 1, 0}, {17, 45, 1, 2, 1}}; /* I H L D variant */
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        model_case m;
        fg_spec spec = make_spec(cases[k][0], cases[k][1], cases[k][2], cases[k][3], FG_FLOAT32, (fg_variant)cases[k][4],
                                 k % 2 ? 2 : 0, k % 2 ? 0.9 : 0);
        CHECK_STATUS(model_init(&m, spec, 1, 0.6), FG_OK);
        fg_gru *q = NULL, *rebuilt = NULL;
        CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_INT8, &q), FG_OK);
        int8_arrays first, second;
        int8_arrays_init(&first, &spec, 1);
        int8_arrays_init(&second, &spec, 1);
        CHECK_STATUS(fg_gru_get_int8_weights(q, first.table), FG_OK);
        /* the documented codes of the first row of W_hh of layer 0 */
        const double *row = m.weights[0][1];
        double largest = 0;
        for (int64_t j = 0; j < spec.hidden_size; j++) largest = fabs(row[j]) > largest ? fabs(row[j]) : largest;
        const float scale = (float)largest / 127.0f;
        int codes_ok = first.table[0].weight_hh_scale[0] == scale;
        for (int64_t j = 0; j < spec.hidden_size; j++)
            codes_ok &= first.table[0].weight_hh[j] == (int8_t)nearbyintf((float)row[j] / scale);
        CHECK(codes_ok, "case %zu: the codes and scale of a row are round(w / (max|w| / 127)) and max|w| / 127", k);
        for (int b = 0; b < 2; b++)
            CHECK(same_bits(b ? first.table[0].bias_hh : first.table[0].bias_ih, m.typed_weights[0][2 + b],
                            (size_t)(3 * spec.hidden_size) * sizeof(float)), "case %zu: biases as given", k);
        CHECK_STATUS(fg_gru_create_int8(&spec, first.table, &rebuilt), FG_OK);
        CHECK_STATUS(fg_gru_get_int8_weights(rebuilt, second.table), FG_OK);
        CHECK(int8_arrays_equal(&first, &second, &spec), "case %zu: the rebuilt model's arrays differ", k);
        CHECK(fg_gru_packed_bytes(rebuilt) == fg_gru_packed_bytes(q) && fg_gru_weight_format(rebuilt) == FG_WEIGHTS_INT8,
              "case %zu: the rebuilt model's size and format", k);
        call_data c;
        fg_gru *float_model = m.gru;
        call_init(&c, &m, 7, 4, 0, 1, 1, 0);
        const size_t out_bytes = (size_t)(7 * 4 * spec.num_directions * spec.hidden_size) * sizeof(float);
        const size_t h_n_bytes = (size_t)(spec.num_layers * spec.num_directions * 4 * spec.hidden_size) * sizeof(float);
        for (int isa = FG_ISA_GENERIC; isa <= (int)fg_isa_detect(); isa++) {
            void *out_q, *h_n_q, *out_r, *h_n_r;
            fg_context ctx = context(NULL, (fg_isa)isa);
            m.gru = q;
            run_into(&m, &c, &ctx, &out_q, &h_n_q);
            m.gru = rebuilt;
            run_into(&m, &c, &ctx, &out_r, &h_n_r);
            CHECK(same_bits(out_q, out_r, out_bytes) && same_bits(h_n_q, h_n_r, h_n_bytes),
                  "case %zu, isa %d: the rebuilt int8 model computes other bits", k, isa);
            free(out_q);
            free(h_n_q);
            free(out_r);
            free(h_n_r);
        }
        call_free(&c);
        /* NULL biases are zeros: the same as zero arrays */
        int8_arrays no_bias;
        int8_arrays_init(&no_bias, &spec, 0);
        for (int64_t i = 0; i < spec.num_layers * spec.num_directions; i++) {
            fg_int8_layer_weights *t = &no_bias.table[i];
            const int64_t in = layer_input(&spec, i / spec.num_directions);
            memcpy(t->weight_ih, first.table[i].weight_ih, (size_t)(3 * spec.hidden_size * in));
            memcpy(t->weight_hh, first.table[i].weight_hh, (size_t)(3 * spec.hidden_size * spec.hidden_size));
            memcpy(t->weight_ih_scale, first.table[i].weight_ih_scale, (size_t)(3 * spec.hidden_size) * sizeof(float));
            memcpy(t->weight_hh_scale, first.table[i].weight_hh_scale, (size_t)(3 * spec.hidden_size) * sizeof(float));
        }
        fg_gru *unbiased = NULL;
        CHECK_STATUS(fg_gru_create_int8(&spec, no_bias.table, &unbiased), FG_OK);
        CHECK_STATUS(fg_gru_get_int8_weights(unbiased, second.table), FG_OK);
        int zeros = 1;
        for (int64_t j = 0; j < 3 * spec.hidden_size; j++)
            zeros &= second.table[0].bias_ih[j] == 0 && second.table[0].bias_hh[j] == 0;
        CHECK(zeros, "case %zu: NULL int8 biases come back as zeros", k);
        fg_gru_destroy(unbiased);
        int8_arrays_free(&no_bias);
        fg_gru_destroy(rebuilt);
        fg_gru_destroy(q);
        m.gru = float_model;
        int8_arrays_free(&first);
        int8_arrays_free(&second);
        model_free(&m);
    }
}

static void test_create_int8_rejects_bad_arguments(void) {
    current_test = "create_int8_rejects_bad_arguments";
    model_case m;
    fg_spec spec = make_spec(3, 5, 1, 1, FG_FLOAT32, FG_RESET_BEFORE, 0, 0);
    CHECK_STATUS(model_init(&m, spec, 1, 0.5), FG_OK);
    fg_gru *q = NULL, *out = NULL;
    CHECK_STATUS(fg_gru_quantize(m.gru, FG_WEIGHTS_INT8, &q), FG_OK);
    int8_arrays good;
    int8_arrays_init(&good, &spec, 1);
    CHECK_STATUS(fg_gru_get_int8_weights(q, good.table), FG_OK);
    CHECK_STATUS(fg_gru_create_int8(NULL, good.table, &out), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_gru_create_int8(&spec, NULL, &out), FG_ERR_NULL_POINTER);
    CHECK_STATUS(fg_gru_create_int8(&spec, good.table, NULL), FG_ERR_NULL_POINTER);
    for (int missing = 0; missing < 4; missing++) {
        fg_int8_layer_weights partial = good.table[0];
        if (missing == 0) partial.weight_ih = NULL;
        if (missing == 1) partial.weight_ih_scale = NULL;
        if (missing == 2) partial.weight_hh = NULL;
        if (missing == 3) partial.weight_hh_scale = NULL;
        CHECK_STATUS(fg_gru_create_int8(&spec, &partial, &out), FG_ERR_NULL_POINTER);
    }
    fg_spec other = spec;
    other.dtype = FG_FLOAT64;
    CHECK_STATUS(fg_gru_create_int8(&other, good.table, &out), FG_ERR_UNSUPPORTED);
    other = spec;
    other.hidden_size = 0;
    CHECK_STATUS(fg_gru_create_int8(&other, good.table, &out), FG_ERR_INVALID_SIZE);
    other = spec;
    other.variant = (fg_variant)5;
    CHECK_STATUS(fg_gru_create_int8(&other, good.table, &out), FG_ERR_INVALID_SPEC);
    other = spec;
    other.input_size = ((int64_t)1 << 17) + 1; /* past FG_INT8_MAX_K: refused before any array is read */
    CHECK_STATUS(fg_gru_create_int8(&other, good.table, &out), FG_ERR_UNSUPPORTED);
    fg_int8_layer_weights bad = good.table[0];
    bad.weight_hh[7] = -128;
    CHECK_STATUS(fg_gru_create_int8(&spec, &bad, &out), FG_ERR_INVALID_WEIGHTS);
    bad.weight_hh[7] = 127;
    bad.weight_ih[3 * 15 - 1] = INT8_MIN;
    CHECK_STATUS(fg_gru_create_int8(&spec, &bad, &out), FG_ERR_INVALID_WEIGHTS);
    bad.weight_ih[3 * 15 - 1] = -127;
    const float bad_scales[] = {-1e-6f, (float)NAN, (float)INFINITY, -(float)INFINITY};
    for (int i = 0; i < 4; i++)
        for (int which = 0; which < 2; which++) {
            float *scales = which ? bad.weight_hh_scale : bad.weight_ih_scale;
            const float kept = scales[14];
            scales[14] = bad_scales[i];
            CHECK_STATUS(fg_gru_create_int8(&spec, &bad, &out), FG_ERR_INVALID_WEIGHTS);
            scales[14] = kept;
        }
    CHECK(out == NULL, "a refused create leaves *out NULL");
    bad.weight_ih_scale[2] = -0.0f; /* a zero scale of either sign is a row of zeros */
    CHECK_STATUS(fg_gru_create_int8(&spec, &bad, &out), FG_OK);
    fg_gru_destroy(out);
    CHECK(strcmp(fg_status_string(FG_ERR_INVALID_WEIGHTS), fg_status_string(FG_ERR_INVALID_SPEC)) != 0,
          "FG_ERR_INVALID_WEIGHTS has its own description");
    int8_arrays_free(&good);
    fg_gru_destroy(q);
    model_free(&m);
}

/* Prints 'N passed, N failed' last; exits non-zero on any failure. */
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--one-table") == 0) every_table = 0;
    test_status_strings();
    test_create_and_destroy_every_kind();
    test_create_copies_weights_and_null_bias_is_zero();
    test_create_rejects_bad_arguments();
    test_extreme_sizes_are_an_overflow();
    test_pool_arguments();
    test_size_queries();
    test_large_models_are_advised_for_huge_pages();
    test_huge_call_sizes_are_an_overflow();
    test_forward_rejects_bad_arguments();
    test_forward_matches_reference();
    test_forward_over_several_chunks();
    test_thread_counts_give_identical_bits();
    test_every_table_agrees_with_generic();
    test_table_names_and_requirements();
    test_step_matches_forward();
    test_step_rejects_bad_arguments();
#ifdef HAVE_MXCSR
    test_float_mode_is_restored();
#endif
    test_threads_share_one_model();
    test_non_finite_inputs_propagate();
    test_backward_matches_finite_differences();
    test_int8_models();
    test_weights_come_back_bit_for_bit();
    test_get_weights_rejects_bad_arguments();
    test_int8_weights_round_trip_exactly();
    test_create_int8_rejects_bad_arguments();
    /* undefined behaviour once, caught by the UBSan build of tests/test_c_core.py */
    test_hidden_size_past_half_int64_is_an_overflow();
    test_call_sizes_near_int64_max_are_an_overflow();
    test_float32_nan_input_is_well_defined();
    printf("%d skipped\n", skipped);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
