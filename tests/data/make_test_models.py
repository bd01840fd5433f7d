#!/usr/bin/env python3
"""Generate the small ONNX files used by tests/unit/test_onnx_import.c.

Run from anywhere: python3 tests/data/make_test_models.py
Writes into tests/data/onnx_import/. The outputs are committed; rerun only to change them.
Every initializer encoding is spelled out by hand (not via onnx.helper.make_tensor's choices) so the
files keep exercising exactly the fields the importer must handle.
"""
import os
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "onnx_import")

# Values per dtype; the C test has the same table. Shape [2, 3].
FLOATS = [0.0, 0.5, -1.25, 3.0, 1024.0, -2.0]
VALUES = {
    TensorProto.FLOAT: FLOATS,
    TensorProto.FLOAT16: FLOATS,
    TensorProto.BFLOAT16: FLOATS,
    TensorProto.DOUBLE: [0.0, 0.5, -1.25, 3.0, 1e300, -2.0],
    TensorProto.INT8: [0, 1, -2, 3, 100, -128],
    TensorProto.UINT8: [0, 1, 2, 3, 100, 255],
    TensorProto.INT16: [0, 1, -2, 3, 100, -32768],
    TensorProto.UINT16: [0, 1, 2, 3, 100, 65535],
    TensorProto.INT32: [0, 1, -2, 3, 100, -2147483648],
    TensorProto.UINT32: [0, 1, 2, 3, 100, 4294967295],
    TensorProto.INT64: [0, 1, -2, 3, 1 << 40, -(1 << 62)],
    TensorProto.UINT64: [0, 1, 2, 3, 1 << 40, (1 << 64) - 1],
    TensorProto.BOOL: [1, 0, 1, 1, 0, 0],
}
NP = {
    TensorProto.FLOAT: "<f4", TensorProto.FLOAT16: "<f2", TensorProto.DOUBLE: "<f8",
    TensorProto.INT8: "i1", TensorProto.UINT8: "u1", TensorProto.INT16: "<i2", TensorProto.UINT16: "<u2",
    TensorProto.INT32: "<i4", TensorProto.UINT32: "<u4", TensorProto.INT64: "<i8", TensorProto.UINT64: "<u8",
    TensorProto.BOOL: "u1",
}
NAMES = {
    TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16",
    TensorProto.DOUBLE: "float64", TensorProto.INT8: "int8", TensorProto.UINT8: "uint8",
    TensorProto.INT16: "int16", TensorProto.UINT16: "uint16", TensorProto.INT32: "int32",
    TensorProto.UINT32: "uint32", TensorProto.INT64: "int64", TensorProto.UINT64: "uint64",
    TensorProto.BOOL: "bool",
}


def bf16_bits(x):
    # The chosen values are exact in bfloat16: the upper half of the float32 bits.
    return struct.unpack("<I", struct.pack("<f", x))[0] >> 16


def raw_bytes(dt, vals):
    if dt == TensorProto.BFLOAT16:
        return np.array([bf16_bits(v) for v in vals], dtype="<u2").tobytes()
    return np.array(vals, dtype=NP[dt]).tobytes()


def typed_tensor(name, dt, vals, dims=(2, 3)):
    t = TensorProto(name=name, data_type=dt, dims=list(dims))
    if dt == TensorProto.FLOAT:
        t.float_data.extend(vals)
    elif dt == TensorProto.DOUBLE:
        t.double_data.extend(vals)
    elif dt == TensorProto.INT64:
        t.int64_data.extend(vals)
    elif dt in (TensorProto.UINT32, TensorProto.UINT64):
        t.uint64_data.extend(vals)
    elif dt == TensorProto.FLOAT16:  # the IEEE half bits, in int32_data
        t.int32_data.extend(int(b) for b in np.array(vals, dtype="<f2").view("<u2"))
    elif dt == TensorProto.BFLOAT16:
        t.int32_data.extend(bf16_bits(v) for v in vals)
    else:  # int8/16/32, uint8/16, bool: int32_data
        t.int32_data.extend(vals)
    return t


