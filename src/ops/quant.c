/* Operator family: quant. QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.
 *
 * Granularity is decided by the scale's shape: one element (per tensor), a 1-D vector as long as the
 * `axis` dimension (per axis), or a tensor of the input's rank whose `axis` dimension is ceil(D/block_size)
 * (blocked, opset 21+). All three are walked as [outer, C, inner] around the axis, and the scale index of
 * element (o, c, i) is o*s_o + (c/B)*s_c + i*s_i with strides that are 0 where the scale is broadcast.
 *
 * Narrow types (stored one a byte, see keel/dtype.h): int4/uint4 (opset 21+) and int2/uint2 (25+) quantize
 * like the 8-bit types with their own ranges; float8 (19+) and float4e2m1 (23+) outputs are x / scale
 * converted with round to nearest even (float8 honouring `saturate`, its zero point ignored as in the
 * reference; float4 adds its zero point's value first and always saturates).
 *
 * Arithmetic follows the ONNX reference: QuantizeLinear divides in the precision of the scale (or the
 * `precision` attribute, opset 23), rounds half to even, adds the zero point and saturates;
 * DequantizeLinear computes (x - zero_point) * scale in float32 and converts to the output dtype. */
#include <math.h>
#include <string.h>

#include "ops/op.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

#define Q_IN const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out
#define Q_RUN_ARGS const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex

/* ---------------------------------------------------------------------------------------------------- */
/* Element access. */

static bool q_is_narrow_int(keel_dtype t) {
  return t == KEEL_INT4 || t == KEEL_UINT4 || t == KEEL_INT2 || t == KEEL_UINT2;
}
static bool q_is_int_type(keel_dtype t) {
  return t == KEEL_INT8 || t == KEEL_UINT8 || t == KEEL_INT16 || t == KEEL_UINT16 || q_is_narrow_int(t);
}
/* float8 and float4 quantized types (float8e8m0 is a scale type, not a quantized one). */
static bool q_is_fp_quant(keel_dtype t) {
  return t == KEEL_FLOAT8E4M3FN || t == KEEL_FLOAT8E4M3FNUZ || t == KEEL_FLOAT8E5M2 || t == KEEL_FLOAT8E5M2FNUZ ||
         t == KEEL_FLOAT4E2M1;
}
/* First opset where a quantized type is allowed. */
static int q_min_opset(keel_dtype t) {
  switch (t) {
    case KEEL_INT8: case KEEL_UINT8: return 10;
    case KEEL_FLOAT8E4M3FN: case KEEL_FLOAT8E4M3FNUZ: case KEEL_FLOAT8E5M2: case KEEL_FLOAT8E5M2FNUZ: return 19;
    case KEEL_INT16: case KEEL_UINT16: case KEEL_INT4: case KEEL_UINT4: return 21;
    case KEEL_FLOAT4E2M1: return 23;
    case KEEL_INT2: case KEEL_UINT2: return 25;
    default: return 1 << 30;
  }
}
static bool q_is_float(keel_dtype t) {
  return t == KEEL_FLOAT32 || t == KEEL_FLOAT16 || t == KEEL_BFLOAT16 || t == KEEL_FLOAT64;
}

static void q_range(keel_dtype t, int32_t *lo, int32_t *hi) {
  switch (t) {
    case KEEL_INT8: *lo = -128, *hi = 127; break;
    case KEEL_UINT8: *lo = 0, *hi = 255; break;
    case KEEL_INT16: *lo = -32768, *hi = 32767; break;
    case KEEL_UINT16: *lo = 0, *hi = 65535; break;
    case KEEL_INT4: *lo = -8, *hi = 7; break;
    case KEEL_UINT4: *lo = 0, *hi = 15; break;
    case KEEL_INT2: *lo = -2, *hi = 1; break;
    case KEEL_UINT2: *lo = 0, *hi = 3; break;
    default: *lo = INT32_MIN, *hi = INT32_MAX; break;
  }
}

