/* keel.MultiHeadAttention (ops/fused_attn.c), listed in the fused operator table of ops/fused.c. */
#ifndef KEEL_OPS_FUSED_ATTN_H
#define KEEL_OPS_FUSED_ATTN_H

#include "ops/op.h"

keel_status *keel_mha_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out);
size_t keel_mha_workspace(const keel_node *n, const keel_view *in, int n_in, const keel_view *out, int n_out);
keel_status *keel_mha_run(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out,
                          keel_exec *ex);

#endif
