/* kernels_generic.c: the portable kernel set, for any CPU (and the reference the vector set is held
 * against in the tests). */
#include "internal.h"
#include "activations.h"

#define ISA generic

#define FG_TEMPLATE "kernels_impl.h"
#include "instantiate.h"

/* int8 weights: the float32 gate math above with the plain integer panel product */
#include "kernels_int8_impl.h"

const fg_kernels fg_kernels_generic = {
    step_lbr_f32_generic, step_rb1_f32_generic, step_rb2_f32_generic, project_f32_generic,
    step_lbr_f64_generic, step_rb1_f64_generic, step_rb2_f64_generic, project_f64_generic,
    step_lbr_i8_generic,  step_rb1_i8_generic,  step_rb2_i8_generic,  project_i8_generic,
};
