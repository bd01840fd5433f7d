"""keel.Module and keel.ModulePool: the runtime module (include/keel/module.h, docs/RUNTIME.md)."""
import os
import sys
import threading
import weakref
import ctypes
from ctypes import byref, c_void_p

import numpy as np

from . import _lib
from ._engine import Engine, as_array, order_inputs
from ._errors import InvalidArgumentError, check, error_from_status
from ._tensor import _KEEL_OF_NP, _NO_DELETER, Tensor, _dims, from_dlpack, to_keel, wrap_numpy

# keel_tensor_wrap again, writing its result straight into the inputs array (the last argument an address).
_wrap = _lib.lib["keel_tensor_wrap"]
_wrap.restype = c_void_p
_wrap.argtypes = _lib.lib.keel_tensor_wrap.argtypes[:-1] + [c_void_p]
_c_char = ctypes.c_char
_addressof = ctypes.addressof
_PTR = ctypes.sizeof(c_void_p)

lib = _lib.lib

MODES = {"fresh": 0, "preallocated": 1, "persistent": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}
DEVICES = {"cpu": 0, "sim": 1}
POLICIES = ("detach", "raise", "overwrite")
_FRESH, _PREALLOCATED, _PERSISTENT = 0, 1, 2

_OPTION_FIELDS = {"async_": "async_", "prefault": "prefault", "plan_cache_size": "plan_cache_size",
                  "pool_limit_bytes": "pool_limit_bytes", "max_inflight": "max_inflight",
                  "num_threads": "num_threads", "sim_alloc_delay_us": "sim_alloc_delay_us",
                  "sim_free_delay_us": "sim_free_delay_us", "sim_copy_gbps": "sim_copy_gbps"}


def _mode_code(mode):
    if isinstance(mode, str) and mode.lower() in MODES:
        return MODES[mode.lower()]
    raise InvalidArgumentError("output_mode must be one of %s, got %r" % (sorted(MODES), mode))


def _options(device, output_mode, options):
    opt = _lib.ModuleOptions()
    lib.keel_module_options_init(byref(opt))
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise InvalidArgumentError("device must be one of %s, got %r" % (sorted(DEVICES), device))
    opt.device = DEVICES[device.lower()]
    opt.output_mode = _mode_code(output_mode)
    for k, v in options.items():
        if k == "async":
            k = "async_"
        if k not in _OPTION_FIELDS:
            raise InvalidArgumentError("unknown module option %r (known: %s)" % (k, sorted(_OPTION_FIELDS)))
        if v is None:
            continue
        try:
            setattr(opt, _OPTION_FIELDS[k], int(v) if k not in ("sim_alloc_delay_us", "sim_free_delay_us",
                                                                 "sim_copy_gbps") else float(v))
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidArgumentError("module option %s: %s" % (k, e)) from None
    return opt


def _stats_dict(fn, h):
    st = _lib.ModuleStats()
    fn(h, byref(st))
    return {f: int(getattr(st, f)) for f in _lib.STATS_FIELDS}