def raw_tensor(name, dt, vals, dims=(2, 3)):
    return TensorProto(name=name, data_type=dt, dims=list(dims), raw_data=raw_bytes(dt, vals))


def external_tensor(name, dt, dims, location, offset=None, length=None):
    t = TensorProto(name=name, data_type=dt, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    entries = [("location", location)]
    if offset is not None:
        entries.append(("offset", str(offset)))
    if length is not None:
        entries.append(("length", str(length)))
    for k, v in entries:
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def model(graph, opsets=(("", 17),), ir_version=8):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    m.ir_version = ir_version
    return m


def save(name, m):
    path = os.path.join(OUT, name)
    data = m if isinstance(m, bytes) else m.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)


def simple_graph(inits, name="g"):
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3])
    return helper.make_graph([helper.make_node("Identity", ["X"], ["Y"], name="id")], name, [x], [y], inits)


def main():
    os.makedirs(os.path.join(OUT, "ext", "sub"), exist_ok=True)

    # --- every encoding of every dtype, plus scalar and empty tensors ---
    inits = []
    for dt, vals in VALUES.items():
        inits.append(typed_tensor(NAMES[dt] + "_typed", dt, vals))
        inits.append(raw_tensor(NAMES[dt] + "_raw", dt, vals))
    inits.append(typed_tensor("scalar_typed", TensorProto.FLOAT, [7.5], dims=()))
    inits.append(raw_tensor("scalar_raw", TensorProto.INT64, [-9], dims=()))
    inits.append(TensorProto(name="empty", data_type=TensorProto.FLOAT, dims=[0, 3]))
    inits.append(typed_tensor("as_input", TensorProto.FLOAT, [1.0, 2.0, 3.0], dims=(3,)))
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])
    as_input = helper.make_tensor_value_info("as_input", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])
    z = helper.make_tensor_value_info("Z", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Identity", ["X"], ["T0"]),  # unnamed: "Identity_0"
        helper.make_node("Clip", ["T0", "", "float32_raw"], ["Y"], name="clip"),  # omitted optional input
        helper.make_node("Custom", ["X", "as_input"], ["Z"], name="custom", domain="com.example",
                         alpha=0.25, n=7, mode="edge", sizes=[1, 2, 3], scales=[0.5, 2.0], tags=["a", "bc"]),
    ]
    g = helper.make_graph(nodes, "encodings", [x, as_input], [y, z], inits)
    save("initializers.onnx", model(g, opsets=(("ai.onnx", 17), ("com.example", 2))))

    # --- Constant nodes of every kind ---
    nodes = [
        helper.make_node("Constant", [], ["c_tensor"], value=raw_tensor("v", TensorProto.INT32, [1, 2, 3, 4, 5, 6])),
        helper.make_node("Constant", [], ["c_float"], value_float=1.5),
        helper.make_node("Constant", [], ["c_floats"], value_floats=[1.0, 2.0]),
        helper.make_node("Constant", [], ["c_int"], value_int=-4),
        helper.make_node("Constant", [], ["c_ints"], value_ints=[3, 4, 5]),
        helper.make_node("Sum", ["c_float", "c_floats"], ["Y"], name="sum"),
    ]
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])
    g = helper.make_graph(nodes, "constants", [], [y])
    save("constants.onnx", model(g))
    nodes = [helper.make_node("Constant", [], ["Y"], value_strings=["a", "b"])]
    y = helper.make_tensor_value_info("Y", TensorProto.STRING, [2])
    save("constant_string.onnx", model(helper.make_graph(nodes, "cs", [], [y])))

    # --- a subgraph (If) ---
    then_g = helper.make_graph([helper.make_node("Identity", ["X"], ["t_out"])], "then_branch", [],
                               [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["X"], ["e_out"])], "else_branch", [],
                               [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [2])])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])
    g = helper.make_graph([helper.make_node("If", ["cond"], ["Y"], name="if", then_branch=then_g,
                                            else_branch=else_g)], "subgraph", [cond, x], [y])
    save("subgraph.onnx", model(g))

    # --- external data ---
    w = np.arange(1, 7, dtype="<f4")  # W: float32 [2,3] = 1..6 at offset 0
    b = np.array([-5, 1 << 33], dtype="<i8")  # B: int64 [2] at offset 24
    with open(os.path.join(OUT, "ext", "weights.bin"), "wb") as f:
        f.write(w.tobytes() + b.tobytes())
    with open(os.path.join(OUT, "ext", "sub", "more.bin"), "wb") as f:
        f.write(b"\0" * 8 + np.array([0.25, -0.75], dtype="<f4").tobytes())

    def ext_model(name, *tensors):
        save(os.path.join("ext", name), model(simple_graph(list(tensors), name.split(".")[0])))

    ext_model("good.onnx",
              external_tensor("W", TensorProto.FLOAT, [2, 3], "weights.bin", 0, 24),
              external_tensor("B", TensorProto.INT64, [2], "weights.bin", 24),  # no length: dims decide
              external_tensor("M", TensorProto.FLOAT, [2], "sub/more.bin", 8, 8))
    ext_model("dotdot.onnx", external_tensor("W", TensorProto.FLOAT, [2, 3], "sub/../../initializers.onnx"))
    ext_model("absolute.onnx", external_tensor("W", TensorProto.FLOAT, [2], "/etc/passwd"))
    ext_model("symlink.onnx", external_tensor("W", TensorProto.FLOAT, [2, 3], "link.bin", 0, 24))
    ext_model("missing.onnx", external_tensor("W", TensorProto.FLOAT, [2, 3], "nope.bin"))
    ext_model("offset.onnx", external_tensor("W", TensorProto.FLOAT, [2, 3], "weights.bin", 1000000))
    ext_model("past_end.onnx", external_tensor("W", TensorProto.FLOAT, [4, 3], "weights.bin", 0))
    ext_model("length.onnx", external_tensor("W", TensorProto.FLOAT, [2, 3], "weights.bin", 0, 8))

    # --- sizes and limits ---
    save("huge.onnx", model(simple_graph([TensorProto(name="huge", data_type=TensorProto.FLOAT,
                                                      dims=[1000000, 1000000], raw_data=b"\0\0\0\0")])))
    save("overflow.onnx", model(simple_graph([TensorProto(name="ovf", data_type=TensorProto.FLOAT,
                                                          dims=[1 << 40, 1 << 40, 1 << 40])])))
    save("bad_raw_size.onnx", model(simple_graph([TensorProto(name="short", data_type=TensorProto.FLOAT,
                                                              dims=[2, 3], raw_data=b"\0" * 20)])))
    wrong = TensorProto(name="wrong", data_type=TensorProto.INT64, dims=[2])
    wrong.float_data.extend([1.0, 2.0])
    save("wrong_field.onnx", model(simple_graph([wrong])))
    s = TensorProto(name="strs", data_type=TensorProto.STRING, dims=[1])
    s.string_data.append(b"hi")
    save("string_init.onnx", model(simple_graph([s])))

    # --- malformed graphs ---
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])
    dup = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"], name="a"),
                             helper.make_node("Neg", ["X"], ["Y"], name="b")], "dup", [x], [y])
    save("dup_producer.onnx", model(dup))
    undef = helper.make_graph([helper.make_node("Add", ["X", "ghost"], ["Y"], name="add")], "undef", [x], [y])
    save("undefined_input.onnx", model(undef))
    dom = helper.make_graph([helper.make_node("Foo", ["X"], ["Y"], name="foo", domain="com.unknown")],
                            "dom", [x], [y])
    save("bad_domain.onnx", model(dom))
    nog = onnx.ModelProto(ir_version=8)
    nog.opset_import.add().version = 17
    save("no_graph.onnx", nog)
    with open(os.path.join(OUT, "not_onnx.txt"), "w") as f:
        f.write("This is a text file, not an ONNX model.\nir_version: 8\n")

    # --- a test-data tensor as `keel test` reads them ---
    t = raw_tensor("x", TensorProto.FLOAT, FLOATS)
    save("tensor_float.pb", t.SerializeToString())


if __name__ == "__main__":
    main()
