/* keel._keelc: the compiled hot path of keel's Python package.
 *
 * What runs per call lives here: turning NumPy arrays / DLPack tensors / keel Tensors into keel tensors
 * without copies, the module call (forward or submit/wait) with the GIL released, and the output type
 * (keel.Tensor: buffer protocol, __array_interface__, __dlpack__), which holds one keel reference.
 *
 * The extension does not link libkeel: keel/_lib.py loads the library (ctypes, once) and hands this module
 * the addresses of the functions it uses (_bind). So both layers share one library instance, whichever
 * file KEEL_LIBRARY names, and the extension builds from include/ alone. Rare paths (lists, byte-swapped or
 * strided arrays, error construction) call back into small Python helpers registered with _init. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keel/keel.h"

/* ------------------------------------------------------------------------------------ the keel functions */
#define KEEL_FUNCS(X)                                                                                        \
  X(keel_status_code) X(keel_status_message) X(keel_status_free) X(keel_dtype_size) X(keel_dtype_name)       \
  X(keel_tensor_wrap) X(keel_tensor_from_data) X(keel_tensor_retain) X(keel_tensor_release)                  \
  X(keel_tensor_dtype) X(keel_tensor_ndim) X(keel_tensor_dims) X(keel_tensor_nbytes) X(keel_tensor_data)     \
  X(keel_tensor_device) X(keel_engine_run) X(keel_module_forward) X(keel_module_submit) X(keel_call_wait)    \
  X(keel_module_set_output_mode) X(keel_module_bind_output) X(keel_module_get_stats)                         \
  X(keel_module_get_last_call_stats) X(keel_module_reset_stats) X(keel_module_trim) X(keel_module_destroy)

static struct {
#define X(name) __typeof__(&name) name;
  KEEL_FUNCS(X)
#undef X
} K;
static int g_bound;

/* Python helpers (keel/_tensor.py registers them with _init). */
static PyObject *g_make_error;   /* (code, message) -> exception instance */
static PyObject *g_convert;      /* (x, what, numpy dtype or None, from_dlpack, keel dtype) -> contiguous ndarray */
static PyObject *g_order_inputs; /* (names, args, named) -> list in graph order */
static PyObject *g_np_dtypes;    /* tuple: keel dtype code -> numpy dtype or None */
static PyObject *g_ndarray;      /* numpy.ndarray */
static PyObject *g_asarray;      /* numpy.asarray */
static PyObject *g_dl_kwargs;    /* {"max_version": (1, 0)} */
static PyObject *g_trace;        /* a list, or NULL: tests record how each input was wrapped */
static PyObject *g_typestr[32];  /* cached numpy typestr per keel dtype */
static Py_ssize_t g_live_keepalive, g_live_exports; /* objects keel or a DLPack consumer still holds */
static char g_empty[8];          /* data pointer for empty tensors without storage */

enum { POLICY_DETACH = 0, POLICY_RAISE = 1, POLICY_OVERWRITE = 2 };

