/* Shared declarations of the misc family (misc.c holds the table; misc_nn.c the transformer blocks). */
#ifndef KEEL_OPS_MISC_INTERNAL_H
#define KEEL_OPS_MISC_INTERNAL_H

#include "ops/op.h"

#define KEEL_MISC_FNS(NAME)                                                                                \
  keel_status *keel_misc_##NAME##_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, \
                                        int n_out);                                                        \
  keel_status *keel_misc_##NAME##_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out,   \
                                      int n_out, keel_exec *ex);

KEEL_MISC_FNS(swish)
KEEL_MISC_FNS(rmsnorm)
KEEL_MISC_FNS(rope)
KEEL_MISC_FNS(attention)
size_t keel_misc_attention_ws(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);

#endif
