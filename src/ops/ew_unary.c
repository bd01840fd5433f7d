/* Unary elementwise kernels: math functions, activations, Clip, IsNaN/IsInf, Not, BitwiseNot.
 *
 * Each float op is written once as an expression in x (of compute type T) and the parameters p; <tgmath.h>
 * picks expf or exp for T, and macros instantiate the float32, float64, float16 and bfloat16 loops. Loops
 * are plain counted loops over contiguous data (elementwise ops never need broadcasting here). */
/* The build's -O2 uses GCC's "very cheap" vectorizer cost model, which skips loops that need alias
 * checks (every kernel here, since outputs may alias inputs). These loops are what -O3 is for. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3")
#endif
#include <string.h>
#include <tgmath.h>

#include "ops/fast_exp.h"
#include "ops/ew_kernels.h"
#include "ops/ew_types.h"

#define EW_SQRT1_2 0.70710678118654752440
#define EW_SQRT_2_PI 0.79788456080286535588

#define ew_exp(v) _Generic((v), float: keel_expf_fast, default: exp)(v)

/* Float ops: (op, expression in x, T, p). Ternaries rather than fmax/fmin so NaN passes through. */
#define EW_UNARY_FLOAT_LIST(X)                                                                        \
  X(EW_EXP, ew_exp(x))                                                                                   \
  X(EW_LOG, log(x))                                                                                   \
  X(EW_SQRT, sqrt(x))                                                                                 \
  X(EW_RECIPROCAL, (T)1 / x)                                                                          \
  X(EW_FLOOR, floor(x))                                                                               \
  X(EW_CEIL, ceil(x))                                                                                 \
  X(EW_ROUND, rint(x)) /* default rounding mode: half to even */                                      \
  X(EW_SIN, sin(x))                                                                                   \
  X(EW_COS, cos(x))                                                                                   \
  X(EW_TAN, tan(x))                                                                                   \
  X(EW_ASIN, asin(x))                                                                                 \
  X(EW_ACOS, acos(x))                                                                                 \
  X(EW_ATAN, atan(x))                                                                                 \
  X(EW_SINH, sinh(x))                                                                                 \
  X(EW_COSH, cosh(x))                                                                                 \
  X(EW_ASINH, asinh(x))                                                                               \
  X(EW_ACOSH, acosh(x))                                                                               \
  X(EW_ATANH, atanh(x))                                                                               \
  X(EW_ERF, erf(x))                                                                                   \
  X(EW_SIGMOID, (T)1 / ((T)1 + ew_exp(-x)))                                                              \
  X(EW_TANH, tanh(x))                                                                                 \
  X(EW_SOFTPLUS, x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)))                                          \
  X(EW_SOFTSIGN, x / ((T)1 + fabs(x)))                                                                \
  X(EW_LEAKY_RELU, x >= 0 ? x : (T)p.alpha * x)                                                       \
  X(EW_ELU, x >= 0 ? x : (T)p.alpha * expm1(x))                                                       \
  X(EW_SELU, x > 0 ? (T)p.gamma * x : (T)p.gamma * (T)p.alpha * expm1(x))                             \
  X(EW_CELU, x > 0 ? x : (T)p.alpha * expm1(x / (T)p.alpha))                                          \
  X(EW_HARD_SIGMOID, ew_hsig((T)p.alpha * x + (T)p.beta))                                             \
  X(EW_HARD_SWISH, x * ew_hsig(x * (T)(1.0 / 6.0) + (T)0.5))                                          \
  X(EW_GELU, (T)0.5 * x * ((T)1 + erf(x * (T)EW_SQRT1_2)))                                            \
  X(EW_GELU_TANH, (T)0.5 * x * ((T)1 + tanh((T)EW_SQRT_2_PI * (x + (T)0.044715 * x * x * x))))       \
  X(EW_MISH, x * tanh(x > 0 ? x + log1p(exp(-x)) : log1p(exp(x))))                                   \
  X(EW_THRESHOLDED_RELU, x > (T)p.alpha ? x : (T)0)                                                   \
  X(EW_ABS, fabs(x))                                                                                  \
  X(EW_NEG, -x)                                                                                       \
  X(EW_SIGN, x > 0 ? (T)1 : (x < 0 ? (T)-1 : (x == 0 ? (T)0 : x)))                                    \
  X(EW_RELU, x < 0 ? (T)0 : x)                                                                        \
  X(EW_SHRINK, x < -(T)p.alpha ? x + (T)p.beta : (x > (T)p.alpha ? x - (T)p.beta : (T)0))

