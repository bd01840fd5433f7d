/* Cast (all pairs of keel's numeric, bool and narrow dtypes) and Where.
 *
 * A cast loads the source element into its compute type (float for float16/bfloat16) and stores it with a
 * conversion chosen by the destination dtype and whether the source is floating: float -> integer goes
 * through ew_f2i64/ew_f2u64 so NaN and out-of-range values never hit C's undefined conversions. */
/* The build's -O2 uses GCC's "very cheap" vectorizer cost model, which skips loops that need alias
 * checks (every kernel here, since outputs may alias inputs). These loops are what -O3 is for. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3")
#endif
#include <string.h>

#include "ops/broadcast.h"
#include "ops/ew_kernels.h"
#include "ops/ew_types.h"

/* EW_ST_<dst>_<F|I>(v): store a value loaded from a floating (F) or integer/bool (I) source. */
#define EW_ST_KEEL_FLOAT32_F(v) ((float)(v))
#define EW_ST_KEEL_FLOAT32_I(v) ((float)(v))
#define EW_ST_KEEL_FLOAT64_F(v) ((double)(v))
#define EW_ST_KEEL_FLOAT64_I(v) ((double)(v))
#define EW_ST_KEEL_FLOAT16_F(v) ew_f2h((float)(v))
#define EW_ST_KEEL_FLOAT16_I(v) ew_f2h((float)(v))
#define EW_ST_KEEL_BFLOAT16_F(v) ew_f2bf((float)(v))
#define EW_ST_KEEL_BFLOAT16_I(v) ew_f2bf((float)(v))
#define EW_ST_KEEL_INT8_F(v) EW_F2I(int8_t, v)
#define EW_ST_KEEL_INT8_I(v) ((int8_t)(v))
#define EW_ST_KEEL_INT16_F(v) EW_F2I(int16_t, v)
#define EW_ST_KEEL_INT16_I(v) ((int16_t)(v))
#define EW_ST_KEEL_INT32_F(v) EW_F2I(int32_t, v)
#define EW_ST_KEEL_INT32_I(v) ((int32_t)(v))
#define EW_ST_KEEL_INT64_F(v) EW_F2I(int64_t, v)
#define EW_ST_KEEL_INT64_I(v) ((int64_t)(v))
#define EW_ST_KEEL_UINT8_F(v) EW_F2I(uint8_t, v)
#define EW_ST_KEEL_UINT8_I(v) ((uint8_t)(v))
#define EW_ST_KEEL_UINT16_F(v) EW_F2I(uint16_t, v)
#define EW_ST_KEEL_UINT16_I(v) ((uint16_t)(v))
#define EW_ST_KEEL_UINT32_F(v) EW_F2I(uint32_t, v)
#define EW_ST_KEEL_UINT32_I(v) ((uint32_t)(v))
#define EW_ST_KEEL_UINT64_F(v) ((uint64_t)EW_F2U64(v))
#define EW_ST_KEEL_UINT64_I(v) ((uint64_t)(v))
#define EW_ST_KEEL_BOOL_F(v) ((uint8_t)((v) != 0))
#define EW_ST_KEEL_BOOL_I(v) ((uint8_t)((v) != 0))

/* Destination list: a separate copy of the type lists, because a macro cannot expand inside itself. */
#define EW_CAST_DST_TYPES(X, A) \
  X(KEEL_FLOAT32, float, A)     \
  X(KEEL_FLOAT64, double, A)    \
  X(KEEL_FLOAT16, uint16_t, A)  \
  X(KEEL_BFLOAT16, uint16_t, A) \
  X(KEEL_INT8, int8_t, A)       \
  X(KEEL_INT16, int16_t, A)     \
  X(KEEL_INT32, int32_t, A)     \
  X(KEEL_INT64, int64_t, A)     \
  X(KEEL_UINT8, uint8_t, A)     \
  X(KEEL_UINT16, uint16_t, A)   \
  X(KEEL_UINT32, uint32_t, A)   \
  X(KEEL_UINT64, uint64_t, A)   \
  X(KEEL_BOOL, uint8_t, A)

