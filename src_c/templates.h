/* templates.h: how the core instantiates code for several element types and ISAs, and the name of
 * every function so instantiated.
 *
 * One mechanism: a template is a header (*_impl.h) written once over a few parameters, and each
 * instantiation is an explicit #include of it in a .c file, with the parameters #defined just before:
 *
 *     // step_lbr_f32_avx2, step_rb1_f32_avx2, step_rb2_f32_avx2, project_f32_avx2
 *     #define REAL float
 *     #define SFX f32
 *     #define ISA avx2
 *     #define DOT dot_f32_avx2
 *     #include "kernels_impl.h"
 *
 * Every template #undefs its parameters at its end, so each site states all of its own. Why this and
 * not function-generating macros: a template is ordinary C, so compiler messages, debuggers and
 * profilers point at its real lines, and it needs no backslashes. Inside a template, code that must be
 * specialised (a panel product for R rows, the gate math for a full block with constant flags) is a
 * static inline always_inline function called with constant arguments: the compiler inlines it and
 * folds the constants, which gives the code a macro pasted with literals would, and it is type-checked.
 *
 * Names are pasted (FN, FN_ISA below), which grep cannot see through. So every function a template
 * makes for a caller outside the template (an "entry point": a kernel of a table, a driver) is
 * declared below by its full name, and each site lists in a comment the names it makes:
 * `grep -rn step_lbr_f32_avx2 src_c` finds this declaration, the site that defines it and the kernel
 * table that uses it. tests/test_c_core.py builds the core with -Werror=missing-prototypes, so an
 * entry point missing here is an error. Entry points are extern with hidden visibility: the extension
 * exports none of them, and the compiler, knowing that no other library can replace them, calls them
 * directly and may inline them, as it would static functions. Helpers a template uses only inside
 * itself stay static (always_inline where they specialise).
 *
 * The parameters (none other exists; a template names the ones it takes at its top):
 *   REAL          element type: float or double
 *   SFX           suffix naming REAL in function names: f32, f64; i8 for int8 weights (REAL float)
 *   ISA           suffix naming the instructions a kernel is written for: generic (portable C),
 *                 avx2 (AVX2+FMA), avx512vl (AVX-512 on 256-bit vectors: AVX-512VL's 32 registers),
 *                 avx512vl_vnni (that, with vpdpbusd), avx512 (512-bit vectors), avx512_vnni (that,
 *                 with 512-bit vpdpbusd). The suffix only names; the file's target pragma selects the
 *                 instructions, and a table (internal.h) may take kernels of several suffixes.
 *   FG_ROWS       batch rows per panel product in the float kernels: 4 (default) or 8, which needs
 *                 AVX-512VL's 32 vector registers
 *   DOT           the panel product, an always_inline function called with constant rows and columns
 *                 (float kernels: and whether to continue the sums in its output, for K-blocking);
 *                 default the template's portable one
 *   NARROW        (kernels_int8_impl.h) defined: SFX i8n, kernels for weight codes within
 *                 +-FG_I8_NARROW only (internal.h), the tables' step_lbr_i8n and siblings
 *   CODES         (kernels_int8_impl.h) the form of the activation code bytes its DOT reads,
 *                 FG_CODES_INT8 or FG_CODES_OFFSET (internal.h, "int8 panels"); the tables taking
 *                 the kernels name the same one in int8_codes
 *   PAIR_DOT, PAIR_GATHER   (kernels_impl.h, kernels_int8_impl.h) the product of two adjacent unit
 *                 blocks at once and the deinterleaving of their gates: the 512-bit tables, whose
 *                 vectors span two blocks (kernels_avx512.c); absent, blocks are taken one at a time
 *   FG_QUANTIZED  defined: the forward driver of int8 models (REAL float, SFX i8)
 *
 * The templates and their instantiations (each site lists the entry points it makes):
 *   gates_impl.h         REAL, SFX          the gate math every step kernel of a file shares (static
 *                                           inline, no entry point); once per REAL in kernels_*.c
 *   kernels_impl.h       REAL, SFX, ISA, [FG_ROWS], [DOT], [PAIR_DOT, PAIR_GATHER]   float step kernels
 *                                           and input projection: kernels_generic.c (f32, f64),
 *                                           kernels_avx2.c (f32 and f64 avx2; f32 avx512vl, FG_ROWS 8),
 *                                           kernels_avx512.c (f32 avx512, FG_ROWS 8, pairs)
 *   kernels_int8_impl.h  ISA, CODES, [DOT], [PAIR_DOT, PAIR_GATHER], [NARROW]   int8 step kernels,
 *                                           projection and the quantization of its input rows (SFX i8,
 *                                           or i8n, is its own): kernels_generic.c,
 *                                           kernels_avx2.c (avx2, avx2 NARROW, avx512vl_vnni),
 *                                           kernels_avx512.c (avx512_vnni, pairs)
 *   forward_impl.h       REAL, SFX, [FG_QUANTIZED]   forward.c: f32, f64, i8
 *   backward_impl.h      REAL, SFX          backward.c: f32, f64
 *   backward_kernels_impl.h  REAL, SFX, ISA backward_kernels_avx2.c: f32, f64 (avx2)
 *   pack_impl.h          REAL, SFX          model.c: f32, f64 (pack_layer, pack_biases, unpack_layer,
 *                                           backward_weight_ih, backward_weight_hh)
 *   gemm_reference_impl.h    REAL, SFX      gemm_reference.c: f32, f64
 *
 * Adding a kernel table (say `fg_kernels_avx10`):
 *   1. in the kernels_*.c file compiled for its target (kernels_avx2.c and kernels_avx512.c hold the
 *      x86 ones; a new file needs its own target pragma, activations.h and one gates_impl.h site per
 *      REAL), one kernels_impl.h site per float dtype (its ISA, DOT and FG_ROWS) and one
 *      kernels_int8_impl.h site, as the sites there;
 *   2. declare the new entry points below, one block per table as the ones there;
 *   3. fill `const fg_kernels fg_kernels_avx10 = {...}` from those names at the end of that file
 *      (a table may reuse another's entries, as fg_kernels_avx512 reuses the f64 avx2 kernels),
 *      declare it in internal.h next to fg_kernels_avx2, and return it from fg_select_kernels
 *      (status.c) for the fg_isa (fastgru.h) that runs it; give that fg_isa its name and the features
 *      it needs in cpu.c (fg_isa_name, fg_isa_requires) and a place in fg_isa_choose. */
