/* Training-update operators of ai.onnx.preview.training (Adagrad, Momentum, Adam): pure functions of their
 * inputs, so an inference runtime can run them like any other operator.
 *
 * Each takes R (learning rate, float/double scalar) and T (update count, int64 scalar), then groups of
 * equally many tensors (X..., G..., and the optimizer's state tensors), and returns the updated X... followed
 * by the updated states. Every X_i pairs with G_i and its states elementwise (same shape, same dtype). The
 * arithmetic runs in double and is rounded once to the tensors' dtype. */
#include <math.h>

#include "ops/op.h"

typedef enum { OPT_ADAGRAD, OPT_MOMENTUM, OPT_ADAM } opt_kind;

static opt_kind kind_of(const keel_node *n) {
  return !strcmp(n->op_type, "Adagrad") ? OPT_ADAGRAD : !strcmp(n->op_type, "Momentum") ? OPT_MOMENTUM : OPT_ADAM;
}

/* Tensors per parameter in the inputs (X, G, states) and in the outputs (X, states). */
static int groups_in(opt_kind k) { return k == OPT_ADAGRAD ? 3 : k == OPT_MOMENTUM ? 3 : 4; }

static bool is_real(keel_dtype t) { return t == KEEL_FLOAT32 || t == KEEL_FLOAT64; }

static keel_status *opt_check_attrs(const keel_node *n, opt_kind k) {
  if (k == OPT_MOMENTUM) {
    static const char *const need[] = {"alpha", "beta", "norm_coefficient", "mode"};
    for (int i = 0; i < 4; i++)
      if (!keel_node_attr(n, need[i]))
        return keel_error(KEEL_INVALID_MODEL, "Momentum needs the attribute '%s'", need[i]);
    const char *mode = keel_attr_string(n, "mode", "");
    if (strcmp(mode, "standard") && strcmp(mode, "nesterov"))
      return keel_error(KEEL_INVALID_MODEL, "Momentum mode must be 'standard' or 'nesterov', got '%s'", mode);
  }
  return NULL;
}

static keel_status *opt_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  opt_kind k = kind_of(n);
  KEEL_TRY(opt_check_attrs(n, k));
  int g = groups_in(k);
  if (n_in < 2 + g || (n_in - 2) % g)
    return keel_error(KEEL_INVALID_MODEL, "%s takes R, T and %d tensors per parameter; got %d inputs", n->op_type, g, n_in);
  int p = (n_in - 2) / g;
  if (n_out != p * (g - 1))
    return keel_error(KEEL_INVALID_MODEL, "%s with %d parameters has %d outputs, got %d", n->op_type, p, p * (g - 1), n_out);
  if (!is_real(in[0].dtype) || keel_view_numel(&in[0]) != 1)
    return keel_error(KEEL_INVALID_ARGUMENT, "R must be a float or double scalar, got %s with %lld elements",
                      keel_dtype_name(in[0].dtype), (long long)keel_view_numel(&in[0]));
  if (in[1].dtype != KEEL_INT64 || keel_view_numel(&in[1]) != 1)
    return keel_error(KEEL_INVALID_ARGUMENT, "T must be an int64 scalar, got %s with %lld elements",
                      keel_dtype_name(in[1].dtype), (long long)keel_view_numel(&in[1]));
  for (int i = 0; i < p; i++) {
    const keel_view *x = &in[2 + i];
    if (!is_real(x->dtype))
      return keel_error(KEEL_INVALID_ARGUMENT, "input %d (X) must be float or double, got %s", 2 + i,
                        keel_dtype_name(x->dtype));
    for (int j = 1; j < g; j++) {
      const keel_view *o = &in[2 + j * p + i];
      if (o->dtype != x->dtype || !keel_shape_equal(o->dims, o->ndim, x->dims, x->ndim))
        return keel_error(KEEL_SHAPE_MISMATCH, "input %d must have the dtype and shape of input %d (X)", 2 + j * p + i, 2 + i);
    }
    for (int j = 0; j < g - 1; j++) keel_view_set_shape(&out[j * p + i], x->dtype, x->dims, x->ndim);
  }
  return NULL;
}

