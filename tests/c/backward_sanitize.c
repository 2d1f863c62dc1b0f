/* backward_sanitize.c: the C core's forward + backward with no Python, built with AddressSanitizer and
 * UndefinedBehaviorSanitizer by tools/sanitize.sh (make sanitize).
 *
 * Every array is its own exact-size malloc, the workspaces exactly as large as the *_size functions say,
 * so a read or write past any of them, a leak or a double free stops the run. Covers both variants and
 * dtypes, hard sigmoid, clip, lengths, masks, batch-first, B = 0, absent h0 / grad_output / grad_x /
 * grad_h0 / bias gradients, and every kernel table this CPU runs (GEMMs from fg_reference_blas): each
 * table's gradients must match the generic table's, and a workspace one byte short must be refused. */
#include "fastgru.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double next_uniform(unsigned *state) {
    *state = *state * 1103515245u + 12345u;
    return ((*state >> 8) & 0xffff) / 65536.0 - 0.5;
}

static void *random_array(size_t count, int f64, unsigned *state) {
    void *p = malloc(count ? count * (f64 ? 8 : 4) : 1);
    for (size_t i = 0; i < count; i++) {
        if (f64) ((double *)p)[i] = next_uniform(state);
        else ((float *)p)[i] = (float)next_uniform(state);
    }
    return p;
}

static double max_difference(const void *a, const void *b, size_t count, int f64) {
    double worst = 0;
    for (size_t i = 0; i < count; i++) {
        double x = f64 ? ((const double *)a)[i] : ((const float *)a)[i];
        double y = f64 ? ((const double *)b)[i] : ((const float *)b)[i];
        if (fabs(x - y) > worst) worst = fabs(x - y);
    }
    return worst;
}

#define CHECK(cond, ...)                                                                              \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            printf("case %d: ", iter);                                                                \
            printf(__VA_ARGS__);                                                                      \
            printf("\n");                                                                             \
            return 1;                                                                                 \
        }                                                                                             \
    } while (0)

