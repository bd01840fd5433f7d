/* Gradient (ai.onnx.preview.training): the load-time rewrite (graph/gradient.c) against central finite
 * differences of the same functions written in C, through broadcasting, reuse of a value by several nodes,
 * MatMul, activations, two Gradient nodes in one model, an x that y does not depend on (zero gradient),
 * and the error for an operator that cannot be differentiated. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test_main.h"
#include "model_builder.h"

/* y1 = Tanh(MatMul(Relu((a + b) * a), W)) / 2     a [2,3], b [3] (broadcast), W [3,2]
 * y2 = Sigmoid(b) + Exp(-b) + Log(Sqrt(b * b)) + (b - Identity(b))   (Sum of four) */
static double f1(const double *a, const double *b, const double *W) {
  double s = 0;
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++) {
      double m = 0;
      for (int k = 0; k < 3; k++) {
        double d = (a[i * 3 + k] + b[k]) * a[i * 3 + k];
        m += (d > 0 ? d : 0) * W[k * 2 + j];
      }
      s += tanh(m) / 2;
    }
  return s;
}
static double f2(const double *a, const double *b, const double *W) {
  (void)a, (void)W;
  double s = 0;
  for (int k = 0; k < 3; k++) s += 1 / (1 + exp(-b[k])) + exp(-b[k]) + log(sqrt(b[k] * b[k])) + (b[k] - b[k]);
  return s;
}

static const float A[6] = {0.5f, 0.2f, 0.8f, 1.5f, -0.3f, 0.9f}, B[3] = {0.7f, -0.4f, 1.1f},
                   W[6] = {0.2f, -0.5f, 0.3f, 0.8f, -0.6f, 0.1f};

/* d f / d (which[i]) by central differences */
static double numeric(double (*f)(const double *, const double *, const double *), int which, int i) {
  double a[6], b[3], w[6];
  for (int k = 0; k < 6; k++) a[k] = A[k], w[k] = W[k];
  for (int k = 0; k < 3; k++) b[k] = B[k];
  double *p = which == 0 ? a : which == 1 ? b : w, h = 1e-5, x = p[i];
  p[i] = x + h;
  double up = f(a, b, w);
  p[i] = x - h;
  double dn = f(a, b, w);
  return (up - dn) / (2 * h);
}

static void check_grad(keel_tensor *t, double (*f)(const double *, const double *, const double *), int which,
                       int n, int line) {
  if (!t || keel_tensor_dtype(t) != KEEL_FLOAT32 || keel_tensor_numel(t) != n) {
    fprintf(stderr, "%s:%d: [%s] gradient has the wrong type or size\n", __FILE__, line, test_current);
    test_failures++;
    return;
  }
  const float *g = keel_tensor_data(t);
  for (int i = 0; i < n; i++) {
    double want = numeric(f, which, i);
    if (fabs(g[i] - want) > 1e-3 * (1 + fabs(want))) {
      fprintf(stderr, "%s:%d: [%s] gradient %d of input %d: got %.6f, finite differences %.6f\n", __FILE__, line,
              test_current, i, which, g[i], want);
      test_failures++;
    }
  }
}