static double rd(const keel_view *v, int64_t i) {
  return v->dtype == KEEL_FLOAT32 ? (double)((const float *)v->data)[i] : ((const double *)v->data)[i];
}
static void wr(keel_view *v, int64_t i, double x) {
  if (v->dtype == KEEL_FLOAT32) ((float *)v->data)[i] = (float)x;
  else ((double *)v->data)[i] = x;
}

static keel_status *opt_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex) {
  (void)n_out, (void)ex;
  opt_kind k = kind_of(n);
  int g = groups_in(k), p = (n_in - 2) / g;
  double r = rd(&in[0], 0);
  int64_t t = ((const int64_t *)in[1].data)[0];
  double norm = keel_attr_float(n, "norm_coefficient", 0.0f);
  if (k == OPT_ADAGRAD) {
    double decay = keel_attr_float(n, "decay_factor", 0.0f), eps = keel_attr_float(n, "epsilon", 0.0f);
    double rate = r / (1.0 + (double)t * decay); /* learning rate decays with the update count */
    for (int i = 0; i < p; i++) {
      const keel_view *x = &in[2 + i], *gr = &in[2 + p + i], *h = &in[2 + 2 * p + i];
      for (int64_t e = 0, c = keel_view_numel(x); e < c; e++) {
        double xv = rd(x, e), gv = norm * xv + rd(gr, e); /* gradient of the L2 regularizer added */
        double hn = rd(h, e) + gv * gv;
        wr(&out[i], e, xv - rate * gv / (sqrt(hn) + eps));
        wr(&out[p + i], e, hn);
      }
    }
  } else if (k == OPT_MOMENTUM) {
    double alpha = keel_attr_float(n, "alpha", 0.0f), beta = keel_attr_float(n, "beta", 0.0f);
    bool nesterov = !strcmp(keel_attr_string(n, "mode", "standard"), "nesterov");
    double b = t > 0 ? beta : 1.0; /* the first update takes the whole gradient */
    for (int i = 0; i < p; i++) {
      const keel_view *x = &in[2 + i], *gr = &in[2 + p + i], *v = &in[2 + 2 * p + i];
      for (int64_t e = 0, c = keel_view_numel(x); e < c; e++) {
        double xv = rd(x, e), gv = norm * xv + rd(gr, e);
        double vn = alpha * rd(v, e) + b * gv;
        wr(&out[i], e, nesterov ? xv - r * (gv + alpha * vn) : xv - r * vn);
        wr(&out[p + i], e, vn);
      }
    }
  } else {
    double alpha = keel_attr_float(n, "alpha", 0.9f), beta = keel_attr_float(n, "beta", 0.999f);
    double eps = keel_attr_float(n, "epsilon", 0.0f), post = keel_attr_float(n, "norm_coefficient_post", 0.0f);
    /* bias correction of both moments from the second update on */
    double rate = t > 0 ? r * sqrt(1.0 - pow(beta, (double)t)) / (1.0 - pow(alpha, (double)t)) : r;
    for (int i = 0; i < p; i++) {
      const keel_view *x = &in[2 + i], *gr = &in[2 + p + i], *v = &in[2 + 2 * p + i], *h = &in[2 + 3 * p + i];
      for (int64_t e = 0, c = keel_view_numel(x); e < c; e++) {
        double xv = rd(x, e), gv = norm * xv + rd(gr, e);
        double vn = alpha * rd(v, e) + (1.0 - alpha) * gv;
        double hn = beta * rd(h, e) + (1.0 - beta) * gv * gv;
        double xn = xv - rate * vn / (sqrt(hn) + eps);
        wr(&out[i], e, (1.0 - post) * xn);
        wr(&out[p + i], e, vn);
        wr(&out[2 * p + i], e, hn);
      }
    }
  }
  return NULL;
}

#define TRAINING "ai.onnx.preview.training"

const keel_op_def keel_ops_optimizer[] = {
    {"Adagrad", TRAINING, 1, 1, opt_infer, opt_run, NULL, -1},
    {"Momentum", TRAINING, 1, 1, opt_infer, opt_run, NULL, -1},
    {"Adam", TRAINING, 1, 1, opt_infer, opt_run, NULL, -1},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, -1},
};
const int keel_ops_optimizer_count = 3;
