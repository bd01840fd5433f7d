/* Operator family: misc. ReverseSequence and the random generators (RandomUniform, RandomNormal, their
 * *Like forms, Bernoulli, Multinomial).
 *
 * Random operators: kernels are stateless, so a node with a `seed` attribute produces the same values on
 * every call (a splitmix64 stream seeded from the attribute's bits); without one, each call draws a fresh
 * seed from a process-wide counter mixed with the clock. The ONNX spec leaves the generator to the
 * implementation, so values never match another runtime's (or numpy's) draws; only shapes, dtypes and
 * distributions are comparable. Generators are never folded at load or plan time: they run every call.
 * (Recent-opset additions live in extra.c; transformer blocks in attention.c.) */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "ops/op.h"
#include "ops/elem.h"

#define M_IN const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out
#define M_RUN_ARGS const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out, keel_exec *ex

/* ---------------------------------------------------------------------------------------------------- */
/* ReverseSequence. */

static keel_status *revseq_axes(const keel_node *n, const keel_view *in, int n_in, int *ta, int *ba) {
  if (n_in != 2 || !keel_view_present(&in[0]) || !keel_view_present(&in[1]))
    return keel_error(KEEL_INVALID_MODEL, "ReverseSequence takes input and sequence_lens");
  if (in[0].ndim < 2)
    return keel_error(KEEL_INVALID_MODEL, "ReverseSequence: input must have rank >= 2, got %d", in[0].ndim);
  if (keel_dtype_size(in[0].dtype) == 0)
    return keel_error(KEEL_UNSUPPORTED, "ReverseSequence: input dtype %s is not supported",
                      keel_dtype_name(in[0].dtype));
  int64_t t = keel_attr_int(n, "time_axis", 0), b = keel_attr_int(n, "batch_axis", 1);
  if (!((t == 0 && b == 1) || (t == 1 && b == 0)))
    return keel_error(KEEL_INVALID_MODEL, "ReverseSequence: time_axis %lld and batch_axis %lld must be 0 and 1 "
                      "in some order", (long long)t, (long long)b);
  if (in[1].dtype != KEEL_INT64 && in[1].dtype != KEEL_INT32)
    return keel_error(KEEL_INVALID_MODEL, "ReverseSequence: sequence_lens must be int64, got %s",
                      keel_dtype_name(in[1].dtype));
  if (in[1].ndim != 1 || in[1].dims[0] != in[0].dims[b])
    return keel_error(KEEL_SHAPE_MISMATCH, "ReverseSequence: sequence_lens must be 1-D of the batch size %lld",
                      (long long)in[0].dims[b]);
  *ta = (int)t;
  *ba = (int)b;
  return NULL;
}

