/* Operator family: loss. NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
 *
 * Input [N, C, d1..dk] is viewed as [N, C, D] (D = d1*...*dk, 1 for 2-D input) and target as [N, D].
 * Element (n, d) with target t contributes loss -w[t] * logp[n, t, d] and weight w[t] (w = 1 without the
 * weight input; 0 where t == ignore_index). reduction "none" returns the per-element losses [N, d1..dk];
 * "sum" their sum; "mean" sum(loss) / sum(weight), as the ONNX reference does (NaN when every element is
 * ignored). Sums run in double; results are rounded to the input's dtype once.
 *
 * SoftmaxCrossEntropyLoss first takes log_softmax over C: per (n, d), max and sum of exp over the C
 * entries, which lie D apart. To keep the walk contiguous the maxima and sums of one n are kept for all d
 * at once in the workspace (2*D doubles). Its optional second output is that log_softmax, input-shaped. */
#include <math.h>
#include <string.h>

#include "ops/op.h"
#include "ops/elem.h"

#define L_IN const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out
#define L_RUN_ARGS const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex

typedef enum { RED_NONE, RED_SUM, RED_MEAN } reduction;


static int64_t l_index(keel_dtype t, const void *p, int64_t i) {
  return t == KEEL_INT32 ? ((const int32_t *)p)[i] : ((const int64_t *)p)[i];
}

typedef struct lplan {
  int64_t N, C, D;
  reduction red;
  bool has_ii;
  int64_t ii;
  const keel_view *w; /* NULL without weights */
} lplan;

static keel_status *loss_plan(const keel_node *n, const char *what, const keel_view *in, int n_in, lplan *p) {
  if (n_in < 2 || n_in > 3 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]))
    return keel_error(KEEL_INVALID_MODEL, "%s takes scores, target and optional weights", what);
  const keel_view *x = &in[0], *t = &in[1];
  if (!keel_elem_is_float(x->dtype))
    return keel_error(KEEL_INVALID_MODEL, "%s: input dtype %s is not a float type", what, keel_dtype_name(x->dtype));
  if (t->dtype != KEEL_INT32 && t->dtype != KEEL_INT64)
    return keel_error(KEEL_INVALID_MODEL, "%s: target dtype %s must be int32 or int64", what,
                      keel_dtype_name(t->dtype));
  if (x->ndim < 2)
    return keel_error(KEEL_INVALID_MODEL, "%s: input must have rank >= 2 ([N, C, ...]), got %d", what, x->ndim);
  if (t->ndim != x->ndim - 1 || t->dims[0] != x->dims[0] ||
      (x->ndim > 2 && !keel_shape_equal(t->dims + 1, t->ndim - 1, x->dims + 2, x->ndim - 2)))
    return keel_error(KEEL_SHAPE_MISMATCH, "%s: target must have the input's shape without dim 1 (C)", what);
  memset(p, 0, sizeof *p);
  p->N = x->dims[0];
  p->C = x->dims[1];
  p->D = 1;
  for (int d = 2; d < x->ndim; d++) p->D *= x->dims[d];
  if (n_in > 2 && keel_view_present(&in[2])) {
    const keel_view *w = &in[2];
    if (w->dtype != x->dtype)
      return keel_error(KEEL_INVALID_MODEL, "%s: weight dtype %s differs from the input's %s", what,
                        keel_dtype_name(w->dtype), keel_dtype_name(x->dtype));
    if (w->ndim != 1 || w->dims[0] != p->C)
      return keel_error(KEEL_SHAPE_MISMATCH, "%s: weight must be 1-D of length C = %lld", what, (long long)p->C);
    p->w = w;
  }
  const char *r = keel_attr_string(n, "reduction", "mean");
  if (!strcmp(r, "none"))
    p->red = RED_NONE;
  else if (!strcmp(r, "sum"))
    p->red = RED_SUM;
  else if (!strcmp(r, "mean"))
    p->red = RED_MEAN;
  else
    return keel_error(KEEL_INVALID_MODEL, "%s: unknown reduction '%s' (none, sum or mean)", what, r);
  p->has_ii = keel_node_attr(n, "ignore_index") != NULL;
  p->ii = keel_attr_int(n, "ignore_index", 0);
  return NULL;
}

static void loss_out_shape(const keel_view *in, const lplan *p, keel_view *o) {
  if (p->red == RED_NONE)
    keel_view_set_shape(o, in[0].dtype, in[1].dims, in[1].ndim);
  else
    keel_view_set_shape(o, in[0].dtype, NULL, 0);
}

/* The weight of element (n, d) and its class, or an error for a class out of range. */
static keel_status *loss_target(const char *what, const lplan *p, const keel_view *t, int64_t e, int64_t *cls,
                                double *w) {
  int64_t c = l_index(t->dtype, t->data, e);
  if (p->has_ii && c == p->ii) {
    *cls = -1;
    *w = 0;
    return NULL;
  }
  if (c < 0 || c >= p->C)
    return keel_error(KEEL_INVALID_ARGUMENT, "%s: target %lld at element %lld is outside [0, %lld)", what,
                      (long long)c, (long long)e, (long long)p->C);
  *cls = c;
  *w = p->w ? keel_elem_load(p->w->dtype, p->w->data, c) : 1.0;
  return NULL;
}

static void loss_finish(const lplan *p, keel_view *o, double sum, double wsum) {
  if (p->red == RED_SUM) keel_elem_store(o->dtype, o->data, 0, sum);
  if (p->red == RED_MEAN) keel_elem_store(o->dtype, o->data, 0, sum / wsum);
}