int main(void) {
    unsigned state = 7;
    /* The tables this CPU runs, generic first: the backward's per-step product differs per table (the
     * 512-bit ones have their own), and each must stay inside its exact-size arrays. */
    fg_isa tables[FG_ISA_COUNT];
    int n_tables = 0;
    for (int isa = FG_ISA_GENERIC; isa < FG_ISA_COUNT; isa++)
        if (fg_isa_supported((fg_isa)isa)) tables[n_tables++] = (fg_isa)isa;
    printf("kernel tables:");
    for (int t = 0; t < n_tables; t++) printf(" %s", fg_isa_name(tables[t]));
    printf("\n");
    for (int iter = 0; iter < 240; iter++) {
        const int f64 = iter & 1, lbr = (iter >> 1) & 1;
        const int64_t I = 1 + iter % 7, H = 1 + (iter * 7) % 41, L = 1 + iter % 3, D = 1 + (iter / 3) % 2;
        const int64_t T = 1 + (iter * 5) % 9, B = (iter * 3) % 7;
        const int use_lengths = iter % 4 == 0, use_mask = iter % 4 == 1, batch_first = iter % 5 == 0;
        fg_spec spec = {I, H, L, D, f64 ? FG_FLOAT64 : FG_FLOAT32,
                        lbr ? FG_LINEAR_BEFORE_RESET : FG_RESET_BEFORE,
                        iter % 3 == 0 ? FG_HARD_SIGMOID : FG_SIGMOID, 0.2, 0.5, iter % 5 == 1 ? 1.5 : 0};
        fg_layer_weights weights[6], grads[FG_ISA_COUNT][6];
        for (int k = 0; k < L * D; k++) {
            const int64_t in = k / D == 0 ? I : D * H;
            weights[k] = (fg_layer_weights){random_array(3 * H * in, f64, &state), random_array(3 * H * H, f64, &state),
                                            random_array(3 * H, f64, &state), random_array(3 * H, f64, &state)};
            for (int run = 0; run < n_tables; run++)
                grads[run][k] = (fg_layer_weights){random_array(3 * H * in, f64, &state),
                                                   random_array(3 * H * H, f64, &state),
                                                   iter % 7 ? random_array(3 * H, f64, &state) : NULL,
                                                   random_array(3 * H, f64, &state)};
        }
        fg_gru *gru;
        CHECK(fg_gru_create(&spec, weights, &gru) == FG_OK, "fg_gru_create failed");
        int64_t *lengths = malloc((size_t)(B ? B : 1) * sizeof(int64_t));
        uint8_t *mask = malloc((size_t)(T * B > 0 ? T * B : 1));
        for (int64_t b = 0; b < B; b++) lengths[b] = 1 + (b * 3 + iter) % T;
        for (int64_t i = 0; i < T * B; i++) mask[i] = (i * 7 + iter) % 3 != 0;
        void *x = random_array(T * B * I, f64, &state);
        void *h0 = iter % 2 ? random_array(L * D * B * H, f64, &state) : NULL;
        void *output = random_array(T * B * D * H, f64, &state), *h_n = random_array(L * D * B * H, f64, &state);
        fg_sequence seq = {T, B, batch_first, x, h0, use_lengths ? lengths : NULL, use_mask ? mask : NULL, output, h_n};
        size_t forward_bytes, tape_bytes, backward_bytes;
        CHECK(fg_forward_workspace_size(gru, T, B, &forward_bytes) == FG_OK, "forward size");
        CHECK(fg_tape_size(gru, T, B, &tape_bytes) == FG_OK, "tape size");
        CHECK(fg_backward_workspace_size(gru, T, B, &backward_bytes) == FG_OK, "backward size");
        void *forward_ws = NULL, *backward_ws = NULL, *tape = malloc(tape_bytes ? tape_bytes : 1);
        CHECK(posix_memalign(&forward_ws, 64, forward_bytes ? forward_bytes : 64) == 0, "alloc");
        CHECK(posix_memalign(&backward_ws, 64, backward_bytes ? backward_bytes : 64) == 0, "alloc");
        fg_context ctx = {fg_reference_blas(), NULL, FG_ISA_GENERIC};
        CHECK(fg_forward(gru, &seq, tape, forward_ws, forward_bytes, &ctx) == FG_OK, "forward failed");
        void *grad_output = iter % 3 ? random_array(T * B * D * H, f64, &state) : NULL;
        void *grad_h_n = random_array(L * D * B * H, f64, &state);
        void *grad_x[FG_ISA_COUNT], *grad_h0[FG_ISA_COUNT];
        for (int run = 0; run < n_tables; run++) {
            grad_x[run] = random_array(T * B * I, f64, &state);
            grad_h0[run] = random_array(L * D * B * H, f64, &state);
            fg_gradients out = {iter % 6 ? grad_x[run] : NULL, iter % 4 ? grad_h0[run] : NULL, grads[run]};
            ctx.isa = tables[run];
            fg_status status = fg_backward(gru, &seq, tape, grad_output, grad_h_n, &out, backward_ws, backward_bytes, &ctx);
            CHECK(status == FG_OK, "backward failed: %s", fg_status_string(status));
            if (B > 0 && backward_bytes > 0)
                CHECK(fg_backward(gru, &seq, tape, grad_output, grad_h_n, &out, backward_ws, backward_bytes - 1, &ctx) ==
                          FG_ERR_WORKSPACE_TOO_SMALL,
                      "a short workspace was accepted");
        }
        /* Every table: generic's gradients up to the order of floating-point sums. */
        const double tolerance = f64 ? 1e-12 : 1e-4;
        for (int run = 1; run < n_tables; run++) {
            const char *name = fg_isa_name(tables[run]);
            if (iter % 6)
                CHECK(max_difference(grad_x[0], grad_x[run], T * B * I, f64) < tolerance, "grad_x differs (%s)", name);
            if (iter % 4)
                CHECK(max_difference(grad_h0[0], grad_h0[run], L * D * B * H, f64) < tolerance, "grad_h0 differs (%s)",
                      name);
            for (int k = 0; k < L * D; k++) {
                const int64_t in = k / D == 0 ? I : D * H;
                CHECK(max_difference(grads[0][k].weight_ih, grads[run][k].weight_ih, 3 * H * in, f64) < tolerance,
                      "dW_ih differs (%s)", name);
                CHECK(max_difference(grads[0][k].weight_hh, grads[run][k].weight_hh, 3 * H * H, f64) < tolerance,
                      "dW_hh differs (%s)", name);
            }
        }

        free(lengths);
        free(mask);
        free(x);
        free(h0);
        free(output);
        free(h_n);
        free(forward_ws);
        free(backward_ws);
        free(tape);
        free(grad_output);
        free(grad_h_n);
        for (int run = 0; run < n_tables; run++) {
            free(grad_x[run]);
            free(grad_h0[run]);
        }
        for (int k = 0; k < L * D; k++) {
            free(weights[k].weight_ih);
            free(weights[k].weight_hh);
            free(weights[k].bias_ih);
            free(weights[k].bias_hh);
            for (int run = 0; run < n_tables; run++) {
                free(grads[run][k].weight_ih);
                free(grads[run][k].weight_hh);
                free(grads[run][k].bias_ih);
                free(grads[run][k].bias_hh);
            }
        }
        fg_gru_destroy(gru);
    }
    printf("ok\n");
    return 0;
}
