/* numpy-style broadcasting helpers (see broadcast.h). */
#include "ops/broadcast.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/shape.h"

static void fmt_shape(const int64_t *d, int nd, char *buf, size_t size) {
  /* Local formatter so this file does not depend on tensor.c being linked in unit tests. */
  size_t p = 0;
  if (size == 0) return;
  buf[p++] = '[';
  for (int i = 0; i < nd && p + 24 < size; i++) {
    int w = snprintf(buf + p, size - p, i ? ",%lld" : "%lld", (long long)d[i]);
    if (w < 0) break;
    p += (size_t)w;
  }
  if (p + 2 <= size) buf[p++] = ']';
  buf[p < size ? p : size - 1] = '\0';
}

keel_status *keel_broadcast_shapes(const char *what, int n, const int64_t *const *dims, const int *ndims,
                                   int64_t *out, int *nout) {
  int r = 0;
  for (int k = 0; k < n; k++) {
    if (ndims[k] < 0 || ndims[k] > KEEL_MAX_DIMS)
      return keel_error(KEEL_SHAPE_MISMATCH, "%s%sinput %d has unsupported rank %d", what ? what : "",
                        what ? ": " : "", k, ndims[k]);
    if (ndims[k] > r) r = ndims[k];
  }
  for (int j = 0; j < r; j++) out[j] = 1;
  for (int k = 0; k < n; k++) {
    int lead = r - ndims[k];
    for (int j = 0; j < ndims[k]; j++) {
      int64_t d = dims[k][j], *o = &out[lead + j];
      if (d == *o || d == 1) continue;
      if (*o == 1) {
        *o = d;
        continue;
      }
      /* Find an earlier input that set this dim, to name both shapes. */
      int other = 0;
      for (int q = 0; q < k; q++) {
        int jq = lead + j - (r - ndims[q]);
        if (jq >= 0 && dims[q][jq] == *o) {
          other = q;
          break;
        }
      }
      char s1[200], s2[200];
      fmt_shape(dims[other], ndims[other], s1, sizeof s1);
      fmt_shape(dims[k], ndims[k], s2, sizeof s2);
      return keel_error(KEEL_SHAPE_MISMATCH,
                        "%s%sinput %d shape %s and input %d shape %s are not broadcastable (dim %lld vs %lld)",
                        what ? what : "", what ? ": " : "", other, s1, k, s2, (long long)*o, (long long)d);
    }
  }
  *nout = r;
  return NULL;
}

bool keel_broadcast_to_ok(const int64_t *from, int nfrom, const int64_t *to, int nto) {
  if (nfrom > nto) return false;
  for (int j = 0; j < nfrom; j++) {
    int64_t f = from[j], t = to[nto - nfrom + j];
    if (f != t && f != 1) return false;
  }
  return true;
}

keel_status *keel_bcast_init(keel_bcast *b, const int64_t *out_dims, int out_ndim, const int64_t *const *dims,
                             const int *ndims, int n) {
  if (n < 1 || n > KEEL_BCAST_MAX_INPUTS)
    return keel_error(KEEL_INTERNAL, "broadcast iterator: %d inputs (max %d)", n, KEEL_BCAST_MAX_INPUTS);
  if (out_ndim < 0 || out_ndim > KEEL_MAX_DIMS)
    return keel_error(KEEL_INTERNAL, "broadcast iterator: output rank %d", out_ndim);
  memset(b, 0, sizeof *b);
  b->n_in = n;
  int64_t st[KEEL_BCAST_MAX_INPUTS][KEEL_MAX_DIMS];
  for (int k = 0; k < n; k++) {
    int nk = ndims[k], lead = out_ndim - nk;
    if (nk < 0 || lead < 0) goto mismatch;
    int64_t s = 1;
    for (int j = out_ndim - 1; j >= 0; j--) {
      int jk = j - lead;
      if (jk < 0) {
        st[k][j] = 0;
        continue;
      }
      int64_t d = dims[k][jk];
      if (d == 1) {
        st[k][j] = 0;
      } else if (d == out_dims[j]) {
        st[k][j] = s;
        s *= d;
      } else {
        goto mismatch;
      }
    }
  }
  /* Drop size-1 output dims, then merge neighbours that every input walks contiguously (or not at all). */
  int64_t numel = 1;
  int r = 0;
  for (int j = 0; j < out_ndim; j++) {
    numel *= out_dims[j];
    if (out_dims[j] == 1) continue;
    if (r > 0) {
      bool merge = true;
      for (int k = 0; k < n; k++)
        if (b->strides[k][r - 1] != st[k][j] * out_dims[j]) merge = false;
      if (merge) {
        b->dims[r - 1] *= out_dims[j];
        for (int k = 0; k < n; k++) b->strides[k][r - 1] = st[k][j];
        continue;
      }
    }
    b->dims[r] = out_dims[j];
    for (int k = 0; k < n; k++) b->strides[k][r] = st[k][j];
    r++;
  }
  if (r == 0) {
    b->dims[0] = 1;
    for (int k = 0; k < n; k++) b->strides[k][0] = 0;
    r = 1;
  }
  b->ndim = r;
  b->numel = numel;
  b->inner = b->dims[r - 1];
  for (int k = 0; k < n; k++) b->inner_step[k] = b->strides[k][r - 1] != 0;
  return NULL;

mismatch:;
  /* Name the offending input shape against the output shape. */
  for (int k = 0; k < n; k++) {
    if (ndims[k] >= 0 && ndims[k] <= out_ndim && keel_broadcast_to_ok(dims[k], ndims[k], out_dims, out_ndim))
      continue;
    char s1[200], s2[200];
    fmt_shape(dims[k], ndims[k] < 0 ? 0 : ndims[k], s1, sizeof s1);
    fmt_shape(out_dims, out_ndim, s2, sizeof s2);
    return keel_error(KEEL_SHAPE_MISMATCH, "input %d shape %s does not broadcast to output shape %s", k, s1, s2);
  }
  return keel_error(KEEL_SHAPE_MISMATCH, "inputs do not broadcast to the output shape");
}

bool keel_bcast_begin(const keel_bcast *b, keel_bcast_iter *it) {
  memset(it, 0, sizeof *it);
  return b->numel > 0;
}