static int finalizing(void) {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

/* ------------------------------------------------------------------------------------------------ errors */
static void raise_code_obj(int code, PyObject *msg) {
  if (!msg) return;
  if (!g_make_error) {
    PyErr_SetObject(PyExc_RuntimeError, msg);
    Py_DECREF(msg);
    return;
  }
  PyObject *exc = PyObject_CallFunction(g_make_error, "iO", code, msg);
  Py_DECREF(msg);
  if (!exc) return;
  PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_DECREF(exc);
}

static PyObject *raise_code(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
  va_end(ap);
  raise_code_obj(code, msg);
  return NULL;
}

/* Raise the exception for a non-NULL status and free it. */
static PyObject *raise_status(keel_status *s) {
  int code = (int)K.keel_status_code(s);
  const char *m = K.keel_status_message(s);
  PyObject *msg = PyUnicode_DecodeUTF8(m, (Py_ssize_t)strlen(m), "replace");
  K.keel_status_free(s);
  raise_code_obj(code, msg);
  return NULL;
}

/* What an error is about: "input 'x'", "input 2", "bound output 'y'". Built only when something fails. */
typedef struct {
  const char *kind;
  PyObject *name; /* borrowed str or NULL */
  Py_ssize_t idx;
} label;

static PyObject *label_str(const label *l) {
  if (l->name && PyUnicode_Check(l->name)) return PyUnicode_FromFormat("%s '%U'", l->kind, l->name);
  return PyUnicode_FromFormat("%s %zd", l->kind, l->idx);
}

static PyObject *raise_labeled(int code, const label *l, const char *fmt, ...) {
  PyObject *what = label_str(l);
  if (!what) return NULL;
  va_list ap;
  va_start(ap, fmt);
  PyObject *rest = PyUnicode_FromFormatV(fmt, ap);
  va_end(ap);
  if (!rest) {
    Py_DECREF(what);
    return NULL;
  }
  PyObject *msg = PyUnicode_Concat(what, rest);
  Py_DECREF(what);
  Py_DECREF(rest);
  raise_code_obj(code, msg);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------ dtypes */
static int native_little(void) {
  const uint16_t one = 1;
  return *(const uint8_t *)&one == 1;
}

/* keel dtype of a PEP 3118 format with this itemsize; 0 when keel has no such type (or byte order differs). */
static int dtype_of_format(const char *f, Py_ssize_t itemsize) {
  if (!f) f = "B";
  if (*f == '@' || *f == '=') f++;
  else if (*f == '<' || *f == '>' || *f == '!') {
    int little = *f == '<';
    if (little != native_little()) return 0;
    f++;
  }
  if (f[0] == 'Z' && f[2] == 0) {
    if (f[1] == 'f' && itemsize == 8) return KEEL_COMPLEX64;
    if (f[1] == 'd' && itemsize == 16) return KEEL_COMPLEX128;
    return 0;
  }
  if (!f[0] || f[1]) return 0;
  switch (f[0]) {
    case '?': return itemsize == 1 ? KEEL_BOOL : 0;
    case 'b': case 'h': case 'i': case 'l': case 'q': case 'n':
      return itemsize == 1 ? KEEL_INT8 : itemsize == 2 ? KEEL_INT16 : itemsize == 4 ? KEEL_INT32
             : itemsize == 8 ? KEEL_INT64 : 0;
    case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N':
      return itemsize == 1 ? KEEL_UINT8 : itemsize == 2 ? KEEL_UINT16 : itemsize == 4 ? KEEL_UINT32
             : itemsize == 8 ? KEEL_UINT64 : 0;
    case 'e': return itemsize == 2 ? KEEL_FLOAT16 : 0;
    case 'f': return itemsize == 4 ? KEEL_FLOAT32 : 0;
    case 'd': return itemsize == 8 ? KEEL_FLOAT64 : 0;
    default: return 0;
  }
}

/* Buffer format and item size of an output; NULL for dtypes with no flat representation (string,
 * undefined, codes keel added later). bfloat16 and the narrow types show their stored bits. */
static const char *format_of_dtype(int d, Py_ssize_t *itemsize) {
  const char *i64 = sizeof(long) == 8 ? "l" : "q", *u64 = sizeof(long) == 8 ? "L" : "Q";
  switch (d) {
    case KEEL_FLOAT32: *itemsize = 4; return "f";
    case KEEL_UINT8: *itemsize = 1; return "B";
    case KEEL_INT8: *itemsize = 1; return "b";
    case KEEL_UINT16: *itemsize = 2; return "H";
    case KEEL_INT16: *itemsize = 2; return "h";
    case KEEL_INT32: *itemsize = 4; return "i";
    case KEEL_INT64: *itemsize = 8; return i64;
    case KEEL_BOOL: *itemsize = 1; return "?";
    case KEEL_FLOAT16: *itemsize = 2; return "e";
    case KEEL_FLOAT64: *itemsize = 8; return "d";
    case KEEL_UINT32: *itemsize = 4; return "I";
    case KEEL_UINT64: *itemsize = 8; return u64;
    case KEEL_COMPLEX64: *itemsize = 8; return "Zf";
    case KEEL_COMPLEX128: *itemsize = 16; return "Zd";
    case KEEL_BFLOAT16: *itemsize = 2; return "H";
    case KEEL_INT4: case KEEL_INT2: *itemsize = 1; return "b";
    default:
      if (d >= KEEL_FLOAT8E4M3FN && d <= KEEL_INT2) {
        *itemsize = 1;
        return "B";
      }
      return NULL;
  }
}

/* DLPack type codes (DLDataTypeCode) <-> keel. */
enum { DL_INT = 0, DL_UINT = 1, DL_FLOAT = 2, DL_BFLOAT = 4, DL_COMPLEX = 5, DL_BOOL = 6 };

static int dtype_of_dl(uint8_t code, uint8_t bits, uint16_t lanes) {
  if (lanes != 1) return 0;
  switch (code) {
    case DL_INT:
      return bits == 8 ? KEEL_INT8 : bits == 16 ? KEEL_INT16 : bits == 32 ? KEEL_INT32 : bits == 64 ? KEEL_INT64 : 0;
    case DL_UINT:
      return bits == 8 ? KEEL_UINT8 : bits == 16 ? KEEL_UINT16 : bits == 32 ? KEEL_UINT32 : bits == 64 ? KEEL_UINT64 : 0;
    case DL_FLOAT: return bits == 16 ? KEEL_FLOAT16 : bits == 32 ? KEEL_FLOAT32 : bits == 64 ? KEEL_FLOAT64 : 0;
    case DL_BFLOAT: return bits == 16 ? KEEL_BFLOAT16 : 0;
    case DL_COMPLEX: return bits == 64 ? KEEL_COMPLEX64 : bits == 128 ? KEEL_COMPLEX128 : 0;
    case DL_BOOL: return bits == 8 ? KEEL_BOOL : 0;
    /* DLPack 1.1 float8 codes, one byte per element like keel */
    case 10: return bits == 8 ? KEEL_FLOAT8E4M3FN : 0;
    case 11: return bits == 8 ? KEEL_FLOAT8E4M3FNUZ : 0;
    case 12: return bits == 8 ? KEEL_FLOAT8E5M2 : 0;
    case 13: return bits == 8 ? KEEL_FLOAT8E5M2FNUZ : 0;
    case 14: return bits == 8 ? KEEL_FLOAT8E8M0 : 0;
    default: return 0;
  }
}

static int dl_of_dtype(int d, uint8_t *code, uint8_t *bits) {
  static const struct { int keel; uint8_t code, bits; } map[] = {
      {KEEL_FLOAT32, DL_FLOAT, 32}, {KEEL_UINT8, DL_UINT, 8},     {KEEL_INT8, DL_INT, 8},
      {KEEL_UINT16, DL_UINT, 16},   {KEEL_INT16, DL_INT, 16},     {KEEL_INT32, DL_INT, 32},
      {KEEL_INT64, DL_INT, 64},     {KEEL_BOOL, DL_BOOL, 8},      {KEEL_FLOAT16, DL_FLOAT, 16},
      {KEEL_FLOAT64, DL_FLOAT, 64}, {KEEL_UINT32, DL_UINT, 32},   {KEEL_UINT64, DL_UINT, 64},
      {KEEL_COMPLEX64, DL_COMPLEX, 64}, {KEEL_COMPLEX128, DL_COMPLEX, 128}, {KEEL_BFLOAT16, DL_BFLOAT, 16},
      {KEEL_FLOAT8E4M3FN, 10, 8},   {KEEL_FLOAT8E4M3FNUZ, 11, 8}, {KEEL_FLOAT8E5M2, 12, 8},
      {KEEL_FLOAT8E5M2FNUZ, 13, 8}, {KEEL_FLOAT8E8M0, 14, 8},     {KEEL_INT4, DL_INT, 8},
      {KEEL_INT2, DL_INT, 8},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (map[i].keel == d) {
      *code = map[i].code;
      *bits = map[i].bits;
      return 1;
    }
  if (d >= KEEL_FLOAT8E4M3FN && d <= KEEL_INT2) { /* the other narrow types: their raw bytes */
    *code = DL_UINT;
    *bits = 8;
    return 1;
  }
  return 0;
}

static const char *dtype_name(int d) {
  const char *n = K.keel_dtype_name((keel_dtype)d);
  return n ? n : "unknown";
}

/* ------------------------------------------------------------------------------------------------ DLPack */
typedef struct { int32_t device_type, device_id; } dl_device;
typedef struct { uint8_t code, bits; uint16_t lanes; } dl_dtype;
typedef struct {
  void *data;
  dl_device device;
  int32_t ndim;
  dl_dtype dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} dl_tensor;
typedef struct dl_managed {
  dl_tensor t;
  void *ctx;
  void (*deleter)(struct dl_managed *);
} dl_managed;
typedef struct dl_managed_v {
  struct { uint32_t major, minor; } version;
  void *ctx;
  void (*deleter)(struct dl_managed_v *);
  uint64_t flags;
  dl_tensor t;
} dl_managed_v;

enum { DL_CPU = 1, DL_CUDA_HOST = 3 };

static void dl_delete(void *mt, int versioned) {
  if (!mt) return;
  if (versioned) {
    dl_managed_v *v = mt;
    if (v->deleter) v->deleter(v);
  } else {
    dl_managed *m = mt;
    if (m->deleter) m->deleter(m);
  }
}

/* ------------------------------------------------------------------------------------------------ inputs */
/* What must stay alive while keel reads a wrapped input. */
enum { HOLD_NONE = 0, HOLD_BUFFER = 1, HOLD_DLPACK = 2 };
typedef struct {
  int kind;
  int dl_versioned;
  void *dl;
  Py_buffer view;
} holder;

static void holder_release(holder *h) {
  if (h->kind == HOLD_BUFFER) PyBuffer_Release(&h->view);
  else if (h->kind == HOLD_DLPACK) dl_delete(h->dl, h->dl_versioned);
  h->kind = HOLD_NONE;
}

/* keel_tensor_wrap deleter for tensors that keep their Python owner alive (Engine.run, bound outputs):
 * runs on whichever thread drops keel's last reference. */
static void keepalive_deleter(void *data, void *user) {
  (void)data;
  holder *h = user;
  if (finalizing()) return; /* the interpreter is gone: leak rather than touch it */
  PyGILState_STATE g = PyGILState_Ensure();
  holder_release(h);
  PyMem_RawFree(h);
  g_live_keepalive--;
  PyGILState_Release(g);
}

enum { CONV_KEEPALIVE = 1, CONV_WRITABLE = 2, CONV_NOCOPY = 4 };

typedef struct TensorObject TensorObject;
static PyTypeObject TensorType;
static int tensor_usable(TensorObject *t, const label *l);
static keel_tensor *tensor_handle(TensorObject *t);

static int trace(const void *ptr, const char *kind) {
  PyObject *item = Py_BuildValue("(Ks)", (unsigned long long)(uintptr_t)ptr, kind);
  if (!item) return -1;
  int r = PyList_Append(g_trace, item);
  Py_DECREF(item);
  return r;
}

/* Wrap memory described by the holder; with CONV_KEEPALIVE the tensor owns a heap copy of the holder. */
static int wrap_held(int kd, const int64_t *dims, int ndim, void *data, size_t nbytes, int flags, holder *h,
                     keel_tensor **out) {
  keel_status *s;
  if (flags & CONV_KEEPALIVE) {
    holder *heap = PyMem_RawMalloc(sizeof *heap);
    if (!heap) {
      holder_release(h);
      PyErr_NoMemory();
      return -1;
    }
    *heap = *h;
    h->kind = HOLD_NONE;
    s = K.keel_tensor_wrap((keel_dtype)kd, dims, ndim, data, nbytes, keepalive_deleter, heap, out);
    if (s) {
      holder_release(heap);
      PyMem_RawFree(heap);
      raise_status(s);
      return -1;
    }
    g_live_keepalive++;
    return 0;
  }
  s = K.keel_tensor_wrap((keel_dtype)kd, dims, ndim, data, nbytes, NULL, NULL, out);
  if (s) {
    holder_release(h);
    raise_status(s);
    return -1;
  }
  return 0;
}

/* 0: wrapped; 1: needs the Python fallback (a copy); -1: error set. */
static int from_buffer(PyObject *x, const label *l, int flags, int copied, holder *h, keel_tensor **out) {
  int req = PyBUF_RECORDS_RO | ((flags & CONV_WRITABLE) ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(x, &h->view, req) < 0) {
    if ((flags & CONV_WRITABLE) && PyErr_ExceptionMatches(PyExc_BufferError)) {
      PyErr_Clear();
      raise_labeled(KEEL_INVALID_ARGUMENT, l, ": array is read-only");
      return -1;
    }
    PyErr_Clear();
    return 1;
  }
  h->kind = HOLD_BUFFER;
  Py_buffer *v = &h->view;
  if (v->ndim > KEEL_MAX_DIMS) {
    int nd = v->ndim;
    holder_release(h);
    raise_labeled(KEEL_INVALID_ARGUMENT, l, ": rank %d exceeds keel's maximum of %d dimensions", nd, KEEL_MAX_DIMS);
    return -1;
  }
  int kd = dtype_of_format(v->format, v->itemsize);
  if (!kd || !PyBuffer_IsContiguous(v, 'C')) {
    holder_release(h);
    return 1;
  }
  int64_t dims[KEEL_MAX_DIMS];
  for (int i = 0; i < v->ndim; i++) dims[i] = (int64_t)v->shape[i];
  void *data = v->buf;
  if (g_trace && trace(data, copied ? "copy" : "buffer") < 0) {
    holder_release(h);
    return -1;
  }
  return wrap_held(kd, dims, v->ndim, data, (size_t)v->len, flags, h, out) < 0 ? -1 : 0;
}

static PyObject *call_dlpack(PyObject *x) {
  PyObject *f = PyObject_GetAttrString(x, "__dlpack__");
  if (!f) return NULL;
  PyObject *empty = PyTuple_New(0);
  if (!empty) {
    Py_DECREF(f);
    return NULL;
  }
  PyObject *cap = PyObject_Call(f, empty, g_dl_kwargs);
  if (!cap && PyErr_ExceptionMatches(PyExc_TypeError)) { /* a producer that predates DLPack 1.0 */
    PyErr_Clear();
    cap = PyObject_Call(f, empty, NULL);
  }
  Py_DECREF(empty);
  Py_DECREF(f);
  return cap;
}

static int from_dlpack(PyObject *x, const label *l, int flags, holder *h, keel_tensor **out) {
  PyObject *devf = PyObject_GetAttrString(x, "__dlpack_device__");
  if (!devf) {
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
    PyErr_Clear();
  } else {
    PyObject *dev = PyObject_CallNoArgs(devf);
    Py_DECREF(devf);
    if (!dev) return -1;
    long type = -1;
    if (PyTuple_Check(dev) && PyTuple_GET_SIZE(dev) >= 1) type = PyLong_AsLong(PyTuple_GET_ITEM(dev, 0));
    Py_DECREF(dev);
    if (type == -1 && PyErr_Occurred()) return -1;
    if (type != DL_CPU && type != DL_CUDA_HOST) {
      raise_labeled(KEEL_INVALID_ARGUMENT, l, ": tensor is on DLPack device type %ld; keel reads host memory "
                    "(move it to the CPU first)", type);
      return -1;
    }
  }
  PyObject *cap = call_dlpack(x);
  if (!cap) return -1;
  void *mt = NULL;
  int versioned = 0;
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    mt = PyCapsule_GetPointer(cap, "dltensor_versioned");
    versioned = 1;
    PyCapsule_SetName(cap, "used_dltensor_versioned");
  } else if (PyCapsule_IsValid(cap, "dltensor")) {
    mt = PyCapsule_GetPointer(cap, "dltensor");
    PyCapsule_SetName(cap, "used_dltensor");
  }
  Py_DECREF(cap);
  if (!mt) {
    raise_labeled(KEEL_INVALID_ARGUMENT, l, ": __dlpack__ returned something that is not a DLPack capsule");
    return -1;
  }
  h->kind = HOLD_DLPACK;
  h->dl = mt;
  h->dl_versioned = versioned;
  if (versioned && ((dl_managed_v *)mt)->version.major != 1) {
    unsigned maj = ((dl_managed_v *)mt)->version.major, min = ((dl_managed_v *)mt)->version.minor;
    holder_release(h);
    raise_labeled(KEEL_INVALID_ARGUMENT, l, ": DLPack version %u.%u is not supported", maj, min);
    return -1;
  }
  dl_tensor *t = versioned ? &((dl_managed_v *)mt)->t : &((dl_managed *)mt)->t;
  if (t->device.device_type != DL_CPU && t->device.device_type != DL_CUDA_HOST) {
    int type = t->device.device_type;
    holder_release(h);
    raise_labeled(KEEL_INVALID_ARGUMENT, l, ": tensor is on DLPack device type %d; keel reads host memory", type);
    return -1;
  }
  if (t->ndim < 0 || t->ndim > KEEL_MAX_DIMS) {
    int nd = t->ndim;
    holder_release(h);
    raise_labeled(KEEL_INVALID_ARGUMENT, l, ": rank %d exceeds keel's maximum of %d dimensions", nd, KEEL_MAX_DIMS);
    return -1;
  }
  int kd = dtype_of_dl(t->dtype.code, t->dtype.bits, t->dtype.lanes);
  int contiguous = 1;
  uint64_t n = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] < 0) {
      holder_release(h);
      raise_labeled(KEEL_INVALID_ARGUMENT, l, ": DLPack tensor has a negative dimension");
      return -1;
    }
    if (t->strides && t->shape[i] != 1 && (uint64_t)t->strides[i] != n) contiguous = 0;
    if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n)) {
      holder_release(h);
      raise_labeled(KEEL_INVALID_ARGUMENT, l, ": DLPack tensor is too large");
      return -1;
    }
  }
  if (!kd || !contiguous) {
    holder_release(h);
    return 1;
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(n, (uint64_t)K.keel_dtype_size((keel_dtype)kd), &nbytes) || nbytes > SIZE_MAX) {
    holder_release(h);
    raise_labeled(KEEL_INVALID_ARGUMENT, l, ": DLPack tensor is too large");
    return -1;
  }
  char *data = t->data ? (char *)t->data + t->byte_offset : NULL;
  if (g_trace && trace(data, "dlpack") < 0) {
    holder_release(h);
    return -1;
  }
  return wrap_held(kd, t->shape, t->ndim, data, (size_t)nbytes, flags, h, out) < 0 ? -1 : 0;
}

