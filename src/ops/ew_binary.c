/* Binary elementwise kernels with numpy broadcasting: arithmetic, comparisons, logic, bit ops, PRelu.
 *
 * Every op is an expression OPX(T, W, x, y) over the compute type T (float for float16/bfloat16) and, for
 * integers, the unsigned type W that arithmetic wraps in (so overflow is defined). EW_BIN_ROWS walks the
 * broadcast rows (ops/broadcast.h); inside a row each operand is contiguous or a single repeated element,
 * and the four combinations get their own loop so the same-shape and tensor-scalar cases vectorize. */
/* The build's -O2 uses GCC's "very cheap" vectorizer cost model, which skips loops that need alias
 * checks (every kernel here, since outputs may alias inputs). These loops are what -O3 is for. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3")
#endif
#include <string.h>
#include <tgmath.h>

#include "ops/broadcast.h"
#include "ops/ew_kernels.h"
#include "ops/ew_types.h"

/* Rows of y = OPX(a, b) with storage types TA/TB/TO, compute types CA/CB, loads/store, wrap type W. */
#define EW_BIN_ROWS(TA, TB, TO, CA, CB, LDA, LDB, ST, W, OPX)                        \
  do {                                                                              \
    const TA *A_ = (const TA *)Av;                                                  \
    const TB *B_ = (const TB *)Bv;                                                  \
    TO *O_ = (TO *)Ov;                                                              \
    const int64_t n_ = bcp->inner;                                                  \
    const int sa_ = bcp->inner_step[0], sb_ = bcp->inner_step[1];                   \
    keel_bcast_iter it_;                                                            \
    if (keel_bcast_begin(bcp, &it_)) do {                                           \
        const TA *pa = A_ + it_.off[0];                                             \
        const TB *pb = B_ + it_.off[1];                                             \
        TO *po = O_ + it_.out;                                                      \
        if (sa_ && sb_) {                                                           \
          for (int64_t i = 0; i < n_; i++) {                                        \
            const CA u = LDA(pa[i]);                                                \
            const CB v = LDB(pb[i]);                                                \
            po[i] = ST(OPX(CA, W, u, v));                                           \
          }                                                                         \
        } else if (sa_) {                                                           \
          const CB v = LDB(pb[0]);                                                  \
          for (int64_t i = 0; i < n_; i++) {                                        \
            const CA u = LDA(pa[i]);                                                \
            po[i] = ST(OPX(CA, W, u, v));                                           \
          }                                                                         \
        } else if (sb_) {                                                           \
          const CA u = LDA(pa[0]);                                                  \
          for (int64_t i = 0; i < n_; i++) {                                        \
            const CB v = LDB(pb[i]);                                                \
            po[i] = ST(OPX(CA, W, u, v));                                           \
          }                                                                         \
        } else {                                                                    \
          const CA u = LDA(pa[0]);                                                  \
          const CB v = LDB(pb[0]);                                                  \
          const TO r_ = ST(OPX(CA, W, u, v));                                       \
          for (int64_t i = 0; i < n_; i++) po[i] = r_;                              \
        }                                                                           \
      } while (keel_bcast_next(bcp, &it_));                                         \
  } while (0)

/* Each (op, dtype) pair gets its own row function: one small function per loop nest vectorizes reliably,
 * where the same loops inlined into one big dispatch function did not (measured 3x slower). */
#define EW_ROWS_FN(NAME, T, TO, CT, LD, ST, W, OPX)                                      \
  static void NAME(const keel_bcast *bcp, const void *Av, const void *Bv, void *Ov) {    \
    EW_BIN_ROWS(T, T, TO, CT, CT, LD, LD, ST, W, OPX);                                   \
  }
/* Same dtype in and out: definition, then dispatch case. */
#define EW_DEF_SAME(ENUM, T, CT, LD, ST, W, OPX) EW_ROWS_FN(same_##OPX##_##ENUM, T, T, CT, LD, ST, W, OPX)
#define EW_SAME(ENUM, T, CT, LD, ST, W, OPX)             \
  case ENUM:                                             \
    same_##OPX##_##ENUM(&bc, a->data, b->data, y->data); \
    break;
