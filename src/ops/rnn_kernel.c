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

#define RT float
#define RSUF f32
#define RGEMM cblas_sgemm
#define REXP expf
#define RTANH tanhf
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
