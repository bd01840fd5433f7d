/* String operators (StringNormalizer, StringConcat, StringSplit, RegexFullMatch) and the string variants of
 * generic ones (Equal), run by the interpreter only. See ops/string_ops.h for how string ownership works.
 *
 * Kernels here allocate their output elements' bytes (keel_string_assign): the documented exception to the
 * "kernels never allocate" rule, since a string's size is only known when it is computed. Outputs start with
 * every element empty, so a kernel failing half way leaves nothing the tensor's release cannot free. */
#define _GNU_SOURCE /* newlocale/towupper_l */
#include <locale.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "ops/broadcast.h"
#include "ops/op.h"
#include "ops/string_ops.h"

static keel_status *oom_str(void) { return keel_error(KEEL_OUT_OF_MEMORY, "out of memory building a string"); }

static keel_status *want_strings(const keel_view *v, int i) {
  if (v->dtype != KEEL_STRING)
    return keel_error(KEEL_INVALID_ARGUMENT, "input %d must be a string tensor, got %s", i, keel_dtype_name(v->dtype));
  return NULL;
}

static const keel_string *sv(const keel_view *v) { return (const keel_string *)v->data; }
static const char *s_bytes(const keel_string *s) { return s->data ? s->data : ""; }

/* ---- ownership helpers (string_ops.h) ---- */

keel_status *keel_strings_own_array(keel_string *e, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const char *src = e[i].data;
    size_t len = src ? e[i].len : 0;
    e[i].data = NULL; /* borrowed: drop the pointer, never free it */
    e[i].len = 0;
    if (keel_string_assign(&e[i], src, len)) {
      for (int64_t j = i + 1; j < n; j++) e[j].data = NULL, e[j].len = 0;
      return oom_str();
    }
  }
  return NULL;
}

keel_status *keel_strings_own(keel_tensor *t) {
  if (!t || keel_tensor_dtype(t) != KEEL_STRING) return NULL;
  return keel_strings_own_array(keel_tensor_data(t), keel_tensor_numel(t));
}

void keel_strings_forget(keel_tensor *t) {
  if (t && keel_tensor_dtype(t) == KEEL_STRING && keel_tensor_nbytes(t))
    memset(keel_tensor_data(t), 0, keel_tensor_nbytes(t));
}

/* ---- Constant holding strings (the importer keeps string constants as nodes, see onnx_import.c) ---- */

static keel_status *constant_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)in, (void)n_in;
  const keel_attr *a = keel_node_attr(n, "value");
  if (!a || a->type != KEEL_ATTR_TENSOR || !a->t || n_out != 1)
    return keel_error(KEEL_INVALID_MODEL, "a string Constant needs one 'value' tensor attribute and one output");
  keel_view_set_shape(&out[0], keel_tensor_dtype(a->t), keel_tensor_dims(a->t), keel_tensor_ndim(a->t));
  return NULL;
}

static keel_status *constant_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                 keel_exec *ex) {
  (void)in, (void)n_in, (void)n_out, (void)ex;
  const keel_tensor *t = keel_node_attr(n, "value")->t;
  if (keel_tensor_dtype(t) != KEEL_STRING) {
    if (keel_tensor_nbytes(t)) memcpy(out[0].data, keel_tensor_data_const(t), keel_tensor_nbytes(t));
    return NULL;
  }
  const keel_string *src = keel_tensor_data_const(t);
  keel_string *dst = out[0].data;
  for (int64_t i = 0, c = keel_tensor_numel(t); i < c; i++)
    if (keel_string_assign(&dst[i], src[i].data, src[i].data ? src[i].len : 0)) return oom_str();
  return NULL;
}

/* ---- StringNormalizer ---- */

typedef struct {
  const char *action; /* "LOWER", "UPPER", "NONE" */
  bool case_sensitive;
  char **stops;
  int n_stops;
} normalizer;

