/* RNN / GRU / LSTM kernel for one element type. Included by rnn_kernel.c once per type with
 *   RT      element type (float, double)
 *   RSUF    function suffix (f32, f64)
 *   RGEMM   cblas_sgemm / cblas_dgemm
 *   REXP, RTANH, RLOG1P  the matching <math.h> functions
 * No include guard on purpose.
 *
 * Plan per direction: one GEMM projects the inputs of all time steps at once (xw = X W^T + biases, laid out
 * [seq][batch][gates*hidden] for both layouts); each step then adds the recurrent product H R^T (one GEMM
 * over the batch) and applies the gate equations elementwise. Batch rows past their sequence_lens keep
 * their state and produce zeros in Y. */

#define RNN_CAT2(a, b) a##_##b
#define RNN_CAT(a, b) RNN_CAT2(a, b)
#define RFN(name) RNN_CAT(name, RSUF)

static void RFN(act_apply)(const rnn_act *a, RT *x, int64_t n, bool has_clip, RT clip) {
  if (has_clip)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] < -clip ? -clip : (x[i] > clip ? clip : x[i]);
  const RT al = (RT)a->alpha, be = (RT)a->beta;
  switch (a->k) {
    case RNN_ACT_RELU:
      for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
      break;
    case RNN_ACT_TANH:
      for (int64_t i = 0; i < n; i++) x[i] = RTANH(x[i]);
      break;
    case RNN_ACT_SIGMOID:
      for (int64_t i = 0; i < n; i++) x[i] = (RT)1 / ((RT)1 + REXP(-x[i]));
      break;
    case RNN_ACT_AFFINE:
      for (int64_t i = 0; i < n; i++) x[i] = al * x[i] + be;
      break;
    case RNN_ACT_LEAKY_RELU:
      for (int64_t i = 0; i < n; i++) x[i] = x[i] >= 0 ? x[i] : al * x[i];
      break;
    case RNN_ACT_THRESHOLDED_RELU:
      for (int64_t i = 0; i < n; i++) x[i] = x[i] > al ? x[i] : 0;
      break;
    case RNN_ACT_SCALED_TANH:
      for (int64_t i = 0; i < n; i++) x[i] = al * RTANH(be * x[i]);
      break;
    case RNN_ACT_HARD_SIGMOID:
      for (int64_t i = 0; i < n; i++) {
        RT v = al * x[i] + be;
        x[i] = v < 0 ? 0 : (v > 1 ? 1 : v);
      }
      break;
    case RNN_ACT_ELU:
      for (int64_t i = 0; i < n; i++) x[i] = x[i] >= 0 ? x[i] : al * (REXP(x[i]) - 1);
      break;
    case RNN_ACT_SOFTSIGN:
      for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1 + (x[i] < 0 ? -x[i] : x[i]));
      break;
    case RNN_ACT_SOFTPLUS:
      /* log(1 + e^x) without overflow for large x */
      for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] + RLOG1P(REXP(-x[i])) : RLOG1P(REXP(x[i]));
      break;
  }
}

/* y[M, N] (beta 0 or 1) += a[M, K] * b[N, K]^T, with leading dims. */
static void RFN(mm_bt)(int64_t M, int64_t N, int64_t K, const RT *a, int64_t lda, const RT *b, int64_t ldb,
                       RT beta, RT *y, int64_t ldy) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (beta == 0)
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) y[i * ldy + j] = 0;
    return;
  }
  RGEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, (RT)1, a, (int)lda, b, (int)ldb, beta, y,
        (int)ldy);
}

