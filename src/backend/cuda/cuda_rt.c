/* A thin checked layer over the CUDA runtime: errors become statuses, the per-module context (stream,
 * cuBLAS, memory, events). Built only with the CUDA toolkit. */
#ifdef KEEL_HAVE_CUDA
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

/* ---- errors ---------------------------------------------------------------------------------------------- */

keel_status *keel_cuda_error(int err, const char *call, int device, long long bytes) {
  if (err == (int)cudaSuccess) return NULL;
  cudaError_t e = (cudaError_t)err;
  /* a failed call leaves its error as the thread's "last error": clear it so the next check is not blamed */
  (void)cudaGetLastError();
  char size[64] = "", dev[32] = "";
  if (bytes >= 0) snprintf(size, sizeof size, ", %lld bytes", bytes);
  if (device >= 0) snprintf(dev, sizeof dev, " on device %d", device);
  const char *name = cudaGetErrorName(e), *text = cudaGetErrorString(e);
  if (!name) name = "cudaError?";
  if (!text) text = "";
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice ||
      e == cudaErrorSystemNotReady || e == cudaErrorCompatNotSupportedOnDevice)
    return keel_error(KEEL_DEVICE_ERROR, "no CUDA device: %s failed%s%s: %s (%s)", call, dev, size, name, text);
  if (e == cudaErrorMemoryAllocation)
    return keel_error(KEEL_OUT_OF_MEMORY, "CUDA out of memory: %s%s%s: %s", call, dev, size, text);
  /* Sticky errors (illegal address, launch failure...) poison the context: say so, the caller cannot retry. */
  bool sticky = e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure || e == cudaErrorIllegalInstruction ||
                e == cudaErrorMisalignedAddress || e == cudaErrorHardwareStackError || e == cudaErrorAssert;
  return keel_error(KEEL_DEVICE_ERROR, "CUDA error: %s failed%s%s: %s (%s)%s", call, dev, size, name, text,
                    sticky ? "; the CUDA context is unusable now (sticky error), restart the process" : "");
}

const char *keel_cublas_status_name(int st) {
  switch ((cublasStatus_t)st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_?";
  }
}

keel_status *keel_cublas_error(int st, const char *call, int device) {
  if (st == (int)CUBLAS_STATUS_SUCCESS) return NULL;
  keel_code code = st == (int)CUBLAS_STATUS_ALLOC_FAILED ? KEEL_OUT_OF_MEMORY : KEEL_DEVICE_ERROR;
  return keel_error(code, "cuBLAS error: %s failed on device %d: %s (%d)", call, device, keel_cublas_status_name(st), st);
}

/* ---- cuBLAS, loaded on first use ------------------------------------------------------------------------ */

keel_cublas_api keel_cublas;
static pthread_once_t cublas_once = PTHREAD_ONCE_INIT;
static char cublas_err[512];

#define STR_(x) #x
#define STR(x) STR_(x)

static void cublas_load_once(void) {
  const char *names[] = {"libcublas.so." STR(CUBLAS_VER_MAJOR), "libcublas.so"};
  void *h = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(cublas_err, sizeof cublas_err, "cannot load cuBLAS (%s): %s", names[0], e ? e : "?");
    return;
  }
  struct {
    void **slot;
    const char *sym;
  } syms[] = {
      {(void **)&keel_cublas.create, "cublasCreate_v2"},
      {(void **)&keel_cublas.destroy, "cublasDestroy_v2"},
      {(void **)&keel_cublas.set_stream, "cublasSetStream_v2"},
      {(void **)&keel_cublas.set_math_mode, "cublasSetMathMode"},
      {(void **)&keel_cublas.set_workspace, "cublasSetWorkspace_v2"},
      {(void **)&keel_cublas.sgemm, "cublasSgemm_v2"},
      {(void **)&keel_cublas.sgemm_strided_batched, "cublasSgemmStridedBatched"},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    *syms[i].slot = dlsym(h, syms[i].sym);
    if (!*syms[i].slot) {
      snprintf(cublas_err, sizeof cublas_err, "cuBLAS (%s) lacks %s", names[0], syms[i].sym);
      memset(&keel_cublas, 0, sizeof keel_cublas);
      return; /* the library stays loaded: harmless, and unloading cuBLAS is not safe */
    }
  }
}