/* Bool out. */
#define EW_TOBOOL(v) ((uint8_t)((v) != 0))
#define EW_DEF_CMP(ENUM, T, CT, LD, ST, W, OPX) EW_ROWS_FN(cmp_##OPX##_##ENUM, T, uint8_t, CT, LD, EW_TOBOOL, W, OPX)
#define EW_CMP(ENUM, T, CT, LD, ST, W, OPX)             \
  case ENUM:                                            \
    cmp_##OPX##_##ENUM(&bc, a->data, b->data, y->data); \
    break;

/* ---- the op expressions ---- */
#define ADD_F(T, W, x, y) ((x) + (y))
#define SUB_F(T, W, x, y) ((x) - (y))
#define MUL_F(T, W, x, y) ((x) * (y))
#define DIV_F(T, W, x, y) ((x) / (y))
#define ADD_I(T, W, x, y) ((T)((W)(x) + (W)(y)))
#define SUB_I(T, W, x, y) ((T)((W)(x) - (W)(y)))
#define MUL_I(T, W, x, y) ((T)((W)(x) * (W)(y)))
/* Integer division truncates (C semantics, as the spec's reference); x/0 gives 0 instead of a trap and
 * MIN/-1 wraps. */
#define DIV_S(T, W, x, y) ((y) == 0 ? (T)0 : ((y) == -1 ? (T)(0 - (W)(x)) : (T)((x) / (y))))
#define DIV_U(T, W, x, y) ((y) == 0 ? (T)0 : (T)((x) / (y)))

/* Mod with fmod=0: the result takes the divisor's sign (Python %); fmod=1: the dividend's (C fmod). */
static inline float ew_pymod_f(float x, float y) {
  float r = fmod(x, y);
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}
static inline double ew_pymod_d(double x, double y) {
  double r = fmod(x, y);
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}
static inline int64_t ew_pymod_i(int64_t x, int64_t y) {
  if (y == 0 || y == -1) return 0;
  int64_t r = x % y;
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}
#define MOD_F(T, W, x, y) _Generic((x), float: ew_pymod_f, default: ew_pymod_d)((x), (y))
#define FMOD_F(T, W, x, y) ((T)fmod((x), (y)))
#define MOD_S(T, W, x, y) ((T)ew_pymod_i((x), (y)))
#define FMOD_S(T, W, x, y) ((y) == 0 || (y) == -1 ? (T)0 : (T)((x) % (y)))
#define MOD_U(T, W, x, y) ((y) == 0 ? (T)0 : (T)((x) % (y)))
#define FMOD_U(T, W, x, y) MOD_U(T, W, x, y)

/* Max/Min propagate NaN from either side (as numpy's maximum/minimum). */
#define MAX_F(T, W, x, y) (((x) > (y) || (x) != (x)) ? (x) : (y))
#define MIN_F(T, W, x, y) (((x) < (y) || (x) != (x)) ? (x) : (y))
#define MAX_I(T, W, x, y) ((x) > (y) ? (x) : (y))
#define MIN_I(T, W, x, y) ((x) < (y) ? (x) : (y))

/* Integer power by squaring in wrapping arithmetic; negative exponents truncate like (int)pow(x, y). */
static inline uint64_t ew_ipow_u(uint64_t x, uint64_t e) {
  uint64_t r = 1;
  while (e) {
    if (e & 1) r *= x;
    x *= x;
    e >>= 1;
  }
  return r;
}
static inline int64_t ew_ipow_s(int64_t x, int64_t e) {
  if (e < 0) return x == 1 ? 1 : (x == -1 ? ((e & 1) ? -1 : 1) : 0);
  return (int64_t)ew_ipow_u((uint64_t)x, (uint64_t)e);
}
#define POW_F(T, W, x, y) ((T)pow((x), (y)))
#define POW_S(T, W, x, y) ((T)ew_ipow_s((x), (y)))
#define POW_U(T, W, x, y) ((T)ew_ipow_u((x), (y)))

