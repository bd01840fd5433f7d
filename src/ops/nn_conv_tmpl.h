/* Conv / ConvTranspose kernels for one element type. Included by nn_conv.c once per type with
 *   NN_T     element type (float, double)
 *   NN_SUF   function suffix (f32, f64)
 *   NN_GEMM  cblas_sgemm / cblas_dgemm
 * No include guard on purpose. Windows arrive padded to 3 spatial dims (nn_window_pad3). */

#define NN_CAT2(a, b) a##_##b
#define NN_CAT(a, b) NN_CAT2(a, b)
#define NN_FN(name) NN_CAT(name, NN_SUF)

/* Range [lo, hi) of output positions o with 0 <= o*s + off < in. */
static inline void NN_FN(valid_range)(int64_t off, int64_t s, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
  int64_t l = nn_ceildiv(-off, s), h = nn_floordiv(in - 1 - off, s) + 1;
  if (l < 0) l = 0;
  if (h > out) h = out;
  if (h < l) h = l;
  *lo = l;
  *hi = h;
}

/* col[(c, kd, kh, kw), j] = x[c, od*sd + kd*dd - pd, ...] (0 in the padding) for the output rows
 * r = od*OH + oh in [r0, r1), j running over those rows' positions. */
static void NN_FN(im2col)(const NN_T *x, int64_t C, const nn_window *w, NN_T *col, int64_t r0, int64_t r1) {
  const int64_t ID = w->in[0], IH = w->in[1], IW = w->in[2];
  const int64_t OH = w->out[1], OW = w->out[2];
  const int64_t sw = w->s[2];
  for (int64_t c = 0; c < C; c++) {
    const NN_T *xc = x + c * ID * IH * IW;
    for (int64_t kd = 0; kd < w->k[0]; kd++)
      for (int64_t kh = 0; kh < w->k[1]; kh++)
        for (int64_t kw = 0; kw < w->k[2]; kw++) {
          const int64_t offw = kw * w->d[2] - w->pb[2];
          int64_t lo, hi;
          NN_FN(valid_range)(offw, sw, IW, OW, &lo, &hi);
          for (int64_t r = r0; r < r1; r++, col += OW) {
            const int64_t od = r / OH, oh = r - od * OH;
            const int64_t id = od * w->s[0] + kd * w->d[0] - w->pb[0];
            const int64_t ih = oh * w->s[1] + kh * w->d[1] - w->pb[1];
            if (id < 0 || id >= ID || ih < 0 || ih >= IH) {
              memset(col, 0, (size_t)OW * sizeof(NN_T));
              continue;
            }
            const NN_T *src = xc + (id * IH + ih) * IW;
            for (int64_t ow = 0; ow < lo; ow++) col[ow] = 0;
            if (sw == 1) {
              memcpy(col + lo, src + lo + offw, (size_t)(hi - lo) * sizeof(NN_T));
            } else {
              for (int64_t ow = lo; ow < hi; ow++) col[ow] = src[ow * sw + offw];
            }
            for (int64_t ow = hi; ow < OW; ow++) col[ow] = 0;
          }
        }
  }
}

/* y[c, o*s - p + k*d] += col[(c, k), o] for in-range targets; w->in is y's size, w->out is col's. */
static void NN_FN(col2im)(const NN_T *col, int64_t C, const nn_window *w, NN_T *y) {
  const int64_t YD = w->in[0], YH = w->in[1], YW = w->in[2];
  const int64_t XD = w->out[0], XH = w->out[1], XW = w->out[2];
  const int64_t sw = w->s[2];
  for (int64_t c = 0; c < C; c++) {
    NN_T *yc = y + c * YD * YH * YW;
    for (int64_t kd = 0; kd < w->k[0]; kd++)
      for (int64_t kh = 0; kh < w->k[1]; kh++)
        for (int64_t kw = 0; kw < w->k[2]; kw++) {
          const int64_t offw = kw * w->d[2] - w->pb[2];
          int64_t lo, hi;
          NN_FN(valid_range)(offw, sw, YW, XW, &lo, &hi);
          for (int64_t od = 0; od < XD; od++) {
            const int64_t id = od * w->s[0] + kd * w->d[0] - w->pb[0];
            if (id < 0 || id >= YD) {
              col += XH * XW;
              continue;
            }
            for (int64_t oh = 0; oh < XH; oh++, col += XW) {
              const int64_t ih = oh * w->s[1] + kh * w->d[1] - w->pb[1];
              if (ih < 0 || ih >= YH) continue;
              NN_T *restrict dst = yc + (id * YH + ih) * YW;
              const NN_T *restrict src = col;
              if (sw == 1) {
                for (int64_t ow = lo; ow < hi; ow++) dst[ow + offw] += src[ow];
              } else {
                for (int64_t ow = lo; ow < hi; ow++) dst[ow * sw + offw] += src[ow];
              }
            }
          }
        }
  }
}