/* Clamp to [0, 1]; NaN passes through. */
static inline float ew_hsig_f(float v) { return v < 0 ? 0.0f : (v > 1 ? 1.0f : v); }
static inline double ew_hsig_d(double v) { return v < 0 ? 0.0 : (v > 1 ? 1.0 : v); }
#define ew_hsig(v) _Generic((v), float: ew_hsig_f, default: ew_hsig_d)(v)

/* Instantiate float and double scalar functions and the per-dtype loop of one float op. */
#define EW_DEF_FLOAT_OP(OP, EXPR)                                                            \
  static inline float OP##_f(float x, ew_params p) {                                        \
    typedef float T;                                                                        \
    (void)p;                                                                                \
    (void)sizeof(T);                                                                        \
    return (T)(EXPR);                                                                       \
  }                                                                                         \
  static inline double OP##_d(double x, ew_params p) {                                      \
    typedef double T;                                                                       \
    (void)p;                                                                                \
    (void)sizeof(T);                                                                        \
    return (T)(EXPR);                                                                       \
  }                                                                                         \
  static void OP##_loop(keel_dtype dt, const void *in, void *out, int64_t n, ew_params p) { \
    switch (dt) {                                                                           \
      case KEEL_FLOAT32: {                                                                  \
        const float *a = in;                                                                \
        float *o = out;                                                                     \
        for (int64_t i = 0; i < n; i++) o[i] = OP##_f(a[i], p);                             \
        break;                                                                              \
      }                                                                                     \
      case KEEL_FLOAT64: {                                                                  \
        const double *a = in;                                                               \
        double *o = out;                                                                    \
        for (int64_t i = 0; i < n; i++) o[i] = OP##_d(a[i], p);                             \
        break;                                                                              \
      }                                                                                     \
      case KEEL_FLOAT16: {                                                                  \
        const uint16_t *a = in;                                                             \
        uint16_t *o = out;                                                                  \
        for (int64_t i = 0; i < n; i++) o[i] = ew_f2h(OP##_f(ew_h2f(a[i]), p)); \
        break;                                                                              \
      }                                                                                     \
      case KEEL_BFLOAT16: {                                                                 \
        const uint16_t *a = in;                                                             \
        uint16_t *o = out;                                                                  \
        for (int64_t i = 0; i < n; i++)                                                     \
          o[i] = ew_f2bf(OP##_f(ew_bf2f(a[i]), p));           \
        break;                                                                              \
      }                                                                                     \
      default:                                                                              \
        break;                                                                              \
    }                                                                                       \
  }
EW_UNARY_FLOAT_LIST(EW_DEF_FLOAT_OP)

typedef void (*ew_unary_loop)(keel_dtype dt, const void *in, void *out, int64_t n, ew_params p);

#define EW_FLOAT_ENTRY(OP, EXPR) [OP] = OP##_loop,
static const ew_unary_loop float_loops[EW_UNARY_COUNT] = {EW_UNARY_FLOAT_LIST(EW_FLOAT_ENTRY)};

/* ---- integer ops: (op, expression in x of type T, wrap type W, params p) ---- */
static inline double ew_shrink_d(double x, ew_params p) {
  return x < -(double)p.alpha ? x + p.beta : (x > (double)p.alpha ? x - p.beta : 0.0);
}

#define EW_UNARY_SINT_LIST(X)                       \
  X(EW_ABS, x < 0 ? (T)(0 - (W)x) : x)              \
  X(EW_NEG, (T)(0 - (W)x))                          \
  X(EW_SIGN, (T)((x > 0) - (x < 0)))                \
  X(EW_RELU, x < 0 ? (T)0 : x)                      \
  X(EW_SHRINK, EW_F2I(T, ew_shrink_d((double)x, p))) \
  X(EW_BITWISE_NOT, (T)~x)

#define EW_UNARY_UINT_LIST(X)                           \
  X(EW_ABS, x)                                          \
  X(EW_SIGN, (T)(x > 0))                                \
  X(EW_RELU, x)                                         \
  X(EW_SHRINK, (T)EW_F2U64(ew_shrink_d((double)x, p)))  \
  X(EW_BITWISE_NOT, (T)~x)

#define EW_INT_CASE(ENUM, TT, CT, LD, ST, WW, EXPR)     \
  case ENUM: {                                         \
    typedef TT T;                                      \
    typedef WW W;                                      \
    (void)sizeof(W);                                   \
    const T *a = in;                                   \
    T *o = out;                                        \
    for (int64_t i = 0; i < n; i++) {                  \
      T x = a[i];                                      \
      o[i] = (T)(EXPR);                                \
    }                                                  \
    break;                                             \
  }
/* Expand EW_INT_CASE for each type of a list with a fixed EXPR: needs one helper per list. */
#define EW_SINT_CASES(EXPR)                                      \
  EW_INT_CASE(KEEL_INT8, int8_t, int8_t, EW_ID, EW_ID, uint32_t, EXPR)    \
  EW_INT_CASE(KEEL_INT16, int16_t, int16_t, EW_ID, EW_ID, uint32_t, EXPR) \
  EW_INT_CASE(KEEL_INT32, int32_t, int32_t, EW_ID, EW_ID, uint32_t, EXPR) \
  EW_INT_CASE(KEEL_INT64, int64_t, int64_t, EW_ID, EW_ID, uint64_t, EXPR)
#define EW_UINT_CASES(EXPR)                                         \
  EW_INT_CASE(KEEL_UINT8, uint8_t, uint8_t, EW_ID, EW_ID, uint32_t, EXPR)    \
  EW_INT_CASE(KEEL_UINT16, uint16_t, uint16_t, EW_ID, EW_ID, uint32_t, EXPR) \
  EW_INT_CASE(KEEL_UINT32, uint32_t, uint32_t, EW_ID, EW_ID, uint32_t, EXPR) \
  EW_INT_CASE(KEEL_UINT64, uint64_t, uint64_t, EW_ID, EW_ID, uint64_t, EXPR)

#define EW_DEF_SINT_OP(OP, EXPR)                                                                 \
  static void OP##_sloop(keel_dtype dt, const void *in, void *out, int64_t n, ew_params p) { \
    (void)p;                                                                                  \
    switch (dt) {                                                                             \
      EW_SINT_CASES(EXPR)                                                                     \
      default:                                                                                \
        break;                                                                                \
    }                                                                                         \
  }
