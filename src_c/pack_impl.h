/* pack_impl.h: packing one (layer, direction) of the caller's weights into the core's layout (internal.h,
 * "packed gate order" and fg_packed_direction), as a template over REAL and SFX (templates.h),
 * instantiated by model.c. */
#if !defined(REAL) || !defined(SFX)
#error "pack_impl.h takes REAL and SFX (templates.h)"
#endif

/* Row (gate, unit) of the caller's row-major (3H, cols) weight array. */
FG_INLINE const REAL *FN(source_row)(const REAL *weights, int64_t hidden, int64_t cols, int gate, int64_t unit) {
    return weights + (gate * hidden + unit) * cols;
}

void FN(pack_layer)(const fg_spec *spec, const fg_layer_weights *w, int direction, fg_packed_layer *layer) {
    const int64_t hidden = spec->hidden_size, in = layer->input_size, gates = 3 * hidden;
    const REAL *w_ih = (const REAL *)w->weight_ih, *w_hh = (const REAL *)w->weight_hh;
    const REAL *b_ih = (const REAL *)w->bias_ih, *b_hh = (const REAL *)w->bias_hh;
    REAL *p_ih = (REAL *)layer->weight_ih + direction * gates * in;
    REAL *p_bias = (REAL *)layer->bias_x + direction * gates;
    REAL *p_hh = (REAL *)layer->directions[direction].weight_hh;
    REAL *p_hn = (REAL *)layer->directions[direction].bias_hn;
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET;
    for (int gate = 0; gate < 3; gate++) {
        for (int64_t unit = 0; unit < hidden; unit++) {
            int64_t row = fg_packed_index(hidden, 3, gate, unit);
            memcpy(p_ih + row * in, FN(source_row)(w_ih, hidden, in, gate, unit), (size_t)in * sizeof(REAL));
            REAL bias_i = b_ih ? b_ih[gate * hidden + unit] : (REAL)0;
            REAL bias_h = b_hh ? b_hh[gate * hidden + unit] : (REAL)0;
            /* b_hn must stay inside r * (W_hn h + b_hn) for linear-before-reset; everything else adds
             * straight to the pre-activation and is folded into the input projection. */
            int keep_hn = lbr && gate == 2;
            p_bias[row] = keep_hn ? bias_i : bias_i + bias_h;
            if (keep_hn) p_hn[unit] = bias_h;
            int64_t hh_row = lbr ? row : gate < 2 ? fg_packed_index(hidden, 2, gate, unit) : 2 * hidden + unit;
            memcpy(p_hh + hh_row * hidden, FN(source_row)(w_hh, hidden, hidden, gate, unit),
                   (size_t)hidden * sizeof(REAL));
        }
    }
    REAL *panels_ih = (REAL *)layer->directions[direction].panels_ih;
    for (int64_t unit = 0; unit < hidden; unit++)
        for (int64_t k = 0; k < in; k++)
            for (int gate = 0; gate < 3; gate++)
                panels_ih[((unit / FG_BLOCK) * in + k) * 3 * FG_BLOCK + gate * FG_BLOCK + unit % FG_BLOCK] =
                    FN(source_row)(w_ih, hidden, in, gate, unit)[k];
    /* Panels: block u, row k, column g*8 + w holds W_hh[gate g, unit 8u + w][k]. */
    const int panel_gates = lbr ? 3 : 2;
    REAL *panels = (REAL *)layer->directions[direction].panels;
    REAL *panels_n = (REAL *)layer->directions[direction].panels_n;
    for (int64_t unit = 0; unit < hidden; unit++) {
        const int64_t block = unit / FG_BLOCK, w = unit % FG_BLOCK;
        for (int64_t k = 0; k < hidden; k++) {
            REAL *row = panels + (block * hidden + k) * panel_gates * FG_BLOCK;
            for (int gate = 0; gate < panel_gates; gate++)
                row[gate * FG_BLOCK + w] = FN(source_row)(w_hh, hidden, hidden, gate, unit)[k];
            if (!lbr)
                panels_n[(block * hidden + k) * FG_BLOCK + w] = FN(source_row)(w_hh, hidden, hidden, 2, unit)[k];
        }
    }
}

#undef REAL
#undef SFX
