/* pack_impl.h: one (layer, direction) of float weights between the caller's layout and the core's
 * (internal.h, "packed gate order" and fg_packed_direction), both ways, as a template over REAL and SFX
 * (templates.h), instantiated by model.c:
 *   pack_layer     the caller's (PyTorch) arrays into the panels and biases of a new model;
 *   unpack_layer   the panels and biases back into PyTorch's layout, bit for bit (fg_gru_get_weights);
 *   weight_rows    one weight matrix as rows in any order, for the backward pass's GEMMs, which build
 *                  their row-major operands from the panels on each call (backward_impl.h).
 * Every element is addressed through fg_panel_index, fg_num_blocks and fg_block_width: this file does
 * not know the block width. */
#if !defined(REAL) || !defined(SFX)
#error "pack_impl.h takes REAL and SFX (templates.h)"
#endif

/* Row (gate, unit) of the caller's row-major (3H, cols) weight array. */
FG_INLINE const REAL *FN(source_row)(const REAL *weights, int64_t hidden, int64_t cols, int gate, int64_t unit) {
    return weights + (gate * hidden + unit) * cols;
}

/* The biases of one direction (NULL: zeros): as given, then folded for the forward (int8 models too,
 * whose biases are float32: model_int8.c). */
void FN(pack_biases)(const fg_spec *spec, const REAL *b_ih, const REAL *b_hh, int direction, fg_packed_layer *layer) {
    const int64_t hidden = spec->hidden_size, gates = 3 * hidden;
    fg_packed_direction *dir = &layer->directions[direction];
    REAL *p_bias = (REAL *)layer->bias_x + direction * gates;
    REAL *p_hn = (REAL *)dir->bias_hn;
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    /* The biases as given (memcpy: every bit, signed zeros and NaN payloads included), then folded. */
    if (b_ih) memcpy(dir->bias_ih, b_ih, (size_t)gates * sizeof(REAL));
    if (b_hh) memcpy(dir->bias_hh, b_hh, (size_t)gates * sizeof(REAL));
    for (int gate = 0; gate < 3; gate++) {
        for (int64_t unit = 0; unit < hidden; unit++) {
            int64_t row = fg_packed_index(hidden, 3, gate, unit);
            REAL bias_i = b_ih ? b_ih[gate * hidden + unit] : (REAL)0;
            REAL bias_h = b_hh ? b_hh[gate * hidden + unit] : (REAL)0;
            /* b_hn must stay inside r * (W_hn h + b_hn) for linear-before-reset; everything else adds
             * straight to the pre-activation and is folded into the input projection. */
            int keep_hn = lbr && gate == 2;
            p_bias[row] = keep_hn ? bias_i : bias_i + bias_h;
            if (keep_hn) p_hn[unit] = bias_h;
        }
    }
}

void FN(pack_layer)(const fg_spec *spec, const fg_layer_weights *w, int direction, fg_packed_layer *layer) {
    const int64_t hidden = spec->hidden_size, in = layer->input_size;
    const REAL *w_ih = (const REAL *)w->weight_ih, *w_hh = (const REAL *)w->weight_hh;
    fg_packed_direction *dir = &layer->directions[direction];
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    FN(pack_biases)(spec, (const REAL *)w->bias_ih, (const REAL *)w->bias_hh, direction, layer);
    /* Panels: element k of row (gate, unit) at fg_panel_index; the source rows are read contiguously. */
    for (int recurrent = 0; recurrent < 2; recurrent++) {
        const int64_t inputs = recurrent ? hidden : in;
        for (int gate = 0; gate < 3; gate++) {
            int columns, set_gate;
            REAL *panels = (REAL *)fg_panel_set(dir, recurrent, lbr, gate, &columns, &set_gate);
            for (int64_t unit = 0; unit < hidden; unit++) {
                const REAL *source = FN(source_row)(recurrent ? w_hh : w_ih, hidden, inputs, gate, unit);
                for (int64_t k = 0; k < inputs; k++)
                    panels[fg_panel_index(inputs, columns, set_gate, unit, k)] = source[k];
            }
        }
    }
}