#define EW_DEF_UINT_OP(OP, EXPR)                                                                 \
  static void OP##_uloop(keel_dtype dt, const void *in, void *out, int64_t n, ew_params p) { \
    (void)p;                                                                                  \
    switch (dt) {                                                                             \
      EW_UINT_CASES(EXPR)                                                                     \
      default:                                                                                \
        break;                                                                                \
    }                                                                                         \
  }
EW_UNARY_SINT_LIST(EW_DEF_SINT_OP)
EW_UNARY_UINT_LIST(EW_DEF_UINT_OP)

#define EW_SINT_ENTRY(OP, EXPR) [OP] = OP##_sloop,
#define EW_UINT_ENTRY(OP, EXPR) [OP] = OP##_uloop,
static const ew_unary_loop sint_loops[EW_UNARY_COUNT] = {EW_UNARY_SINT_LIST(EW_SINT_ENTRY)};
static const ew_unary_loop uint_loops[EW_UNARY_COUNT] = {EW_UNARY_UINT_LIST(EW_UINT_ENTRY)};

/* ---- float -> bool ---- */
#define EW_CLASSIFY_CASES(PRED)                                                                         \
  case KEEL_FLOAT32: {                                                                                  \
    const float *a = in;                                                                                \
    for (int64_t i = 0; i < n; i++) {                                                                   \
      float x = a[i];                                                                                   \
      o[i] = (uint8_t)(PRED);                                                                           \
    }                                                                                                   \
    break;                                                                                              \
  }                                                                                                     \
  case KEEL_FLOAT64: {                                                                                  \
    const double *a = in;                                                                               \
    for (int64_t i = 0; i < n; i++) {                                                                   \
      double x = a[i];                                                                                  \
      o[i] = (uint8_t)(PRED);                                                                           \
    }                                                                                                   \
    break;                                                                                              \
  }                                                                                                     \
  case KEEL_FLOAT16: {                                                                                  \
    const uint16_t *a = in;                                                                             \
    for (int64_t i = 0; i < n; i++) {                                                                   \
      float x = ew_h2f(a[i]);                                                               \
      o[i] = (uint8_t)(PRED);                                                                           \
    }                                                                                                   \
    break;                                                                                              \
  }                                                                                                     \
  case KEEL_BFLOAT16: {                                                                                 \
    const uint16_t *a = in;                                                                             \
    for (int64_t i = 0; i < n; i++) {                                                                   \
      float x = ew_bf2f(a[i]);                                                           \
      o[i] = (uint8_t)(PRED);                                                                           \
    }                                                                                                   \
    break;                                                                                              \
  }

static void classify(ew_unary_op op, keel_dtype dt, const void *in, uint8_t *o, int64_t n, ew_params p) {
  if (op == EW_ISNAN) {
    switch (dt) {
      EW_CLASSIFY_CASES(x != x)
      default:
        break;
    }
  } else {
    const int pos = p.flag_a, neg = p.flag_b;
    switch (dt) {
      EW_CLASSIFY_CASES((pos && x == INFINITY) || (neg && x == -INFINITY))
      default:
        break;
    }
  }
}

