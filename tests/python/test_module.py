"""keel.Module: results against onnxruntime, zero-copy in and out, output modes, bound outputs, errors."""
import gc
import pathlib
import weakref

import numpy as np
import pytest
from conftest import PPOCR, make_model, model, ort_run

import keel
from keel import _keelc

MODES = ["fresh", "preallocated", "persistent"]


def ppocr_inputs():
    import onnx
    from onnx import numpy_helper
    import os
    d = os.path.dirname(PPOCR)
    out = []
    for name in ("ppocr_cls_input_upright.pb", "ppocr_cls_input_rot180.pb"):
        t = onnx.TensorProto()
        t.ParseFromString(pathlib.Path(d, name).read_bytes())
        out.append(numpy_helper.to_array(t))
    return out


def two_outputs_model():
    from onnx import TensorProto, helper
    return make_model([helper.make_node("Relu", ["x"], ["pos"]), helper.make_node("Neg", ["x"], ["neg"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                      [helper.make_tensor_value_info("pos", TensorProto.FLOAT, ["N", 4]),
                       helper.make_tensor_value_info("neg", TensorProto.FLOAT, ["N", 4])])


@pytest.mark.parametrize("device", ["cpu", "sim"])
@pytest.mark.parametrize("mode", MODES)
def test_models_match_onnxruntime(rng, mode, device):
    cases = [("matmul_bias_relu.onnx", {"x": rng.standard_normal((5, 16), dtype=np.float32)}),
             ("conv_bn_relu.onnx", {"x": rng.standard_normal((2, 3, 8, 8), dtype=np.float32)}),
             ("elementwise_chain.onnx", {"x": rng.standard_normal((64, 1024), dtype=np.float32)}),
             ("flatten_by_shape.onnx", {"x": rng.standard_normal((2, 3, 5), dtype=np.float32)}),
             ("if_sign.onnx", {"x": rng.standard_normal(4, dtype=np.float32)}),
             ("nonzero.onnx", {"x": np.array([0, 1.5, 0, -2, 3], np.float32)}),
             ("reshape_by_input.onnx", {"x": rng.standard_normal((2, 6), dtype=np.float32),
                                        "shape": np.array([3, 4], np.int64)})]
    for name, feeds in cases:
        m = keel.Module(keel.Engine(model(name)), device=device, output_mode=mode)
        want = ort_run(model(name), feeds)[0]
        for _ in range(3):  # steady state too
            y = m(**feeds)
            assert isinstance(y, keel.Tensor) and y.device in (device, "cpu")  # interpreted graphs answer on the host
            np.testing.assert_allclose(np.asarray(y), want, rtol=1e-4, atol=1e-5, err_msg=name)
            del y


@pytest.mark.parametrize("mode", MODES)
def test_ppocr_matches_onnxruntime(mode):
    m = keel.Module(keel.Engine(PPOCR), output_mode=mode)
    for x in ppocr_inputs():
        want = ort_run(PPOCR, {"x": x})[0]
        y = np.asarray(m(x))
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    # the two bundled images are upright and rotated 180 degrees: the classifier tells them apart
    ups, rot = (np.asarray(m(x)).copy() for x in ppocr_inputs())
    assert ups.argmax() != rot.argmax()


def test_output_is_zero_copy_and_outlives_module(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((3, 16), dtype=np.float32)
    y = m(x)
    a = np.asarray(y)
    # the view is over keel's buffer; its base (a memoryview, from the buffer protocol) holds the Tensor
    assert a.__array_interface__["data"][0] == y.data_ptr and getattr(a.base, "obj", a.base) is y
    assert y.dtype == np.float32 and y.keel_dtype == "float32" and y.shape == (3, 8) and y.nbytes == 96
    want = a.copy()
    ref = weakref.ref(y)
    del y
    assert ref() is not None  # the view keeps the Tensor (and the keel buffer) alive
    m.close()
    del m
    gc.collect()
    np.testing.assert_array_equal(a, want)
    del a
    gc.collect()
    assert ref() is None


def test_inputs_wrapped_zero_copy_and_released(rng, wraps):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((2, 16), dtype=np.float32)
    ro = rng.standard_normal((2, 16), dtype=np.float32)
    ro.flags.writeable = False
    m(x)
    m(ro)
    m(np.asfortranarray(rng.standard_normal((2, 16), dtype=np.float32)))
    assert wraps[0] == (x.ctypes.data, "buffer")  # the caller's buffer itself
    assert wraps[1] == (ro.ctypes.data, "buffer")  # read-only: wrapped in place too
    assert wraps[2][1] == "copy"  # Fortran order: a C-order copy
    assert len(wraps) == 3
    gc.collect()
    assert _keelc._live() == (0, 0)


def test_input_conversions(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((4, 32), dtype=np.float32)
    want = np.asarray(m(np.ascontiguousarray(x[:, ::2]))).copy()
    np.testing.assert_array_equal(np.asarray(m(x[:, ::2])), want)  # strided: copied
    np.testing.assert_array_equal(np.asarray(m(x[:, ::2].astype(">f4"))), want)  # byte-swapped: copied
    np.testing.assert_array_equal(np.asarray(m(x[:, ::2].tolist())), want)  # lists: the input's dtype
    # a keel.Tensor is an input too (no conversion)
    from onnx import TensorProto, helper
    m2 = keel.Module(keel.Engine(make_model([helper.make_node("Neg", ["x"], ["y"])],
                                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])])))
    y = m2(np.ascontiguousarray(x[:, :16]))
    np.testing.assert_array_equal(np.asarray(m(y)), np.asarray(m(np.asarray(y).copy())))


def test_bad_inputs_raise(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((2, 16), dtype=np.float32)
    with pytest.raises(keel.ShapeMismatchError) as ei:
        m(x.astype(np.float64))
    assert "'x'" in ei.value.message or "x" in ei.value.message
    with pytest.raises(keel.ShapeMismatchError):
        m(np.zeros((2, 15), np.float32))
    with pytest.raises(keel.ShapeMismatchError):
        m(np.zeros(16, np.float32))
    with pytest.raises(keel.InvalidArgumentError):
        m()
    with pytest.raises(keel.InvalidArgumentError):
        m(x, x)
    with pytest.raises(keel.InvalidArgumentError):
        m(y=x)
    with pytest.raises(keel.InvalidArgumentError):
        m(x, x=x)
    for bad in (None, "text", object(), np.array([object()]), np.zeros((1,) * 9, np.float32),
                np.zeros((2, 16), np.float128) if hasattr(np, "float128") else None, {"a": 1}):
        with pytest.raises((keel.KeelError, TypeError)):
            m(bad)
    assert m(x).shape == (2, 8)  # still usable
    st = m.stats
    assert st["calls"] >= 1 and st["failed_calls"] >= 3


def test_tensor_not_constructible():
    with pytest.raises(TypeError):
        keel.Tensor(12345)  # would be a wild pointer
    import copy
    import pickle
    e = keel.Engine(model("matmul_bias_relu.onnx"))
    m = keel.Module(e)
    pool = keel.ModulePool(e, 1)
    y = m(np.ones((1, 16), np.float32))
    for obj in (e, m, pool, y):
        for f in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError):
                f(obj)
    pool.close()


def test_closed_module():
    m = keel.Module(model("matmul_bias_relu.onnx"))
    y = m(np.ones((1, 16), np.float32))
    m.close()
    m.close()
    assert m.closed
    for f in (lambda: m(np.ones((1, 16), np.float32)), lambda: m.stats, lambda: m.last_call_stats,
              lambda: setattr(m, "output_mode", "persistent"), lambda: m.bind_output(0, np.zeros((1, 8), np.float32)),
              m.trim, m.reset_stats):
        with pytest.raises(keel.InvalidArgumentError):
            f()
    assert np.asarray(y).shape == (1, 8)
    with keel.Module(model("matmul_bias_relu.onnx")) as m2:
        pass
    assert m2.closed


def test_bad_module_arguments():
    e = keel.Engine(model("matmul_bias_relu.onnx"))
    for kw in ({"device": "gpu"}, {"output_mode": "sometimes"}, {"persistent_policy": "maybe"},
               {"bogus_option": 1}, {"num_threads": "many"}):
        with pytest.raises(keel.InvalidArgumentError):
            keel.Module(e, **kw)
    m = keel.Module(e, num_threads=2, plan_cache_size=2, prefault=0, async_=1)
    assert m(np.ones((1, 16), np.float32)).shape == (1, 8)
    with pytest.raises(keel.InvalidArgumentError):
        m.output_mode = "never"
    assert m.output_mode == "fresh"


def test_multiple_outputs_and_names(rng):
    m = keel.Module(keel.Engine(two_outputs_model()))
    x = rng.standard_normal((3, 4), dtype=np.float32)
    pos, neg = m(x)
    np.testing.assert_array_equal(np.asarray(pos), np.maximum(x, 0))
    np.testing.assert_array_equal(np.asarray(neg), -x)
    assert m.engine.output_names == ["pos", "neg"]


def test_identity_output_keeps_input_alive(rng):
    """Graph output = graph input. A module never aliases (Module borrows inputs for the call only);
    Engine.run may, and then its output keeps the wrapped array alive."""
    from onnx import TensorProto, helper
    mb = make_model([helper.make_node("Identity", ["x"], ["y"])],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    for mode in MODES:
        m = keel.Module(keel.Engine(mb), output_mode=mode)
        x = np.array([1, 2, 3], np.float32)
        y = m(x)
        assert y.data_ptr != x.ctypes.data  # the module's rule: outputs never alias inputs
        del x
        gc.collect()
        np.testing.assert_array_equal(np.asarray(y), [1, 2, 3])
    e = keel.Engine(mb)
    x = np.array([4, 5, 6], np.float32)
    y = e.run(x)
    del x
    gc.collect()
    np.testing.assert_array_equal(np.asarray(y), [4, 5, 6])


# ------------------------------------------------------------------------------------------- output modes
def test_preallocated_context_manager_and_zero_allocations(rng):
    m = keel.Module(model("conv_bn_relu.onnx"))
    x = rng.standard_normal((1, 3, 8, 8), dtype=np.float32)
    want = np.asarray(m(x)).copy()
    with keel.runtime.enable_pre_allocated_outputs(m) as mm:
        assert mm is m and m.output_mode == "preallocated"
        for _ in range(5):
            np.testing.assert_array_equal(np.asarray(m(x)), want)
        assert m.last_call_stats["system_allocations"] == 0
        assert m.last_call_stats["pool_hits"] >= 1
    assert m.output_mode == "fresh"
    m.output_mode = "persistent"
    with pytest.raises(RuntimeError):
        with keel.runtime.enable_pre_allocated_outputs(m):
            raise RuntimeError("inside")
    assert m.output_mode == "persistent"
    with pytest.raises(TypeError):
        with keel.runtime.enable_pre_allocated_outputs(object()):
            pass


def test_preallocated_outputs_never_overwritten(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"), output_mode="preallocated")
    xs = [rng.standard_normal((2, 16), dtype=np.float32) for _ in range(4)]
    ys = [m(x) for x in xs]
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(np.asarray(y), ort_run(model("matmul_bias_relu.onnx"), {"x": x})[0])


def test_stats_dicts(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"))
    x = rng.standard_normal((2, 16), dtype=np.float32)
    m(x)
    m(x)
    m(np.zeros((3, 16), np.float32))
    st = m.stats
    assert set(st) >= {"calls", "system_allocations", "pool_hits", "shape_changes", "plan_cache_misses"}
    assert st["calls"] == 3 and st["shape_changes"] == 1
    assert m.last_call_stats["calls"] == 1
    m.reset_stats()
    assert m.stats["calls"] == 0
    m.trim()


def test_persistent_detach_default(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"), output_mode="persistent")
    assert m.persistent_policy == "detach"
    x1, x2 = (rng.standard_normal((2, 16), dtype=np.float32) for _ in range(2))
    y1 = m(x1)
    want1 = np.asarray(y1).copy()
    y2 = m(x2)  # y1 still referenced: left intact, y2 gets another buffer
    assert y1.data_ptr != y2.data_ptr
    np.testing.assert_array_equal(np.asarray(y1), want1)
    np.testing.assert_array_equal(np.asarray(y2), ort_run(model("matmul_bias_relu.onnx"), {"x": x2})[0])
    # a NumPy view or a DLPack export counts as a reference too
    v = np.asarray(m(x1))
    m(x2)
    np.testing.assert_array_equal(v, want1)
    d = np.from_dlpack(m(x1))
    m(x2)
    np.testing.assert_array_equal(d, want1)
    del y1, y2, v, d
    gc.collect()
    # nothing held: the same module buffer every call, no allocation
    m(x1)
    p = m(x2).data_ptr
    for _ in range(3):
        assert m(x1).data_ptr == p
        assert m.last_call_stats["system_allocations"] == 0
    # the usual loop (the previous result is still bound while the next call runs): no allocations either
    y = None
    for i in range(6):
        y = m(x1 if i % 2 else x2)
        np.testing.assert_array_equal(np.asarray(y), want1 if i % 2 else
                                      ort_run(model("matmul_bias_relu.onnx"), {"x": x2})[0])
        if i >= 3:
            assert m.last_call_stats["system_allocations"] == 0


def test_persistent_raise_policy(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"), output_mode="persistent", persistent_policy="raise")
    x = rng.standard_normal((2, 16), dtype=np.float32)
    y = m(x)
    with pytest.raises(keel.InvalidArgumentError) as ei:
        m(x)
    assert "still referenced" in ei.value.message
    with pytest.raises(keel.InvalidArgumentError):
        m(x)  # still held: still refused
    keep = np.asarray(y).copy()
    del y
    y = m(x)
    np.testing.assert_array_equal(np.asarray(y), keep)


def test_persistent_overwrite_policy(rng):
    m = keel.Module(model("matmul_bias_relu.onnx"), output_mode="persistent", persistent_policy="overwrite")
    x1, x2 = (rng.standard_normal((2, 16), dtype=np.float32) for _ in range(2))
    y1 = m(x1)
    view = np.asarray(y1)
    y2 = m(x2)
    assert y1.data_ptr == y2.data_ptr  # keel's contract: the same buffer, overwritten
    want2 = ort_run(model("matmul_bias_relu.onnx"), {"x": x2})[0]
    np.testing.assert_array_equal(view, want2)  # views already taken see the new values
    for f in (lambda: np.asarray(y1), lambda: y1.__dlpack__(), lambda: m(y1)):
        with pytest.raises(keel.InvalidArgumentError):
            f()
    assert "stale" in repr(y1)


def test_persistent_output_fed_back(rng):
    m = keel.Module(keel.Engine(two_outputs_model()), output_mode="persistent")
    x = rng.standard_normal((2, 4), dtype=np.float32)
    pos, neg = m(x)
    pos2, neg2 = m(neg)  # outputs never alias inputs
    np.testing.assert_array_equal(np.asarray(neg2), x)
    np.testing.assert_array_equal(np.asarray(pos2), np.maximum(-x, 0))
    np.testing.assert_array_equal(np.asarray(neg), -x)


# ------------------------------------------------------------------------------------------- bound outputs
def test_bind_output(rng):
    m = keel.Module(keel.Engine(two_outputs_model()))
    x = rng.standard_normal((2, 4), dtype=np.float32)
    out = np.full((2, 4), 7, np.float32)
    m.bind_output("neg", out)
    pos, neg = m(x)
    assert neg is out
    np.testing.assert_array_equal(out, -x)
    np.testing.assert_array_equal(np.asarray(pos), np.maximum(x, 0))
    pos, neg = m(2 * x)
    assert m.last_call_stats["system_allocations"] <= 1  # only 'pos' (FRESH)
    np.testing.assert_array_equal(out, -2 * x)
    with pytest.raises(keel.ShapeMismatchError):
        m(np.zeros((3, 4), np.float32))  # bound to [2,4]
    m.bind_output(1, None)
    pos, neg = m(np.zeros((3, 4), np.float32))
    assert isinstance(neg, keel.Tensor) and neg.shape == (3, 4)
    # bound to a keel.Tensor
    t = m(x)[0]
    m.bind_output(0, t)
    assert m(3 * x)[0] is t
    np.testing.assert_array_equal(np.asarray(t), np.maximum(3 * x, 0))


def test_bind_output_errors(rng):
    m = keel.Module(keel.Engine(two_outputs_model()))
    for idx in (2, -1, "nope", 1.5, None, True):
        with pytest.raises(keel.InvalidArgumentError):
            m.bind_output(idx, np.zeros((2, 4), np.float32))
    with pytest.raises(keel.InvalidArgumentError):
        m.bind_output(0, np.zeros((2, 8), np.float32)[:, ::2])  # not contiguous
    ro = np.zeros((2, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(keel.InvalidArgumentError):
        m.bind_output(0, ro)
    with pytest.raises(keel.InvalidArgumentError):
        m.bind_output(0, [[0.0] * 4] * 2)
    m.bind_output(0, np.zeros((2, 4), np.float64))  # wrong dtype: the call says so
    with pytest.raises(keel.ShapeMismatchError):
        m(np.zeros((2, 4), np.float32))
    sim = keel.Module(keel.Engine(two_outputs_model()), device="sim")
    with pytest.raises(keel.InvalidArgumentError):
        sim.bind_output(0, np.zeros((2, 4), np.float32))  # host memory on a device module


def test_bound_array_kept_alive_by_module(rng):
    m = keel.Module(keel.Engine(two_outputs_model()))
    out = np.zeros((2, 4), np.float32)
    r = weakref.ref(out) if hasattr(out, "__weakref__") else None
    m.bind_output(0, out)
    del out
    gc.collect()
    x = rng.standard_normal((2, 4), dtype=np.float32)
    pos, _ = m(x)
    np.testing.assert_array_equal(pos, np.maximum(x, 0))
    del pos, r
    m.close()
