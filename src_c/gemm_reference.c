/* gemm_reference.c: plain-loop row-major GEMMs behind the fg_blas interface. Slow and obviously
 * correct: they let the core run (and be tested) with no BLAS at all. */
#include "templates.h"

/* reference_gemm_f32 */
#define REAL float
#define SFX f32
#include "gemm_reference_impl.h"

/* reference_gemm_f64 */
#define REAL double
#define SFX f64
#include "gemm_reference_impl.h"

static const fg_blas reference_blas = {reference_gemm_f32, reference_gemm_f64};

const fg_blas *fg_reference_blas(void) { return &reference_blas; }
