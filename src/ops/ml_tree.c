/* TreeEnsemble (ai.onnx.ml opset 5): sums (or averages, takes the min or max of) the leaf weights each row of
 * X [N, F] reaches in every tree, per target, then applies the post transform. Output [N, n_targets] in X's
 * dtype. Trees are given as parallel nodes_* / leaf_* attributes (see the ONNX spec); everything is checked
 * before use, and a walk longer than the node count (a cycle) is an error, never a hang. */
#include <math.h>

#include "ops/op.h"

enum { AGG_AVERAGE, AGG_SUM, AGG_MIN, AGG_MAX };
enum { PT_NONE, PT_SOFTMAX, PT_LOGISTIC, PT_SOFTMAX_ZERO, PT_PROBIT };
enum { M_LEQ, M_LT, M_GTE, M_GT, M_EQ, M_NEQ, M_MEMBER };

typedef struct {
  int64_t n_nodes, n_leaves, n_trees, n_targets, n_members;
  const int64_t *feat, *tid, *fid, *tleaf, *fleaf, *leaf_target, *roots, *missing_true;
  const keel_tensor *splits, *modes, *weights, *members;
  int agg, post;
} ens;

static keel_status *ints_of(const keel_node *n, const char *name, int64_t want, const int64_t **v, int64_t *count) {
  int c = keel_attr_ints(n, name, v);
  if (c < 0) return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble needs the attribute '%s'", name);
  if (want >= 0 && c != want)
    return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble '%s' has %d entries, expected %lld", name, c, (long long)want);
  if (count) *count = c;
  return NULL;
}

static keel_status *tensor_of(const keel_node *n, const char *name, bool required, const keel_tensor **t) {
  const keel_attr *a = keel_node_attr(n, name);
  *t = a && a->type == KEEL_ATTR_TENSOR ? a->t : NULL;
  if (!*t && required) return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble needs the tensor attribute '%s'", name);
  return NULL;
}

static bool real_tensor(const keel_tensor *t) {
  keel_dtype d = keel_tensor_dtype(t);
  return d == KEEL_FLOAT32 || d == KEEL_FLOAT64 || d == KEEL_FLOAT16;
}

static double tval(const keel_tensor *t, int64_t i) {
  keel_view v = {keel_tensor_dtype(t), 0, {0}, (void *)keel_tensor_data_const(t)};
  return keel_view_get_f64(&v, i);
}

static keel_status *ens_get(const keel_node *n, ens *e) {
  memset(e, 0, sizeof *e);
  KEEL_TRY(ints_of(n, "nodes_featureids", -1, &e->feat, &e->n_nodes));
  KEEL_TRY(ints_of(n, "nodes_truenodeids", e->n_nodes, &e->tid, NULL));
  KEEL_TRY(ints_of(n, "nodes_falsenodeids", e->n_nodes, &e->fid, NULL));
  KEEL_TRY(ints_of(n, "nodes_trueleafs", e->n_nodes, &e->tleaf, NULL));
  KEEL_TRY(ints_of(n, "nodes_falseleafs", e->n_nodes, &e->fleaf, NULL));
  KEEL_TRY(ints_of(n, "leaf_targetids", -1, &e->leaf_target, &e->n_leaves));
  KEEL_TRY(ints_of(n, "tree_roots", -1, &e->roots, &e->n_trees));
  if (keel_node_attr(n, "nodes_missing_value_tracks_true"))
    KEEL_TRY(ints_of(n, "nodes_missing_value_tracks_true", e->n_nodes, &e->missing_true, NULL));
  KEEL_TRY(tensor_of(n, "nodes_splits", true, &e->splits));
  KEEL_TRY(tensor_of(n, "nodes_modes", true, &e->modes));
  KEEL_TRY(tensor_of(n, "leaf_weights", true, &e->weights));
  KEEL_TRY(tensor_of(n, "membership_values", false, &e->members));
  if (!real_tensor(e->splits) || keel_tensor_numel(e->splits) != e->n_nodes)
    return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble nodes_splits must be %lld floating-point values", (long long)e->n_nodes);
  if (keel_tensor_dtype(e->modes) != KEEL_UINT8 || keel_tensor_numel(e->modes) != e->n_nodes)
    return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble nodes_modes must be %lld uint8 values", (long long)e->n_nodes);
  if (!real_tensor(e->weights) || keel_tensor_numel(e->weights) != e->n_leaves)
    return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble leaf_weights must be %lld floating-point values (one per leaf_targetids)",
                      (long long)e->n_leaves);
  if (e->members && !real_tensor(e->members))
    return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble membership_values must be floating-point");
  e->agg = (int)keel_attr_int(n, "aggregate_function", AGG_SUM);
  e->post = (int)keel_attr_int(n, "post_transform", PT_NONE);
  if (e->agg < AGG_AVERAGE || e->agg > AGG_MAX)
    return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble aggregate_function %d is not one of 0..3", e->agg);
  if (e->post < PT_NONE || e->post > PT_PROBIT)
    return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble post_transform %d is not one of 0..4", e->post);
  e->n_targets = keel_attr_int(n, "n_targets", -1);
  if (e->n_targets < 0) /* optional: then the targets the leaves name */
    for (int64_t i = 0; i < e->n_leaves; i++)
      if (e->leaf_target[i] + 1 > e->n_targets) e->n_targets = e->leaf_target[i] + 1;
  if (e->n_targets < 1) return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble needs n_targets >= 1");
  if (e->n_trees < 1) return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble needs at least one tree root");
  for (int64_t i = 0; i < e->n_leaves; i++)
    if (e->leaf_target[i] < 0 || e->leaf_target[i] >= e->n_targets)
      return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble leaf %lld targets %lld, outside [0, %lld)", (long long)i,
                        (long long)e->leaf_target[i], (long long)e->n_targets);
  for (int64_t i = 0; i < e->n_trees; i++)
    if (e->roots[i] < 0 || e->roots[i] >= e->n_nodes)
      return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble tree_roots[%lld] = %lld is not a node", (long long)i, (long long)e->roots[i]);
  const uint8_t *mode = keel_tensor_data_const(e->modes);
  for (int64_t i = 0; i < e->n_nodes; i++) {
    if (mode[i] > M_MEMBER) return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble node %lld has mode %d, not one of 0..6", (long long)i, mode[i]);
    e->n_members += mode[i] == M_MEMBER;
    if (e->feat[i] < 0) return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble node %lld has feature id %lld", (long long)i, (long long)e->feat[i]);
    for (int side = 0; side < 2; side++) {
      int64_t to = side ? e->fid[i] : e->tid[i], leaf = side ? e->fleaf[i] : e->tleaf[i];
      if (to < 0 || to >= (leaf ? e->n_leaves : e->n_nodes))
        return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble node %lld's %s branch goes to %s %lld, which does not exist",
                          (long long)i, side ? "false" : "true", leaf ? "leaf" : "node", (long long)to);
    }
  }
  int64_t sets = 0;
  for (int64_t i = 0, c = e->members ? keel_tensor_numel(e->members) : 0; i < c; i++) sets += isnan(tval(e->members, i));
  if (sets != e->n_members)
    return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble has %lld BRANCH_MEMBER nodes but membership_values holds %lld NaN-ended sets",
                      (long long)e->n_members, (long long)sets);
  return NULL;
}

