"""Loading keel: the shared library (through ctypes) and the extension module keel._keelc.

The shared library is found, in order: the KEEL_LIBRARY environment variable (a path to libkeel.so),
the copy installed inside this package by `pip install .`, then a development build of the repository
(build*/libkeel.so next to python/). ctypes serves what runs once (loading engines, creating modules and
pools); every call path goes through keel._keelc, which gets the addresses of the keel functions it needs
from this library (so both layers share one library instance) and releases the GIL while keel computes.
"""
import ctypes
import glob
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int, c_int64, c_size_t, c_uint64,
                    c_void_p)

MAX_DIMS = 8


class EngineOptions(Structure):
    _fields_ = [("optimize", c_int), ("allocator", c_void_p), ("max_model_bytes", c_uint64),
                ("max_tensor_elements", c_uint64), ("max_nodes", c_uint64), ("max_graph_depth", c_int)]


class IOInfo(Structure):
    _fields_ = [("name", c_char_p), ("dtype", c_int), ("ndim", c_int), ("dims", c_int64 * MAX_DIMS),
                ("dim_params", c_char_p * MAX_DIMS)]


class ModuleOptions(Structure):
    _fields_ = [("output_mode", c_int), ("device", c_int), ("async_", c_int), ("prefault", c_int),
                ("plan_cache_size", c_int), ("pool_limit_bytes", c_uint64), ("max_inflight", c_int),
                ("num_threads", c_int), ("allocator", c_void_p), ("sim_alloc_delay_us", c_double),
                ("sim_free_delay_us", c_double), ("sim_copy_gbps", c_double)]


STATS_FIELDS = ("calls", "failed_calls", "system_allocations", "system_frees", "bytes_allocated", "pool_hits",
                "pool_misses", "pool_bytes_idle", "bytes_held", "peak_bytes", "shape_changes",
                "plan_cache_hits", "plan_cache_misses", "prepared_used", "prepared_discarded")


class ModuleStats(Structure):
    _fields_ = [(f, c_uint64) for f in STATS_FIELDS]


# void deleter(void *data, void *user) for keel_tensor_wrap.
WRAP_DELETER = CFUNCTYPE(None, c_void_p, c_void_p)

_P = c_void_p
_PP = POINTER(c_void_p)

# name: (restype, argtypes)
_PROTOTYPES = {
    "keel_version": (c_char_p, []),
    "keel_backends": (c_char_p, []),
    "keel_status_code": (c_int, [_P]),
    "keel_status_message": (c_char_p, [_P]),
    "keel_status_free": (None, [_P]),
    "keel_code_name": (c_char_p, [c_int]),
    "keel_dtype_size": (c_size_t, [c_int]),
    "keel_dtype_name": (c_char_p, [c_int]),
    "keel_tensor_create": (_P, [c_int, POINTER(c_int64), c_int, _P, _PP]),
    "keel_tensor_wrap": (_P, [c_int, POINTER(c_int64), c_int, _P, c_size_t, WRAP_DELETER, _P, _PP]),
    "keel_tensor_from_data": (_P, [c_int, POINTER(c_int64), c_int, _P, _PP]),
    "keel_tensor_retain": (_P, [_P]),
    "keel_tensor_release": (None, [_P]),
    "keel_tensor_dtype": (c_int, [_P]),
    "keel_tensor_ndim": (c_int, [_P]),
    "keel_tensor_dims": (POINTER(c_int64), [_P]),
    "keel_tensor_nbytes": (c_size_t, [_P]),
    "keel_tensor_data": (_P, [_P]),
    "keel_tensor_device": (c_int, [_P]),
    "keel_engine_options_init": (None, [POINTER(EngineOptions)]),
    "keel_engine_load_file": (_P, [c_char_p, POINTER(EngineOptions), _PP]),
    "keel_engine_load_memory": (_P, [c_char_p, c_size_t, c_char_p, POINTER(EngineOptions), _PP]),
    "keel_engine_retain": (_P, [_P]),
    "keel_engine_release": (None, [_P]),
    "keel_engine_input_count": (c_size_t, [_P]),
    "keel_engine_output_count": (c_size_t, [_P]),
    "keel_engine_input_info": (_P, [_P, c_size_t, POINTER(IOInfo)]),
    "keel_engine_output_info": (_P, [_P, c_size_t, POINTER(IOInfo)]),
    "keel_engine_run": (_P, [_P, _PP, c_size_t, _PP, c_size_t]),
    "keel_module_options_init": (None, [POINTER(ModuleOptions)]),
    "keel_module_create": (_P, [_P, POINTER(ModuleOptions), _PP]),
    "keel_module_destroy": (None, [_P]),
    "keel_module_set_output_mode": (_P, [_P, c_int]),
    "keel_module_output_mode": (c_int, [_P]),
    "keel_module_forward": (_P, [_P, _PP, c_size_t, _PP, c_size_t]),
    "keel_module_submit": (_P, [_P, _PP, c_size_t, _PP]),
    "keel_call_wait": (_P, [_P, _PP, c_size_t]),
    "keel_module_bind_output": (_P, [_P, c_size_t, _P]),
    "keel_module_get_stats": (None, [_P, POINTER(ModuleStats)]),
    "keel_module_get_last_call_stats": (None, [_P, POINTER(ModuleStats)]),
    "keel_module_reset_stats": (None, [_P]),
    "keel_module_trim": (None, [_P]),
    "keel_module_pool_create": (_P, [_P, c_size_t, POINTER(ModuleOptions), _PP]),
    "keel_module_pool_acquire": (_P, [_P]),
    "keel_module_pool_release": (None, [_P, _P]),
    "keel_module_pool_destroy": (None, [_P]),
}


def _candidates():
    env = os.environ.get("KEEL_LIBRARY")
    if env:
        return [env]  # explicit: no silent fallback to another build
    here = os.path.dirname(os.path.abspath(__file__))
    out = [os.path.join(here, "libkeel.so")]
    repo = os.path.dirname(os.path.dirname(here))  # python/keel -> repository root (development checkout)
    out += sorted(glob.glob(os.path.join(repo, "build", "libkeel.so")))
    out += sorted(glob.glob(os.path.join(repo, "build-*", "libkeel.so")), key=os.path.getmtime, reverse=True)
    return out


def _load():
    tried = []
    for path in _candidates():
        if not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        lib = ctypes.CDLL(path)
        for name, (res, args) in _PROTOTYPES.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        return lib, path
    raise ImportError("keel: cannot find libkeel.so; set KEEL_LIBRARY or run `pip install .` "
                      "(tried: " + ", ".join(tried) + ")")


lib, path = _load()

try:
    from . import _keelc
except ImportError as e:  # a development checkout where the extension was not built yet
    raise ImportError("keel: the extension module keel._keelc is missing (%s); run `pip install .`, or "
                      "`python3 setup.py build_ext --inplace` in the repository" % e) from None

_keelc._bind({name: ctypes.cast(getattr(lib, name), c_void_p).value for name in _keelc._names()})
