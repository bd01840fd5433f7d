/* DeformConv (19, 22): 2-D convolution whose kernel taps sample the input at learned fractional offsets
 * (bilinear, zero outside the image), optionally scaled by a per-tap mask.
 *
 * Per batch and group: a deformable im2col builds col[(c, kh, kw), (oh, ow)] = mask * bilinear(X_c, p + offset)
 * and one GEMM multiplies the group's weights into it (OpenBLAS; float32 in float, float64 in double, float16
 * and bfloat16 staged to float). */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "ops/attention_internal.h"

enum { DC_X, DC_W, DC_OFF, DC_B, DC_MASK };

typedef struct dc_p {
  int64_t N, C, H, W, OC, KH, KW, OH, OW, G, OG;
  int64_t sh, sw, dh, dw, pt, pl;
  keel_dtype ct;
  bool has_b, has_mask;
} dc_p;

static keel_status *dc_shape(const keel_node *n, const keel_view *in, int n_in, dc_p *p) {
  memset(p, 0, sizeof *p);
  if (n_in < 3 || !keel_view_present(&in[DC_X]) || !keel_view_present(&in[DC_W]) || !keel_view_present(&in[DC_OFF]))
    return keel_error(KEEL_INVALID_MODEL, "DeformConv needs X, W and offset");
  const keel_view *x = &in[DC_X], *w = &in[DC_W], *off = &in[DC_OFF];
  if (!keel_elem_is_float(x->dtype) || w->dtype != x->dtype || off->dtype != x->dtype)
    return keel_error(KEEL_UNSUPPORTED, "DeformConv: dtypes %s/%s/%s (one float type)", keel_dtype_name(x->dtype),
                      keel_dtype_name(w->dtype), keel_dtype_name(off->dtype));
  if (x->ndim != 4 || w->ndim != 4 || off->ndim != 4)
    return keel_error(KEEL_UNSUPPORTED, "DeformConv: only 2-D convolution (rank-4 X, W, offset) is supported");
  p->ct = x->dtype == KEEL_FLOAT64 ? KEEL_FLOAT64 : KEEL_FLOAT32;
  p->N = x->dims[0], p->C = x->dims[1], p->H = x->dims[2], p->W = x->dims[3];
  p->OC = w->dims[0], p->KH = w->dims[2], p->KW = w->dims[3];
  p->G = keel_attr_int(n, "group", 1);
  p->OG = keel_attr_int(n, "offset_group", 1);
  const int64_t *ks, *st, *dl, *pd;
  int nks = keel_attr_ints(n, "kernel_shape", &ks), nst = keel_attr_ints(n, "strides", &st);
  int ndl = keel_attr_ints(n, "dilations", &dl), npd = keel_attr_ints(n, "pads", &pd);
  if (nks >= 0 && (nks != 2 || ks[0] != p->KH || ks[1] != p->KW))
    return keel_error(KEEL_INVALID_MODEL, "DeformConv: kernel_shape does not match W's (%lld, %lld)",
                      (long long)p->KH, (long long)p->KW);
  if ((nst >= 0 && nst != 2) || (ndl >= 0 && ndl != 2) || (npd >= 0 && npd != 4))
    return keel_error(KEEL_INVALID_MODEL, "DeformConv: strides/dilations need 2 values and pads 4");
  p->sh = nst > 0 ? st[0] : 1, p->sw = nst > 0 ? st[1] : 1;
  p->dh = ndl > 0 ? dl[0] : 1, p->dw = ndl > 0 ? dl[1] : 1;
  p->pt = npd > 0 ? pd[0] : 0, p->pl = npd > 0 ? pd[1] : 0;
  int64_t pb = npd > 0 ? pd[2] : 0, pr = npd > 0 ? pd[3] : 0;
  if (p->sh < 1 || p->sw < 1 || p->dh < 1 || p->dw < 1 || p->pt < 0 || p->pl < 0 || pb < 0 || pr < 0)
    return keel_error(KEEL_INVALID_MODEL, "DeformConv: strides and dilations must be >= 1 and pads >= 0");
  if (p->G < 1 || p->OG < 1 || p->C % p->G || p->OC % p->G || w->dims[1] * p->G != p->C || p->C % p->OG)
    return keel_error(KEEL_INVALID_MODEL, "DeformConv: channels %lld / out %lld do not fit group %lld, offset_group %lld "
                      "and W's %lld input channels", (long long)p->C, (long long)p->OC, (long long)p->G,
                      (long long)p->OG, (long long)w->dims[1]);
  int64_t eh = (p->KH - 1) * p->dh + 1, ew = (p->KW - 1) * p->dw + 1;
  p->OH = (p->H + p->pt + pb - eh) / p->sh + 1;
  p->OW = (p->W + p->pl + pr - ew) / p->sw + 1;
  if (p->H + p->pt + pb < eh || p->W + p->pl + pr < ew)
    return keel_error(KEEL_INVALID_MODEL, "DeformConv: the kernel is larger than the padded input");
  int64_t want[4] = {p->N, p->OG * p->KH * p->KW * 2, p->OH, p->OW};
  if (!keel_shape_equal(off->dims, 4, want, 4))
    return keel_error(KEEL_INVALID_MODEL, "DeformConv: offset must be (%lld, %lld, %lld, %lld)", (long long)want[0],
                      (long long)want[1], (long long)want[2], (long long)want[3]);
  p->has_b = n_in > DC_B && keel_view_present(&in[DC_B]);
  if (p->has_b && (in[DC_B].dtype != x->dtype || in[DC_B].ndim != 1 || in[DC_B].dims[0] != p->OC))
    return keel_error(KEEL_INVALID_MODEL, "DeformConv: B must be (%lld) of X's dtype", (long long)p->OC);
  p->has_mask = n_in > DC_MASK && keel_view_present(&in[DC_MASK]);
  if (p->has_mask) {
    int64_t mw[4] = {p->N, p->OG * p->KH * p->KW, p->OH, p->OW};
    if (in[DC_MASK].dtype != x->dtype || !keel_shape_equal(in[DC_MASK].dims, in[DC_MASK].ndim, mw, 4))
      return keel_error(KEEL_INVALID_MODEL, "DeformConv: mask must be (%lld, %lld, %lld, %lld)", (long long)mw[0],
                        (long long)mw[1], (long long)mw[2], (long long)mw[3]);
  }
  if (p->OH * p->OW > INT32_MAX || (p->C / p->G) * p->KH * p->KW > INT32_MAX)
    return keel_error(KEEL_UNSUPPORTED, "DeformConv: sizes exceed BLAS's 32-bit range");
  return NULL;
}

