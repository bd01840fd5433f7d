#!/usr/bin/env python3
"""Generate resource-bomb models for tests/soak/bombs.c: models whose declared sizes, depths or counts are
far beyond what keel should ever allocate or recurse into. Each must end in a clear error, never a crash,
a hang or a giant allocation. Run from this folder: python3 make_bombs.py (writes bombs/*.onnx)."""
import os

import onnx
from onnx import TensorProto as T
from onnx import helper as h

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bombs")


def save(name, nodes, inputs, outputs, inits=(), opset=17):
    g = h.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], producer_name="keel-bombs")
    with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
        f.write(m.SerializeToString())


def i64(name, vals):
    return h.make_tensor(name, T.INT64, [len(vals)], vals)


def main():
    os.makedirs(OUT, exist_ok=True)
    x = h.make_tensor_value_info("x", T.FLOAT, [1])
    y = h.make_tensor_value_info("y", T.FLOAT, None)

    # An initializer declaring 10^12 elements with no data behind it.
    t = onnx.TensorProto(name="huge_init", data_type=T.FLOAT, dims=[1000000, 1000000])
    save("init_1e12", [h.make_node("Add", ["x", "huge_init"], ["y"])], [x], [y], [t])

    # A graph input declaring 10^12 elements: loads (shapes are the caller's), must refuse such inputs.
    save("input_1e12", [h.make_node("Relu", ["big"], ["y"])],
         [h.make_tensor_value_info("big", T.FLOAT, [1000000, 1000000])], [y])

    # Intermediates of 10^12 elements computed from constants: plan must refuse, not allocate 4 TB.
    save("constantofshape_1e12",
         [h.make_node("ConstantOfShape", ["shp"], ["c"]), h.make_node("Add", ["c", "x"], ["y"])], [x], [y],
         [i64("shp", [1000000, 1000000])])
    save("expand_1e12",
         [h.make_node("Expand", ["x", "shp"], ["e"]), h.make_node("ReduceSum", ["e"], ["y"])], [x], [y],
         [i64("shp", [1000000, 1000000])])
    save("tile_1e12",
         [h.make_node("Tile", ["x", "rep"], ["e"]), h.make_node("ReduceSum", ["e"], ["y"])], [x], [y],
         [i64("rep", [1000000000000])])
    save("range_1e12",
         [h.make_node("Range", ["a", "b", "d"], ["r"]), h.make_node("Cast", ["r"], ["c"], to=T.FLOAT),
          h.make_node("Add", ["c", "x"], ["y"])], [x], [y],
         [h.make_tensor("a", T.INT64, [], [0]), h.make_tensor("b", T.INT64, [], [10**12]),
          h.make_tensor("d", T.INT64, [], [1])])
    # Two live 2^63-byte intermediates: their arena offsets sum to 2^64 (wraps to 0 without checks).
    save("arena_wrap",
         [h.make_node("ConstantOfShape", ["shp"], ["c"]), h.make_node("Add", ["c", "x"], ["d"]),
          h.make_node("Mul", ["d", "c"], ["e"]), h.make_node("ReduceSum", ["e"], ["y"])], [x], [y],
         [i64("shp", [2**61])])
    # A float16 intermediate of 2^63-1 elements: 2^64-2 bytes fits size_t, but rounding it up to the arena's
    # 64-byte alignment wraps to 0, so the arena would be tiny while the kernel writes 2^64 bytes.
    save("arena_align_wrap",
         [h.make_node("ConstantOfShape", ["shp"], ["c"],
                      value=h.make_tensor("v", T.FLOAT16, [1], [1.0])),
          h.make_node("ReduceMax", ["c"], ["r"], keepdims=0), h.make_node("Cast", ["r"], ["rf"], to=T.FLOAT),
          h.make_node("Add", ["rf", "x"], ["y"])], [x], [y],
         [i64("shp", [2**63 - 1])])
    # Shape arithmetic that overflows int64.
    save("reshape_overflow", [h.make_node("Reshape", ["x", "shp"], ["y"])], [x], [y],
         [i64("shp", [2**62, 8])])
    save("constantofshape_overflow",
         [h.make_node("ConstantOfShape", ["shp"], ["c"]), h.make_node("Add", ["c", "x"], ["y"])], [x], [y],
         [i64("shp", [2**40, 2**40])])

    # If nested 25 deep: about 75 protobuf levels, above the nesting limit of 64 (subgraph nesting limit).
    def nested(depth):
        c = h.make_node("Constant", [], ["o"], value=h.make_tensor("t", T.FLOAT, [1], [1.0]))
        if depth == 0:
            return h.make_graph([c], "b0", [], [h.make_tensor_value_info("o", T.FLOAT, [1])])
        # the else branch is a leaf: both branches nesting would double the file at every level
        n = h.make_node("If", ["cond"], ["o"], then_branch=nested(depth - 1), else_branch=nested(0))
        return h.make_graph([n], "b%d" % depth, [], [h.make_tensor_value_info("o", T.FLOAT, [1])])
    g = nested(25)
    g.name = "deep_if"
    g.input.extend([h.make_tensor_value_info("cond", T.BOOL, [])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], producer_name="keel-bombs")
    with open(os.path.join(OUT, "deep_if.onnx"), "wb") as f:
        f.write(m.SerializeToString())

    # Load-time folding amplification: 8 ConstantOfShape nodes of 16 Mi floats (64 MiB each, just within the
    # folding limit per node) in a 1 KB model make the optimizer allocate 512 MiB, outside the engine's
    # allocator and its limit. The node count scales it without bound.
    n_fold = 8
    nodes = [h.make_node("ConstantOfShape", ["shp"], ["c%d" % i], value=h.make_tensor("v", T.FLOAT, [1], [1.0]))
             for i in range(n_fold)]
    nodes += [h.make_node("Sum", ["c%d" % i for i in range(n_fold)], ["s"]),
              h.make_node("ReduceMax", ["s"], ["r"], keepdims=0), h.make_node("Add", ["r", "x"], ["y"])]
    save("fold_amplification", nodes, [x], [y], [i64("shp", [16 * 1024 * 1024])])

    # If nested 18 deep: within the protobuf nesting limit, above max_graph_depth (default 16).
    g = nested(18)
    g.name = "nested_if_18"
    g.input.extend([h.make_tensor_value_info("cond", T.BOOL, [])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], producer_name="keel-bombs")
    with open(os.path.join(OUT, "nested_if_18.onnx"), "wb") as f:
        f.write(m.SerializeToString())

    # A long chain of nodes: load and plan must stay roughly linear (no limit on node count today).
    n = 20000
    nodes = [h.make_node("Neg", ["x" if i == 0 else "v%d" % (i - 1)], ["v%d" % i if i < n - 1 else "y"])
             for i in range(n)]
    save("chain_20k", nodes, [x], [y])


if __name__ == "__main__":
    main()
