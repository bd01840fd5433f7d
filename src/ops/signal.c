/* Operator family: signal (DFT, STFT, HannWindow, HammingWindow, BlackmanWindow, MelWeightMatrix).
 * Transforms run in double precision on one line at a time: an iterative radix-2 FFT when the length is a
 * power of two, a direct O(n^2) DFT over a twiddle table otherwise. The line buffers and twiddles live in
 * the planned workspace. Shapes of every operator here depend on small integer inputs (dft_length, axis,
 * frame_step, window size...), which must be known while planning (constants, in practice). */
#include <math.h>
#include <string.h>

#include "ops/elem.h"
#include "ops/nn_internal.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static bool out_dtype_ok(keel_dtype t) {
  switch (t) {
    case KEEL_FLOAT32: case KEEL_FLOAT64: case KEEL_FLOAT16: case KEEL_BFLOAT16: case KEEL_INT8: case KEEL_UINT8:
    case KEEL_INT16: case KEEL_UINT16: case KEEL_INT32: case KEEL_UINT32: case KEEL_INT64: case KEEL_UINT64:
      return true;
    default:
      return false;
  }
}

/* A scalar (or one-element) integer input whose value the shape needs. */
static keel_status *scalar_int(const keel_node *n, const keel_view *in, int n_in, int i, const char *what,
                               int64_t *out) {
  const keel_view *v = &in[i];
  if (v->dtype != KEEL_INT32 && v->dtype != KEEL_INT64)
    return keel_error(KEEL_INVALID_MODEL, "input %s has dtype %s; int32 or int64 expected", what,
                      keel_dtype_name(v->dtype));
  if (keel_view_numel(v) != 1 || v->ndim > 1)
    return keel_error(KEEL_SHAPE_MISMATCH, "input %s must be a scalar", what);
  if (!v->data) return keel_need_value(n, i);
  *out = keel_view_get_i64(v, 0);
  return NULL;
}

/* ---------------------------------------------------------------- transforms */

/* Workspace for a transform of length n: in and out lines (complex) and the twiddle table. */
static size_t fft_ws_doubles(int64_t n) { return (size_t)(6 * n); }

