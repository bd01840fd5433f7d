/* Pooling kernels for one element type. Included by nn_pool.c with
 *   NN_T    element type;  NN_SUF  function suffix;  NN_FLOAT  1 for float types (average / Lp pooling)
 * No include guard on purpose. The window is padded to 3 spatial dims (nn_window_pad3). */

#define NN_CAT2(a, b) a##_##b
#define NN_CAT(a, b) NN_CAT2(a, b)
#define NN_FN(name) NN_CAT(name, NN_SUF)

/* Max pooling over `planes` planes; idx (may be NULL) receives flat input indices (ONNX Indices). */
static void NN_FN(maxpool)(const NN_T *x, NN_T *y, int64_t *idx, int64_t planes, const nn_window *w,
                           bool col_major, int64_t idx_base) {
  const int64_t ID = w->in[0], IH = w->in[1], IW = w->in[2];
  const int64_t OD = w->out[0], OH = w->out[1], OW = w->out[2];
  const int64_t iplane = ID * IH * IW;
  for (int64_t pl = 0; pl < planes; pl++) {
    const NN_T *xp = x + pl * iplane;
    for (int64_t od = 0; od < OD; od++) {
      int64_t d0, d1, h0, h1, w0, w1;
      const int64_t sd = od * w->s[0] - w->pb[0];
      pool_range(sd, w->d[0], w->k[0], ID, &d0, &d1);
      for (int64_t oh = 0; oh < OH; oh++) {
        const int64_t sh = oh * w->s[1] - w->pb[1];
        pool_range(sh, w->d[1], w->k[1], IH, &h0, &h1);
        for (int64_t ow = 0; ow < OW; ow++, y++) {
          const int64_t sw = ow * w->s[2] - w->pb[2];
          pool_range(sw, w->d[2], w->k[2], IW, &w0, &w1);
          NN_T best = 0;
          int64_t bi = 0;
          if (d1 > d0 && h1 > h0 && w1 > w0) { /* empty windows (all padding) give 0 */
            const int64_t id0 = sd + d0 * w->d[0], ih0 = sh + h0 * w->d[1], iw0 = sw + w0 * w->d[2];
            best = xp[(id0 * IH + ih0) * IW + iw0];
            if (idx) bi = col_major ? id0 + ih0 * ID + iw0 * ID * IH : (id0 * IH + ih0) * IW + iw0;
          }
          for (int64_t kd = d0; kd < d1; kd++)
            for (int64_t kh = h0; kh < h1; kh++) {
              const int64_t id = sd + kd * w->d[0], ih = sh + kh * w->d[1];
              const NN_T *row = xp + (id * IH + ih) * IW;
              if (idx) {
                for (int64_t kw = w0; kw < w1; kw++) {
                  const int64_t iw = sw + kw * w->d[2];
                  if (row[iw] > best) {
                    best = row[iw];
                    bi = col_major ? id + ih * ID + iw * ID * IH : (id * IH + ih) * IW + iw;
                  }
                }
              } else {
                for (int64_t kw = w0; kw < w1; kw++) {
                  const NN_T v = row[sw + kw * w->d[2]];
                  best = v > best ? v : best;
                }
              }
            }
          *y = best;
          if (idx) *idx++ = idx_base + pl * iplane + bi;
        }
      }
    }
  }
}

/* Max (avg == false) or average pooling without Indices, one output row at a time: every valid kernel tap
 * is applied to the whole row (a max / add over a contiguous or strided run, which vectorizes), then a
 * short pass fixes empty windows (max) or divides by the per-position count (average). */
