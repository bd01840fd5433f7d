/* Tensor family, data movement: Transpose, Concat, Split, Slice, Expand, Tile, Pad, DepthToSpace,
 * SpaceToDepth. All kernels move bytes, so every dtype with a fixed element size works. */
#include "backend/cpu/threadpool.h"
#include "ops/tensor_util.h"

static keel_status *need(const keel_view *in, int n_in, int i, const char *what) {
  if (i >= n_in || !keel_view_present(&in[i])) return keel_error(KEEL_INVALID_MODEL, "required input %d (%s) is missing", i, what);
  return NULL;
}

/* ---- Transpose ---- */

static keel_status *transpose_perm(const keel_node *n, const keel_view *x, int *perm) {
  const int64_t *p;
  int cnt = keel_attr_ints(n, "perm", &p), r = x->ndim;
  if (cnt < 0) {
    for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
    return NULL;
  }
  if (cnt != r) return keel_error(KEEL_INVALID_MODEL, "perm has %d entries for a rank-%d input", cnt, r);
  bool seen[KEEL_MAX_DIMS] = {false};
  for (int i = 0; i < r; i++) {
    if (p[i] < 0 || p[i] >= r || seen[p[i]])
      return keel_error(KEEL_INVALID_MODEL, "perm is not a permutation of 0..%d (entry %d = %lld)", r - 1, i, (long long)p[i]);
    seen[p[i]] = true;
    perm[i] = (int)p[i];
  }
  return NULL;
}

keel_status *keel_tt_transpose_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need(in, n_in, 0, "data"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "data", &es));
  int perm[KEEL_MAX_DIMS];
  KEEL_TRY(transpose_perm(n, &in[0], perm));
  int64_t d[KEEL_MAX_DIMS];
  for (int i = 0; i < in[0].ndim; i++) d[i] = in[0].dims[perm[i]];
  return keel_tt_set_out(&out[0], in[0].dtype, d, in[0].ndim);
}

keel_status *keel_tt_transpose_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                   keel_exec *ex) {
  int perm[KEEL_MAX_DIMS];
  KEEL_TRY(transpose_perm(n, &in[0], perm));
  keel_tt_transpose(in[0].data, out[0].data, keel_dtype_size(in[0].dtype), in[0].dims, in[0].ndim, perm);
  return NULL;
}

/* ---- Concat ---- */

static keel_status *concat_axis(const keel_node *n, const keel_view *in, int n_in, int *axis) {
  if (n_in < 1) return keel_error(KEEL_INVALID_MODEL, "Concat needs at least one input");
  int r = in[0].ndim;
  const keel_attr *a = keel_node_attr(n, "axis");
  if (!a && n->opset >= 4) return keel_error(KEEL_INVALID_MODEL, "Concat needs the 'axis' attribute");
  int64_t ax = a ? a->i : 1;
  if (!keel_axis_normalize(ax, r, axis)) return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)ax, r);
  return NULL;
}

keel_status *keel_tt_concat_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  for (int i = 0; i < n_in; i++) KEEL_TRY(need(in, n_in, i, "inputs"));
  int axis;
  KEEL_TRY(concat_axis(n, in, n_in, &axis));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "input 0", &es));
  int64_t d[KEEL_MAX_DIMS];
  memcpy(d, in[0].dims, sizeof d);
  for (int i = 1; i < n_in; i++) {
    if (in[i].dtype != in[0].dtype)
      return keel_error(KEEL_INVALID_MODEL, "input %d has dtype %s, input 0 has %s", i, keel_dtype_name(in[i].dtype),
                        keel_dtype_name(in[0].dtype));
    if (in[i].ndim != in[0].ndim)
      return keel_error(KEEL_SHAPE_MISMATCH, "input %d has rank %d, input 0 has rank %d", i, in[i].ndim, in[0].ndim);
    for (int a = 0; a < in[0].ndim; a++) {
      if (a == axis) {
        if (!keel_add_i64(d[a], in[i].dims[a], &d[a])) return keel_error(KEEL_SHAPE_MISMATCH, "concatenated dim overflows");
      } else if (in[i].dims[a] != in[0].dims[a]) {
        return keel_error(KEEL_SHAPE_MISMATCH, "input %d has dim %lld on axis %d, input 0 has %lld", i,
                          (long long)in[i].dims[a], a, (long long)in[0].dims[a]);
      }
    }
  }
  return keel_tt_set_out(&out[0], in[0].dtype, d, in[0].ndim);
}

/* Concat copies outer x n_in chunks, in order, into the output. Threads split the output bytes (64-byte
 * boundaries) and each copies the overlap of its range with every chunk. */