static bool pow2(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

/* tw[k] = exp(sign * 2 pi i k / n) for k < n (interleaved re, im). */
static void twiddles(double *tw, int64_t n, int sign) {
  for (int64_t k = 0; k < n; k++) {
    double a = 2.0 * M_PI * (double)k / (double)n;
    tw[2 * k] = cos(a);
    tw[2 * k + 1] = sign * sin(a);
  }
}

/* out = DFT of in (length n, interleaved complex), twiddles tw from twiddles(). */
static void transform(const double *in, double *out, const double *tw, int64_t n) {
  if (pow2(n)) {
    /* bit-reversed copy, then butterflies */
    int bits = 0;
    while (((int64_t)1 << bits) < n) bits++;
    for (int64_t i = 0; i < n; i++) {
      int64_t j = 0;
      for (int b = 0; b < bits; b++)
        if (i & ((int64_t)1 << b)) j |= (int64_t)1 << (bits - 1 - b);
      out[2 * j] = in[2 * i];
      out[2 * j + 1] = in[2 * i + 1];
    }
    for (int64_t len = 2; len <= n; len <<= 1) {
      const int64_t half = len >> 1, step = n / len;
      for (int64_t s = 0; s < n; s += len)
        for (int64_t k = 0; k < half; k++) {
          const double wr = tw[2 * k * step], wi = tw[2 * k * step + 1];
          double *a = out + 2 * (s + k), *b = out + 2 * (s + k + half);
          const double br = b[0] * wr - b[1] * wi, bi = b[0] * wi + b[1] * wr;
          b[0] = a[0] - br;
          b[1] = a[1] - bi;
          a[0] += br;
          a[1] += bi;
        }
    }
    return;
  }
  for (int64_t k = 0; k < n; k++) {
    double re = 0, im = 0;
    int64_t idx = 0; /* j*k mod n, kept incrementally */
    for (int64_t j = 0; j < n; j++) {
      const double wr = tw[2 * idx], wi = tw[2 * idx + 1], xr = in[2 * j], xi = in[2 * j + 1];
      re += xr * wr - xi * wi;
      im += xr * wi + xi * wr;
      idx += k;
      if (idx >= n) idx -= n;
    }
    out[2 * k] = re;
    out[2 * k + 1] = im;
  }
}

/* ---------------------------------------------------------------- DFT */

typedef struct dft_cfg {
  int axis, rank;
  int64_t m;     /* input length along axis */
  int64_t nfft;  /* transform length */
  int64_t olen;  /* output length along axis */
  bool inverse, onesided, irfft, complex_in;
} dft_cfg;

static keel_status *dft_cfg_get(const keel_node *n, const keel_view *in, int n_in, dft_cfg *c) {
  KEEL_TRY(nn_need_inputs(n, n_in, 1, n->opset >= 20 ? 3 : 2));
  const keel_view *x = &in[0];
  if (!nn_has(in, n_in, 0)) return keel_error(KEEL_INVALID_MODEL, "input is required");
  if (!keel_elem_is_float(x->dtype)) return keel_error(KEEL_UNSUPPORTED, "input has dtype %s", keel_dtype_name(x->dtype));
  c->rank = x->ndim;
  if (c->rank < 2) return keel_error(KEEL_SHAPE_MISMATCH, "input must have rank >= 2 (got %d)", c->rank);
  const int64_t last = x->dims[c->rank - 1];
  if (last != 1 && last != 2)
    return keel_error(KEEL_SHAPE_MISMATCH, "the input's last dim is %lld; 1 (real) or 2 (complex) expected", (long long)last);
  c->complex_in = last == 2;
  int64_t axis;
  if (n->opset >= 20) {
    axis = -2;
    if (nn_has(in, n_in, 2)) KEEL_TRY(scalar_int(n, in, n_in, 2, "axis", &axis));
  } else {
    axis = keel_attr_int(n, "axis", 1);
  }
  if (axis < 0) axis += c->rank;
  if (axis < 0 || axis >= c->rank - 1)
    return keel_error(KEEL_INVALID_MODEL, "axis %lld is out of range for rank %d (the last dim holds re/im)",
                      (long long)axis, c->rank);
  c->axis = (int)axis;
  c->inverse = keel_attr_int(n, "inverse", 0) != 0;
  c->onesided = keel_attr_int(n, "onesided", 0) != 0;
  c->irfft = c->inverse && c->onesided;
  c->m = x->dims[c->axis];
  if (nn_has(in, n_in, 1)) {
    KEEL_TRY(scalar_int(n, in, n_in, 1, "dft_length", &c->nfft));
  } else {
    c->nfft = c->irfft ? 2 * (c->m - 1) : c->m;
  }
  if (c->m >= 0 && c->nfft < 1)
    return keel_error(KEEL_INVALID_ARGUMENT, "dft_length %lld must be positive", (long long)c->nfft);
  if (c->nfft > ((int64_t)1 << 40)) return keel_error(KEEL_UNSUPPORTED, "dft_length %lld is too large", (long long)c->nfft);
  c->olen = (c->onesided && !c->inverse) ? c->nfft / 2 + 1 : c->nfft;
  return NULL;
}

static keel_status *dft_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  dft_cfg c;
  KEEL_TRY(dft_cfg_get(n, in, n_in, &c));
  int64_t d[KEEL_MAX_DIMS];
  memcpy(d, in[0].dims, sizeof(int64_t) * (size_t)c.rank);
  d[c.axis] = c.olen;
  d[c.rank - 1] = c.irfft ? 1 : 2;
  KEEL_TRY(nn_check_numel(n, d, c.rank, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, d, c.rank);
  return NULL;
}

static size_t dft_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  dft_cfg c;
  keel_status *s = dft_cfg_get(n, in, n_in, &c);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return fft_ws_doubles(c.nfft) * sizeof(double);
}