keel_status *keel_ml_tree_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *keel_ml_tree_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex);
size_t keel_ml_tree_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);

keel_status *keel_ml_tree_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  if (n_in != 1 || n_out != 1) return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble takes 1 input and 1 output");
  ens e;
  KEEL_TRY(ens_get(n, &e));
  keel_dtype t = in[0].dtype;
  if (t != KEEL_FLOAT32 && t != KEEL_FLOAT64 && t != KEEL_FLOAT16)
    return keel_error(KEEL_INVALID_ARGUMENT, "TreeEnsemble takes float, double or float16 input, got %s", keel_dtype_name(t));
  if (in[0].ndim != 2) return keel_error(KEEL_INVALID_ARGUMENT, "TreeEnsemble input must be [N, F], got rank %d", in[0].ndim);
  for (int64_t i = 0; i < e.n_nodes; i++)
    if (e.feat[i] >= in[0].dims[1])
      return keel_error(KEEL_INVALID_ARGUMENT, "TreeEnsemble node %lld reads feature %lld but the input has %lld",
                        (long long)i, (long long)e.feat[i], (long long)in[0].dims[1]);
  int64_t dims[2] = {in[0].dims[0], e.n_targets};
  keel_view_set_shape(&out[0], t, dims, 2);
  return NULL;
}

/* Workspace: per-target accumulators (double), then each node's [start, end) in membership_values. */
size_t keel_ml_tree_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  (void)in, (void)n_in, (void)out, (void)n_out;
  ens e;
  if (ens_get(n, &e)) return 0;
  return (size_t)e.n_targets * sizeof(double) + (size_t)e.n_nodes * 2 * sizeof(int64_t);
}

/* Inverse error function (Giles' single-precision approximation, refined by two Newton steps). */
static double erfinv(double y) {
  if (y <= -1) return -INFINITY;
  if (y >= 1) return INFINITY;
  double w = -log((1.0 - y) * (1.0 + y)), x;
  if (w < 5.0) {
    w -= 2.5;
    x = 2.81022636e-08;
    x = 3.43273939e-07 + x * w, x = -3.5233877e-06 + x * w, x = -4.39150654e-06 + x * w;
    x = 0.00021858087 + x * w, x = -0.00125372503 + x * w, x = -0.00417768164 + x * w;
    x = 0.246640727 + x * w, x = 1.50140941 + x * w;
  } else {
    w = sqrt(w) - 3.0;
    x = -0.000200214257;
    x = 0.000100950558 + x * w, x = 0.00134934322 + x * w, x = -0.00367342844 + x * w;
    x = 0.00573950773 + x * w, x = -0.0076224613 + x * w, x = 0.00943887047 + x * w;
    x = 1.00167406 + x * w, x = 2.83297682 + x * w;
  }
  x *= y;
  for (int k = 0; k < 2; k++) x -= (erf(x) - y) / (1.1283791670955126 * exp(-x * x));
  return x;
}

