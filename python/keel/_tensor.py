"""Tensors across the Python boundary, without copies.

Inputs: NumPy arrays (and anything NumPy views without a copy through __array_interface__ or the buffer
protocol) are wrapped with keel_tensor_wrap over their own buffer; objects with __dlpack__ (torch, JAX,
CuPy host arrays...) are consumed as DLPack capsules and wrapped the same way. The wrapped tensor's deleter
drops the Python reference, so the buffer lives exactly as long as keel may read it. A copy is made only
for non-contiguous data, non-native byte order, or a type keel cannot wrap directly.

Outputs: keel.Tensor holds one reference to a keel tensor and releases it when it dies. NumPy views it
without a copy (__array_interface__ points at the keel buffer and NumPy keeps the Tensor as the view's
base); __dlpack__ exports a hand-built DLManagedTensor whose deleter drops the reference.
"""
import ctypes
import itertools
import sys
from ctypes import CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_int, c_int32, c_int64, c_uint8, c_uint16, \
    c_uint32, c_uint64, c_void_p

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError, check

lib = _lib.lib

# keel_dtype values (include/keel/dtype.h).
FLOAT32, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL, FLOAT16, FLOAT64, UINT32, UINT64, \
    COMPLEX64, COMPLEX128, BFLOAT16 = range(1, 17)

_DTYPE_NAMES = {}


def dtype_name(code):
    name = _DTYPE_NAMES.get(code)
    if name is None:
        name = _DTYPE_NAMES[code] = lib.keel_dtype_name(code).decode()
    return name


_NP_OF_KEEL = {FLOAT32: np.float32, UINT8: np.uint8, INT8: np.int8, UINT16: np.uint16, INT16: np.int16,
               INT32: np.int32, INT64: np.int64, BOOL: np.bool_, FLOAT16: np.float16, FLOAT64: np.float64,
               UINT32: np.uint32, UINT64: np.uint64, COMPLEX64: np.complex64, COMPLEX128: np.complex128}
_KEEL_OF_NP = {np.dtype(v): k for k, v in _NP_OF_KEEL.items()}


def numpy_dtype(code):
    """NumPy dtype of a keel dtype. Types NumPy lacks are shown as their stored bits: bfloat16 as uint16,
    the one-byte narrow types (float8, int4, ...) as uint8 (int8 for the signed int4/int2)."""
    t = _NP_OF_KEEL.get(code)
    if t is not None:
        return np.dtype(t)
    if code == BFLOAT16:
        return np.dtype(np.uint16)
    if code in (22, 26):  # int4, int2: stored sign-extended
        return np.dtype(np.int8)
    if 17 <= code <= 26:
        return np.dtype(np.uint8)
    return None


# ---------------------------------------------------------------------------------------------------- DLPack
class DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


DL_DELETER = CFUNCTYPE(None, c_void_p)