keel_status *keel_at_deform_infer(AT_IN) {
  dc_p p;
  KEEL_TRY(dc_shape(n, in, n_in, &p));
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "DeformConv has 1 output, got %d", n_out);
  int64_t d[4] = {p.N, p.OC, p.OH, p.OW};
  keel_view_set_shape(&out[0], in[DC_X].dtype, d, 4);
  return NULL;
}

/* col for one group, plus compute-type copies of W and of one batch's output when X is not float/double */
size_t keel_at_deform_ws(AT_WS) {
  dc_p p;
  keel_status *s = dc_shape(n, in, n_in, &p);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  size_t es = keel_dtype_size(p.ct);
  size_t b = at_align((size_t)((p.C / p.G) * p.KH * p.KW * p.OH * p.OW) * es);
  if (in[DC_X].dtype != p.ct)
    b += at_align((size_t)keel_view_numel(&in[DC_W]) * es) + at_align((size_t)(p.OC * p.OH * p.OW) * es);
  return b;
}

/* bilinear sample of one channel plane at (y, x); taps outside the image read 0 */
static double dc_sample(keel_dtype t, const void *plane, int64_t off, int64_t H, int64_t W, double y, double x) {
  if (!(y > -1.0 && y < (double)H && x > -1.0 && x < (double)W)) return 0; /* also NaN */
  double fy = floor(y), fx = floor(x);
  int64_t y0 = (int64_t)fy, x0 = (int64_t)fx;
  double ly = y - fy, lx = x - fx, v = 0;
  for (int a = 0; a < 2; a++) {
    int64_t yy = y0 + a;
    double wy = a ? ly : 1 - ly;
    if (yy < 0 || yy >= H || wy == 0) continue;
    for (int b = 0; b < 2; b++) {
      int64_t xx = x0 + b;
      double wx = b ? lx : 1 - lx;
      if (xx < 0 || xx >= W || wx == 0) continue;
      v += wy * wx * keel_elem_load(t, plane, off + yy * W + xx);
    }
  }
  return v;
}