keel_status *keel_ml_tree_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  (void)n_in, (void)n_out;
  ens e;
  KEEL_TRY(ens_get(n, &e));
  size_t need = (size_t)e.n_targets * sizeof(double) + (size_t)e.n_nodes * 2 * sizeof(int64_t);
  if (ex->workspace_bytes < need) return keel_error(KEEL_INTERNAL, "TreeEnsemble got a %zu-byte workspace", ex->workspace_bytes);
  double *acc = ex->workspace;
  int64_t *set = (int64_t *)(void *)(acc + e.n_targets);
  const uint8_t *mode = keel_tensor_data_const(e.modes);
  for (int64_t i = 0, m = 0; i < e.n_nodes; i++) { /* the k-th member node owns the k-th NaN-ended set */
    set[2 * i] = set[2 * i + 1] = 0;
    if (mode[i] != M_MEMBER) continue;
    set[2 * i] = m;
    while (!isnan(tval(e.members, m))) m++;
    set[2 * i + 1] = m++;
  }
  int64_t rows = in[0].dims[0], F = in[0].dims[1];
  for (int64_t i = 0; i < e.n_nodes; i++)
    if (e.feat[i] >= F) return keel_error(KEEL_INVALID_ARGUMENT, "TreeEnsemble node %lld reads feature %lld of %lld", (long long)i, (long long)e.feat[i], (long long)F);
  /* MIN/MAX start from NaN (fmin/fmax take the other operand); a target no leaf reached gives 0, as in ONNX
   * Runtime (onnx's reference leaves +-FLT_MAX there) */
  double init = e.agg >= AGG_MIN ? NAN : 0.0;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t t = 0; t < e.n_targets; t++) acc[t] = init;
    for (int64_t k = 0; k < e.n_trees; k++) {
      int64_t node = e.roots[k], steps = 0;
      for (;;) {
        if (++steps > e.n_nodes) return keel_error(KEEL_INVALID_MODEL, "TreeEnsemble tree %lld has a cycle", (long long)k);
        double x = keel_view_get_f64(&in[0], r * F + e.feat[node]), s = tval(e.splits, node);
        bool go;
        if (x != x && e.missing_true && e.missing_true[node]) go = true;
        else switch (mode[node]) {
            case M_LEQ: go = x <= s; break;
            case M_LT: go = x < s; break;
            case M_GTE: go = x >= s; break;
            case M_GT: go = x > s; break;
            case M_EQ: go = x == s; break;
            case M_NEQ: go = x != s; break;
            default:
              go = false;
              for (int64_t j = set[2 * node]; j < set[2 * node + 1] && !go; j++) go = x == tval(e.members, j);
          }
        int64_t to = go ? e.tid[node] : e.fid[node];
        if (go ? e.tleaf[node] : e.fleaf[node]) {
          double w = tval(e.weights, to);
          double *a = &acc[e.leaf_target[to]];
          *a = e.agg == AGG_MIN ? fmin(*a, w) : e.agg == AGG_MAX ? fmax(*a, w) : *a + w;
          break;
        }
        node = to;
      }
    }
    if (e.agg >= AGG_MIN)
      for (int64_t t = 0; t < e.n_targets; t++)
        if (isnan(acc[t])) acc[t] = 0;
    if (e.agg == AGG_AVERAGE)
      for (int64_t t = 0; t < e.n_targets; t++) acc[t] /= (double)e.n_trees;
    if (e.post == PT_SOFTMAX || e.post == PT_SOFTMAX_ZERO) {
      double mx = -INFINITY, sum = 0;
      for (int64_t t = 0; t < e.n_targets; t++)
        if (!(e.post == PT_SOFTMAX_ZERO && acc[t] == 0)) mx = fmax(mx, acc[t]);
      for (int64_t t = 0; t < e.n_targets; t++) {
        if (e.post == PT_SOFTMAX_ZERO && acc[t] == 0) continue; /* zeros stay zero */
        acc[t] = exp(acc[t] - mx);
        sum += acc[t];
      }
      for (int64_t t = 0; t < e.n_targets && sum > 0; t++) acc[t] /= sum;
    } else if (e.post == PT_LOGISTIC) {
      for (int64_t t = 0; t < e.n_targets; t++) acc[t] = 1.0 / (1.0 + exp(-acc[t]));
    } else if (e.post == PT_PROBIT) {
      for (int64_t t = 0; t < e.n_targets; t++) acc[t] = 1.4142135623730951 * erfinv(2.0 * acc[t] - 1.0);
    }
    for (int64_t t = 0; t < e.n_targets; t++) {
      int64_t o = r * e.n_targets + t;
      if (out[0].dtype == KEEL_FLOAT32) ((float *)out[0].data)[o] = (float)acc[t];
      else if (out[0].dtype == KEEL_FLOAT64) ((double *)out[0].data)[o] = acc[t];
      else ((uint16_t *)out[0].data)[o] = keel_float_to_half((float)acc[t]);
    }
  }
  return NULL;
}
