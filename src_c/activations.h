/* activations.h: sigmoid and tanh written so that a compiler vectorises them (no branches, no libm
 * calls) for float, and libm's for double, where the tests ask for 1e-10 agreement.
 *
 * Included by each kernels_*.c file after it has chosen its target ISA, so each ISA gets its own copy.
 *
 * Error bound of the float versions (checked by tests/test_activations.py over a dense grid of
 * [-100, 100]): both within 1e-7 absolute of the exact functions, fg_tanhf also within 2 ulp. */
#ifndef FASTGRU_ACTIVATIONS_H
#define FASTGRU_ACTIVATIONS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) by range reduction x = n ln2 + r, |r| <= ln2/2, and the Cephes polynomial for e^r; 2^n is
 * built in the exponent bits. The clamp keeps 2^n a normal number. */
static inline float fg_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call. */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* NaN propagates through p; n itself must stay a number, since converting NaN to an integer is
     * undefined. The shift is unsigned for the same reason (a negative left shift is undefined). */
    n = n == n ? n : 0.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float fg_sigmoidf(float x) { return 1.0f / (1.0f + fg_expf(-x)); }

/* Near 0, (1 - e) / (1 + e) would cancel; there the odd Cephes polynomial is exact to float. */
static inline float fg_tanhf(float x) {
    float ax = fabsf(x);
    float x2 = x * x;
    float small = -5.70498872745e-3f;
    small = small * x2 + 2.06390887954e-2f;
    small = small * x2 - 5.37397155531e-2f;
    small = small * x2 + 1.33314422036e-1f;
    small = small * x2 - 3.33332819422e-1f;
    small = small * x2 * x + x;
    float e = fg_expf(-2.0f * ax);
    float large = copysignf((1.0f - e) / (1.0f + e), x);
    return ax < 0.625f ? small : large;
}

static inline double fg_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The activations of a value of type REAL in the templates (templates.h): the float versions above for
 * float, libm's for double. Any other type is a compile error. */
#define FG_SIGMOID(x) _Generic((x), float: fg_sigmoidf, double: fg_sigmoid)(x)
#define FG_TANH(x) _Generic((x), float: fg_tanhf, double: tanh)(x)

#endif /* FASTGRU_ACTIVATIONS_H */
