/* kernels_generic.c: the portable kernel set, for any CPU (and the reference the vector set is held
 * against in the tests). The sites below are the template instantiations of templates.h. */
#include "templates.h"
#include "activations.h"

/* the gate math of the kernels below (gate_math_f32, gate_math_f64) */
#define REAL float
#define SFX f32
#include "gates_impl.h"
#define REAL double
#define SFX f64
#include "gates_impl.h"

/* step_lbr_f32_generic, step_rb1_f32_generic, step_rb2_f32_generic, project_f32_generic */
#define REAL float
#define SFX f32
#define ISA generic
#include "kernels_impl.h"

/* step_lbr_f64_generic, step_rb1_f64_generic, step_rb2_f64_generic, project_f64_generic */
#define REAL double
#define SFX f64
#define ISA generic
#include "kernels_impl.h"

/* int8 weights, the plain integer panel product:
 * step_lbr_i8_generic, step_rb1_i8_generic, step_rb2_i8_generic, project_i8_generic, quantize_i8_generic */
#define ISA generic
#define CODES FG_CODES_INT8
#include "kernels_int8_impl.h"

const fg_kernels fg_kernels_generic = {
    .step_lbr_f32 = step_lbr_f32_generic, .step_rb1_f32 = step_rb1_f32_generic,
    .step_rb2_f32 = step_rb2_f32_generic, .project_f32 = project_f32_generic,
    .step_lbr_f64 = step_lbr_f64_generic, .step_rb1_f64 = step_rb1_f64_generic,
    .step_rb2_f64 = step_rb2_f64_generic, .project_f64 = project_f64_generic,
    .step_lbr_i8 = step_lbr_i8_generic, .step_rb1_i8 = step_rb1_i8_generic,
    .step_rb2_i8 = step_rb2_i8_generic, .project_i8 = project_i8_generic,
    .quantize_i8 = quantize_i8_generic,
    .int8_codes = FG_CODES_INT8,
};