/* x as a keel tensor: *out gets a new reference, `h` what to release after the call (unless KEEPALIVE,
 * where the tensor itself keeps x alive). `declared` is the input's numpy dtype (for lists) or NULL. */
static int to_keel(PyObject *x, const label *l, PyObject *declared, int declared_code, int flags, holder *h,
                   keel_tensor **out) {
  h->kind = HOLD_NONE;
  *out = NULL;
  if (Py_TYPE(x) == &TensorType) {
    if (tensor_usable((TensorObject *)x, l) < 0) return -1;
    if (g_trace && trace(K.keel_tensor_data(tensor_handle((TensorObject *)x)), "tensor") < 0) return -1;
    *out = K.keel_tensor_retain(tensor_handle((TensorObject *)x));
    return 0;
  }
  if (x == Py_None) {
    raise_labeled(KEEL_INVALID_ARGUMENT, l, " is None");
    return -1;
  }
  int r = 1, from_dl = 0;
  if (g_ndarray && PyObject_TypeCheck(x, (PyTypeObject *)g_ndarray)) {
    r = from_buffer(x, l, flags, 0, h, out);
  } else if (!PyList_Check(x) && !PyTuple_Check(x) && !PyLong_Check(x) && !PyFloat_Check(x) &&
             PyObject_HasAttrString(x, "__dlpack__")) {
    r = from_dlpack(x, l, flags, h, out);
    from_dl = 1;
  }
  if (r <= 0) return r;
  if (flags & CONV_NOCOPY) {
    raise_labeled(KEEL_INVALID_ARGUMENT, l, ": must be C-contiguous, native byte order and of a keel dtype");
    return -1;
  }
  /* the rare cases: let NumPy convert (lists, scalars, strided, byte-swapped, other array-likes) */
  PyObject *what = label_str(l);
  if (!what) return -1;
  PyObject *a = PyObject_CallFunction(g_convert, "OOOii", x, what, declared ? declared : Py_None, from_dl,
                                      declared_code);
  Py_DECREF(what);
  if (!a) return -1;
  r = from_buffer(a, l, flags, 1, h, out);
  Py_DECREF(a); /* the held buffer keeps the copy alive */
  if (r == 1) raise_labeled(KEEL_INTERNAL, l, ": the converted array cannot be wrapped");
  return r == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------------ Tensor */
struct TensorObject {
  PyObject_HEAD
  keel_tensor *t;
  void *data;
  Py_ssize_t nbytes;
  int dtype, ndim, device;
  int stale; /* a PERSISTENT output overwritten by a later call ("overwrite" policy) */
  PyObject *weakrefs;
  Py_ssize_t shape[KEEL_MAX_DIMS], strides[KEEL_MAX_DIMS];
};

static keel_tensor *tensor_handle(TensorObject *t) { return t->t; }

/* Takes over one reference to `t` (released on failure too). */
static PyObject *tensor_take(keel_tensor *t) {
  TensorObject *o = PyObject_New(TensorObject, &TensorType);
  if (!o) {
    K.keel_tensor_release(t);
    return NULL;
  }
  o->t = t;
  o->weakrefs = NULL;
  o->stale = 0;
  o->dtype = (int)K.keel_tensor_dtype(t);
  o->device = (int)K.keel_tensor_device(t);
  o->data = K.keel_tensor_data(t);
  o->nbytes = (Py_ssize_t)K.keel_tensor_nbytes(t);
  int nd = K.keel_tensor_ndim(t);
  if (nd < 0) nd = 0;
  if (nd > KEEL_MAX_DIMS) nd = KEEL_MAX_DIMS;
  o->ndim = nd;
  const int64_t *dims = K.keel_tensor_dims(t);
  Py_ssize_t isz = 1;
  format_of_dtype(o->dtype, &isz);
  Py_ssize_t stride = isz;
  for (int i = nd - 1; i >= 0; i--) {
    o->shape[i] = (Py_ssize_t)dims[i];
    o->strides[i] = stride;
    stride *= o->shape[i] > 0 ? o->shape[i] : 1;
  }
  return (PyObject *)o;
}

static void tensor_dealloc(TensorObject *self) {
  if (self->weakrefs) PyObject_ClearWeakRefs((PyObject *)self);
  if (self->t) K.keel_tensor_release(self->t);
  self->t = NULL;
  PyObject_Free(self);
}

/* CPU memory, and the simulated device's (host-addressable): what NumPy and DLPack-on-CPU may read. */
static int tensor_on_host(TensorObject *t, PyObject *exc) {
  if (t->device == KEEL_DEVICE_CPU || t->device == KEEL_DEVICE_SIM) return 0;
  PyErr_Format(exc, "keel.Tensor lives in device memory (device kind %d): NumPy and host DLPack consumers "
               "cannot read it", t->device);
  return -1;
}

static int tensor_usable(TensorObject *t, const label *l) {
  if (t->stale) {
    if (l) raise_labeled(KEEL_INVALID_ARGUMENT, l, ": a PERSISTENT output overwritten by a later call of its module");
    else raise_code(KEEL_INVALID_ARGUMENT, "tensor: a PERSISTENT output overwritten by a later call of its module");
    return -1;
  }
  if (!t->t) {
    raise_code(KEEL_INVALID_ARGUMENT, "tensor: released");
    return -1;
  }
  return 0;
}

static int tensor_getbuffer(TensorObject *self, Py_buffer *v, int flags) {
  if (tensor_usable(self, NULL) < 0 || tensor_on_host(self, PyExc_BufferError) < 0) return -1;
  Py_ssize_t isz = 0;
  const char *fmt = format_of_dtype(self->dtype, &isz);
  if (!fmt) {
    PyErr_Format(PyExc_BufferError, "keel.Tensor of dtype %s has no buffer representation", dtype_name(self->dtype));
    return -1;
  }
  if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS) {
    int big = 0;
    for (int i = 0; i < self->ndim; i++) big += self->shape[i] > 1;
    if (big > 1) {
      PyErr_SetString(PyExc_BufferError, "keel.Tensor is C-contiguous, not Fortran-contiguous");
      return -1;
    }
  }
  v->buf = self->data ? self->data : g_empty;
  v->obj = (PyObject *)self;
  Py_INCREF(self);
  v->len = self->nbytes;
  v->readonly = 0;
  v->suboffsets = NULL;
  v->internal = NULL;
  if ((flags & PyBUF_ND) != PyBUF_ND) { /* plain bytes */
    v->itemsize = 1;
    v->ndim = 1;
    v->format = (flags & PyBUF_FORMAT) ? "B" : NULL;
    v->shape = NULL;
    v->strides = NULL;
    return 0;
  }
  v->itemsize = isz;
  v->ndim = self->ndim;
  v->format = (flags & PyBUF_FORMAT) ? (char *)fmt : NULL;
  v->shape = self->shape;
  v->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->strides : NULL;
  return 0;
}