static double q_load(keel_dtype t, const void *p, int64_t i) {
  switch (t) {
    case KEEL_FLOAT32: return ((const float *)p)[i];
    case KEEL_FLOAT64: return ((const double *)p)[i];
    case KEEL_FLOAT16: return keel_half_to_float(((const uint16_t *)p)[i]);
    case KEEL_BFLOAT16: return keel_bfloat16_to_float(((const uint16_t *)p)[i]);
    case KEEL_INT8: return ((const int8_t *)p)[i];
    case KEEL_UINT8: return ((const uint8_t *)p)[i];
    case KEEL_INT16: return ((const int16_t *)p)[i];
    case KEEL_UINT16: return ((const uint16_t *)p)[i];
    case KEEL_INT32: return ((const int32_t *)p)[i];
    default: return 0;
  }
}
static int32_t q_load_int(keel_dtype t, const void *p, int64_t i) {
  switch (t) {
    case KEEL_INT8: return ((const int8_t *)p)[i];
    case KEEL_UINT8: return ((const uint8_t *)p)[i];
    case KEEL_INT16: return ((const int16_t *)p)[i];
    case KEEL_UINT16: return ((const uint16_t *)p)[i];
    case KEEL_INT32: return ((const int32_t *)p)[i];
    default: return q_is_narrow_int(t) ? keel_narrow_int_value(t, ((const uint8_t *)p)[i]) : 0;
  }
}
static void q_store_int(keel_dtype t, void *p, int64_t i, int32_t v) {
  switch (t) {
    case KEEL_INT8: ((int8_t *)p)[i] = (int8_t)v; break;
    case KEEL_UINT8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case KEEL_INT16: ((int16_t *)p)[i] = (int16_t)v; break;
    case KEEL_UINT16: ((uint16_t *)p)[i] = (uint16_t)v; break;
    default:
      if (q_is_narrow_int(t)) ((uint8_t *)p)[i] = keel_narrow_int_wrap(t, v);
      break;
  }
}
static void q_store_float(keel_dtype t, void *p, int64_t i, float v) {
  switch (t) {
    case KEEL_FLOAT32: ((float *)p)[i] = v; break;
    case KEEL_FLOAT16: ((uint16_t *)p)[i] = keel_float_to_half(v); break;
    case KEEL_BFLOAT16: ((uint16_t *)p)[i] = keel_float_to_bfloat16(v); break;
    case KEEL_FLOAT64: ((double *)p)[i] = v; break;
    default: break;
  }
}

/* Round a double to the precision of float dtype t (the division's precision). */
static double q_to_precision(keel_dtype t, double v) {
  switch (t) {
    case KEEL_FLOAT32: return (float)v;
    case KEEL_FLOAT16: return keel_half_to_float(keel_float_to_half((float)v));
    case KEEL_BFLOAT16: return keel_bfloat16_to_float(keel_float_to_bfloat16((float)v));
    default: return v;
  }
}

/* Names for ONNX data types keel cannot hold (float8, 4-bit, 2-bit...). */
static const char *onnx_type_name(int64_t t) {
  static const char *const names[] = {"float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "uint4",
                                      "int4",         "float4e2m1",     "float8e8m0", "uint2",          "int2"};
  if (t >= 17 && t <= 26) return names[t - 17];
  if (t >= 0 && t <= 16) return keel_dtype_name((keel_dtype)t);
  return "unknown";
}

/* ---------------------------------------------------------------------------------------------------- */
/* Granularity. */

typedef struct qlayout {
  int64_t outer, C, inner; /* x viewed as [outer, C, inner] around the axis */
  int64_t B;               /* block size along C (1 when not blocked) */
  int64_t s_o, s_c, s_i;   /* scale strides for o, c/B, i */
} qlayout;