typedef struct concat_job {
  const keel_view *in;
  int n_in, axis;
  size_t es, total;
  int64_t outer;
  char *o;
} concat_job;

static void concat_range(const concat_job *j, size_t b0, size_t b1) {
  size_t pos = 0;
  for (int64_t k = 0; k < j->outer && pos < b1; k++)
    for (int i = 0; i < j->n_in && pos < b1; i++) {
      int64_t inner = 1;
      for (int a = j->axis; a < j->in[i].ndim; a++) inner *= j->in[i].dims[a];
      const size_t chunk = (size_t)inner * j->es;
      const size_t s0 = pos > b0 ? pos : b0, s1 = pos + chunk < b1 ? pos + chunk : b1;
      if (s1 > s0) memcpy(j->o + s0, (const char *)j->in[i].data + (size_t)k * chunk + (s0 - pos), s1 - s0);
      pos += chunk;
    }
}

static void concat_thread(void *ctx, int tid, int nt, void *scratch) {
  (void)scratch;
  const concat_job *j = ctx;
  int64_t b0, b1;
  keel_split_range((int64_t)j->total, tid, nt, 64, &b0, &b1);
  if (b1 > b0) concat_range(j, (size_t)b0, (size_t)b1);
}

keel_status *keel_tt_concat_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  int axis;
  KEEL_TRY(concat_axis(n, in, n_in, &axis));
  size_t es = keel_dtype_size(in[0].dtype);
  int64_t outer = 1;
  for (int a = 0; a < axis; a++) outer *= out[0].dims[a];
  if (keel_view_numel(&out[0]) == 0) return NULL;
  concat_job j = {in, n_in, axis, es, (size_t)keel_view_numel(&out[0]) * es, outer, out[0].data};
  /* a thread per 128 KiB at least: smaller copies finish before a worker would wake */
  const int nt = keel_threads_for(keel_threads_effective(ex ? ex->num_threads : 1), (double)j.total, 131072.0);
  if (nt <= 1) concat_range(&j, 0, j.total);
  else keel_parallel_run(nt, concat_thread, &j);
  return NULL;
}

/* ---- Split ---- */

keel_status *keel_tt_split_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need(in, n_in, 0, "input"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "input", &es));
  int r = in[0].ndim, axis;
  int64_t ax = keel_attr_int(n, "axis", 0);
  if (!keel_axis_normalize(ax, r, &axis)) return keel_error(KEEL_INVALID_MODEL, "axis %lld out of range for rank %d", (long long)ax, r);
  if (n_out < 1) return keel_error(KEEL_INVALID_MODEL, "Split needs at least one output");
  int64_t dim = in[0].dims[axis];
  /* Sizes: from input 1 (opset 1 and 13+), the 'split' attribute (2-12), num_outputs (18+) or equal parts. */
  const keel_view *sv = NULL;
  const int64_t *sa = NULL;
  int cnt = -1;
  if ((n->opset >= 13 || n->opset == 1) && n_in > 1 && keel_view_present(&in[1])) {
    sv = &in[1];
    if (sv->ndim != 1) return keel_error(KEEL_INVALID_MODEL, "split must be 1-D");
    cnt = (int)sv->dims[0];
    if (cnt > 0 && !sv->data) return keel_need_value(n, 1);
  }
  if (cnt < 0 && n->opset < 13) cnt = keel_attr_ints(n, "split", &sa);
  int64_t d[KEEL_MAX_DIMS];
  memcpy(d, in[0].dims, sizeof d);
  if (cnt >= 0) {
    if (cnt != n_out) return keel_error(KEEL_INVALID_MODEL, "split has %d entries for %d outputs", cnt, n_out);
    int64_t sum = 0;
    for (int i = 0; i < cnt; i++) {
      int64_t s = sv ? keel_view_get_i64(sv, i) : sa[i];
      if (s < 0 || !keel_add_i64(sum, s, &sum)) return keel_error(KEEL_INVALID_MODEL, "split[%d] = %lld is invalid", i, (long long)s);
    }
    if (sum != dim)
      return keel_error(KEEL_SHAPE_MISMATCH, "split sizes sum to %lld but the axis has length %lld", (long long)sum, (long long)dim);
    for (int i = 0; i < n_out; i++) {
      d[axis] = sv ? keel_view_get_i64(sv, i) : sa[i];
      KEEL_TRY(keel_tt_set_out(&out[i], in[0].dtype, d, r));
    }
    return NULL;
  }
  const keel_attr *no = n->opset >= 18 ? keel_node_attr(n, "num_outputs") : NULL;
  if (no) {
    if (no->i != n_out) return keel_error(KEEL_INVALID_MODEL, "num_outputs = %lld but the node has %d outputs", (long long)no->i, n_out);
    int64_t chunk = (dim + n_out - 1) / n_out;
    for (int i = 0; i < n_out; i++) {
      int64_t left = dim - chunk * i;
      d[axis] = left < 0 ? 0 : left < chunk ? left : chunk;
      KEEL_TRY(keel_tt_set_out(&out[i], in[0].dtype, d, r));
    }
    return NULL;
  }
  if (dim % n_out != 0)
    return keel_error(KEEL_SHAPE_MISMATCH, "axis length %lld cannot be split into %d equal parts", (long long)dim, n_out);
  d[axis] = dim / n_out;
  for (int i = 0; i < n_out; i++) KEEL_TRY(keel_tt_set_out(&out[i], in[0].dtype, d, r));
  return NULL;
}