static void NN_FN(pool_rows)(const NN_T *x, NN_T *y, int64_t planes, const nn_window *w, bool avg, bool include_pad,
                             NN_T lowest) {
  const int64_t ID = w->in[0], IH = w->in[1], IW = w->in[2];
  const int64_t OD = w->out[0], OH = w->out[1], OW = w->out[2];
  const int64_t iplane = ID * IH * IW, s2 = w->s[2], d2 = w->d[2];
  const bool k3 = w->k[2] == 3 && d2 == 1;
  int64_t lo3 = nn_ceildiv(w->pb[2], s2), hi3 = nn_floordiv(IW - 3 + w->pb[2], s2) + 1; /* all 3 taps inside */
  lo3 = lo3 < 0 ? 0 : lo3 > OW ? OW : lo3;
  hi3 = hi3 > OW ? OW : hi3 < lo3 ? lo3 : hi3;
  for (int64_t pl = 0; pl < planes; pl++) {
    const NN_T *xp = x + pl * iplane;
    for (int64_t od = 0; od < OD; od++) {
      int64_t d0, d1, h0, h1;
      const int64_t sd = od * w->s[0] - w->pb[0];
      pool_range(sd, w->d[0], w->k[0], ID, &d0, &d1);
      const int64_t cd = pad_count(sd, w->d[0], w->k[0], ID + w->pe[0]);
      for (int64_t oh = 0; oh < OH; oh++, y += OW) {
        const int64_t sh = oh * w->s[1] - w->pb[1];
        pool_range(sh, w->d[1], w->k[1], IH, &h0, &h1);
        NN_T *restrict yr = y;
        const NN_T init = avg ? 0 : lowest;
        for (int64_t ow = 0; ow < OW; ow++) yr[ow] = init;
        for (int64_t kd = d0; kd < d1; kd++)
          for (int64_t kh = h0; kh < h1; kh++) {
            const NN_T *restrict row = xp + ((sd + kd * w->d[0]) * IH + sh + kh * w->d[1]) * IW;
            if (k3) { /* 3-wide windows, dilation 1: all three taps in one pass over the interior */
              for (int64_t ow = 0; ow < OW; ow++) {
                if (ow == lo3) ow = hi3;
                if (ow >= OW) break;
                const int64_t i = ow * s2 - w->pb[2];
                for (int64_t t = i < 0 ? 0 : i; t < i + 3 && t < IW; t++)
                  yr[ow] = avg ? yr[ow] + row[t] : (row[t] > yr[ow] ? row[t] : yr[ow]);
              }
              const int64_t off = -w->pb[2];
              if (avg && s2 == 1) {
                for (int64_t ow = lo3; ow < hi3; ow++) yr[ow] += row[ow + off] + row[ow + off + 1] + row[ow + off + 2];
              } else if (avg) {
                for (int64_t ow = lo3; ow < hi3; ow++) {
                  const int64_t i = ow * s2 + off;
                  yr[ow] += row[i] + row[i + 1] + row[i + 2];
                }
              } else if (s2 == 1) {
                for (int64_t ow = lo3; ow < hi3; ow++) {
                  NN_T m = row[ow + off] > row[ow + off + 1] ? row[ow + off] : row[ow + off + 1];
                  m = row[ow + off + 2] > m ? row[ow + off + 2] : m;
                  yr[ow] = m > yr[ow] ? m : yr[ow];
                }
              } else {
                for (int64_t ow = lo3; ow < hi3; ow++) {
                  const int64_t i = ow * s2 + off;
                  NN_T m = row[i] > row[i + 1] ? row[i] : row[i + 1];
                  m = row[i + 2] > m ? row[i + 2] : m;
                  yr[ow] = m > yr[ow] ? m : yr[ow];
                }
              }
              continue;
            }
            for (int64_t kw = 0; kw < w->k[2]; kw++) {
              const int64_t off = kw * d2 - w->pb[2];
              int64_t lo = s2 == 1 ? -off : nn_ceildiv(-off, s2);
              int64_t hi = s2 == 1 ? IW - off : nn_floordiv(IW - 1 - off, s2) + 1;
              lo = lo < 0 ? 0 : lo;
              hi = hi > OW ? OW : hi;
              if (avg) {
                if (s2 == 1)
                  for (int64_t ow = lo; ow < hi; ow++) yr[ow] += row[ow + off];
                else
                  for (int64_t ow = lo; ow < hi; ow++) yr[ow] += row[ow * s2 + off];
              } else {
                if (s2 == 1)
                  for (int64_t ow = lo; ow < hi; ow++) yr[ow] = row[ow + off] > yr[ow] ? row[ow + off] : yr[ow];
                else
                  for (int64_t ow = lo; ow < hi; ow++)
                    yr[ow] = row[ow * s2 + off] > yr[ow] ? row[ow * s2 + off] : yr[ow];
              }
            }
          }
        const int64_t ch = avg && include_pad ? cd * pad_count(sh, w->d[1], w->k[1], IH + w->pe[1])
                                              : (d1 - d0) * (h1 - h0);
        int64_t ow_skip = OW, ow_end = OW; /* k3 interior: three valid taps, one shared divisor */
        if (k3 && hi3 > lo3) {
          ow_skip = lo3;
          ow_end = hi3;
          if (avg) {
            const int64_t cnt = ch * 3;
            const NN_T inv = cnt > 0 && (ch > 0 || include_pad) ? (NN_T)1 / (NN_T)cnt : 0;
            for (int64_t ow = lo3; ow < hi3; ow++) yr[ow] *= inv;
          } else if (d1 <= d0 || h1 <= h0) {
            for (int64_t ow = lo3; ow < hi3; ow++) yr[ow] = 0;
          }
        }
        for (int64_t ow = 0; ow < OW; ow++) {
          if (ow == ow_skip) ow = ow_end;
          if (ow >= OW) break;
          int64_t w0, w1;
          const int64_t sw = ow * s2 - w->pb[2];
          pool_range(sw, d2, w->k[2], IW, &w0, &w1);
          const int64_t valid = (d1 - d0) * (h1 - h0) * (w1 - w0);
          if (avg) {
            const int64_t cnt = include_pad ? ch * pad_count(sw, d2, w->k[2], IW + w->pe[2]) : ch * (w1 - w0);
            yr[ow] = cnt > 0 && (valid > 0 || include_pad) ? (NN_T)(yr[ow] / (NN_T)cnt) : 0;
          } else if (valid == 0) {
            yr[ow] = 0; /* the window saw only padding */
          }
        }
      }
    }
  }
}