static PyBufferProcs tensor_as_buffer = {(getbufferproc)tensor_getbuffer, NULL};

static PyObject *shape_tuple(TensorObject *self) {
  PyObject *t = PyTuple_New(self->ndim);
  if (!t) return NULL;
  for (int i = 0; i < self->ndim; i++) {
    PyObject *d = PyLong_FromSsize_t(self->shape[i]);
    if (!d) {
      Py_DECREF(t);
      return NULL;
    }
    PyTuple_SET_ITEM(t, i, d);
  }
  return t;
}

static PyObject *np_dtype_of(int code) {
  if (g_np_dtypes && code >= 0 && code < PyTuple_GET_SIZE(g_np_dtypes)) return PyTuple_GET_ITEM(g_np_dtypes, code);
  return Py_None;
}

static PyObject *t_shape(TensorObject *self, void *c) { (void)c; return shape_tuple(self); }
static PyObject *t_dtype(TensorObject *self, void *c) { (void)c; return Py_NewRef(np_dtype_of(self->dtype)); }
static PyObject *t_keel_dtype(TensorObject *self, void *c) {
  (void)c;
  return PyUnicode_FromString(dtype_name(self->dtype));
}
static PyObject *t_ndim(TensorObject *self, void *c) { (void)c; return PyLong_FromLong(self->ndim); }
static PyObject *t_nbytes(TensorObject *self, void *c) { (void)c; return PyLong_FromSsize_t(self->nbytes); }
static PyObject *t_data_ptr(TensorObject *self, void *c) {
  (void)c;
  return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)self->data);
}
static PyObject *t_size(TensorObject *self, void *c) {
  (void)c;
  long long n = 1;
  for (int i = 0; i < self->ndim; i++) n *= self->shape[i];
  return PyLong_FromLongLong(n);
}
static PyObject *t_device(TensorObject *self, void *c) {
  (void)c;
  const char *n = self->device == KEEL_DEVICE_CPU ? "cpu" : self->device == KEEL_DEVICE_SIM ? "sim"
                  : self->device == KEEL_DEVICE_CUDA ? "cuda" : "unknown";
  return PyUnicode_FromString(n);
}
static PyObject *t_stale(TensorObject *self, void *c) { (void)c; return PyBool_FromLong(self->stale); }

static PyObject *t_array_interface(TensorObject *self, void *c) {
  (void)c;
  if (tensor_usable(self, NULL) < 0 || tensor_on_host(self, PyExc_TypeError) < 0) return NULL;
  Py_ssize_t isz;
  PyObject *npd = np_dtype_of(self->dtype);
  if (!format_of_dtype(self->dtype, &isz) || npd == Py_None) {
    PyErr_Format(PyExc_TypeError, "keel.Tensor of dtype %s cannot be viewed as a NumPy array", dtype_name(self->dtype));
    return NULL;
  }
  PyObject *ts = self->dtype < 32 ? g_typestr[self->dtype] : NULL;
  if (!ts) {
    ts = PyObject_GetAttrString(npd, "str");
    if (!ts) return NULL;
    if (self->dtype < 32) g_typestr[self->dtype] = ts;
    else Py_DECREF(ts); /* (never: format_of_dtype knows codes < 32 only) */
  }
  PyObject *shape = shape_tuple(self);
  if (!shape) return NULL;
  return Py_BuildValue("{s:i,s:N,s:O,s:(NO)}", "version", 3, "shape", shape, "typestr", ts, "data",
                       PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)(self->data ? self->data : g_empty)),
                       Py_False);
}

static PyObject *t_numpy(TensorObject *self, PyObject *unused) {
  (void)unused;
  return PyObject_CallOneArg(g_asarray, (PyObject *)self);
}

static PyObject *t_copy(TensorObject *self, PyObject *unused) {
  (void)unused;
  PyObject *a = PyObject_CallOneArg(g_asarray, (PyObject *)self);
  if (!a) return NULL;
  PyObject *r = PyObject_CallMethod(a, "copy", NULL);
  Py_DECREF(a);
  return r;
}

static PyObject *t_array(TensorObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"dtype", "copy", NULL};
  PyObject *dtype = Py_None, *copy = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO", kwlist, &dtype, &copy)) return NULL;
  PyObject *a = PyObject_CallOneArg(g_asarray, (PyObject *)self);
  if (!a) return NULL;
  if (dtype != Py_None) {
    PyObject *r = PyObject_CallMethod(a, "astype", "O", dtype);
    Py_DECREF(a);
    return r;
  }
  if (copy != Py_None && PyObject_IsTrue(copy)) {
    PyObject *r = PyObject_CallMethod(a, "copy", NULL);
    Py_DECREF(a);
    return r;
  }
  return a;
}

static Py_ssize_t t_len(TensorObject *self) {
  if (self->ndim == 0) {
    PyErr_SetString(PyExc_TypeError, "len() of a 0-d tensor");
    return -1;
  }
  return self->shape[0];
}

static PyObject *t_getitem(TensorObject *self, PyObject *idx) {
  PyObject *a = PyObject_CallOneArg(g_asarray, (PyObject *)self);
  if (!a) return NULL;
  PyObject *r = PyObject_GetItem(a, idx);
  Py_DECREF(a);
  return r;
}

static PyObject *t_repr(TensorObject *self) {
  if (!self->t) return PyUnicode_FromString("keel.Tensor(released)");
  PyObject *shape = PyList_New(self->ndim);
  if (!shape) return NULL;
  for (int i = 0; i < self->ndim; i++) PyList_SET_ITEM(shape, i, PyLong_FromSsize_t(self->shape[i]));
  PyObject *dev = t_device(self, NULL);
  PyObject *r = PyUnicode_FromFormat("keel.Tensor(%s, shape=%R, device=%U%s)", dtype_name(self->dtype), shape, dev,
                                     self->stale ? ", stale" : "");
  Py_DECREF(shape);
  Py_XDECREF(dev);
  return r;
}

static PyObject *t_reduce_ex(PyObject *self, PyObject *arg) {
  (void)arg;
  return PyErr_Format(PyExc_TypeError, "%s cannot be copied or pickled", Py_TYPE(self)->tp_name);
}

static PyObject *t_handle(TensorObject *self, PyObject *args) {
  (void)args;
  if (tensor_usable(self, NULL) < 0) return NULL;
  return PyLong_FromVoidPtr(self->t);
}

static PyObject *t_dlpack_device(TensorObject *self, PyObject *unused) {
  (void)unused;
  if (self->device == KEEL_DEVICE_CUDA) return Py_BuildValue("(ii)", 2 /* kDLCUDA */, 0);
  return Py_BuildValue("(ii)", DL_CPU, 0); /* host-addressable (the simulated device's memory is too) */
}

/* One allocation per export: the managed tensor (either layout) and the shape it points at. The context
 * is the Tensor, referenced until the consumer calls the deleter, so a live export counts as a reference
 * (what PERSISTENT calls check). */
typedef struct {
  union {
    dl_managed m;
    dl_managed_v v;
  } u;
  int64_t shape[KEEL_MAX_DIMS];
} export_rec;

static void export_free(export_rec *r, void *ctx) {
  if (finalizing()) return;
  PyGILState_STATE g = PyGILState_Ensure();
  Py_XDECREF((PyObject *)ctx);
  PyMem_RawFree(r);
  g_live_exports--;
  PyGILState_Release(g);
}
static void export_deleter(dl_managed *m) { export_free((export_rec *)m, m->ctx); }
static void export_deleter_v(dl_managed_v *v) { export_free((export_rec *)v, v->ctx); }

static void capsule_destructor(PyObject *cap) {
  /* a capsule nobody consumed still owns its tensor (DLPack): run the deleter */
  PyObject *et, *ev, *tb;
  PyErr_Fetch(&et, &ev, &tb);
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    dl_managed_v *v = PyCapsule_GetPointer(cap, "dltensor_versioned");
    if (v && v->deleter) v->deleter(v);
  } else if (PyCapsule_IsValid(cap, "dltensor")) {
    dl_managed *m = PyCapsule_GetPointer(cap, "dltensor");
    if (m && m->deleter) m->deleter(m);
  }
  PyErr_Restore(et, ev, tb);
}

