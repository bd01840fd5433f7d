/* Attention kernel for one compute type. Included by attention.c once per type with
 *   AT_T     element type (float, double)
 *   AT_SUF   function suffix (f32, f64)
 *   AT_GEMM  cblas_sgemm / cblas_dgemm
 *   AT_EXP, AT_TANH  exp / tanh of that type
 * No include guard on purpose. */

#define AT_CAT2(a, b) a##_##b
#define AT_CAT(a, b) AT_CAT2(a, b)
#define AT_FN(name) AT_CAT(name, AT_SUF)

/* One (batch, query head): S = scale * Q K^T over [past; new] keys, softcap, bias, softmax, Y = S V. S is
 * Lq x T scratch. The past and new key segments are separate GEMMs writing adjacent column blocks of S, so
 * the concatenation never has to be materialized. */
static void AT_FN(attn_head)(const attn_p *p, int64_t b, int64_t h, const AT_T *Q, const AT_T *K, const AT_T *V,
                             const AT_T *PK, const AT_T *PV, AT_T *Y, AT_T *S) {
  const int64_t Lq = p->Lq, L = p->L, P = p->P, T = p->T, D = p->D, Dv = p->Dv;
  const int64_t hk = h / (p->Hq / p->Hkv); /* GQA: contiguous groups of query heads share a KV head */
  const AT_T *q = Q + b * p->qs[0] + h * p->qs[1];
  const AT_T *k = K + b * p->ks[0] + hk * p->ks[1];
  const AT_T *v = V + b * p->vs[0] + hk * p->vs[1];
  AT_T *y = Y + b * p->ys[0] + h * p->ys[1];
  const AT_T scale = (AT_T)p->scale;
  if (Lq == 0 || Dv == 0) return;

  /* scores */
  if (D == 0) {
    for (int64_t i = 0; i < Lq * T; i++) S[i] = 0;
  } else {
    if (P > 0)
      AT_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Lq, (int)P, (int)D, scale, q, (int)p->qs[2],
              PK + (b * p->Hkv + hk) * P * D, (int)D, 0, S, (int)T);
    if (L > 0)
      AT_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Lq, (int)L, (int)D, scale, q, (int)p->qs[2], k,
              (int)p->ks[2], 0, S + P, (int)T);
  }

  int64_t qk_base = ((b * p->Hq + h) * Lq) * T;
  if (p->qk && p->mode == 0)
    for (int64_t i = 0; i < Lq * T; i++) at_st(p->qk->dtype, p->qk->data, qk_base + i, S[i]);
  if (p->softcap > 0) {
    const AT_T c = (AT_T)p->softcap, inv = (AT_T)(1.0 / p->softcap);
    for (int64_t i = 0; i < Lq * T; i++) S[i] = c * AT_TANH(S[i] * inv);
  }
  if (p->qk && p->mode == 1)
    for (int64_t i = 0; i < Lq * T; i++) at_st(p->qk->dtype, p->qk->data, qk_base + i, S[i]);

  /* bias: mask (padded with -inf past its last column), causal (upper left, offset by the past), padding */
  int64_t valid = T;
  if (p->nonpad) {
    int64_t np = keel_view_get_i64(p->nonpad, b);
    if (np < valid) valid = np < 0 ? 0 : np;
  }
  for (int64_t i = 0; i < Lq; i++) {
    AT_T *s = S + i * T;
    if (p->mask) {
      const keel_view *m = p->mask;
      int64_t mo = b * p->ms[0] + h * p->ms[1] + i * p->ms[2];
      int64_t mk = p->mk < T ? p->mk : T;
      if (m->dtype == KEEL_BOOL) {
        const uint8_t *mb = (const uint8_t *)m->data + mo;
        for (int64_t j = 0; j < mk; j++)
          if (!mb[j]) s[j] = -INFINITY;
      } else if (m->dtype == KEEL_FLOAT32) {
        const float *mf = (const float *)m->data + mo;
        for (int64_t j = 0; j < mk; j++) s[j] += (AT_T)mf[j];
      } else {
        for (int64_t j = 0; j < mk; j++) s[j] += (AT_T)at_ld(m->dtype, m->data, mo + j);
      }
      for (int64_t j = mk; j < T; j++) s[j] = -INFINITY;
    }
    if (p->causal)
      for (int64_t j = i + P + 1; j < T; j++) s[j] = -INFINITY;
    for (int64_t j = valid; j < T; j++) s[j] = -INFINITY;
  }
  if (p->qk && p->mode == 2)
    for (int64_t i = 0; i < Lq * T; i++) at_st(p->qk->dtype, p->qk->data, qk_base + i, S[i]);

  /* softmax per row; a row with no finite score has no defined distribution (NaN, as the formula gives) */
  for (int64_t i = 0; i < Lq; i++) {
    AT_T *s = S + i * T;
    AT_T mx = -INFINITY;
    for (int64_t j = 0; j < T; j++) mx = s[j] > mx ? s[j] : mx;
    if (mx == -INFINITY || mx == INFINITY || mx != mx) {
      for (int64_t j = 0; j < T; j++) s[j] = NAN;
      continue;
    }
    AT_T sum = 0;
    for (int64_t j = 0; j < T; j++) {
      AT_T e = AT_EXP(s[j] - mx);
      s[j] = e;
      sum += e;
    }
    AT_T inv = (AT_T)1 / sum;
    for (int64_t j = 0; j < T; j++) s[j] *= inv;
  }
  if (p->qk && p->mode == 3)
    for (int64_t i = 0; i < Lq * T; i++) at_st(p->qk->dtype, p->qk->data, qk_base + i, S[i]);

  /* Y = softmax(S) [past V; V] */
  if (T == 0) {
    for (int64_t i = 0; i < Lq; i++)
      for (int64_t d = 0; d < Dv; d++) y[i * p->ys[2] + d] = 0;
    return;
  }
  if (P > 0)
    AT_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Lq, (int)Dv, (int)P, 1, S, (int)T,
            PV + (b * p->Hkv + hk) * P * Dv, (int)Dv, 0, y, (int)p->ys[2]);
  if (L > 0)
    AT_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Lq, (int)Dv, (int)L, 1, S + P, (int)T, v,
            (int)p->vs[2], P > 0 ? 1 : 0, y, (int)p->ys[2]);
}

#undef AT_FN
#undef AT_CAT
#undef AT_CAT2
