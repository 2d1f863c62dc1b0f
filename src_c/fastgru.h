/* fastgru.h: the one public header of the fastgru C core.
 *
 * The core runs GRU forward and backward passes on the CPU. It never includes Python.h, never prints,
 * never aborts: every function that can fail returns an fg_status. Memory rules:
 *   - fg_gru_create allocates the packed model; fg_gru_destroy frees it. Nothing else allocates
 *     behind the caller's back, except the worker threads of an fg_pool (fg_pool_create/destroy).
 *   - Per-call scratch memory (the "workspace") and the backward "tape" are supplied by the caller,
 *     sized by the matching *_size function. That is what lets a stream step run without allocating.
 *   - A model is immutable after creation: any number of threads may call fg_forward / fg_step /
 *     fg_backward on the same model at once, each with its own workspace and pool.
 *
 * Conventions: all arrays are row-major and contiguous, of the model's dtype unless said otherwise.
 * Sizes and indices are int64_t; byte counts are size_t. Gate order in every array the caller sees is
 * PyTorch's (r, z, n); the core repacks internally (internal.h, "packed gate order").
 *
 * BLAS reaches the core as a table of row-major GEMM function pointers (fg_blas), passed into each
 * call that needs one (the backward pass; the forward pass runs on the core's own packed kernels). The
 * core never links a BLAS and never sees the Fortran calling convention; fg_reference_blas() gives
 * plain-loop GEMMs so the core can be tested with no BLAS at all.
 */
#ifndef FASTGRU_H
#define FASTGRU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */

typedef enum fg_status {
    FG_OK = 0,
    FG_ERR_NULL_POINTER,        /* a required pointer argument is NULL */
    FG_ERR_INVALID_SIZE,        /* a size is out of range or inconsistent with the model */
    FG_ERR_INVALID_LENGTHS,     /* a sequence length is outside 1..seq_len */
    FG_ERR_INVALID_SPEC,        /* the fg_spec holds an unknown enum value or a bad parameter */
    FG_ERR_SIZE_OVERFLOW,       /* a buffer size does not fit in size_t / int64_t */
    FG_ERR_OUT_OF_MEMORY,
    FG_ERR_WORKSPACE_TOO_SMALL, /* the caller's workspace is smaller than *_workspace_size said */
    FG_ERR_UNSUPPORTED,         /* a valid request the core does not implement (e.g. backward on int8) */
    FG_ERR_THREAD,              /* a worker thread could not be started */
    FG_ERR_NO_BLAS,             /* the fg_blas table lacks the routine this dtype needs */
    FG_ERR_INVALID_WEIGHTS      /* an int8 code outside -127..127, or a scale that is negative or not finite */
} fg_status;

/* A static, human-readable description of a status; never NULL. */
const char *fg_status_string(fg_status status);

/* ---------------------------------------------------------------- model spec */

typedef enum fg_dtype { FG_FLOAT32 = 0, FG_FLOAT64 = 1 } fg_dtype;

/* Where the reset gate acts (docs/design.md, "The GRU"):
 *   FG_LINEAR_BEFORE_RESET  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   torch, Keras reset_after=True
 *   FG_RESET_BEFORE         n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)   Keras reset_after=False, ONNX default */
typedef enum fg_variant { FG_LINEAR_BEFORE_RESET = 0, FG_RESET_BEFORE = 1 } fg_variant;

/* The activation of the r and z gates.
 *   FG_SIGMOID       1 / (1 + exp(-a))
 *   FG_HARD_SIGMOID  clip(gate_alpha * a + gate_beta, 0, 1): Keras 3 uses alpha = 1/6, tf.keras 2 and
 *                    ONNX's HardSigmoid default use alpha = 0.2; both use beta = 0.5. */
typedef enum fg_gate_activation { FG_SIGMOID = 0, FG_HARD_SIGMOID = 1 } fg_gate_activation;

typedef struct fg_spec {
    int64_t input_size;          /* I: features of the first layer's input */
    int64_t hidden_size;         /* H */
    int64_t num_layers;          /* L >= 1; layer k > 0 takes the previous layer's D*H-wide output */
    int64_t num_directions;      /* D: 1, or 2 for bidirectional */
    fg_dtype dtype;
    fg_variant variant;
    fg_gate_activation gate_activation;
    double gate_alpha, gate_beta; /* FG_HARD_SIGMOID only */
    double clip;                 /* > 0: every pre-activation is clamped to [-clip, clip] (ONNX 'clip'); 0: off */
} fg_spec;