keel_status *RFN(rnn_run)(const rnn_cfg *c, const keel_view *in, keel_view *out, int n_out, bool want_y,
                          bool want_yh, bool want_yc, void *ws) {
  const int64_t S = c->S, B = c->B, NI = c->isz, H = c->H, G = c->gates, GH = G * H;
  const int ndir = c->ndir;
  const RT *X = in[0].data, *Wall = in[1].data, *Rall = in[2].data;
  const RT *Ball = c->has_b ? in[3].data : NULL, *Pall = c->has_p ? in[7].data : NULL;
  const RT *h0 = c->has_h0 ? in[5].data : NULL, *c0 = c->has_c0 ? in[6].data : NULL;
  RT *Y = want_y ? out[0].data : NULL, *Yh = want_yh ? out[1].data : NULL, *Yc = want_yc ? out[2].data : NULL;
  const RT clip = (RT)c->clip;

  /* Workspace carve-up (rnn_workspace_elems agrees). */
  RT *xw = ws;
  RT *rec = xw + S * B * GH;
  RT *h = rec + B * GH;
  RT *cs = h + B * H;
  RT *tmp = cs + B * H;
  RT *bias = tmp + B * H;
  RT *rbh = bias + GH;

  /* sequence lengths, validated */
  const keel_view *sl = c->has_seq ? &in[4] : NULL;
  for (int64_t b = 0; c->has_seq && b < B; b++) {
    int64_t L = keel_view_get_i64(sl, b);
    if (L < 0 || L > S)
      return keel_error(KEEL_INVALID_ARGUMENT, "sequence_lens[%lld] = %lld is outside [0, %lld]", (long long)b,
                        (long long)L, (long long)S);
  }

  if (Y && S * B * H * ndir > 0) memset(Y, 0, (size_t)(S * ndir * B * H) * sizeof(RT));

  for (int d = 0; d < ndir; d++) {
    const bool reverse = c->direction == RNN_REVERSE || (c->direction == RNN_BIDIRECTIONAL && d == 1);
    const RT *W = Wall + d * GH * NI, *R = Rall + d * GH * H;
    const rnn_act *act = c->act[d];

    /* Biases folded into the input projection; GRU with linear_before_reset keeps Rb_h apart because it
     * sits inside the reset gate product. */
    for (int64_t j = 0; j < GH; j++) bias[j] = 0;
    for (int64_t j = 0; j < H; j++) rbh[j] = 0;
    if (Ball) {
      const RT *Wb = Ball + d * 2 * GH, *Rb = Wb + GH;
      for (int64_t j = 0; j < GH; j++) bias[j] = Wb[j] + Rb[j];
      if (c->kind == RNN_KIND_GRU && c->lbr)
        for (int64_t j = 0; j < H; j++) {
          bias[2 * H + j] = Wb[2 * H + j];
          rbh[j] = Rb[2 * H + j];
        }
    }
    for (int64_t r = 0; r < S * B; r++) memcpy(xw + r * GH, bias, (size_t)GH * sizeof(RT));
    if (c->layout == 0)
      RFN(mm_bt)(S * B, GH, NI, X, NI, W, NI, 1, xw, GH);
    else /* X is [batch][seq][input]: one GEMM per batch row, written with stride batch*GH */
      for (int64_t b = 0; b < B; b++) RFN(mm_bt)(S, GH, NI, X + b * S * NI, NI, W, NI, 1, xw + b * GH, B * GH);

    /* Initial state: layout 0 [ndir][batch][H], layout 1 [batch][ndir][H]. */
    for (int64_t b = 0; b < B; b++) {
      const int64_t off = c->layout == 0 ? (d * B + b) * H : (b * ndir + d) * H;
      for (int64_t j = 0; j < H; j++) {
        h[b * H + j] = h0 ? h0[off + j] : 0;
        cs[b * H + j] = c0 ? c0[off + j] : 0;
      }
    }
    const RT *P = Pall ? Pall + d * 3 * H : NULL;

    for (int64_t s = 0; s < S; s++) {
      const int64_t t = reverse ? S - 1 - s : s;
      RT *xt = xw + t * B * GH;
      /* With sequence_lens, row b takes part at step t only if t < len[b]. */
      switch (c->kind) {
        case RNN_KIND_RNN:
        case RNN_KIND_LSTM:
          RFN(mm_bt)(B, GH, H, h, H, R, H, 1, xt, GH);
          break;
        case RNN_KIND_GRU:
          if (c->lbr)
            RFN(mm_bt)(B, GH, H, h, H, R, H, 0, rec, GH);
          else
            RFN(mm_bt)(B, 2 * H, H, h, H, R, H, 1, xt, GH);
          break;
      }
      if (c->kind == RNN_KIND_GRU && !c->lbr) {
        /* z and r first, then the candidate's recurrent product uses r (.) H. */
        for (int64_t b = 0; b < B; b++) {
          RT *g = xt + b * GH;
          RFN(act_apply)(&act[0], g, 2 * H, c->has_clip, clip);
          for (int64_t j = 0; j < H; j++) tmp[b * H + j] = g[H + j] * h[b * H + j];
        }
        RFN(mm_bt)(B, H, H, tmp, H, R + 2 * H * H, H, 1, xt + 2 * H, GH);
      }
      for (int64_t b = 0; b < B; b++) {
        if (c->has_seq && t >= keel_view_get_i64(sl, b)) continue;
        RT *g = xt + b * GH, *hb = h + b * H, *cb = cs + b * H;
        switch (c->kind) {
          case RNN_KIND_RNN:
            RFN(act_apply)(&act[0], g, H, c->has_clip, clip);
            memcpy(hb, g, (size_t)H * sizeof(RT));
            break;
          case RNN_KIND_GRU: {
            RT *z = g, *r = g + H, *hh = g + 2 * H;
            if (c->lbr) {
              const RT *rb = rec + b * GH;
              for (int64_t j = 0; j < 2 * H; j++) g[j] += rb[j];
              RFN(act_apply)(&act[0], g, 2 * H, c->has_clip, clip);
              for (int64_t j = 0; j < H; j++) hh[j] += r[j] * (rb[2 * H + j] + rbh[j]);
            }
            RFN(act_apply)(&act[1], hh, H, c->has_clip, clip);
            for (int64_t j = 0; j < H; j++) hb[j] = (1 - z[j]) * hh[j] + z[j] * hb[j];
            break;
          }
          case RNN_KIND_LSTM: {
            RT *gi = g, *go = g + H, *gf = g + 2 * H, *gc = g + 3 * H;
            if (P)
              for (int64_t j = 0; j < H; j++) {
                gi[j] += P[j] * cb[j];
                gf[j] += P[2 * H + j] * cb[j];
              }
            RFN(act_apply)(&act[0], gi, H, c->has_clip, clip);
            if (c->input_forget)
              for (int64_t j = 0; j < H; j++) gf[j] = 1 - gi[j];
            else
              RFN(act_apply)(&act[0], gf, H, c->has_clip, clip);
            RFN(act_apply)(&act[1], gc, H, c->has_clip, clip);
            for (int64_t j = 0; j < H; j++) cb[j] = gf[j] * cb[j] + gi[j] * gc[j];
            if (P)
              for (int64_t j = 0; j < H; j++) go[j] += P[H + j] * cb[j];
            RFN(act_apply)(&act[0], go, H, c->has_clip, clip);
            /* h(C) goes through tmp so that the cell state stays as it is; clip applies to the gate
             * inputs only (ONNX Runtime does not clip C before h either). */
            RT *hc = tmp + b * H;
            memcpy(hc, cb, (size_t)H * sizeof(RT));
            RFN(act_apply)(&act[2], hc, H, false, clip);
            for (int64_t j = 0; j < H; j++) hb[j] = go[j] * hc[j];
            break;
          }
        }
        if (Y) {
          RT *y = c->layout == 0 ? Y + ((t * ndir + d) * B + b) * H : Y + ((b * S + t) * ndir + d) * H;
          memcpy(y, hb, (size_t)H * sizeof(RT));
        }
      }
    }
    for (int64_t b = 0; b < B; b++) {
      const int64_t off = c->layout == 0 ? (d * B + b) * H : (b * ndir + d) * H;
      /* A row of length 0 gives zeros, not its initial state (as ONNX Runtime does). */
      const bool empty = c->has_seq && keel_view_get_i64(sl, b) == 0;
      for (int64_t j = 0; j < H; j++) {
        if (Yh) Yh[off + j] = empty ? 0 : h[b * H + j];
        if (Yc) Yc[off + j] = empty ? 0 : cs[b * H + j];
      }
    }
  }
  (void)n_out;
  return NULL;
}

#undef RFN
#undef RNN_CAT
#undef RNN_CAT2
