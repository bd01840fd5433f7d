"""Test setup: import keel from the repository's python/ folder (KEEL_TEST_INSTALLED=1 tests the installed
package instead); the library comes from KEEL_LIBRARY or the package's own lookup (python/keel/_lib.py)."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if not os.environ.get("KEEL_TEST_INSTALLED"):
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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test leaves no wrapped input alive and no DLPack export pending once its objects are gone."""
    yield
    import gc
    gc.collect()
    from keel import _tensor
    assert not _tensor._keepalive, "wrapped inputs still referenced: %r" % list(_tensor._keepalive.values())[:3]
    assert not _tensor._exports, "DLPack exports still pending"
