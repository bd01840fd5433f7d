/* Graph passes run once at engine build: constant folding, fusions, dead-node removal. */
#ifndef KEEL_GRAPH_PASSES_H
#define KEEL_GRAPH_PASSES_H

#include <keel/status.h>

#include "graph/ir.h"

/* Resolve every node's operator definition; an unsupported operator is an error naming it, its opset and
 * the node. */
keel_status *keel_pass_resolve_ops(keel_graph *g);
/* Resolve and sort subgraphs, and add the values they read from enclosing graphs as implicit inputs of
 * their nodes (graph/subgraphs.c). */
keel_status *keel_pass_prepare_subgraphs(keel_graph *g);
/* Run nodes whose inputs are all constants and replace their outputs by constants. */
keel_status *keel_pass_fold_constants(keel_graph *g);
/* Conv+BatchNormalization into Conv; Conv/Gemm/MatMul + activation; MatMul + bias Add; Add + Relu/Clip;
 * and first the patterns of keel_pass_fuse_patterns. */
keel_status *keel_pass_fuse(keel_graph *g);

/* How many of each pattern keel_pass_fuse_patterns replaced. */
typedef struct keel_fuse_counts {
  int layernorm, gelu, softmax, attention, skip_layernorm;
} keel_fuse_counts;
/* Decomposed LayerNorm, erf-GELU and scale/mask/Softmax chains, and the multi-head attention core around
 * the latter (head Transposes, both MatMuls), and a residual Add ahead of a LayerNorm, into keel-domain operators (ops/fused.c, ops/fused_attn.c);
 * see graph/fuse_patterns.c for the exact patterns. counts may be NULL. */
keel_status *keel_pass_fuse_patterns(keel_graph *g, keel_fuse_counts *counts);
/* Drop nodes whose outputs nobody reads (graph outputs count as read). */
keel_status *keel_pass_remove_dead(keel_graph *g);
/* Number of node inputs reading value v, plus one if it is a graph output. */
int keel_graph_use_count(const keel_graph *g, int v);

#endif
