/* Einsum (general, simple) and Det.
 *
 * Einsum: the equation is parsed into labels per input dimension ('...' expands to numbered broadcast
 * labels, right-aligned across inputs). Every label gets one size; each input gets, per label, the sum of
 * the strides of its dims with that label (so a repeated label walks a diagonal) or 0 where the dim
 * broadcasts. The kernel then loops over output positions and, inside, over the summed labels,
 * accumulating the product of the inputs in double. Cost is the product of all label sizes: fine for the
 * small contractions models use Einsum for; MatMul-shaped work belongs in MatMul.
 *
 * Det: LU factorization with partial pivoting per matrix, in double. */
#include <math.h>
#include <string.h>

#include "ops/reduce_impl.h"

#define ES_MAX_IN 8
#define ES_LETTERS 52
#define ES_MAX_LABELS (ES_LETTERS + KEEL_MAX_DIMS)

typedef struct es_plan {
  int n_in;
  int n_lab;                  /* labels used (compacted ids 0..n_lab-1) */
  int64_t size[ES_MAX_LABELS];
  int64_t stride[ES_MAX_IN][ES_MAX_LABELS]; /* element stride of each input along each label */
  int n_out;                  /* output labels, in output order */
  int out_lab[ES_MAX_LABELS];
  int n_sum;                  /* summed labels */
  int sum_lab[ES_MAX_LABELS];
  int out_ndim;
  int64_t out_dims[KEEL_MAX_DIMS];
} es_plan;

static int letter_id(char ch) {
  if (ch >= 'a' && ch <= 'z') return ch - 'a';
  if (ch >= 'A' && ch <= 'Z') return 26 + ch - 'A';
  return -1;
}

/* Parse one term into raw label ids (ellipsis as -2 placeholder). Returns count or -1. */
static int parse_term(const char *s, size_t len, int *ids, int max, bool *has_ell) {
  int cnt = 0;
  *has_ell = false;
  for (size_t i = 0; i < len;) {
    if (s[i] == ' ') {
      i++;
      continue;
    }
    if (s[i] == '.') {
      if (i + 2 >= len) return -1;
      if (s[i + 1] != '.' || s[i + 2] != '.' || *has_ell) return -1;
      *has_ell = true;
      if (cnt >= max) return -1;
      ids[cnt++] = -2;
      i += 3;
      continue;
    }
    int id = letter_id(s[i]);
    if (id < 0 || cnt >= max) return -1;
    ids[cnt++] = id;
    i++;
  }
  return cnt;
}