#define EW_EXPAND(...) __VA_ARGS__
#define EW_CAST_LOOP(DENUM, DT, STT, SCT, SLD, SCLS)           \
  {                                                            \
    const STT *s_ = x->data;                                   \
    DT *d_ = y->data;                                          \
    for (int64_t i = 0; i < n; i++) {                          \
      const SCT v_ = SLD(s_[i]);                               \
      d_[i] = EW_ST_##DENUM##_##SCLS(v_);                      \
    }                                                          \
  }
#define EW_CAST_LOOP_(...) EW_CAST_LOOP(__VA_ARGS__)
#define EW_CAST_DST(DENUM, DT, SRC)                \
  case DENUM:                                      \
    EW_CAST_LOOP_(DENUM, DT, EW_EXPAND SRC) break;
#define EW_CAST_SRC(ENUM, T, CT, LD, ST, W, CLS)                 \
  case ENUM:                                                     \
    switch (y->dtype) {                                          \
      EW_CAST_DST_TYPES(EW_CAST_DST, (T, CT, LD, CLS))           \
      default:                                                   \
        goto bad;                                                \
    }                                                            \
    break;

bool keel_ew_cast_supported(keel_dtype t) {
  switch (t) {
    case KEEL_FLOAT32: case KEEL_FLOAT64: case KEEL_FLOAT16: case KEEL_BFLOAT16:
    case KEEL_INT8: case KEEL_INT16: case KEEL_INT32: case KEEL_INT64:
    case KEEL_UINT8: case KEEL_UINT16: case KEEL_UINT32: case KEEL_UINT64:
    case KEEL_BOOL:
      return true;
    default:
      return false;
  }
}

/* ---- narrow types (float8, float4, 4-/2-bit integers): element by element through double or int64 ---- */

static bool is_fp_narrow(keel_dtype t) { return keel_dtype_is_narrow(t) && t != KEEL_INT4 && t != KEEL_UINT4 &&
                                                t != KEEL_INT2 && t != KEEL_UINT2; }

/* A loaded source element: floating (d) or integer (i, or u for uint64 beyond int64). */
typedef struct cast_val {
  bool isf, isu;
  double d;
  int64_t i;
  uint64_t u;
} cast_val;

static cast_val cast_load(keel_dtype t, const void *p, int64_t k) {
  cast_val v = {0};
  switch (t) {
    case KEEL_FLOAT32: v.isf = true, v.d = ((const float *)p)[k]; break;
    case KEEL_FLOAT64: v.isf = true, v.d = ((const double *)p)[k]; break;
    case KEEL_FLOAT16: v.isf = true, v.d = ew_h2f(((const uint16_t *)p)[k]); break;
    case KEEL_BFLOAT16: v.isf = true, v.d = ew_bf2f(((const uint16_t *)p)[k]); break;
    case KEEL_INT8: v.i = ((const int8_t *)p)[k]; break;
    case KEEL_INT16: v.i = ((const int16_t *)p)[k]; break;
    case KEEL_INT32: v.i = ((const int32_t *)p)[k]; break;
    case KEEL_INT64: v.i = ((const int64_t *)p)[k]; break;
    case KEEL_UINT8: v.i = ((const uint8_t *)p)[k]; break;
    case KEEL_BOOL: v.i = ((const uint8_t *)p)[k] != 0; break;
    case KEEL_UINT16: v.i = ((const uint16_t *)p)[k]; break;
    case KEEL_UINT32: v.i = ((const uint32_t *)p)[k]; break;
    case KEEL_UINT64: v.isu = true, v.u = ((const uint64_t *)p)[k]; break;
    default:
      if (is_fp_narrow(t))
        v.isf = true, v.d = keel_fp8_to_float(t, ((const uint8_t *)p)[k]);
      else
        v.i = keel_narrow_int_value(t, ((const uint8_t *)p)[k]);
      break;
  }
  if (!v.isf && !v.isu) v.u = (uint64_t)v.i;
  return v;
}

