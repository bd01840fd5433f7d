/* RNN / GRU / LSTM kernels, instantiated from rnn_tmpl.h for float32 and float64. */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "ops/rnn_internal.h"

int64_t rnn_workspace_elems(const rnn_cfg *c) {
  const int64_t GH = c->gates * c->H;
  /* xw [S*B*GH] + rec [B*GH] + h, c, tmp [B*H each] + bias [GH] + rbh [H] */
  return c->S * c->B * GH + c->B * GH + 3 * c->B * c->H + GH + c->H;
}

/* tanh through expf: glibc's tanhf goes through expm1f, which took a fifth of an LSTM's time. Relative
 * error stays near float epsilon: small |x| use the series, where 1 - e^(-2|x|) would cancel. */
static inline float fast_tanhf(float x) {
  const float a = fabsf(x);
  if (a < 0.1f) { /* Taylor series to x^9: error below 1e-12 relative here */
    const float x2 = x * x;
    return x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835)))));
  }
  const float t = expf(-2.0f * a), r = (1.0f - t) / (1.0f + t);
  return x < 0 ? -r : r;
}

#define RT float
#define RSUF f32
#define RGEMM cblas_sgemm
#define REXP expf
#define RTANH fast_tanhf
#define RLOG1P log1pf
#include "ops/rnn_tmpl.h"
#undef RT
#undef RSUF
#undef RGEMM
#undef REXP
#undef RTANH
#undef RLOG1P

#define RT double
#define RSUF f64
#define RGEMM cblas_dgemm
#define REXP exp
#define RTANH tanh
#define RLOG1P log1p
#include "ops/rnn_tmpl.h"
