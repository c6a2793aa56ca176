/* fastmath.h — a vectorizable expf (and tanhf) for the CPU kernels' hot loops (softmax, SiLU,
 * soft-capping).
 * exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (two-step Cody-Waite), exp(r)
 * by a degree-6 polynomial: relative error below 2e-7 over [-87, 88]; inputs are clamped
 * to that range (exp(-87) ~ 1.6e-38: callers needing an exact 0 for masked entries set it
 * themselves). Pure arithmetic, so loops using it vectorize under `#pragma omp simd` —
 * provided the file is compiled without trapping math (the clamps are compares), which
 * the including kernels request with #pragma GCC optimize("no-trapping-math"). */
#ifndef MU_FASTMATH_H
#define MU_FASTMATH_H
#include <stdint.h>

static inline float mu_expf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round to nearest */
    float r = x - n * 0.693359375f;                 /* ln 2 = 0.693359375 - 2.12194440e-4 */
    r = r + n * 2.12194440e-4f;
    float p = 1.3981999507e-3f;                     /* Cephes expf coefficients */
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^n from the exponent bits. A NaN x skips the clamps (compares are false): its
     * exponent comes from n = 0 (converting NaN to int is undefined) and the NaN
     * reaches the result through p. n + 127 is in [1, 254] otherwise. */
    float ne = n == n ? n : 0.0f;
    union { uint32_t i; float f; } scale;
    scale.i = (uint32_t)((int32_t)ne + 127) << 23;
    return p * scale.f;
}

/* tanh(x), vectorizable, relative error below 3e-7: Cephes' tanhf — an odd polynomial
 * below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above (with mu_expf; |x| is clamped at 10,
 * where tanh is 1 in float), both computed and one selected so that loops stay branch-free.
 * NaN stays NaN. */
static inline float mu_tanhf(float x)
{
    float a = x < 0 ? -x : x;
    a = a > 10.0f ? 10.0f : a;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = 1.0f - 2.0f / (mu_expf(2.0f * a) + 1.0f);
    big = x < 0 ? -big : big;
    return a < 0.625f ? small : big;
}
#endif
