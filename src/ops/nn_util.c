/* Helpers shared by the nn kernels: sliding-window geometry (Conv, pools) and small checks. */
#include <string.h>

#include "ops/nn_internal.h"

static keel_status *read_ints(const keel_node *n, const char *name, int want, int64_t dflt, int64_t min,
                              int64_t *out) {
  const int64_t *v = NULL;
  int c = keel_attr_ints(n, name, &v);
  if (c < 0 || !v) {
    for (int i = 0; i < want; i++) out[i] = dflt;
    return NULL;
  }
  if (c != want)
    return keel_error(KEEL_INVALID_MODEL, "attribute '%s' has %d values, expected %d", name, c, want);
  for (int i = 0; i < want; i++) {
    if (v[i] < min)
      return keel_error(KEEL_INVALID_MODEL, "attribute '%s'[%d] = %lld, must be >= %lld", name, i,
                        (long long)v[i], (long long)min);
    out[i] = v[i];
  }
  return NULL;
}

keel_status *nn_window_init(const keel_node *n, int nsp, const int64_t *in, const int64_t *k, bool allow_ceil,
                            nn_window *w) {
  memset(w, 0, sizeof *w);
  if (nsp < 1 || nsp > NN_MAX_SP)
    return keel_error(KEEL_UNSUPPORTED, "%d spatial dimensions (1 to %d supported)", nsp, NN_MAX_SP);
  w->nsp = nsp;
  int64_t pads[2 * NN_MAX_SP];
  KEEL_TRY(read_ints(n, "strides", nsp, 1, 1, w->s));
  KEEL_TRY(read_ints(n, "dilations", nsp, 1, 1, w->d));
  KEEL_TRY(read_ints(n, "pads", 2 * nsp, 0, 0, pads));
  const char *ap = keel_attr_string(n, "auto_pad", "NOTSET");
  enum { NOTSET, SAME_UPPER, SAME_LOWER, VALID } mode;
  if (!ap[0] || !strcmp(ap, "NOTSET"))
    mode = NOTSET;
  else if (!strcmp(ap, "SAME_UPPER"))
    mode = SAME_UPPER;
  else if (!strcmp(ap, "SAME_LOWER"))
    mode = SAME_LOWER;
  else if (!strcmp(ap, "VALID"))
    mode = VALID;
  else
    return keel_error(KEEL_INVALID_MODEL, "unknown auto_pad '%s'", ap);
  int64_t ceil_mode = allow_ceil ? keel_attr_int(n, "ceil_mode", 0) : 0;
  for (int i = 0; i < nsp; i++) {
    if (k[i] < 1) return keel_error(KEEL_INVALID_MODEL, "kernel size %lld in spatial dim %d", (long long)k[i], i);
    w->k[i] = k[i];
    w->in[i] = in[i];
    int64_t ek; /* dilated kernel extent */
    if (!keel_mul_i64(k[i] - 1, w->d[i], &ek) || !keel_add_i64(ek, 1, &ek))
      return keel_error(KEEL_INVALID_MODEL, "dilated kernel size overflows in spatial dim %d", i);
    if (mode == NOTSET) {
      w->pb[i] = pads[i];
      w->pe[i] = pads[nsp + i];
    }
    if (in[i] < 0) { /* unknown while inferring: propagate */
      w->out[i] = -1;
      continue;
    }
    if (mode == SAME_UPPER || mode == SAME_LOWER) {
      w->out[i] = nn_ceildiv(in[i], w->s[i]);
      int64_t total = (w->out[i] - 1) * w->s[i] + ek - in[i];
      if (total < 0) total = 0;
      w->pb[i] = mode == SAME_UPPER ? total / 2 : total - total / 2;
      w->pe[i] = total - w->pb[i];
      continue;
    }
    int64_t padded;
    if (!keel_add_i64(in[i], w->pb[i], &padded) || !keel_add_i64(padded, w->pe[i], &padded))
      return keel_error(KEEL_INVALID_MODEL, "pads overflow in spatial dim %d", i);
    if (padded < ek)
      return keel_error(KEEL_SHAPE_MISMATCH,
                        "spatial dim %d: input size %lld (padded %lld) is smaller than the kernel extent %lld", i,
                        (long long)in[i], (long long)padded, (long long)ek);
    if (ceil_mode) {
      w->out[i] = nn_ceildiv(padded - ek, w->s[i]) + 1;
      /* The last window must start inside the input or its leading padding. */
      if ((w->out[i] - 1) * w->s[i] >= in[i] + w->pb[i]) w->out[i]--;
    } else {
      w->out[i] = (padded - ek) / w->s[i] + 1;
    }
  }
  return NULL;
}

void nn_window_pad3(const nn_window *w, nn_window *o) {
  int shift = NN_MAX_SP - w->nsp;
  o->nsp = NN_MAX_SP;
  for (int i = 0; i < NN_MAX_SP; i++) {
    int j = i - shift;
    if (j < 0) {
      o->in[i] = o->out[i] = o->k[i] = o->s[i] = o->d[i] = 1;
      o->pb[i] = o->pe[i] = 0;
    } else {
      o->in[i] = w->in[j];
      o->out[i] = w->out[j];
      o->k[i] = w->k[j];
      o->s[i] = w->s[j];
      o->d[i] = w->d[j];
      o->pb[i] = w->pb[j];
      o->pe[i] = w->pe[j];
    }
  }
}

keel_status *nn_need_inputs(const keel_node *n, int n_in, int min_in, int max_in) {
  if (n_in < min_in || (max_in >= 0 && n_in > max_in)) {
    if (max_in < 0)
      return keel_error(KEEL_INVALID_MODEL, "has %d inputs, expected at least %d", n_in, min_in);
    return keel_error(KEEL_INVALID_MODEL, "has %d inputs, expected %d to %d", n_in, min_in, max_in);
  }
  return NULL;
}

int64_t nn_prod(const int64_t *dims, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= dims[i];
  return p;
}

keel_status *nn_check_numel(const keel_node *n, const int64_t *dims, int ndim, size_t elem) {
  for (int i = 0; i < ndim; i++)
    if (dims[i] < 0) return NULL; /* unknown yet */
  int64_t numel;
  size_t bytes;
  if (!keel_shape_numel(dims, ndim, &numel) || !keel_shape_nbytes(numel, elem, &bytes)) {
    char buf[160];
    return keel_error(KEEL_SHAPE_MISMATCH, "output shape %s is too large",
                      keel_shape_format(dims, ndim, buf, sizeof buf));
  }
  return NULL;
}