static double cast_as_double(cast_val v) { return v.isf ? v.d : v.isu ? (double)v.u : (double)v.i; }

static void cast_store(keel_dtype t, void *p, int64_t k, cast_val v, int saturate, keel_e8m0_round rm) {
  const double d = cast_as_double(v);
  /* integer destinations: floats truncate (NaN -> 0, saturating to int64), integers wrap */
  const uint64_t bits = v.isf ? (uint64_t)ew_f2i64(d) : v.u;
  switch (t) {
    case KEEL_FLOAT32: ((float *)p)[k] = (float)d; break;
    case KEEL_FLOAT64: ((double *)p)[k] = d; break;
    case KEEL_FLOAT16: ((uint16_t *)p)[k] = ew_f2h((float)d); break;
    case KEEL_BFLOAT16: ((uint16_t *)p)[k] = ew_f2bf((float)d); break;
    case KEEL_INT8: ((int8_t *)p)[k] = (int8_t)bits; break;
    case KEEL_INT16: ((int16_t *)p)[k] = (int16_t)bits; break;
    case KEEL_INT32: ((int32_t *)p)[k] = (int32_t)bits; break;
    case KEEL_INT64: ((int64_t *)p)[k] = (int64_t)bits; break;
    case KEEL_UINT8: ((uint8_t *)p)[k] = (uint8_t)bits; break;
    case KEEL_UINT16: ((uint16_t *)p)[k] = (uint16_t)bits; break;
    case KEEL_UINT32: ((uint32_t *)p)[k] = (uint32_t)bits; break;
    case KEEL_UINT64: ((uint64_t *)p)[k] = v.isf ? ew_f2u64(d) : bits; break;
    case KEEL_BOOL: ((uint8_t *)p)[k] = v.isf ? d != 0 : bits != 0; break;
    case KEEL_FLOAT8E8M0: ((uint8_t *)p)[k] = keel_float_to_e8m0((float)d, saturate, rm); break;
    case KEEL_INT4: case KEEL_UINT4: case KEEL_INT2: case KEEL_UINT2:
      ((uint8_t *)p)[k] = keel_narrow_int_wrap(t, (int64_t)bits);
      break;
    default: ((uint8_t *)p)[k] = keel_double_to_fp8(t, d, saturate); break;
  }
}

static void cast_narrow(const keel_view *x, keel_view *y, int64_t n, int saturate, keel_e8m0_round rm) {
  for (int64_t k = 0; k < n; k++) cast_store(y->dtype, y->data, k, cast_load(x->dtype, x->data, k), saturate, rm);
}

bool keel_ew_cast_ex_supported(keel_dtype t) { return keel_ew_cast_supported(t) || keel_dtype_is_narrow(t); }