#ifndef FG_PACK_ROW_ORDERS
#define FG_PACK_ROW_ORDERS
/* How weight_rows orders the rows of the matrix it writes. */
enum {
    FG_ROWS_NATURAL, /* row gate * H + unit: PyTorch's (3H, K) */
    FG_ROWS_PACKED,  /* fg_packed_index(H, 3, ...): packed [r z n], the columns of the backward's dG_x */
    FG_ROWS_BACKWARD /* the backward's W_hh: packed [r z n] for linear-before-reset; for reset-before
                      * packed [r z] (2H rows), then W_hn in natural order, as its products need them */
};
#endif

/* A tile of `count` (<= 8) inputs of `width` (<= 8) weight rows: source element (j, w), input k0 + j of
 * the row in panel column w, at source[j * columns + w]; written to targets[w][j]. With the width, the
 * count and the column stride constant (full tiles), the compiler turns the loops into an 8 x 8
 * transpose in vector registers; the general loop serves the edges. */
FG_INLINE void FN(transpose_tile)(const REAL *source, int columns, int width, int64_t count, REAL *const *targets) {
    for (int w = 0; w < width; w++)
        for (int64_t j = 0; j < count; j++) targets[w][j] = source[j * columns + w];
}

/* A full 8 x 8 tile through SSE registers (x86-64 has SSE2 everywhere): 4 x 4 float or 2 x 2 double
 * transposes, about twice the scalar loop's speed (which the compiler leaves scalar; measured on W_hh at
 * H = 512). */
FG_INLINE void FN(transpose_full_tile)(const REAL *source, int columns, REAL *const *targets) {
#if defined(__SSE2__)
    if (sizeof(REAL) == sizeof(float)) {
        const float *src = (const float *)source;
        for (int j0 = 0; j0 < 8; j0 += 4)
            for (int w0 = 0; w0 < 8; w0 += 4) {
                __m128 r0 = _mm_loadu_ps(src + (j0 + 0) * columns + w0), r1 = _mm_loadu_ps(src + (j0 + 1) * columns + w0);
                __m128 r2 = _mm_loadu_ps(src + (j0 + 2) * columns + w0), r3 = _mm_loadu_ps(src + (j0 + 3) * columns + w0);
                _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                _mm_storeu_ps((float *)targets[w0 + 0] + j0, r0);
                _mm_storeu_ps((float *)targets[w0 + 1] + j0, r1);
                _mm_storeu_ps((float *)targets[w0 + 2] + j0, r2);
                _mm_storeu_ps((float *)targets[w0 + 3] + j0, r3);
            }
    } else {
        const double *src = (const double *)source;
        for (int j0 = 0; j0 < 8; j0 += 2)
            for (int w0 = 0; w0 < 8; w0 += 2) {
                const __m128d r0 = _mm_loadu_pd(src + j0 * columns + w0), r1 = _mm_loadu_pd(src + (j0 + 1) * columns + w0);
                _mm_storeu_pd((double *)targets[w0] + j0, _mm_unpacklo_pd(r0, r1));
                _mm_storeu_pd((double *)targets[w0 + 1] + j0, _mm_unpackhi_pd(r0, r1));
            }
    }
#else
    FN(transpose_tile)(source, columns, 8, 8, targets);
#endif
}

/* Writes W_ih (recurrent = 0) or W_hh (1) of direction `dir` as rows: element k of the row that
 * `order` assigns to (gate, unit), R, at
 *     dst + R * row_stride + (k / span) * span_stride + k % span.
 * span >= K gives a row-major matrix (row stride row_stride); else column panels of `span` columns,
 * span_stride elements apart, row_stride = span (backward_kernels.h; padding past K is not written;
 * span a multiple of 16 keeps every tile whole). The copy goes in tiles of 16 inputs of the units of one
 * block and one gate, which both the reads, down a panel's rows, and the writes, along the
 * destination's rows, touch once. */