static keel_status *es_build(const keel_node *n, const keel_view *in, int n_in, es_plan *p) {
  const char *eq = keel_attr_string(n, "equation", NULL);
  if (!eq) return keel_error(KEEL_INVALID_MODEL, "Einsum: attribute equation is required");
  if (n_in < 1 || n_in > ES_MAX_IN)
    return keel_error(KEEL_UNSUPPORTED, "Einsum: %d inputs (1 to %d supported)", n_in, ES_MAX_IN);
  keel_dtype t = in[0].dtype;
  for (int k = 0; k < n_in; k++) {
    if (!keel_view_present(&in[k])) return keel_error(KEEL_INVALID_MODEL, "Einsum: input %d is missing", k);
    if (in[k].dtype != t)
      return keel_error(KEEL_INVALID_MODEL, "Einsum: input %d is %s but input 0 is %s", k,
                        keel_dtype_name(in[k].dtype), keel_dtype_name(t));
  }
  if (!kr_is_float(t) && !kr_is_int(t))
    return keel_error(KEEL_UNSUPPORTED, "Einsum does not support dtype %s", keel_dtype_name(t));
  memset(p, 0, sizeof *p);
  p->n_in = n_in;
  const char *arrow = strstr(eq, "->");
  size_t lhs_len = arrow ? (size_t)(arrow - eq) : strlen(eq);

  /* per input: raw label per dim (letters 0..51, ellipsis dims 52 + position within the broadcast block) */
  int lab[ES_MAX_IN][KEEL_MAX_DIMS];
  int max_ell = 0;
  int count[ES_MAX_LABELS] = {0};
  size_t pos = 0, end = 0;
  for (int k = 0; k < n_in; k++) {
    end = pos;
    while (end < lhs_len && eq[end] != ',') end++;
    if (k < n_in - 1 && end >= lhs_len)
      return keel_error(KEEL_INVALID_MODEL, "Einsum: equation '%s' has fewer terms than the %d inputs", eq, n_in);
    int ids[KEEL_MAX_DIMS + 1];
    bool ell;
    int cnt = parse_term(eq + pos, end - pos, ids, KEEL_MAX_DIMS + 1, &ell);
    if (cnt < 0) return keel_error(KEEL_INVALID_MODEL, "Einsum: cannot parse term %d of '%s'", k, eq);
    int rank = in[k].ndim, letters = ell ? cnt - 1 : cnt;
    if ((!ell && letters != rank) || (ell && letters > rank))
      return keel_error(KEEL_SHAPE_MISMATCH, "Einsum: term %d of '%s' has %d labels but input %d has rank %d", k,
                        eq, letters, k, rank);
    int n_ell = rank - letters;
    if (n_ell > max_ell) max_ell = n_ell;
    int d = 0;
    for (int j = 0; j < cnt; j++) {
      if (ids[j] == -2) {
        for (int e = 0; e < n_ell; e++) lab[k][d++] = -100 - (n_ell - e); /* fixed up below */
      } else {
        lab[k][d++] = ids[j];
      }
    }
    pos = end + 1;
  }
  if (end < lhs_len)
    return keel_error(KEEL_INVALID_MODEL, "Einsum: equation '%s' has more terms than the %d inputs", eq, n_in);
  /* ellipsis dims right-aligned: the e-th from the end of every input is label 52 + max_ell - e */
  for (int k = 0; k < n_in; k++)
    for (int d = 0; d < in[k].ndim; d++)
      if (lab[k][d] <= -100) lab[k][d] = ES_LETTERS + max_ell + (lab[k][d] + 100);

  /* sizes */
  int64_t sz[ES_MAX_LABELS];
  for (int l = 0; l < ES_MAX_LABELS; l++) sz[l] = -1;
  for (int k = 0; k < n_in; k++)
    for (int d = 0; d < in[k].ndim; d++) {
      int l = lab[k][d];
      int64_t s = in[k].dims[d];
      count[l]++;
      /* sizes must agree; a 1 broadcasts (numpy allows it for letters as well as for '...') */
      if (sz[l] < 0 || sz[l] == 1) {
        if (sz[l] < 0 || s != 1) sz[l] = s;
      } else if (s != sz[l] && s != 1) {
        return keel_error(KEEL_SHAPE_MISMATCH, "Einsum: label '%c' has size %lld and %lld in '%s'",
                          l < 26 ? 'a' + l : l < ES_LETTERS ? 'A' + l - 26 : '.', (long long)sz[l], (long long)s, eq);
      }
    }

  /* output labels */
  int out_raw[ES_MAX_LABELS];
  int n_out = 0;
  if (arrow) {
    int ids[KEEL_MAX_DIMS + 1];
    bool ell;
    const char *o = arrow + 2;
    int cnt = parse_term(o, strlen(o), ids, KEEL_MAX_DIMS + 1, &ell);
    if (cnt < 0) return keel_error(KEEL_INVALID_MODEL, "Einsum: cannot parse the output of '%s'", eq);
    for (int j = 0; j < cnt; j++) {
      if (ids[j] == -2) {
        for (int e = 0; e < max_ell; e++) out_raw[n_out++] = ES_LETTERS + e;
      } else {
        if (sz[ids[j]] < 0)
          return keel_error(KEEL_INVALID_MODEL, "Einsum: output label '%c' of '%s' is not in any input", o[j], eq);
        for (int q = 0; q < n_out; q++)
          if (out_raw[q] == ids[j])
            return keel_error(KEEL_INVALID_MODEL, "Einsum: output label repeated in '%s'", eq);
        out_raw[n_out++] = ids[j];
      }
    }
    /* without '...' in the output, broadcast dims are summed over */
  } else {
    for (int e = 0; e < max_ell; e++) out_raw[n_out++] = ES_LETTERS + e;
    for (int l = 0; l < ES_LETTERS; l++)
      if (count[l] == 1) out_raw[n_out++] = l;
  }
  if (n_out > KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "Einsum: output rank %d is too large", n_out);

  /* compact ids: output labels first, then summed ones */
  int map[ES_MAX_LABELS];
  for (int l = 0; l < ES_MAX_LABELS; l++) map[l] = -1;
  for (int j = 0; j < n_out; j++) {
    map[out_raw[j]] = p->n_lab;
    p->size[p->n_lab] = sz[out_raw[j]];
    p->out_lab[p->n_out++] = p->n_lab++;
    p->out_dims[p->out_ndim++] = sz[out_raw[j]];
  }
  for (int l = 0; l < ES_MAX_LABELS; l++)
    if (sz[l] >= 0 && map[l] < 0) {
      map[l] = p->n_lab;
      p->size[p->n_lab] = sz[l];
      p->sum_lab[p->n_sum++] = p->n_lab++;
    }
  for (int k = 0; k < n_in; k++) {
    int64_t st = 1;
    for (int d = in[k].ndim - 1; d >= 0; d--) {
      int c = map[lab[k][d]];
      if (in[k].dims[d] != 1) p->stride[k][c] += st;
      st *= in[k].dims[d];
    }
  }
  return NULL;
}