#ifndef FASTGRU_TEMPLATES_H
#define FASTGRU_TEMPLATES_H

#include "internal.h"
#include "backward_kernels.h"

#define FG_PASTE2_(a, b) a##_##b
#define FG_PASTE2(a, b) FG_PASTE2_(a, b)
#define FG_PASTE3_(a, b, c) a##_##b##_##c
#define FG_PASTE3(a, b, c) FG_PASTE3_(a, b, c)
/* name_SFX: functions and types of a template over REAL (forward_f32, pack_layer_f64) */
#define FN(name) FG_PASTE2(name, SFX)
/* name_SFX_ISA: functions of a template over REAL and ISA (step_lbr_f32_avx2) */
#define FN_ISA(name) FG_PASTE3(name, SFX, ISA)

/* A function the compiler must inline, so that its constant arguments specialise it. */
#define FG_INLINE static inline __attribute__((always_inline))

#if defined(__GNUC__) || defined(__clang__)
#define FG_INTERNAL __attribute__((visibility("hidden")))
#else
#define FG_INTERNAL
#endif

/* The three step kernels of internal.h ("kernels"), as the constant that specialises the one step
 * function of each kernel template. */
enum { FG_STEP_LBR, FG_STEP_RB1, FG_STEP_RB2 };

/* Columns of the widest panel: [r z n] of one block of FG_BLOCK units. Product accumulators of the
 * kernels have rows this far apart whatever the panel's width. */
#define FG_PANEL_COLUMNS (3 * FG_BLOCK)

/* ---------------------------------------------------------------- kernel tables (internal.h) */