keel_status *keel_tt_split_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_exec *ex) {
  int r = in[0].ndim, axis;
  if (!keel_axis_normalize(keel_attr_int(n, "axis", 0), r, &axis)) return keel_error(KEEL_INVALID_MODEL, "bad axis");
  size_t es = keel_dtype_size(in[0].dtype);
  int64_t outer = 1, inner = 1, sum = 0;
  for (int a = 0; a < axis; a++) outer *= in[0].dims[a];
  for (int a = axis + 1; a < r; a++) inner *= in[0].dims[a];
  for (int i = 0; i < n_out; i++) sum += out[i].dims[axis];
  if (sum != in[0].dims[axis]) return keel_error(KEEL_SHAPE_MISMATCH, "Split outputs do not cover the input");
  const char *s = in[0].data;
  for (int64_t k = 0; k < outer; k++)
    for (int i = 0; i < n_out; i++) {
      size_t chunk = (size_t)(out[i].dims[axis] * inner) * es;
      if (chunk && out[i].data) memcpy((char *)out[i].data + (size_t)k * chunk, s, chunk);
      s += chunk;
    }
  return NULL;
}

/* ---- Slice ---- */

typedef struct {
  int64_t start[KEEL_MAX_DIMS], step[KEEL_MAX_DIMS], cnt[KEEL_MAX_DIMS];
} slice_plan;

static keel_status *slice_make(const keel_node *n, const keel_view *in, int n_in, slice_plan *p) {
  KEEL_TRY(need(in, n_in, 0, "data"));
  int r = in[0].ndim, ns, ne, na = -1, nst = -1;
  int64_t starts[KEEL_MAX_DIMS], ends[KEEL_MAX_DIMS], axes[KEEL_MAX_DIMS], steps[KEEL_MAX_DIMS];
  if (n->opset < 10) {
    const int64_t *a;
    ns = keel_attr_ints(n, "starts", &a);
    if (ns < 0 || ns > KEEL_MAX_DIMS) return keel_error(KEEL_INVALID_MODEL, "'starts' is missing or too long");
    memcpy(starts, a, (size_t)ns * 8);
    ne = keel_attr_ints(n, "ends", &a);
    if (ne < 0 || ne > KEEL_MAX_DIMS) return keel_error(KEEL_INVALID_MODEL, "'ends' is missing or too long");
    memcpy(ends, a, (size_t)ne * 8);
    na = keel_attr_ints(n, "axes", &a);
    if (na > KEEL_MAX_DIMS) return keel_error(KEEL_INVALID_MODEL, "'axes' is too long");
    if (na > 0) memcpy(axes, a, (size_t)na * 8);
  } else {
    KEEL_TRY(need(in, n_in, 1, "starts"));
    KEEL_TRY(need(in, n_in, 2, "ends"));
    KEEL_TRY(keel_tt_read_ints(n, in, n_in, 1, "starts", starts, KEEL_MAX_DIMS, &ns));
    KEEL_TRY(keel_tt_read_ints(n, in, n_in, 2, "ends", ends, KEEL_MAX_DIMS, &ne));
    if (n_in > 3 && keel_view_present(&in[3])) KEEL_TRY(keel_tt_read_ints(n, in, n_in, 3, "axes", axes, KEEL_MAX_DIMS, &na));
    if (n_in > 4 && keel_view_present(&in[4])) KEEL_TRY(keel_tt_read_ints(n, in, n_in, 4, "steps", steps, KEEL_MAX_DIMS, &nst));
  }
  if (ne != ns) return keel_error(KEEL_INVALID_MODEL, "starts has %d entries but ends has %d", ns, ne);
  if (na >= 0 && na != ns) return keel_error(KEEL_INVALID_MODEL, "axes has %d entries, starts has %d", na, ns);
  if (nst >= 0 && nst != ns) return keel_error(KEEL_INVALID_MODEL, "steps has %d entries, starts has %d", nst, ns);
  if (na < 0) {
    if (ns > r) return keel_error(KEEL_INVALID_MODEL, "%d starts for a rank-%d input", ns, r);
    for (int i = 0; i < ns; i++) axes[i] = i;
  }
  int ax[KEEL_MAX_DIMS];
  KEEL_TRY(keel_tt_norm_axes(axes, ns, r, "axes", ax));
  for (int a = 0; a < r; a++) {
    p->start[a] = 0;
    p->step[a] = 1;
    p->cnt[a] = in[0].dims[a];
  }
  for (int i = 0; i < ns; i++) {
    int a = ax[i];
    int64_t dim = in[0].dims[a], s = starts[i], e = ends[i], st = nst >= 0 ? steps[i] : 1;
    if (st == 0) return keel_error(KEEL_INVALID_MODEL, "steps[%d] is 0", i);
    /* A step longer than the axis takes at most one element; clamping it avoids overflow below. */
    if (st > dim) st = dim + 1;
    if (st < -dim) st = -dim - 1;
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    int64_t c;
    if (st > 0) {
      s = s < 0 ? 0 : s > dim ? dim : s;
      e = e < 0 ? 0 : e > dim ? dim : e;
      c = e > s ? (e - s - 1) / st + 1 : 0;
    } else {
      s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
      e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
      c = s > e ? (s - e - 1) / -st + 1 : 0;
    }
    p->start[a] = c ? s : 0;
    p->step[a] = st;
    p->cnt[a] = c;
  }
  return NULL;
}

