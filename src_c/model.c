/* model.c: validating a spec and packing the caller's weights into the core's layout (internal.h). */
#include "templates.h"

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

/* pack_layer_f32 */
#define REAL float
#define SFX f32
#include "pack_impl.h"

/* pack_layer_f64 */
#define REAL double
#define SFX f64
#include "pack_impl.h"

/* ---------------------------------------------------------------- int8 */

static fg_status layout_model(fg_gru *gru, fg_layout *layout);

static fg_status layout_model_int8(fg_gru *gru, fg_layout *layout) {
    const fg_spec *spec = &gru->spec;
    const int64_t hidden = spec->hidden_size, dirs = spec->num_directions, layers = spec->num_layers;
    const int64_t blocks = fg_num_blocks(hidden);
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    fg_packed_layer *table = (fg_packed_layer *)fg_layout_take(layout, layers, sizeof(fg_packed_layer));
    if (layout->base) gru->layers = table;
    for (int64_t k = 0; k < layers; k++) {
        fg_packed_layer scratch, *layer = layout->base ? &gru->layers[k] : &scratch;
        layer->input_size = k == 0 ? spec->input_size : dirs * hidden;
        layer->weight_ih = NULL;
        layer->bias_x = fg_layout_take(layout, dirs * 3 * hidden, sizeof(float));
        for (int64_t d = 0; d < dirs; d++) {
            fg_packed_direction *dir = &layer->directions[d];
            dir->panels_ih = fg_layout_take(layout, fg_mul(blocks, fg_i8_block_bytes(24, layer->input_size)), 1);
            dir->weight_hh = NULL;
            dir->panels = fg_layout_take(layout, fg_mul(blocks, fg_i8_block_bytes(lbr ? 24 : 16, hidden)), 1);
            dir->panels_n = fg_layout_take(layout, lbr ? 0 : fg_mul(blocks, fg_i8_block_bytes(8, hidden)), 1);
            dir->bias_hn = fg_layout_take(layout, hidden, sizeof(float));
        }
    }
    return layout->overflow ? FG_ERR_SIZE_OVERFLOW : FG_OK;
}

/* Column c of int8 panel block `block` (C columns, K inputs) from one float32 weight row: symmetric, per
 * row, scale = max|row| / 127, q = round-half-even(w / scale) clamped to [-127, 127] (an all-zero row
 * gets scale 0 and q = 0). nearbyintf rounds half to even in the default rounding mode. */
static void quantize_column(const float *row, int64_t count, char *block, int columns, int c) {
    int32_t *column_sum = (int32_t *)block;
    float *column_scale = (float *)(block + 4 * columns);
    int8_t *q = (int8_t *)(block + 8 * columns);
    float largest = 0;
    for (int64_t k = 0; k < count; k++) largest = fabsf(row[k]) > largest ? fabsf(row[k]) : largest;
    const float scale = largest / 127.0f;
    int32_t sum = 0;
    for (int64_t k = 0; k < count; k++) {
        float v = scale > 0 ? nearbyintf(row[k] / scale) : 0.0f;
        v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
        q[(k / 4) * 4 * columns + 4 * c + k % 4] = (int8_t)v;
        sum += (int32_t)v;
    }
    column_sum[c] = sum;
    column_scale[c] = scale;
}

static int all_finite(const float *values, int64_t count) {
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(values[i])) return 0;
    return 1;
}

/* Fills layer k, direction d of the int8 model `q` from the float32 model `f` (same spec). The float
 * model's row-major weights are in packed row order (pack_layer_*): row (gate, unit) is found there
 * with fg_packed_index, as pack_layer_* put it. */