class DLManagedTensor(Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", DL_DELETER)]


class DLPackVersion(Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLManagedTensorVersioned(Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", c_void_p), ("deleter", DL_DELETER),
                ("flags", c_uint64), ("dl_tensor", DLTensor)]


class _Export(Structure):  # one allocation: the managed tensor and the shape it points at
    _fields_ = [("mt", DLManagedTensor), ("shape", c_int64 * _lib.MAX_DIMS)]


class _ExportVersioned(Structure):
    _fields_ = [("mt", DLManagedTensorVersioned), ("shape", c_int64 * _lib.MAX_DIMS)]


KDL_CPU, KDL_CUDA_HOST = 1, 3
DL_INT, DL_UINT, DL_FLOAT, DL_BFLOAT, DL_COMPLEX, DL_BOOL = 0, 1, 2, 4, 5, 6
_DL_OF_KEEL = {FLOAT32: (DL_FLOAT, 32), UINT8: (DL_UINT, 8), INT8: (DL_INT, 8), UINT16: (DL_UINT, 16),
               INT16: (DL_INT, 16), INT32: (DL_INT, 32), INT64: (DL_INT, 64), BOOL: (DL_BOOL, 8),
               FLOAT16: (DL_FLOAT, 16), FLOAT64: (DL_FLOAT, 64), UINT32: (DL_UINT, 32), UINT64: (DL_UINT, 64),
               COMPLEX64: (DL_COMPLEX, 64), COMPLEX128: (DL_COMPLEX, 128), BFLOAT16: (DL_BFLOAT, 16),
               # DLPack 1.1 float8 codes
               17: (10, 8), 18: (11, 8), 19: (12, 8), 20: (13, 8), 24: (14, 8)}
_KEEL_OF_DL = {v: k for k, v in _DL_OF_KEEL.items()}


def _dl_of_keel(code):
    r = _DL_OF_KEEL.get(code)
    if r is None:  # int4/int2 stored as sign-extended bytes, the rest as raw codes
        r = (DL_INT, 8) if code in (22, 26) else (DL_UINT, 8)
    return r


_api = ctypes.pythonapi
_CAPSULE_DESTRUCTOR = CFUNCTYPE(None, c_void_p)
_capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, c_void_p, c_char_p, _CAPSULE_DESTRUCTOR)(
    ("PyCapsule_New", _api))
_capsule_is_valid = ctypes.PYFUNCTYPE(c_int, ctypes.py_object, c_char_p)(("PyCapsule_IsValid", _api))
_capsule_get = ctypes.PYFUNCTYPE(c_void_p, ctypes.py_object, c_char_p)(("PyCapsule_GetPointer", _api))
_capsule_set_name = ctypes.PYFUNCTYPE(c_int, ctypes.py_object, c_char_p)(("PyCapsule_SetName", _api))
# The destructor gets a dying capsule: raw pointers only, no new references to it.
_capsule_is_valid_raw = ctypes.PYFUNCTYPE(c_int, c_void_p, c_char_p)(("PyCapsule_IsValid", _api))
_capsule_get_raw = ctypes.PYFUNCTYPE(c_void_p, c_void_p, c_char_p)(("PyCapsule_GetPointer", _api))

_NAME = b"dltensor"
_NAME_V = b"dltensor_versioned"
_USED = b"used_dltensor"
_USED_V = b"used_dltensor_versioned"

# Live exports: address of the managed tensor -> (ctypes struct, Tensor). The Tensor (and so its keel
# reference) stays alive until the consumer calls the deleter.
_exports = {}


def _export_deleter(addr):
    _exports.pop(addr, None)


_EXPORT_DELETER = DL_DELETER(_export_deleter)


def _capsule_destructor(cap):
    # A capsule nobody consumed still owns its tensor (DLPack spec): run the deleter.
    for name in (_NAME, _NAME_V):
        if _capsule_is_valid_raw(cap, name):
            _export_deleter(_capsule_get_raw(cap, name))
            return


_CAPSULE_DESTRUCTOR_FN = _CAPSULE_DESTRUCTOR(_capsule_destructor)


class _DLOwner:
    """Holds a consumed DLPack managed tensor; calls its producer's deleter when the last user goes."""
    __slots__ = ("addr", "deleter")

    def __init__(self, addr, deleter):
        self.addr, self.deleter = addr, deleter

    def __del__(self):
        if self.deleter:
            self.deleter(self.addr)
            self.deleter = None


# ---------------------------------------------------------------------------------------------------- inputs
# Python references that wrapped keel tensors keep: key -> object. keel's deleter (any thread; ctypes takes
# the GIL) drops the entry when its last reference goes.
_keepalive = {}
_keys = itertools.count(1)


def _wrap_release(data, user):
    _keepalive.pop(user, None)


_WRAP_DELETER = _lib.WRAP_DELETER(_wrap_release)


_dims_cache = {}
_c_char = ctypes.c_char
_addressof = ctypes.addressof


def _dims(shape):
    d = _dims_cache.get(shape)
    if d is None:
        if len(_dims_cache) > 1024:
            _dims_cache.clear()
        d = _dims_cache[shape] = (c_int64 * len(shape))(*shape)
    return d


def wrap_buffer(kdtype, shape, ptr, nbytes, owner, hold=None):
    """A keel tensor over `ptr`. With `hold` (a list) the caller keeps `owner` alive until the call ends
    and keel's tensor carries no deleter (the module contract: no output aliases an input, and nothing
    reads an input after forward returns). Without, the tensor keeps `owner` alive through its deleter
    for as long as keel holds it. Returns the handle (the caller releases it)."""
    ndim = len(shape)
    if ndim > _lib.MAX_DIMS:
        raise InvalidArgumentError("rank %d exceeds keel's maximum of %d dimensions" % (ndim, _lib.MAX_DIMS))
    out = c_void_p()
    if hold is not None:
        hold.append(owner)
        check(lib.keel_tensor_wrap(kdtype, _dims(shape), ndim, ptr, nbytes, _NO_DELETER, None, byref(out)))
        return out.value
    key = next(_keys)
    _keepalive[key] = owner
    st = lib.keel_tensor_wrap(kdtype, _dims(shape), ndim, ptr, nbytes, _WRAP_DELETER, key, byref(out))
    if st:
        _keepalive.pop(key, None)
        check(st)
    return out.value


_NO_DELETER = _lib.WRAP_DELETER()


def wrap_numpy(a, what, writable=False, hold=None):
    """Wrap a NumPy array (zero-copy if C-contiguous, native order and of a keel type)."""
    kd = _KEEL_OF_NP.get(a.dtype)
    if kd is None:
        if a.dtype.kind in "biufc" and not a.dtype.isnative:
            if writable:
                raise InvalidArgumentError("%s: byte-swapped array (%s) cannot be written in place"
                                           % (what, a.dtype))
            a = a.astype(a.dtype.newbyteorder("="))
            kd = _KEEL_OF_NP.get(a.dtype)
        if kd is None:
            raise InvalidArgumentError("%s: NumPy dtype %s has no keel equivalent" % (what, a.dtype))
    if not a.flags.c_contiguous:
        if writable:
            raise InvalidArgumentError("%s: array is not C-contiguous and cannot be written in place" % what)
        a = np.ascontiguousarray(a)
    if a.flags.writeable and a.nbytes:
        ptr = _addressof(_c_char.from_buffer(a))  # the cheapest way to the address (0.25 us, not 0.8)
    else:
        if writable:
            raise InvalidArgumentError("%s: array is read-only" % what)
        ptr = a.ctypes.data
    return wrap_buffer(kd, a.shape, ptr, a.nbytes, a, hold)


def _dl_contiguous(dl, shape):
    if not dl.strides:
        return True
    expect = 1
    for i in range(len(shape) - 1, -1, -1):
        if shape[i] != 1 and dl.strides[i] != expect:
            return False
        expect *= shape[i]
    return True


def _consume_dlpack(x):
    try:
        cap = x.__dlpack__(max_version=(1, 0))
    except TypeError:  # producer predates DLPack 1.0
        cap = x.__dlpack__()
    if _capsule_is_valid(cap, _NAME_V):
        addr = _capsule_get(cap, _NAME_V)
        mt = DLManagedTensorVersioned.from_address(addr)
        _capsule_set_name(cap, _USED_V)
        owner = _DLOwner(addr, mt.deleter)
        if mt.version.major != 1:
            raise InvalidArgumentError("DLPack version %d.%d is not supported" % (mt.version.major,
                                                                                 mt.version.minor))
        return mt.dl_tensor, owner
    if _capsule_is_valid(cap, _NAME):
        addr = _capsule_get(cap, _NAME)
        mt = DLManagedTensor.from_address(addr)
        _capsule_set_name(cap, _USED)
        return mt.dl_tensor, _DLOwner(addr, mt.deleter)
    raise InvalidArgumentError("__dlpack__ returned something that is not a DLPack capsule")


def from_dlpack(x, what, hold=None):
    """Wrap a DLPack producer's host memory; None if it needs a copy (strided or a type keel lacks)."""
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None:
        dtype_, _ = dev()
        if int(dtype_) not in (KDL_CPU, KDL_CUDA_HOST):
            raise InvalidArgumentError("%s: tensor is on DLPack device type %d; keel reads host memory "
                                       "(move it to the CPU first)" % (what, int(dtype_)))
    dl, owner = _consume_dlpack(x)
    if dl.device.device_type not in (KDL_CPU, KDL_CUDA_HOST):
        raise InvalidArgumentError("%s: tensor is on DLPack device type %d; keel reads host memory"
                                   % (what, dl.device.device_type))
    ndim = dl.ndim
    if ndim < 0 or ndim > _lib.MAX_DIMS:
        raise InvalidArgumentError("%s: rank %d exceeds keel's maximum of %d" % (what, ndim, _lib.MAX_DIMS))
    shape = tuple(dl.shape[i] for i in range(ndim))
    kd = _KEEL_OF_DL.get((dl.dtype.code, dl.dtype.bits)) if dl.dtype.lanes == 1 else None
    if kd is None or not _dl_contiguous(dl, shape):
        return None
    n = 1
    for d in shape:
        n *= d
    nbytes = n * lib.keel_dtype_size(kd)
    ptr = (dl.data or 0) + dl.byte_offset
    return wrap_buffer(kd, shape, ptr if nbytes else (ptr or None), nbytes, owner, hold)


def to_keel(x, what, hold=None):
    """A new keel tensor handle (caller releases) over x's memory. `hold`: see wrap_buffer."""
    t = type(x)
    if t is np.ndarray:
        return wrap_numpy(x, what, False, hold)
    if t is Tensor:
        return lib.keel_tensor_retain(x._handle(what))
    if x is None:
        raise InvalidArgumentError("%s is None" % what)
    if hasattr(x, "__dlpack__") and not isinstance(x, np.ndarray):
        h = from_dlpack(x, what, hold)
        if h is not None:
            return h
        try:  # strided or an unusual dtype: let NumPy import it, then copy
            x = np.from_dlpack(x)
        except Exception as e:
            raise InvalidArgumentError("%s: cannot import through DLPack: %s" % (what, e)) from None
    try:
        a = np.asarray(x)  # zero-copy for __array_interface__ and buffer-protocol objects
    except Exception as e:
        raise InvalidArgumentError("%s: cannot convert %s to an array: %s" % (what, type(x).__name__, e)) from None
    return wrap_numpy(a, what, False, hold)


# ---------------------------------------------------------------------------------------------------- outputs
DEVICE_NAMES = {0: "cpu", 1: "sim", 2: "cuda"}
_TYPESTR = {}


class Tensor:
    """A keel output tensor. NumPy and DLPack consumers view its buffer without copying:
    `np.asarray(t)`, `np.from_dlpack(t)`, `torch.from_dlpack(t)`. The buffer lives as long as the Tensor or
    any such view. In PERSISTENT mode, see Module (docs/PYTHON.md) for what the next call does to it."""
    __slots__ = ("_h", "_shape", "_kdtype", "_stale", "__weakref__")

    def __reduce_ex__(self, protocol):
        # two Python objects over one keel handle would free it twice
        raise TypeError("%s cannot be copied or pickled" % type(self).__name__)

    def __new__(cls, *args, **kwargs):
        raise TypeError("keel.Tensor objects come from keel calls (Module, Engine.run)")

    @classmethod
    def _take(cls, handle, _new=object.__new__):
        """Takes over one reference to a keel_tensor* (an int). Attributes are read from keel lazily."""
        t = _new(cls)
        t._h = handle
        t._shape = None
        t._stale = None
        return t

    def __del__(self, _finalizing=sys.is_finalizing):
        h = self._h
        if h and not _finalizing():
            self._h = None
            lib.keel_tensor_release(h)

    def _handle(self, what="tensor"):
        if self._stale:
            raise InvalidArgumentError("%s: %s" % (what, self._stale))
        if not self._h:
            raise InvalidArgumentError("%s: released" % what)
        return self._h

    def _info(self):
        h = self._h
        self._kdtype = lib.keel_tensor_dtype(h)
        n = lib.keel_tensor_ndim(h)
        self._shape = tuple(lib.keel_tensor_dims(h)[:n]) if n else ()
        return self._shape

    @property
    def shape(self):
        return self._shape or self._info()

    @property
    def _kd(self):
        if self._shape is None:
            self._info()
        return self._kdtype

    @property
    def _ptr(self):
        return lib.keel_tensor_data(self._h)

    @property
    def device(self):
        """"cpu", or "sim" for the simulated device's (host-addressable) memory."""
        return DEVICE_NAMES.get(lib.keel_tensor_device(self._h), "unknown")

    @property
    def dtype(self):
        """NumPy dtype (see keel_dtype for bfloat16 and the narrow types, shown as their bits)."""
        return numpy_dtype(self._kd)

    @property
    def keel_dtype(self):
        """keel's dtype name ("float32", "bfloat16", ...)."""
        return dtype_name(self._kd)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return lib.keel_tensor_nbytes(self._h)

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def data_ptr(self):
        return self._ptr or 0

    @property
    def __array_interface__(self):
        h = self._h
        if self._stale or not h:
            self._handle()
        shape = self._shape or self._info()
        ts = _TYPESTR.get(self._kdtype)
        if ts is None:
            ts = _TYPESTR[self._kdtype] = numpy_dtype(self._kdtype).str
        return {"version": 3, "shape": shape, "typestr": ts, "data": (lib.keel_tensor_data(h) or 0, False)}

    def numpy(self):
        """A NumPy view of the buffer (no copy)."""
        return np.asarray(self)

    def copy(self):
        """A NumPy array holding a copy."""
        return np.array(self, copy=True)

    def __array__(self, dtype=None, copy=None):
        # NumPy prefers __array_interface__; this serves other callers of the protocol.
        a = np.asarray(self)
        if dtype is not None and a.dtype != dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __getitem__(self, idx):
        return np.asarray(self)[idx]

    def __repr__(self):
        if not self._h:
            return "keel.Tensor(released)"
        s = "keel.Tensor(%s, shape=%s, device=%s" % (self.keel_dtype, list(self.shape), self.device)
        return s + (", stale)" if self._stale else ")")

    def __dlpack_device__(self):
        return (KDL_CPU, 0)  # host-addressable (the simulated device's memory is too)

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        h = self._handle()
        if dl_device is not None and tuple(dl_device) != (KDL_CPU, 0):
            raise BufferError("keel tensors export to the CPU only")
        src = self
        if copy:
            out = c_void_p()
            n = len(self.shape)
            check(lib.keel_tensor_from_data(self._kd, (c_int64 * n)(*self.shape), n, self._ptr,
                                            byref(out)))
            src = Tensor._take(out.value)
        versioned = max_version is not None and tuple(max_version)[0] >= 1
        rec = _ExportVersioned() if versioned else _Export()
        mt = rec.mt
        dl = mt.dl_tensor
        dl.data = src._ptr
        dl.device = DLDevice(KDL_CPU, 0)
        dl.ndim = len(src.shape)
        code, bits = _dl_of_keel(src._kd)
        dl.dtype = DLDataType(code, bits, 1)
        for i, d in enumerate(src.shape):
            rec.shape[i] = d
        dl.shape = ctypes.cast(ctypes.addressof(rec.shape), POINTER(c_int64))
        dl.strides = None
        dl.byte_offset = 0
        mt.deleter = _EXPORT_DELETER
        if versioned:
            mt.version = DLPackVersion(1, 0)
            mt.flags = 0
        addr = ctypes.addressof(mt)
        _exports[addr] = (rec, src)  # src keeps the keel reference (and, for weakref checks, the Tensor)
        del h
        return _capsule_new(addr, _NAME_V if versioned else _NAME, _CAPSULE_DESTRUCTOR_FN)