#if NN_FLOAT
/* Average (p == 0) or Lp (p >= 1) pooling. */
static void NN_FN(avgpool)(const NN_T *x, NN_T *y, int64_t planes, const nn_window *w, bool include_pad, double p) {
  const int64_t ID = w->in[0], IH = w->in[1], IW = w->in[2];
  const int64_t OD = w->out[0], OH = w->out[1], OW = w->out[2];
  const int64_t iplane = ID * IH * IW;
  for (int64_t pl = 0; pl < planes; pl++) {
    const NN_T *xp = x + pl * iplane;
    for (int64_t od = 0; od < OD; od++) {
      int64_t d0, d1, h0, h1, w0, w1;
      const int64_t sd = od * w->s[0] - w->pb[0];
      pool_range(sd, w->d[0], w->k[0], ID, &d0, &d1);
      const int64_t cd = pad_count(sd, w->d[0], w->k[0], ID + w->pe[0]);
      for (int64_t oh = 0; oh < OH; oh++) {
        const int64_t sh = oh * w->s[1] - w->pb[1];
        pool_range(sh, w->d[1], w->k[1], IH, &h0, &h1);
        const int64_t ch = pad_count(sh, w->d[1], w->k[1], IH + w->pe[1]);
        for (int64_t ow = 0; ow < OW; ow++, y++) {
          const int64_t sw = ow * w->s[2] - w->pb[2];
          pool_range(sw, w->d[2], w->k[2], IW, &w0, &w1);
          double acc = 0;
          for (int64_t kd = d0; kd < d1; kd++)
            for (int64_t kh = h0; kh < h1; kh++) {
              const NN_T *row = xp + ((sd + kd * w->d[0]) * IH + sh + kh * w->d[1]) * IW;
              if (p == 0) {
                for (int64_t kw = w0; kw < w1; kw++) acc += row[sw + kw * w->d[2]];
              } else if (p == 1) {
                for (int64_t kw = w0; kw < w1; kw++) acc += fabs((double)row[sw + kw * w->d[2]]);
              } else if (p == 2) {
                for (int64_t kw = w0; kw < w1; kw++) {
                  double v = row[sw + kw * w->d[2]];
                  acc += v * v;
                }
              } else {
                for (int64_t kw = w0; kw < w1; kw++) acc += pow(fabs((double)row[sw + kw * w->d[2]]), p);
              }
            }
          if (p != 0) {
            *y = (NN_T)(p == 1 ? acc : p == 2 ? sqrt(acc) : pow(acc, 1.0 / p));
          } else {
            int64_t cnt = include_pad ? cd * ch * pad_count(sw, w->d[2], w->k[2], IW + w->pe[2])
                                      : (d1 - d0) * (h1 - h0) * (w1 - w0);
            *y = cnt > 0 ? (NN_T)(acc / (double)cnt) : 0;
          }
        }
      }
    }
  }
}

/* Global average / max / Lp over each plane of S elements. kind: 0 avg, 1 max, 2 Lp. */
static void NN_FN(gpool)(const NN_T *x, NN_T *y, int64_t planes, int64_t S, int kind, double p) {
  for (int64_t pl = 0; pl < planes; pl++) {
    const NN_T *xp = x + pl * S;
    if (kind == 1) {
      NN_T m = S > 0 ? xp[0] : 0;
      for (int64_t i = 1; i < S; i++) m = xp[i] > m ? xp[i] : m;
      y[pl] = m;
    } else if (kind == 0) {
      /* eight partial sums: independent add chains (one chain is latency-bound), combined in a fixed
       * order, so the result does not depend on how planes are split across threads */
      double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= S; i += 8)
        for (int l = 0; l < 8; l++) part[l] += (double)xp[i + l];
      double acc = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      for (; i < S; i++) acc += xp[i];
      y[pl] = S > 0 ? (NN_T)(acc / (double)S) : 0;
    } else {
      double acc = 0;
      if (p == 2) {
        for (int64_t i = 0; i < S; i++) acc += (double)xp[i] * xp[i];
        y[pl] = (NN_T)sqrt(acc);
      } else if (p == 1) {
        for (int64_t i = 0; i < S; i++) acc += fabs((double)xp[i]);
        y[pl] = (NN_T)acc;
      } else {
        for (int64_t i = 0; i < S; i++) acc += pow(fabs((double)xp[i]), p);
        y[pl] = (NN_T)pow(acc, 1.0 / p);
      }
    }
  }
}
#endif

#undef NN_FN
#undef NN_CAT
#undef NN_CAT2