/* The weights of one (layer, direction) in PyTorch's layout and gate order (r, z, n):
 *   weight_ih (3H, I_k), weight_hh (3H, H), bias_ih (3H), bias_hh (3H); I_0 = I, I_k = D*H for k > 0.
 * A NULL bias means zeros. Used both to hand weights in (fg_gru_create) and gradients out (fg_backward). */
typedef struct fg_layer_weights {
    void *weight_ih;
    void *weight_hh;
    void *bias_ih;
    void *bias_hh;
} fg_layer_weights;

typedef struct fg_gru fg_gru; /* opaque: the packed model */

/* Validates the spec and packs a copy of the weights; the caller's arrays are not kept.
 * weights[k * D + d] holds layer k, direction d (d = 1 runs backwards in time). */
fg_status fg_gru_create(const fg_spec *spec, const fg_layer_weights *weights, fg_gru **out);
void fg_gru_destroy(fg_gru *gru); /* NULL is a no-op */
const fg_spec *fg_gru_spec(const fg_gru *gru);
/* Bytes the model holds: every weight once, as the panels the forward pass reads (W_ih and W_hh, the unit
 * count rounded up to whole blocks of 8), and the biases three ways (as given, folded, and b_hn). The
 * backward pass builds the row-major copies its GEMMs need in its own workspace, per call. */
size_t fg_gru_packed_bytes(const fg_gru *gru);
/* 1 if the model's memory is advised for transparent huge pages, else 0 (NULL: 0). A model of
 * FG_HUGE_PAGE_BYTES or more is, on Linux where the kernel takes the advice (madvise MADV_HUGEPAGE): its
 * weights then stream through fewer TLB entries. Whether the pages are huge is the kernel's choice
 * (/sys/kernel/mm/transparent_hugepage/enabled). */
#define FG_HUGE_PAGE_BYTES ((size_t)2 << 20)
int fg_gru_huge_pages(const fg_gru *gru);

/* Writes a float model's weights back in the layout fg_gru_create took them in: weights[k * D + d]
 * points at the caller's arrays, weight_ih (3H, I_k), weight_hh (3H, H), bias_ih, bias_hh (3H), of the
 * spec's dtype, PyTorch's gate order (r, z, n). Every value comes back bit for bit as it was given (a
 * NULL bias given to fg_gru_create comes back as zeros); a NULL bias pointer here skips that bias.
 * FG_ERR_UNSUPPORTED for an int8 model (fg_gru_get_int8_weights). Reads the model only: it may run
 * while other threads run the model. */
fg_status fg_gru_get_weights(const fg_gru *gru, const fg_layer_weights *weights);

/* How a packed model stores W_ih and W_hh. Activations (x, h0, outputs, states) are always the spec's
 * dtype; the format is about the weights only.
 *   FG_WEIGHTS_NATIVE  the spec's dtype (what fg_gru_create builds)
 *   FG_WEIGHTS_INT8    int8 with one float32 scale per output row (per gate and unit), for batch-1
 *                      latency: inference only. Biases and the gate math stay float32; the state and the
 *                      layer input are quantized to int8 on the fly (docs/int8.md says exactly how). */
typedef enum fg_weight_format { FG_WEIGHTS_NATIVE = 0, FG_WEIGHTS_INT8 = 1 } fg_weight_format;

/* A new model holding `gru`'s weights in `format` (FG_WEIGHTS_INT8); `gru` is unchanged and may be
 * destroyed afterwards. FG_ERR_UNSUPPORTED for a float64 model, a model that is already int8, any other
 * format, or a layer input or hidden size above 131072 (the int32 sums could overflow);
 * FG_ERR_INVALID_SPEC when a weight is not finite. fg_forward and fg_step run the new model as any
 * other; fg_tape_size, a forward with a tape and fg_backward return FG_ERR_UNSUPPORTED. */
fg_status fg_gru_quantize(const fg_gru *gru, fg_weight_format format, fg_gru **out);