static keel_status *dft_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  dft_cfg c;
  KEEL_TRY(dft_cfg_get(n, in, n_in, &c));
  const int64_t nf = c.nfft;
  if (fft_ws_doubles(nf) * sizeof(double) > ex->workspace_bytes)
    return keel_error(KEEL_INTERNAL, "workspace too small");
  double *bi = ex->workspace, *bo = bi + 2 * nf, *tw = bo + 2 * nf;
  twiddles(tw, nf, c.inverse ? 1 : -1);
  const keel_view *x = &in[0];
  const keel_dtype t = x->dtype;
  const int64_t ci = c.complex_in ? 2 : 1, co = c.irfft ? 1 : 2;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < c.axis; i++) outer *= x->dims[i];
  for (int i = c.axis + 1; i < c.rank - 1; i++) inner *= x->dims[i];
  const double scale = c.inverse ? 1.0 / (double)nf : 1.0;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t q = 0; q < inner; q++) {
      /* element k of this line: x[o, k, q, :] */
      const int64_t ib = o * c.m * inner + q;
      if (c.irfft) {
        /* Hermitian extension of the one-sided spectrum (numpy irfft uses the first nf/2+1 values) */
        const int64_t h = nf / 2 + 1;
        for (int64_t k = 0; k < h; k++) {
          bool have = k < c.m;
          bi[2 * k] = have ? keel_elem_load(t, x->data, (ib + k * inner) * ci) : 0;
          bi[2 * k + 1] = have && ci == 2 ? keel_elem_load(t, x->data, (ib + k * inner) * ci + 1) : 0;
        }
        for (int64_t k = h; k < nf; k++) {
          bi[2 * k] = bi[2 * (nf - k)];
          bi[2 * k + 1] = -bi[2 * (nf - k) + 1];
        }
      } else {
        for (int64_t k = 0; k < nf; k++) {
          bool have = k < c.m;
          bi[2 * k] = have ? keel_elem_load(t, x->data, (ib + k * inner) * ci) : 0;
          bi[2 * k + 1] = have && ci == 2 ? keel_elem_load(t, x->data, (ib + k * inner) * ci + 1) : 0;
        }
      }
      transform(bi, bo, tw, nf);
      const int64_t ob = o * c.olen * inner + q;
      for (int64_t k = 0; k < c.olen; k++) {
        keel_elem_store(t, out[0].data, (ob + k * inner) * co, bo[2 * k] * scale);
        if (co == 2) keel_elem_store(t, out[0].data, (ob + k * inner) * co + 1, bo[2 * k + 1] * scale);
      }
    }
  return NULL;
}

/* ---------------------------------------------------------------- STFT */

typedef struct stft_cfg {
  int64_t B, L, step, fl, frames, bins;
  bool complex_in, has_window;
} stft_cfg;

static keel_status *stft_cfg_get(const keel_node *n, const keel_view *in, int n_in, stft_cfg *c) {
  KEEL_TRY(nn_need_inputs(n, n_in, 2, 4));
  const keel_view *x = &in[0];
  if (!nn_has(in, n_in, 0) || !nn_has(in, n_in, 1))
    return keel_error(KEEL_INVALID_MODEL, "inputs signal and frame_step are required");
  if (!keel_elem_is_float(x->dtype)) return keel_error(KEEL_UNSUPPORTED, "signal has dtype %s", keel_dtype_name(x->dtype));
  if (x->ndim != 3 || (x->dims[2] != 1 && x->dims[2] != 2))
    return keel_error(KEEL_SHAPE_MISMATCH, "signal must have shape [batch, length, 1 or 2]");
  c->B = x->dims[0];
  c->L = x->dims[1];
  c->complex_in = x->dims[2] == 2;
  KEEL_TRY(scalar_int(n, in, n_in, 1, "frame_step", &c->step));
  if (c->step < 1) return keel_error(KEEL_INVALID_ARGUMENT, "frame_step %lld must be positive", (long long)c->step);
  c->has_window = nn_has(in, n_in, 2);
  int64_t wl = -1;
  if (c->has_window) {
    const keel_view *w = &in[2];
    if (w->ndim != 1) return keel_error(KEEL_SHAPE_MISMATCH, "window must be 1-D (got rank %d)", w->ndim);
    if (!keel_elem_is_float(w->dtype)) return keel_error(KEEL_UNSUPPORTED, "window has dtype %s", keel_dtype_name(w->dtype));
    wl = w->dims[0];
  }
  if (nn_has(in, n_in, 3)) {
    KEEL_TRY(scalar_int(n, in, n_in, 3, "frame_length", &c->fl));
    if (wl >= 0 && wl != c->fl)
      return keel_error(KEEL_SHAPE_MISMATCH, "window has %lld values but frame_length is %lld", (long long)wl,
                        (long long)c->fl);
  } else {
    c->fl = wl >= 0 ? wl : c->L;
  }
  if (c->fl < 1) return keel_error(KEEL_INVALID_ARGUMENT, "frame_length %lld must be positive", (long long)c->fl);
  if (c->fl > ((int64_t)1 << 40)) return keel_error(KEEL_UNSUPPORTED, "frame_length %lld is too large", (long long)c->fl);
  if (c->L >= 0 && c->L < c->fl)
    return keel_error(KEEL_SHAPE_MISMATCH, "signal length %lld is shorter than frame_length %lld", (long long)c->L,
                      (long long)c->fl);
  c->frames = c->L >= 0 ? 1 + (c->L - c->fl) / c->step : -1;
  c->bins = keel_attr_int(n, "onesided", 1) ? c->fl / 2 + 1 : c->fl;
  return NULL;
}

static keel_status *stft_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  stft_cfg c;
  KEEL_TRY(stft_cfg_get(n, in, n_in, &c));
  int64_t d[4] = {c.B, c.frames, c.bins, 2};
  KEEL_TRY(nn_check_numel(n, d, 4, keel_dtype_size(in[0].dtype)));
  keel_view_set_shape(&out[0], in[0].dtype, d, 4);
  return NULL;
}

