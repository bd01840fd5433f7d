/* Operator family: image (GridSample, RoiAlign, AffineGrid, Col2Im).
 * Kernels compute in double and read / write elements through ops/elem.h, so one kernel serves every
 * element type the operators allow (float16/bfloat16/float/double, and for GridSample
 * and Col2Im the integer types too). CenterCropPad lives in the tensor family. */
#include <math.h>
#include <string.h>

#include "ops/elem.h"
#include "ops/nn_internal.h"

/* ---------------------------------------------------------------- element access */

static bool num_dtype(keel_dtype t) {
  switch (t) {
    case KEEL_FLOAT32: case KEEL_FLOAT64: case KEEL_FLOAT16: case KEEL_BFLOAT16: case KEEL_INT8: case KEEL_UINT8:
    case KEEL_INT16: case KEEL_UINT16: case KEEL_INT32: case KEEL_UINT32: case KEEL_INT64: case KEEL_UINT64:
    case KEEL_BOOL:
      return true;
    default:
      return false;
  }
}

/* ---------------------------------------------------------------- GridSample */

#define GS_MAX_SP 3 /* spatial dims: 4-D and 5-D inputs (opset 20 allows more; none seen in practice) */

typedef enum { GS_LINEAR, GS_NEAREST, GS_CUBIC } gs_mode;
typedef enum { GS_ZEROS, GS_BORDER, GS_REFLECTION } gs_pad;

typedef struct gs_cfg {
  gs_mode mode;
  gs_pad pad;
  bool align;
  int r; /* spatial rank */
} gs_cfg;

static keel_status *gs_cfg_get(const keel_node *n, const keel_view *in, int n_in, gs_cfg *c) {
  KEEL_TRY(nn_need_inputs(n, n_in, 2, 2));
  if (!nn_has(in, n_in, 0) || !nn_has(in, n_in, 1)) return keel_error(KEEL_INVALID_MODEL, "inputs X and grid are required");
  const char *m = keel_attr_string(n, "mode", n->opset >= 20 ? "linear" : "bilinear");
  /* Opset 20 renamed bilinear/bicubic to linear/cubic; both spellings are accepted at every version. */
  if (!strcmp(m, "bilinear") || !strcmp(m, "linear"))
    c->mode = GS_LINEAR;
  else if (!strcmp(m, "nearest"))
    c->mode = GS_NEAREST;
  else if (!strcmp(m, "bicubic") || !strcmp(m, "cubic"))
    c->mode = GS_CUBIC;
  else
    return keel_error(KEEL_INVALID_MODEL, "unknown mode '%s'", m);
  const char *p = keel_attr_string(n, "padding_mode", "zeros");
  if (!strcmp(p, "zeros"))
    c->pad = GS_ZEROS;
  else if (!strcmp(p, "border"))
    c->pad = GS_BORDER;
  else if (!strcmp(p, "reflection"))
    c->pad = GS_REFLECTION;
  else
    return keel_error(KEEL_INVALID_MODEL, "unknown padding_mode '%s'", p);
  c->align = keel_attr_int(n, "align_corners", 0) != 0;
  const keel_view *x = &in[0], *g = &in[1];
  if (!num_dtype(x->dtype)) return keel_error(KEEL_UNSUPPORTED, "input X has dtype %s", keel_dtype_name(x->dtype));
  if (!keel_elem_is_float(g->dtype)) return keel_error(KEEL_UNSUPPORTED, "input grid has dtype %s", keel_dtype_name(g->dtype));
  c->r = x->ndim - 2;
  if (c->r < 1 || c->r > GS_MAX_SP)
    return keel_error(KEEL_UNSUPPORTED, "input X has rank %d; 3-D to %d-D is supported", x->ndim, GS_MAX_SP + 2);
  if (n->opset < 20 && c->r != 2)
    return keel_error(KEEL_INVALID_MODEL, "GridSample-%d takes a 4-D X (got rank %d)", n->opset, x->ndim);
  if (g->ndim != x->ndim)
    return keel_error(KEEL_SHAPE_MISMATCH, "grid has rank %d, X has rank %d", g->ndim, x->ndim);
  if (g->dims[g->ndim - 1] >= 0 && g->dims[g->ndim - 1] != c->r)
    return keel_error(KEEL_SHAPE_MISMATCH, "grid's last dim is %lld, expected %d", (long long)g->dims[g->ndim - 1], c->r);
  if (g->dims[0] >= 0 && x->dims[0] >= 0 && g->dims[0] != x->dims[0])
    return keel_error(KEEL_SHAPE_MISMATCH, "grid has batch %lld, X has %lld", (long long)g->dims[0], (long long)x->dims[0]);
  return NULL;
}

