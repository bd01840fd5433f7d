"""Test setup: import keel from the repository's python/ folder (KEEL_TEST_INSTALLED=1 tests the installed
package instead); the library comes from KEEL_LIBRARY or the package's own lookup (python/keel/_lib.py).

For the repository's python/, the extension module keel._keelc is built in place first when it is missing
or older than its source (`python3 setup.py build_ext --inplace`: one C file, a few seconds)."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _build_extension_in_place():
    src = os.path.join(ROOT, "python", "keel", "_keelc.c")
    built = glob.glob(os.path.join(ROOT, "python", "keel", "_keelc*.so"))
    deps = [src] + glob.glob(os.path.join(ROOT, "include", "keel", "*.h"))
    if built and os.path.getmtime(built[0]) >= max(os.path.getmtime(p) for p in deps):
        return
    subprocess.check_call([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT,
                          stdout=subprocess.DEVNULL)


if not os.environ.get("KEEL_TEST_INSTALLED"):
    _build_extension_in_place()
    sys.path.insert(0, os.path.join(ROOT, "python"))

ENGINE_DIR = os.path.join(ROOT, "tests", "data", "engine")
PPOCR = os.path.join(ROOT, "models", "ppocr_mobile_v2_cls.onnx")


def model(name):
    return os.path.join(ENGINE_DIR, name)


def make_model(nodes, inputs, outputs, initializers=()):
    """Serialized ONNX model (opset 17) from onnx.helper pieces."""
    import onnx
    from onnx import helper
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def ort_run(path_or_bytes, feeds):
    import onnxruntime as ort
    s = ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def ticks_during(call, repeats, setup=lambda: None):
    """How far a pure-Python spinner thread counts while each of `repeats` calls of `call(setup())` runs (setup
    itself is not counted): near zero when the call holds the GIL, thousands when it releases it."""
    import threading
    done, ticks = threading.Event(), [0]

    def spinner():
        while not done.is_set():
            ticks[0] += 1

    t = threading.Thread(target=spinner)
    t.start()
    during = []
    try:
        for _ in range(repeats):
            arg = setup()
            before = ticks[0]
            call(arg)
            during.append(ticks[0] - before)
    finally:
        done.set()
        t.join()
    return during


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test leaves no wrapped input alive and no DLPack export pending once its objects are gone."""
    yield
    import gc
    gc.collect()
    from keel import _keelc
    kept, exports = _keelc._live()
    assert not kept, "%d wrapped input(s) still referenced by keel tensors" % kept
    assert not exports, "%d DLPack export(s) still pending" % exports


@pytest.fixture
def wraps():
    """The (address, how) of every input wrapped while the test runs; how: buffer, dlpack, tensor, copy."""
    from keel import _keelc
    seen = []
    _keelc._trace(seen)
    yield seen
    _keelc._trace(None)