keel_status *keel_ew_cast_ex(const keel_view *x, keel_view *y, int saturate, int round_mode) {
  const int64_t n = keel_view_numel(x);
  if (n != keel_view_numel(y))
    return keel_error(KEEL_SHAPE_MISMATCH, "output has %lld elements, input %lld",
                      (long long)keel_view_numel(y), (long long)n);
  if (!keel_ew_cast_ex_supported(x->dtype) || !keel_ew_cast_ex_supported(y->dtype)) goto bad;
  if (n == 0) return NULL;
  if (!x->data || !y->data) return keel_error(KEEL_INTERNAL, "missing tensor data");
  if (keel_dtype_is_narrow(x->dtype) || keel_dtype_is_narrow(y->dtype)) {
    if (x->dtype == y->dtype) { /* same code; canonicalize (readers mask anyway) */
      const uint8_t *s_ = x->data;
      uint8_t *d_ = y->data;
      for (int64_t i = 0; i < n; i++) d_[i] = keel_narrow_canonical(x->dtype, s_[i]);
      return NULL;
    }
    cast_narrow(x, y, n, saturate, (keel_e8m0_round)round_mode);
    return NULL;
  }
  if (x->dtype == y->dtype && x->dtype != KEEL_BOOL) {
    if (x->data != y->data) memmove(y->data, x->data, (size_t)n * keel_dtype_size(x->dtype));
    return NULL;
  }
  switch (x->dtype) {
    EW_FLOAT_TYPES(EW_CAST_SRC, F)
    EW_SINT_TYPES(EW_CAST_SRC, I)
    EW_UINT_TYPES(EW_CAST_SRC, I)
    EW_BOOL_TYPES(EW_CAST_SRC, I)
    default:
      goto bad;
  }
  return NULL;
bad:
  return keel_error(KEEL_UNSUPPORTED, "cast from %s to %s is not supported", keel_dtype_name(x->dtype),
                    keel_dtype_name(y->dtype));
}

keel_status *keel_ew_cast(const keel_view *x, keel_view *y) { return keel_ew_cast_ex(x, y, 1, KEEL_E8M0_UP); }

/* ---- Where ---- */
#define EW_WHERE_ROWS(T)                                                                        \
  do {                                                                                          \
    const uint8_t *C_ = c->data;                                                                \
    const T *X_ = x->data, *Y_ = yv->data;                                                      \
    T *O_ = out->data;                                                                          \
    const int64_t n_ = bc.inner, s0 = bc.inner_step[0], s1 = bc.inner_step[1], s2 = bc.inner_step[2]; \
    keel_bcast_iter it_;                                                                        \
    keel_bcast_begin(&bc, &it_);                                                                \
    do {                                                                                        \
      const uint8_t *pc = C_ + it_.off[0];                                                      \
      const T *px = X_ + it_.off[1], *py = Y_ + it_.off[2];                                     \
      T *po = O_ + it_.out;                                                                     \
      if (s0 && s1 && s2)                                                                       \
        for (int64_t i = 0; i < n_; i++) po[i] = pc[i] ? px[i] : py[i];                         \
      else                                                                                      \
        for (int64_t i = 0; i < n_; i++) po[i] = pc[i * s0] ? px[i * s1] : py[i * s2];          \
    } while (keel_bcast_next(&bc, &it_));                                                       \
  } while (0)

keel_status *keel_ew_where(const keel_view *c, const keel_view *x, const keel_view *yv, keel_view *out) {
  if (c->dtype != KEEL_BOOL)
    return keel_error(KEEL_INVALID_MODEL, "condition must be bool, got %s", keel_dtype_name(c->dtype));
  if (x->dtype != yv->dtype || out->dtype != x->dtype)
    return keel_error(KEEL_INVALID_MODEL, "X (%s) and Y (%s) must have the same dtype",
                      keel_dtype_name(x->dtype), keel_dtype_name(yv->dtype));
  const int64_t *dims[3] = {c->dims, x->dims, yv->dims};
  const int nd[3] = {c->ndim, x->ndim, yv->ndim};
  keel_bcast bc;
  KEEL_TRY(keel_bcast_init(&bc, out->dims, out->ndim, dims, nd, 3));
  if (bc.numel == 0) return NULL;
  if (!c->data || !x->data || !yv->data || !out->data) return keel_error(KEEL_INTERNAL, "missing tensor data");
  switch (keel_dtype_size(x->dtype)) {
    case 1: EW_WHERE_ROWS(uint8_t); break;
    case 2: EW_WHERE_ROWS(uint16_t); break;
    case 4: EW_WHERE_ROWS(uint32_t); break;
    case 8: EW_WHERE_ROWS(uint64_t); break;
    default:
      return keel_error(KEEL_UNSUPPORTED, "dtype %s not supported", keel_dtype_name(x->dtype));
  }
  return NULL;
}