static PyObject *t_dlpack(TensorObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"stream", "max_version", "dl_device", "copy", NULL};
  PyObject *stream = Py_None, *max_version = Py_None, *device = Py_None, *copy = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOOO", kwlist, &stream, &max_version, &device, &copy)) return NULL;
  if (tensor_usable(self, NULL) < 0 || tensor_on_host(self, PyExc_BufferError) < 0) return NULL;
  if (device != Py_None) {
    int type = -1, id = -1;
    if (!PyArg_ParseTuple(device, "ii", &type, &id)) return NULL;
    if (type != DL_CPU || id != 0) {
      PyErr_SetString(PyExc_BufferError, "keel tensors export to the CPU only");
      return NULL;
    }
  }
  uint8_t code, bits;
  if (!dl_of_dtype(self->dtype, &code, &bits)) {
    PyErr_Format(PyExc_BufferError, "keel.Tensor of dtype %s has no DLPack representation", dtype_name(self->dtype));
    return NULL;
  }
  int versioned = 0;
  if (max_version != Py_None) {
    PyObject *major = PySequence_GetItem(max_version, 0);
    if (!major) return NULL;
    long mj = PyLong_AsLong(major);
    Py_DECREF(major);
    if (mj == -1 && PyErr_Occurred()) return NULL;
    versioned = mj >= 1;
  }
  TensorObject *src = self;
  Py_INCREF(src);
  int truthy = copy == Py_None ? 0 : PyObject_IsTrue(copy);
  if (truthy < 0) {
    Py_DECREF(src);
    return NULL;
  }
  if (truthy) {
    keel_tensor *c = NULL;
    int64_t dims[KEEL_MAX_DIMS];
    for (int i = 0; i < self->ndim; i++) dims[i] = self->shape[i];
    keel_status *s = K.keel_tensor_from_data((keel_dtype)self->dtype, dims, self->ndim, self->data, &c);
    Py_DECREF(src);
    if (s) return raise_status(s);
    src = (TensorObject *)tensor_take(c);
    if (!src) return NULL;
  }
  export_rec *r = PyMem_RawCalloc(1, sizeof *r);
  if (!r) {
    Py_DECREF(src);
    return PyErr_NoMemory();
  }
  dl_tensor *t = versioned ? &r->u.v.t : &r->u.m.t;
  t->data = src->data ? src->data : g_empty;
  t->device.device_type = DL_CPU;
  t->device.device_id = 0;
  t->ndim = src->ndim;
  t->dtype.code = code;
  t->dtype.bits = bits;
  t->dtype.lanes = 1;
  for (int i = 0; i < src->ndim; i++) r->shape[i] = src->shape[i];
  t->shape = r->shape;
  t->strides = NULL;
  t->byte_offset = 0;
  if (versioned) {
    r->u.v.version.major = 1;
    r->u.v.version.minor = 0;
    r->u.v.ctx = src;
    r->u.v.deleter = export_deleter_v;
    r->u.v.flags = 0;
  } else {
    r->u.m.ctx = src;
    r->u.m.deleter = export_deleter;
  }
  g_live_exports++;
  PyObject *cap = PyCapsule_New(r, versioned ? "dltensor_versioned" : "dltensor", capsule_destructor);
  if (!cap) {
    g_live_exports--;
    Py_DECREF(src);
    PyMem_RawFree(r);
  }
  return cap; /* src's reference moved into the export */
}