static bool is_float(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
}
static bool is_sint(keel_dtype t) {
  return t == KEEL_INT8 || t == KEEL_INT16 || t == KEEL_INT32 || t == KEEL_INT64;
}
static bool is_uint(keel_dtype t) {
  return t == KEEL_UINT8 || t == KEEL_UINT16 || t == KEEL_UINT32 || t == KEEL_UINT64;
}

keel_status *keel_ew_unary(ew_unary_op op, const ew_params *p, const keel_view *x, keel_view *y) {
  int64_t n = keel_view_numel(x);
  if (n != keel_view_numel(y))
    return keel_error(KEEL_SHAPE_MISMATCH, "output has %lld elements, input %lld", (long long)keel_view_numel(y),
                      (long long)n);
  if (n == 0) return NULL;
  if (!x->data || !y->data) return keel_error(KEEL_INTERNAL, "missing tensor data");
  const keel_dtype dt = x->dtype;
  if (op == EW_ISNAN || op == EW_ISINF) {
    if (!is_float(dt) || y->dtype != KEEL_BOOL) goto bad;
    classify(op, dt, x->data, y->data, n, *p);
    return NULL;
  }
  if (y->dtype != dt) goto bad;
  if (op == EW_NOT) {
    if (dt != KEEL_BOOL) goto bad;
    const uint8_t *a = x->data;
    uint8_t *o = y->data;
    for (int64_t i = 0; i < n; i++) o[i] = a[i] == 0;
    return NULL;
  }
  ew_unary_loop fn = NULL;
  if (is_float(dt))
    fn = float_loops[op];
  else if (is_sint(dt))
    fn = sint_loops[op];
  else if (is_uint(dt))
    fn = uint_loops[op];
  if (!fn) goto bad;
  fn(dt, x->data, y->data, n, *p);
  return NULL;
bad:
  return keel_error(KEEL_UNSUPPORTED, "unsupported dtype %s -> %s for this operator", keel_dtype_name(dt),
                    keel_dtype_name(y->dtype));
}

/* ---- Clip ---- */
#define EW_CLIP_CASE(ENUM, TT, CT, LD, ST, WW, A)                           \
  case ENUM: {                                                           \
    const TT *a = x->data;                                               \
    TT *o = y->data;                                                     \
    const CT l = lo ? LD(*(const TT *)lo) : 0, h = hi ? LD(*(const TT *)hi) : 0; \
    const int hl = lo != NULL, hh = hi != NULL;                          \
    for (int64_t i = 0; i < n; i++) {                                    \
      CT v = LD(a[i]);                                                   \
      if (hl) v = v < l ? l : v;                                         \
      if (hh) v = v > h ? h : v;                                         \
      o[i] = ST(v);                                                      \
    }                                                                    \
    break;                                                               \
  }

keel_status *keel_ew_clip(const keel_view *x, const void *lo, const void *hi, keel_view *y) {
  int64_t n = keel_view_numel(x);
  if (n != keel_view_numel(y) || x->dtype != y->dtype)
    return keel_error(KEEL_SHAPE_MISMATCH, "output does not match input");
  if (n == 0) return NULL;
  /* The compiler vectorizes the float32 min/max loop best without the per-element flags. */
  if (x->dtype == KEEL_FLOAT32) {
    const float l = lo ? *(const float *)lo : -INFINITY, h = hi ? *(const float *)hi : INFINITY;
    const float *a = x->data;
    float *o = y->data;
    for (int64_t i = 0; i < n; i++) {
      float v = a[i] < l ? l : a[i];
      o[i] = v > h ? h : v;
    }
    return NULL;
  }
  switch (x->dtype) {
    EW_FLOAT_TYPES(EW_CLIP_CASE, _)
    EW_SINT_TYPES(EW_CLIP_CASE, _)
    EW_UINT_TYPES(EW_CLIP_CASE, _)
    default:
      return keel_error(KEEL_UNSUPPORTED, "dtype %s not supported", keel_dtype_name(x->dtype));
  }
  return NULL;
}

keel_status *keel_ew_clip_f(const keel_view *x, float lo, float hi, keel_view *y) {
  switch (x->dtype) {
    case KEEL_FLOAT32:
      return keel_ew_clip(x, &lo, &hi, y);
    case KEEL_FLOAT64: {
      double l = lo, h = hi;
      return keel_ew_clip(x, &l, &h, y);
    }
    case KEEL_FLOAT16: {
      uint16_t l = ew_f2h(lo), h = ew_f2h(hi);
      return keel_ew_clip(x, &l, &h, y);
    }
    case KEEL_BFLOAT16: {
      uint16_t l = ew_f2bf(lo), h = ew_f2bf(hi);
      return keel_ew_clip(x, &l, &h, y);
    }
    default:
      return keel_error(KEEL_UNSUPPORTED, "dtype %s not supported with attribute bounds",
                        keel_dtype_name(x->dtype));
  }
}