keel_status *keel_at_deform_run(AT_RUN) {
  dc_p p;
  KEEL_TRY(dc_shape(n, in, n_in, &p));
  const keel_view *x = &in[DC_X], *off = &in[DC_OFF];
  keel_dtype t = x->dtype;
  bool dbl = p.ct == KEEL_FLOAT64, staged = t != p.ct;
  size_t es = keel_dtype_size(p.ct);
  const int64_t Cg = p.C / p.G, OCg = p.OC / p.G, KK = p.KH * p.KW, P = p.OH * p.OW, Cog = p.C / p.OG;
  char *ws = ex->workspace;
  void *col = ws;
  ws += at_align((size_t)(Cg * KK * P) * es);
  const void *Wt = in[DC_W].data;
  void *Y = out[0].data;
  if (staged) {
    int64_t cnt = keel_view_numel(&in[DC_W]);
    for (int64_t e = 0; e < cnt; e++) keel_elem_store(p.ct, ws, e, keel_elem_load(t, in[DC_W].data, e));
    Wt = ws;
    ws += at_align((size_t)cnt * es);
    Y = ws;
  }
  for (int64_t b = 0; b < p.N; b++) {
    void *yb = staged ? Y : (char *)Y + (size_t)(b * p.OC * P) * es;
    for (int64_t g = 0; g < p.G && P > 0 && OCg > 0; g++) {
      /* deformable im2col */
      for (int64_t cl = 0; cl < Cg; cl++) {
        int64_t c = g * Cg + cl, og = c / Cog;
        int64_t xoff = (b * p.C + c) * p.H * p.W;
        for (int64_t ki = 0; ki < p.KH; ki++)
          for (int64_t kj = 0; kj < p.KW; kj++) {
            int64_t tap = ki * p.KW + kj;
            int64_t obase = ((b * p.OG + og) * KK + tap) * 2 * P; /* (dy plane, then dx plane) */
            int64_t mbase = ((b * p.OG + og) * KK + tap) * P;
            int64_t crow = (cl * KK + tap) * P;
            for (int64_t i = 0; i < p.OH; i++)
              for (int64_t j = 0; j < p.OW; j++) {
                int64_t pix = i * p.OW + j;
                double yy = (double)(i * p.sh - p.pt + ki * p.dh) + keel_elem_load(t, off->data, obase + pix);
                double xx = (double)(j * p.sw - p.pl + kj * p.dw) + keel_elem_load(t, off->data, obase + P + pix);
                double v = dc_sample(t, x->data, xoff, p.H, p.W, yy, xx);
                if (p.has_mask) v *= keel_elem_load(t, in[DC_MASK].data, mbase + pix);
                if (dbl) ((double *)col)[crow + pix] = v;
                else ((float *)col)[crow + pix] = (float)v;
              }
          }
      }
      /* Y[g] = W[g] (OCg x Cg*KK) * col (Cg*KK x P) */
      size_t wo = (size_t)(g * OCg * Cg * KK), yo = (size_t)(g * OCg * P);
      if (Cg * KK == 0) {
        for (int64_t e = 0; e < OCg * P; e++) keel_elem_store(p.ct, yb, (int64_t)yo + e, 0);
      } else if (dbl) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)OCg, (int)P, (int)(Cg * KK), 1.0,
                    (const double *)Wt + wo, (int)(Cg * KK), (const double *)col, (int)P, 0.0, (double *)yb + yo, (int)P);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)OCg, (int)P, (int)(Cg * KK), 1.0f,
                    (const float *)Wt + wo, (int)(Cg * KK), (const float *)col, (int)P, 0.0f, (float *)yb + yo, (int)P);
      }
    }
    for (int64_t oc = 0; oc < p.OC; oc++) {
      double bias = p.has_b ? keel_elem_load(t, in[DC_B].data, oc) : 0.0;
      for (int64_t e = 0; e < P; e++) {
        int64_t yi = oc * P + e;
        double v = keel_elem_load(p.ct, yb, yi) + bias;
        if (staged) keel_elem_store(t, out[0].data, b * p.OC * P + yi, v);
        else keel_elem_store(p.ct, yb, yi, v);
      }
    }
  }
  return NULL;
}