static keel_status *normalizer_get(const keel_node *n, normalizer *z) {
  z->action = keel_attr_string(n, "case_change_action", "NONE");
  if (strcmp(z->action, "LOWER") && strcmp(z->action, "UPPER") && strcmp(z->action, "NONE"))
    return keel_error(KEEL_INVALID_MODEL, "case_change_action must be LOWER, UPPER or NONE, got '%s'", z->action);
  z->case_sensitive = keel_attr_int(n, "is_case_sensitive", 0) != 0;
  const keel_attr *a = keel_node_attr(n, "stopwords");
  z->stops = a && a->type == KEEL_ATTR_STRINGS ? a->strings : NULL;
  z->n_stops = a && a->type == KEEL_ATTR_STRINGS ? a->n : 0;
  return NULL;
}

/* A UTF-8 aware case change: ASCII directly, other code points through the C.UTF-8 locale's tables (when
 * that locale exists; otherwise they are left unchanged). Invalid UTF-8 bytes are copied as they are.
 * Writes into dst (room for 4 bytes per input byte) and returns the length. */
static size_t change_case(const char *s, size_t len, int upper, locale_t loc, char *dst) {
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      dst[o++] = (char)(upper ? (c >= 'a' && c <= 'z' ? c - 32 : c) : (c >= 'A' && c <= 'Z' ? c + 32 : c));
      i++;
      continue;
    }
    int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
    uint32_t cp = extra == 3 ? c & 7u : extra == 2 ? c & 15u : c & 31u;
    bool ok = extra > 0;
    for (int k = 1; ok && k <= extra; k++) {
      if (i + (size_t)k >= len || ((unsigned char)s[i + k] & 0xc0) != 0x80) ok = false;
      else cp = cp << 6 | ((unsigned char)s[i + k] & 0x3fu);
    }
    if (!ok) {
      dst[o++] = (char)c;
      i++;
      continue;
    }
    uint32_t m = cp;
    if (loc) m = (uint32_t)(upper ? towupper_l((wint_t)cp, loc) : towlower_l((wint_t)cp, loc));
    if (m < 0x80) dst[o++] = (char)m;
    else if (m < 0x800) dst[o++] = (char)(0xc0 | m >> 6), dst[o++] = (char)(0x80 | (m & 0x3f));
    else if (m < 0x10000)
      dst[o++] = (char)(0xe0 | m >> 12), dst[o++] = (char)(0x80 | (m >> 6 & 0x3f)), dst[o++] = (char)(0x80 | (m & 0x3f));
    else
      dst[o++] = (char)(0xf0 | m >> 18), dst[o++] = (char)(0x80 | (m >> 12 & 0x3f)),
      dst[o++] = (char)(0x80 | (m >> 6 & 0x3f)), dst[o++] = (char)(0x80 | (m & 0x3f));
    i += (size_t)extra + 1;
  }
  return o;
}

static bool ascii_ieq(const char *a, size_t la, const char *b) {
  size_t lb = strlen(b);
  if (la != lb) return false;
  for (size_t i = 0; i < la; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
    if (x != y) return false;
  }
  return true;
}

static bool is_stopword(const normalizer *z, const keel_string *s) {
  const char *b = s_bytes(s);
  size_t l = s->data ? s->len : 0;
  for (int k = 0; k < z->n_stops; k++) {
    if (z->case_sensitive ? (strlen(z->stops[k]) == l && !memcmp(z->stops[k], b, l)) : ascii_ieq(b, l, z->stops[k]))
      return true;
  }
  return false;
}

static keel_status *strnorm_shape(const keel_node *n, const keel_view *x, int64_t *kept) {
  if (x->ndim != 1 && !(x->ndim == 2 && x->dims[0] == 1))
    return keel_error(KEEL_INVALID_ARGUMENT, "input must have shape [C] or [1,C], got rank %d", x->ndim);
  normalizer z;
  KEEL_TRY(normalizer_get(n, &z));
  int64_t c = x->dims[x->ndim - 1];
  if (!x->data) return keel_need_value(n, 0); /* the count depends on which elements are stopwords */
  *kept = 0;
  for (int64_t i = 0; i < c; i++) *kept += !is_stopword(&z, &sv(x)[i]);
  return NULL;
}

