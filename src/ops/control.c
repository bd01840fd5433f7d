/* Operator family: control flow (If, Loop, Scan, SequenceMap) and the sequence/optional operators. Their
 * bodies are subgraphs or their values are not tensors, and their output shapes can depend on data, so they
 * never appear in a static plan: the interpreter (runtime/interp.c, runtime/interp_seq.c) runs them. These
 * definitions only let the engine resolve the nodes; `run == NULL` sends the graph to the interpreter. */
#include "ops/op.h"

static keel_status *control_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  (void)in, (void)n_in, (void)out, (void)n_out;
  keel_tls_needs_value = true;
  return keel_error(KEEL_UNSUPPORTED, "%s runs in the interpreter, not in a static plan", n->op_type);
}

#define INTERP_OP(name, since) {name, "", since, KEEL_MAX_OPSET, control_infer, NULL, NULL, -1}

const keel_op_def keel_ops_control[] = {
    INTERP_OP("If", 1),
    INTERP_OP("Loop", 1),
    INTERP_OP("Scan", 8), /* opset 8: batch axis 0 and sequence_lens; 9 on: scan axes */
    INTERP_OP("SequenceEmpty", 11),
    INTERP_OP("SequenceConstruct", 11),
    INTERP_OP("SequenceInsert", 11),
    INTERP_OP("SequenceAt", 11),
    INTERP_OP("SequenceErase", 11),
    INTERP_OP("SequenceLength", 11),
    INTERP_OP("ConcatFromSequence", 11),
    INTERP_OP("SplitToSequence", 11),
    INTERP_OP("SequenceMap", 17),
    INTERP_OP("Optional", 15),
    INTERP_OP("OptionalHasElement", 15),
    INTERP_OP("OptionalGetElement", 15),
};
const int keel_ops_control_count = sizeof keel_ops_control / sizeof keel_ops_control[0];
