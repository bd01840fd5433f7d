/* Elementwise kernels shared by ops/elementwise.c (op table, shape inference) and the ew_*.c kernel files.
 * Kernels take views whose shapes were validated by the infer functions, but they re-check what they rely
 * on for memory safety (broadcast compatibility) and never crash on odd input. */
#ifndef KEEL_OPS_EW_KERNELS_H
#define KEEL_OPS_EW_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "ops/op.h"

/* Bit masks over keel_dtype values, for dtype checks. */
#define EW_BIT(t) (1u << (unsigned)(t))
#define EW_M_FLOAT (EW_BIT(KEEL_FLOAT32) | EW_BIT(KEEL_FLOAT64) | EW_BIT(KEEL_FLOAT16) | EW_BIT(KEEL_BFLOAT16))
#define EW_M_SINT (EW_BIT(KEEL_INT8) | EW_BIT(KEEL_INT16) | EW_BIT(KEEL_INT32) | EW_BIT(KEEL_INT64))
#define EW_M_UINT (EW_BIT(KEEL_UINT8) | EW_BIT(KEEL_UINT16) | EW_BIT(KEEL_UINT32) | EW_BIT(KEEL_UINT64))
#define EW_M_INT (EW_M_SINT | EW_M_UINT)
#define EW_M_NUM (EW_M_FLOAT | EW_M_INT)
#define EW_M_BOOL EW_BIT(KEEL_BOOL)
#define EW_M_ALL (EW_M_NUM | EW_M_BOOL)

/* Scalar parameters of parameterized unary ops (activation attributes). */
typedef struct ew_params {
  float alpha, beta, gamma;
  int flag_a, flag_b; /* IsInf: detect_positive, detect_negative */
} ew_params;

/* ---- unary ---- */
typedef enum ew_unary_op {
  /* float-only math */
  EW_EXP, EW_LOG, EW_SQRT, EW_RECIPROCAL, EW_FLOOR, EW_CEIL, EW_ROUND,
  EW_SIN, EW_COS, EW_TAN, EW_ASIN, EW_ACOS, EW_ATAN, EW_SINH, EW_COSH, EW_ASINH, EW_ACOSH, EW_ATANH, EW_ERF,
  EW_SIGMOID, EW_TANH, EW_SOFTPLUS, EW_SOFTSIGN, EW_LEAKY_RELU, EW_ELU, EW_SELU, EW_CELU, EW_HARD_SIGMOID,
  EW_HARD_SWISH, EW_GELU, EW_GELU_TANH, EW_MISH, EW_THRESHOLDED_RELU,
  /* float and integer */
  EW_ABS, EW_NEG, EW_SIGN, EW_RELU, EW_SHRINK,
  /* integer only */
  EW_BITWISE_NOT,
  /* bool only */
  EW_NOT,
  /* float -> bool */
  EW_ISNAN, EW_ISINF,
  EW_UNARY_COUNT
} ew_unary_op;

/* y = op(x); y has x's shape (and dtype, or bool for IsNaN/IsInf). y may alias x. */
keel_status *keel_ew_unary(ew_unary_op op, const ew_params *p, const keel_view *x, keel_view *y);

/* Clip with bounds as typed scalars (pointers to one element of x's dtype; NULL = unbounded). */
keel_status *keel_ew_clip(const keel_view *x, const void *lo, const void *hi, keel_view *y);
/* Clip with float bounds (opset < 11 attributes; float dtypes only). */
keel_status *keel_ew_clip_f(const keel_view *x, float lo, float hi, keel_view *y);

/* ---- binary (numpy broadcasting to y's shape) ---- */
typedef enum ew_binary_op {
  EW_ADD, EW_SUB, EW_MUL, EW_DIV, EW_POW, EW_MOD, EW_FMOD, EW_MAX, EW_MIN,
  EW_BITAND, EW_BITOR, EW_BITXOR, EW_SHL, EW_SHR,
  EW_AND, EW_OR, EW_XOR,
  EW_EQ, EW_LT, EW_LE, EW_GT, EW_GE,
  EW_PRELU,
  EW_BINARY_COUNT
} ew_binary_op;

/* y = a op b. a and b have the same dtype (except EW_POW, where b may be any numeric dtype). b's dims are
 * given separately so legacy (opset < 7) axis broadcasting can pass a reshaped view. y may alias a when
 * shapes match. */
keel_status *keel_ew_binary(ew_binary_op op, const keel_view *a, const keel_view *b, keel_view *y);
/* y = y * s (float dtypes), for Mean. */
void keel_ew_scale(keel_view *y, double s);
/* Copy x into y (same dtype, y's shape; x broadcast to it). */
keel_status *keel_ew_broadcast_copy(const keel_view *x, keel_view *y);

/* ---- Cast / Where ---- */
bool keel_ew_cast_supported(keel_dtype t);
keel_status *keel_ew_cast(const keel_view *x, keel_view *y);
keel_status *keel_ew_where(const keel_view *c, const keel_view *x, const keel_view *yv, keel_view *out);

#endif