keel_status *keel_tt_slice_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  slice_plan p;
  size_t es;
  KEEL_TRY(need(in, n_in, 0, "data"));
  KEEL_TRY(keel_tt_esize(&in[0], "data", &es));
  KEEL_TRY(slice_make(n, in, n_in, &p));
  return keel_tt_set_out(&out[0], in[0].dtype, p.cnt, in[0].ndim);
}

keel_status *keel_tt_slice_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_exec *ex) {
  slice_plan p;
  KEEL_TRY(slice_make(n, in, n_in, &p));
  int r = in[0].ndim;
  for (int a = 0; a < r; a++)
    if (p.cnt[a] != out[0].dims[a]) return keel_error(KEEL_SHAPE_MISMATCH, "Slice output shape does not match its inputs");
  size_t es = keel_dtype_size(in[0].dtype);
  if (keel_view_numel(&out[0]) == 0) return NULL;
  int64_t str[KEEL_MAX_DIMS];
  keel_tt_strides(in[0].dims, r, str);
  /* Fold trailing untouched axes into a contiguous chunk. */
  int m = r;
  size_t chunk = es;
  while (m > 0 && p.start[m - 1] == 0 && p.step[m - 1] == 1 && p.cnt[m - 1] == in[0].dims[m - 1]) {
    chunk *= (size_t)in[0].dims[m - 1];
    m--;
  }
  const char *s = in[0].data;
  char *o = out[0].data;
  if (m == 0) {
    memcpy(o, s, chunk);
    return NULL;
  }
  int64_t base = 0, bstep[KEEL_MAX_DIMS]; /* byte offsets */
  for (int a = 0; a < m; a++) {
    base += p.start[a] * str[a] * (int64_t)es;
    bstep[a] = p.step[a] * str[a] * (int64_t)es;
  }
  int64_t inner = p.cnt[m - 1], rows = 1, idx[KEEL_MAX_DIMS] = {0}, off = base;
  for (int a = 0; a < m - 1; a++) rows *= p.cnt[a];
  bool contig = p.step[m - 1] == 1;
  for (int64_t row = 0; row < rows; row++) {
    if (contig) {
      memcpy(o, s + off, (size_t)inner * chunk);
      o += (size_t)inner * chunk;
    } else {
      for (int64_t j = 0; j < inner; j++, o += chunk) {
        if (chunk == 4) memcpy(o, s + off + j * bstep[m - 1], 4);
        else memcpy(o, s + off + j * bstep[m - 1], chunk);
      }
    }
    for (int a = m - 2; a >= 0; a--) {
      off += bstep[a];
      if (++idx[a] < p.cnt[a]) break;
      off -= bstep[a] * p.cnt[a];
      idx[a] = 0;
    }
  }
  return NULL;
}