/* the pointer types above must match cuBLAS's own declarations (typeof references no symbol) */
#define SAME_TYPE(fn, slot) \
  _Static_assert(__builtin_types_compatible_p(__typeof__(&fn), __typeof__(keel_cublas.slot)), #fn " signature")
SAME_TYPE(cublasCreate_v2, create);
SAME_TYPE(cublasDestroy_v2, destroy);
SAME_TYPE(cublasSetStream_v2, set_stream);
SAME_TYPE(cublasSetMathMode, set_math_mode);
SAME_TYPE(cublasSetWorkspace_v2, set_workspace);
SAME_TYPE(cublasSgemm_v2, sgemm);
SAME_TYPE(cublasSgemmStridedBatched, sgemm_strided_batched);
#undef SAME_TYPE

keel_status *keel_cublas_load(void) {
  pthread_once(&cublas_once, cublas_load_once);
  if (!keel_cublas.sgemm) return keel_error(KEEL_UNSUPPORTED, "%s", cublas_err[0] ? cublas_err : "cuBLAS unavailable");
  return NULL;
}

/* ---- devices --------------------------------------------------------------------------------------------- */

keel_status *keel_cuda_device_count(int *n) {
  *n = 0;
  int count = 0;
  keel_status *s = keel_cuda_error((int)cudaGetDeviceCount(&count), "cudaGetDeviceCount", -1, -1);
  if (s) {
    if (keel_status_code(s) == KEEL_DEVICE_ERROR && strncmp(keel_status_message(s), "no CUDA device", 14) != 0) {
      keel_status *t = keel_error(KEEL_DEVICE_ERROR, "no CUDA device: %s", keel_status_message(s));
      keel_status_free(s);
      s = t;
    }
    return s;
  }
  if (count <= 0) return keel_error(KEEL_DEVICE_ERROR, "no CUDA device: cudaGetDeviceCount found none");
  *n = count;
  return NULL;
}

keel_status *keel_cuda_device_describe(int device, char *buf, size_t n) {
  struct cudaDeviceProp p;
  KEEL_CUDA_CHECK(cudaGetDeviceProperties(&p, device), device, -1);
  snprintf(buf, n, "%s (sm_%d%d, %.0f GiB)", p.name, p.major, p.minor, (double)p.totalGlobalMem / (1 << 30));
  return NULL;
}

/* ---- device memory: every allocation is one cudaMalloc, counted by the keel_allocator wrapper ------------ */

static void *dev_alloc(void *user, size_t size, size_t align) {
  keel_cuda_ctx *c = user;
  (void)align; /* cudaMalloc returns 256-byte aligned memory */
  void *p = NULL;
  if (cudaSetDevice(c->device) != cudaSuccess) {
    (void)cudaGetLastError();
    return NULL;
  }
  if (cudaMalloc(&p, size ? size : 1) != cudaSuccess) {
    (void)cudaGetLastError(); /* the allocator interface reports failure as NULL; callers name the size */
    return NULL;
  }
  return p;
}

static void dev_free(void *user, void *ptr, size_t size) {
  (void)user;
  (void)size;
  /* cudaFree synchronizes the device; an error here (a sticky one from earlier) has nowhere to go, and the
   * memory is gone with the context anyway */
  if (cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
}

static void *scratch_backend_alloc(void *user, size_t bytes) {
  keel_cuda_ctx *c = user;
  return keel_allocator_alloc(c->memory, bytes);
}

static void scratch_backend_free(void *user, void *ptr, size_t bytes) {
  keel_cuda_ctx *c = user;
  keel_allocator_free(c->memory, ptr, bytes);
}

keel_status *keel_cuda_ctx_create(int device, keel_cuda_ctx **out) {
  *out = NULL;
  int count = 0;
  KEEL_TRY(keel_cuda_device_count(&count));
  if (device < 0 || device >= count)
    return keel_error(KEEL_INVALID_ARGUMENT, "CUDA device %d does not exist (%d device%s found)", device, count,
                      count == 1 ? "" : "s");
  keel_cuda_ctx *c = calloc(1, sizeof *c);
  if (!c) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a CUDA context");
  c->device = device;
  pthread_mutex_init(&c->mu, NULL);
  keel_status *s = NULL;
  keel_allocator_vtable vt = {dev_alloc, dev_free};
  c->memory = keel_allocator_create(&vt, c);
  keel_cuda_cache_backend be = {scratch_backend_alloc, scratch_backend_free, c};
  c->scratch = c->memory ? keel_cuda_cache_create(&be, 0) : NULL;
  if (!c->scratch) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a CUDA context");
    goto fail;
  }
  s = keel_cuda_error((int)cudaSetDevice(device), "cudaSetDevice", device, -1);
  if (s) goto fail;
  s = keel_cuda_error((int)cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags",
                      device, -1);
  if (s) goto fail;
  s = keel_cuda_error((int)cudaEventCreateWithFlags(&c->ev_caller, cudaEventDisableTiming), "cudaEventCreateWithFlags",
                      device, -1);
  if (s) goto fail;
  s = keel_cublas_load();
  if (s) goto fail;
  s = keel_cublas_error((int)keel_cublas.create(&c->cublas), "cublasCreate", device);
  if (s) goto fail;
  s = keel_cublas_error((int)keel_cublas.set_stream(c->cublas, c->stream), "cublasSetStream", device);
  if (s) goto fail;
  /* TF32 tensor cores would change results vs the CPU beyond test tolerances: keep full fp32 (docs/CUDA.md) */
  s = keel_cublas_error((int)keel_cublas.set_math_mode(c->cublas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", device);
  if (s) goto fail;
  c->cublas_ws_bytes = (size_t)32 << 20;
  c->cublas_ws = keel_allocator_alloc(c->memory, c->cublas_ws_bytes);
  if (!c->cublas_ws) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "CUDA out of memory: cuBLAS workspace on device %d, %zu bytes", device,
                   c->cublas_ws_bytes);
    goto fail;
  }
  s = keel_cublas_error((int)keel_cublas.set_workspace(c->cublas, c->cublas_ws, c->cublas_ws_bytes), "cublasSetWorkspace",
                        device);
  if (s) goto fail;
  *out = c;
  return NULL;
fail: {
  keel_allocator *mem = c->memory;
  keel_cuda_ctx_destroy(c);
  if (mem) keel_allocator_destroy(mem);
  return s;
}
}

void keel_cuda_graphs_clear(keel_cuda_ctx *c); /* cuda_exec.c */

void keel_cuda_ctx_destroy(keel_cuda_ctx *c) {
  if (!c) return;
  if (c->stream && cudaStreamSynchronize(c->stream) != cudaSuccess) (void)cudaGetLastError();
  keel_cuda_graphs_clear(c);
  if (c->cublas) keel_cublas.destroy(c->cublas);
  if (c->ev_caller) cudaEventDestroy(c->ev_caller);
  if (c->stream) cudaStreamDestroy(c->stream);
  (void)cudaGetLastError();
  keel_cuda_cache_destroy(c->scratch);
  if (c->cublas_ws) keel_allocator_free(c->memory, c->cublas_ws, c->cublas_ws_bytes);
  /* c->memory stays alive with outputs the caller still holds: its owner (the runtime device) frees it */
  pthread_mutex_destroy(&c->mu);
  free(c);
}

int keel_cuda_ctx_device(const keel_cuda_ctx *c) { return c->device; }
keel_allocator *keel_cuda_ctx_memory(keel_cuda_ctx *c) { return c->memory; }
void *keel_cuda_ctx_stream(keel_cuda_ctx *c) { return (void *)c->stream; }

/* ---- pinned memory, copies ----------------------------------------------------------------------------- */

keel_status *keel_cuda_pinned_alloc(keel_cuda_ctx *c, size_t n, void **out) {
  *out = NULL;
  KEEL_CUDA_CHECK(cudaHostAlloc(out, n ? n : 1, cudaHostAllocDefault), c->device, (long long)n);
  pthread_mutex_lock(&c->mu);
  c->st.pinned_allocs++;
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

void keel_cuda_pinned_free(keel_cuda_ctx *c, void *p) {
  (void)c;
  if (p && cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();
}

keel_status *keel_cuda_copy_async(keel_cuda_ctx *c, void *dst, const void *src, size_t n, const char *what) {
  if (!n) return NULL;
  keel_status *s = keel_cuda_error((int)cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, c->stream), "cudaMemcpyAsync",
                                   c->device, (long long)n);
  return s ? keel_error_prefix(s, "%s: ", what) : NULL;
}

keel_status *keel_cuda_copy_sync(keel_cuda_ctx *c, void *dst, const void *src, size_t n, const char *what) {
  KEEL_TRY(keel_cuda_copy_async(c, dst, src, n, what));
  return keel_cuda_sync(c);
}

keel_status *keel_cuda_copy_any(void *dst, const void *src, size_t n, const char *what) {
  if (!n) return NULL;
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) (void)cudaGetLastError();
  keel_status *s = keel_cuda_error((int)cudaMemcpy(dst, src, n, cudaMemcpyDefault), "cudaMemcpy", dev, (long long)n);
  return s ? keel_error_prefix(s, "%s: ", what) : NULL;
}

keel_status *keel_cuda_sync(keel_cuda_ctx *c) {
  KEEL_CUDA_CHECK(cudaStreamSynchronize(c->stream), c->device, -1);
  return NULL;
}

/* ---- events ------------------------------------------------------------------------------------------------ */

struct keel_cuda_events {
  cudaEvent_t ev[KEEL_CUDA_EV_COUNT];
  bool recorded[KEEL_CUDA_EV_COUNT];
};

keel_status *keel_cuda_events_create(keel_cuda_ctx *c, keel_cuda_events **out) {
  *out = NULL;
  keel_cuda_events *e = calloc(1, sizeof *e);
  if (!e) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating CUDA events");
  for (int i = 0; i < KEEL_CUDA_EV_COUNT; i++) {
    /* blocking sync: a host waiting on DONE sleeps instead of spinning a core */
    keel_status *s = keel_cuda_error((int)cudaEventCreateWithFlags(&e->ev[i], cudaEventBlockingSync),
                                     "cudaEventCreateWithFlags", c->device, -1);
    if (s) {
      keel_cuda_events_destroy(e);
      return s;
    }
  }
  *out = e;
  return NULL;
}

void keel_cuda_events_destroy(keel_cuda_events *e) {
  if (!e) return;
  for (int i = 0; i < KEEL_CUDA_EV_COUNT; i++)
    if (e->ev[i]) cudaEventDestroy(e->ev[i]);
  free(e);
}

keel_status *keel_cuda_events_record(keel_cuda_ctx *c, keel_cuda_events *e, int which) {
  e->recorded[which] = false;
  KEEL_CUDA_CHECK(cudaEventRecord(e->ev[which], c->stream), c->device, -1);
  e->recorded[which] = true;
  return NULL;
}

keel_status *keel_cuda_events_wait_host(keel_cuda_ctx *c, keel_cuda_events *e, int which) {
  if (!e->recorded[which]) return NULL;
  KEEL_CUDA_CHECK(cudaEventSynchronize(e->ev[which]), c->device, -1);
  return NULL;
}

float keel_cuda_events_elapsed_ms(keel_cuda_events *e, int from, int to) {
  if (!e->recorded[from] || !e->recorded[to]) return -1;
  float ms = -1;
  if (cudaEventElapsedTime(&ms, e->ev[from], e->ev[to]) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return ms;
}

keel_status *keel_cuda_wait_on_caller(keel_cuda_ctx *c, void *caller_stream) {
  KEEL_CUDA_CHECK(cudaEventRecord(c->ev_caller, (cudaStream_t)caller_stream), c->device, -1);
  KEEL_CUDA_CHECK(cudaStreamWaitEvent(c->stream, c->ev_caller, 0), c->device, -1);
  return NULL;
}

keel_status *keel_cuda_caller_waits(keel_cuda_ctx *c, keel_cuda_events *e, int which, void *caller_stream) {
  KEEL_CUDA_CHECK(cudaStreamWaitEvent((cudaStream_t)caller_stream, e->ev[which], 0), c->device, -1);
  return NULL;
}

/* ---- statistics ------------------------------------------------------------------------------------------- */

void keel_cuda_get_stats(keel_cuda_ctx *c, keel_cuda_stats *out) {
  pthread_mutex_lock(&c->mu);
  *out = c->st;
  pthread_mutex_unlock(&c->mu);
  keel_cuda_cache_stats cs;
  keel_cuda_cache_get_stats(c->scratch, &cs);
  out->scratch_hits = cs.hits;
  out->scratch_misses = cs.misses;
}

void keel_cuda_trim(keel_cuda_ctx *c) { keel_cuda_cache_trim(c->scratch); }

keel_status *keel_cuda_launched(keel_cuda_exec *ex, const char *kernel) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return NULL;
  return keel_cuda_error((int)e, kernel, ex->ctx->device, -1);
}
#endif