static size_t stft_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  stft_cfg c;
  keel_status *s = stft_cfg_get(n, in, n_in, &c);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  return fft_ws_doubles(c.fl) * sizeof(double);
}

static keel_status *stft_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_exec *ex) {
  stft_cfg c;
  KEEL_TRY(stft_cfg_get(n, in, n_in, &c));
  const int64_t nf = c.fl;
  if (fft_ws_doubles(nf) * sizeof(double) > ex->workspace_bytes)
    return keel_error(KEEL_INTERNAL, "workspace too small");
  double *bi = ex->workspace, *bo = bi + 2 * nf, *tw = bo + 2 * nf;
  twiddles(tw, nf, -1);
  const keel_dtype t = in[0].dtype;
  const int64_t ci = c.complex_in ? 2 : 1;
  for (int64_t b = 0; b < c.B; b++)
    for (int64_t f = 0; f < c.frames; f++) {
      const int64_t base = b * c.L + f * c.step;
      for (int64_t k = 0; k < nf; k++) {
        const double w = c.has_window ? keel_elem_load(in[2].dtype, in[2].data, k) : 1.0;
        bi[2 * k] = w * keel_elem_load(t, in[0].data, (base + k) * ci);
        bi[2 * k + 1] = ci == 2 ? w * keel_elem_load(t, in[0].data, (base + k) * ci + 1) : 0;
      }
      transform(bi, bo, tw, nf);
      const int64_t ob = (b * c.frames + f) * c.bins * 2;
      for (int64_t k = 0; k < c.bins; k++) {
        keel_elem_store(t, out[0].data, ob + 2 * k, bo[2 * k]);
        keel_elem_store(t, out[0].data, ob + 2 * k + 1, bo[2 * k + 1]);
      }
    }
  return NULL;
}

/* ---------------------------------------------------------------- windows */

static keel_status *win_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(nn_need_inputs(n, n_in, 1, 1));
  int64_t size;
  KEEL_TRY(scalar_int(n, in, n_in, 0, "size", &size));
  if (size < 0) return keel_error(KEEL_INVALID_ARGUMENT, "size %lld is negative", (long long)size);
  const keel_dtype t = (keel_dtype)keel_attr_int(n, "output_datatype", KEEL_FLOAT32);
  if (!out_dtype_ok(t)) return keel_error(KEEL_UNSUPPORTED, "output_datatype %d is not supported", (int)t);
  KEEL_TRY(nn_check_numel(n, &size, 1, keel_dtype_size(t)));
  keel_view_set_shape(&out[0], t, &size, 1);
  return NULL;
}

static keel_status *win_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  const int64_t size = out[0].dims[0];
  const double N = keel_attr_int(n, "periodic", 1) ? (double)size : (double)size - 1;
  const char *op = n->op_type;
  for (int64_t i = 0; i < size; i++) {
    const double a = 2.0 * M_PI * (double)i / N;
    double v;
    /* A one-point symmetric window divides 0 by 0: NaN, as the ONNX reference and ONNX Runtime give. */
    if (op[0] == 'H' && op[2] == 'n') /* HannWindow */
      v = 0.5 - 0.5 * cos(a);
    else if (op[0] == 'H') /* HammingWindow */
      v = 25.0 / 46.0 - (21.0 / 46.0) * cos(a);
    else /* BlackmanWindow */
      v = 0.42 - 0.5 * cos(a) + 0.08 * cos(2 * a);
    keel_elem_store(out[0].dtype, out[0].data, i, v);
  }
  return NULL;
}

/* ---------------------------------------------------------------- MelWeightMatrix */

static keel_status *mel_dims(const keel_node *n, const keel_view *in, int n_in, int64_t *bins, int64_t *dft) {
  KEEL_TRY(nn_need_inputs(n, n_in, 5, 5));
  KEEL_TRY(scalar_int(n, in, n_in, 0, "num_mel_bins", bins));
  KEEL_TRY(scalar_int(n, in, n_in, 1, "dft_length", dft));
  if (*bins < 0 || *dft < 1)
    return keel_error(KEEL_INVALID_ARGUMENT, "num_mel_bins %lld must be >= 0 and dft_length %lld >= 1",
                      (long long)*bins, (long long)*dft);
  for (int i = 3; i < 5; i++)
    if (!keel_elem_is_float(in[i].dtype) || keel_view_numel(&in[i]) != 1)
      return keel_error(KEEL_INVALID_MODEL, "input %s must be a float scalar", i == 3 ? "lower_edge_hertz" : "upper_edge_hertz");
  return NULL;
}