static PyGetSetDef tensor_getset[] = {
    {"shape", (getter)t_shape, NULL, "tuple of dimensions", NULL},
    {"dtype", (getter)t_dtype, NULL, "NumPy dtype (bfloat16 and narrow types as their stored bits)", NULL},
    {"keel_dtype", (getter)t_keel_dtype, NULL, "keel's dtype name", NULL},
    {"ndim", (getter)t_ndim, NULL, NULL, NULL},
    {"nbytes", (getter)t_nbytes, NULL, NULL, NULL},
    {"size", (getter)t_size, NULL, NULL, NULL},
    {"data_ptr", (getter)t_data_ptr, NULL, "address of the buffer", NULL},
    {"device", (getter)t_device, NULL, "\"cpu\", or \"sim\" for the simulated device's memory", NULL},
    {"stale", (getter)t_stale, NULL, "overwritten by a later PERSISTENT call (persistent_policy='overwrite')", NULL},
    {"__array_interface__", (getter)t_array_interface, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef tensor_methods[] = {
    {"numpy", (PyCFunction)t_numpy, METH_NOARGS, "A NumPy view of the buffer (no copy)."},
    {"copy", (PyCFunction)t_copy, METH_NOARGS, "A NumPy array holding a copy."},
    {"__array__", (PyCFunction)(void (*)(void))t_array, METH_VARARGS | METH_KEYWORDS, NULL},
    {"__dlpack__", (PyCFunction)(void (*)(void))t_dlpack, METH_VARARGS | METH_KEYWORDS, NULL},
    {"__dlpack_device__", (PyCFunction)t_dlpack_device, METH_NOARGS, NULL},
    {"__reduce_ex__", (PyCFunction)t_reduce_ex, METH_O, NULL},
    {"_handle", (PyCFunction)t_handle, METH_VARARGS, "the keel_tensor* (borrowed), for the ctypes layer"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods tensor_as_sequence = {.sq_length = (lenfunc)t_len};
static PyMappingMethods tensor_as_mapping = {.mp_length = (lenfunc)t_len, .mp_subscript = (binaryfunc)t_getitem};

static PyTypeObject TensorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "keel.Tensor",
    .tp_basicsize = sizeof(TensorObject),
    .tp_dealloc = (destructor)tensor_dealloc,
    .tp_repr = (reprfunc)t_repr,
    .tp_as_sequence = &tensor_as_sequence,
    .tp_as_mapping = &tensor_as_mapping,
    .tp_as_buffer = &tensor_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A keel output tensor. NumPy and DLPack consumers view its buffer without copying:\n"
              "np.asarray(t), np.from_dlpack(t), torch.from_dlpack(t). The buffer lives as long as the Tensor\n"
              "or any such view. In PERSISTENT mode see Module (docs/PYTHON.md) for what the next call does.",
    .tp_weaklistoffset = offsetof(TensorObject, weakrefs),
    .tp_methods = tensor_methods,
    .tp_getset = tensor_getset,
};

/* ------------------------------------------------------------------------------------------------ Module */
typedef struct {
  PyObject_HEAD
  keel_module *h;
  int ready, owned, mode, policy;
  Py_ssize_t n_in, n_out;
  PyObject *names;  /* list of input names */
  PyObject *dtypes; /* tuple of the inputs' numpy dtypes (for lists and scalars) */
  int *codes;       /* the inputs' keel dtypes */
  PyObject **last;  /* PERSISTENT: the Tensors the last call returned (strong references) */
  PyObject **bound; /* objects bound to outputs, or NULL */
  keel_tensor **outs;
  PyThread_type_lock lock;
  Py_ssize_t pending; /* submitted calls not yet waited for */
} ModuleObject;

static PyTypeObject ModuleType;

static void lock_module(ModuleObject *m) {
  if (!PyThread_acquire_lock(m->lock, NOWAIT_LOCK)) {
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(m->lock, WAIT_LOCK);
    Py_END_ALLOW_THREADS
  }
}
static void unlock_module(ModuleObject *m) { PyThread_release_lock(m->lock); }

static int check_ready(ModuleObject *m) {
  if (!m->ready) {
    raise_code(KEEL_INVALID_ARGUMENT, "module is not initialized");
    return -1;
  }
  return 0;
}

/* Drop the remembered PERSISTENT outputs into `garbage` (released after the lock is let go: a Tensor's
 * death may run weakref callbacks, which may call this module). */
static void forget_last(ModuleObject *m, PyObject **garbage, Py_ssize_t *ng) {
  for (Py_ssize_t k = 0; k < m->n_out; k++)
    if (m->last[k]) {
      garbage[(*ng)++] = m->last[k];
      m->last[k] = NULL;
    }
}

/* Before a PERSISTENT call: are the previous call's outputs still referenced from Python (the Tensor, a
 * NumPy view of it, a DLPack export)? Then apply the policy. Returns -1 with an error set. */
static int persistent_check(ModuleObject *m, PyObject **garbage, Py_ssize_t *ng) {
  int alive = 0;
  for (Py_ssize_t k = 0; k < m->n_out; k++)
    if (m->last[k] && Py_REFCNT(m->last[k]) > 1) alive++;
  if (alive) {
    if (m->policy == POLICY_RAISE) {
      raise_code(KEEL_INVALID_ARGUMENT,
                 "PERSISTENT output(s) of the previous call are still referenced from Python and this call would "
                 "overwrite them: drop them (del) or copy them first, or use persistent_policy='detach'");
      return -1;
    }
    if (m->policy == POLICY_DETACH) {
      /* keel lets go of its persistent buffers (ours stay alive, reference-counted) and takes others */
      keel_status *s = K.keel_module_set_output_mode(m->h, KEEL_OUTPUTS_FRESH);
      if (!s) s = K.keel_module_set_output_mode(m->h, KEEL_OUTPUTS_PERSISTENT);
      if (s) {
        raise_status(s);
        return -1;
      }
    } else {
      for (Py_ssize_t k = 0; k < m->n_out; k++)
        if (m->last[k] && Py_REFCNT(m->last[k]) > 1) ((TensorObject *)m->last[k])->stale = 1;
    }
  }
  forget_last(m, garbage, ng);
  return 0;
}

/* Outputs of a finished call (m->outs, owned) as Python objects; under the module lock. */
static PyObject *make_outputs(ModuleObject *m) {
  PyObject *res = NULL;
  if (m->n_out == 1 && !m->bound[0]) {
    res = tensor_take(m->outs[0]);
    m->outs[0] = NULL;
    if (res && m->mode == KEEL_OUTPUTS_PERSISTENT) m->last[0] = Py_NewRef(res);
    return res;
  }
  res = PyTuple_New(m->n_out);
  for (Py_ssize_t k = 0; k < m->n_out; k++) {
    keel_tensor *t = m->outs[k];
    m->outs[k] = NULL;
    if (!res) {
      K.keel_tensor_release(t);
      continue;
    }
    PyObject *item;
    if (m->bound[k]) {
      K.keel_tensor_release(t);
      item = Py_NewRef(m->bound[k]);
    } else {
      item = tensor_take(t);
      if (!item) {
        Py_CLEAR(res);
        continue;
      }
      if (m->mode == KEEL_OUTPUTS_PERSISTENT) m->last[k] = Py_NewRef(item);
    }
    PyTuple_SET_ITEM(res, k, item);
  }
  if (res && m->n_out == 1) {
    PyObject *one = Py_NewRef(PyTuple_GET_ITEM(res, 0));
    Py_DECREF(res);
    res = one;
  }
  return res;
}

typedef struct {
  PyObject_HEAD
  ModuleObject *m;
  keel_call *c;
  holder *hs;
  Py_ssize_t n;
  int state; /* 0 pending, 1 waited */
} CallObject;

static PyTypeObject CallType;

#define STACK_INPUTS 8

/* m(*args) and m.submit(*args): convert, lock, run with the GIL released. */
static PyObject *module_run(ModuleObject *m, PyObject *args, PyObject *kw, int submit) {
  if (check_ready(m) < 0) return NULL;
  PyObject *ordered = NULL;
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  if ((kw && PyDict_GET_SIZE(kw)) || (n == 1 && PyDict_CheckExact(PyTuple_GET_ITEM(args, 0)))) {
    PyObject *named = kw ? kw : Py_None;
    PyObject *list = PyObject_CallFunctionObjArgs(g_order_inputs, m->names, args, named, NULL);
    if (!list) return NULL;
    ordered = PySequence_Tuple(list);
    Py_DECREF(list);
    if (!ordered) return NULL;
    args = ordered;
    n = PyTuple_GET_SIZE(args);
  }
  if (n != m->n_in) {
    Py_XDECREF(ordered);
    return raise_code(KEEL_INVALID_ARGUMENT, "the model has %zd input%s, got %zd", m->n_in, m->n_in == 1 ? "" : "s", n);
  }
  holder hs_stack[STACK_INPUTS];
  keel_tensor *ins_stack[STACK_INPUTS];
  holder *hs = hs_stack;
  keel_tensor **ins = ins_stack;
  if (n > STACK_INPUTS) {
    hs = PyMem_Calloc((size_t)n, sizeof *hs);
    ins = PyMem_Calloc((size_t)n, sizeof *ins);
    if (!hs || !ins) {
      PyMem_Free(hs);
      PyMem_Free(ins);
      Py_XDECREF(ordered);
      return PyErr_NoMemory();
    }
  }
  PyObject *result = NULL;
  Py_ssize_t done = 0;
  for (; done < n; done++) {
    label l = {"input", PyList_GET_ITEM(m->names, done), done};
    if (to_keel(PyTuple_GET_ITEM(args, done), &l, PyTuple_GET_ITEM(m->dtypes, done), m->codes[done], 0, &hs[done],
                &ins[done]) < 0)
      goto out;
  }
  PyObject *garbage_stack[STACK_INPUTS];
  PyObject **garbage = m->n_out <= STACK_INPUTS ? garbage_stack : PyMem_Malloc(sizeof(PyObject *) * (size_t)m->n_out);
  Py_ssize_t ng = 0;
  if (!garbage) {
    PyErr_NoMemory();
    goto out;
  }
  lock_module(m);
  keel_module *h = m->h;
  if (!h) {
    raise_code(KEEL_INVALID_ARGUMENT, "module is closed");
  } else if (m->mode == KEEL_OUTPUTS_PERSISTENT && m->pending) {
    raise_code(KEEL_INVALID_ARGUMENT, "PERSISTENT outputs are shared by every call of a module: wait for the %zd "
               "submitted call(s) first", m->pending);
  } else if (m->mode != KEEL_OUTPUTS_PERSISTENT || persistent_check(m, garbage, &ng) == 0) {
    keel_status *s;
    keel_call *call = NULL;
    Py_BEGIN_ALLOW_THREADS
    if (submit) s = K.keel_module_submit(h, ins, (size_t)n, &call);
    else s = K.keel_module_forward(h, ins, (size_t)n, m->outs, (size_t)m->n_out);
    Py_END_ALLOW_THREADS
    if (s) {
      raise_status(s);
    } else if (!submit) {
      result = make_outputs(m);
    } else {
      CallObject *c = PyObject_New(CallObject, &CallType);
      if (!c) {
        /* cannot hand the call out: finish it here */
        Py_BEGIN_ALLOW_THREADS
        s = K.keel_call_wait(call, m->outs, (size_t)m->n_out);
        Py_END_ALLOW_THREADS
        if (s) K.keel_status_free(s);
        for (Py_ssize_t k = 0; k < m->n_out; k++) K.keel_tensor_release(m->outs[k]), m->outs[k] = NULL;
      } else {
        c->m = (ModuleObject *)Py_NewRef(m);
        c->c = call;
        c->state = 0;
        c->n = n;
        c->hs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(holder));
        if (!c->hs) {
          /* keep the inputs alive without a record: wait now (rare) */
          Py_BEGIN_ALLOW_THREADS
          s = K.keel_call_wait(call, m->outs, (size_t)m->n_out);
          Py_END_ALLOW_THREADS
          if (s) K.keel_status_free(s);
          for (Py_ssize_t k = 0; k < m->n_out; k++) K.keel_tensor_release(m->outs[k]), m->outs[k] = NULL;
          c->state = 1;
          c->n = 0;
          Py_DECREF(c);
          PyErr_NoMemory();
        } else {
          memcpy(c->hs, hs, sizeof(holder) * (size_t)n); /* the call owns the inputs' buffers until wait */
          for (Py_ssize_t i = 0; i < n; i++) hs[i].kind = HOLD_NONE;
          m->pending++;
          result = (PyObject *)c;
        }
      }
    }
  }
  unlock_module(m);
  for (Py_ssize_t i = 0; i < ng; i++) Py_DECREF(garbage[i]);
  if (garbage != garbage_stack) PyMem_Free(garbage);
out:
  for (Py_ssize_t i = 0; i < done; i++) {
    K.keel_tensor_release(ins[i]); /* keel retained what a submitted call needs */
    holder_release(&hs[i]);
  }
  if (hs != hs_stack) {
    PyMem_Free(hs);
    PyMem_Free(ins);
  }
  Py_XDECREF(ordered);
  return result;
}

static PyObject *module_call(ModuleObject *m, PyObject *args, PyObject *kw) { return module_run(m, args, kw, 0); }
static PyObject *module_submit(ModuleObject *m, PyObject *args, PyObject *kw) { return module_run(m, args, kw, 1); }

static PyObject *module_init_core(ModuleObject *m, PyObject *args) {
  PyObject *handle, *names, *dtypes, *codes;
  Py_ssize_t n_out;
  int owned, mode, policy;
  if (!PyArg_ParseTuple(args, "OpO!O!O!nii", &handle, &owned, &PyList_Type, &names, &PyTuple_Type, &dtypes,
                        &PyTuple_Type, &codes, &n_out, &mode, &policy))
    return NULL;
  if (m->ready) return raise_code(KEEL_INVALID_ARGUMENT, "module is already initialized");
  Py_ssize_t n_in = PyList_GET_SIZE(names);
  if (PyTuple_GET_SIZE(dtypes) != n_in || PyTuple_GET_SIZE(codes) != n_in || n_out < 0)
    return raise_code(KEEL_INVALID_ARGUMENT, "_init_core: inconsistent input descriptions");
  void *h = PyLong_AsVoidPtr(handle);
  if (!h) return PyErr_Occurred() ? NULL : raise_code(KEEL_INVALID_ARGUMENT, "_init_core: NULL module");
  size_t slots = (size_t)(n_out ? n_out : 1);
  m->codes = PyMem_Calloc((size_t)(n_in ? n_in : 1), sizeof(int));
  m->last = PyMem_Calloc(slots, sizeof(PyObject *));
  m->bound = PyMem_Calloc(slots, sizeof(PyObject *));
  m->outs = PyMem_Calloc(slots, sizeof(keel_tensor *));
  m->lock = PyThread_allocate_lock();
  if (!m->codes || !m->last || !m->bound || !m->outs || !m->lock) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < n_in; i++) {
    m->codes[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(codes, i));
    if (m->codes[i] == -1 && PyErr_Occurred()) return NULL;
  }
  m->h = h;
  m->owned = owned;
  m->mode = mode;
  m->policy = policy;
  m->n_in = n_in;
  m->n_out = n_out;
  m->names = Py_NewRef(names);
  m->dtypes = Py_NewRef(dtypes);
  m->ready = 1;
  Py_RETURN_NONE;
}

/* close (owned modules) or detach (a pool's, when the pool dies): later calls raise. */
static PyObject *module_shutdown(ModuleObject *m, int destroy) {
  if (!m->ready) Py_RETURN_NONE;
  PyObject **garbage = PyMem_Calloc((size_t)(2 * m->n_out + 1), sizeof(PyObject *));
  if (!garbage) return PyErr_NoMemory();
  Py_ssize_t ng = 0;
  lock_module(m);
  keel_module *h = m->h;
  m->h = NULL;
  forget_last(m, garbage, &ng);
  for (Py_ssize_t k = 0; k < m->n_out; k++)
    if (m->bound[k]) {
      garbage[ng++] = m->bound[k];
      m->bound[k] = NULL;
    }
  if (h && destroy && m->owned) {
    Py_BEGIN_ALLOW_THREADS
    K.keel_module_destroy(h); /* waits for its calls; may run keep-alive deleters (they take the GIL) */
    Py_END_ALLOW_THREADS
  }
  unlock_module(m);
  for (Py_ssize_t i = 0; i < ng; i++) Py_DECREF(garbage[i]);
  PyMem_Free(garbage);
  Py_RETURN_NONE;
}

static PyObject *module_close(ModuleObject *m, PyObject *unused) {
  (void)unused;
  return module_shutdown(m, 1);
}
static PyObject *module_detach(ModuleObject *m, PyObject *unused) {
  (void)unused;
  return module_shutdown(m, 0);
}

/* Lock, check the module is open, or raise. */
static keel_module *lock_open(ModuleObject *m) {
  if (check_ready(m) < 0) return NULL;
  lock_module(m);
  if (!m->h) {
    unlock_module(m);
    raise_code(KEEL_INVALID_ARGUMENT, "module is closed");
    return NULL;
  }
  return m->h;
}

static PyObject *module_set_mode(ModuleObject *m, PyObject *arg) {
  int mode = (int)PyLong_AsLong(arg);
  if (mode == -1 && PyErr_Occurred()) return NULL;
  keel_module *h = lock_open(m);
  if (!h) return NULL;
  PyObject *garbage_stack[STACK_INPUTS];
  PyObject **garbage = m->n_out <= STACK_INPUTS ? garbage_stack : PyMem_Malloc(sizeof(PyObject *) * (size_t)m->n_out);
  Py_ssize_t ng = 0;
  if (!garbage) {
    unlock_module(m);
    return PyErr_NoMemory();
  }
  keel_status *s = K.keel_module_set_output_mode(h, (keel_output_mode)mode);
  if (!s) {
    m->mode = mode;
    forget_last(m, garbage, &ng);
  }
  unlock_module(m);
  for (Py_ssize_t i = 0; i < ng; i++) Py_DECREF(garbage[i]);
  if (garbage != garbage_stack) PyMem_Free(garbage);
  if (s) return raise_status(s);
  Py_RETURN_NONE;
}

/* _bind_output(index, obj or None, output name): wrap obj (writable, no copy), keep it alive while bound. */
static PyObject *module_bind_output(ModuleObject *m, PyObject *args) {
  Py_ssize_t idx;
  PyObject *obj, *name;
  if (!PyArg_ParseTuple(args, "nOO", &idx, &obj, &name)) return NULL;
  if (check_ready(m) < 0) return NULL;
  if (idx < 0 || idx >= m->n_out)
    return raise_code(KEEL_INVALID_ARGUMENT, "output index %zd out of range (the model has %zd outputs)", idx,
                      m->n_out);
  keel_tensor *t = NULL;
  if (obj != Py_None) {
    label l = {"bound output", name, idx};
    holder h;
    if (to_keel(obj, &l, NULL, 0, CONV_KEEPALIVE | CONV_WRITABLE | CONV_NOCOPY, &h, &t) < 0) return NULL;
  }
  keel_module *mh = lock_open(m);
  if (!mh) {
    K.keel_tensor_release(t);
    return NULL;
  }
  keel_status *s = K.keel_module_bind_output(mh, (size_t)idx, t);
  PyObject *old = NULL;
  if (!s) {
    old = m->bound[idx];
    m->bound[idx] = obj == Py_None ? NULL : Py_NewRef(obj);
  }
  unlock_module(m);
  Py_BEGIN_ALLOW_THREADS
  K.keel_tensor_release(t); /* the module holds its own reference; the deleter takes the GIL */
  Py_END_ALLOW_THREADS
  Py_XDECREF(old);
  if (s) return raise_status(s);
  Py_RETURN_NONE;
}

static PyObject *module_stats(ModuleObject *m, PyObject *arg) {
  int last = PyObject_IsTrue(arg);
  if (last < 0) return NULL;
  keel_module *h = lock_open(m);
  if (!h) return NULL;
  keel_module_stats st;
  memset(&st, 0, sizeof st);
  if (last) K.keel_module_get_last_call_stats(h, &st);
  else K.keel_module_get_stats(h, &st);
  unlock_module(m);
  return Py_BuildValue("(KKKKKKKKKKKKKKK)", (unsigned long long)st.calls, (unsigned long long)st.failed_calls,
                       (unsigned long long)st.system_allocations, (unsigned long long)st.system_frees,
                       (unsigned long long)st.bytes_allocated, (unsigned long long)st.pool_hits,
                       (unsigned long long)st.pool_misses, (unsigned long long)st.pool_bytes_idle,
                       (unsigned long long)st.bytes_held, (unsigned long long)st.peak_bytes,
                       (unsigned long long)st.shape_changes, (unsigned long long)st.plan_cache_hits,
                       (unsigned long long)st.plan_cache_misses, (unsigned long long)st.prepared_used,
                       (unsigned long long)st.prepared_discarded);
}

static PyObject *module_reset_stats(ModuleObject *m, PyObject *unused) {
  (void)unused;
  keel_module *h = lock_open(m);
  if (!h) return NULL;
  K.keel_module_reset_stats(h);
  unlock_module(m);
  Py_RETURN_NONE;
}

static PyObject *module_trim(ModuleObject *m, PyObject *unused) {
  (void)unused;
  keel_module *h = lock_open(m);
  if (!h) return NULL;
  Py_BEGIN_ALLOW_THREADS
  K.keel_module_trim(h);
  Py_END_ALLOW_THREADS
  unlock_module(m);
  Py_RETURN_NONE;
}

static PyObject *m_closed(ModuleObject *m, void *c) { (void)c; return PyBool_FromLong(m->h == NULL); }
static PyObject *m_mode(ModuleObject *m, void *c) { (void)c; return PyLong_FromLong(m->mode); }
static PyObject *m_pending(ModuleObject *m, void *c) { (void)c; return PyLong_FromSsize_t(m->pending); }
static PyObject *m_policy(ModuleObject *m, void *c) { (void)c; return PyLong_FromLong(m->policy); }
static int m_set_policy(ModuleObject *m, PyObject *v, void *c) {
  (void)c;
  long p = v ? PyLong_AsLong(v) : -1;
  if (p == -1 && PyErr_Occurred()) return -1;
  if (p < POLICY_DETACH || p > POLICY_OVERWRITE) {
    PyErr_SetString(PyExc_ValueError, "bad policy code");
    return -1;
  }
  m->policy = (int)p;
  return 0;
}
static PyObject *m_handle(ModuleObject *m, void *c) {
  (void)c;
  if (!m->h) Py_RETURN_NONE;
  return PyLong_FromVoidPtr(m->h);
}

static int module_traverse(ModuleObject *m, visitproc visit, void *arg) {
  Py_VISIT(m->names);
  Py_VISIT(m->dtypes);
  for (Py_ssize_t k = 0; m->bound && k < m->n_out; k++) Py_VISIT(m->bound[k]);
  for (Py_ssize_t k = 0; m->last && k < m->n_out; k++) Py_VISIT(m->last[k]);
  return 0;
}

static int module_clear(ModuleObject *m) {
  for (Py_ssize_t k = 0; m->bound && k < m->n_out; k++) Py_CLEAR(m->bound[k]);
  for (Py_ssize_t k = 0; m->last && k < m->n_out; k++) Py_CLEAR(m->last[k]);
  return 0;
}

static void module_dealloc(ModuleObject *m) {
  PyObject_GC_UnTrack(m);
  if (m->h && m->owned && !finalizing()) {
    keel_module *h = m->h;
    m->h = NULL;
    Py_BEGIN_ALLOW_THREADS
    K.keel_module_destroy(h);
    Py_END_ALLOW_THREADS
  }
  module_clear(m);
  Py_CLEAR(m->names);
  Py_CLEAR(m->dtypes);
  PyMem_Free(m->codes);
  PyMem_Free(m->last);
  PyMem_Free(m->bound);
  PyMem_Free(m->outs);
  if (m->lock) PyThread_free_lock(m->lock);
  Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyMethodDef module_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))module_submit, METH_VARARGS | METH_KEYWORDS,
     "submit(*inputs) -> Call: start a call (keel_module_submit); call.wait() returns its outputs."},
    {"_init_core", (PyCFunction)module_init_core, METH_VARARGS, NULL},
    {"_close", (PyCFunction)module_close, METH_NOARGS, NULL},
    {"_detach", (PyCFunction)module_detach, METH_NOARGS, NULL},
    {"_set_mode", (PyCFunction)module_set_mode, METH_O, NULL},
    {"_bind_output", (PyCFunction)module_bind_output, METH_VARARGS, NULL},
    {"_stats", (PyCFunction)module_stats, METH_O, NULL},
    {"_reset_stats", (PyCFunction)module_reset_stats, METH_NOARGS, NULL},
    {"_trim", (PyCFunction)module_trim, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef module_getset[] = {
    {"closed", (getter)m_closed, NULL, "True once closed", NULL},
    {"_mode", (getter)m_mode, NULL, NULL, NULL},
    {"_pending", (getter)m_pending, NULL, NULL, NULL},
    {"_policy", (getter)m_policy, (setter)m_set_policy, NULL, NULL},
    {"_h", (getter)m_handle, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ModuleType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "keel._keelc.ModuleCore",
    .tp_basicsize = sizeof(ModuleObject),
    .tp_dealloc = (destructor)module_dealloc,
    .tp_call = (ternaryfunc)module_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The compiled part of keel.Module: the call path and the state it needs.",
    .tp_traverse = (traverseproc)module_traverse,
    .tp_clear = (inquiry)module_clear,
    .tp_methods = module_methods,
    .tp_getset = module_getset,
    .tp_new = PyType_GenericNew,
};

/* -------------------------------------------------------------------------------------------------- Call */
static void call_release_inputs(CallObject *c) {
  for (Py_ssize_t i = 0; i < c->n; i++) holder_release(&c->hs[i]);
}

static PyObject *call_wait(CallObject *c, PyObject *unused) {
  (void)unused;
  ModuleObject *m = c->m;
  lock_module(m);
  if (c->state) {
    unlock_module(m);
    return raise_code(KEEL_INVALID_ARGUMENT, "this call was already waited for");
  }
  c->state = 1;
  m->pending--;
  if (!m->h) { /* closed meanwhile: keel_module_destroy finished the call and dropped its outputs */
    unlock_module(m);
    call_release_inputs(c);
    return raise_code(KEEL_INVALID_ARGUMENT, "module was closed before this call was waited for");
  }
  keel_status *s;
  Py_BEGIN_ALLOW_THREADS
  s = K.keel_call_wait(c->c, m->outs, (size_t)m->n_out);
  Py_END_ALLOW_THREADS
  PyObject *res = s ? NULL : make_outputs(m);
  unlock_module(m);
  call_release_inputs(c); /* keel no longer reads them */
  if (s) return raise_status(s);
  return res;
}

static PyObject *call_done(CallObject *c, void *unused) {
  (void)unused;
  return PyBool_FromLong(c->state != 0);
}

static void call_dealloc(CallObject *c) {
  ModuleObject *m = c->m;
  if (m && !c->state) { /* never waited: keel needs every call waited once */
    lock_module(m);
    c->state = 1;
    m->pending--;
    if (m->h) {
      keel_status *s;
      Py_BEGIN_ALLOW_THREADS
      s = K.keel_call_wait(c->c, m->outs, (size_t)m->n_out);
      if (s) K.keel_status_free(s);
      else
        for (Py_ssize_t k = 0; k < m->n_out; k++) K.keel_tensor_release(m->outs[k]);
      Py_END_ALLOW_THREADS
      for (Py_ssize_t k = 0; k < m->n_out; k++) m->outs[k] = NULL;
    }
    unlock_module(m);
  }
  if (c->hs) {
    call_release_inputs(c);
    PyMem_Free(c->hs);
  }
  Py_XDECREF(m);
  PyObject_Free(c);
}

static PyMethodDef call_methods[] = {
    {"wait", (PyCFunction)call_wait, METH_NOARGS,
     "Block (without the GIL) until the call finished; return its outputs or raise its error. Once only."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef call_getset[] = {
    {"waited", (getter)call_done, NULL, "True once wait() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CallType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "keel.Call",
    .tp_basicsize = sizeof(CallObject),
    .tp_dealloc = (destructor)call_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A submitted call (Module.submit). wait() returns its outputs; dropping it unwaited waits and "
              "discards them.",
    .tp_methods = call_methods,
    .tp_getset = call_getset,
};

/* ---------------------------------------------------------------------------------------- module functions */
static PyObject *f_bind(PyObject *self, PyObject *addrs) {
  (void)self;
  if (!PyDict_Check(addrs)) return PyErr_Format(PyExc_TypeError, "_bind needs a dict of addresses");
#define X(name)                                                                                              \
  {                                                                                                          \
    PyObject *v = PyDict_GetItemString(addrs, #name);                                                        \
    if (!v) return PyErr_Format(PyExc_ImportError, "keel: the library lacks %s", #name);                    \
    void *p = PyLong_AsVoidPtr(v);                                                                           \
    if (!p) return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ImportError, "keel: %s is NULL", #name);    \
    memcpy(&K.name, &p, sizeof p);                                                                           \
  }
  KEEL_FUNCS(X)
#undef X
  g_bound = 1;
  Py_RETURN_NONE;
}

static PyObject *f_names(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  PyObject *l = PyList_New(0);
#define X(name)                                                                                              \
  if (l) {                                                                                                   \
    PyObject *s = PyUnicode_FromString(#name);                                                               \
    if (!s || PyList_Append(l, s) < 0) Py_CLEAR(l);                                                          \
    Py_XDECREF(s);                                                                                           \
  }
  KEEL_FUNCS(X)
#undef X
  return l;
}

static PyObject *f_init(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *make_error, *convert, *order, *np_dtypes, *ndarray, *asarray;
  if (!PyArg_ParseTuple(args, "OOOO!OO", &make_error, &convert, &order, &PyTuple_Type, &np_dtypes, &ndarray, &asarray))
    return NULL;
  Py_XSETREF(g_make_error, Py_NewRef(make_error));
  Py_XSETREF(g_convert, Py_NewRef(convert));
  Py_XSETREF(g_order_inputs, Py_NewRef(order));
  Py_XSETREF(g_np_dtypes, Py_NewRef(np_dtypes));
  Py_XSETREF(g_ndarray, Py_NewRef(ndarray));
  Py_XSETREF(g_asarray, Py_NewRef(asarray));
  Py_RETURN_NONE;
}

/* run_engine(run_fn_owner_handle, args, names, dtypes, codes, n_out): keel_engine_run with inputs that keep
 * their Python owners alive for as long as keel holds them (an interpreted graph may return an input). */
static PyObject *f_run_engine(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *handle, *inputs, *names, *dtypes, *codes;
  Py_ssize_t n_out;
  if (!PyArg_ParseTuple(args, "OO!O!O!O!n", &handle, &PyTuple_Type, &inputs, &PyList_Type, &names, &PyTuple_Type,
                        &dtypes, &PyTuple_Type, &codes, &n_out))
    return NULL;
  keel_engine *e = PyLong_AsVoidPtr(handle);
  if (!e) return PyErr_Occurred() ? NULL : raise_code(KEEL_INVALID_ARGUMENT, "engine is closed");
  Py_ssize_t n = PyTuple_GET_SIZE(inputs);
  keel_tensor **ins = PyMem_Calloc((size_t)(n ? n : 1), sizeof *ins);
  keel_tensor **outs = PyMem_Calloc((size_t)(n_out ? n_out : 1), sizeof *outs);
  PyObject *res = NULL;
  Py_ssize_t done = 0;
  if (!ins || !outs) {
    PyErr_NoMemory();
    goto out;
  }
  for (; done < n; done++) {
    int known = done < PyList_GET_SIZE(names) && done < PyTuple_GET_SIZE(dtypes) && done < PyTuple_GET_SIZE(codes);
    label l = {"input", known ? PyList_GET_ITEM(names, done) : NULL, done};
    holder h;
    int code = known ? (int)PyLong_AsLong(PyTuple_GET_ITEM(codes, done)) : 0;
    if (to_keel(PyTuple_GET_ITEM(inputs, done), &l, known ? PyTuple_GET_ITEM(dtypes, done) : NULL, code,
                CONV_KEEPALIVE, &h, &ins[done]) < 0)
      goto out;
  }
  keel_status *s;
  Py_BEGIN_ALLOW_THREADS
  s = K.keel_engine_run(e, ins, (size_t)n, outs, (size_t)n_out);
  Py_END_ALLOW_THREADS
  if (s) {
    raise_status(s);
    goto out;
  }
  res = PyTuple_New(n_out);
  for (Py_ssize_t k = 0; k < n_out; k++) {
    PyObject *t = outs[k] ? tensor_take(outs[k]) : NULL;
    outs[k] = NULL;
    if (!t) {
      if (!PyErr_Occurred()) raise_code(KEEL_INTERNAL, "keel_engine_run returned no output %zd", k);
      Py_CLEAR(res);
      for (Py_ssize_t j = k + 1; j < n_out; j++) K.keel_tensor_release(outs[j]), outs[j] = NULL;
      break;
    }
    if (res) PyTuple_SET_ITEM(res, k, t);
  }
out:
  Py_BEGIN_ALLOW_THREADS
  for (Py_ssize_t i = 0; i < done; i++) K.keel_tensor_release(ins[i]); /* keep-alive deleters take the GIL */
  Py_END_ALLOW_THREADS
  PyMem_Free(ins);
  PyMem_Free(outs);
  return res;
}

static PyObject *f_live(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  return Py_BuildValue("(nn)", g_live_keepalive, g_live_exports);
}

static PyObject *f_trace(PyObject *self, PyObject *arg) {
  (void)self;
  if (arg != Py_None && !PyList_Check(arg)) return PyErr_Format(PyExc_TypeError, "_trace needs a list or None");
  Py_XSETREF(g_trace, arg == Py_None ? NULL : Py_NewRef(arg));
  Py_RETURN_NONE;
}

static PyMethodDef functions[] = {
    {"_bind", f_bind, METH_O, "_bind({name: address}): the keel functions this module calls"},
    {"_names", f_names, METH_NOARGS, "names of the keel functions _bind needs"},
    {"_init", f_init, METH_VARARGS, NULL},
    {"run_engine", f_run_engine, METH_VARARGS, NULL},
    {"_live", f_live, METH_NOARGS, "(wrapped inputs keel still holds, DLPack exports not yet released)"},
    {"_trace", f_trace, METH_O, "record (address, how) for every input wrapped, into a list (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "keel._keelc", "keel's compiled call path", -1,
                                       functions, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__keelc(void) {
  if (PyType_Ready(&TensorType) < 0 || PyType_Ready(&ModuleType) < 0 || PyType_Ready(&CallType) < 0) return NULL;
  PyObject *mod = PyModule_Create(&moduledef);
  if (!mod) return NULL;
  g_dl_kwargs = Py_BuildValue("{s:(ii)}", "max_version", 1, 0);
  if (!g_dl_kwargs || PyModule_AddObjectRef(mod, "Tensor", (PyObject *)&TensorType) < 0 ||
      PyModule_AddObjectRef(mod, "ModuleCore", (PyObject *)&ModuleType) < 0 ||
      PyModule_AddObjectRef(mod, "Call", (PyObject *)&CallType) < 0 ||
      PyModule_AddIntConstant(mod, "MAX_DIMS", KEEL_MAX_DIMS) < 0) {
    Py_DECREF(mod);
    return NULL;
  }
  return mod;
}
