/* Shared pieces of the nn operator family (nn.c holds the table; nn_*.c the kernels). */
#ifndef KEEL_OPS_NN_INTERNAL_H
#define KEEL_OPS_NN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/op.h"

/* Spatial dims handled by conv and pool kernels. Fewer are padded to 3 with size-1 leading dims so one
 * loop nest serves 1-D, 2-D and 3-D. */
#define NN_MAX_SP 3

/* Sliding-window geometry over the spatial dims of an N,C,spatial... tensor. */
typedef struct nn_window {
  int nsp;                /* real spatial rank (1..3) */
  int64_t in[NN_MAX_SP];  /* input spatial size; -1 unknown (infer only) */
  int64_t out[NN_MAX_SP]; /* output spatial size; -1 unknown */
  int64_t k[NN_MAX_SP], s[NN_MAX_SP], d[NN_MAX_SP];
  int64_t pb[NN_MAX_SP], pe[NN_MAX_SP]; /* pads at the beginning / end */
} nn_window;

/* Read strides / dilations / pads / auto_pad (and ceil_mode when allow_ceil) of node n for input spatial
 * sizes in[0..nsp) and kernel k[0..nsp); fill w including the output sizes. Errors name the node. */
keel_status *nn_window_init(const keel_node *n, int nsp, const int64_t *in, const int64_t *k, bool allow_ceil,
                            nn_window *w);
/* Pad the window to NN_MAX_SP dims (leading size-1 dims) for the kernels. */
void nn_window_pad3(const nn_window *w, nn_window *o);

/* Optional input i present? */
static inline bool nn_has(const keel_view *in, int n_in, int i) {
  return i < n_in && in[i].dtype != KEEL_DTYPE_UNDEFINED;
}
/* Optional output i requested (infer: by the node; run: also has a buffer)? */
static inline bool nn_want(const keel_node *n, int n_out, int i) {
  return i < n_out && i < n->n_outputs && n->outputs[i] >= 0;
}
static inline bool nn_want_run(const keel_node *n, const keel_view *out, int n_out, int i) {
  return nn_want(n, n_out, i) && out[i].data != NULL;
}

/* Floor / ceil division for a possibly negative numerator and a positive divisor. */
static inline int64_t nn_floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
static inline int64_t nn_ceildiv(int64_t a, int64_t b) { return -nn_floordiv(-a, b); }

/* Require the input count and that input i exists. */
keel_status *nn_need_inputs(const keel_node *n, int n_in, int min_in, int max_in);
/* Element count of dims [from, to) of v (no overflow check: shapes were validated upstream). */
int64_t nn_prod(const int64_t *dims, int from, int to);
/* Check that the shape of a planned output has a valid byte size. */
keel_status *nn_check_numel(const keel_node *n, const int64_t *dims, int ndim, size_t elem);

/* ---- nn_conv.c ---- */
keel_status *nn_conv_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t nn_conv_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *nn_conv_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                         keel_exec *ex);
keel_status *nn_convt_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t nn_convt_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *nn_convt_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex);

keel_status *nn_convint_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_convint_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                            keel_exec *ex);
keel_status *nn_qconv_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_qconv_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex);

/* ---- nn_gemm.c ---- */
keel_status *nn_gemm_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
/* scratch for the float32 GEMM's panels of operands that are not pre-packed */
size_t nn_gemm_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
size_t nn_matmul_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *nn_gemm_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                         keel_exec *ex);
keel_status *nn_matmul_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_matmul_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                           keel_exec *ex);
keel_status *nn_qmm_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_qmm_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                        keel_exec *ex);
keel_status *nn_mmint_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_mmint_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex);

/* ---- nn_norm.c ---- */
keel_status *nn_bn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t nn_bn_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *nn_bn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                       keel_exec *ex);
keel_status *nn_ln_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t nn_ln_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *nn_ln_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                       keel_exec *ex);
keel_status *nn_in_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_in_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                       keel_exec *ex);
keel_status *nn_gn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_gn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                       keel_exec *ex);
keel_status *nn_lrn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_lrn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                        keel_exec *ex);
keel_status *nn_mvn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t nn_mvn_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *nn_mvn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                        keel_exec *ex);
keel_status *nn_lpn_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t nn_lpn_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *nn_lpn_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                        keel_exec *ex);

/* ---- nn_pool.c ---- */
keel_status *nn_pool_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_pool_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                         keel_exec *ex);
keel_status *nn_unpool_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_unpool_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                           keel_exec *ex);
keel_status *nn_gpool_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
keel_status *nn_gpool_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex);

#endif
