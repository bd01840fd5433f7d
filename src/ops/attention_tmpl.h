/* Attention kernel for one compute type. Included by attention.c once per type with
 *   AT_T     element type (float, double)
 *   AT_SUF   function suffix (f32, f64)
 *   AT_GEMM  cblas_sgemm / cblas_dgemm
 *   AT_EXP, AT_TANH  exp / tanh of that type
 * No include guard on purpose. */

#define AT_CAT2(a, b) a##_##b
#define AT_CAT(a, b) AT_CAT2(a, b)
#define AT_FN(name) AT_CAT(name, AT_SUF)

/* In-place softmax of one row. Max and sum keep AT_BLK partial lanes so the loops vectorize without
 * reassociation flags; a row with no finite maximum becomes NaN (the formula's value). */
#define AT_BLK 16
static void AT_FN(softmax_row)(AT_T *restrict s, int64_t n) {
  AT_T mxl[AT_BLK], sml[AT_BLK];
  for (int l = 0; l < AT_BLK; l++) mxl[l] = -INFINITY, sml[l] = 0;
  int64_t j = 0;
  for (; j + AT_BLK <= n; j += AT_BLK)
    for (int l = 0; l < AT_BLK; l++) mxl[l] = s[j + l] > mxl[l] ? s[j + l] : mxl[l];
  AT_T mx = -INFINITY;
  bool nan = false;
  for (int l = 0; l < AT_BLK; l++) mx = mxl[l] > mx ? mxl[l] : mx;
  for (; j < n; j++) mx = s[j] > mx ? s[j] : mx;
  for (j = 0; j < n; j++) nan |= s[j] != s[j];
  if (nan || mx == -INFINITY || mx == INFINITY) {
    for (j = 0; j < n; j++) s[j] = NAN;
    return;
  }
  for (j = 0; j + AT_BLK <= n; j += AT_BLK)
    for (int l = 0; l < AT_BLK; l++) {
      AT_T e = AT_EXP(s[j + l] - mx);
      s[j + l] = e;
      sml[l] += e;
    }
  AT_T sum = 0;
  for (; j < n; j++) {
    AT_T e = AT_EXP(s[j] - mx);
    s[j] = e;
    sum += e;
  }
  for (int l = 0; l < AT_BLK; l++) sum += sml[l];
  AT_T inv = (AT_T)1 / sum;
  for (j = 0; j < n; j++) s[j] *= inv;
}
#undef AT_BLK

/* One (batch, query head): S = scale * Q K^T over [past; new] keys, softcap, bias, softmax, Y = S V. S is
 * Lq x T scratch. The past and new key segments are separate GEMMs writing adjacent column blocks of S, so
 * the concatenation never has to be materialized. Query rows go in blocks; columns that the causal mask or
 * nonpad_kv_seqlen hide from every row of a block are skipped outright (their probability is exactly 0),
 * unless qk_matmul_output wants the full matrix. */
