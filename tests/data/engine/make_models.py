#!/usr/bin/env python3
"""Generate the small ONNX models used by tests/unit/test_engine.c (committed; rerun to regenerate)."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)


def save(model, name):
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name))


def opset(v=17):
    return [helper.make_opsetid("", v)]


# Conv -> BatchNormalization -> Relu: fusion must give the same numbers as the unfused graph.
W = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
B = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
scale = numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "scale")
bias = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias")
mean = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "mean")
var = numpy_helper.from_array(rng.uniform(0.5, 2, 4).astype(np.float32), "var")
g = helper.make_graph(
    [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
     helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"], name="bn"),
     helper.make_node("Relu", ["bn"], ["y"], name="relu")],
    "conv_bn_relu",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
    [W, B, scale, bias, mean, var])
save(helper.make_model(g, opset_imports=opset()), "conv_bn_relu.onnx")

# A chain of elementwise ops: in-place reuse should keep the arena far below the sum of intermediates.
nodes, prev = [], "x"
for i, op in enumerate(["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Exp", "Sqrt", "Relu"]):
    out = "y" if i == 7 else f"t{i}"
    nodes.append(helper.make_node(op, [prev], [out], name=f"n{i}"))
    prev = out
g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 1024])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 1024])])
save(helper.make_model(g, opset_imports=opset()), "elementwise_chain.onnx")

# Shape -> Gather -> Unsqueeze -> Concat -> Reshape: the shape arithmetic folds while planning.
g = helper.make_graph(
    [helper.make_node("Shape", ["x"], ["s"]),
     helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
     helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
     helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
     helper.make_node("Reshape", ["x", "shape"], ["flat"]),
     helper.make_node("Relu", ["flat"], ["y"])],
    "flatten_by_shape",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C", "H"])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])],
    [numpy_helper.from_array(np.array(0, np.int64), "zero"),
     numpy_helper.from_array(np.array([0], np.int64), "axes"),
     numpy_helper.from_array(np.array([-1], np.int64), "minus1")])
save(helper.make_model(g, opset_imports=opset()), "flatten_by_shape.onnx")

# An input that feeds a shape: its values are part of the plan.
g = helper.make_graph(
    [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
    "reshape_by_input",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
     helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])])
save(helper.make_model(g, opset_imports=opset()), "reshape_by_input.onnx")

# MatMul + Add(bias) + Relu: fused into one MatMul with bias and activation.
Wm = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "Wm")
bm = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bm")
g = helper.make_graph(
    [helper.make_node("MatMul", ["x", "Wm"], ["m"]), helper.make_node("Add", ["m", "bm"], ["a"]),
     helper.make_node("Relu", ["a"], ["y"])],
    "matmul_bias_relu",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 16])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 8])], [Wm, bm])
save(helper.make_model(g, opset_imports=opset()), "matmul_bias_relu.onnx")
print("wrote engine test models to", HERE)

# Data-dependent output shape: NonZero of (x > 0), then a float op on it. Only the interpreter can run it.
g = helper.make_graph(
    [helper.make_node("Greater", ["x", "zero_f"], ["pos"]),
     helper.make_node("NonZero", ["pos"], ["idx"]),
     helper.make_node("Cast", ["idx"], ["idxf"], to=TensorProto.FLOAT),
     helper.make_node("Mul", ["idxf", "two"], ["y"])],
    "nonzero",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "K"])],
    [numpy_helper.from_array(np.array(0, np.float32), "zero_f"),
     numpy_helper.from_array(np.array(2, np.float32), "two")])
save(helper.make_model(g, opset_imports=opset()), "nonzero.onnx")

# Control flow: If on a data-dependent condition, each branch reading an outer-scope value.
then_g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [],
                           [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                           [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
g = helper.make_graph(
    [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
     helper.make_node("Greater", ["s", "zero_f"], ["c"]),
     helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
    "if_sign",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    [numpy_helper.from_array(np.array(0, np.float32), "zero_f")])
save(helper.make_model(g, opset_imports=opset()), "if_sign.onnx")
print("wrote interpreter test models")
