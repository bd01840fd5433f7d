"""DLPack both ways, and __dlpack__ duck typing (how torch tensors come in; torch is not needed)."""
import gc

import numpy as np
import pytest
from conftest import model

import keel
from keel import _keelc


class Duck:
    """Only __dlpack__/__dlpack_device__, like a torch or JAX tensor; delegates to a NumPy array."""

    def __init__(self, a, device=(1, 0), versioned=True):
        self.a, self.device, self.versioned, self.calls = a, device, versioned, 0

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        self.calls += 1
        if self.versioned:
            return self.a.__dlpack__(max_version=max_version)
        return self.a.__dlpack__()  # an old producer: unversioned "dltensor" capsule

    def __dlpack_device__(self):
        return self.device


class OldProducer:
    """An old-style producer: __dlpack__ takes no max_version."""

    def __init__(self, t):
        self.t = t

    def __dlpack__(self, stream=None):
        return self.t.__dlpack__()

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


@pytest.mark.parametrize("versioned", [True, False])
def test_dlpack_input_zero_copy(rng, versioned, wraps):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((3, 16), dtype=np.float32)
    want = np.asarray(m(x)).copy()
    del wraps[:]
    d = Duck(x, versioned=versioned)
    np.testing.assert_array_equal(np.asarray(m(d)), want)
    assert wraps == [(x.ctypes.data, "dlpack")] and d.calls == 1
    # the producer's deleter ran: the capsule's reference to x is gone
    gc.collect()
    import sys
    base = sys.getrefcount(x)
    m(Duck(x, versioned=versioned))
    gc.collect()
    assert sys.getrefcount(x) == base


def test_dlpack_input_strided_is_copied(rng, wraps):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((3, 32), dtype=np.float32)
    want = np.asarray(m(np.ascontiguousarray(x[:, 1::2]))).copy()
    del wraps[:]
    np.testing.assert_array_equal(np.asarray(m(Duck(x[:, 1::2]))), want)
    assert [how for _, how in wraps] == ["copy"]


def test_dlpack_input_errors(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((3, 16), dtype=np.float32)
    with pytest.raises(keel.InvalidArgumentError) as ei:
        m(Duck(x, device=(2, 0)))  # a CUDA tensor
    assert "device" in ei.value.message

    class NotACapsule:
        def __dlpack__(self, **kw):
            return 42

    with pytest.raises(keel.InvalidArgumentError):
        m(NotACapsule())

    with pytest.raises(keel.ShapeMismatchError):
        m(Duck(x.astype(np.int32)))


@pytest.mark.parametrize("mode", ["fresh", "preallocated", "persistent"])
def test_dlpack_export(rng, mode):
    m = keel.Module(model("matmul_bias_relu.onnx"), output_mode=mode)
    x = rng.standard_normal((3, 16), dtype=np.float32)
    y = m(x)
    assert y.__dlpack_device__() == (1, 0)
    a = np.from_dlpack(y)  # NumPy 2 asks for a versioned capsule
    assert a.__array_interface__["data"][0] == y.data_ptr
    b = np.from_dlpack(OldProducer(y))  # unversioned capsule
    assert b.__array_interface__["data"][0] == y.data_ptr
    want = np.asarray(y).copy()
    del y
    gc.collect()
    assert _keelc._live()[1] == 2  # consumers still hold the buffer
    np.testing.assert_array_equal(a, want)
    np.testing.assert_array_equal(b, want)
    del a, b
    gc.collect()
    assert _keelc._live()[1] == 0


def test_dlpack_export_unconsumed_and_copy(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    y = m(rng.standard_normal((3, 16), dtype=np.float32))
    cap = y.__dlpack__()
    cap2 = y.__dlpack__(max_version=(1, 1))
    assert _keelc._live()[1] == 2
    del cap, cap2  # never consumed: the capsule destructor runs the deleter
    gc.collect()
    assert _keelc._live()[1] == 0
    c = np.from_dlpack(y, copy=True)
    assert c.__array_interface__["data"][0] != y.data_ptr
    np.testing.assert_array_equal(c, np.asarray(y))
    with pytest.raises(BufferError):
        y.__dlpack__(dl_device=(2, 0))


def test_keel_tensor_roundtrip_through_dlpack(rng, wraps):
    """A keel output handed to another module through DLPack (what torch.from_dlpack(y) then m(t) does)."""
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((3, 16), dtype=np.float32)
    y = m(x)
    from onnx import TensorProto, helper
    from conftest import make_model
    neg = keel.Module(keel.Engine(make_model([helper.make_node("Neg", ["x"], ["y"])],
                                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
                                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])])))
    del wraps[:]
    z = neg(Duck(np.from_dlpack(y)))
    assert wraps == [(y.data_ptr, "dlpack")]
    np.testing.assert_array_equal(np.asarray(z), -np.asarray(y))


def test_dtypes_through_numpy_and_dlpack():
    from onnx import TensorProto, helper
    from conftest import make_model
    for np_t, onnx_t in [(np.float32, TensorProto.FLOAT), (np.float64, TensorProto.DOUBLE),
                         (np.float16, TensorProto.FLOAT16), (np.int8, TensorProto.INT8),
                         (np.uint8, TensorProto.UINT8), (np.int32, TensorProto.INT32),
                         (np.int64, TensorProto.INT64), (np.bool_, TensorProto.BOOL)]:
        mb = make_model([helper.make_node("Identity", ["x"], ["y"])],
                        [helper.make_tensor_value_info("x", onnx_t, [2, 3])],
                        [helper.make_tensor_value_info("y", onnx_t, [2, 3])])
        m = keel.Module(keel.Engine(mb))
        x = (np.arange(6).reshape(2, 3) % 2).astype(np_t)
        y = m(x)
        assert y.dtype == np.dtype(np_t)
        np.testing.assert_array_equal(np.asarray(y), x)
        np.testing.assert_array_equal(np.from_dlpack(y), x)
        np.testing.assert_array_equal(np.asarray(m(Duck(x))), x)