class Module:
    """keel.Module(engine, device="cpu", output_mode="fresh", persistent_policy="detach", **options)

    Per-caller execution state over an engine (an Engine, or a path or bytes to load one). Call it with
    inputs in graph order, by keyword, or as one dict; it returns a keel.Tensor, or a tuple for several
    outputs (a bound output returns the bound array itself). Options (module.h): async_, prefault,
    plan_cache_size, pool_limit_bytes, max_inflight, num_threads, sim_alloc_delay_us, sim_free_delay_us,
    sim_copy_gbps.

    persistent_policy decides what a PERSISTENT call does when an output of the previous call is still
    referenced from Python (a Tensor, a NumPy view of it, or a DLPack export):
      "detach"    (default) the module lets go of those buffers: they stay valid and unchanged, and this
                  call writes into other buffers (from the module's pool; no allocation in steady state);
      "raise"     raise InvalidArgumentError before running: drop or copy the previous outputs first;
      "overwrite" keel's C contract: the buffers are overwritten in place; the old Tensor objects are marked
                  stale (using them raises), NumPy views already made see the new values.
    """

    def __reduce_ex__(self, protocol):
        # two Python objects over one keel handle would free it twice
        raise TypeError("%s cannot be copied or pickled" % type(self).__name__)

    def __init__(self, engine, device="cpu", output_mode="fresh", persistent_policy="detach", **options):
        self._h = None
        self._owned = True
        self._lock = threading.Lock()
        if not isinstance(engine, Engine):
            engine = Engine(engine)
        opt = _options(device, output_mode, options)
        out = c_void_p()
        check(lib.keel_module_create(engine.handle(), byref(opt), byref(out)))
        self._setup(engine, out.value, device, persistent_policy)

    def _setup(self, engine, handle, device, policy):
        if policy not in POLICIES:
            raise InvalidArgumentError("persistent_policy must be one of %s, got %r" % (POLICIES, policy))
        self.engine = engine
        self._h = handle
        self.device = device.lower()
        self._mode = lib.keel_module_output_mode(handle)
        self.persistent_policy = policy
        self._last = []  # weakrefs to the Tensors of the last PERSISTENT call
        self._bound = {}  # output index -> the bound object
        self._names = engine.input_names
        self._dtypes = engine.input_numpy_dtypes
        self._n_out = len(engine.outputs)
        self._ins = (c_void_p * max(len(self._names), 1))()  # reused under the lock
        self._outs = (c_void_p * max(self._n_out, 1))()

    @classmethod
    def _borrowed(cls, engine, handle, device, policy):
        m = cls.__new__(cls)
        m._owned = False
        m._lock = threading.Lock()
        m._setup(engine, handle, device, policy)
        return m

    # -------------------------------------------------------------------------------------------- lifetime
    def close(self):
        """Destroy the module (waits for its calls). Tensors already returned stay valid."""
        if not self._owned:
            raise InvalidArgumentError("this module belongs to a ModulePool: release it to the pool instead")
        with self._lock:
            h, self._h = self._h, None
            self._bound.clear()
            self._last = []
            if h and self._owned:
                lib.keel_module_destroy(h)

    @property
    def closed(self):
        return self._h is None

    def __del__(self, _finalizing=sys.is_finalizing):
        if getattr(self, "_owned", False) and getattr(self, "_h", None) and not _finalizing():
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        h = self._h
        if not h:
            raise InvalidArgumentError("module is closed")
        return h

    # -------------------------------------------------------------------------------------------- calls
    def __call__(self, *inputs, **named):
        if named or (len(inputs) == 1 and type(inputs[0]) is dict):
            inputs = order_inputs(self._names, inputs, named)
        n_in = len(inputs)
        names = self._names
        with self._lock:
            h = self._h
            if not h:
                raise InvalidArgumentError("module is closed")
            if self._mode == _PERSISTENT and self._last:
                self._persistent_conflict(h)
            ins = self._ins if n_in <= len(self._ins) else (c_void_p * n_in)()
            outs = self._outs
            ins_addr = _addressof(ins)
            hold = []  # inputs (and any copies of them) stay alive until forward returns
            try:
                for i, a in enumerate(inputs):
                    if type(a) is np.ndarray:
                        # fast path: a C-contiguous writable array of a keel type, wrapped in place
                        kd = _KEEL_OF_NP.get(a.dtype)
                        fl = a.flags
                        if kd is not None and fl.c_contiguous and fl.writeable and a.nbytes and a.ndim <= 8:
                            shape = a.shape
                            check(_wrap(kd, _dims(shape), len(shape), _addressof(_c_char.from_buffer(a)), a.nbytes,
                                        _NO_DELETER, None, ins_addr + i * _PTR))
                            continue
                    elif isinstance(a, (list, tuple, int, float, bool)) and i < len(names):
                        a = as_array(a, self._dtypes[i], names[i])
                    ins[i] = to_keel(a, "input '%s'" % names[i] if i < len(names) else "input %d" % i, hold)
                st = lib.keel_module_forward(h, ins, n_in, outs, self._n_out)
            finally:
                for i in range(n_in):
                    if ins[i]:
                        lib.keel_tensor_release(ins[i])
                        ins[i] = None
            if st:
                raise error_from_status(st)
            bound = self._bound
            if not bound and self._n_out == 1:
                res = [Tensor._take(outs[0])]
            else:
                res = []
                for k in range(self._n_out):
                    if k in bound:
                        lib.keel_tensor_release(outs[k])
                        res.append(bound[k])
                    else:
                        res.append(Tensor._take(outs[k]))
            if self._mode == _PERSISTENT:
                self._last = [weakref.ref(t) for t in res if type(t) is Tensor]
        return res[0] if len(res) == 1 else tuple(res)

    forward = __call__

    def _persistent_conflict(self, h):
        alive = [t for t in (r() for r in self._last) if t is not None]
        if not alive:
            self._last = []
            return
        if self.persistent_policy == "raise":
            del alive  # the traceback would keep them alive
            raise InvalidArgumentError(
                "PERSISTENT output(s) of the previous call are still referenced from Python and this call "
                "would overwrite them: drop them (del) or copy them first, or use persistent_policy='detach'")
        self._last = []
        if self.persistent_policy == "detach":
            # keel drops its persistent buffers (ours stay alive, reference-counted) and takes new ones.
            check(lib.keel_module_set_output_mode(h, _FRESH))
            check(lib.keel_module_set_output_mode(h, _PERSISTENT))
        else:
            for t in alive:
                t._stale = "a PERSISTENT output overwritten by a later call of its module"

    # -------------------------------------------------------------------------------------------- modes
    @property
    def output_mode(self):
        return MODE_NAMES[self._mode]

    @output_mode.setter
    def output_mode(self, mode):
        code = _mode_code(mode)
        with self._lock:
            check(lib.keel_module_set_output_mode(self._handle(), code))
            self._mode = code
            self._last = []

    def bind_output(self, output, array):
        """Write output `output` (index or name) into `array` (C-contiguous, writable, of the output's dtype
        and shape) on every call, which then returns `array` itself. None unbinds."""
        idx = self._output_index(output)
        with self._lock:
            h = self._handle()
            if array is None:
                check(lib.keel_module_bind_output(h, idx, None))
                self._bound.pop(idx, None)
                return
            what = "bound output '%s'" % self.engine.output_names[idx]
            if type(array) is Tensor:
                t = lib.keel_tensor_retain(array._handle(what))
            elif isinstance(array, np.ndarray):
                t = wrap_numpy(array, what, writable=True)
            elif hasattr(array, "__dlpack__"):
                t = from_dlpack(array, what)
                if t is None:
                    raise InvalidArgumentError("%s: must be C-contiguous and of a keel dtype" % what)
            else:
                raise InvalidArgumentError("%s: expected a NumPy array, a keel.Tensor or a DLPack tensor, got %s"
                                           % (what, type(array).__name__))
            try:
                check(lib.keel_module_bind_output(h, idx, t))
            finally:
                lib.keel_tensor_release(t)
            self._bound[idx] = array

    def _output_index(self, output):
        names = self.engine.output_names
        if isinstance(output, (int, np.integer)) and not isinstance(output, bool):
            if 0 <= int(output) < len(names):
                return int(output)
            raise InvalidArgumentError("output index %d out of range (the model has %d outputs)"
                                       % (output, len(names)))
        if isinstance(output, str) and output in names:
            return names.index(output)
        raise InvalidArgumentError("unknown output %r; the model's outputs are %s" % (output, names))

    # -------------------------------------------------------------------------------------------- stats
    @property
    def stats(self):
        """Cumulative statistics (keel_module_get_stats) as a dict."""
        with self._lock:
            return _stats_dict(lib.keel_module_get_stats, self._handle())

    @property
    def last_call_stats(self):
        """The last call's statistics (keel_module_get_last_call_stats) as a dict."""
        with self._lock:
            return _stats_dict(lib.keel_module_get_last_call_stats, self._handle())

    def reset_stats(self):
        with self._lock:
            lib.keel_module_reset_stats(self._handle())

    def trim(self):
        """Free idle pooled buffers and cached plans other than the current one."""
        with self._lock:
            lib.keel_module_trim(self._handle())

    def __repr__(self):
        return "keel.Module(device=%r, output_mode=%r%s)" % (self.device, MODE_NAMES.get(self._mode),
                                                             ", closed" if self.closed else "")