static keel_status *strnorm_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n_in, (void)n_out;
  KEEL_TRY(want_strings(&in[0], 0));
  int64_t kept = 0;
  KEEL_TRY(strnorm_shape(n, &in[0], &kept));
  int64_t dims[2] = {1, kept ? kept : 1}; /* all removed: one empty string */
  if (in[0].ndim == 1) keel_view_set_shape(&out[0], KEEL_STRING, &dims[1], 1);
  else keel_view_set_shape(&out[0], KEEL_STRING, dims, 2);
  return NULL;
}

static keel_status *strnorm_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                                keel_exec *ex) {
  (void)n_in, (void)n_out, (void)ex;
  normalizer z;
  KEEL_TRY(normalizer_get(n, &z));
  int upper = !strcmp(z.action, "UPPER") ? 1 : !strcmp(z.action, "LOWER") ? 0 : -1;
  locale_t loc = upper >= 0 ? newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0) : (locale_t)0;
  keel_string *dst = out[0].data;
  int64_t c = in[0].dims[in[0].ndim - 1], o = 0;
  keel_status *s = NULL;
  for (int64_t i = 0; i < c && !s; i++) {
    const keel_string *e = &sv(&in[0])[i];
    if (is_stopword(&z, e)) continue;
    size_t l = e->data ? e->len : 0;
    if (upper < 0) {
      if (keel_string_assign(&dst[o], e->data, l)) s = oom_str();
    } else {
      char *tmp = l < SIZE_MAX / 4 ? malloc(4 * l + 1) : NULL;
      if (!tmp) s = oom_str();
      else {
        size_t m = change_case(s_bytes(e), l, upper, loc, tmp);
        if (keel_string_assign(&dst[o], tmp, m)) s = oom_str();
        free(tmp);
      }
    }
    o++;
  }
  if (loc) freelocale(loc);
  return s; /* when everything was a stopword, the single output element stays empty */
}

/* ---- StringConcat ---- */

/* Two string inputs broadcast against each other (StringConcat, Equal): the output's shape, of dtype dt. */
static keel_status *string_pair_infer(const char *op, const keel_view *in, int n_in, keel_view *out, keel_dtype dt) {
  if (n_in != 2) return keel_error(KEEL_INVALID_MODEL, "%s takes 2 inputs, got %d", op, n_in);
  KEEL_TRY(want_strings(&in[0], 0));
  KEEL_TRY(want_strings(&in[1], 1));
  const int64_t *d[2] = {in[0].dims, in[1].dims};
  int nd[2] = {in[0].ndim, in[1].ndim};
  out[0].dtype = dt;
  return keel_broadcast_shapes(op, 2, d, nd, out[0].dims, &out[0].ndim);
}

static keel_status *concat_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n, (void)n_out;
  return string_pair_infer("StringConcat", in, n_in, out, KEEL_STRING);
}

/* Visits every output element of a two-string-input broadcast (StringConcat, Equal): pair(ctx, x, y, out index). */
typedef keel_status *(*string_pair_fn)(void *ctx, const keel_string *x, const keel_string *y, int64_t o);

static keel_status *string_pair_each(const keel_view *in, const keel_view *out, string_pair_fn pair, void *ctx) {
  keel_bcast b;
  const int64_t *d[2] = {in[0].dims, in[1].dims};
  int nd[2] = {in[0].ndim, in[1].ndim};
  KEEL_TRY(keel_bcast_init(&b, out->dims, out->ndim, d, nd, 2));
  keel_bcast_iter it;
  if (keel_bcast_begin(&b, &it)) do {
      for (int64_t j = 0; j < b.inner; j++)
        KEEL_TRY(pair(ctx, &sv(&in[0])[it.off[0] + j * b.inner_step[0]], &sv(&in[1])[it.off[1] + j * b.inner_step[1]],
                      it.out + j));
    } while (keel_bcast_next(&b, &it));
  return NULL;
}