/* Convolution with one input channel per group (depthwise, with or without multiplier): accumulate each
 * kernel tap as a shifted, scaled row; no im2col. y already holds the bias (or zeros). */
static void NN_FN(conv_depthwise)(const nn_conv_geom *g, const NN_T *x, const NN_T *wt, NN_T *y) {
  const nn_window *w = &g->w3;
  const int64_t ID = w->in[0], IH = w->in[1], IW = w->in[2];
  const int64_t OD = w->out[0], OH = w->out[1], OW = w->out[2];
  const int64_t sw = w->s[2];
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t oc = 0; oc < g->M; oc++) {
      const NN_T *xc = x + (n * g->C + oc / g->Mg) * g->in_prod;
      NN_T *yc = y + (n * g->M + oc) * g->out_prod;
      const NN_T *wc = wt + oc * g->kprod;
      for (int64_t kd = 0; kd < w->k[0]; kd++)
        for (int64_t kh = 0; kh < w->k[1]; kh++)
          for (int64_t kw = 0; kw < w->k[2]; kw++) {
            const NN_T wv = *wc++;
            const int64_t offw = kw * w->d[2] - w->pb[2];
            int64_t lo, hi;
            NN_FN(valid_range)(offw, sw, IW, OW, &lo, &hi);
            for (int64_t od = 0; od < OD; od++) {
              const int64_t id = od * w->s[0] + kd * w->d[0] - w->pb[0];
              if (id < 0 || id >= ID) continue;
              for (int64_t oh = 0; oh < OH; oh++) {
                const int64_t ih = oh * w->s[1] + kh * w->d[1] - w->pb[1];
                if (ih < 0 || ih >= IH) continue;
                const NN_T *restrict src = xc + (id * IH + ih) * IW;
                NN_T *restrict dst = yc + (od * OH + oh) * OW;
                if (sw == 1) {
                  for (int64_t ow = lo; ow < hi; ow++) dst[ow] += wv * src[ow + offw];
                } else {
                  for (int64_t ow = lo; ow < hi; ow++) dst[ow] += wv * src[ow * sw + offw];
                }
              }
            }
          }
    }
}

/* 2-D depthwise with a 3-wide kernel row and dilation 1 (the MobileNet case): per output row and valid
 * kernel row, one pass applies all three taps to the interior columns; edge columns check bounds. Fewer,
 * longer vector loops than tap-by-tap accumulation. y holds the bias. */
static void NN_FN(conv_dw_k3)(const nn_conv_geom *g, const NN_T *x, const NN_T *wt, NN_T *y) {
  const nn_window *w = &g->w3;
  const int64_t IH = w->in[1], IW = w->in[2], OH = w->out[1], OW = w->out[2];
  const int64_t KH = w->k[1], sh = w->s[1], sw = w->s[2], dh = w->d[1], ph = w->pb[1], pw = w->pb[2];
  int64_t lo = nn_ceildiv(pw, sw), hi = nn_floordiv(IW - 3 + pw, sw) + 1; /* all three taps inside */
  lo = lo < 0 ? 0 : lo > OW ? OW : lo;
  hi = hi > OW ? OW : hi < lo ? lo : hi;
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t oc = 0; oc < g->M; oc++) {
      const NN_T *xc = x + (n * g->C + oc / g->Mg) * g->in_prod;
      NN_T *yc = y + (n * g->M + oc) * g->out_prod;
      for (int64_t oh = 0; oh < OH; oh++) {
        NN_T *restrict yr = yc + oh * OW;
        for (int64_t kh = 0; kh < KH; kh++) {
          const int64_t ih = oh * sh - ph + kh * dh;
          if (ih < 0 || ih >= IH) continue;
          const NN_T *restrict r = xc + ih * IW;
          const NN_T *k = wt + (oc * KH + kh) * 3;
          const NN_T w0 = k[0], w1 = k[1], w2 = k[2];
          for (int64_t ow = 0; ow < OW; ow++) {
            if (ow == lo) ow = hi; /* skip the interior */
            if (ow >= OW) break;
            const int64_t i = ow * sw - pw;
            NN_T acc = 0;
            if (i >= 0 && i < IW) acc += w0 * r[i];
            if (i + 1 >= 0 && i + 1 < IW) acc += w1 * r[i + 1];
            if (i + 2 >= 0 && i + 2 < IW) acc += w2 * r[i + 2];
            yr[ow] += acc;
          }
          if (sw == 1) {
            for (int64_t ow = lo; ow < hi; ow++) yr[ow] += w0 * r[ow - pw] + w1 * r[ow - pw + 1] + w2 * r[ow - pw + 2];
          } else {
            for (int64_t ow = lo; ow < hi; ow++) {
              const int64_t i = ow * sw - pw;
              yr[ow] += w0 * r[i] + w1 * r[i + 1] + w2 * r[i + 2];
            }
          }
        }
      }
    }
}

