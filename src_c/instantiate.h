/* instantiate.h: includes the template named by FG_TEMPLATE twice, for float and for double, with
 * REAL, SFX (f32/f64), SIGMOID and TANH defined to match: the C counterpart of a fused type. A DOT
 * defined before the inclusion applies to the float instantiation only (kernels_impl.h undefines it).
 * With FG_FLOAT_ONLY defined, only the float one. */
#define REAL float
#define SFX f32
#define SIGMOID fg_sigmoidf
#define TANH fg_tanhf
#include FG_TEMPLATE
#undef REAL
#undef SFX
#undef SIGMOID
#undef TANH

#ifndef FG_FLOAT_ONLY
#define REAL double
#define SFX f64
#define SIGMOID fg_sigmoid
#define TANH tanh
#include FG_TEMPLATE
#undef REAL
#undef SFX
#undef SIGMOID
#undef TANH
#endif
#undef FG_FLOAT_ONLY
#undef FG_TEMPLATE