/* ---- Expand ---- */

keel_status *keel_tt_expand_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need(in, n_in, 0, "input"));
  KEEL_TRY(need(in, n_in, 1, "shape"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "input", &es));
  int64_t shape[KEEL_MAX_DIMS], d[KEEL_MAX_DIMS];
  int cnt, nd;
  KEEL_TRY(keel_tt_read_ints(n, in, n_in, 1, "shape", shape, KEEL_MAX_DIMS, &cnt));
  for (int i = 0; i < cnt; i++)
    if (shape[i] < 0) return keel_error(KEEL_INVALID_MODEL, "shape[%d] = %lld is negative", i, (long long)shape[i]);
  if (!keel_shape_broadcast(in[0].dims, in[0].ndim, shape, cnt, d, &nd)) {
    char a[128], b[128];
    return keel_error(KEEL_SHAPE_MISMATCH, "cannot expand %s to %s", keel_shape_format(in[0].dims, in[0].ndim, a, sizeof a),
                      keel_shape_format(shape, cnt, b, sizeof b));
  }
  return keel_tt_set_out(&out[0], in[0].dtype, d, nd);
}

keel_status *keel_tt_expand_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  keel_tt_broadcast_copy(in[0].data, in[0].dims, in[0].ndim, out[0].data, out[0].dims, out[0].ndim,
                         keel_dtype_size(in[0].dtype));
  return NULL;
}

/* ---- Tile ---- */

keel_status *keel_tt_tile_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  KEEL_TRY(need(in, n_in, 0, "input"));
  KEEL_TRY(need(in, n_in, 1, "repeats"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "input", &es));
  int64_t rep[KEEL_MAX_DIMS], d[KEEL_MAX_DIMS];
  int cnt;
  KEEL_TRY(keel_tt_read_ints(n, in, n_in, 1, "repeats", rep, KEEL_MAX_DIMS, &cnt));
  if (cnt != in[0].ndim) return keel_error(KEEL_INVALID_MODEL, "repeats has %d entries for a rank-%d input", cnt, in[0].ndim);
  for (int i = 0; i < cnt; i++)
    if (rep[i] < 0 || !keel_mul_i64(in[0].dims[i], rep[i], &d[i]))
      return keel_error(KEEL_INVALID_MODEL, "repeats[%d] = %lld is invalid", i, (long long)rep[i]);
  return keel_tt_set_out(&out[0], in[0].dtype, d, cnt);
}

keel_status *keel_tt_tile_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  int r = in[0].ndim;
  size_t es = keel_dtype_size(in[0].dtype);
  if (keel_view_numel(&out[0]) == 0) return NULL;
  if (r == 0) {
    memcpy(out[0].data, in[0].data, es);
    return NULL;
  }
  const int64_t *id = in[0].dims, *od = out[0].dims;
  int64_t istr[KEEL_MAX_DIMS];
  keel_tt_strides(id, r, istr);
  size_t row = (size_t)id[r - 1] * es;
  int64_t reps = od[r - 1] / id[r - 1], rows = 1, idx[KEEL_MAX_DIMS] = {0};
  for (int a = 0; a < r - 1; a++) rows *= od[a];
  const char *s = in[0].data;
  char *o = out[0].data;
  for (int64_t k = 0; k < rows; k++) {
    int64_t off = 0; /* input row = output coordinates modulo input dims */
    for (int a = 0; a < r - 1; a++) off += (idx[a] % id[a]) * istr[a];
    for (int64_t j = 0; j < reps; j++, o += row) memcpy(o, s + (size_t)off * es, row);
    for (int a = r - 2; a >= 0; a--) {
      if (++idx[a] < od[a]) break;
      idx[a] = 0;
    }
  }
  return NULL;
}

/* ---- Pad ---- */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

typedef struct {
  int mode;
  int64_t pb[KEEL_MAX_DIMS], pe[KEEL_MAX_DIMS];
  unsigned char value[16];
} pad_plan;

