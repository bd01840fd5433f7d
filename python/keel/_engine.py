"""keel.Engine: a model compiled once (include/keel/engine.h)."""
import os
import sys
import threading
from ctypes import byref, c_void_p

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError, check
from ._tensor import Tensor, dtype_name, numpy_dtype, to_keel

lib = _lib.lib


class IOInfo:
    """A graph input or output: name, dtype (keel's name, e.g. "float32"), numpy_dtype, and shape: a tuple
    whose entries are ints, symbolic names (str) or None for unknown dims; None if the rank is unknown."""
    __slots__ = ("name", "dtype", "numpy_dtype", "shape")

    def __init__(self, info):
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
            args = order_inputs(self.input_names, inputs, named)
            outs = call_with_inputs(args, self.input_names, len(self.outputs), self.input_numpy_dtypes,
                                    lambda ins, n_in, outs, n_out: lib.keel_engine_run(h, ins, n_in, outs, n_out))
        finally:
            lib.keel_engine_release(h)
        res = tuple(Tensor._take(o) for o in outs)
        return res[0] if len(res) == 1 else res

    def __repr__(self):
        return "keel.Engine(inputs=%r, outputs=%r)" % (self.inputs, self.outputs)



def order_inputs(names, args, named):
    """Positional inputs in graph order, or by name (keywords, or one dict)."""
    if len(args) == 1 and isinstance(args[0], dict) and not named:
        named, args = args[0], ()
    if not named:
        return list(args)
    if args:
        raise InvalidArgumentError("pass inputs either positionally or by name, not both")
    unknown = [k for k in named if k not in names]
    if unknown:
        raise InvalidArgumentError("unknown input name(s) %s; the model's inputs are %s" % (unknown, names))
    missing = [n for n in names if n not in named]
    if missing:
        raise InvalidArgumentError("missing input(s) %s" % missing)
    return [named[n] for n in names]


def as_array(a, dtype, name):
    """Lists and Python scalars: an array of the input's declared dtype."""
    try:
        return np.asarray(a, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArgumentError("input '%s': %s" % (name, e)) from None


def call_with_inputs(args, names, n_out, dtypes, fn):
    """Wrap args as keel tensors, call fn(inputs, n_in, outputs, n_out), release the inputs. Returns the
    output handles (owned by the caller). Lists and Python scalars become arrays of the input's dtype."""
    n_in = len(args)
    ins = (c_void_p * max(n_in, 1))()
    try:
        for i, a in enumerate(args):
            what = "input '%s'" % names[i] if i < len(names) else "input %d" % i
            if isinstance(a, (list, tuple, int, float, bool)) and i < len(dtypes):
                a = as_array(a, dtypes[i], names[i])
            ins[i] = to_keel(a, what)
        outs = (c_void_p * max(n_out, 1))()
        check(fn(ins, n_in, outs, n_out))
        return [outs[k] for k in range(n_out)]
    finally:
        for i in range(n_in):
            if ins[i]:
                lib.keel_tensor_release(ins[i])