static void AT_FN(attn_head)(const attn_p *p, int64_t b, int64_t h, const AT_T *Q, const AT_T *K, const AT_T *V,
                             const AT_T *PK, const AT_T *PV, AT_T *Y, AT_T *S) {
  const int64_t Lq = p->Lq, P = p->P, T = p->T, D = p->D, Dv = p->Dv;
  const int64_t hk = h / (p->Hq / p->Hkv); /* GQA: contiguous groups of query heads share a KV head */
  const AT_T *q = Q + b * p->qs[0] + h * p->qs[1];
  const AT_T *k = K + b * p->ks[0] + hk * p->ks[1];
  const AT_T *v = V + b * p->vs[0] + hk * p->vs[1];
  const AT_T *pk = P ? PK + (b * p->Hkv + hk) * P * D : NULL, *pv = P ? PV + (b * p->Hkv + hk) * P * Dv : NULL;
  AT_T *y = Y + b * p->ys[0] + h * p->ys[1];
  const int64_t ldq = p->qs[2], ldk = p->ks[2], ldv = p->vs[2], ldy = p->ys[2];
  const AT_T scale = (AT_T)p->scale;
  if (Lq == 0 || Dv == 0) return;
  int64_t valid = T;
  if (p->nonpad) {
    int64_t np = keel_view_get_i64(p->nonpad, b);
    if (np < valid) valid = np < 0 ? 0 : np;
  }
  const int64_t RB = p->causal && !p->qk ? 32 : Lq;
  for (int64_t i0 = 0; i0 < Lq; i0 += RB) {
    const int64_t nr = i0 + RB < Lq ? RB : Lq - i0;
    int64_t nc = T; /* columns this block needs */
    if (!p->qk) {
      if (p->causal && i0 + nr + P < nc) nc = i0 + nr + P;
      if (valid < nc) nc = valid;
    }
    AT_T *Sb = S + i0 * T;
    const AT_T *qb = q + i0 * ldq;
    AT_T *yb = y + i0 * ldy;
    if (nc == 0) { /* every score masked: no distribution (NaN, as the formula gives) */
      for (int64_t i = 0; i < nr; i++)
        for (int64_t d = 0; d < Dv; d++) yb[i * ldy + d] = NAN;
      continue;
    }
    const int64_t ncp = nc < P ? nc : P, ncn = nc - ncp; /* past / new columns */

    /* scores */
    if (D == 0) {
      for (int64_t i = 0; i < nr; i++)
        for (int64_t j = 0; j < nc; j++) Sb[i * T + j] = 0;
    } else {
      if (ncp > 0)
        AT_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)ncp, (int)D, scale, qb, (int)ldq, pk, (int)D, 0,
                Sb, (int)T);
      if (ncn > 0)
        AT_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)ncn, (int)D, scale, qb, (int)ldq, k, (int)ldk,
                0, Sb + P, (int)T);
    }

    const int64_t qk_base = ((b * p->Hq + h) * Lq + i0) * T;
    if (p->qk && p->mode == 0)
      for (int64_t i = 0; i < nr * T; i++) keel_elem_store(p->qk->dtype, p->qk->data, qk_base + i, Sb[i]);
    if (p->softcap > 0) {
      const AT_T c = (AT_T)p->softcap, inv = (AT_T)(1.0 / p->softcap);
      for (int64_t i = 0; i < nr; i++)
        for (int64_t j = 0; j < nc; j++) Sb[i * T + j] = c * AT_TANH(Sb[i * T + j] * inv);
    }
    if (p->qk && p->mode == 1)
      for (int64_t i = 0; i < nr * T; i++) keel_elem_store(p->qk->dtype, p->qk->data, qk_base + i, Sb[i]);

    /* bias: mask (padded with -inf past its last column), causal (upper left, offset by the past), padding */
    for (int64_t i = 0; i < nr; i++) {
      AT_T *s = Sb + i * T;
      const int64_t row = i0 + i;
      if (p->mask) {
        const keel_view *m = p->mask;
        const int64_t mo = b * p->ms[0] + h * p->ms[1] + row * p->ms[2];
        const int64_t mk = p->mk < nc ? p->mk : nc;
        if (m->dtype == KEEL_BOOL) {
          const uint8_t *mb = (const uint8_t *)m->data + mo;
          for (int64_t j = 0; j < mk; j++)
            if (!mb[j]) s[j] = -INFINITY;
        } else if (m->dtype == KEEL_FLOAT32) {
          const float *mf = (const float *)m->data + mo;
          for (int64_t j = 0; j < mk; j++) s[j] += (AT_T)mf[j];
        } else {
          for (int64_t j = 0; j < mk; j++) s[j] += (AT_T)keel_elem_load(m->dtype, m->data, mo + j);
        }
        for (int64_t j = mk; j < nc; j++) s[j] = -INFINITY;
      }
      if (p->causal)
        for (int64_t j = row + P + 1; j < nc; j++) s[j] = -INFINITY;
      for (int64_t j = valid; j < nc; j++) s[j] = -INFINITY;
    }
    if (p->qk && p->mode == 2)
      for (int64_t i = 0; i < nr * T; i++) keel_elem_store(p->qk->dtype, p->qk->data, qk_base + i, Sb[i]);

    /* softmax per row; a row with no finite score has no defined distribution (NaN, as the formula gives) */
    for (int64_t i = 0; i < nr; i++) AT_FN(softmax_row)(Sb + i * T, nc);
    if (p->qk && p->mode == 3)
      for (int64_t i = 0; i < nr * T; i++) keel_elem_store(p->qk->dtype, p->qk->data, qk_base + i, Sb[i]);

    /* Y = softmax(S) [past V; V] */
    if (ncp > 0)
      AT_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)Dv, (int)ncp, 1, Sb, (int)T, pv, (int)Dv, 0, yb,
              (int)ldy);
    if (ncn > 0)
      AT_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)Dv, (int)ncn, 1, Sb + P, (int)T, v, (int)ldv,
              ncp > 0 ? 1 : 0, yb, (int)ldy);
  }
}

#undef AT_FN
#undef AT_CAT
#undef AT_CAT2
