/* model.c: validating a spec, laying out a model's memory (float and int8), and packing the caller's
 * float weights into the core's layout (internal.h) and back out. int8 models: model_int8.c. */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* madvise and MADV_HUGEPAGE (Linux) beside -D_POSIX_C_SOURCE */
#endif
#include "templates.h"

#include <math.h>
#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h> /* pack_impl.h's tile transposes */
#endif

fg_status fg_check_spec(const fg_spec *spec) {
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

/* pack_layer_f32, unpack_layer_f32, backward_weight_ih_f32, backward_weight_hh_f32 */
#define REAL float
#define SFX f32
#include "pack_impl.h"

/* pack_layer_f64, unpack_layer_f64, backward_weight_ih_f64, backward_weight_hh_f64 */
#define REAL double
#define SFX f64
#include "pack_impl.h"

/* Bytes of a panel set of `columns` columns over `inputs` inputs: float panels hold whole blocks (zeros
 * past H), int8 ones fg_i8_block_bytes per block; -1 on overflow (fg_layout_take reports it). */
static int64_t panel_bytes(int int8, int64_t blocks, int columns, int64_t inputs, size_t elem) {
    if (int8) return fg_mul(blocks, fg_i8_block_bytes(columns, inputs));
    return fg_mul(fg_mul(blocks * columns, inputs), (int64_t)elem);
}

/* Assigns every packed array of the model (counting only, while layout->base is NULL). An int8 model
 * has int8 panel blocks and float32 biases (internal.h, "int8 panels"). */
static fg_status layout_model(fg_gru *gru, fg_layout *layout) {
    const fg_spec *spec = &gru->spec;
    const int64_t hidden = spec->hidden_size, dirs = spec->num_directions, layers = spec->num_layers;
    const int64_t blocks = fg_num_blocks(hidden), gates = 3 * hidden;
    const int lbr = spec->variant == FG_LINEAR_BEFORE_RESET, int8 = gru->weight_format == FG_WEIGHTS_INT8;
    const size_t elem = int8 ? sizeof(float) : fg_dtype_size(spec->dtype);
    fg_packed_layer *table = (fg_packed_layer *)fg_layout_take(layout, layers, sizeof(fg_packed_layer));
    if (layout->base) gru->layers = table;
    for (int64_t k = 0; k < layers; k++) {
        fg_packed_layer scratch, *layer = layout->base ? &gru->layers[k] : &scratch;
        layer->input_size = k == 0 ? spec->input_size : dirs * hidden;
        layer->bias_x = fg_layout_take(layout, dirs * gates, elem);
        for (int64_t d = 0; d < dirs; d++) {
            fg_packed_direction *dir = &layer->directions[d];
            dir->panels_ih = fg_layout_take(layout, panel_bytes(int8, blocks, 3 * FG_BLOCK, layer->input_size, elem), 1);
            dir->panels = fg_layout_take(layout, panel_bytes(int8, blocks, (lbr ? 3 : 2) * FG_BLOCK, hidden, elem), 1);
            dir->panels_n = fg_layout_take(layout, lbr ? 0 : panel_bytes(int8, blocks, FG_BLOCK, hidden, elem), 1);
            dir->bias_hn = fg_layout_take(layout, hidden, elem);
            dir->bias_ih = fg_layout_take(layout, gates, elem);
            dir->bias_hh = fg_layout_take(layout, gates, elem);
        }
    }
    return layout->overflow ? FG_ERR_SIZE_OVERFLOW : FG_OK;
}

/* A model's memory, `bytes` of it (zeroed by the caller). From FG_HUGE_PAGE_BYTES up it is aligned to a
 * huge page and advised for transparent huge pages (Linux; numpy does the same for its large arrays):
 * a batch-1 step streams the whole of W_hh, and with 4 KiB pages a model past the TLB's reach pays a
 * page walk every 4 KiB of the stream. On the Zen 5 (family 26 model 2), one thread, the same model
 * both ways in one process: int8 H = 2816 at batch 1 (23.8 MB of W_hh) 1.05-1.16x, float32 T = 100,
 * B = 1, H = 1024 (24 MiB of weights) 1.03-1.05x. *huge_pages says whether the kernel took the advice
 * (it refuses where it has no transparent huge pages); whether the pages are huge is its choice. */
static int allocate_model_memory(size_t bytes, void **memory, int *huge_pages) {
    *huge_pages = 0;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= FG_HUGE_PAGE_BYTES) {
        if (posix_memalign(memory, FG_HUGE_PAGE_BYTES, bytes) != 0) return 0;
        /* whole huge pages only: one over the tail would make the model's last few bytes cost 2 MiB */
        *huge_pages = madvise(*memory, bytes & ~(FG_HUGE_PAGE_BYTES - 1), MADV_HUGEPAGE) == 0;
        return 1;
    }
#endif
    return posix_memalign(memory, FG_ALIGN, bytes) == 0;
}

