/* Operator family: control flow (If, Loop, Scan). Their bodies are subgraphs, and their output shapes can
 * depend on data, so they never appear in a static plan: the interpreter (runtime/interp.c) runs them.
 * These definitions only let the engine resolve the nodes. */
#include "ops/op.h"

static keel_status *control_infer(const keel_node *n, const keel_view *in, int n_in, keel_view *out, int n_out) {
  keel_tls_needs_value = true;
  return keel_error(KEEL_UNSUPPORTED, "%s runs in the interpreter, not in a static plan", n->op_type);
}

const keel_op_def keel_ops_control[] = {
    {"If", "", 1, KEEL_MAX_OPSET, control_infer, NULL, NULL, -1},
    {"Loop", "", 1, KEEL_MAX_OPSET, control_infer, NULL, NULL, -1},
    {"Scan", "", 9, KEEL_MAX_OPSET, control_infer, NULL, NULL, -1},
};
const int keel_ops_control_count = sizeof keel_ops_control / sizeof keel_ops_control[0];
