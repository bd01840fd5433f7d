/* The interpreter: runs a graph node by node, inferring each node's shapes from the actual input values and
 * allocating its outputs as it goes. It is the fallback for what a static plan cannot express: control flow
 * (If, Loop, Scan with subgraphs) and outputs whose shapes depend on data (NonZero, Compress, Unique...).
 * It allocates per call; models that fit a static plan never come here. */
#ifndef KEEL_RUNTIME_INTERP_H
#define KEEL_RUNTIME_INTERP_H

#include <keel/allocator.h>
#include <keel/status.h>
#include <keel/tensor.h>

#include "graph/ir.h"

/* inputs: n_in tensors for g->inputs; outputs: g->n_outputs new tensors (caller releases). */
keel_status *keel_interp_run(const keel_graph *g, keel_tensor *const *inputs, int n_in, keel_tensor **outputs,
                             keel_allocator *alloc);

/* The same over interpreter values (tensors, sequences, optionals: runtime/interp_seq.h), for keel-internal
 * callers that feed or read sequences (`keel test`); the public API stays tensor-only. Inputs are borrowed;
 * outputs receive new references (caller releases with keel_iv_release). */
struct keel_ivalue;
keel_status *keel_interp_run_values(const keel_graph *g, struct keel_ivalue *const *inputs, int n_in,
                                    struct keel_ivalue **outputs, keel_allocator *alloc);

#endif
