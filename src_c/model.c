/* model.c: validating a spec and packing the caller's weights into the core's layout (internal.h). */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

static fg_status check_spec(const fg_spec *spec) {
    if (spec->input_size < 1 || spec->hidden_size < 1 || spec->num_layers < 1) return FG_ERR_INVALID_SIZE;
    if (spec->num_directions != 1 && spec->num_directions != 2) return FG_ERR_INVALID_SIZE;
    if (spec->dtype != FG_FLOAT32 && spec->dtype != FG_FLOAT64) return FG_ERR_INVALID_SPEC;
    if (spec->variant != FG_LINEAR_BEFORE_RESET && spec->variant != FG_RESET_BEFORE) return FG_ERR_INVALID_SPEC;
    if (spec->gate_activation != FG_SIGMOID && spec->gate_activation != FG_HARD_SIGMOID) return FG_ERR_INVALID_SPEC;
    if (spec->gate_activation == FG_HARD_SIGMOID && !(isfinite(spec->gate_alpha) && isfinite(spec->gate_beta)))
        return FG_ERR_INVALID_SPEC;
    if (!(spec->clip >= 0) || !isfinite(spec->clip)) return FG_ERR_INVALID_SPEC;
    /* Every array the model or a call touches is indexed with int64: 3H * max(I, D*H) must fit, with
     * room for the batch and time factors that fg_*_size checks per call. H is bounded first so that
     * the products below cannot overflow. */
    if (spec->hidden_size > INT64_MAX / 8) return FG_ERR_SIZE_OVERFLOW;
    int64_t widest = spec->input_size > 2 * spec->hidden_size ? spec->input_size : 2 * spec->hidden_size;
    if (fg_mul(fg_mul(3 * spec->num_directions, spec->hidden_size), widest) < 0) return FG_ERR_SIZE_OVERFLOW;
    return FG_OK;
}

/* Source value of weight row (gate, unit), column col; the caller's row-major (3H, cols) array. */
#define SRC(base, cols, gate, unit, col) ((base)[((gate) * hidden + (unit)) * (cols) + (col)])

#define FG_PACK_FUNCTIONS(REAL, SFX)                                                                   \
    static void pack_layer_##SFX(const fg_spec *spec, const fg_layer_weights *w, int direction,       \
                                 fg_packed_layer *layer) {                                            \
        const int64_t hidden = spec->hidden_size, in = layer->input_size, gates = 3 * hidden;          \
        const REAL *w_ih = (const REAL *)w->weight_ih, *w_hh = (const REAL *)w->weight_hh;             \
        const REAL *b_ih = (const REAL *)w->bias_ih, *b_hh = (const REAL *)w->bias_hh;                 \
        REAL *p_ih = (REAL *)layer->weight_ih + direction * gates * in;                                \
        REAL *p_bias = (REAL *)layer->bias_x + direction * gates;                                      \
        REAL *p_hh = (REAL *)layer->directions[direction].weight_hh;                                   \
        REAL *p_hn = (REAL *)layer->directions[direction].bias_hn;                                     \
        const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;                                       \
        for (int gate = 0; gate < 3; gate++) {                                                         \
            for (int64_t unit = 0; unit < hidden; unit++) {                                            \
                int64_t row = fg_packed_index(hidden, 3, gate, unit);                                  \
                memcpy(p_ih + row * in, &SRC(w_ih, in, gate, unit, 0), (size_t)in * sizeof(REAL));     \
                REAL bias_i = b_ih ? b_ih[gate * hidden + unit] : (REAL)0;                             \
                REAL bias_h = b_hh ? b_hh[gate * hidden + unit] : (REAL)0;                             \
                /* b_hn must stay inside r * (W_hn h + b_hn) for linear-before-reset; everything else  \
                 * adds straight to the pre-activation and is folded into the input projection. */     \
                int keep_hn = lbr && gate == 2;                                                        \
                p_bias[row] = keep_hn ? bias_i : bias_i + bias_h;                                      \
                if (keep_hn) p_hn[unit] = bias_h;                                                      \
                int64_t hh_row = lbr ? row                                                             \
                                     : gate < 2 ? fg_packed_index(hidden, 2, gate, unit)               \
                                                : 2 * hidden + unit;                                   \
                memcpy(p_hh + hh_row * hidden, &SRC(w_hh, hidden, gate, unit, 0),                      \
                       (size_t)hidden * sizeof(REAL));                                                 \
            }                                                                                          \
        }                                                                                              \
        REAL *panels_ih = (REAL *)layer->directions[direction].panels_ih;                              \
        for (int64_t unit = 0; unit < hidden; unit++)                                                  \
            for (int64_t k = 0; k < in; k++)                                                           \
                for (int gate = 0; gate < 3; gate++)                                                   \
                    panels_ih[((unit / FG_BLOCK) * in + k) * 3 * FG_BLOCK + gate * FG_BLOCK + unit % FG_BLOCK] = \
                        SRC(w_ih, in, gate, unit, k);                                                  \
        /* Panels: block u, row k, column g*8 + w holds W_hh[gate g, unit 8u + w][k]. */               \
        const int panel_gates = lbr ? 3 : 2;                                                           \
        REAL *panels = (REAL *)layer->directions[direction].panels;                                    \
        REAL *panels_n = (REAL *)layer->directions[direction].panels_n;                                \
        for (int64_t unit = 0; unit < hidden; unit++) {                                                \
            const int64_t block = unit / FG_BLOCK, w = unit % FG_BLOCK;                                \
            for (int64_t k = 0; k < hidden; k++) {                                                     \
                REAL *row = panels + (block * hidden + k) * panel_gates * FG_BLOCK;                    \
                for (int gate = 0; gate < panel_gates; gate++)                                         \
                    row[gate * FG_BLOCK + w] = SRC(w_hh, hidden, gate, unit, k);                       \
                if (!lbr) panels_n[(block * hidden + k) * FG_BLOCK + w] = SRC(w_hh, hidden, 2, unit, k); \
            }                                                                                          \
        }                                                                                              \
    }

