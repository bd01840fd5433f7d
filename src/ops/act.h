/* Fused activations: the epilogue that Conv, Gemm, MatMul (and any other producer the fusion pass picks)
 * apply to their output after the main computation. See keel_act in graph/ir.h for the parameters. */
#ifndef KEEL_OPS_ACT_H
#define KEEL_OPS_ACT_H

#include <stddef.h>

#include "graph/ir.h"

/* Apply `act` in place to n floats. alpha/beta: LeakyRelu alpha; Clip min (alpha) and max (beta);
 * HardSigmoid alpha and beta. GELU is the exact (erf) form. KEEL_ACT_NONE does nothing. */
void keel_act_apply_f32(float *p, size_t n, keel_act act, float alpha, float beta);
/* y = x * Phi(x) (exact GELU, erf form) for n floats; x == y allowed. Vectorizable: erfc by Abramowitz-Stegun
 * 7.1.26 (absolute error 1.5e-7) times the shared fast expf, so the negative tail keeps its relative accuracy
 * (no 1 + erf(x) cancellation). Within about 2e-7 * |x| of the libm form. */
void keel_gelu_f32(const float *x, float *y, size_t n);
/* Same for float64 data (parameters are still the float node fields). */
void keel_act_apply_f64(double *p, size_t n, keel_act act, float alpha, float beta);

#endif