#define BITAND_I(T, W, x, y) ((T)((x) & (y)))
#define BITOR_I(T, W, x, y) ((T)((x) | (y)))
#define BITXOR_I(T, W, x, y) ((T)((x) ^ (y)))
#define SHL_U(T, W, x, y) ((y) >= sizeof(T) * 8 ? (T)0 : (T)((W)(x) << (y)))
#define SHR_U(T, W, x, y) ((y) >= sizeof(T) * 8 ? (T)0 : (T)((x) >> (y)))

#define AND_B(T, W, x, y) ((T)(((x) != 0) & ((y) != 0)))
#define OR_B(T, W, x, y) ((T)(((x) != 0) | ((y) != 0)))
#define XOR_B(T, W, x, y) ((T)(((x) != 0) ^ ((y) != 0)))

#define EQ_X(T, W, x, y) ((x) == (y))
#define LT_X(T, W, x, y) ((x) < (y))
#define LE_X(T, W, x, y) ((x) <= (y))
#define GT_X(T, W, x, y) ((x) > (y))
#define GE_X(T, W, x, y) ((x) >= (y))
/* Bools compare as 0/1 whatever nonzero byte they hold. */
#define EQ_B(T, W, x, y) (((x) != 0) == ((y) != 0))

#define PRELU_F(T, W, x, y) ((x) < 0 ? (y) * (x) : (x))
#define PRELU_S(T, W, x, y) ((x) < 0 ? (T)((W)(y) * (W)(x)) : (x))
#define PRELU_U(T, W, x, y) ((void)(y), (x))

/* Dispatch one op over type groups: F float types, S signed ints, U unsigned ints, B bool. */
#define EW_ARITH(CASE, F, S, U)     \
  switch (dt) {                     \
    EW_FLOAT_TYPES(CASE, F)         \
    EW_SINT_TYPES(CASE, S)          \
    EW_UINT_TYPES(CASE, U)          \
    default:                        \
      goto bad;                     \
  }                                 \
  break

/* The row functions, mirroring the dispatch in keel_ew_binary (a missing one fails to compile, an extra one
 * is an unused-function error). */
#define EW_DEFS3(DEF, F, S, U) EW_FLOAT_TYPES(DEF, F) EW_SINT_TYPES(DEF, S) EW_UINT_TYPES(DEF, U)
#define EW_DEFS_INT(DEF, I) EW_SINT_TYPES(DEF, I) EW_UINT_TYPES(DEF, I)
EW_DEFS3(EW_DEF_SAME, ADD_F, ADD_I, ADD_I)
EW_DEFS3(EW_DEF_SAME, SUB_F, SUB_I, SUB_I)
EW_DEFS3(EW_DEF_SAME, MUL_F, MUL_I, MUL_I)
EW_DEFS3(EW_DEF_SAME, DIV_F, DIV_S, DIV_U)
EW_DEFS3(EW_DEF_SAME, POW_F, POW_S, POW_U)
EW_DEFS3(EW_DEF_SAME, MOD_F, MOD_S, MOD_U)
EW_DEFS3(EW_DEF_SAME, FMOD_F, FMOD_S, FMOD_U)
EW_DEFS3(EW_DEF_SAME, MAX_F, MAX_I, MAX_I)
EW_DEFS3(EW_DEF_SAME, MIN_F, MIN_I, MIN_I)
EW_DEFS3(EW_DEF_SAME, PRELU_F, PRELU_S, PRELU_U)
EW_DEFS_INT(EW_DEF_SAME, BITAND_I)
EW_DEFS_INT(EW_DEF_SAME, BITOR_I)
EW_DEFS_INT(EW_DEF_SAME, BITXOR_I)
EW_UINT_TYPES(EW_DEF_SAME, SHL_U)
EW_UINT_TYPES(EW_DEF_SAME, SHR_U)
EW_BOOL_TYPES(EW_DEF_SAME, AND_B)
EW_BOOL_TYPES(EW_DEF_SAME, OR_B)
EW_BOOL_TYPES(EW_DEF_SAME, XOR_B)
EW_DEFS3(EW_DEF_CMP, EQ_X, EQ_X, EQ_X)
EW_BOOL_TYPES(EW_DEF_CMP, EQ_B)
EW_DEFS3(EW_DEF_CMP, LT_X, LT_X, LT_X)
EW_DEFS3(EW_DEF_CMP, LE_X, LE_X, LE_X)
EW_DEFS3(EW_DEF_CMP, GT_X, GT_X, GT_X)
EW_DEFS3(EW_DEF_CMP, GE_X, GE_X, GE_X)