static keel_status *gs_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  gs_cfg c;
  KEEL_TRY(gs_cfg_get(n, in, n_in, &c));
  int64_t d[KEEL_MAX_DIMS];
  d[0] = in[0].dims[0];
  d[1] = in[0].dims[1];
  for (int i = 0; i < c.r; i++) d[2 + i] = in[1].dims[1 + i];
  KEEL_TRY(nn_check_numel(n, d, c.r + 2, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, d, c.r + 2);
  return NULL;
}

/* Reflect x by the near border until it lies in [lo, hi] (PyTorch's rule, as the ONNX reference). */
static double gs_reflect(double x, double lo, double hi) {
  const double rng = hi - lo;
  if (!(rng > 0)) return lo;
  if (x < lo) {
    double dx = lo - x, k = floor(dx / rng), r = dx - k * rng;
    return fmod(k, 2.0) == 0 ? lo + r : hi - r;
  }
  if (x > hi) {
    double dx = x - hi, k = floor(dx / rng), r = dx - k * rng;
    return fmod(k, 2.0) == 0 ? hi - r : lo + r;
  }
  return x;
}

/* Map integer index i along a dim of size d through the padding mode; -1: reads as zero. */
static inline int64_t gs_index(const gs_cfg *c, int64_t i, int64_t d, double lo, double hi) {
  if (i >= 0 && i < d) return i;
  switch (c->pad) {
    case GS_ZEROS: return -1;
    case GS_BORDER: return i < 0 ? 0 : d - 1;
    case GS_REFLECTION: {
      int64_t k = (int64_t)gs_reflect((double)i, lo, hi);
      return k < 0 ? 0 : k >= d ? d - 1 : k;
    }
  }
  return -1;
}

