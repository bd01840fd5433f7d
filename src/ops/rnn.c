/* Operator family: rnn (RNN, GRU, LSTM).
 * This file parses attributes and shapes (rnn_cfg), infers outputs and sizes the workspace; the kernels
 * are in rnn_kernel.c / rnn_tmpl.h. Versions: RNN 1/7/14/22, GRU 1/3/7/14/22, LSTM 1/7/14/22. Opset 3 added
 * GRU's linear_before_reset, 7 dropped output_sequence (Y is an optional output in every version), 14 added
 * layout, 22 only types; one kernel reads whatever attributes the node has. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ops/nn_internal.h"
#include "ops/rnn_internal.h"

static const struct {
  const char *name;
  rnn_act_kind k;
  bool uses_alpha, uses_beta;
  float alpha, beta; /* defaults: those of the ONNX operators of the same name */
} act_names[] = {
    {"Relu", RNN_ACT_RELU, false, false, 0, 0},
    {"Tanh", RNN_ACT_TANH, false, false, 0, 0},
    {"Sigmoid", RNN_ACT_SIGMOID, false, false, 0, 0},
    {"Affine", RNN_ACT_AFFINE, true, true, 1.0f, 0.0f},
    {"LeakyRelu", RNN_ACT_LEAKY_RELU, true, false, 0.01f, 0},
    {"ThresholdedRelu", RNN_ACT_THRESHOLDED_RELU, true, false, 1.0f, 0},
    {"ScaledTanh", RNN_ACT_SCALED_TANH, true, true, 1.0f, 1.0f},
    {"HardSigmoid", RNN_ACT_HARD_SIGMOID, true, true, 0.2f, 0.5f},
    {"Elu", RNN_ACT_ELU, true, false, 1.0f, 0},
    {"Softsign", RNN_ACT_SOFTSIGN, false, false, 0, 0},
    {"Softplus", RNN_ACT_SOFTPLUS, false, false, 0, 0},
};

static const char *kind_name(rnn_kind k) { return k == RNN_KIND_RNN ? "RNN" : k == RNN_KIND_GRU ? "GRU" : "LSTM"; }

static rnn_kind node_kind(const keel_node *n) {
  if (!strcmp(n->op_type, "GRU")) return RNN_KIND_GRU;
  if (!strcmp(n->op_type, "LSTM")) return RNN_KIND_LSTM;
  return RNN_KIND_RNN;
}

/* activations / activation_alpha / activation_beta: alphas and betas are consumed in order by the
 * functions that take them (as ONNX Runtime does); a missing value falls back to the function's default. */
static keel_status *parse_acts(const keel_node *n, rnn_cfg *c) {
  static const char *dflt[3][3] = {{"Tanh"}, {"Sigmoid", "Tanh"}, {"Sigmoid", "Tanh", "Tanh"}};
  const keel_attr *aa = keel_node_attr(n, "activations");
  const int need = c->n_act * c->ndir;
  const char *names[6];
  if (aa && aa->type == KEEL_ATTR_STRINGS && aa->n > 0) {
    if (aa->n != need && !(c->ndir == 2 && aa->n == c->n_act))
      return keel_error(KEEL_INVALID_MODEL, "attribute 'activations' has %d names; %s with %d direction(s) needs %d",
                        aa->n, kind_name(c->kind), c->ndir, need);
    for (int i = 0; i < need; i++) names[i] = aa->strings[i % aa->n];
  } else {
    for (int i = 0; i < need; i++) names[i] = dflt[c->kind][i % c->n_act];
  }
  const float *al = NULL, *be = NULL;
  int nal = keel_attr_floats(n, "activation_alpha", &al), nbe = keel_attr_floats(n, "activation_beta", &be);
  int ia = 0, ib = 0;
  for (int i = 0; i < need; i++) {
    int f = -1;
    for (size_t k = 0; k < sizeof act_names / sizeof act_names[0]; k++)
      if (!strcasecmp(names[i], act_names[k].name)) f = (int)k;
    if (f < 0) return keel_error(KEEL_UNSUPPORTED, "activation '%s' is not supported", names[i]);
    rnn_act *a = &c->act[i / c->n_act][i % c->n_act];
    a->k = act_names[f].k;
    a->alpha = act_names[f].alpha;
    a->beta = act_names[f].beta;
    if (act_names[f].uses_alpha && al && ia < nal) a->alpha = al[ia++];
    if (act_names[f].uses_beta && be && ib < nbe) a->beta = be[ib++];
  }
  return NULL;
}

static keel_status *check_dims(const char *what, const keel_view *v, int ndim, const int64_t *want) {
  bool ok = v->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++)
    if (want[i] >= 0 && v->dims[i] >= 0 && v->dims[i] != want[i]) ok = false;
  if (!ok) {
    char got[96], exp[96];
    keel_shape_format(v->dims, v->ndim, got, sizeof got);
    keel_shape_format(want, ndim, exp, sizeof exp);
    return keel_error(KEEL_SHAPE_MISMATCH, "input %s has shape %s, expected %s (-1: any)", what, got, exp);
  }
  return NULL;
}