static keel_status *pad_make(const keel_node *n, const keel_view *in, int n_in, pad_plan *p, bool need_value) {
  KEEL_TRY(need(in, n_in, 0, "data"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "data", &es));
  if (es > sizeof p->value) return keel_error(KEEL_UNSUPPORTED, "Pad of dtype %s", keel_dtype_name(in[0].dtype));
  int r = in[0].ndim;
  const char *mode = keel_attr_string(n, "mode", "constant");
  if (!strcmp(mode, "constant")) p->mode = PAD_CONSTANT;
  else if (!strcmp(mode, "reflect")) p->mode = PAD_REFLECT;
  else if (!strcmp(mode, "edge")) p->mode = PAD_EDGE;
  else if (!strcmp(mode, "wrap") && n->opset >= 19) p->mode = PAD_WRAP;
  else return keel_error(KEEL_INVALID_MODEL, "unknown Pad mode '%s'", mode);
  int64_t pads[2 * KEEL_MAX_DIMS], axes[KEEL_MAX_DIMS];
  int np, na = -1;
  memset(p->value, 0, sizeof p->value);
  if (n->opset < 11) {
    const int64_t *a;
    np = keel_attr_ints(n, n->opset < 2 ? "paddings" : "pads", &a);
    if (np < 0 || np > 2 * KEEL_MAX_DIMS) return keel_error(KEEL_INVALID_MODEL, "pads attribute missing or too long");
    memcpy(pads, a, (size_t)np * 8);
    keel_tt_store_f64(in[0].dtype, p->value, 0, keel_attr_float(n, "value", 0));
  } else {
    KEEL_TRY(need(in, n_in, 1, "pads"));
    KEEL_TRY(keel_tt_read_ints(n, in, n_in, 1, "pads", pads, 2 * KEEL_MAX_DIMS, &np));
    if (n_in > 2 && keel_view_present(&in[2]) && keel_view_numel(&in[2]) > 0) {
      if (in[2].dtype != in[0].dtype) return keel_error(KEEL_INVALID_MODEL, "constant_value dtype differs from data");
      if (in[2].data) memcpy(p->value, in[2].data, es);
      else if (need_value) return keel_error(KEEL_INTERNAL, "constant_value not available at run time");
    }
    if (n->opset >= 18 && n_in > 3 && keel_view_present(&in[3]))
      KEEL_TRY(keel_tt_read_ints(n, in, n_in, 3, "axes", axes, KEEL_MAX_DIMS, &na));
  }
  if (na < 0) {
    na = r;
    for (int i = 0; i < r; i++) axes[i] = i;
  }
  if (np != 2 * na) return keel_error(KEEL_INVALID_MODEL, "pads has %d entries, expected %d", np, 2 * na);
  int ax[KEEL_MAX_DIMS];
  KEEL_TRY(keel_tt_norm_axes(axes, na, r, "axes", ax));
  for (int a = 0; a < r; a++) p->pb[a] = p->pe[a] = 0;
  for (int i = 0; i < na; i++) {
    int a = ax[i];
    int64_t b = pads[i], e = pads[na + i], d = in[0].dims[a];
    if (b < -d || e < -d || b > INT64_MAX / 4 || e > INT64_MAX / 4 || d + b + e < 0)
      return keel_error(KEEL_INVALID_MODEL, "pads (%lld, %lld) are invalid for axis %d of length %lld", (long long)b,
                        (long long)e, a, (long long)d);
    if (p->mode != PAD_CONSTANT && d == 0 && (b > 0 || e > 0))
      return keel_error(KEEL_INVALID_ARGUMENT, "cannot %s-pad axis %d of length 0", mode, a);
    p->pb[a] = b;
    p->pe[a] = e;
  }
  return NULL;
}

keel_status *keel_tt_pad_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  pad_plan p;
  KEEL_TRY(pad_make(n, in, n_in, &p, false));
  int64_t d[KEEL_MAX_DIMS];
  for (int a = 0; a < in[0].ndim; a++) d[a] = in[0].dims[a] + p.pb[a] + p.pe[a];
  return keel_tt_set_out(&out[0], in[0].dtype, d, in[0].ndim);
}

/* Source coordinate for padded coordinate c, or -1 for the constant. */
static int64_t pad_map(int64_t c, int64_t d, int mode) {
  if (c >= 0 && c < d) return c;
  switch (mode) {
    case PAD_EDGE: return c < 0 ? 0 : d - 1;
    case PAD_REFLECT: {
      if (d == 1) return 0;
      int64_t period = 2 * (d - 1);
      c %= period;
      if (c < 0) c += period;
      return c >= d ? period - c : c;
    }
    case PAD_WRAP: c %= d; return c < 0 ? c + d : c;
    default: return -1;
  }
}