/* fg_gru_quantize with a choice of weight codes: weight_bits 8 is fg_gru_quantize (codes -127..127,
 * scale max|row| / 127); 7 makes codes -63..63 with scale max|row| / 63. 7-bit weights carry twice the
 * rounding error and run faster on CPUs without AVX-512 VNNI (AVX2, AVX-512F), whose products then need
 * no per-weight sign operation (whole calls 1.15-1.35x faster on a Zen 3, docs/int8.md). Any model whose
 * codes all lie within -64..64, however it was made, runs so (fg_gru_int8_narrow); the outputs are the
 * same bits either way on every kernel set. FG_ERR_INVALID_SPEC for another weight_bits, else as
 * fg_gru_quantize. */
fg_status fg_gru_quantize_bits(const fg_gru *gru, fg_weight_format format, int weight_bits, fg_gru **out);
fg_weight_format fg_gru_weight_format(const fg_gru *gru);
/* 1 for an int8 model whose weight codes all lie within -64..64 (7-bit codes, or 8-bit ones that are all
 * small), which the AVX2 and AVX-512F tables run on their narrow products; else 0 (NULL: 0). */
int fg_gru_int8_narrow(const fg_gru *gru);

/* The weights of one (layer, direction) of an int8 model, portable: the same on every CPU and kernel
 * set, in PyTorch's layout and gate order (r, z, n). Row j of a weight stands for scale[j] * codes[j]:
 *   weight_ih (3H, I_k) int8 codes in -127..127, weight_ih_scale (3H) float32 >= 0, finite;
 *   weight_hh (3H, H) and weight_hh_scale (3H) the same; bias_ih, bias_hh (3H) float32.
 * (fg_gru_quantize makes scale = max|row| / 127 and codes = round-half-even(w / scale); any codes and
 * scales in range are a valid model.) */
typedef struct fg_int8_layer_weights {
    int8_t *weight_ih;
    float *weight_ih_scale;
    int8_t *weight_hh;
    float *weight_hh_scale;
    float *bias_ih;
    float *bias_hh;
} fg_int8_layer_weights;

/* Writes an int8 model's codes, scales and biases into the caller's arrays (weights[k * D + d]; a NULL
 * bias pointer skips that bias). FG_ERR_UNSUPPORTED for a float model (fg_gru_get_weights). */
fg_status fg_gru_get_int8_weights(const fg_gru *gru, const fg_int8_layer_weights *weights);

/* An int8 model from codes, scales and biases (a NULL bias means zeros); the caller's arrays are not
 * kept. fg_gru_create_int8 of what fg_gru_get_int8_weights wrote gives a model whose outputs are bitwise
 * identical to the original's, on every kernel set and thread count. The spec must be float32 (the
 * activations' dtype) with layer inputs and H within fg_gru_quantize's limits (else
 * FG_ERR_UNSUPPORTED); FG_ERR_INVALID_WEIGHTS for a code of -128 or a scale that is negative, NaN or
 * infinite. */
fg_status fg_gru_create_int8(const fg_spec *spec, const fg_int8_layer_weights *weights, fg_gru **out);

/* ---------------------------------------------------------------- BLAS table */

/* Row-major GEMM: C := alpha * op(A) . op(B) + beta * C, op(X) = X or X^T when trans_x is nonzero;
 * op(A) is m x k, op(B) is k x n, C is m x n; lda, ldb, ldc are row strides in elements. */
typedef void (*fg_sgemm_fn)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                            const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                            float *c, int64_t ldc);
typedef void (*fg_dgemm_fn)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                            const double *a, int64_t lda, const double *b, int64_t ldb, double beta,
                            double *c, int64_t ldc);

typedef struct fg_blas {
    fg_sgemm_fn sgemm;
    fg_dgemm_fn dgemm;
} fg_blas;

/* Plain-loop GEMMs: correct, slow; for tests of the core without any BLAS. */
const fg_blas *fg_reference_blas(void);

/* ---------------------------------------------------------------- threads */

/* A pool of persistent worker threads. One pool serves one call at a time (the calling thread joins
 * in as worker 0), so concurrent callers each need their own pool. num_threads = 1 starts no thread.
 * After fork(), a pool created before it starts new workers in the child at its next call, and
 * fg_pool_destroy in the child frees it without waiting for the parent's workers. */