fg_status fg_gru_allocate(const fg_spec *spec, fg_weight_format format, fg_gru **out) {
    *out = NULL;
    fg_status status = fg_check_spec(spec);
    if (status != FG_OK) return status;
    /* One allocation: the layer table, then every packed array, each cache-line aligned. */
    fg_gru *gru = (fg_gru *)calloc(1, sizeof(fg_gru));
    if (!gru) return FG_ERR_OUT_OF_MEMORY;
    gru->spec = *spec;
    gru->weight_format = format;
    fg_layout layout = {NULL, 0, 0};
    status = layout_model(gru, &layout);
    if (status == FG_OK && !allocate_model_memory(layout.used, &gru->memory, &gru->huge_pages))
        status = FG_ERR_OUT_OF_MEMORY;
    if (status != FG_OK) {
        free(gru);
        return status;
    }
    memset(gru->memory, 0, layout.used);
    gru->packed_bytes = layout.used;
    layout = (fg_layout){(char *)gru->memory, 0, 0};
    layout_model(gru, &layout);
    *out = gru;
    return FG_OK;
}

fg_status fg_gru_create(const fg_spec *spec, const fg_layer_weights *weights, fg_gru **out) {
    if (!spec || !weights || !out) return FG_ERR_NULL_POINTER;
    *out = NULL;
    fg_status status = fg_check_spec(spec);
    if (status != FG_OK) return status;
    const int64_t dirs = spec->num_directions, layers = spec->num_layers;
    for (int64_t i = 0; i < layers * dirs; i++)
        if (!weights[i].weight_ih || !weights[i].weight_hh) return FG_ERR_NULL_POINTER;
    fg_gru *gru;
    status = fg_gru_allocate(spec, FG_WEIGHTS_NATIVE, &gru);
    if (status != FG_OK) return status;
    for (int64_t k = 0; k < layers; k++)
        for (int64_t d = 0; d < dirs; d++) {
            if (spec->dtype == FG_FLOAT32) pack_layer_f32(spec, &weights[k * dirs + d], (int)d, &gru->layers[k]);
            else pack_layer_f64(spec, &weights[k * dirs + d], (int)d, &gru->layers[k]);
        }
    *out = gru;
    return FG_OK;
}

fg_status fg_gru_get_weights(const fg_gru *gru, const fg_layer_weights *weights) {
    if (!gru || !weights) return FG_ERR_NULL_POINTER;
    const fg_spec *spec = &gru->spec;
    const int64_t dirs = spec->num_directions, layers = spec->num_layers;
    if (gru->weight_format != FG_WEIGHTS_NATIVE) return FG_ERR_UNSUPPORTED; /* fg_gru_get_int8_weights */
    for (int64_t i = 0; i < layers * dirs; i++)
        if (!weights[i].weight_ih || !weights[i].weight_hh) return FG_ERR_NULL_POINTER;
    for (int64_t k = 0; k < layers; k++)
        for (int64_t d = 0; d < dirs; d++) {
            if (spec->dtype == FG_FLOAT32) unpack_layer_f32(spec, &gru->layers[k], (int)d, &weights[k * dirs + d]);
            else unpack_layer_f64(spec, &gru->layers[k], (int)d, &weights[k * dirs + d]);
        }
    return FG_OK;
}

void fg_gru_destroy(fg_gru *gru) {
    if (!gru) return;
    free(gru->memory);
    free(gru);
}

const fg_spec *fg_gru_spec(const fg_gru *gru) { return gru ? &gru->spec : NULL; }

size_t fg_gru_packed_bytes(const fg_gru *gru) { return gru ? gru->packed_bytes : 0; }

int fg_gru_huge_pages(const fg_gru *gru) { return gru ? gru->huge_pages : 0; }