/* `what` names the operator; `sc` is the scale view (shape only needed); zp (may be absent) must match. */
static keel_status *q_layout(const keel_node *n, const char *what, const keel_view *x, const keel_view *sc,
                             const keel_view *zp, qlayout *L) {
  int64_t numel = keel_view_numel(x);
  int64_t s_numel = keel_view_numel(sc);
  /* A single-element scale and zero point may differ in rank ([] and [1]), as the reference allows. */
  if (keel_view_present(zp) && !keel_shape_equal(sc->dims, sc->ndim, zp->dims, zp->ndim) &&
      !(s_numel == 1 && keel_view_numel(zp) == 1))
    return keel_error(KEEL_INVALID_MODEL, "%s: the zero point's shape differs from the scale's", what);
  int64_t block = n->opset >= 21 ? keel_attr_int(n, "block_size", 0) : 0;
  if (block < 0) return keel_error(KEEL_INVALID_MODEL, "%s: block_size %lld is negative", what, (long long)block);
  memset(L, 0, sizeof *L);
  L->B = 1;
  if (s_numel == 1) {
    /* Per tensor (a scale of shape [1] counts too, as in the reference). */
    L->outer = 1, L->C = 1, L->inner = numel;
    return NULL;
  }
  if (n->opset < 13)
    return keel_error(KEEL_INVALID_MODEL, "%s at opset %d takes a scalar scale, got %lld elements", what, n->opset,
                      (long long)s_numel);
  int axis;
  int64_t axis_attr = keel_attr_int(n, "axis", 1);
  if (!keel_axis_normalize(axis_attr, x->ndim, &axis))
    return keel_error(KEEL_INVALID_MODEL, "%s: axis %lld is out of range for an input of rank %d", what,
                      (long long)axis_attr, x->ndim);
  L->outer = 1;
  for (int d = 0; d < axis; d++) L->outer *= x->dims[d];
  L->C = x->dims[axis];
  L->inner = 1;
  for (int d = axis + 1; d < x->ndim; d++) L->inner *= x->dims[d];
  if (block == 0) {
    if (sc->ndim != 1 || sc->dims[0] != L->C)
      return keel_error(KEEL_INVALID_MODEL,
                        "%s: a per-axis scale must be 1-D of length %lld (input dim %d), got rank %d with %lld "
                        "elements",
                        what, (long long)L->C, axis, sc->ndim, (long long)s_numel);
    L->s_c = 1;
    return NULL;
  }
  /* Blocked: same rank, same dims except axis, where it is ceil(D / block). */
  if (sc->ndim != x->ndim)
    return keel_error(KEEL_INVALID_MODEL, "%s: a blocked scale must have the input's rank %d, got %d", what, x->ndim,
                      sc->ndim);
  for (int d = 0; d < x->ndim; d++) {
    int64_t want = d == axis ? (x->dims[d] + block - 1) / block : x->dims[d];
    if (sc->dims[d] != want)
      return keel_error(KEEL_INVALID_MODEL,
                        "%s: blocked scale dim %d is %lld, expected %lld (input dim %lld, block_size %lld)", what, d,
                        (long long)sc->dims[d], (long long)want, (long long)x->dims[d], (long long)block);
  }
  L->B = block;
  L->s_c = L->inner;
  L->s_o = sc->dims[axis] * L->inner;
  L->s_i = 1;
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* QuantizeLinear. */

static keel_status *quant_output_dtype(const keel_node *n, const keel_view *in, int n_in, keel_dtype *out) {
  bool has_zp = n_in > 2 && keel_view_present(&in[2]);
  int64_t od = n->opset >= 21 ? keel_attr_int(n, "output_dtype", 0) : 0;
  if (od != 0 && !q_is_int_type((keel_dtype)od) && !q_is_fp_quant((keel_dtype)od))
    return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear: output_dtype %s (%lld) is not a quantized type",
                      onnx_type_name(od), (long long)od);
  if (od != 0 && n->opset < q_min_opset((keel_dtype)od))
    return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear at opset %d does not quantize to %s", n->opset,
                      onnx_type_name(od));
  if (has_zp) {
    keel_dtype z = in[2].dtype;
    if (!q_is_int_type(z) && !q_is_fp_quant(z))
      return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear: zero point dtype %s is not a quantized type",
                        keel_dtype_name(z));
    if (n->opset < q_min_opset(z))
      return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear at opset %d does not quantize to %s", n->opset,
                        keel_dtype_name(z));
    if (od != 0 && od != (int64_t)z)
      return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear: output_dtype %s differs from the zero point's %s",
                        onnx_type_name(od), keel_dtype_name(z));
    *out = z;
  } else {
    *out = od ? (keel_dtype)od : KEEL_UINT8;
  }
  return NULL;
}