/* ---- Pow with mismatched base/exponent dtypes: element loads through double / int64. ---- */
static inline bool ew_is_float(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT64 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16;
}
static inline double ew_load_f64(keel_dtype t, const void *p, int64_t i) {
  switch (t) {
    case KEEL_FLOAT32: return ((const float *)p)[i];
    case KEEL_FLOAT64: return ((const double *)p)[i];
    case KEEL_FLOAT16: return ew_h2f(((const uint16_t *)p)[i]);
    case KEEL_BFLOAT16: return ew_bf2f(((const uint16_t *)p)[i]);
    case KEEL_INT8: return ((const int8_t *)p)[i];
    case KEEL_INT16: return ((const int16_t *)p)[i];
    case KEEL_INT32: return ((const int32_t *)p)[i];
    case KEEL_INT64: return (double)((const int64_t *)p)[i];
    case KEEL_UINT8: return ((const uint8_t *)p)[i];
    case KEEL_UINT16: return ((const uint16_t *)p)[i];
    case KEEL_UINT32: return ((const uint32_t *)p)[i];
    case KEEL_UINT64: return (double)((const uint64_t *)p)[i];
    default: return 0;
  }
}
static inline int64_t ew_load_i64(keel_dtype t, const void *p, int64_t i) {
  switch (t) {
    case KEEL_INT8: return ((const int8_t *)p)[i];
    case KEEL_INT16: return ((const int16_t *)p)[i];
    case KEEL_INT32: return ((const int32_t *)p)[i];
    case KEEL_INT64: return ((const int64_t *)p)[i];
    case KEEL_UINT8: return ((const uint8_t *)p)[i];
    case KEEL_UINT16: return ((const uint16_t *)p)[i];
    case KEEL_UINT32: return ((const uint32_t *)p)[i];
    case KEEL_UINT64: return (int64_t)((const uint64_t *)p)[i];
    default: return 0;
  }
}

static keel_status *pow_mixed(const keel_bcast *bcp, const keel_view *a, const keel_view *b, keel_view *y) {
  const keel_dtype ta = a->dtype, tb = b->dtype;
  const bool int_int = !ew_is_float(ta) && !ew_is_float(tb);
  keel_bcast_iter it;
  if (!keel_bcast_begin(bcp, &it)) return NULL;
  const int64_t n = bcp->inner, sa = bcp->inner_step[0], sb = bcp->inner_step[1];
  do {
    for (int64_t i = 0; i < n; i++) {
      const int64_t ia = it.off[0] + i * sa, ib = it.off[1] + i * sb, io = it.out + i;
      if (int_int) {
        int64_t r = ew_ipow_s(ew_load_i64(ta, a->data, ia), ew_load_i64(tb, b->data, ib));
        switch (ta) {
          case KEEL_INT32: ((int32_t *)y->data)[io] = (int32_t)r; break;
          case KEEL_INT64: ((int64_t *)y->data)[io] = r; break;
          default: break;
        }
        continue;
      }
      double r = pow(ew_load_f64(ta, a->data, ia), ew_load_f64(tb, b->data, ib));
      switch (ta) {
        case KEEL_FLOAT32: ((float *)y->data)[io] = (float)r; break;
        case KEEL_FLOAT64: ((double *)y->data)[io] = r; break;
        case KEEL_FLOAT16: ((uint16_t *)y->data)[io] = ew_f2h((float)r); break;
        case KEEL_BFLOAT16: ((uint16_t *)y->data)[io] = ew_f2bf((float)r); break;
        case KEEL_INT32: ((int32_t *)y->data)[io] = EW_F2I(int32_t, r); break;
        case KEEL_INT64: ((int64_t *)y->data)[io] = EW_F2I(int64_t, r); break;
        default: break;
      }
    }
  } while (keel_bcast_next(bcp, &it));
  return NULL;
}

