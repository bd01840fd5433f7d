/* Gradient (ai.onnx.preview.training, opset 1) as a load-time graph rewrite. */
#ifndef KEEL_GRAPH_GRADIENT_H
#define KEEL_GRAPH_GRADIENT_H

#include <keel/status.h>

#include "graph/ir.h"

/* Replace every Gradient node of g (top level) by ordinary ONNX nodes computing the gradients of its `y`
 * with respect to its `xs` (reverse mode, the initial gradient of y being ones), ending in Identity nodes
 * that write the Gradient node's outputs. Run after import, before operators are resolved. An operator on
 * the path from an x to y that keel cannot differentiate is a KEEL_UNSUPPORTED error naming it. */
keel_status *keel_graph_expand_gradients(keel_graph *g);

#endif