static void pad_exec(const pad_plan *pp, const keel_view *in, keel_view *out) {
  const pad_plan p = *pp;
  int r = in[0].ndim;
  size_t es = keel_dtype_size(in[0].dtype);
  char *o = out[0].data;
  const char *s = in[0].data;
  int64_t total = keel_view_numel(&out[0]);
  if (total == 0) return;
  if (r == 0) {
    memcpy(o, s, es);
    return;
  }
  const int64_t *id = in[0].dims, *od = out[0].dims;
  int64_t istr[KEEL_MAX_DIMS], idx[KEEL_MAX_DIMS] = {0};
  keel_tt_strides(id, r, istr);
  int64_t L = od[r - 1], D = id[r - 1], pb = p.pb[r - 1], rows = total / L;
  /* The contiguous middle part of each row: output [mlo, mhi) comes from input [mlo - pb, ...). */
  int64_t mlo = pb < 0 ? 0 : pb, mhi = pb + D < L ? pb + D : L;
  for (int64_t row = 0; row < rows; row++, o += (size_t)L * es) {
    int64_t off = 0;
    bool constant = false;
    for (int a = 0; a < r - 1; a++) {
      int64_t c = pad_map(idx[a] - p.pb[a], id[a], p.mode);
      if (c < 0) { constant = true; break; }
      off += c * istr[a];
    }
    if (constant) {
      for (int64_t j = 0; j < L; j++) memcpy(o + (size_t)j * es, p.value, es);
    } else {
      const char *sr = s + (size_t)off * es;
      if (mhi > mlo) memcpy(o + (size_t)mlo * es, sr + (size_t)(mlo - pb) * es, (size_t)(mhi - mlo) * es);
      for (int64_t j = 0; j < L; j++) {
        if (j == mlo && mhi > mlo) j = mhi;
        if (j >= L) break;
        int64_t c = pad_map(j - pb, D, p.mode);
        memcpy(o + (size_t)j * es, c < 0 ? (const char *)p.value : sr + (size_t)c * es, es);
      }
    }
    for (int a = r - 2; a >= 0; a--) {
      if (++idx[a] < od[a]) break;
      idx[a] = 0;
    }
  }
}

keel_status *keel_tt_pad_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_exec *ex) {
  pad_plan p;
  KEEL_TRY(pad_make(n, in, n_in, &p, true));
  for (int a = 0; a < in[0].ndim; a++)
    if (out[0].dims[a] != in[0].dims[a] + p.pb[a] + p.pe[a])
      return keel_error(KEEL_SHAPE_MISMATCH, "Pad output shape does not match its inputs");
  pad_exec(&p, in, out);
  return NULL;
}

/* ---- CenterCropPad (18+): a constant-zero pad whose pads are negative where it crops ---- */

static keel_status *ccp_make(const keel_node *n, const keel_view *in, int n_in, pad_plan *p) {
  KEEL_TRY(need(in, n_in, 0, "input_data"));
  KEEL_TRY(need(in, n_in, 1, "shape"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "input_data", &es));
  if (es > sizeof p->value) return keel_error(KEEL_UNSUPPORTED, "CenterCropPad of dtype %s", keel_dtype_name(in[0].dtype));
  int r = in[0].ndim, ns, na, ax[KEEL_MAX_DIMS];
  int64_t shape[KEEL_MAX_DIMS];
  KEEL_TRY(keel_tt_read_ints(n, in, n_in, 1, "shape", shape, KEEL_MAX_DIMS, &ns));
  const int64_t *axes;
  na = keel_attr_ints(n, "axes", &axes);
  if (na < 0) {
    na = r;
    for (int i = 0; i < r; i++) ax[i] = i;
  } else {
    if (na > r) return keel_error(KEEL_INVALID_MODEL, "axes has %d entries for rank %d", na, r);
    KEEL_TRY(keel_tt_norm_axes(axes, na, r, "axes", ax));
  }
  if (ns != na) return keel_error(KEEL_INVALID_MODEL, "shape has %d entries for %d axes", ns, na);
  p->mode = PAD_CONSTANT;
  memset(p->value, 0, sizeof p->value);
  for (int a = 0; a < r; a++) p->pb[a] = p->pe[a] = 0;
  for (int i = 0; i < na; i++) {
    int64_t dim = in[0].dims[ax[i]], sh = shape[i];
    if (sh < 0) return keel_error(KEEL_INVALID_MODEL, "shape[%d] = %lld is negative", i, (long long)sh);
    p->pb[ax[i]] = sh < dim ? -((dim - sh) / 2) : (sh - dim) / 2;
    p->pe[ax[i]] = sh - dim - p->pb[ax[i]];
  }
  return NULL;
}

keel_status *keel_tt_center_crop_pad_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  pad_plan p;
  KEEL_TRY(ccp_make(n, in, n_in, &p));
  int64_t d[KEEL_MAX_DIMS];
  for (int a = 0; a < in[0].ndim; a++) d[a] = in[0].dims[a] + p.pb[a] + p.pe[a];
  return keel_tt_set_out(&out[0], in[0].dtype, d, in[0].ndim);
}