typedef struct fg_pool fg_pool;
fg_status fg_pool_create(int num_threads, fg_pool **out);
void fg_pool_destroy(fg_pool *pool); /* NULL is a no-op; joins the workers */
int fg_pool_num_threads(const fg_pool *pool);

/* Which kernel table runs (docs/kernels.md). FG_ISA_AUTO picks one from what the CPU reports
 * (fg_cpu_info_get: its isa and why); the others force a table, for tests and benchmarks. Tables on
 * different vector widths may differ in the last bit of float32 results (a row's product is summed in
 * a different order in each); int8 models give the same bits on every table. Each table needs the
 * features fg_isa_requires names; asking for one the CPU lacks gives FG_ERR_UNSUPPORTED.
 *   FG_ISA_GENERIC        portable C, any CPU
 *   FG_ISA_AVX2           AVX2 + FMA, 256-bit vectors, 4-row float32 tiles
 *   FG_ISA_AVX512VL       AVX-512 F/BW/VL/DQ on 256-bit vectors: 8-row float32 tiles in AVX-512VL's 32
 *                         registers, int8 on AVX2's products (AVX-512 CPUs without VNNI whose 512-bit
 *                         FMAs are no faster: Skylake-SP Silver/Bronze)
 *   FG_ISA_AVX512VL_VNNI  that, with int8 products on 256-bit vpdpbusd (Zen 4)
 *   FG_ISA_AVX512         AVX-512 F/BW/VL/DQ on 512-bit vectors: float32 products, gate math and
 *                         activations at full width, int8 on AVX2's products; for CPUs whose 512-bit
 *                         FMAs run at full rate (Zen 5 EPYC, Sapphire Rapids and later)
 *   FG_ISA_AVX512_VNNI    that, with int8 products on 512-bit vpdpbusd (8-row tiles over two blocks;
 *                         batch 1 reads one block two groups of 4 inputs per load) */
typedef enum fg_isa {
    FG_ISA_AUTO = 0,
    FG_ISA_GENERIC = 1,
    FG_ISA_AVX2 = 2,
    FG_ISA_AVX512VL = 3,
    FG_ISA_AVX512VL_VNNI = 4,
    FG_ISA_AVX512 = 5,
    FG_ISA_AVX512_VNNI = 6
} fg_isa;
#define FG_ISA_COUNT 7 /* one past the last fg_isa */

/* The table FG_ISA_AUTO runs on this CPU (never FG_ISA_AUTO): fg_cpu_info_get()->isa. */
fg_isa fg_isa_detect(void);
/* The table's name ("auto", "generic", "avx2", "avx512vl", "avx512vl_vnni", "avx512", "avx512_vnni"),
 * or NULL for a value outside fg_isa. */
const char *fg_isa_name(fg_isa isa);
/* The FG_CPU_* features (below) the table needs; 0 for FG_ISA_AUTO, FG_ISA_GENERIC and invalid values. */
unsigned fg_isa_requires(fg_isa isa);
/* 1 if this CPU (and its OS) runs the table, else 0 (FG_ISA_AUTO: 1). */
int fg_isa_supported(fg_isa isa);

/* ---------------------------------------------------------------- the CPU at hand
 *
 * What the core reads about the CPU once per process, at the first call that needs it (cpuid, and a
 * short timing where cpuid cannot tell the width of the FMA units), and what it derives from that:
 * the table FG_ISA_AUTO runs and the blocking of the kernels. fastgru.show_config() prints it. */

/* CPU features (fg_cpu_info.features), as cpuid reports them and only where the OS saves the vector
 * registers they need (xgetbv): */
#define FG_CPU_AVX2 (1u << 0)
#define FG_CPU_FMA (1u << 1)
#define FG_CPU_AVX512F (1u << 2)
#define FG_CPU_AVX512BW (1u << 3)
#define FG_CPU_AVX512VL (1u << 4)
#define FG_CPU_AVX512DQ (1u << 5)
#define FG_CPU_AVX512VNNI (1u << 6)
/* AMX tiles (cpuid leaf 7, EDX bit 24), whether or not the OS enables them: fastgru runs no AMX code;
 * the bit names a core (below: FG_WIDTH_KNOWN_FULL) where a hypervisor hides the model number. */
