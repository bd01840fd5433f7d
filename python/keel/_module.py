"""keel.Module and keel.ModulePool: the runtime module (include/keel/module.h, docs/RUNTIME.md).

The call path (module(...), module.submit(...), call.wait()) is compiled: keel._keelc.ModuleCore, the base
class of Module. What runs once (creating modules, options) uses the ctypes layer."""
import os
import sys
import threading
from ctypes import byref, c_void_p

import numpy as np

from . import _lib
from ._engine import Engine
from ._errors import InvalidArgumentError, check
from ._tensor import Tensor

lib = _lib.lib
_keelc = _lib._keelc

MODES = {"fresh": 0, "preallocated": 1, "persistent": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}
DEVICES = {"cpu": 0, "sim": 1}
POLICIES = ("detach", "raise", "overwrite")

_OPTION_FIELDS = {"async_": "async_", "prefault": "prefault", "plan_cache_size": "plan_cache_size",
                  "pool_limit_bytes": "pool_limit_bytes", "max_inflight": "max_inflight",
                  "num_threads": "num_threads", "sim_alloc_delay_us": "sim_alloc_delay_us",
                  "sim_free_delay_us": "sim_free_delay_us", "sim_copy_gbps": "sim_copy_gbps"}


def _mode_code(mode):
    if isinstance(mode, str) and mode.lower() in MODES:
        return MODES[mode.lower()]
    raise InvalidArgumentError("output_mode must be one of %s, got %r" % (sorted(MODES), mode))


def _policy_code(policy):
    if policy not in POLICIES:
        raise InvalidArgumentError("persistent_policy must be one of %s, got %r" % (POLICIES, policy))
    return POLICIES.index(policy)


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


class Module(_keelc.ModuleCore):
    """keel.Module(engine, device="cpu", output_mode="fresh", persistent_policy="detach", **options)

    Per-caller execution state over an engine (an Engine, or a path or bytes to load one). Call it with
    inputs in graph order, by keyword, or as one dict; it returns a keel.Tensor, or a tuple for several
    outputs (a bound output returns the bound array itself). `module.submit(...)` starts a call and returns
    a keel.Call whose wait() returns the outputs. Options (module.h): async_, prefault, plan_cache_size,
    pool_limit_bytes, max_inflight, num_threads, sim_alloc_delay_us, sim_free_delay_us, sim_copy_gbps.

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
        if not isinstance(engine, Engine):
            engine = Engine(engine)
        policy = _policy_code(persistent_policy)
        opt = _options(device, output_mode, options)
        out = c_void_p()
        check(lib.keel_module_create(engine.handle(), byref(opt), byref(out)))
        try:
            self._setup(engine, out.value, True, device, opt.output_mode, policy)
        except BaseException:
            lib.keel_module_destroy(out.value)  # (e.g. __init__ called twice): the new handle is not ours
            raise

    def _setup(self, engine, handle, owned, device, mode, policy):
        self.engine = engine
        self.device = device.lower()
        self._owned = owned
        self._init_core(handle, owned, list(engine.input_names), tuple(engine.input_numpy_dtypes),
                        engine._input_codes, len(engine.outputs), mode, policy)

    @classmethod
    def _borrowed(cls, engine, handle, device, mode, policy):
        m = cls.__new__(cls)
        m._setup(engine, handle, False, device, mode, policy)
        return m

    # -------------------------------------------------------------------------------------------- lifetime
    def close(self):
        """Destroy the module (waits for its calls). Tensors already returned stay valid; calls submitted
        and not yet waited for raise on wait()."""
        if not getattr(self, "_owned", True):
            raise InvalidArgumentError("this module belongs to a ModulePool: release it to the pool instead")
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        h = self._h
        if not h:
            raise InvalidArgumentError("module is closed")
        return h

    forward = _keelc.ModuleCore.__call__

    @property
    def persistent_policy(self):
        return POLICIES[self._policy]

    @persistent_policy.setter
    def persistent_policy(self, policy):
        self._policy = _policy_code(policy)

    # -------------------------------------------------------------------------------------------- modes
    @property
    def output_mode(self):
        return MODE_NAMES[self._mode]

    @output_mode.setter
    def output_mode(self, mode):
        self._set_mode(_mode_code(mode))

    def bind_output(self, output, array):
        """Write output `output` (index or name) into `array` (C-contiguous, writable, of the output's dtype
        and shape) on every call, which then returns `array` itself. None unbinds."""
        idx = self._output_index(output)
        name = self.engine.output_names[idx]
        if array is not None:
            what = "bound output '%s'" % name
            if isinstance(array, np.ndarray):
                if not array.dtype.isnative:
                    raise InvalidArgumentError("%s: byte-swapped array (%s) cannot be written in place"
                                               % (what, array.dtype))
                if not array.flags.c_contiguous:
                    raise InvalidArgumentError("%s: array is not C-contiguous and cannot be written in place" % what)
                if not array.flags.writeable:
                    raise InvalidArgumentError("%s: array is read-only" % what)
            elif type(array) is not Tensor and not hasattr(array, "__dlpack__"):
                raise InvalidArgumentError("%s: expected a NumPy array, a keel.Tensor or a DLPack tensor, got %s"
                                           % (what, type(array).__name__))
        self._bind_output(idx, array, name)

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
        return dict(zip(_lib.STATS_FIELDS, self._stats(False)))

    @property
    def last_call_stats(self):
        """The last call's statistics (keel_module_get_last_call_stats) as a dict."""
        return dict(zip(_lib.STATS_FIELDS, self._stats(True)))

    def reset_stats(self):
        self._reset_stats()

    def trim(self):
        """Free idle pooled buffers and cached plans other than the current one."""
        self._trim()

    def __repr__(self):
        return "keel.Module(device=%r, output_mode=%r%s)" % (getattr(self, "device", "?"),
                                                             MODE_NAMES.get(self._mode),
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
        policy = _policy_code(persistent_policy)
        opt = _options(device, output_mode, options)
        out = c_void_p()
        check(lib.keel_module_pool_create(engine.handle(), int(size), byref(opt), byref(out)))
        self._h = out.value
        self.engine = engine
        self.size = int(size)
        self._device = device
        self._mode = opt.output_mode
        self._policy = policy
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
                m = self._wrappers[mh] = Module._borrowed(self.engine, mh, self._device, self._mode, self._policy)
        return m

    def release(self, module):
        with self._lock:
            if not self._h or self._wrappers.get(module._h) is not module or module._h not in self._acquired:
                raise InvalidArgumentError("module is not acquired from this (open) pool")
            if module._pending:
                raise InvalidArgumentError("module has %d submitted call(s) not yet waited for" % module._pending)
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
                m._detach()
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