static void quantize_direction(const fg_gru *f, fg_gru *q, int64_t k, int64_t d) {
    const fg_spec *spec = &f->spec;
    const int64_t hidden = spec->hidden_size, gates = 3 * hidden, blocks = fg_num_blocks(hidden);
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    const fg_packed_layer *src = &f->layers[k];
    fg_packed_layer *dst = &q->layers[k];
    const int64_t in = src->input_size;
    const float *w_ih = (const float *)src->weight_ih + d * gates * in;
    const float *w_hh = (const float *)src->directions[d].weight_hh;
    const int64_t ih_bytes = fg_i8_block_bytes(24, in);
    const int64_t hh_bytes = fg_i8_block_bytes(lbr ? 24 : 16, hidden), n_bytes = fg_i8_block_bytes(8, hidden);
    for (int64_t unit = 0; unit < hidden; unit++) {
        const int64_t block = unit / FG_BLOCK, w = unit % FG_BLOCK;
        for (int gate = 0; gate < 3; gate++) {
            const int c = gate * FG_BLOCK + (int)w;
            quantize_column(w_ih + fg_packed_index(hidden, 3, gate, unit) * in, in,
                            (char *)dst->directions[d].panels_ih + block * ih_bytes, 24, c);
            if (lbr)
                quantize_column(w_hh + fg_packed_index(hidden, 3, gate, unit) * hidden, hidden,
                                (char *)dst->directions[d].panels + block * hh_bytes, 24, c);
            else if (gate < 2)
                quantize_column(w_hh + fg_packed_index(hidden, 2, gate, unit) * hidden, hidden,
                                (char *)dst->directions[d].panels + block * hh_bytes, 16, c);
            else
                quantize_column(w_hh + (2 * hidden + unit) * hidden, hidden,
                                (char *)dst->directions[d].panels_n + block * n_bytes, 8, (int)w);
        }
    }
    (void)blocks;
    memcpy((float *)dst->bias_x + d * gates, (const float *)src->bias_x + d * gates, (size_t)gates * sizeof(float));
    memcpy(dst->directions[d].bias_hn, src->directions[d].bias_hn, (size_t)hidden * sizeof(float));
}

fg_status fg_gru_quantize(const fg_gru *gru, fg_weight_format format, fg_gru **out) {
    if (!gru || !out) return FG_ERR_NULL_POINTER;
    *out = NULL;
    const fg_spec *spec = &gru->spec;
    if (format != FG_WEIGHTS_INT8 || gru->weight_format != FG_WEIGHTS_NATIVE || spec->dtype != FG_FLOAT32)
        return FG_ERR_UNSUPPORTED;
    const int64_t hidden = spec->hidden_size, dirs = spec->num_directions;
    if (spec->input_size > FG_INT8_MAX_K || dirs * hidden > FG_INT8_MAX_K) return FG_ERR_UNSUPPORTED;
    for (int64_t k = 0; k < spec->num_layers; k++) {
        const fg_packed_layer *layer = &gru->layers[k];
        if (!all_finite((const float *)layer->weight_ih, fg_mul(dirs * 3 * hidden, layer->input_size)))
            return FG_ERR_INVALID_SPEC;
        for (int64_t d = 0; d < dirs; d++)
            if (!all_finite((const float *)layer->directions[d].weight_hh, 3 * hidden * hidden))
                return FG_ERR_INVALID_SPEC;
    }

    fg_gru *quantized = (fg_gru *)calloc(1, sizeof(fg_gru));
    if (!quantized) return FG_ERR_OUT_OF_MEMORY;
    quantized->spec = *spec;
    quantized->weight_format = FG_WEIGHTS_INT8;
    fg_layout layout = {NULL, 0, 0};
    fg_status status = layout_model(quantized, &layout);
    if (status == FG_OK && posix_memalign(&quantized->memory, FG_ALIGN, layout.used) != 0)
        status = FG_ERR_OUT_OF_MEMORY;
    if (status != FG_OK) {
        free(quantized);
        return status;
    }
    memset(quantized->memory, 0, layout.used);
    quantized->packed_bytes = layout.used;
    layout = (fg_layout){(char *)quantized->memory, 0, 0};
    layout_model(quantized, &layout);
    for (int64_t k = 0; k < spec->num_layers; k++)
        for (int64_t d = 0; d < dirs; d++) quantize_direction(gru, quantized, k, d);
    *out = quantized;
    return FG_OK;
}

fg_weight_format fg_gru_weight_format(const fg_gru *gru) { return gru ? gru->weight_format : FG_WEIGHTS_NATIVE; }

/* Assigns every packed array of the model (counting only, while layout->base is NULL). An int8 model
 * has no row-major weights and int8 panel blocks (internal.h, "int8 panels"). */
static fg_status layout_model(fg_gru *gru, fg_layout *layout) {
    const fg_spec *spec = &gru->spec;
    const int64_t hidden = spec->hidden_size, dirs = spec->num_directions, layers = spec->num_layers;
    const size_t elem = fg_dtype_size(spec->dtype);
    if (gru->weight_format == FG_WEIGHTS_INT8) return layout_model_int8(gru, layout);
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