#define FG_CPU_AMX_TILE (1u << 7)
#define FG_CPU_FEATURE_COUNT 8
/* A feature bit's name ("avx2", "fma", "avx512f", ...), or NULL for anything but one FG_CPU_* bit. */
const char *fg_cpu_feature_name(unsigned feature);

/* Why FG_ISA_AUTO runs the width it runs (fg_cpu_info.width_reason). */
typedef enum fg_width_reason {
    FG_WIDTH_NO_AVX512 = 0,    /* no AVX-512 (F, BW, VL and DQ, saved by the OS): AVX2 or generic */
    FG_WIDTH_KNOWN_SPLIT = 1,  /* a core known to split 512-bit FMAs into 256-bit halves (AMD family 25,
                                * Zen 4): 256-bit vectors in 8-row tiles */
    FG_WIDTH_KNOWN_FULL = 2,   /* a core known to run them at full rate (AMD family 26 models 0-31, Zen
                                * 5 EPYC; Intel Sapphire, Emerald and Granite Rapids, by model or, where
                                * a hypervisor reports another model, by their AMX tiles): 512-bit vectors */
    FG_WIDTH_MEASURED_SPLIT = 3, /* cpuid cannot tell, and 512-bit FMA chains ran at under 1.5x the
                                  * 256-bit rate (the calibration) */
    FG_WIDTH_MEASURED_FULL = 4 /* cpuid cannot tell, and they ran at 1.5x or more */
} fg_width_reason;

/* Where the cache sizes come from (fg_cpu_info.cache_source). */
typedef enum fg_cache_source {
    FG_CACHE_FALLBACK = 0,     /* no cpuid leaf describes the caches: 32 KiB L1d, 256 KiB L2, no L3 */
    FG_CACHE_CPUID_4 = 1,      /* cpuid leaf 4 (deterministic cache parameters, Intel) */
    FG_CACHE_CPUID_8000001D = 2, /* cpuid leaf 0x8000001D (AMD, with topology extensions) */
    FG_CACHE_CPUID_80000006 = 3  /* cpuid leaves 0x80000005/6 (older AMD) */
} fg_cache_source;

typedef struct fg_cpu_info {
    char vendor[16];        /* cpuid's vendor string ("GenuineIntel", "AuthenticAMD"), "" if unknown */
    char model_name[64];    /* the brand string ("AMD EPYC 9575F 64-Core Processor"), "" if none */
    int family, model, stepping; /* display family and model (extended fields included), stepping */
    unsigned features;      /* FG_CPU_* */
    int64_t l1d_bytes;      /* L1 data cache of one core */
    int64_t l2_bytes;       /* L2 of one core */
    int64_t l3_bytes;       /* the L3 a core sees (shared by its complex or socket); 0 if none */
    fg_cache_source cache_source;
    fg_isa isa;             /* the table FG_ISA_AUTO runs */
    fg_width_reason width_reason;
    double fma256_gflops;   /* the calibration's best float32 rates on one thread, 256- and 512-bit */
    double fma512_gflops;   /* FMA chains; 0 where it did not run (cpuid could tell) */
    /* the blocking derived from the caches (docs/kernels.md) */
    int64_t chunk_bytes;    /* input projection per chunk of time steps: gates_x of at most this size */
    int64_t k_block;        /* panel rows per pass of the multi-row products (a panel that would not
                             * fit half the L2 is taken in row blocks); 0 where a table has no blocking */
} fg_cpu_info;

/* What the core read and decided; filled once per process (thread-safe: concurrent first calls wait
 * for one reader) and never NULL. */
const fg_cpu_info *fg_cpu_info_get(void);

/* What every compute call takes besides its data. blas is needed by fg_backward only (fg_forward and
 * fg_step run on the core's own kernels and accept NULL). pool may be NULL: then the call runs on the
 * calling thread alone. Asking for a table the CPU lacks (fg_isa_supported) gives FG_ERR_UNSUPPORTED,
 * a value outside fg_isa FG_ERR_INVALID_SPEC. */
typedef struct fg_context {
    const fg_blas *blas;
    fg_pool *pool;
    fg_isa isa;
} fg_context;

/* ---------------------------------------------------------------- sequences */

