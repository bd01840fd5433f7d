"""Tensors across the Python boundary, without copies (the work is in keel/_keelc.c).

Inputs: NumPy arrays are wrapped over their own buffer (the buffer protocol); objects with __dlpack__
(torch, JAX, CuPy host arrays...) are consumed as DLPack capsules and wrapped the same way; a keel.Tensor
is passed as itself. A copy is made only for non-contiguous data, non-native byte order, or a type keel
cannot wrap directly: those rare cases come back here (`convert`), where NumPy makes the copy.

Outputs: keel.Tensor (keel._keelc.Tensor) holds one reference to a keel tensor and releases it when it
dies. NumPy views it without a copy (buffer protocol; __array_interface__ too), the view keeping the
Tensor alive; __dlpack__ exports a DLManagedTensor whose deleter drops the reference.
"""
import numpy as np

from . import _lib
from ._errors import InvalidArgumentError, UnsupportedError, make_error

_keelc = _lib._keelc
lib = _lib.lib
Tensor = _keelc.Tensor
Call = _keelc.Call

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
    the one-byte narrow types (float8, int4, ...) as uint8 (int8 for the signed int4/int2). None for the
    types with no flat representation (string) and codes this package does not know."""
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


def convert(x, what, dtype, from_dlpack, declared_code):
    """The slow path of keel._keelc's input conversion: a C-contiguous, native-order ndarray of a keel dtype
    holding x's values (a copy only where the fast path could not wrap x), or an exception."""
    if declared_code == STRING:
        raise UnsupportedError("%s: the model declares a string tensor; keel's Python package does not pass "
                               "string inputs yet" % what)
    if from_dlpack:
        try:  # strided or an unusual dtype: let NumPy import it, then copy
            a = np.from_dlpack(x)
        except Exception as e:
            raise InvalidArgumentError("%s: cannot import through DLPack: %s" % (what, e)) from None
    elif isinstance(x, (list, tuple, int, float, bool)) and dtype is not None:
        try:
            a = np.asarray(x, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidArgumentError("%s: %s" % (what, e)) from None
    else:
        try:
            a = np.asarray(x)  # zero-copy for __array_interface__ and buffer-protocol objects
        except Exception as e:
            raise InvalidArgumentError("%s: cannot convert %s to an array: %s" % (what, type(x).__name__, e)) \
                from None
    if a.ndim > _lib.MAX_DIMS:
        raise InvalidArgumentError("%s: rank %d exceeds keel's maximum of %d dimensions" % (what, a.ndim,
                                                                                           _lib.MAX_DIMS))
    if _KEEL_OF_NP.get(a.dtype) is None:
        if a.dtype.kind in "biufc" and not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        if _KEEL_OF_NP.get(a.dtype) is None:
            raise InvalidArgumentError("%s: NumPy dtype %s has no keel equivalent" % (what, a.dtype))
    return np.ascontiguousarray(a)


def order_inputs(names, args, named):
    """Positional inputs in graph order, or by name (keywords, or one dict)."""
    named = named or {}
    if len(args) == 1 and isinstance(args[0], dict) and not named:
        named, args = args[0], ()
    if not named:
        return list(args)
    if args:
        raise InvalidArgumentError("pass inputs either positionally or by name, not both")
    unknown = [k for k in named if k not in names]
    if unknown:
        raise InvalidArgumentError("unknown input name(s) %s; the model's inputs are %s" % (unknown, list(names)))
    missing = [n for n in names if n not in named]
    if missing:
        raise InvalidArgumentError("missing input(s) %s" % missing)
    return [named[n] for n in names]


_keelc._init(make_error, convert, order_inputs, tuple(numpy_dtype(c) for c in range(32)), np.ndarray, np.asarray)