static keel_status *mel_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t bins, dft;
  KEEL_TRY(mel_dims(n, in, n_in, &bins, &dft));
  const keel_dtype t = (keel_dtype)keel_attr_int(n, "output_datatype", KEEL_FLOAT32);
  if (!out_dtype_ok(t)) return keel_error(KEEL_UNSUPPORTED, "output_datatype %d is not supported", (int)t);
  int64_t d[2] = {dft / 2 + 1, bins};
  KEEL_TRY(nn_check_numel(n, d, 2, keel_dtype_size(t)));
  keel_view_set_shape(&out[0], t, d, 2);
  return NULL;
}

static keel_status *mel_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  int64_t M, dft, sr;
  KEEL_TRY(mel_dims(n, in, n_in, &M, &dft));
  KEEL_TRY(scalar_int(n, in, n_in, 2, "sample_rate", &sr));
  if (sr < 1) return keel_error(KEEL_INVALID_ARGUMENT, "sample_rate %lld must be positive", (long long)sr);
  const double lo = keel_elem_load(in[3].dtype, in[3].data, 0), hi = keel_elem_load(in[4].dtype, in[4].data, 0);
  if (!isfinite(lo) || !isfinite(hi) || lo < 0 || hi < lo)
    return keel_error(KEEL_INVALID_ARGUMENT, "edges %g .. %g Hz must satisfy 0 <= lower <= upper", lo, hi);
  const int64_t nb = dft / 2 + 1;
  const keel_dtype t = out[0].dtype;
  for (int64_t i = 0; i < nb * M; i++) keel_elem_store(t, out[0].data, i, 0);
  /* M+2 edges evenly spaced on the mel scale, mapped to spectrogram bins (as the ONNX reference) */
  const double lm = 2595.0 * log10(1.0 + lo / 700.0), hm = 2595.0 * log10(1.0 + hi / 700.0);
  const double step = (hm - lm) / (double)(M + 2);
  int64_t prev2 = 0, prev1 = 0;
  for (int64_t k = 0; k < M + 2; k++) {
    const double hz = 700.0 * (pow(10.0, (lm + (double)k * step) / 2595.0) - 1.0);
    double fb = floor((double)(dft + 1) * hz / (double)sr);
    const int64_t bin = fb > 4e18 ? (int64_t)4e18 : (int64_t)fb; /* fb >= 0 as lo >= 0 */
    if (k >= 2) {
      const int64_t i = k - 2, l = prev2, ctr = prev1, r = bin;
      if (ctr - l == 0) {
        if (ctr >= 0 && ctr < nb) keel_elem_store(t, out[0].data, ctr * M + i, 1.0);
      } else {
        for (int64_t j = l; j <= ctr && j < nb; j++)
          if (j >= 0) keel_elem_store(t, out[0].data, j * M + i, (double)(j - l) / (double)(ctr - l));
      }
      if (r >= nb)
        return keel_error(KEEL_INVALID_ARGUMENT,
                          "upper_edge_hertz %g gives mel filter %lld ending at bin %lld, past the %lld bins of "
                          "dft_length %lld at sample_rate %lld", hi, (long long)i, (long long)r, (long long)nb,
                          (long long)dft, (long long)sr);
      if (r - ctr > 0)
        for (int64_t j = ctr; j < r && j < nb; j++)
          if (j >= 0) keel_elem_store(t, out[0].data, j * M + i, (double)(r - j) / (double)(r - ctr));
    }
    prev2 = prev1;
    prev1 = bin;
  }
  return NULL;
}

#define D(op, lo, hi, inf, run, ws) {op, "", lo, hi, inf, run, ws, -1}
#define MX KEEL_MAX_OPSET

const keel_op_def keel_ops_signal[] = {
    /* DFT 17: axis attribute (default 1); 20: axis input (default -2). */
    D("DFT", 17, 19, dft_infer, dft_run, dft_workspace),
    D("DFT", 20, MX, dft_infer, dft_run, dft_workspace),
    D("STFT", 17, MX, stft_infer, stft_run, stft_workspace),
    D("HannWindow", 17, MX, win_infer, win_run, NULL),
    D("HammingWindow", 17, MX, win_infer, win_run, NULL),
    D("BlackmanWindow", 17, MX, win_infer, win_run, NULL),
    D("MelWeightMatrix", 17, MX, mel_infer, mel_run, NULL),
};
const int keel_ops_signal_count = (int)(sizeof keel_ops_signal / sizeof keel_ops_signal[0]);