/* One call's data. Shapes (T = seq_len, B = batch, D, H, L from the spec):
 *   x        (T, B, I) time-major, or (B, T, I) when batch_first
 *   h0       (L*D, B, H), or NULL for zeros
 *   lengths  (B,) each in 1..T, any order, or NULL for all T. Outputs past a sequence's length are 0,
 *            h_n holds its state at the last valid step, and direction 1 starts at that step
 *            (torch pack_padded_sequence, ONNX sequence_lens).
 *   mask     (T, B) time-major bytes, or NULL. Keras masking: where mask[t, b] == 0 the state is carried
 *            over unchanged and output[t, b] is 0. Exclusive with lengths.
 *   output   (T, B, D*H) or (B, T, D*H), direction d in columns [d*H, (d+1)*H)
 *   h_n      (L*D, B, H)
 * B = 0 is allowed (nothing to do); T must be >= 1. */
typedef struct fg_sequence {
    int64_t seq_len;
    int64_t batch;
    int batch_first;
    const void *x;
    const void *h0;
    const int64_t *lengths;
    const uint8_t *mask;
    void *output;
    void *h_n;
} fg_sequence;

/* Scratch bytes that fg_forward needs for this shape. The workspace grows with min(T, chunk) and B,
 * not with T alone, except for models of L >= 2 layers, which keep one intermediate layer output. */
fg_status fg_forward_workspace_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes);

/* Bytes of the tape that fg_backward reads: per layer, the gate activations and the layer output. */
fg_status fg_tape_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes);

/* Runs the whole model. tape may be NULL (inference); else it must hold fg_tape_size bytes and is
 * filled for fg_backward. The workspace must hold fg_forward_workspace_size bytes, 64-byte aligned. */
fg_status fg_forward(const fg_gru *gru, const fg_sequence *seq, void *tape, void *workspace,
                     size_t workspace_bytes, const fg_context *ctx);

/* ---------------------------------------------------------------- backward */

typedef struct fg_gradients {
    void *grad_x;              /* shaped as seq->x; may be NULL if not wanted */
    void *grad_h0;             /* (L*D, B, H); may be NULL */
    fg_layer_weights *layers;  /* L*D entries shaped as the weights; weight pointers required, a NULL bias
                                * pointer skips that bias gradient (models without biases) */
} fg_gradients;

/* Scratch bytes that fg_backward needs: about T*B*(7*D*H + 2*max(I, D*H)) elements, plus small
 * per-batch and per-weight parts. It keeps every step's gate gradients, so the gradients of x and of
 * the weights are a few large GEMMs after the reverse time loop. */

fg_status fg_backward_workspace_size(const fg_gru *gru, int64_t seq_len, int64_t batch, size_t *bytes);

/* Gradients of a scalar loss given dL/d(output) and dL/d(h_n) (either may be NULL: zeros), for the
 * fg_sequence and tape of an earlier fg_forward (its output and h_n pointers are not read). grad_output
 * is shaped as seq->output, grad_h_n as h_n; positions past a sequence's length and masked steps take
 * no gradient from grad_output. grad_h0 is dL/d(initial state), also when seq->h0 is NULL (zeros).
 * Gradients are written, not accumulated. The workspace must hold fg_backward_workspace_size bytes,
 * 64-byte aligned. Single-threaded apart from the BLAS: ctx->pool is not used. */
fg_status fg_backward(const fg_gru *gru, const fg_sequence *seq, const void *tape,
                      const void *grad_output, const void *grad_h_n, const fg_gradients *grads,
                      void *workspace, size_t workspace_bytes, const fg_context *ctx);

/* ---------------------------------------------------------------- streaming */

/* One time step of a unidirectional model: h (L, B, H) is read and overwritten with the new state,
 * output (B, H) receives the last layer's new state (it may alias h's last layer). x_t is (B, I).
 * Allocates nothing; the workspace is sized once by fg_step_workspace_size. */
fg_status fg_step_workspace_size(const fg_gru *gru, int64_t batch, size_t *bytes);
fg_status fg_step(const fg_gru *gru, int64_t batch, const void *x_t, void *h, void *output,
                  void *workspace, size_t workspace_bytes, const fg_context *ctx);

#ifdef __cplusplus
}
#endif
#endif /* FASTGRU_H */