static keel_status *concat_pair(void *ctx, const keel_string *x, const keel_string *y, int64_t oi) {
  keel_string *o = (keel_string *)ctx + oi;
  size_t lx = x->data ? x->len : 0, ly = y->data ? y->len : 0;
  if (lx > SIZE_MAX / 2 || ly > SIZE_MAX / 2) return oom_str();
  keel_string_clear(o);
  if (lx + ly == 0) return NULL;
  char *buf = malloc(lx + ly + 1);
  if (!buf) return oom_str();
  memcpy(buf, s_bytes(x), lx);
  memcpy(buf + lx, s_bytes(y), ly);
  buf[lx + ly] = 0;
  o->data = buf;
  o->len = lx + ly;
  return NULL;
}

static keel_status *concat_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                               keel_exec *ex) {
  (void)n, (void)n_in, (void)n_out, (void)ex;
  return string_pair_each(in, &out[0], concat_pair, out[0].data);
}

/* ---- StringSplit ---- */

/* Calls fn for each piece of s (at most maxsplit splits when maxsplit >= 0): with a delimiter, every
 * occurrence splits (empty pieces kept); without one, runs of whitespace split and leading/trailing
 * whitespace is dropped (Python's str.split()). Returns the number of pieces. */
typedef bool (*piece_fn)(void *user, int64_t k, const char *p, size_t len);

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int64_t split_one(const char *s, size_t len, const char *delim, int64_t maxsplit, piece_fn fn, void *user,
                         bool *ok) {
  int64_t k = 0;
  size_t dl = delim ? strlen(delim) : 0;
  *ok = true;
  if (dl) {
    size_t start = 0;
    for (size_t i = 0; i + dl <= len;) {
      if ((maxsplit < 0 || k < maxsplit) && !memcmp(s + i, delim, dl)) {
        if (fn && !fn(user, k, s + start, i - start)) *ok = false;
        k++;
        i += dl;
        start = i;
      } else {
        i++;
      }
    }
    if (fn && !fn(user, k, s + start, len - start)) *ok = false;
    return k + 1;
  }
  size_t i = 0;
  while (i < len && is_ws(s[i])) i++;
  while (i < len) {
    size_t j = i;
    if (maxsplit >= 0 && k == maxsplit) { /* the rest, trailing whitespace dropped */
      j = len;
      while (j > i && is_ws(s[j - 1])) j--;
    } else {
      while (j < len && !is_ws(s[j])) j++;
    }
    if (fn && !fn(user, k, s + i, j - i)) *ok = false;
    k++;
    i = j;
    while (i < len && is_ws(s[i])) i++;
  }
  return k;
}

static keel_status *split_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n_in;
  KEEL_TRY(want_strings(&in[0], 0));
  if (in[0].ndim + 1 > KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "input rank %d is too high", in[0].ndim);
  if (!in[0].data) return keel_need_value(n, 0);
  const char *delim = keel_attr_string(n, "delimiter", "");
  int64_t maxsplit = keel_attr_int(n, "maxsplit", -1);
  if (maxsplit < 0) maxsplit = -1;
  int64_t most = 0, c = keel_view_numel(&in[0]);
  for (int64_t i = 0; i < c; i++) {
    bool ok;
    const keel_string *e = &sv(&in[0])[i];
    int64_t k = split_one(s_bytes(e), e->data ? e->len : 0, delim, maxsplit, NULL, NULL, &ok);
    if (k > most) most = k;
  }
  int64_t dims[KEEL_MAX_DIMS];
  memcpy(dims, in[0].dims, sizeof(int64_t) * (size_t)in[0].ndim);
  dims[in[0].ndim] = most;
  keel_view_set_shape(&out[0], KEEL_STRING, dims, in[0].ndim + 1);
  if (n_out > 1) keel_view_set_shape(&out[1], KEEL_INT64, in[0].dims, in[0].ndim);
  return NULL;
}

static bool put_piece(void *user, int64_t k, const char *p, size_t len) {
  return keel_string_assign(&((keel_string *)user)[k], p, len) == 0;
}