/* Fill channel planes y[0..C) (each `plane` long) with bias[c], or zeros without bias. */
static void NN_FN(fill_bias)(NN_T *y, const NN_T *bias, int64_t C, int64_t plane) {
  for (int64_t c = 0; c < C; c++) {
    NN_T v = bias ? bias[c] : 0;
    NN_T *p = y + c * plane;
    for (int64_t i = 0; i < plane; i++) p[i] = v;
  }
}

static void NN_FN(conv)(const nn_conv_geom *g, const NN_T *x, const NN_T *wt, const NN_T *b, NN_T *y, NN_T *ws) {
  const int64_t K = g->Cg * g->kprod, P = g->out_prod;
  if (g->Cg == 1 && !g->pointwise) {
    for (int64_t n = 0; n < g->N; n++) NN_FN(fill_bias)(y + n * g->M * P, b, g->M, P);
    const nn_window *w = &g->w3;
    if (w->k[0] == 1 && w->out[0] == 1 && w->k[2] == 3 && w->d[2] == 1)
      NN_FN(conv_dw_k3)(g, x, wt, y);
    else
      NN_FN(conv_depthwise)(g, x, wt, y);
    return;
  }
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t grp = 0; grp < g->group; grp++) {
      const NN_T *xg = x + (n * g->C + grp * g->Cg) * g->in_prod;
      NN_T *yg = y + (n * g->M + grp * g->Mg) * P;
      const NN_T *wg = wt + grp * g->Mg * K;
      NN_T beta = 0;
      if (b) {
        NN_FN(fill_bias)(yg, b + grp * g->Mg, g->Mg, P);
        beta = 1;
      }
      if (g->pointwise) {
        NN_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->Mg, (int)P, (int)K, 1, wg, (int)K, xg, (int)P, beta,
                yg, (int)P);
        continue;
      }
      /* im2col a block of output rows at a time so the column buffer stays in cache for the GEMM. */
      const int64_t OW = g->w3.out[2], rows = g->w3.out[0] * g->w3.out[1];
      for (int64_t r0 = 0; r0 < rows; r0 += g->chunk_rows) {
        const int64_t r1 = r0 + g->chunk_rows < rows ? r0 + g->chunk_rows : rows, nc = (r1 - r0) * OW;
        NN_FN(im2col)(xg, g->Cg, &g->w3, ws, r0, r1);
        NN_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->Mg, (int)nc, (int)K, 1, wg, (int)K, ws, (int)nc,
                beta, yg + r0 * OW, (int)P);
      }
    }
}

/* ConvTranspose. Geometry as a conv from y (w3.in) to x (w3.out): col = W_g^T x_g, then col2im into y. */
static void NN_FN(convt)(const nn_conv_geom *g, const NN_T *x, const NN_T *wt, const NN_T *b, NN_T *y, NN_T *ws) {
  const int64_t R = g->Mg * g->kprod, XP = g->out_prod, YP = g->in_prod;
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t grp = 0; grp < g->group; grp++) {
      const NN_T *xg = x + (n * g->C + grp * g->Cg) * XP;
      const NN_T *wg = wt + grp * g->Cg * R;
      NN_T *yg = y + (n * g->M + grp * g->Mg) * YP;
      NN_FN(fill_bias)(yg, b ? b + grp * g->Mg : NULL, g->Mg, YP);
      if (g->pointwise) {
        NN_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g->Mg, (int)XP, (int)g->Cg, 1, wg, (int)g->Mg, xg,
                (int)XP, 1, yg, (int)YP);
        continue;
      }
      NN_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, (int)XP, (int)g->Cg, 1, wg, (int)R, xg, (int)XP, 0,
              ws, (int)XP);
      NN_FN(col2im)(ws, g->Mg, &g->w3, yg);
    }
}

#undef NN_FN
#undef NN_CAT
#undef NN_CAT2