static keel_status *rnn_cfg_get(const keel_node *n, const keel_view *in, int n_in, rnn_cfg *c) {
  memset(c, 0, sizeof *c);
  c->kind = node_kind(n);
  c->gates = c->kind == RNN_KIND_RNN ? 1 : c->kind == RNN_KIND_GRU ? 3 : 4;
  c->n_act = c->gates == 4 ? 3 : c->gates == 3 ? 2 : 1;
  const int max_in = c->kind == RNN_KIND_LSTM ? 8 : 6;
  KEEL_TRY(nn_need_inputs(n, n_in, 3, max_in));
  for (int i = 0; i < 3; i++)
    if (!nn_has(in, n_in, i)) return keel_error(KEEL_INVALID_MODEL, "inputs X, W and R are required");
  const keel_dtype t = in[0].dtype;
  if (t != KEEL_FLOAT32 && t != KEEL_FLOAT64)
    return keel_error(KEEL_UNSUPPORTED, "input X has dtype %s; float32 and float64 are supported", keel_dtype_name(t));
  static const char *names[8] = {"X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"};
  for (int i = 1; i < n_in; i++) {
    if (i == 4 || !nn_has(in, n_in, i)) continue;
    if (in[i].dtype != t)
      return keel_error(KEEL_SHAPE_MISMATCH, "input %s has dtype %s but X has %s", names[i],
                        keel_dtype_name(in[i].dtype), keel_dtype_name(t));
  }
  c->has_b = nn_has(in, n_in, 3);
  c->has_seq = nn_has(in, n_in, 4);
  c->has_h0 = nn_has(in, n_in, 5);
  c->has_c0 = nn_has(in, n_in, 6);
  c->has_p = nn_has(in, n_in, 7);
  if (c->has_seq && in[4].dtype != KEEL_INT32 && in[4].dtype != KEEL_INT64)
    return keel_error(KEEL_INVALID_MODEL, "input sequence_lens has dtype %s; int32 expected",
                      keel_dtype_name(in[4].dtype));

  const char *dir = keel_attr_string(n, "direction", "forward");
  if (!strcmp(dir, "forward"))
    c->direction = RNN_FORWARD;
  else if (!strcmp(dir, "reverse"))
    c->direction = RNN_REVERSE;
  else if (!strcmp(dir, "bidirectional"))
    c->direction = RNN_BIDIRECTIONAL;
  else
    return keel_error(KEEL_INVALID_MODEL, "unknown direction '%s'", dir);
  c->ndir = c->direction == RNN_BIDIRECTIONAL ? 2 : 1;
  c->layout = n->opset >= 14 ? (int)keel_attr_int(n, "layout", 0) : 0;
  if (c->layout != 0 && c->layout != 1) return keel_error(KEEL_INVALID_MODEL, "layout %d (0 or 1)", c->layout);
  const keel_attr *ca = keel_node_attr(n, "clip");
  if (ca) {
    c->has_clip = true;
    c->clip = ca->f;
    if (!(c->clip >= 0)) return keel_error(KEEL_INVALID_MODEL, "clip %g must be non-negative", (double)c->clip);
  }
  c->lbr = c->kind == RNN_KIND_GRU && keel_attr_int(n, "linear_before_reset", 0) != 0;
  c->input_forget = c->kind == RNN_KIND_LSTM && keel_attr_int(n, "input_forget", 0) != 0;
  KEEL_TRY(parse_acts(n, c));

  const keel_view *x = &in[0], *w = &in[1], *r = &in[2];
  if (x->ndim != 3) return keel_error(KEEL_SHAPE_MISMATCH, "input X must be 3-D (got rank %d)", x->ndim);
  if (w->ndim != 3 || r->ndim != 3)
    return keel_error(KEEL_SHAPE_MISMATCH, "inputs W and R must be 3-D (got rank %d and %d)", w->ndim, r->ndim);
  c->S = x->dims[c->layout == 0 ? 0 : 1];
  c->B = x->dims[c->layout == 0 ? 1 : 0];
  c->isz = x->dims[2];
  int64_t hs = keel_attr_int(n, "hidden_size", -1);
  c->H = hs >= 0 ? hs : r->dims[2];
  if (c->H < 0 && w->dims[1] >= 0) c->H = w->dims[1] / c->gates;
  const int64_t GH = c->H >= 0 ? c->gates * c->H : -1, nd = c->ndir;
  KEEL_TRY(check_dims("W", w, 3, (int64_t[]){nd, GH, c->isz}));
  KEEL_TRY(check_dims("R", r, 3, (int64_t[]){nd, GH, c->H}));
  if (c->has_b) KEEL_TRY(check_dims("B", &in[3], 2, (int64_t[]){nd, GH >= 0 ? 2 * GH : -1}));
  if (c->has_seq) KEEL_TRY(check_dims("sequence_lens", &in[4], 1, (int64_t[]){c->B}));
  for (int i = 5; i <= 6; i++) {
    if (!nn_has(in, n_in, i)) continue;
    if (c->layout == 0)
      KEEL_TRY(check_dims(names[i], &in[i], 3, (int64_t[]){nd, c->B, c->H}));
    else
      KEEL_TRY(check_dims(names[i], &in[i], 3, (int64_t[]){c->B, nd, c->H}));
  }
  if (c->has_p) KEEL_TRY(check_dims("P", &in[7], 2, (int64_t[]){nd, c->H >= 0 ? 3 * c->H : -1}));
  return NULL;
}