FG_PACK_FUNCTIONS(float, f32)
FG_PACK_FUNCTIONS(double, f64)

/* Assigns every packed array of the model (counting only, while layout->base is NULL). */
static fg_status layout_model(fg_gru *gru, fg_layout *layout) {
    const fg_spec *spec = &gru->spec;
    const int64_t hidden = spec->hidden_size, dirs = spec->num_directions, layers = spec->num_layers;
    const size_t elem = fg_dtype_size(spec->dtype);
    fg_packed_layer *table = (fg_packed_layer *)fg_layout_take(layout, layers, sizeof(fg_packed_layer));
    if (layout->base) gru->layers = table;
    for (int64_t k = 0; k < layers; k++) {
        fg_packed_layer scratch, *layer = layout->base ? &gru->layers[k] : &scratch;
        layer->input_size = k == 0 ? spec->input_size : dirs * hidden;
        layer->weight_ih = fg_layout_take(layout, fg_mul(dirs * 3 * hidden, layer->input_size), elem);
        layer->bias_x = fg_layout_take(layout, dirs * 3 * hidden, elem);
        for (int64_t d = 0; d < dirs; d++) {
            const int64_t panel_rows = fg_mul(fg_num_blocks(hidden) * FG_BLOCK, hidden);
            const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
            layer->directions[d].panels_ih =
                fg_layout_take(layout, fg_mul(fg_num_blocks(hidden) * 3 * FG_BLOCK, layer->input_size), elem);
            layer->directions[d].weight_hh = fg_layout_take(layout, fg_mul(3 * hidden, hidden), elem);
            layer->directions[d].panels = fg_layout_take(layout, fg_mul(lbr ? 3 : 2, panel_rows), elem);
            layer->directions[d].panels_n = fg_layout_take(layout, lbr ? 0 : panel_rows, elem);
            layer->directions[d].bias_hn = fg_layout_take(layout, hidden, elem);
        }
    }
    return layout->overflow ? FG_ERR_SIZE_OVERFLOW : FG_OK;
}

fg_status fg_gru_create(const fg_spec *spec, const fg_layer_weights *weights, fg_gru **out) {
    if (!spec || !weights || !out) return FG_ERR_NULL_POINTER;
    *out = NULL;
    fg_status status = check_spec(spec);
    if (status != FG_OK) return status;
    const int64_t dirs = spec->num_directions, layers = spec->num_layers;
    for (int64_t i = 0; i < layers * dirs; i++)
        if (!weights[i].weight_ih || !weights[i].weight_hh) return FG_ERR_NULL_POINTER;

    /* One allocation: the layer table, then every packed array, each cache-line aligned. */
    fg_gru *gru = (fg_gru *)calloc(1, sizeof(fg_gru));
    if (!gru) return FG_ERR_OUT_OF_MEMORY;
    gru->spec = *spec;
    fg_layout layout = {NULL, 0, 0};
    status = layout_model(gru, &layout);
    if (status == FG_OK && posix_memalign(&gru->memory, FG_ALIGN, layout.used) != 0) status = FG_ERR_OUT_OF_MEMORY;
    if (status != FG_OK) {
        free(gru);
        return status;
    }
    memset(gru->memory, 0, layout.used);
    gru->packed_bytes = layout.used;
    layout = (fg_layout){(char *)gru->memory, 0, 0};
    layout_model(gru, &layout);
    for (int64_t k = 0; k < layers; k++)
        for (int64_t d = 0; d < dirs; d++) {
            if (spec->dtype == FG_FLOAT32) pack_layer_f32(spec, &weights[k * dirs + d], (int)d, &gru->layers[k]);
            else pack_layer_f64(spec, &weights[k * dirs + d], (int)d, &gru->layers[k]);
        }
    *out = gru;
    return FG_OK;
}

void fg_gru_destroy(fg_gru *gru) {
    if (!gru) return;
    free(gru->memory);
    free(gru);
}

const fg_spec *fg_gru_spec(const fg_gru *gru) { return gru ? &gru->spec : NULL; }

size_t fg_gru_packed_bytes(const fg_gru *gru) { return gru ? gru->packed_bytes : 0; }