static keel_status *split_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  (void)n_in, (void)ex;
  const char *delim = keel_attr_string(n, "delimiter", "");
  int64_t maxsplit = keel_attr_int(n, "maxsplit", -1);
  if (maxsplit < 0) maxsplit = -1;
  int64_t c = keel_view_numel(&in[0]), width = out[0].dims[out[0].ndim - 1];
  keel_string *dst = out[0].data;
  for (int64_t i = 0; i < c; i++) {
    bool ok;
    const keel_string *e = &sv(&in[0])[i];
    int64_t k = split_one(s_bytes(e), e->data ? e->len : 0, delim, maxsplit, put_piece, dst + i * width, &ok);
    if (!ok) return oom_str();
    if (n_out > 1 && out[1].data) ((int64_t *)out[1].data)[i] = k;
  }
  return NULL;
}

/* ---- RegexFullMatch ---- */

/* RE2 syntax -> POSIX extended (glibc). Supported: literals, . [] classes, | () groups, (?:...), * + ? {m,n},
 * ^ $, the escapes \d \D \w \W \s \S (also inside brackets) and \b \B, escaped punctuation. Anything else
 * (lazy quantifiers, lookaround, named groups, flags, \p{...}, backreferences) is refused with a message. */
static keel_status *re2_to_posix(const char *p, char *o, size_t cap) {
  size_t w = 0;
#define PUT(str)                                                                                             \
  do {                                                                                                       \
    size_t l_ = strlen(str);                                                                                 \
    if (w + l_ + 1 > cap) return keel_error(KEEL_UNSUPPORTED, "regular expression is too long");             \
    memcpy(o + w, str, l_);                                                                                  \
    w += l_;                                                                                                 \
  } while (0)
  PUT("^(");
  bool in_br = false, dash = false;
  char one[3] = {0};
  for (size_t i = 0; p[i]; i++) {
    char c = p[i];
    if (c == '\\') {
      char e = p[++i];
      if (!e) return keel_error(KEEL_INVALID_MODEL, "regular expression ends with a backslash");
      const char *cls = e == 'd' ? "0-9" : e == 'w' ? "[:alnum:]_" : e == 's' ? "[:space:]" : NULL;
      const char *ncls = e == 'D' ? "^0-9" : e == 'W' ? "^[:alnum:]_" : e == 'S' ? "^[:space:]" : NULL;
      if (in_br) {
        if (cls) PUT(cls);
        else if (ncls) return keel_error(KEEL_UNSUPPORTED, "regular expression: \\%c inside [...] is not supported", e);
        else if (e == '-')
          dash = true; /* POSIX has no escapes in brackets: a literal dash goes last, before the ']' */
        else if (e == ']' || e == '^' || e == '\\' || e == '[')
          return keel_error(KEEL_UNSUPPORTED, "regular expression: escaped '%c' inside [...] is not supported", e);
        else if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
          return keel_error(KEEL_UNSUPPORTED, "regular expression: escape \\%c is not supported", e);
        else {
          one[0] = e, one[1] = 0;
          PUT(one);
        }
      } else if (cls || ncls) {
        PUT("[");
        PUT(cls ? cls : ncls);
        PUT("]");
      } else if (e == 'b' || e == 'B') {
        one[0] = '\\', one[1] = e;
        PUT(one);
      } else if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
        return keel_error(KEEL_UNSUPPORTED, "regular expression: escape \\%c is not supported", e);
      } else {
        one[0] = '\\', one[1] = e;
        PUT(one);
      }
      continue;
    }
    if (in_br) {
      if (c == ']' && !(i > 0 && (p[i - 1] == '[' || (p[i - 1] == '^' && i > 1 && p[i - 2] == '[')))) {
        in_br = false;
        if (dash) PUT("-");
        dash = false;
      }
      if (c == '[' && p[i + 1] == ':') return keel_error(KEEL_UNSUPPORTED, "regular expression: [:class:] is not supported");
      one[0] = c, one[1] = 0;
      PUT(one);
      continue;
    }
    if (c == '[') in_br = true;
    if (c == '(' && p[i + 1] == '?') {
      if (p[i + 2] != ':')
        return keel_error(KEEL_UNSUPPORTED, "regular expression: group syntax (?%c is not supported", p[i + 2]);
      i += 2;
      PUT("(");
      continue;
    }
    if ((c == '*' || c == '+' || c == '?' || c == '}') && (p[i + 1] == '?' || p[i + 1] == '+'))
      return keel_error(KEEL_UNSUPPORTED, "regular expression: lazy or possessive quantifiers are not supported");
    one[0] = c, one[1] = 0;
    PUT(one);
  }
  if (in_br) return keel_error(KEEL_INVALID_MODEL, "regular expression has an unclosed [");
  PUT(")$");
  o[w] = 0;
  return NULL;