FG_INLINE void FN(weight_rows)(const fg_spec *spec, const fg_packed_direction *dir, int64_t inputs, int recurrent,
                               int order, REAL *dst, int64_t row_stride, int64_t span, int64_t span_stride) {
    enum { TILE = 16 }; /* inputs per tile: two of transpose_full_tile's 8 x 8 */
    const int64_t hidden = spec->hidden_size, blocks = fg_num_blocks(hidden);
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    for (int64_t block = 0; block < blocks; block++) {
        const int width = fg_block_width(hidden, block);
        for (int gate = 0; gate < 3; gate++) {
            int columns, set_gate;
            const REAL *panels = (const REAL *)fg_panel_set(dir, recurrent, lbr, gate, &columns, &set_gate);
            REAL *rows[FG_BLOCK > 8 ? FG_BLOCK : 8];
            for (int w = 0; w < width; w++) {
                const int64_t unit = fg_block_start(block) + w;
                int64_t row;
                if (order == FG_ROWS_NATURAL) row = gate * hidden + unit;
                else if (order == FG_ROWS_PACKED || lbr) row = fg_packed_index(hidden, 3, gate, unit);
                else row = gate < 2 ? fg_packed_index(hidden, 2, gate, unit) : 2 * hidden + unit;
                rows[w] = dst + row * row_stride;
            }
            const REAL *source = panels + fg_panel_index(inputs, columns, set_gate, fg_block_start(block), 0);
            for (int64_t k0 = 0, count; k0 < inputs; k0 += count) {
                /* TILE inputs, fewer at the end of the row or of a span */
                count = inputs - k0 < TILE ? inputs - k0 : TILE;
                count = span - k0 % span < count ? span - k0 % span : count;
                const int64_t offset = (k0 / span) * span_stride + k0 % span;
                REAL *targets[FG_BLOCK > 8 ? FG_BLOCK : 8];
                for (int w = 0; w < width; w++) targets[w] = rows[w] + offset;
                /* the block's units 8 at a time; the last few (a narrow block) on the scalar loop */
                for (int w0 = 0; w0 < width; w0 += 8) {
                    const REAL *tile = source + k0 * columns + w0;
                    if (width - w0 >= 8 && count == TILE) {
                        /* two 8 x 8 halves: each target row gets a whole cache line (of floats) at once */
                        REAL *eight[8];
                        for (int w = 0; w < 8; w++) eight[w] = targets[w0 + w];
                        FN(transpose_full_tile)(tile, columns, eight);
                        for (int w = 0; w < 8; w++) eight[w] += 8;
                        FN(transpose_full_tile)(tile + 8 * columns, columns, eight);
                    } else {
                        FN(transpose_tile)(tile, columns, width - w0 < 8 ? width - w0 : 8, count, targets + w0);
                    }
                }
            }
        }
    }
}

void FN(unpack_layer)(const fg_spec *spec, const fg_packed_layer *layer, int direction, const fg_layer_weights *w) {
    const fg_packed_direction *dir = &layer->directions[direction];
    const int64_t hidden = spec->hidden_size, gates = 3 * hidden;
    FN(weight_rows)(spec, dir, layer->input_size, 0, FG_ROWS_NATURAL, (REAL *)w->weight_ih, layer->input_size,
                    layer->input_size, 0);
    FN(weight_rows)(spec, dir, hidden, 1, FG_ROWS_NATURAL, (REAL *)w->weight_hh, hidden, hidden, 0);
    if (w->bias_ih) memcpy(w->bias_ih, dir->bias_ih, (size_t)gates * sizeof(REAL));
    if (w->bias_hh) memcpy(w->bias_hh, dir->bias_hh, (size_t)gates * sizeof(REAL));
}

void FN(backward_weight_ih)(const fg_gru *gru, int64_t layer, REAL *dst) {
    const fg_packed_layer *packed = &gru->layers[layer];
    const int64_t in = packed->input_size, gates = 3 * gru->spec.hidden_size;
    for (int64_t d = 0; d < gru->spec.num_directions; d++)
        FN(weight_rows)(&gru->spec, &packed->directions[d], in, 0, FG_ROWS_PACKED, dst + d * gates * in, in, in, 0);
}

void FN(backward_weight_hh)(const fg_gru *gru, int64_t layer, int direction, REAL *dst, int64_t row_stride,
                            int64_t span, int64_t span_stride) {
    FN(weight_rows)(&gru->spec, &gru->layers[layer].directions[direction], gru->spec.hidden_size, 1,
                    FG_ROWS_BACKWARD, dst, row_stride, span, span_stride);
}

#undef REAL
#undef SFX
