"""keel.Engine: a model compiled once (include/keel/engine.h)."""
import os
import sys
import threading
from ctypes import byref, c_void_p

from . import _lib
from ._errors import InvalidArgumentError, check
from ._tensor import dtype_name, numpy_dtype, order_inputs

lib = _lib.lib


class IOInfo:
    """A graph input or output: name, dtype (keel's name, e.g. "float32"), numpy_dtype, and shape: a tuple
    whose entries are ints, symbolic names (str) or None for unknown dims; None if the rank is unknown."""
    __slots__ = ("name", "dtype", "numpy_dtype", "shape", "_code")

    def __init__(self, info):
        self._code = int(info.dtype)
        self.name = info.name.decode("utf-8", "replace") if info.name else ""
        self.dtype = dtype_name(info.dtype)
        self.numpy_dtype = numpy_dtype(info.dtype)
        if info.ndim < 0:
            self.shape = None
        else:
            dims = []
            for i in range(info.ndim):
                if info.dims[i] >= 0:
                    dims.append(int(info.dims[i]))
                elif info.dim_params[i]:
                    dims.append(info.dim_params[i].decode("utf-8", "replace"))
                else:
                    dims.append(None)
            self.shape = tuple(dims)

    def __repr__(self):
        return "IOInfo(name=%r, dtype=%r, shape=%r)" % (self.name, self.dtype, self.shape)

    def __eq__(self, other):
        return isinstance(other, IOInfo) and (self.name, self.dtype, self.shape) == (other.name, other.dtype,
                                                                                     other.shape)


class Engine:
    """keel.Engine(path_or_bytes, optimize=True, base_dir=None, max_model_bytes=0, max_tensor_elements=0,
    max_nodes=0, max_graph_depth=0).

    `path_or_bytes`: a file path (str or os.PathLike) or the model's bytes (bytes, bytearray, memoryview);
    external data of an in-memory model is resolved relative to `base_dir` (None: refused). Immutable and
    shareable by threads; modules (keel.Module) run it fast, Engine.run runs it simply."""

    def __reduce_ex__(self, protocol):
        # two Python objects over one keel handle would free it twice
        raise TypeError("%s cannot be copied or pickled" % type(self).__name__)

    def __init__(self, path_or_bytes, optimize=True, base_dir=None, max_model_bytes=0, max_tensor_elements=0,
                 max_nodes=0, max_graph_depth=0):
        self._h = None
        self._lock = threading.Lock()
        opt = _lib.EngineOptions()
        lib.keel_engine_options_init(byref(opt))
        opt.optimize = 1 if optimize else 0
        opt.max_model_bytes = int(max_model_bytes)
        opt.max_tensor_elements = int(max_tensor_elements)
        opt.max_nodes = int(max_nodes)
        opt.max_graph_depth = int(max_graph_depth)
        out = c_void_p()
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            data = bytes(path_or_bytes)
            bd = os.fsencode(base_dir) if base_dir is not None else None
            check(lib.keel_engine_load_memory(data, len(data), bd, byref(opt), byref(out)))
            self.path = None
        elif isinstance(path_or_bytes, (str, os.PathLike)):
            p = os.fsencode(path_or_bytes)
            if b"\0" in p:
                raise InvalidArgumentError("model path contains a NUL byte")
            check(lib.keel_engine_load_file(p, byref(opt), byref(out)))
            self.path = os.fspath(path_or_bytes)
        else:
            raise InvalidArgumentError("keel.Engine needs a path or the model's bytes, got %s"
                                       % type(path_or_bytes).__name__)
        self._h = out.value
        self.inputs = self._infos(lib.keel_engine_input_count, lib.keel_engine_input_info)
        self.outputs = self._infos(lib.keel_engine_output_count, lib.keel_engine_output_info)
        self.input_names = [i.name for i in self.inputs]
        self.output_names = [o.name for o in self.outputs]
        self.input_numpy_dtypes = [i.numpy_dtype for i in self.inputs]
        self._input_codes = tuple(i._code for i in self.inputs)

    def _infos(self, count, get):
        res = []
        for i in range(count(self._h)):
            info = _lib.IOInfo()
            check(get(self._h, i, byref(info)))
            res.append(IOInfo(info))
        return res

    def handle(self):
        if not self._h:
            raise InvalidArgumentError("engine is closed")
        return self._h

    def close(self):
        """Drop this reference (modules created from the engine keep their own)."""
        with self._lock:
            h, self._h = self._h, None
        if h:
            lib.keel_engine_release(h)

    def __del__(self, _finalizing=sys.is_finalizing):
        if getattr(self, "_h", None) and not _finalizing():
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, *inputs, **named):
        """Run once with keel_engine_run (plans and allocates per call; keel.Module is the fast path).
        Returns a keel.Tensor, or a tuple of them for several outputs."""
        with self._lock:  # keep the engine alive against a concurrent close
            h = self.handle()
            lib.keel_engine_retain(h)
        try:
            args = tuple(order_inputs(self.input_names, inputs, named))
            res = _lib._keelc.run_engine(h, args, self.input_names, tuple(self.input_numpy_dtypes),
                                         self._input_codes, len(self.outputs))
        finally:
            lib.keel_engine_release(h)
        return res[0] if len(res) == 1 else res

    def __repr__(self):
        return "keel.Engine(inputs=%r, outputs=%r)" % (self.inputs, self.outputs)


