/* kernels_avx2.c: the same kernels as kernels_generic.c, compiled for AVX2+FMA. Only this file is
 * built for that target (by pragma, not by a build flag, so the package never needs -march=native);
 * fg_select_kernels uses it only after the CPU has reported both features. */
#include "internal.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif

#include "activations.h"

#define ISA avx2

#define REAL float
#define SFX f32
#define SIGMOID fg_sigmoidf
#define TANH fg_tanhf
#include "kernels_impl.h"
#undef REAL
#undef SFX
#undef SIGMOID
#undef TANH

#define REAL double
#define SFX f64
#define SIGMOID fg_sigmoid
#define TANH tanh
#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif

const fg_kernels fg_kernels_avx2 = {
    gates_lbr_f32_avx2, gates_rb1_f32_avx2, gates_rb2_f32_avx2,
    gates_lbr_f64_avx2, gates_rb1_f64_avx2, gates_rb2_f64_avx2,
};

#endif