static keel_status *quant_check(const keel_node *n, const keel_view *in, int n_in, int n_out, keel_dtype *yt,
                                qlayout *L) {
  if (n_in < 2 || n_in > 3 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]))
    return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear takes x, y_scale and an optional y_zero_point");
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear has 1 output, got %d", n_out);
  keel_dtype xt = in[0].dtype, st = in[1].dtype;
  bool x_ok = xt == KEEL_FLOAT32 || xt == KEEL_INT32 ||
              (n->opset >= 19 && (xt == KEEL_FLOAT16 || xt == KEEL_BFLOAT16));
  if (!x_ok)
    return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear at opset %d does not take x of dtype %s", n->opset,
                      keel_dtype_name(xt));
  bool s_ok = st == KEEL_FLOAT32 || (n->opset >= 19 && (st == KEEL_FLOAT16 || st == KEEL_BFLOAT16)) ||
              (n->opset >= 23 && st == KEEL_INT32);
  if (!s_ok)
    return keel_error(KEEL_INVALID_MODEL, "QuantizeLinear at opset %d does not take a scale of dtype %s", n->opset,
                      keel_dtype_name(st));
  int64_t prec = n->opset >= 23 ? keel_attr_int(n, "precision", 0) : 0;
  if (prec != 0 && !q_is_float((keel_dtype)prec) && prec != KEEL_INT32)
    return keel_error(KEEL_UNSUPPORTED, "QuantizeLinear: precision %s (%lld) is not supported", onnx_type_name(prec),
                      (long long)prec);
  KEEL_TRY(quant_output_dtype(n, in, n_in, yt));
  static const keel_view none = {0};
  return q_layout(n, "QuantizeLinear", &in[0], &in[1], n_in > 2 ? &in[2] : &none, L);
}

static keel_status *quant_infer(Q_IN) {
  keel_dtype yt;
  qlayout L;
  KEEL_TRY(quant_check(n, in, n_in, n_out, &yt, &L));
  keel_view_set_shape(&out[0], yt, in[0].dims, in[0].ndim);
  return NULL;
}

/* The common case: float32 x and scale, one scale, 8-bit output. Float division then rint is exactly
 * the reference's float32 arithmetic; the loop vectorizes. */
static void quant_f32_tensor_u8(const float *restrict x, int64_t cnt, float s, int32_t zp, uint8_t *restrict y) {
  const float fz = (float)zp;
  for (int64_t i = 0; i < cnt; i++) {
    float v = rintf(x[i] / s) + fz;
    v = v < 0.f ? 0.f : v;
    v = v > 255.f ? 255.f : v;
    y[i] = (uint8_t)(int32_t)v;
  }
}
static void quant_f32_tensor_s8(const float *restrict x, int64_t cnt, float s, int32_t zp, int8_t *restrict y) {
  const float fz = (float)zp;
  for (int64_t i = 0; i < cnt; i++) {
    float v = rintf(x[i] / s) + fz;
    v = v < -128.f ? -128.f : v;
    v = v > 127.f ? 127.f : v;
    y[i] = (int8_t)(int32_t)v;
  }
}

