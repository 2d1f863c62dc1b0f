/* model_int8.c: int8 models (internal.h, "int8 panels"): quantizing a float32 model, and an int8 model's
 * codes and scales out and back in, exactly (fg_gru_quantize, fg_gru_get_int8_weights,
 * fg_gru_create_int8). A weight row (gate, unit) of W_ih or W_hh is one column of an int8 panel block:
 * fg_panel_set names the panel set, fg_unit_block the block and fg_panel_column the column. */
#include "templates.h"

#include <math.h>
#include <stdlib.h>

/* The int8 panel column of weight row (gate, unit) of W_ih (recurrent = 0) or W_hh (1): its block, the
 * block's column count and the column. */
typedef struct int8_column {
    char *block;
    int columns, column;
} int8_column;

static int8_column column_of(const fg_gru *gru, const fg_packed_direction *dir, int64_t inputs, int recurrent,
                             int gate, int64_t unit) {
    int8_column at;
    int set_gate;
    char *panels = (char *)fg_panel_set(dir, recurrent, gru->spec.variant == FG_LINEAR_BEFORE_RESET, gate,
                                        &at.columns, &set_gate);
    at.block = panels + fg_unit_block(unit) * fg_i8_block_bytes(at.columns, inputs);
    at.column = fg_panel_column(set_gate, unit);
    return at;
}

/* q[k][c] of a block: four consecutive k of one column are adjacent (internal.h). */
static inline int8_t *code_at(const int8_column *at, int64_t k) {
    return (int8_t *)(at->block + 8 * at->columns) + (k / 4) * 4 * at->columns + 4 * at->column + k % 4;
}

/* Writes one row's codes (count of them; the block's zero padding past count stays), its scale and the
 * column sum the VNNI and narrow kernels need, and marks `gru` wide where a code is beyond the narrow
 * kernels' range. Every int8 model's codes pass through here (fg_gru_quantize_bits, fg_gru_create_int8). */
static void set_column(fg_gru *gru, const int8_column *at, const int8_t *codes, int64_t count, float scale) {
    int32_t sum = 0;
    for (int64_t k = 0; k < count; k++) {
        *code_at(at, k) = codes[k];
        sum += codes[k];
        if (codes[k] > FG_I8_NARROW || codes[k] < -FG_I8_NARROW) gru->int8_wide = 1;
    }
    ((int32_t *)at->block)[at->column] = sum;
    ((float *)(at->block + 4 * at->columns))[at->column] = scale;
}

/* The codes of one float32 weight row (element k at row[k * stride]) into `codes`, and its scale:
 * symmetric, per row, scale = max|row| / top, q = round-half-even(w / scale) clamped to [-top, top],
 * top = 127 (8-bit codes) or 63 (7-bit); an all-zero row gets scale 0 and q = 0. nearbyintf rounds half
 * to even in the default rounding mode. */
static float quantize_row(const float *row, int64_t stride, int64_t count, float top, int8_t *codes) {
    float largest = 0;
    for (int64_t k = 0; k < count; k++) largest = fabsf(row[k * stride]) > largest ? fabsf(row[k * stride]) : largest;
    const float scale = largest / top;
    for (int64_t k = 0; k < count; k++) {
        float v = scale > 0 ? nearbyintf(row[k * stride] / scale) : 0.0f;
        v = v < -top ? -top : v > top ? top : v;
        codes[k] = (int8_t)v;
    }
    return scale;
}

/* int8 models reuse the float32 layout rules: a spec the float model would take, float32, and layer inputs
 * and hidden sizes within FG_INT8_MAX_K (the int32 sums could overflow beyond). */
static fg_status check_int8_spec(const fg_spec *spec) {
    if (spec->dtype != FG_FLOAT32) return FG_ERR_UNSUPPORTED;
    if (spec->input_size > FG_INT8_MAX_K || spec->num_directions * spec->hidden_size > FG_INT8_MAX_K)
        return FG_ERR_UNSUPPORTED;
    return FG_OK;
}

static int all_finite_row(const float *row, int64_t stride, int64_t count) {
    for (int64_t k = 0; k < count; k++)
        if (!isfinite(row[k * stride])) return 0;
    return 1;
}

fg_status fg_gru_quantize(const fg_gru *gru, fg_weight_format format, fg_gru **out) {
    return fg_gru_quantize_bits(gru, format, 8, out);
}