keel_status *keel_ew_binary(ew_binary_op op, const keel_view *a, const keel_view *b, keel_view *y) {
  const int64_t *dims[2] = {a->dims, b->dims};
  const int nd[2] = {a->ndim, b->ndim};
  keel_bcast bc;
  KEEL_TRY(keel_bcast_init(&bc, y->dims, y->ndim, dims, nd, 2));
  if (bc.numel == 0) return NULL;
  if (!a->data || !b->data || !y->data) return keel_error(KEEL_INTERNAL, "missing tensor data");
  const keel_dtype dt = a->dtype;
  if (b->dtype != dt && op != EW_POW) goto bad;
  if (op == EW_POW && b->dtype != dt) {
    if (y->dtype != dt) goto bad;
    if (dt != KEEL_FLOAT32 && dt != KEEL_FLOAT64 && dt != KEEL_FLOAT16 && dt != KEEL_BFLOAT16 &&
        dt != KEEL_INT32 && dt != KEEL_INT64)
      goto bad;
    if (!ew_is_float(b->dtype) && (b->dtype == KEEL_BOOL || keel_dtype_size(b->dtype) == 0)) goto bad;
    if (b->dtype == KEEL_BOOL || b->dtype == KEEL_STRING) goto bad;
    return pow_mixed(&bc, a, b, y);
  }
  const bool cmp = op == EW_EQ || op == EW_LT || op == EW_LE || op == EW_GT || op == EW_GE;
  if (y->dtype != (cmp ? KEEL_BOOL : dt)) goto bad;

  switch (op) {
    case EW_ADD:
      EW_ARITH(EW_SAME, ADD_F, ADD_I, ADD_I);
    case EW_SUB:
      EW_ARITH(EW_SAME, SUB_F, SUB_I, SUB_I);
    case EW_MUL:
      EW_ARITH(EW_SAME, MUL_F, MUL_I, MUL_I);
    case EW_DIV:
      EW_ARITH(EW_SAME, DIV_F, DIV_S, DIV_U);
    case EW_POW:
      if (dt == KEEL_FLOAT32 && bc.inner_step[1] == 0 && bc.ndim == 1 && ((const float *)b->data)[0] == 2.0f) {
        /* x^2 is common (variance in normalization layers) and exact as x*x. */
        const float *pa = a->data;
        float *po = y->data;
        for (int64_t i = 0; i < bc.numel; i++) po[i] = pa[i] * pa[i];
        return NULL;
      }
      EW_ARITH(EW_SAME, POW_F, POW_S, POW_U);
    case EW_MOD:
      EW_ARITH(EW_SAME, MOD_F, MOD_S, MOD_U);
    case EW_FMOD:
      EW_ARITH(EW_SAME, FMOD_F, FMOD_S, FMOD_U);
    case EW_MAX:
      EW_ARITH(EW_SAME, MAX_F, MAX_I, MAX_I);
    case EW_MIN:
      EW_ARITH(EW_SAME, MIN_F, MIN_I, MIN_I);
    case EW_PRELU:
      EW_ARITH(EW_SAME, PRELU_F, PRELU_S, PRELU_U);
    case EW_BITAND:
      switch (dt) {
        EW_SINT_TYPES(EW_SAME, BITAND_I)
        EW_UINT_TYPES(EW_SAME, BITAND_I)
        default:
          goto bad;
      }
      break;
    case EW_BITOR:
      switch (dt) {
        EW_SINT_TYPES(EW_SAME, BITOR_I)
        EW_UINT_TYPES(EW_SAME, BITOR_I)
        default:
          goto bad;
      }
      break;
    case EW_BITXOR:
      switch (dt) {
        EW_SINT_TYPES(EW_SAME, BITXOR_I)
        EW_UINT_TYPES(EW_SAME, BITXOR_I)
        default:
          goto bad;
      }
      break;
    case EW_SHL:
      switch (dt) {
        EW_UINT_TYPES(EW_SAME, SHL_U)
        default:
          goto bad;
      }
      break;
    case EW_SHR:
      switch (dt) {
        EW_UINT_TYPES(EW_SAME, SHR_U)
        default:
          goto bad;
      }
      break;
    case EW_AND:
      switch (dt) {
        EW_BOOL_TYPES(EW_SAME, AND_B)
        default:
          goto bad;
      }
      break;
    case EW_OR:
      switch (dt) {
        EW_BOOL_TYPES(EW_SAME, OR_B)
        default:
          goto bad;
      }
      break;
    case EW_XOR:
      switch (dt) {
        EW_BOOL_TYPES(EW_SAME, XOR_B)
        default:
          goto bad;
      }
      break;
    case EW_EQ:
      switch (dt) {
        EW_FLOAT_TYPES(EW_CMP, EQ_X)
        EW_SINT_TYPES(EW_CMP, EQ_X)
        EW_UINT_TYPES(EW_CMP, EQ_X)
        EW_BOOL_TYPES(EW_CMP, EQ_B)
        default:
          goto bad;
      }
      break;
    case EW_LT:
      EW_ARITH(EW_CMP, LT_X, LT_X, LT_X);
    case EW_LE:
      EW_ARITH(EW_CMP, LE_X, LE_X, LE_X);
    case EW_GT:
      EW_ARITH(EW_CMP, GT_X, GT_X, GT_X);
    case EW_GE:
      EW_ARITH(EW_CMP, GE_X, GE_X, GE_X);
    case EW_BINARY_COUNT:
      goto bad;
  }
  return NULL;
bad:
  return keel_error(KEEL_UNSUPPORTED, "unsupported dtypes %s, %s -> %s for this operator", keel_dtype_name(a->dtype),
                    keel_dtype_name(b->dtype), keel_dtype_name(y->dtype));
}