keel_status *keel_kr_einsum_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "Einsum has 1 output, got %d", n_out);
  es_plan p;
  KEEL_TRY(es_build(n, in, n_in, &p));
  keel_view_set_shape(&out[0], in[0].dtype, p.out_dims, p.out_ndim);
  return NULL;
}

/* Sum over the innermost summed label: a strided dot product (typed fast paths for 1 or 2 float inputs). */
static double es_inner(keel_dtype t, const keel_view *in, int n_in, const int64_t *off, const int64_t *st,
                       int64_t len) {
  double s = 0;
  if (t == KEEL_FLOAT32 && n_in == 2) {
    const float *a = (const float *)in[0].data + off[0], *b = (const float *)in[1].data + off[1];
    int64_t sa = st[0], sb = st[1];
    for (int64_t j = 0; j < len; j++) s += (double)a[j * sa] * (double)b[j * sb];
  } else if (t == KEEL_FLOAT32 && n_in == 1) {
    const float *a = (const float *)in[0].data + off[0];
    for (int64_t j = 0; j < len; j++) s += (double)a[j * st[0]];
  } else if (t == KEEL_FLOAT64 && n_in == 2) {
    const double *a = (const double *)in[0].data + off[0], *b = (const double *)in[1].data + off[1];
    for (int64_t j = 0; j < len; j++) s += a[j * st[0]] * b[j * st[1]];
  } else {
    for (int64_t j = 0; j < len; j++) {
      double prod = 1;
      for (int k = 0; k < n_in; k++) prod *= kr_ld(t, in[k].data, off[k] + j * st[k]);
      s += prod;
    }
  }
  return s;
}

