/* status.c: status strings, dtype sizes, the kernel table of a call and the checks every call shares. */
#include "internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

const char *fg_status_string(fg_status status) {
    switch (status) {
    case FG_OK: return "ok";
    case FG_ERR_NULL_POINTER: return "a required pointer argument is NULL";
    case FG_ERR_INVALID_SIZE: return "a size is out of range or inconsistent with the model";
    case FG_ERR_INVALID_LENGTHS: return "a sequence length is outside 1..seq_len";
    case FG_ERR_INVALID_SPEC: return "invalid model spec";
    case FG_ERR_SIZE_OVERFLOW: return "a buffer size overflows 64-bit indexing";
    case FG_ERR_OUT_OF_MEMORY: return "out of memory";
    case FG_ERR_WORKSPACE_TOO_SMALL: return "the workspace is smaller than required";
    case FG_ERR_UNSUPPORTED: return "not supported";
    case FG_ERR_THREAD: return "a worker thread could not be started";
    case FG_ERR_NO_BLAS: return "the BLAS table lacks the GEMM for this dtype";
    case FG_ERR_INVALID_WEIGHTS: return "an int8 code is outside -127..127, or a scale is negative or not finite";
    }
    return "unknown status";
}

size_t fg_dtype_size(fg_dtype dtype) { return dtype == FG_FLOAT64 ? sizeof(double) : sizeof(float); }

const fg_kernels *fg_select_kernels(fg_isa isa) {
    if (isa == FG_ISA_AUTO) isa = fg_isa_detect();
    if (!fg_isa_supported(isa)) return NULL;
    switch (isa) {
    case FG_ISA_GENERIC: return &fg_kernels_generic;
#ifdef FG_HAVE_AVX2_KERNELS
    case FG_ISA_AVX2: return &fg_kernels_avx2;
    case FG_ISA_AVX512VL: return &fg_kernels_avx512vl;
    case FG_ISA_AVX512VL_VNNI: return &fg_kernels_avx512vl_vnni;
    case FG_ISA_AVX512: return &fg_kernels_avx512;
    case FG_ISA_AVX512_VNNI: return &fg_kernels_avx512_vnni;
#endif
    default: return NULL;
    }
}

fg_status fg_check_context(const fg_gru *gru, const fg_context *ctx, int needs_blas, const fg_kernels **kernels) {
    if (!gru || !ctx) return FG_ERR_NULL_POINTER;
    if (needs_blas && (!ctx->blas || (gru->spec.dtype == FG_FLOAT32 ? !ctx->blas->sgemm : !ctx->blas->dgemm)))
        return FG_ERR_NO_BLAS;
    if ((int)ctx->isa < 0 || (int)ctx->isa >= FG_ISA_COUNT) return FG_ERR_INVALID_SPEC;
    *kernels = fg_select_kernels(ctx->isa);
    return *kernels ? FG_OK : FG_ERR_UNSUPPORTED;
}

fg_activation fg_activation_of(const fg_spec *spec) {
    fg_activation act;
    act.hard_sigmoid = spec->gate_activation == FG_HARD_SIGMOID;
    act.alpha = spec->gate_alpha;
    act.beta = spec->gate_beta;
    act.clip = spec->clip;
    return act;
}

unsigned fg_denormals_off(void) {
#if defined(__x86_64__) || defined(_M_X64)
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
    return saved;
#else
    return 0;
#endif
}

void fg_denormals_restore(unsigned saved) {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_setcsr(saved);
#else
    (void)saved;
#endif
}