#undef PUT
}

static keel_status *regex_compile(const keel_node *n, regex_t *re) {
  const char *pat = keel_attr_string(n, "pattern", NULL);
  if (!pat) return keel_error(KEEL_INVALID_MODEL, "RegexFullMatch needs a 'pattern' attribute");
  size_t cap = strlen(pat) * 16 + 16;
  char *posix = malloc(cap);
  if (!posix) return oom_str();
  keel_status *s = re2_to_posix(pat, posix, cap);
  if (!s) {
    int rc = regcomp(re, posix, REG_EXTENDED | REG_NOSUB);
    if (rc) {
      char msg[128];
      regerror(rc, re, msg, sizeof msg);
      s = keel_error(KEEL_INVALID_MODEL, "regular expression '%s' does not compile: %s", pat, msg);
    }
  }
  free(posix);
  return s;
}

static keel_status *regex_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n_in, (void)n_out;
  KEEL_TRY(want_strings(&in[0], 0));
  regex_t re; /* compile once here so a bad pattern is a load-time error */
  KEEL_TRY(regex_compile(n, &re));
  regfree(&re);
  keel_view_set_shape(&out[0], KEEL_BOOL, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *regex_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  (void)n_in, (void)n_out, (void)ex;
  regex_t re; /* regcomp allocates: compiled per call, like the string outputs above */
  KEEL_TRY(regex_compile(n, &re));
  uint8_t *dst = out[0].data;
  for (int64_t i = 0, c = keel_view_numel(&in[0]); i < c; i++) {
    const keel_string *e = &sv(&in[0])[i];
    regmatch_t m = {0, (regoff_t)(e->data ? e->len : 0)}; /* REG_STARTEND: embedded NULs are matched too */
    dst[i] = regexec(&re, s_bytes(e), 1, &m, REG_STARTEND) == 0;
  }
  regfree(&re);
  return NULL;
}

/* ---- Equal on strings ---- */

static keel_status *equal_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n, (void)n_out;
  return string_pair_infer("Equal", in, n_in, out, KEEL_BOOL);
}

static keel_status *equal_pair(void *ctx, const keel_string *x, const keel_string *y, int64_t o) {
  size_t lx = x->data ? x->len : 0, ly = y->data ? y->len : 0;
  ((uint8_t *)ctx)[o] = lx == ly && !memcmp(s_bytes(x), s_bytes(y), lx);
  return NULL;
}

static keel_status *equal_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                              keel_exec *ex) {
  (void)n, (void)n_in, (void)n_out, (void)ex;
  return string_pair_each(in, &out[0], equal_pair, out[0].data);
}

/* ---- Cast / CastLike to and from strings ---- */

static keel_dtype cast_target(const keel_node *n, const keel_view *in, int n_in) {
  if (!strcmp(n->op_type, "CastLike")) return n_in > 1 ? in[1].dtype : KEEL_DTYPE_UNDEFINED;
  return (keel_dtype)keel_attr_int(n, "to", 0);
}

static bool cast_numeric(keel_dtype t) {
  switch (t) {
    case KEEL_FLOAT32: case KEEL_FLOAT64: case KEEL_FLOAT16: case KEEL_BFLOAT16: case KEEL_INT8: case KEEL_INT16:
    case KEEL_INT32: case KEEL_INT64: case KEEL_UINT8: case KEEL_UINT16: case KEEL_UINT32: case KEEL_UINT64:
    case KEEL_BOOL:
      return true;
    default:
      return false;
  }
}