static keel_status *quant_run(Q_RUN_ARGS) {
  keel_dtype yt;
  qlayout L;
  KEEL_TRY(quant_check(n, in, n_in, n_out, &yt, &L));
  const keel_view *x = &in[0], *sc = &in[1];
  const keel_view *zp = n_in > 2 && keel_view_present(&in[2]) ? &in[2] : NULL;
  int64_t prec = n->opset >= 23 ? keel_attr_int(n, "precision", 0) : 0;
  keel_dtype pt = prec ? (keel_dtype)prec : sc->dtype;
  /* numpy-style promotion when no precision is given: half/half stays half, anything with int32 x is
   * double, otherwise float32. */
  if (!prec) {
    if (x->dtype == KEEL_INT32 || sc->dtype == KEEL_INT32)
      pt = KEEL_FLOAT64;
    else if (x->dtype != sc->dtype)
      pt = KEEL_FLOAT32;
  }
  int32_t lo, hi;
  q_range(yt, &lo, &hi);
  int64_t total = keel_view_numel(x);
  if (total == 0) return NULL;

  if (L.C == 1 && x->dtype == KEEL_FLOAT32 && sc->dtype == KEEL_FLOAT32 && pt == KEEL_FLOAT32 &&
      (yt == KEEL_UINT8 || yt == KEEL_INT8)) {
    float s = ((const float *)sc->data)[0];
    int32_t z = zp ? q_load_int(zp->dtype, zp->data, 0) : 0;
    if (yt == KEEL_UINT8)
      quant_f32_tensor_u8(x->data, total, s, z, out[0].data);
    else
      quant_f32_tensor_s8(x->data, total, s, z, out[0].data);
    return NULL;
  }

  const bool fp_out = q_is_fp_quant(yt);
  const int saturate = n->opset >= 19 ? keel_attr_int(n, "saturate", 1) != 0 : 1;
  int64_t e = 0;
  for (int64_t o = 0; o < L.outer; o++)
    for (int64_t c = 0; c < L.C; c++) {
      int64_t sbase = o * L.s_o + (c / L.B) * L.s_c;
      for (int64_t i = 0; i < L.inner; i++, e++) {
        int64_t si = sbase + i * L.s_i;
        double s = q_load(sc->dtype, sc->data, si);
        double xv = q_load(x->dtype, x->data, e);
        if (pt != KEEL_FLOAT64) s = q_to_precision(pt, s), xv = q_to_precision(pt, xv);
        double v = q_to_precision(pt, xv / s);
        if (fp_out) {
          if (yt == KEEL_FLOAT4E2M1 && zp) /* added in the division's precision, as the reference */
            v = q_to_precision(pt, v + keel_fp8_to_float(yt, ((const uint8_t *)zp->data)[si]));
          ((uint8_t *)out[0].data)[e] = keel_double_to_fp8(yt, v, saturate);
          continue;
        }
        double r = rint(v) + (zp ? q_load_int(zp->dtype, zp->data, si) : 0);
        int32_t q;
        if (!(r >= lo)) /* also NaN, which the reference maps to the low end */
          q = lo;
        else if (r > hi)
          q = hi;
        else
          q = (int32_t)r;
        q_store_int(yt, out[0].data, e, q);
      }
    }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* DequantizeLinear. */

static keel_status *dequant_check(const keel_node *n, const keel_view *in, int n_in, int n_out, keel_dtype *yt,
                                  qlayout *L) {
  if (n_in < 2 || n_in > 3 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]))
    return keel_error(KEEL_INVALID_MODEL, "DequantizeLinear takes x, x_scale and an optional x_zero_point");
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "DequantizeLinear has 1 output, got %d", n_out);
  keel_dtype xt = in[0].dtype, st = in[1].dtype;
  bool x_ok = xt == KEEL_INT32 || ((q_is_int_type(xt) || q_is_fp_quant(xt)) && n->opset >= q_min_opset(xt));
  if (!x_ok)
    return keel_error(KEEL_INVALID_MODEL, "DequantizeLinear at opset %d does not take x of dtype %s", n->opset,
                      keel_dtype_name(xt));
  bool s_ok = st == KEEL_FLOAT32 || (n->opset >= 19 && (st == KEEL_FLOAT16 || st == KEEL_BFLOAT16));
  if (!s_ok)
    return keel_error(KEEL_INVALID_MODEL, "DequantizeLinear at opset %d does not take a scale of dtype %s", n->opset,
                      keel_dtype_name(st));
  if (n_in > 2 && keel_view_present(&in[2]) && in[2].dtype != xt)
    return keel_error(KEEL_INVALID_MODEL, "DequantizeLinear: zero point dtype %s differs from x's %s",
                      keel_dtype_name(in[2].dtype), keel_dtype_name(xt));
  int64_t od = n->opset >= 23 ? keel_attr_int(n, "output_dtype", 0) : 0;
  if (od != 0 && od != KEEL_FLOAT32 && od != KEEL_FLOAT16 && od != KEEL_BFLOAT16)
    return keel_error(KEEL_INVALID_MODEL, "DequantizeLinear: output_dtype %s (%lld) is not a float type",
                      onnx_type_name(od), (long long)od);
  *yt = od ? (keel_dtype)od : st;
  static const keel_view none = {0};
  return q_layout(n, "DequantizeLinear", &in[0], &in[1], n_in > 2 ? &in[2] : &none, L);
}