fg_status fg_gru_quantize_bits(const fg_gru *gru, fg_weight_format format, int weight_bits, fg_gru **out) {
    if (!gru || !out) return FG_ERR_NULL_POINTER;
    *out = NULL;
    const fg_spec *spec = &gru->spec;
    if (weight_bits != 7 && weight_bits != 8) return FG_ERR_INVALID_SPEC;
    const float top = weight_bits == 8 ? 127.0f : 63.0f;
    if (format != FG_WEIGHTS_INT8 || gru->weight_format != FG_WEIGHTS_NATIVE) return FG_ERR_UNSUPPORTED;
    fg_status status = check_int8_spec(spec);
    if (status != FG_OK) return status;
    const int64_t hidden = spec->hidden_size, dirs = spec->num_directions, gates = 3 * hidden;
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    /* Every weight row of the float model, read from its panels: element k of row (gate, unit) at
     * fg_panel_index(K, C, gate, unit, k), i.e. C elements apart. */
    for (int64_t k = 0; k < spec->num_layers; k++)
        for (int64_t d = 0; d < dirs; d++)
            for (int recurrent = 0; recurrent < 2; recurrent++) {
                const int64_t inputs = recurrent ? hidden : gru->layers[k].input_size;
                for (int gate = 0; gate < 3; gate++) {
                    int columns, set_gate;
                    const float *panels = (const float *)fg_panel_set(&gru->layers[k].directions[d], recurrent,
                                                                      lbr, gate, &columns, &set_gate);
                    for (int64_t unit = 0; unit < hidden; unit++)
                        if (!all_finite_row(panels + fg_panel_index(inputs, columns, set_gate, unit, 0), columns,
                                            inputs))
                            return FG_ERR_INVALID_SPEC;
                }
            }

    const int64_t widest = spec->input_size > dirs * hidden ? spec->input_size : dirs * hidden;
    int8_t *codes = (int8_t *)malloc((size_t)(widest > hidden ? widest : hidden));
    fg_gru *quantized;
    status = codes ? fg_gru_allocate(spec, FG_WEIGHTS_INT8, &quantized) : FG_ERR_OUT_OF_MEMORY;
    if (status != FG_OK) {
        free(codes);
        return status;
    }
    for (int64_t k = 0; k < spec->num_layers; k++) {
        const fg_packed_layer *src = &gru->layers[k];
        fg_packed_layer *dst = &quantized->layers[k];
        for (int64_t d = 0; d < dirs; d++) {
            for (int recurrent = 0; recurrent < 2; recurrent++) {
                const int64_t inputs = recurrent ? hidden : src->input_size;
                for (int gate = 0; gate < 3; gate++) {
                    int columns, set_gate;
                    const float *panels = (const float *)fg_panel_set(&src->directions[d], recurrent, lbr, gate,
                                                                      &columns, &set_gate);
                    for (int64_t unit = 0; unit < hidden; unit++) {
                        const float scale = quantize_row(panels + fg_panel_index(inputs, columns, set_gate, unit, 0),
                                                         columns, inputs, top, codes);
                        const int8_column at = column_of(quantized, &dst->directions[d], inputs, recurrent, gate, unit);
                        set_column(quantized, &at, codes, inputs, scale);
                    }
                }
            }
            /* the float32 biases as they are: folded, b_hn, and as given */
            const fg_packed_direction *from = &src->directions[d];
            fg_packed_direction *to = &dst->directions[d];
            memcpy((float *)dst->bias_x + d * gates, (const float *)src->bias_x + d * gates,
                   (size_t)gates * sizeof(float));
            memcpy(to->bias_hn, from->bias_hn, (size_t)hidden * sizeof(float));
            memcpy(to->bias_ih, from->bias_ih, (size_t)gates * sizeof(float));
            memcpy(to->bias_hh, from->bias_hh, (size_t)gates * sizeof(float));
        }
    }
    free(codes);
    *out = quantized;
    return FG_OK;
}

fg_weight_format fg_gru_weight_format(const fg_gru *gru) { return gru ? gru->weight_format : FG_WEIGHTS_NATIVE; }

int fg_gru_int8_narrow(const fg_gru *gru) {
    return gru && gru->weight_format == FG_WEIGHTS_INT8 && !gru->int8_wide;
}

static int weights_given(const fg_int8_layer_weights *w) {
    return w->weight_ih && w->weight_ih_scale && w->weight_hh && w->weight_hh_scale;
}