keel_status *keel_tt_center_crop_pad_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                         keel_exec *ex) {
  pad_plan p;
  KEEL_TRY(ccp_make(n, in, n_in, &p));
  pad_exec(&p, in, out);
  return NULL;
}

/* ---- DepthToSpace, SpaceToDepth ---- */

static keel_status *d2s_check(const keel_node *n, const keel_view *in, int n_in, int64_t *b) {
  KEEL_TRY(need(in, n_in, 0, "input"));
  size_t es;
  KEEL_TRY(keel_tt_esize(&in[0], "input", &es));
  if (in[0].ndim != 4) return keel_error(KEEL_INVALID_MODEL, "input must be 4-D, got rank %d", in[0].ndim);
  *b = keel_attr_int(n, "blocksize", 0);
  if (*b <= 0 || *b > (1 << 20)) return keel_error(KEEL_INVALID_MODEL, "blocksize %lld is invalid", (long long)*b);
  return NULL;
}

static bool d2s_crd(const keel_node *n) { return n->opset >= 11 && !strcmp(keel_attr_string(n, "mode", "DCR"), "CRD"); }

keel_status *keel_tt_depth_to_space_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t b, d[4];
  KEEL_TRY(d2s_check(n, in, n_in, &b));
  if (n->opset >= 11) {
    const char *m = keel_attr_string(n, "mode", "DCR");
    if (strcmp(m, "DCR") && strcmp(m, "CRD")) return keel_error(KEEL_INVALID_MODEL, "unknown mode '%s'", m);
  }
  if (in[0].dims[1] % (b * b)) return keel_error(KEEL_SHAPE_MISMATCH, "channels %lld not divisible by blocksize^2 = %lld", (long long)in[0].dims[1], (long long)(b * b));
  d[0] = in[0].dims[0];
  d[1] = in[0].dims[1] / (b * b);
  if (!keel_mul_i64(in[0].dims[2], b, &d[2]) || !keel_mul_i64(in[0].dims[3], b, &d[3]))
    return keel_error(KEEL_SHAPE_MISMATCH, "output size overflows");
  return keel_tt_set_out(&out[0], in[0].dtype, d, 4);
}

keel_status *keel_tt_depth_to_space_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                        keel_exec *ex) {
  int64_t b = keel_attr_int(n, "blocksize", 0);
  const int64_t *x = in[0].dims;
  int64_t c = x[1] / (b * b);
  if (d2s_crd(n)) {
    int64_t dims[6] = {x[0], c, b, b, x[2], x[3]};
    int perm[6] = {0, 1, 4, 2, 5, 3};
    keel_tt_transpose(in[0].data, out[0].data, keel_dtype_size(in[0].dtype), dims, 6, perm);
  } else {
    int64_t dims[6] = {x[0], b, b, c, x[2], x[3]};
    int perm[6] = {0, 3, 4, 1, 5, 2};
    keel_tt_transpose(in[0].data, out[0].data, keel_dtype_size(in[0].dtype), dims, 6, perm);
  }
  return NULL;
}

keel_status *keel_tt_space_to_depth_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  int64_t b, d[4];
  KEEL_TRY(d2s_check(n, in, n_in, &b));
  if (in[0].dims[2] % b || in[0].dims[3] % b)
    return keel_error(KEEL_SHAPE_MISMATCH, "spatial dims %lldx%lld not divisible by blocksize %lld", (long long)in[0].dims[2],
                      (long long)in[0].dims[3], (long long)b);
  d[0] = in[0].dims[0];
  if (!keel_mul_i64(in[0].dims[1], b * b, &d[1])) return keel_error(KEEL_SHAPE_MISMATCH, "output size overflows");
  d[2] = in[0].dims[2] / b;
  d[3] = in[0].dims[3] / b;
  return keel_tt_set_out(&out[0], in[0].dtype, d, 4);
}

keel_status *keel_tt_space_to_depth_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                        keel_exec *ex) {
  int64_t b = keel_attr_int(n, "blocksize", 0);
  const int64_t *x = in[0].dims;
  int64_t dims[6] = {x[0], x[1], x[2] / b, b, x[3] / b, b};
  int perm[6] = {0, 3, 5, 1, 2, 4};
  keel_tt_transpose(in[0].data, out[0].data, keel_dtype_size(in[0].dtype), dims, 6, perm);
  return NULL;
}