static keel_status *dequant_infer(Q_IN) {
  keel_dtype yt;
  qlayout L;
  KEEL_TRY(dequant_check(n, in, n_in, n_out, &yt, &L));
  keel_view_set_shape(&out[0], yt, in[0].dims, in[0].ndim);
  return NULL;
}

static void dequant_u8_tensor_f32(const uint8_t *restrict x, int64_t cnt, float s, int32_t zp, float *restrict y) {
  for (int64_t i = 0; i < cnt; i++) y[i] = (float)((int32_t)x[i] - zp) * s;
}
static void dequant_s8_tensor_f32(const int8_t *restrict x, int64_t cnt, float s, int32_t zp, float *restrict y) {
  for (int64_t i = 0; i < cnt; i++) y[i] = (float)((int32_t)x[i] - zp) * s;
}

static keel_status *dequant_run(Q_RUN_ARGS) {
  keel_dtype yt;
  qlayout L;
  KEEL_TRY(dequant_check(n, in, n_in, n_out, &yt, &L));
  const keel_view *x = &in[0], *sc = &in[1];
  const keel_view *zp = n_in > 2 && keel_view_present(&in[2]) ? &in[2] : NULL;
  int64_t total = keel_view_numel(x);
  if (total == 0) return NULL;
  if (L.C == 1 && sc->dtype == KEEL_FLOAT32 && yt == KEEL_FLOAT32 && (x->dtype == KEEL_UINT8 || x->dtype == KEEL_INT8)) {
    float s = ((const float *)sc->data)[0];
    int32_t z = zp ? q_load_int(zp->dtype, zp->data, 0) : 0;
    if (x->dtype == KEEL_UINT8)
      dequant_u8_tensor_f32(x->data, total, s, z, out[0].data);
    else
      dequant_s8_tensor_f32(x->data, total, s, z, out[0].data);
    return NULL;
  }
  const bool fp_in = q_is_fp_quant(x->dtype);
  int64_t e = 0;
  for (int64_t o = 0; o < L.outer; o++)
    for (int64_t c = 0; c < L.C; c++) {
      int64_t sbase = o * L.s_o + (c / L.B) * L.s_c;
      for (int64_t i = 0; i < L.inner; i++, e++) {
        int64_t si = sbase + i * L.s_i;
        /* As the reference: x converted to float32, minus the zero point, times the scale, in float32.
         * float8/float4 x: its value; the zero point is ignored (the spec requires it to be 0). */
        float d;
        if (fp_in) {
          d = keel_fp8_to_float(x->dtype, ((const uint8_t *)x->data)[e]);
        } else {
          d = (float)q_load_int(x->dtype, x->data, e);
          if (zp) d -= (float)q_load_int(zp->dtype, zp->data, si);
        }
        q_store_float(yt, out[0].data, e, d * (float)q_load(sc->dtype, sc->data, si));
      }
    }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* DynamicQuantizeLinear: uint8 asymmetric quantization with a range that always includes 0. */

static keel_status *dynq_infer(Q_IN) {
  if (n_in != 1 || !keel_view_present(&in[0]))
    return keel_error(KEEL_INVALID_MODEL, "DynamicQuantizeLinear takes 1 input, got %d", n_in);
  if (n_out < 1 || n_out > 3)
    return keel_error(KEEL_INVALID_MODEL, "DynamicQuantizeLinear has 3 outputs, got %d", n_out);
  if (in[0].dtype != KEEL_FLOAT32)
    return keel_error(KEEL_INVALID_MODEL, "DynamicQuantizeLinear takes float32 input, got %s",
                      keel_dtype_name(in[0].dtype));
  keel_view_set_shape(&out[0], KEEL_UINT8, in[0].dims, in[0].ndim);
  if (n_out > 1) keel_view_set_shape(&out[1], KEEL_FLOAT32, NULL, 0);
  if (n_out > 2) keel_view_set_shape(&out[2], KEEL_UINT8, NULL, 0);
  return NULL;
}

static keel_status *dynq_run(Q_RUN_ARGS) {
  const float *x = in[0].data;
  int64_t cnt = keel_view_numel(&in[0]);
  float mx = 0.f, mn = 0.f;
  for (int64_t i = 0; i < cnt; i++) {
    float v = x[i];
    mx = v > mx ? v : mx;
    mn = v < mn ? v : mn;
  }
  /* All in float32, as the reference: scale = (max - min) / 255, zp = rint(clamp(0 - min / scale)). */
  float scale = (mx == mn ? 1.0f : mx - mn) / 255.0f;
  float zf = 0.0f - mn / scale;
  zf = zf < 0.f ? 0.f : zf > 255.f ? 255.f : zf;
  float zpf = rintf(zf);
  if (out[0].data) {
    uint8_t *y = out[0].data;
    for (int64_t i = 0; i < cnt; i++) {
      float v = rintf(x[i] / scale) + zpf;
      v = v < 0.f ? 0.f : v;
      v = v > 255.f ? 255.f : v;
      y[i] = (uint8_t)(int32_t)v;
    }
  }
  if (n_out > 1 && out[1].data) *(float *)out[1].data = scale;
  if (n_out > 2 && out[2].data) *(uint8_t *)out[2].data = (uint8_t)(int32_t)zpf;
  return NULL;
}

/* One entry per version span: 10 (scalar scale), 13 (axis), 19 (half/bfloat16 scales; float8), 21 (block_size, output_dtype, 16-bit), 23 (precision, DequantizeLinear output_dtype). The kernels
 * read n->opset for the differences, so the spans share functions. */
const keel_op_def keel_ops_quant[] = {
    {"QuantizeLinear", "", 10, 12, quant_infer, quant_run, NULL, -1},
    {"QuantizeLinear", "", 13, 18, quant_infer, quant_run, NULL, -1},
    {"QuantizeLinear", "", 19, 20, quant_infer, quant_run, NULL, -1},
    {"QuantizeLinear", "", 21, 22, quant_infer, quant_run, NULL, -1},
    {"QuantizeLinear", "", 23, KEEL_MAX_OPSET, quant_infer, quant_run, NULL, -1},
    {"DequantizeLinear", "", 10, 12, dequant_infer, dequant_run, NULL, -1},
    {"DequantizeLinear", "", 13, 18, dequant_infer, dequant_run, NULL, -1},
    {"DequantizeLinear", "", 19, 20, dequant_infer, dequant_run, NULL, -1},
    {"DequantizeLinear", "", 21, 22, dequant_infer, dequant_run, NULL, -1},
    {"DequantizeLinear", "", 23, KEEL_MAX_OPSET, dequant_infer, dequant_run, NULL, -1},
    {"DynamicQuantizeLinear", "", 11, KEEL_MAX_OPSET, dynq_infer, dynq_run, NULL, -1},
};
const int keel_ops_quant_count = (int)(sizeof keel_ops_quant / sizeof keel_ops_quant[0]);