keel_status *keel_kr_einsum_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  es_plan p;
  KEEL_TRY(es_build(n, in, n_in, &p));
  keel_dtype t = in[0].dtype;
  int64_t out_numel = 1, sum_numel = 1;
  for (int j = 0; j < p.n_out; j++) out_numel *= p.size[p.out_lab[j]];
  for (int j = 0; j < p.n_sum; j++) sum_numel *= p.size[p.sum_lab[j]];
  if (out_numel == 0) return NULL;
  /* the last summed label is the innermost loop; the others are walked by an odometer */
  int n_outer_sum = p.n_sum > 0 ? p.n_sum - 1 : 0;
  int64_t inner_len = p.n_sum > 0 ? p.size[p.sum_lab[p.n_sum - 1]] : 1;
  int64_t inner_st[ES_MAX_IN] = {0};
  if (p.n_sum > 0)
    for (int k = 0; k < p.n_in; k++) inner_st[k] = p.stride[k][p.sum_lab[p.n_sum - 1]];
  int64_t outer_sum = inner_len > 0 ? sum_numel / inner_len : 0;
  int64_t oidx[ES_MAX_LABELS] = {0};
  int64_t obase[ES_MAX_IN] = {0};
  for (int64_t o = 0; o < out_numel; o++) {
    double acc = 0;
    if (sum_numel > 0) {
      int64_t sidx[ES_MAX_LABELS] = {0};
      int64_t off[ES_MAX_IN];
      for (int k = 0; k < p.n_in; k++) off[k] = obase[k];
      for (int64_t s = 0; s < outer_sum; s++) {
        acc += es_inner(t, in, p.n_in, off, inner_st, inner_len);
        for (int j = n_outer_sum - 1; j >= 0; j--) {
          int l = p.sum_lab[j];
          for (int k = 0; k < p.n_in; k++) off[k] += p.stride[k][l];
          if (++sidx[j] < p.size[l]) break;
          for (int k = 0; k < p.n_in; k++) off[k] -= p.stride[k][l] * p.size[l];
          sidx[j] = 0;
        }
      }
    }
    kr_st(t, out[0].data, o, acc);
    for (int j = p.n_out - 1; j >= 0; j--) {
      int l = p.out_lab[j];
      for (int k = 0; k < p.n_in; k++) obase[k] += p.stride[k][l];
      if (++oidx[j] < p.size[l]) break;
      for (int k = 0; k < p.n_in; k++) obase[k] -= p.stride[k][l] * p.size[l];
      oidx[j] = 0;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Det */

keel_status *keel_kr_det_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  if (n_in != 1 || n_out != 1 || !keel_view_present(&in[0]))
    return keel_error(KEEL_INVALID_MODEL, "Det takes 1 input and 1 output (got %d and %d)", n_in, n_out);
  const keel_view *x = &in[0];
  if (!kr_is_float(x->dtype))
    return keel_error(KEEL_UNSUPPORTED, "Det does not support dtype %s", keel_dtype_name(x->dtype));
  if (x->ndim < 2 || x->dims[x->ndim - 1] != x->dims[x->ndim - 2])
    return keel_error(KEEL_SHAPE_MISMATCH, "Det needs square matrices in the last two dims (rank %d)", x->ndim);
  keel_view_set_shape(&out[0], x->dtype, x->dims, x->ndim - 2);
  return NULL;
}

size_t keel_kr_det_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  if (n_in < 1 || in[0].ndim < 2) return 0;
  int64_t m = in[0].dims[in[0].ndim - 1];
  return m > 0 ? (size_t)m * (size_t)m * sizeof(double) : 0;
}

keel_status *keel_kr_det_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_exec *ex) {
  const keel_view *x = &in[0];
  if (x->ndim < 2) return keel_error(KEEL_SHAPE_MISMATCH, "Det needs rank >= 2");
  int64_t m = x->dims[x->ndim - 1];
  int64_t batch = keel_view_numel(&out[0]);
  size_t need = (size_t)(m * m) * sizeof(double);
  if (m > 0 && (!ex || !ex->workspace || ex->workspace_bytes < need))
    return keel_error(KEEL_INTERNAL, "Det: workspace of %zu bytes expected", need);
  double *a = m > 0 ? ex->workspace : NULL;
  for (int64_t b = 0; b < batch; b++) {
    for (int64_t i = 0; i < m * m; i++) a[i] = kr_ld(x->dtype, x->data, b * m * m + i);
    double det = 1;
    for (int64_t c = 0; c < m && det != 0; c++) {
      int64_t piv = c;
      for (int64_t r = c + 1; r < m; r++)
        if (fabs(a[r * m + c]) > fabs(a[piv * m + c])) piv = r;
      if (a[piv * m + c] == 0) {
        det = 0;
        break;
      }
      if (piv != c) {
        for (int64_t j = 0; j < m; j++) {
          double tmp = a[c * m + j];
          a[c * m + j] = a[piv * m + j];
          a[piv * m + j] = tmp;
        }
        det = -det;
      }
      double d = a[c * m + c];
      det *= d;
      for (int64_t r = c + 1; r < m; r++) {
        double f = a[r * m + c] / d;
        if (f == 0) continue;
        for (int64_t j = c + 1; j < m; j++) a[r * m + j] -= f * a[c * m + j];
      }
    }
    kr_st(x->dtype, out[0].data, b, det);
  }
  return NULL;
}