static keel_status *cast_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)n_out;
  keel_dtype from = in[0].dtype, to = cast_target(n, in, n_in);
  if (!(from == KEEL_STRING && (to == KEEL_STRING || cast_numeric(to))) && !(to == KEEL_STRING && cast_numeric(from)))
    return keel_error(KEEL_UNSUPPORTED, "cast from %s to %s is not supported", keel_dtype_name(from), keel_dtype_name(to));
  keel_view_set_shape(&out[0], to, in[0].dims, in[0].ndim);
  return NULL;
}

/* The shortest decimal form that reads back to the same value (as numpy prints float32/float64). */
static int format_real(char *buf, size_t n, double x, bool single) {
  if (x != x) return snprintf(buf, n, "NaN");
  if (x == 1.0 / 0.0) return snprintf(buf, n, "INF");
  if (x == -1.0 / 0.0) return snprintf(buf, n, "-INF");
  int len = 0;
  for (int p = 1; p <= (single ? 9 : 17); p++) {
    len = snprintf(buf, n, "%.*g", p, x);
    if (single ? strtof(buf, NULL) == (float)x : strtod(buf, NULL) == x) break;
  }
  return len;
}

static keel_status *cast_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                             keel_exec *ex) {
  (void)n_out, (void)ex;
  keel_dtype from = in[0].dtype, to = out[0].dtype;
  int64_t c = keel_view_numel(&in[0]);
  (void)n, (void)n_in;
  if (from == KEEL_STRING && to == KEEL_STRING) {
    for (int64_t i = 0; i < c; i++) {
      const keel_string *e = &sv(&in[0])[i];
      if (keel_string_assign(&((keel_string *)out[0].data)[i], e->data, e->data ? e->len : 0)) return oom_str();
    }
    return NULL;
  }
  if (to == KEEL_STRING) {
    char buf[64];
    for (int64_t i = 0; i < c; i++) {
      int len;
      switch (from) {
        case KEEL_FLOAT32: case KEEL_FLOAT16: case KEEL_BFLOAT16:
          len = format_real(buf, sizeof buf, keel_view_get_f64(&in[0], i), true); break;
        case KEEL_FLOAT64: len = format_real(buf, sizeof buf, keel_view_get_f64(&in[0], i), false); break;
        case KEEL_UINT64: len = snprintf(buf, sizeof buf, "%llu", (unsigned long long)((const uint64_t *)in[0].data)[i]); break;
        default: len = snprintf(buf, sizeof buf, "%lld", (long long)keel_view_get_i64(&in[0], i)); break;
      }
      if (keel_string_assign(&((keel_string *)out[0].data)[i], buf, (size_t)len)) return oom_str();
    }
    return NULL;
  }
  for (int64_t i = 0; i < c; i++) { /* string -> number, as strtod/strtoll read it ("NaN", "INF", "+INF" too) */
    const char *txt = s_bytes(&sv(&in[0])[i]);
    char *end;
    bool real = to == KEEL_FLOAT32 || to == KEEL_FLOAT64 || to == KEEL_FLOAT16 || to == KEEL_BFLOAT16;
    double d = 0;
    long long ll = 0;
    unsigned long long ull = 0;
    if (real || to == KEEL_BOOL) d = strtod(txt, &end);
    else if (to == KEEL_UINT64) ull = strtoull(txt, &end, 10);
    else ll = strtoll(txt, &end, 10);
    while (*end == ' ' || *end == '\t') end++;
    if (end == txt || *end)
      return keel_error(KEEL_INVALID_ARGUMENT, "element %lld (\"%.40s\") does not parse as %s", (long long)i, txt,
                        keel_dtype_name(to));
    void *o = out[0].data;
    switch (to) {
      case KEEL_FLOAT32: ((float *)o)[i] = (float)d; break;
      case KEEL_FLOAT64: ((double *)o)[i] = d; break;
      case KEEL_FLOAT16: ((uint16_t *)o)[i] = keel_float_to_half((float)d); break;
      case KEEL_BFLOAT16: ((uint16_t *)o)[i] = keel_float_to_bfloat16((float)d); break;
      case KEEL_BOOL: ((uint8_t *)o)[i] = d != 0; break;
      case KEEL_INT8: ((int8_t *)o)[i] = (int8_t)ll; break;
      case KEEL_INT16: ((int16_t *)o)[i] = (int16_t)ll; break;
      case KEEL_INT32: ((int32_t *)o)[i] = (int32_t)ll; break;
      case KEEL_INT64: ((int64_t *)o)[i] = (int64_t)ll; break;
      case KEEL_UINT8: ((uint8_t *)o)[i] = (uint8_t)ll; break;
      case KEEL_UINT16: ((uint16_t *)o)[i] = (uint16_t)ll; break;
      case KEEL_UINT32: ((uint32_t *)o)[i] = (uint32_t)ll; break;
      default: ((uint64_t *)o)[i] = (uint64_t)ull; break;
    }
  }
  return NULL;
}