/* fg_kernels_generic (kernels_generic.c) */
FG_INTERNAL void step_lbr_f32_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_f32_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_f32_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_f32_generic(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_lbr_f64_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_f64_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_f64_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_f64_generic(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_lbr_i8_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_i8_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_i8_generic(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_i8_generic(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void quantize_i8_generic(const float *rows, int64_t stride, int64_t width, int64_t begin, int64_t end,
                                     uint8_t *codes, float *scales);

#ifdef FG_HAVE_AVX2_KERNELS
/* fg_kernels_avx2 (kernels_avx2.c): AVX2+FMA, 4-row panel products */
FG_INTERNAL void step_lbr_f32_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_f32_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_f32_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_f32_avx2(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_lbr_f64_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_f64_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_f64_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_f64_avx2(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_lbr_i8_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_i8_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_i8_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_i8_avx2(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void quantize_i8_avx2(const float *rows, int64_t stride, int64_t width, int64_t begin, int64_t end,
                                  uint8_t *codes, float *scales);
FG_INTERNAL void step_lbr_i8n_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_i8n_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_i8n_avx2(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_i8n_avx2(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void quantize_i8n_avx2(const float *rows, int64_t stride, int64_t width, int64_t begin, int64_t end,
                                   uint8_t *codes, float *scales);

/* fg_kernels_avx512vl and fg_kernels_avx512vl_vnni (kernels_avx2.c): float32 in 8-row tiles of 256-bit
 * vectors; int8 on AVX2's products or on vpdpbusd; float64 from fg_kernels_avx2 */
FG_INTERNAL void step_lbr_f32_avx512vl(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_f32_avx512vl(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_f32_avx512vl(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_f32_avx512vl(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_lbr_i8_avx512vl_vnni(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_i8_avx512vl_vnni(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_i8_avx512vl_vnni(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_i8_avx512vl_vnni(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void quantize_i8_avx512vl_vnni(const float *rows, int64_t stride, int64_t width, int64_t begin, int64_t end,
                                           uint8_t *codes, float *scales);

/* fg_kernels_avx512 and fg_kernels_avx512_vnni (kernels_avx512.c): float32 on 512-bit vectors over two
 * blocks at once; int8 on AVX2's products or on 512-bit vpdpbusd; float64 from fg_kernels_avx2 */
FG_INTERNAL void step_lbr_f32_avx512(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_f32_avx512(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_f32_avx512(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_f32_avx512(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_lbr_i8_avx512_vnni(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb1_i8_avx512_vnni(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void step_rb2_i8_avx512_vnni(const fg_step_args *s, int64_t block_begin, int64_t block_end);
FG_INTERNAL void project_i8_avx512_vnni(const fg_project_args *p, int64_t block_begin, int64_t block_end);
FG_INTERNAL void quantize_i8_avx512_vnni(const float *rows, int64_t stride, int64_t width, int64_t begin, int64_t end,
                                         uint8_t *codes, float *scales);
#endif

/* ---------------------------------------------------------------- drivers */

/* forward.c (forward_impl.h): the forward pass of a checked call, buffers laid out; odd_call: 1 on every
 * other one-step call of the calling thread (forward_impl.h, single_step) */
struct forward_buffers;
FG_INTERNAL void forward_f32(const fg_gru *gru, const fg_sequence *seq, void *tape_gates, void *tape_outputs,
                             const struct forward_buffers *buf, const fg_kernels *kernels, fg_pool *pool,
                             int odd_call);
FG_INTERNAL void forward_f64(const fg_gru *gru, const fg_sequence *seq, void *tape_gates, void *tape_outputs,
                             const struct forward_buffers *buf, const fg_kernels *kernels, fg_pool *pool,
                             int odd_call);
FG_INTERNAL void forward_i8(const fg_gru *gru, const fg_sequence *seq, void *tape_gates, void *tape_outputs,
                            const struct forward_buffers *buf, const fg_kernels *kernels, fg_pool *pool, int odd_call);

/* backward.c (backward_impl.h): the backward pass of a checked call, buffers laid out */
struct backward_buffers;
FG_INTERNAL void backward_f32(const fg_gru *gru, const fg_sequence *seq, const void *tape_gates,
                              const void *tape_outputs, const void *grad_output, const void *grad_h_n,
                              const fg_gradients *grads, const struct backward_buffers *buf, fg_sgemm_fn gemm,
                              fg_panel_gemm_f32 panel_gemm);
FG_INTERNAL void backward_f64(const fg_gru *gru, const fg_sequence *seq, const void *tape_gates,
                              const void *tape_outputs, const void *grad_output, const void *grad_h_n,
                              const fg_gradients *grads, const struct backward_buffers *buf, fg_dgemm_fn gemm,
                              fg_panel_gemm_f64 panel_gemm);

#ifdef FG_HAVE_AVX2_PANEL_GEMM
/* backward_kernels_avx2.c (backward_kernels_impl.h): the backward's per-step product on AVX2+FMA */
FG_INTERNAL void fg_panel_gemm_f32_avx2(int64_t rows, int64_t cols, int64_t K, const float *a, int64_t lda,
                                        const float *panels, int64_t panel_stride, float *c, int64_t ldc,
                                        int reverse);
FG_INTERNAL void fg_panel_gemm_f64_avx2(int64_t rows, int64_t cols, int64_t K, const double *a, int64_t lda,
                                        const double *panels, int64_t panel_stride, double *c, int64_t ldc,
                                        int reverse);
/* backward_kernels_avx512.c: the float32 one on 512-bit vectors, the AVX2 kernel's bits (512-bit tables) */
FG_INTERNAL void fg_panel_gemm_f32_avx512(int64_t rows, int64_t cols, int64_t K, const float *a, int64_t lda,
                                          const float *panels, int64_t panel_stride, float *c, int64_t ldc,
                                          int reverse);
#endif

/* model.c (pack_impl.h): one (layer, direction) of the caller's weights into the packed layout
 * (pack_layer; pack_biases alone for int8 models) and back (unpack_layer); the backward's row-major
 * operands built from the panels: W_ih of every direction of a layer stacked, (D*3H, I_k) in packed
 * row order, and one direction's W_hh (3H, H) in the backward's row order, row-major or as column panels
 * (pack_impl.h, weight_rows) */
FG_INTERNAL void pack_layer_f32(const fg_spec *spec, const fg_layer_weights *w, int direction,
                                fg_packed_layer *layer);
FG_INTERNAL void pack_layer_f64(const fg_spec *spec, const fg_layer_weights *w, int direction,
                                fg_packed_layer *layer);
FG_INTERNAL void pack_biases_f32(const fg_spec *spec, const float *b_ih, const float *b_hh, int direction,
                                 fg_packed_layer *layer);
FG_INTERNAL void pack_biases_f64(const fg_spec *spec, const double *b_ih, const double *b_hh, int direction,
                                 fg_packed_layer *layer);
FG_INTERNAL void unpack_layer_f32(const fg_spec *spec, const fg_packed_layer *layer, int direction,
                                  const fg_layer_weights *w);
FG_INTERNAL void unpack_layer_f64(const fg_spec *spec, const fg_packed_layer *layer, int direction,
                                  const fg_layer_weights *w);
FG_INTERNAL void backward_weight_ih_f32(const fg_gru *gru, int64_t layer, float *dst);
FG_INTERNAL void backward_weight_ih_f64(const fg_gru *gru, int64_t layer, double *dst);
FG_INTERNAL void backward_weight_hh_f32(const fg_gru *gru, int64_t layer, int direction, float *dst,
                                        int64_t row_stride, int64_t span, int64_t span_stride);
FG_INTERNAL void backward_weight_hh_f64(const fg_gru *gru, int64_t layer, int direction, double *dst,
                                        int64_t row_stride, int64_t span, int64_t span_stride);

/* gemm_reference.c (gemm_reference_impl.h): the plain-loop GEMMs of fg_reference_blas */
FG_INTERNAL void reference_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                    const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                    int64_t ldc);
FG_INTERNAL void reference_gemm_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                                    const double *a, int64_t lda, const double *b, int64_t ldb, double beta,
                                    double *c, int64_t ldc);

#endif /* FASTGRU_TEMPLATES_H */