void keel_ew_scale(keel_view *y, double s) {
  const int64_t n = keel_view_numel(y);
  switch (y->dtype) {
    case KEEL_FLOAT32: {
      float *p = y->data, f = (float)s;
      for (int64_t i = 0; i < n; i++) p[i] *= f;
      break;
    }
    case KEEL_FLOAT64: {
      double *p = y->data;
      for (int64_t i = 0; i < n; i++) p[i] *= s;
      break;
    }
    case KEEL_FLOAT16: {
      uint16_t *p = y->data;
      for (int64_t i = 0; i < n; i++) p[i] = ew_f2h(ew_h2f(p[i]) * (float)s);
      break;
    }
    case KEEL_BFLOAT16: {
      uint16_t *p = y->data;
      for (int64_t i = 0; i < n; i++) p[i] = ew_f2bf(ew_bf2f(p[i]) * (float)s);
      break;
    }
    default:
      break;
  }
}

keel_status *keel_ew_broadcast_copy(const keel_view *x, keel_view *y) {
  const size_t es = keel_dtype_size(x->dtype);
  if (es == 0 || x->dtype != y->dtype)
    return keel_error(KEEL_UNSUPPORTED, "copy: dtype %s -> %s", keel_dtype_name(x->dtype), keel_dtype_name(y->dtype));
  const int64_t *dims[1] = {x->dims};
  const int nd[1] = {x->ndim};
  keel_bcast bc;
  KEEL_TRY(keel_bcast_init(&bc, y->dims, y->ndim, dims, nd, 1));
  if (bc.numel == 0) return NULL;
  if (!x->data || !y->data) return keel_error(KEEL_INTERNAL, "missing tensor data");
  keel_bcast_iter it;
  keel_bcast_begin(&bc, &it);
  const char *src = x->data;
  char *dst = y->data;
  do {
    if (bc.inner_step[0]) {
      if (dst + it.out * es != src + it.off[0] * es)
        memmove(dst + it.out * es, src + it.off[0] * es, (size_t)bc.inner * es);
    } else {
      for (int64_t i = 0; i < bc.inner; i++) memcpy(dst + (it.out + i) * es, src + it.off[0] * es, es);
    }
  } while (keel_bcast_next(&bc, &it));
  return NULL;
}
