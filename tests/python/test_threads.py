"""Threads: keel.ModulePool from Python threads, a module shared by threads, the GIL released in calls."""
import threading
import time

import numpy as np
import pytest
from conftest import PPOCR, model, ort_run, ticks_during

import keel


@pytest.mark.parametrize("mode", ["fresh", "preallocated", "persistent"])
def test_module_pool_threads(rng, mode):
    pool = keel.ModulePool(keel.Engine(model("conv_bn_relu.onnx")), 3, output_mode=mode)
    xs = [rng.standard_normal((1 + i % 3, 3, 8, 8), dtype=np.float32) for i in range(8)]
    wants = [ort_run(model("conv_bn_relu.onnx"), {"x": x})[0] for x in xs]
    errors = []

    def worker(t):
        try:
            for i in range(40):
                k = (t + i) % len(xs)
                if i % 2:
                    y = pool(xs[k])
                    np.testing.assert_allclose(np.asarray(y), wants[k], rtol=1e-4, atol=1e-5)
                else:
                    with pool.module() as m:
                        y1 = m(xs[k])
                        y2 = m(xs[(k + 1) % len(xs)])
                        np.testing.assert_allclose(np.asarray(y1), wants[k], rtol=1e-4, atol=1e-5)
                        np.testing.assert_allclose(np.asarray(y2), wants[(k + 1) % len(xs)], rtol=1e-4, atol=1e-5)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    pool.close()
    pool.close()
    with pytest.raises(keel.InvalidArgumentError):
        pool(xs[0])


def test_pool_misuse():
    e = keel.Engine(model("matmul_bias_relu.onnx"))
    for n in (0, -1, "2", 1.5):
        with pytest.raises(keel.InvalidArgumentError):
            keel.ModulePool(e, n)
    pool = keel.ModulePool(e, 2)
    m = pool.acquire()
    with pytest.raises(keel.InvalidArgumentError):
        pool.close()  # a module is out
    other = keel.Module(e)
    with pytest.raises(keel.InvalidArgumentError):
        pool.release(other)
    with pytest.raises(keel.InvalidArgumentError):
        m.close()  # the pool owns it
    y = m(np.ones((1, 16), np.float32))
    pool.release(m)
    with pytest.raises(keel.InvalidArgumentError):
        pool.release(m)  # twice
    pool.close()
    with pytest.raises(keel.InvalidArgumentError):
        m(np.ones((1, 16), np.float32))  # the pool's modules die with it
    assert np.asarray(y).shape == (1, 8)  # outputs do not
    with keel.ModulePool(e, 1) as p2:
        assert p2(np.ones((2, 16), np.float32)).shape == (2, 8)


def test_shared_module_from_threads(rng):
    """One module, many threads: calls serialize; every result is right."""
    m = keel.Module(keel.Engine(model("matmul_bias_relu.onnx")), output_mode="preallocated")
    xs = [rng.standard_normal((2, 16), dtype=np.float32) for _ in range(4)]
    wants = [ort_run(model("matmul_bias_relu.onnx"), {"x": x})[0] for x in xs]
    errors = []

    def worker(t):
        try:
            for i in range(200):
                k = (t + i) % 4
                np.testing.assert_allclose(np.asarray(m(xs[k])), wants[k], rtol=1e-5, atol=1e-6)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert m.stats["calls"] == 800


def test_close_while_other_threads_call(rng):
    """Closing a module that other threads are calling never crashes: they get KeelError."""
    m = keel.Module(keel.Engine(model("elementwise_chain.onnx")))
    x = rng.standard_normal((64, 1024), dtype=np.float32)
    outcomes = []

    def worker():
        try:
            for _ in range(1000):
                m(x)
        except keel.InvalidArgumentError:
            outcomes.append("closed")

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.02)
    m.close()
    for t in threads:
        t.join()
    assert outcomes == ["closed"] * 3


def test_gil_released_during_calls():
    """While one thread is inside a keel call, another Python thread runs (the extension drops the GIL)."""
    m = keel.Module(keel.Engine(PPOCR))
    x = np.zeros((64, 3, 48, 192), np.float32)
    m(x)
    # tens of milliseconds per call: with the GIL held the spinner could not tick meanwhile
    during = ticks_during(lambda _: m(x), 5)
    assert max(during) > 1000, during