static keel_status *rnn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  rnn_cfg c;
  KEEL_TRY(rnn_cfg_get(n, in, n_in, &c));
  const int max_out = c.kind == RNN_KIND_LSTM ? 3 : 2;
  if (n_out > max_out) return keel_error(KEEL_INVALID_MODEL, "%d outputs; at most %d", n_out, max_out);
  const keel_dtype t = in[0].dtype;
  const size_t es = keel_dtype_size(t);
  if (nn_want(n, n_out, 0)) {
    int64_t d[4];
    if (c.layout == 0) {
      d[0] = c.S, d[1] = c.ndir, d[2] = c.B, d[3] = c.H;
    } else {
      d[0] = c.B, d[1] = c.S, d[2] = c.ndir, d[3] = c.H;
    }
    KEEL_TRY(nn_check_numel(n, d, 4, es));
    keel_view_set_shape(&out[0], t, d, 4);
  }
  for (int i = 1; i < n_out; i++) {
    if (!nn_want(n, n_out, i)) continue;
    int64_t d[3];
    if (c.layout == 0) {
      d[0] = c.ndir, d[1] = c.B, d[2] = c.H;
    } else {
      d[0] = c.B, d[1] = c.ndir, d[2] = c.H;
    }
    KEEL_TRY(nn_check_numel(n, d, 3, es));
    keel_view_set_shape(&out[i], t, d, 3);
  }
  /* The workspace must be representable too. */
  if (c.S >= 0 && c.B >= 0 && c.H >= 0) {
    int64_t sb, w;
    if (!keel_mul_i64(c.S, c.B, &sb) || !keel_mul_i64(sb, c.gates * c.H + 1, &w) || !keel_mul_i64(w, (int64_t)es, &w))
      return keel_error(KEEL_INVALID_MODEL, "workspace size overflows");
  }
  return NULL;
}

static size_t rnn_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out) {
  rnn_cfg c;
  keel_status *s = rnn_cfg_get(n, in, n_in, &c);
  if (s) {
    keel_status_free(s);
    return 0;
  }
  if (c.S < 0 || c.B < 0 || c.H < 0) return 0;
  return (size_t)rnn_workspace_elems(&c) * keel_dtype_size(in[0].dtype);
}

static keel_status *rnn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  rnn_cfg c;
  KEEL_TRY(rnn_cfg_get(n, in, n_in, &c));
  const size_t es = keel_dtype_size(in[0].dtype);
  if ((size_t)rnn_workspace_elems(&c) * es > ex->workspace_bytes)
    return keel_error(KEEL_INTERNAL, "workspace of %zu bytes is smaller than the %zu needed", ex->workspace_bytes,
                      (size_t)rnn_workspace_elems(&c) * es);
  const int64_t lim = 0x7fffffff;
  if (c.S * c.B > lim || c.gates * c.H > lim || c.isz > lim || c.B * c.gates * c.H > lim)
    return keel_error(KEEL_UNSUPPORTED, "dimensions exceed the BLAS int range");
  const bool wy = nn_want_run(n, out, n_out, 0), wh = nn_want_run(n, out, n_out, 1),
             wc = c.kind == RNN_KIND_LSTM && nn_want_run(n, out, n_out, 2);
  if (in[0].dtype == KEEL_FLOAT32) return rnn_run_f32(&c, in, out, n_out, wy, wh, wc, ex->workspace);
  return rnn_run_f64(&c, in, out, n_out, wy, wh, wc, ex->workspace);
}

#define D(op, lo, hi) {op, "", lo, hi, rnn_infer, rnn_run, rnn_workspace, -1}
#define M KEEL_MAX_OPSET

const keel_op_def keel_ops_rnn[] = {
    D("RNN", 1, 6),   D("RNN", 7, 13),  D("RNN", 14, M),  D("GRU", 1, 2),   D("GRU", 3, 6),
    D("GRU", 7, 13),  D("GRU", 14, M),  D("LSTM", 1, 6),  D("LSTM", 7, 13), D("LSTM", 14, M),
};
const int keel_ops_rnn_count = (int)(sizeof keel_ops_rnn / sizeof keel_ops_rnn[0]);