TEST(test_gradients) {
  TEST_BEGIN("gradients");
  mb b = {0};
  mb_opset(&b, "", 13);
  mb_opset(&b, "ai.onnx.preview.training", 1);
  mb_input(&b, "a", 1);
  mb_input(&b, "b", 1);
  b.inits[b.n_init++] = mb_float_tensor(&b, "W", 2, (const int64_t[]){3, 2}, W);
  b.inits[b.n_init++] = mb_float_tensor(&b, "two", 0, NULL, (const float[]){2.f});
  mb_node(&b, "Add", "", "a,b", "c");
  mb_node(&b, "Mul", "", "c,a", "d");
  mb_node(&b, "Relu", "", "d", "r");
  mb_node(&b, "MatMul", "", "r,W", "m");
  mb_node(&b, "Tanh", "", "m", "t");
  mb_node(&b, "Div", "", "t,two", "y1");
  mb_node(&b, "Sigmoid", "", "b", "s1");
  mb_node(&b, "Neg", "", "b", "nb");
  mb_node(&b, "Exp", "", "nb", "s2");
  mb_node(&b, "Mul", "", "b,b", "bb");
  mb_node(&b, "Sqrt", "", "bb", "sq");
  mb_node(&b, "Log", "", "sq", "s3");
  mb_node(&b, "Identity", "", "b", "bi");
  mb_node(&b, "Sub", "", "b,bi", "s4");
  mb_node(&b, "Sum", "", "s1,s2,s3,s4", "y2");
  Onnx__NodeProto *g1 = mb_node(&b, "Gradient", "ai.onnx.preview.training", "a,b,W", "da,db,dW");
  mb_attr_strs(&b, g1, "xs", "a,b,W");
  mb_attr_str(&b, g1, "y", "y1");
  Onnx__NodeProto *g2 = mb_node(&b, "Gradient", "ai.onnx.preview.training", "b,W", "d2b,d2W");
  mb_attr_strs(&b, g2, "xs", "b,W");
  mb_attr_str(&b, g2, "y", "y2");
  const char *outs[] = {"y1", "da", "db", "dW", "y2", "d2b", "d2W"};
  for (int i = 0; i < 7; i++) mb_output(&b, outs[i], 1);
  keel_status *s;
  keel_engine *e = mb_load(&b, &s);
  CHECK_OK(s);
  keel_tensor *in[2] = {NULL, NULL}, *out[7] = {0};
  CHECK_OK(keel_tensor_from_data(KEEL_FLOAT32, (const int64_t[]){2, 3}, 2, A, &in[0]));
  CHECK_OK(keel_tensor_from_data(KEEL_FLOAT32, (const int64_t[]){3}, 1, B, &in[1]));
  if (e) {
    CHECK_OK(keel_engine_run(e, in, 2, out, 7));
    check_grad(out[1], f1, 0, 6, __LINE__);
    check_grad(out[2], f1, 1, 3, __LINE__); /* b was broadcast over a's rows: summed back to [3] */
    check_grad(out[3], f1, 2, 6, __LINE__);
    check_grad(out[5], f2, 1, 3, __LINE__);
    const float *z = out[6] ? keel_tensor_data(out[6]) : NULL; /* y2 does not depend on W */
    CHECK(z && keel_tensor_numel(out[6]) == 6 && keel_tensor_ndim(out[6]) == 2);
    for (int i = 0; z && i < 6; i++) CHECK(z[i] == 0.f);
    CHECK(out[2] && keel_tensor_ndim(out[2]) == 1 && keel_tensor_dims(out[2])[0] == 3);
    for (int i = 0; i < 7; i++) keel_tensor_release(out[i]);
  }
  keel_tensor_release(in[0]);
  keel_tensor_release(in[1]);
  keel_engine_release(e);
  mb_free(&b);
}

TEST(test_unsupported) {
  TEST_BEGIN("unsupported");
  mb b = {0};
  mb_opset(&b, "", 13);
  mb_opset(&b, "ai.onnx.preview.training", 1);
  mb_input(&b, "a", 1);
  mb_node(&b, "Sin", "", "a", "s");
  mb_node(&b, "Relu", "", "s", "y");
  Onnx__NodeProto *g = mb_node(&b, "Gradient", "ai.onnx.preview.training", "a", "da");
  mb_node(&b, "Identity", "", "a", "unused");
  mb_attr_strs(&b, g, "xs", "a");
  mb_attr_str(&b, g, "y", "y");
  mb_output(&b, "da", 1);
  keel_status *s;
  keel_engine *e = mb_load(&b, &s);
  CHECK(e == NULL);
  CHECK_ERR(s, KEEL_UNSUPPORTED, "cannot differentiate through node 'Sin_0' (Sin)");
  keel_engine_release(e);
  mb_free(&b);

  mb b2 = {0}; /* y is not a value of the graph */
  mb_opset(&b2, "", 13);
  mb_opset(&b2, "ai.onnx.preview.training", 1);
  mb_input(&b2, "a", 1);
  g = mb_node(&b2, "Gradient", "ai.onnx.preview.training", "a", "da");
  mb_attr_strs(&b2, g, "xs", "a");
  mb_attr_str(&b2, g, "y", "nope");
  mb_output(&b2, "da", 1);
  e = mb_load(&b2, &s);
  CHECK(e == NULL);
  CHECK_ERR(s, KEEL_INVALID_MODEL, "y 'nope' is not a value");
  keel_engine_release(e);
  mb_free(&b2);
}

RUN_TESTS(test_gradients, test_unsupported)