fg_status fg_gru_get_int8_weights(const fg_gru *gru, const fg_int8_layer_weights *weights) {
    if (!gru || !weights) return FG_ERR_NULL_POINTER;
    if (gru->weight_format != FG_WEIGHTS_INT8) return FG_ERR_UNSUPPORTED; /* fg_gru_get_weights */
    const fg_spec *spec = &gru->spec;
    const int64_t hidden = spec->hidden_size, dirs = spec->num_directions, gates = 3 * hidden;
    for (int64_t i = 0; i < spec->num_layers * dirs; i++)
        if (!weights_given(&weights[i])) return FG_ERR_NULL_POINTER;
    for (int64_t k = 0; k < spec->num_layers; k++)
        for (int64_t d = 0; d < dirs; d++) {
            const fg_int8_layer_weights *w = &weights[k * dirs + d];
            const fg_packed_direction *dir = &gru->layers[k].directions[d];
            for (int recurrent = 0; recurrent < 2; recurrent++) {
                const int64_t inputs = recurrent ? hidden : gru->layers[k].input_size;
                int8_t *codes = recurrent ? w->weight_hh : w->weight_ih;
                float *scales = recurrent ? w->weight_hh_scale : w->weight_ih_scale;
                for (int gate = 0; gate < 3; gate++)
                    for (int64_t unit = 0; unit < hidden; unit++) {
                        const int8_column at = column_of(gru, dir, inputs, recurrent, gate, unit);
                        int8_t *row = codes + (gate * hidden + unit) * inputs;
                        for (int64_t i = 0; i < inputs; i++) row[i] = *code_at(&at, i);
                        scales[gate * hidden + unit] = ((const float *)(at.block + 4 * at.columns))[at.column];
                    }
            }
            if (w->bias_ih) memcpy(w->bias_ih, dir->bias_ih, (size_t)gates * sizeof(float));
            if (w->bias_hh) memcpy(w->bias_hh, dir->bias_hh, (size_t)gates * sizeof(float));
        }
    return FG_OK;
}

/* Codes in [-127, 127] (the kernels' sums rely on it: -128 would break the VNNI zero-point trick) and
 * scales finite and >= 0. */
static int int8_weights_valid(const fg_int8_layer_weights *w, int64_t hidden, int64_t inputs) {
    const int64_t gates = 3 * hidden;
    for (int64_t i = 0; i < gates * inputs; i++)
        if (w->weight_ih[i] < -127) return 0;
    for (int64_t i = 0; i < gates * hidden; i++)
        if (w->weight_hh[i] < -127) return 0;
    for (int64_t i = 0; i < gates; i++)
        if (!(isfinite(w->weight_ih_scale[i]) && w->weight_ih_scale[i] >= 0 && isfinite(w->weight_hh_scale[i]) &&
              w->weight_hh_scale[i] >= 0))
            return 0;
    return 1;
}

fg_status fg_gru_create_int8(const fg_spec *spec, const fg_int8_layer_weights *weights, fg_gru **out) {
    if (!spec || !weights || !out) return FG_ERR_NULL_POINTER;
    *out = NULL;
    fg_status status = fg_check_spec(spec);
    if (status != FG_OK) return status;
    status = check_int8_spec(spec);
    if (status != FG_OK) return status;
    const int64_t hidden = spec->hidden_size, dirs = spec->num_directions;
    for (int64_t i = 0; i < spec->num_layers * dirs; i++)
        if (!weights_given(&weights[i])) return FG_ERR_NULL_POINTER;
    for (int64_t k = 0; k < spec->num_layers; k++)
        for (int64_t d = 0; d < dirs; d++)
            if (!int8_weights_valid(&weights[k * dirs + d], hidden, k == 0 ? spec->input_size : dirs * hidden))
                return FG_ERR_INVALID_WEIGHTS;
    fg_gru *gru;
    status = fg_gru_allocate(spec, FG_WEIGHTS_INT8, &gru);
    if (status != FG_OK) return status;
    for (int64_t k = 0; k < spec->num_layers; k++)
        for (int64_t d = 0; d < dirs; d++) {
            const fg_int8_layer_weights *w = &weights[k * dirs + d];
            fg_packed_layer *layer = &gru->layers[k];
            for (int recurrent = 0; recurrent < 2; recurrent++) {
                const int64_t inputs = recurrent ? hidden : layer->input_size;
                const int8_t *codes = recurrent ? w->weight_hh : w->weight_ih;
                const float *scales = recurrent ? w->weight_hh_scale : w->weight_ih_scale;
                for (int gate = 0; gate < 3; gate++)
                    for (int64_t unit = 0; unit < hidden; unit++) {
                        const int8_column at = column_of(gru, &layer->directions[d], inputs, recurrent, gate, unit);
                        set_column(gru, &at, codes + (gate * hidden + unit) * inputs, inputs,
                                   scales[gate * hidden + unit]);
                    }
            }
            pack_biases_f32(spec, w->bias_ih, w->bias_hh, (int)d, layer);
        }
    *out = gru;
    return FG_OK;
}