static void gs_cubic_coeffs(double t, double *w) {
  const double A = -0.75; /* Keys' cubic convolution, as PyTorch */
  double x = t + 1;
  w[0] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  x = t;
  w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
  x = 1 - t;
  w[2] = ((A + 2) * x - (A + 3)) * x * x + 1;
  x = 2 - t;
  w[3] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

static keel_status *gs_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                           keel_exec *ex) {
  gs_cfg c;
  KEEL_TRY(gs_cfg_get(n, in, n_in, &c));
  const keel_view *x = &in[0], *g = &in[1];
  const keel_dtype xt = x->dtype, gt = g->dtype;
  const int r = c.r;
  const int64_t N = x->dims[0], C = x->dims[1];
  int64_t isz[GS_MAX_SP], istr[GS_MAX_SP]; /* input spatial sizes and strides (elements) */
  int64_t plane = 1, opos = 1;
  for (int i = r - 1; i >= 0; i--) {
    isz[i] = x->dims[2 + i];
    istr[i] = plane;
    plane *= isz[i];
  }
  for (int i = 0; i < r; i++) opos *= g->dims[1 + i];
  double lo[GS_MAX_SP], hi[GS_MAX_SP];
  for (int i = 0; i < r; i++) {
    lo[i] = c.align ? 0.0 : -0.5;
    hi[i] = c.align ? (double)isz[i] - 1 : (double)isz[i] - 0.5;
  }
  const int taps = c.mode == GS_NEAREST ? 1 : c.mode == GS_LINEAR ? 2 : 4;
  for (int64_t b = 0; b < N; b++) {
    const char *xb = (const char *)x->data + (size_t)(b * C * plane) * keel_dtype_size(xt);
    for (int64_t p = 0; p < opos; p++) {
      /* Per spatial dim: the taps' indices (-1 = zero) and weights. */
      int64_t idx[GS_MAX_SP][4];
      double w[GS_MAX_SP][4];
      for (int i = 0; i < r; i++) {
        /* grid's last axis holds (x, y, z): reversed spatial order */
        double v = keel_elem_load(gt, g->data, (b * opos + p) * r + (r - 1 - i));
        double pos = c.align ? (v + 1) / 2.0 * (double)(isz[i] - 1) : ((v + 1) * (double)isz[i] - 1) / 2.0;
        if (c.mode == GS_NEAREST) pos = nearbyint(pos); /* half to even, as PyTorch */
        /* Linear and nearest move an outside coordinate inside first; cubic pads each of its taps instead
         * (PyTorch and ONNX Runtime do this; the ONNX reference moves the coordinate for cubic too, which
         * only differs for cubic with border / reflection padding). */
        if (c.mode != GS_CUBIC && (pos < lo[i] || pos > hi[i])) {
          if (c.pad == GS_BORDER)
            pos = pos < 0 ? 0 : pos > (double)(isz[i] - 1) ? (double)(isz[i] - 1) : pos;
          else if (c.pad == GS_REFLECTION)
            pos = gs_reflect(pos, lo[i], hi[i]);
        }
        if (pos != pos) pos = -2; /* NaN grid values sample outside */
        if (pos < -1e15) pos = -1e15; /* keep the integer conversions below defined */
        if (pos > 1e15) pos = 1e15;
        if (c.mode == GS_NEAREST) {
          idx[i][0] = gs_index(&c, (int64_t)pos, isz[i], lo[i], hi[i]);
          w[i][0] = 1;
        } else {
          double f = floor(pos), t = pos - f;
          int64_t i0 = (int64_t)f;
          if (c.mode == GS_LINEAR) {
            w[i][0] = 1 - t;
            w[i][1] = t;
            idx[i][0] = gs_index(&c, i0, isz[i], lo[i], hi[i]);
            idx[i][1] = gs_index(&c, i0 + 1, isz[i], lo[i], hi[i]);
          } else {
            gs_cubic_coeffs(t, w[i]);
            for (int k = 0; k < 4; k++) idx[i][k] = gs_index(&c, i0 - 1 + k, isz[i], lo[i], hi[i]);
          }
        }
      }
      /* Tensor product over the taps of every dim. */
      int64_t toff[64];
      double tw[64];
      int nt = 0, total = 1;
      for (int i = 0; i < r; i++) total *= taps;
      for (int k = 0; k < total; k++) {
        int64_t off = 0;
        double wk = 1;
        int kk = k;
        bool zero = false;
        for (int i = r - 1; i >= 0; i--) {
          int j = kk % taps;
          kk /= taps;
          if (idx[i][j] < 0) zero = true;
          off += idx[i][j] * istr[i];
          wk *= w[i][j];
        }
        if (zero || wk == 0) continue;
        toff[nt] = off;
        tw[nt++] = wk;
      }
      for (int64_t ch = 0; ch < C; ch++) {
        double acc = 0;
        for (int k = 0; k < nt; k++) acc += tw[k] * keel_elem_load(xt, xb, ch * plane + toff[k]);
        keel_elem_store(xt, out[0].data, (b * C + ch) * opos + p, acc);
      }
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- AffineGrid */

static keel_status *ag_dims(const keel_node *n, const keel_view *in, int n_in, int64_t *sz, int *nsz) {
  KEEL_TRY(nn_need_inputs(n, n_in, 2, 2));
  const keel_view *th = &in[0], *s = &in[1];
  if (!keel_elem_is_float(th->dtype)) return keel_error(KEEL_UNSUPPORTED, "input theta has dtype %s", keel_dtype_name(th->dtype));
  if (s->dtype != KEEL_INT64 && s->dtype != KEEL_INT32)
    return keel_error(KEEL_INVALID_MODEL, "input size has dtype %s; int64 expected", keel_dtype_name(s->dtype));
  if (s->ndim != 1 || (s->dims[0] != 4 && s->dims[0] != 5))
    return keel_error(KEEL_SHAPE_MISMATCH, "input size must have 4 or 5 elements (N, C, [D,] H, W)");
  if (!s->data) return keel_need_value(n, 1);
  *nsz = (int)s->dims[0];
  for (int i = 0; i < *nsz; i++) {
    sz[i] = keel_view_get_i64(s, i);
    if (sz[i] < 0) return keel_error(KEEL_INVALID_ARGUMENT, "size[%d] = %lld is negative", i, (long long)sz[i]);
  }
  const int r = *nsz - 2;
  if (th->ndim != 3 || (th->dims[0] >= 0 && th->dims[0] != sz[0]) || th->dims[1] != r || th->dims[2] != r + 1) {
    char buf[64];
    return keel_error(KEEL_SHAPE_MISMATCH, "theta has shape %s; expected [%lld,%d,%d]",
                      keel_shape_format(th->dims, th->ndim, buf, sizeof buf), (long long)sz[0], r, r + 1);
  }
  return NULL;
}

static keel_status *ag_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t sz[5];
  int nsz = 0;
  KEEL_TRY(ag_dims(n, in, n_in, sz, &nsz));
  int64_t d[5];
  d[0] = sz[0];
  for (int i = 2; i < nsz; i++) d[i - 1] = sz[i];
  d[nsz - 1] = nsz - 2;
  KEEL_TRY(nn_check_numel(n, d, nsz, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, d, nsz);
  return NULL;
}

static keel_status *ag_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                           keel_exec *ex) {
  int64_t sz[5];
  int nsz = 0;
  KEEL_TRY(ag_dims(n, in, n_in, sz, &nsz));
  const bool align = keel_attr_int(n, "align_corners", 0) != 0;
  const int r = nsz - 2;
  const keel_dtype t = in[0].dtype;
  int64_t sp = 1;
  for (int i = 0; i < r; i++) sp *= sz[2 + i];
  int64_t o = 0;
  for (int64_t b = 0; b < sz[0]; b++) {
    const int64_t tb = b * r * (r + 1);
    double th[3][4];
    for (int i = 0; i < r; i++)
      for (int j = 0; j <= r; j++) th[i][j] = keel_elem_load(t, in[0].data, tb + i * (r + 1) + j);
    for (int64_t p = 0; p < sp; p++) {
      /* homogeneous base point (x, y, [z,] 1): x runs over the last dim */
      double base[4];
      int64_t q = p;
      for (int i = r - 1; i >= 0; i--) {
        const int64_t s = sz[2 + i], k = q % s;
        q /= s;
        double v;
        if (align)
          v = s > 1 ? -1.0 + 2.0 * (double)k / (double)(s - 1) : -1.0;
        else
          v = -1.0 + (2.0 * (double)k + 1.0) / (double)s;
        base[r - 1 - i] = v;
      }
      base[r] = 1;
      for (int i = 0; i < r; i++) {
        double acc = 0;
        for (int j = 0; j <= r; j++) acc += th[i][j] * base[j];
        keel_elem_store(t, out[0].data, o++, acc);
      }
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------- RoiAlign */

static keel_status *roi_check(const keel_node *n, const keel_view *in, int n_in, int64_t *oh, int64_t *ow) {
  KEEL_TRY(nn_need_inputs(n, n_in, 3, 3));
  const keel_view *x = &in[0], *rois = &in[1], *bi = &in[2];
  if (!keel_elem_is_float(x->dtype)) return keel_error(KEEL_UNSUPPORTED, "input X has dtype %s", keel_dtype_name(x->dtype));
  if (!keel_elem_is_float(rois->dtype)) return keel_error(KEEL_UNSUPPORTED, "input rois has dtype %s", keel_dtype_name(rois->dtype));
  if (bi->dtype != KEEL_INT64 && bi->dtype != KEEL_INT32)
    return keel_error(KEEL_INVALID_MODEL, "input batch_indices has dtype %s; int64 expected", keel_dtype_name(bi->dtype));
  if (x->ndim != 4) return keel_error(KEEL_SHAPE_MISMATCH, "input X must be 4-D (got rank %d)", x->ndim);
  if (rois->ndim != 2 || (rois->dims[1] >= 0 && rois->dims[1] != 4))
    return keel_error(KEEL_SHAPE_MISMATCH, "input rois must have shape [num_rois, 4]");
  if (bi->ndim != 1 || (bi->dims[0] >= 0 && rois->dims[0] >= 0 && bi->dims[0] != rois->dims[0]))
    return keel_error(KEEL_SHAPE_MISMATCH, "input batch_indices must have shape [num_rois]");
  *oh = keel_attr_int(n, "output_height", 1);
  *ow = keel_attr_int(n, "output_width", 1);
  if (*oh < 1 || *ow < 1) return keel_error(KEEL_INVALID_MODEL, "output_height and output_width must be >= 1");
  const char *m = keel_attr_string(n, "mode", "avg");
  if (strcmp(m, "avg") && strcmp(m, "max")) return keel_error(KEEL_INVALID_MODEL, "unknown mode '%s'", m);
  if (n->opset >= 16) {
    const char *ct = keel_attr_string(n, "coordinate_transformation_mode", "half_pixel");
    if (strcmp(ct, "half_pixel") && strcmp(ct, "output_half_pixel"))
      return keel_error(KEEL_INVALID_MODEL, "unknown coordinate_transformation_mode '%s'", ct);
  }
  return NULL;
}

static keel_status *roi_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t oh, ow;
  KEEL_TRY(roi_check(n, in, n_in, &oh, &ow));
  int64_t d[4] = {in[1].dims[0], in[0].dims[1], oh, ow};
  KEEL_TRY(nn_check_numel(n, d, 4, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, d, 4);
  return NULL;
}

static keel_status *roi_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  int64_t PH, PW;
  KEEL_TRY(roi_check(n, in, n_in, &PH, &PW));
  const keel_view *x = &in[0], *rois = &in[1], *bi = &in[2];
  const keel_dtype xt = x->dtype, rt = rois->dtype;
  const int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3], R = rois->dims[0];
  const bool is_max = !strcmp(keel_attr_string(n, "mode", "avg"), "max");
  const bool half_pixel =
      n->opset >= 16 && !strcmp(keel_attr_string(n, "coordinate_transformation_mode", "half_pixel"), "half_pixel");
  const double scale = keel_attr_float(n, "spatial_scale", 1.0f);
  const int64_t sr = keel_attr_int(n, "sampling_ratio", 0);
  const int64_t pbin = PH * PW;
  void *Y = out[0].data;
  for (int64_t q = 0; q < R; q++) {
    const int64_t b = keel_view_get_i64(bi, q);
    if (b < 0 || b >= N)
      return keel_error(KEEL_INVALID_ARGUMENT, "batch_indices[%lld] = %lld is outside [0, %lld)", (long long)q,
                        (long long)b, (long long)N);
    const double off = half_pixel ? 0.5 : 0.0;
    const double x0 = keel_elem_load(rt, rois->data, q * 4 + 0) * scale - off, y0 = keel_elem_load(rt, rois->data, q * 4 + 1) * scale - off;
    const double x1 = keel_elem_load(rt, rois->data, q * 4 + 2) * scale - off, y1 = keel_elem_load(rt, rois->data, q * 4 + 3) * scale - off;
    double rw = x1 - x0, rh = y1 - y0;
    if (!isfinite(x0) || !isfinite(y0) || !isfinite(rw) || !isfinite(rh))
      return keel_error(KEEL_INVALID_ARGUMENT, "roi %lld has non-finite coordinates", (long long)q);
    if (!half_pixel) { /* legacy: force malformed boxes to 1x1 */
      if (rw < 1) rw = 1;
      if (rh < 1) rh = 1;
    }
    const double bh = rh / (double)PH, bw = rw / (double)PW;
    int64_t gh = sr > 0 ? sr : (int64_t)ceil(rh / (double)PH), gw = sr > 0 ? sr : (int64_t)ceil(rw / (double)PW);
    if (gh < 0) gh = 0;
    if (gw < 0) gw = 0;
    if (gh > 1 << 20 || gw > 1 << 20)
      return keel_error(KEEL_INVALID_ARGUMENT, "roi %lld is too large to sample (%lld x %lld samples per bin)",
                        (long long)q, (long long)gh, (long long)gw);
    const double count = gh * gw > 1 ? (double)(gh * gw) : 1.0;
    const int64_t obase = q * C * pbin, xbase = b * C * H * W;
    for (int64_t ph = 0; ph < PH; ph++)
      for (int64_t pw = 0; pw < PW; pw++) {
        const int64_t o = ph * PW + pw;
        for (int64_t ch = 0; ch < C; ch++) keel_elem_store(xt, Y, obase + ch * pbin + o, 0);
        bool first = true;
        for (int64_t iy = 0; iy < gh; iy++) {
          double yy = y0 + (double)ph * bh + ((double)iy + 0.5) * bh / (double)gh;
          for (int64_t ix = 0; ix < gw; ix++) {
            double xx = x0 + (double)pw * bw + ((double)ix + 0.5) * bw / (double)gw;
            /* bilinear sample: 4 positions and weights (all zero outside the map) */
            int64_t pos[4] = {0, 0, 0, 0};
            double wt[4] = {0, 0, 0, 0};
            if (!(yy < -1.0 || yy > (double)H || xx < -1.0 || xx > (double)W)) {
              double y = yy < 0 ? 0 : yy, xv = xx < 0 ? 0 : xx;
              int64_t yl = (int64_t)y, xl = (int64_t)xv, yh, xh;
              if (yl >= H - 1) {
                yh = yl = H - 1;
                y = (double)yl;
              } else {
                yh = yl + 1;
              }
              if (xl >= W - 1) {
                xh = xl = W - 1;
                xv = (double)xl;
              } else {
                xh = xl + 1;
              }
              double ly = y - (double)yl, lx = xv - (double)xl, hy = 1 - ly, hx = 1 - lx;
              pos[0] = yl * W + xl, pos[1] = yl * W + xh, pos[2] = yh * W + xl, pos[3] = yh * W + xh;
              wt[0] = hy * hx, wt[1] = hy * lx, wt[2] = ly * hx, wt[3] = ly * lx;
            }
            for (int64_t ch = 0; ch < C; ch++) {
              const int64_t xo = xbase + ch * H * W, yo = obase + ch * pbin + o;
              double v0 = wt[0] * keel_elem_load(xt, x->data, xo + pos[0]), v1 = wt[1] * keel_elem_load(xt, x->data, xo + pos[1]);
              double v2 = wt[2] * keel_elem_load(xt, x->data, xo + pos[2]), v3 = wt[3] * keel_elem_load(xt, x->data, xo + pos[3]);
              if (is_max) {
                /* the max of the weighted corner values, as the ONNX reference and ONNX Runtime */
                double v = fmax(fmax(v0, v1), fmax(v2, v3));
                keel_elem_store(xt, Y, yo, first ? v : fmax(keel_elem_load(xt, Y, yo), v));
              } else {
                keel_elem_store(xt, Y, yo, keel_elem_load(xt, Y, yo) + v0 + v1 + v2 + v3);
              }
            }
            first = false;
          }
        }
        if (!is_max)
          for (int64_t ch = 0; ch < C; ch++) {
            const int64_t yo = obase + ch * pbin + o;
            keel_elem_store(xt, Y, yo, keel_elem_load(xt, Y, yo) / count);
          }
      }
  }
  return NULL;
}

/* ---------------------------------------------------------------- Col2Im */

#define C2I_MAX 6

typedef struct c2i_geom {
  int r;
  int64_t img[C2I_MAX], blk[C2I_MAX], dil[C2I_MAX], pb[C2I_MAX], pe[C2I_MAX], str[C2I_MAX], ncol[C2I_MAX];
  int64_t kprod, lprod, iprod;
} c2i_geom;

static keel_status *c2i_geom_get(const keel_node *n, const keel_view *in, int n_in, c2i_geom *g) {
  KEEL_TRY(nn_need_inputs(n, n_in, 3, 3));
  const keel_view *x = &in[0], *is = &in[1], *bs = &in[2];
  if (!num_dtype(x->dtype)) return keel_error(KEEL_UNSUPPORTED, "input has dtype %s", keel_dtype_name(x->dtype));
  if (x->ndim != 3) return keel_error(KEEL_SHAPE_MISMATCH, "input must be 3-D [N, C*prod(block_shape), L] (got rank %d)", x->ndim);
  if (is->ndim != 1 || bs->ndim != 1 || is->dims[0] != bs->dims[0] || is->dims[0] < 1 || is->dims[0] > C2I_MAX)
    return keel_error(KEEL_SHAPE_MISMATCH, "image_shape and block_shape must be 1-D of the same length (1 to %d)", C2I_MAX);
  if (!is->data) return keel_need_value(n, 1);
  if (!bs->data) return keel_need_value(n, 2);
  g->r = (int)is->dims[0];
  const int r = g->r;
  const int64_t *v;
  int c;
  for (int i = 0; i < r; i++) {
    g->img[i] = keel_view_get_i64(is, i);
    g->blk[i] = keel_view_get_i64(bs, i);
    if (g->img[i] < 1 || g->blk[i] < 1)
      return keel_error(KEEL_INVALID_ARGUMENT, "image_shape[%d] = %lld and block_shape[%d] = %lld must be positive", i,
                        (long long)g->img[i], i, (long long)g->blk[i]);
    g->dil[i] = g->str[i] = 1;
    g->pb[i] = g->pe[i] = 0;
  }
  if ((c = keel_attr_ints(n, "dilations", &v)) >= 0) {
    if (c != r) return keel_error(KEEL_INVALID_MODEL, "dilations has %d values, expected %d", c, r);
    for (int i = 0; i < r; i++) g->dil[i] = v[i];
  }
  if ((c = keel_attr_ints(n, "strides", &v)) >= 0) {
    if (c != r) return keel_error(KEEL_INVALID_MODEL, "strides has %d values, expected %d", c, r);
    for (int i = 0; i < r; i++) g->str[i] = v[i];
  }
  if ((c = keel_attr_ints(n, "pads", &v)) >= 0) {
    if (c != 2 * r) return keel_error(KEEL_INVALID_MODEL, "pads has %d values, expected %d", c, 2 * r);
    for (int i = 0; i < r; i++) g->pb[i] = v[i], g->pe[i] = v[r + i];
  }
  g->kprod = g->lprod = g->iprod = 1;
  for (int i = 0; i < r; i++) {
    if (g->dil[i] < 1 || g->str[i] < 1 || g->pb[i] < 0 || g->pe[i] < 0)
      return keel_error(KEEL_INVALID_MODEL, "dilations and strides must be >= 1 and pads >= 0 (dim %d)", i);
    int64_t span = g->dil[i] * (g->blk[i] - 1) + 1;
    g->ncol[i] = (g->img[i] + g->pb[i] + g->pe[i] - span) / g->str[i] + 1;
    if (g->img[i] + g->pb[i] + g->pe[i] < span || g->ncol[i] < 1)
      return keel_error(KEEL_INVALID_ARGUMENT, "block_shape[%d] = %lld does not fit the padded image", i, (long long)g->blk[i]);
    if (!keel_mul_i64(g->kprod, g->blk[i], &g->kprod) || !keel_mul_i64(g->lprod, g->ncol[i], &g->lprod) ||
        !keel_mul_i64(g->iprod, g->img[i], &g->iprod))
      return keel_error(KEEL_INVALID_ARGUMENT, "sizes overflow");
  }
  if (x->dims[1] >= 0 && x->dims[1] % g->kprod != 0)
    return keel_error(KEEL_SHAPE_MISMATCH, "input dim 1 (%lld) is not a multiple of prod(block_shape) = %lld",
                      (long long)x->dims[1], (long long)g->kprod);
  if (x->dims[2] >= 0 && x->dims[2] != g->lprod)
    return keel_error(KEEL_SHAPE_MISMATCH, "input dim 2 is %lld; the blocks give %lld positions", (long long)x->dims[2],
                      (long long)g->lprod);
  return NULL;
}

static keel_status *c2i_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  c2i_geom g;
  KEEL_TRY(c2i_geom_get(n, in, n_in, &g));
  int64_t d[KEEL_MAX_DIMS];
  d[0] = in[0].dims[0];
  d[1] = in[0].dims[1] >= 0 ? in[0].dims[1] / g.kprod : -1;
  for (int i = 0; i < g.r; i++) d[2 + i] = g.img[i];
  KEEL_TRY(nn_check_numel(n, d, g.r + 2, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, d, g.r + 2);
  return NULL;
}

static keel_status *c2i_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  c2i_geom g;
  KEEL_TRY(c2i_geom_get(n, in, n_in, &g));
  const keel_dtype t = in[0].dtype;
  const int r = g.r;
  const int64_t N = in[0].dims[0], C = in[0].dims[1] / g.kprod;
  void *Y = out[0].data;
  const size_t es = keel_dtype_size(t);
  memset(Y, 0, (size_t)(N * C * g.iprod) * es);
  int64_t istr[C2I_MAX];
  int64_t acc = 1;
  for (int i = r - 1; i >= 0; i--) istr[i] = acc, acc *= g.img[i];
  for (int64_t nc = 0; nc < N * C; nc++) {
    const int64_t ib = nc * g.kprod * g.lprod, ob = nc * g.iprod;
    for (int64_t k = 0; k < g.kprod; k++) {
      int64_t kk[C2I_MAX], q = k;
      for (int i = r - 1; i >= 0; i--) kk[i] = q % g.blk[i], q /= g.blk[i];
      for (int64_t l = 0; l < g.lprod; l++) {
        int64_t oi = 0;
        q = l;
        bool inside = true;
        for (int i = r - 1; i >= 0; i--) {
          int64_t col = q % g.ncol[i];
          q /= g.ncol[i];
          int64_t p = col * g.str[i] - g.pb[i] + kk[i] * g.dil[i];
          if (p < 0 || p >= g.img[i]) inside = false;
          oi += p * istr[i];
        }
        if (!inside) continue;
        const int64_t xi = ib + k * g.lprod + l;
        if (t == KEEL_FLOAT32)
          ((float *)Y)[ob + oi] += ((const float *)in[0].data)[xi];
        else
          keel_elem_store(t, Y, ob + oi, keel_elem_load(t, Y, ob + oi) + keel_elem_load(t, in[0].data, xi));
      }
    }
  }
  return NULL;
}

#define D(op, lo, hi, inf, run) {op, "", lo, hi, inf, run, NULL, -1}
#define M KEEL_MAX_OPSET

const keel_op_def keel_ops_image[] = {
    /* GridSample 16: 4-D, modes bilinear/nearest/bicubic; 20: N-D, modes linear/nearest/cubic; 22 types. */
    D("GridSample", 16, 19, gs_infer, gs_run),
    D("GridSample", 20, M, gs_infer, gs_run),
    /* RoiAlign 10: output_half_pixel coordinates; 16 adds coordinate_transformation_mode (half_pixel). */
    D("RoiAlign", 10, 15, roi_infer, roi_run),
    D("RoiAlign", 16, M, roi_infer, roi_run),
    D("AffineGrid", 20, M, ag_infer, ag_run),
    D("Col2Im", 18, M, c2i_infer, c2i_run),
};
const int keel_ops_image_count = (int)(sizeof keel_ops_image / sizeof keel_ops_image[0]);