class ModulePool:
    """keel.ModulePool(engine, size=os.cpu_count(), device="cpu", output_mode="fresh", **options)

    Modules over one engine for concurrent callers (keel_module_pool). `pool(x)` runs on a free module
    (blocking, with the GIL released, until one is free); `with pool.module() as m:` holds one for several
    calls. Safe from any number of Python threads."""

    def __reduce_ex__(self, protocol):
        # two Python objects over one keel handle would free it twice
        raise TypeError("%s cannot be copied or pickled" % type(self).__name__)

    def __init__(self, engine, size=None, device="cpu", output_mode="fresh", persistent_policy="detach",
                 **options):
        self._h = None
        if not isinstance(engine, Engine):
            engine = Engine(engine)
        if size is None:
            size = os.cpu_count() or 1
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise InvalidArgumentError("pool size must be a positive integer, got %r" % (size,))
        if persistent_policy not in POLICIES:
            raise InvalidArgumentError("persistent_policy must be one of %s, got %r" % (POLICIES, persistent_policy))
        opt = _options(device, output_mode, options)
        out = c_void_p()
        check(lib.keel_module_pool_create(engine.handle(), int(size), byref(opt), byref(out)))
        self._h = out.value
        self.engine = engine
        self.size = int(size)
        self._device = device
        self._policy = persistent_policy
        self._lock = threading.Lock()
        self._wrappers = {}
        self._out = 0  # modules acquired (or being acquired) and not yet released
        self._acquired = set()

    def acquire(self):
        """A free module (blocks until one is). Give it back with release()."""
        with self._lock:
            if not self._h:
                raise InvalidArgumentError("module pool is closed")
            h = self._h
            self._out += 1  # counted before blocking, so close() cannot free the pool under us
        mh = lib.keel_module_pool_acquire(h)
        with self._lock:
            self._acquired.add(mh)
            m = self._wrappers.get(mh)
            if m is None:
                m = self._wrappers[mh] = Module._borrowed(self.engine, mh, self._device, self._policy)
        return m

    def release(self, module):
        with self._lock:
            if not self._h or self._wrappers.get(module._h) is not module or module._h not in self._acquired:
                raise InvalidArgumentError("module is not acquired from this (open) pool")
            self._acquired.remove(module._h)
            self._out -= 1
            lib.keel_module_pool_release(self._h, module._h)

    def module(self):
        """Context manager: `with pool.module() as m: m(x); m(y)`."""
        pool = self

        class _Session:
            def __enter__(self):
                self.m = pool.acquire()
                return self.m

            def __exit__(self, *exc):
                pool.release(self.m)

        return _Session()

    def __call__(self, *inputs, **named):
        m = self.acquire()
        try:
            return m(*inputs, **named)
        finally:
            self.release(m)

    def close(self):
        """Destroy the pool and its modules; refused while a module is acquired."""
        with self._lock:
            if not self._h:
                return
            if self._out:
                raise InvalidArgumentError("module pool is in use (%d module(s) acquired)" % self._out)
            h, self._h = self._h, None
            for m in self._wrappers.values():
                with m._lock:
                    m._h = None
                    m._bound.clear()
            self._wrappers.clear()
            lib.keel_module_pool_destroy(h)

    def __del__(self, _finalizing=sys.is_finalizing):
        if getattr(self, "_h", None) and not _finalizing():
            try:
                self.close()
            except InvalidArgumentError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