/* ---------------------------------------------------------------------------------------------------- */

static keel_status *nll_infer(L_IN) {
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "NegativeLogLikelihoodLoss has 1 output, got %d", n_out);
  lplan p;
  KEEL_TRY(loss_plan(n, "NegativeLogLikelihoodLoss", in, n_in, &p));
  if (in[0].dtype == KEEL_BFLOAT16 && n->opset < 22)
    return keel_error(KEEL_INVALID_MODEL, "NegativeLogLikelihoodLoss takes bfloat16 from opset 22");
  loss_out_shape(in, &p, &out[0]);
  return NULL;
}

static keel_status *nll_run(L_RUN_ARGS) {
  static const char what[] = "NegativeLogLikelihoodLoss";
  lplan p;
  KEEL_TRY(loss_plan(n, what, in, n_in, &p));
  const keel_view *x = &in[0], *t = &in[1];
  double sum = 0, wsum = 0;
  for (int64_t i = 0; i < p.N; i++)
    for (int64_t d = 0; d < p.D; d++) {
      int64_t e = i * p.D + d, c;
      double w;
      KEEL_TRY(loss_target(what, &p, t, e, &c, &w));
      double l = c < 0 ? 0.0 : -w * keel_elem_load(x->dtype, x->data, (i * p.C + c) * p.D + d);
      if (p.red == RED_NONE)
        keel_elem_store(out[0].dtype, out[0].data, e, l);
      else
        sum += l, wsum += w;
    }
  loss_finish(&p, &out[0], sum, wsum);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */

static keel_status *sce_infer(L_IN) {
  if (n_out < 1 || n_out > 2)
    return keel_error(KEEL_INVALID_MODEL, "SoftmaxCrossEntropyLoss has 1 or 2 outputs, got %d", n_out);
  lplan p;
  KEEL_TRY(loss_plan(n, "SoftmaxCrossEntropyLoss", in, n_in, &p));
  if (in[0].dtype == KEEL_BFLOAT16 && n->opset < 13)
    return keel_error(KEEL_INVALID_MODEL, "SoftmaxCrossEntropyLoss takes bfloat16 from opset 13");
  loss_out_shape(in, &p, &out[0]);
  if (n_out > 1) keel_view_set_shape(&out[1], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

static size_t sce_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  if (n_in < 1 || in[0].ndim < 2) return 0;
  int64_t D = 1;
  for (int d = 2; d < in[0].ndim; d++) D *= in[0].dims[d];
  return (size_t)(D > 0 ? D : 0) * 2 * sizeof(double);
}

static keel_status *sce_run(L_RUN_ARGS) {
  static const char what[] = "SoftmaxCrossEntropyLoss";
  lplan p;
  KEEL_TRY(loss_plan(n, what, in, n_in, &p));
  if ((size_t)p.D * 2 * sizeof(double) > ex->workspace_bytes)
    return keel_error(KEEL_INTERNAL, "%s: workspace too small", what);
  const keel_view *x = &in[0], *t = &in[1];
  keel_view *lp = n_out > 1 && out[1].data ? &out[1] : NULL;
  double *mx = ex->workspace, *lse = mx + p.D;
  double sum = 0, wsum = 0;
  for (int64_t i = 0; i < p.N; i++) {
    int64_t base = i * p.C * p.D;
    for (int64_t d = 0; d < p.D; d++) mx[d] = -INFINITY, lse[d] = 0;
    for (int64_t c = 0; c < p.C; c++)
      for (int64_t d = 0; d < p.D; d++) {
        double v = keel_elem_load(x->dtype, x->data, base + c * p.D + d);
        if (v > mx[d] || v != v) mx[d] = v;
      }
    for (int64_t c = 0; c < p.C; c++)
      for (int64_t d = 0; d < p.D; d++) lse[d] += exp(keel_elem_load(x->dtype, x->data, base + c * p.D + d) - mx[d]);
    for (int64_t d = 0; d < p.D; d++) lse[d] = mx[d] + log(lse[d]);
    if (lp)
      for (int64_t c = 0; c < p.C; c++)
        for (int64_t d = 0; d < p.D; d++) {
          int64_t k = base + c * p.D + d;
          keel_elem_store(lp->dtype, lp->data, k, keel_elem_load(x->dtype, x->data, k) - lse[d]);
        }
    for (int64_t d = 0; d < p.D; d++) {
      int64_t e = i * p.D + d, c;
      double w;
      KEEL_TRY(loss_target(what, &p, t, e, &c, &w));
      double l = c < 0 ? 0.0 : -w * (keel_elem_load(x->dtype, x->data, base + c * p.D + d) - lse[d]);
      if (p.red == RED_NONE)
        keel_elem_store(out[0].dtype, out[0].data, e, l);
      else
        sum += l, wsum += w;
    }
  }
  loss_finish(&p, &out[0], sum, wsum);
  return NULL;
}

/* Versions 12, 13 and 22 differ only in the dtypes they list (bfloat16); one entry each spans them. */
const keel_op_def keel_ops_loss[] = {
    {"NegativeLogLikelihoodLoss", "", 12, KEEL_MAX_OPSET, nll_infer, nll_run, NULL, -1},
    {"SoftmaxCrossEntropyLoss", "", 12, KEEL_MAX_OPSET, sce_infer, sce_run, sce_ws, -1},
};
const int keel_ops_loss_count = (int)(sizeof keel_ops_loss / sizeof keel_ops_loss[0]);