static keel_status *revseq_infer(M_IN) {
  int ta, ba;
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "ReverseSequence has 1 output, got %d", n_out);
  KEEL_TRY(revseq_axes(n, in, n_in, &ta, &ba));
  keel_view_set_shape(&out[0], in[0].dtype, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *revseq_run(M_RUN_ARGS) {
  int ta, ba;
  KEEL_TRY(revseq_axes(n, in, n_in, &ta, &ba));
  const keel_view *x = &in[0];
  int64_t T = x->dims[ta], B = x->dims[ba];
  size_t row = keel_dtype_size(x->dtype);
  for (int d = 2; d < x->ndim; d++) row *= (size_t)x->dims[d];
  /* Element (t, b) of the leading two dims starts at (t*st + b*sb) rows. */
  int64_t st = ta == 0 ? B : 1, sb = ba == 0 ? T : 1;
  const char *src = x->data;
  char *dst = out[0].data;
  for (int64_t b = 0; b < B; b++) {
    int64_t len = keel_view_get_i64(&in[1], b);
    if (len < 0 || len > T)
      return keel_error(KEEL_INVALID_ARGUMENT, "ReverseSequence: sequence_lens[%lld] = %lld is outside [0, %lld]",
                        (long long)b, (long long)len, (long long)T);
    for (int64_t t = 0; t < T; t++) {
      int64_t from = t < len ? len - 1 - t : t;
      memcpy(dst + (size_t)(t * st + b * sb) * row, src + (size_t)(from * st + b * sb) * row, row);
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Random numbers: splitmix64 (fast, passes BigCrush, trivially seeded). */

typedef struct mrng {
  uint64_t s;
} mrng;

static uint64_t mrng_next(mrng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static double mrng_uniform(mrng *r) { return (double)(mrng_next(r) >> 11) * 0x1p-53; }
/* Standard normal (Box-Muller; u1 in (0, 1] keeps the log finite). */
static double mrng_normal(mrng *r) {
  double u1 = 1.0 - mrng_uniform(r), u2 = mrng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

static _Atomic uint64_t mrng_counter;

static void mrng_init(const keel_node *n, mrng *r) {
  const keel_attr *a = keel_node_attr(n, "seed");
  if (a) {
    float f = keel_attr_float(n, "seed", 0.0f);
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    r->s = 0x5eed000000000000ull ^ bits;
  } else {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    r->s = atomic_fetch_add(&mrng_counter, 1) * 0xd1b54a32d192ed03ull ^ (uint64_t)ts.tv_nsec ^
           ((uint64_t)ts.tv_sec << 32);
  }
  mrng_next(r); /* decorrelate nearby seeds */
}

/* Output dtype from the `dtype` attribute (default `dflt`); must be a float type. */
static keel_status *rand_dtype(const keel_node *n, const char *what, keel_dtype dflt, keel_dtype *out) {
  int64_t d = keel_attr_int(n, "dtype", (int64_t)dflt);
  if (d < 0 || d > 16 || !keel_elem_is_float((keel_dtype)d))
    return keel_error(KEEL_INVALID_MODEL, "%s: dtype %lld is not float16, float, double or bfloat16", what,
                      (long long)d);
  *out = (keel_dtype)d;
  return NULL;
}

typedef enum { DIST_UNIFORM, DIST_NORMAL } dist;

static void rand_fill(const keel_node *n, dist k, keel_view *o) {
  mrng r;
  mrng_init(n, &r);
  int64_t cnt = keel_view_numel(o);
  if (k == DIST_UNIFORM) {
    double lo = keel_attr_float(n, "low", 0.0f), hi = keel_attr_float(n, "high", 1.0f);
    for (int64_t i = 0; i < cnt; i++) keel_elem_store(o->dtype, o->data, i, lo + (hi - lo) * mrng_uniform(&r));
  } else {
    double mean = keel_attr_float(n, "mean", 0.0f), sd = keel_attr_float(n, "scale", 1.0f);
    for (int64_t i = 0; i < cnt; i++) keel_elem_store(o->dtype, o->data, i, mean + sd * mrng_normal(&r));
  }
}

static keel_status *rand_infer(const keel_node *n, const char *what, int n_in, keel_view *out, int n_out) {
  if (n_in != 0) return keel_error(KEEL_INVALID_MODEL, "%s takes no inputs, got %d", what, n_in);
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "%s has 1 output, got %d", what, n_out);
  keel_dtype t = KEEL_FLOAT32;
  KEEL_TRY(rand_dtype(n, what, KEEL_FLOAT32, &t));
  const int64_t *shape = NULL;
  int r = keel_attr_ints(n, "shape", &shape);
  if (r < 0) return keel_error(KEEL_INVALID_MODEL, "%s needs a 'shape' attribute", what);
  if (r > KEEL_MAX_DIMS) return keel_error(KEEL_UNSUPPORTED, "%s: rank %d is above keel's maximum", what, r);
  for (int i = 0; i < r; i++)
    if (shape[i] < 0) return keel_error(KEEL_INVALID_MODEL, "%s: shape[%d] = %lld is negative", what, i,
                                        (long long)shape[i]);
  keel_view_set_shape(&out[0], t, shape, r);
  return NULL;
}

static keel_status *rand_like_infer(const keel_node *n, const char *what, const keel_view *in, int n_in,
                                    keel_view *out, int n_out) {
  if (n_in != 1 || !keel_view_present(&in[0])) return keel_error(KEEL_INVALID_MODEL, "%s takes 1 input", what);
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "%s has 1 output, got %d", what, n_out);
  keel_dtype t = KEEL_FLOAT32;
  if (!keel_node_attr(n, "dtype") && !keel_elem_is_float(in[0].dtype))
    return keel_error(KEEL_INVALID_MODEL, "%s: input dtype %s is not a float type and no 'dtype' is given", what,
                      keel_dtype_name(in[0].dtype));
  KEEL_TRY(rand_dtype(n, what, in[0].dtype, &t));
  keel_view_set_shape(&out[0], t, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *runi_infer(M_IN) { return rand_infer(n, "RandomUniform", n_in, out, n_out); }
static keel_status *rnorm_infer(M_IN) { return rand_infer(n, "RandomNormal", n_in, out, n_out); }
static keel_status *runi_like_infer(M_IN) { return rand_like_infer(n, "RandomUniformLike", in, n_in, out, n_out); }
static keel_status *rnorm_like_infer(M_IN) { return rand_like_infer(n, "RandomNormalLike", in, n_in, out, n_out); }

static keel_status *runi_run(M_RUN_ARGS) {
  rand_fill(n, DIST_UNIFORM, &out[0]);
  return NULL;
}
static keel_status *rnorm_run(M_RUN_ARGS) {
  rand_fill(n, DIST_NORMAL, &out[0]);
  return NULL;
}

/* Bernoulli: y = 1 with probability x. */
static keel_status *bern_infer(M_IN) {
  if (n_in != 1 || !keel_view_present(&in[0])) return keel_error(KEEL_INVALID_MODEL, "Bernoulli takes 1 input");
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "Bernoulli has 1 output, got %d", n_out);
  if (!keel_elem_is_float(in[0].dtype))
    return keel_error(KEEL_INVALID_MODEL, "Bernoulli: input dtype %s is not a float type",
                      keel_dtype_name(in[0].dtype));
  int64_t d = keel_attr_int(n, "dtype", in[0].dtype);
  if (d < 1 || d > 16 || d == KEEL_STRING || d == KEEL_COMPLEX64 || d == KEEL_COMPLEX128)
    return keel_error(KEEL_INVALID_MODEL, "Bernoulli: dtype %lld is not a numeric or bool type", (long long)d);
  keel_view_set_shape(&out[0], (keel_dtype)d, in[0].dims, in[0].ndim);
  return NULL;
}

static keel_status *bern_run(M_RUN_ARGS) {
  mrng r;
  mrng_init(n, &r);
  int64_t cnt = keel_view_numel(&in[0]);
  for (int64_t i = 0; i < cnt; i++) {
    double p = keel_elem_load(in[0].dtype, in[0].data, i);
    keel_elem_store(out[0].dtype, out[0].data, i, mrng_uniform(&r) < p ? 1.0 : 0.0);
  }
  return NULL;
}

/* Multinomial: input [batch, classes] of unnormalized log-probabilities; sample_size draws per row. */
static keel_status *multi_infer(M_IN) {
  if (n_in != 1 || !keel_view_present(&in[0])) return keel_error(KEEL_INVALID_MODEL, "Multinomial takes 1 input");
  if (n_out != 1) return keel_error(KEEL_INVALID_MODEL, "Multinomial has 1 output, got %d", n_out);
  if (!keel_elem_is_float(in[0].dtype))
    return keel_error(KEEL_INVALID_MODEL, "Multinomial: input dtype %s is not a float type",
                      keel_dtype_name(in[0].dtype));
  if (in[0].ndim != 2)
    return keel_error(KEEL_INVALID_MODEL, "Multinomial: input must be [batch_size, class_size], got rank %d",
                      in[0].ndim);
  int64_t d = keel_attr_int(n, "dtype", KEEL_INT32);
  if (d != KEEL_INT32 && d != KEEL_INT64)
    return keel_error(KEEL_INVALID_MODEL, "Multinomial: dtype %lld must be int32 or int64", (long long)d);
  int64_t ss = keel_attr_int(n, "sample_size", 1);
  if (ss < 0) return keel_error(KEEL_INVALID_MODEL, "Multinomial: sample_size %lld is negative", (long long)ss);
  int64_t dims[2] = {in[0].dims[0], ss};
  keel_view_set_shape(&out[0], (keel_dtype)d, dims, 2);
  return NULL;
}

static keel_status *multi_run(M_RUN_ARGS) {
  mrng r;
  mrng_init(n, &r);
  int64_t B = in[0].dims[0], C = in[0].dims[1], S = out[0].dims[1];
  if (C == 0 && S > 0) return keel_error(KEEL_INVALID_ARGUMENT, "Multinomial: no classes to draw from");
  for (int64_t b = 0; b < B; b++) {
    /* Draw u * total over exp(x - max) and walk the row: no workspace needed for the CDF. */
    double mx = -INFINITY, total = 0;
    for (int64_t c = 0; c < C; c++) {
      double v = keel_elem_load(in[0].dtype, in[0].data, b * C + c);
      mx = v > mx ? v : mx;
    }
    for (int64_t c = 0; c < C; c++) total += exp(keel_elem_load(in[0].dtype, in[0].data, b * C + c) - mx);
    for (int64_t s = 0; s < S; s++) {
      double u = mrng_uniform(&r) * total, acc = 0;
      int64_t pick = C - 1;
      for (int64_t c = 0; c < C; c++) {
        acc += exp(keel_elem_load(in[0].dtype, in[0].data, b * C + c) - mx);
        if (u < acc) {
          pick = c;
          break;
        }
      }
      keel_elem_store(out[0].dtype, out[0].data, b * S + s, (double)pick);
    }
  }
  return NULL;
}


/* Versions 1/7/15 -> 22 only added bfloat16; one entry spans them. */
const keel_op_def keel_ops_misc[] = {
    {"ReverseSequence", "", 10, KEEL_MAX_OPSET, revseq_infer, revseq_run, NULL, -1},
    {"RandomUniform", "", 1, KEEL_MAX_OPSET, runi_infer, runi_run, NULL, -1},
    {"RandomNormal", "", 1, KEEL_MAX_OPSET, rnorm_infer, rnorm_run, NULL, -1},
    {"RandomUniformLike", "", 1, KEEL_MAX_OPSET, runi_like_infer, runi_run, NULL, -1},
    {"RandomNormalLike", "", 1, KEEL_MAX_OPSET, rnorm_like_infer, rnorm_run, NULL, -1},
    {"Bernoulli", "", 15, KEEL_MAX_OPSET, bern_infer, bern_run, NULL, -1},
    {"Multinomial", "", 7, KEEL_MAX_OPSET, multi_infer, multi_run, NULL, -1},
};
const int keel_ops_misc_count = (int)(sizeof keel_ops_misc / sizeof keel_ops_misc[0]);