bool keel_strings_involved(const keel_node *n, const keel_view *in, int n_in) {
  for (int k = 0; k < n_in; k++)
    if (in[k].dtype == KEEL_STRING) return true;
  if (n->domain[0] == 0 && (!strcmp(n->op_type, "Cast") || !strcmp(n->op_type, "CastLike")))
    return cast_target(n, in, n_in) == KEEL_STRING;
  return false;
}

const keel_op_def keel_ops_string[] = {
    {"StringNormalizer", "", 10, KEEL_MAX_OPSET, strnorm_infer, strnorm_run, NULL, -1},
    {"StringConcat", "", 20, KEEL_MAX_OPSET, concat_infer, concat_run, NULL, -1},
    {"StringSplit", "", 20, KEEL_MAX_OPSET, split_infer, split_run, NULL, -1},
    {"RegexFullMatch", "", 20, KEEL_MAX_OPSET, regex_infer, regex_run, NULL, -1},
    /* string constants: the importer keeps them as nodes of this internal op (never folded into a value) */
    {"StringConstant", "keel", 1, 1, constant_infer, constant_run, NULL, -1},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, -1},
};
const int keel_ops_string_count = 5;

/* String variants of generic operators, used instead of the node's own definition on string inputs. */
static const keel_op_def string_variants[] = {
    {"Equal", "", 1, KEEL_MAX_OPSET, equal_infer, equal_run, NULL, -1},
    {"Cast", "", 1, KEEL_MAX_OPSET, cast_infer, cast_run, NULL, -1},
    {"CastLike", "", 15, KEEL_MAX_OPSET, cast_infer, cast_run, NULL, -1},
};

/* Operators that only move whole elements (their kernels copy element records byte for byte). */
static const char *const movers[] = { /* each checked on strings against the ONNX reference (ASan) */
    "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Gather",
    "GatherElements", "GatherND", "Expand", "Tile", "Compress", "Shape", "Size",
};

const keel_op_def *keel_string_def_for(const keel_node *n, keel_strings_mode *mode) {
  *mode = KEEL_STRINGS_REFUSED;
  for (int i = 0; i < keel_ops_string_count; i++)
    if (n->op == &keel_ops_string[i]) {
      *mode = KEEL_STRINGS_OWNED;
      return n->op;
    }
  if (n->domain[0]) return NULL;
  for (size_t i = 0; i < sizeof string_variants / sizeof *string_variants; i++)
    if (!strcmp(n->op_type, string_variants[i].op_type)) {
      *mode = KEEL_STRINGS_OWNED;
      return &string_variants[i];
    }
  for (size_t i = 0; i < sizeof movers / sizeof *movers; i++)
    if (!strcmp(n->op_type, movers[i])) {
      *mode = KEEL_STRINGS_BORROWED;
      return n->op;
    }
  return NULL;
}
