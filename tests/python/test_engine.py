"""keel.Engine: loading, I/O description, errors, Engine.run."""
import pathlib

import numpy as np
import pytest
from conftest import PPOCR, make_model, model

import keel


def test_io_info_symbolic_dims():
    e = keel.Engine(model("matmul_bias_relu.onnx"))
    assert e.input_names == ["x"] and e.output_names == ["y"]
    (x,), (y,) = e.inputs, e.outputs
    assert (x.name, x.dtype, x.shape, x.numpy_dtype) == ("x", "float32", ("B", 16), np.float32)
    assert y.shape == ("B", 8)


def test_io_info_unknown_dims_and_two_inputs():
    e = keel.Engine(PPOCR)
    assert e.inputs[0].shape[:2] == (None, 3) and len(e.inputs[0].shape) == 4
    e2 = keel.Engine(model("reshape_by_input.onnx"))
    assert [(i.name, i.dtype, i.shape) for i in e2.inputs] == [("x", "float32", (2, 6)), ("shape", "int64", (2,))]


def test_load_from_bytes_and_pathlike(tmp_path):
    data = pathlib.Path(model("conv_bn_relu.onnx")).read_bytes()
    for src in (data, bytearray(data), memoryview(data), pathlib.Path(model("conv_bn_relu.onnx"))):
        e = keel.Engine(src)
        assert e.inputs[0].shape == ("N", 3, 8, 8)


def test_load_errors(tmp_path):
    with pytest.raises(keel.KeelIOError) as ei:
        keel.Engine(str(tmp_path / "missing.onnx"))
    assert "missing.onnx" in ei.value.message and ei.value.code == 7
    with pytest.raises(keel.InvalidModelError):
        keel.Engine(b"\x08\x07garbage" * 10)
    with pytest.raises(keel.KeelError):
        keel.Engine(b"")
    with pytest.raises(keel.InvalidArgumentError):
        keel.Engine(42)
    with pytest.raises(keel.InvalidArgumentError):
        keel.Engine("a\0b")
    bad = tmp_path / "trunc.onnx"
    bad.write_bytes(pathlib.Path(PPOCR).read_bytes()[:5000])
    with pytest.raises(keel.InvalidModelError):
        keel.Engine(str(bad))


def test_unsupported_operator():
    from onnx import TensorProto, helper
    m = make_model([helper.make_node("NoSuchOp", ["x"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(keel.UnsupportedError) as ei:
        keel.Engine(m)
    assert "NoSuchOp" in str(ei.value)


def test_error_hierarchy():
    assert issubclass(keel.ShapeMismatchError, keel.KeelError) and issubclass(keel.ShapeMismatchError, ValueError)
    assert issubclass(keel.OutOfMemoryError, MemoryError)
    err = keel.InvalidArgumentError("boom")
    assert str(err) == "INVALID_ARGUMENT: boom" and err.code_name == "INVALID_ARGUMENT"


def test_engine_run(rng):
    e = keel.Engine(model("reshape_by_input.onnx"))
    x = rng.standard_normal((2, 6), dtype=np.float32)
    y = e.run(x, np.array([3, 4], np.int64))
    assert y.shape == (3, 4)
    np.testing.assert_array_equal(np.asarray(y), np.maximum(x, 0).reshape(3, 4))
    y2 = e.run(shape=np.array([4, 3], np.int64), x=x)
    np.testing.assert_array_equal(np.asarray(y2), np.maximum(x, 0).reshape(4, 3))
    y3 = e.run({"x": x, "shape": np.array([12, 1], np.int64)})
    assert y3.shape == (12, 1)


def test_engine_close():
    e = keel.Engine(model("matmul_bias_relu.onnx"))
    m = keel.Module(e)
    e.close()
    e.close()
    with pytest.raises(keel.InvalidArgumentError):
        e.run(np.zeros((1, 16), np.float32))
    with pytest.raises(keel.InvalidArgumentError):
        keel.Module(e)
    # the module holds its own reference to the engine
    assert m(np.ones((1, 16), np.float32)).shape == (1, 8)


def test_version():
    assert keel.__version__.count(".") == 2
    assert "cpu" in keel.backends()
