"""keel: an ONNX inference runtime (C11), from Python. See docs/PYTHON.md.

    import keel
    m = keel.Module(keel.Engine("model.onnx"))
    y = m(x)            # x: NumPy array, torch tensor, anything with __dlpack__; np.asarray(y) is zero-copy
    c = m.submit(x); y = c.wait()   # asynchronous: the GIL is released in both
"""
from . import _lib
from ._engine import Engine, IOInfo
from ._errors import (DeviceError, InternalError, InvalidArgumentError, InvalidModelError, KeelError, KeelIOError,
                      OutOfMemoryError, ShapeMismatchError, UnsupportedError)
from ._module import Module, ModulePool
from ._tensor import Call, Tensor
from . import runtime

__version__ = _lib.lib.keel_version().decode()
library_path = _lib.path


def backends():
    """Backends compiled into the loaded library, e.g. ["cpu"]."""
    return _lib.lib.keel_backends().decode().split()


__all__ = ["Engine", "IOInfo", "Module", "ModulePool", "Tensor", "Call", "runtime", "KeelError", "InvalidArgumentError",
           "InvalidModelError", "UnsupportedError", "OutOfMemoryError", "ShapeMismatchError", "DeviceError",
           "KeelIOError", "InternalError", "backends", "library_path"]
