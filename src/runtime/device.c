/* CPU and simulated devices. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/tensor_internal.h"
#include "runtime/device.h"
#ifdef KEEL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

const char *keel_device_backends(void) {
#ifdef KEEL_HAVE_CUDA
  return "cpu sim cuda";
#else
  return "cpu sim";
#endif
}

#ifdef KEEL_HAVE_CUDA
/* $KEEL_CUDA_DEVICE picks the GPU (default 0). */
static int cuda_device_index(void) {
  const char *e = getenv("KEEL_CUDA_DEVICE");
  if (!e || !*e) return 0;
  char *end = NULL;
  long v = strtol(e, &end, 10);
  return end && !*end && v >= 0 && v < 1024 ? (int)v : -1;
}
#endif

keel_status *keel_device_check(keel_device_kind kind) {
  switch (kind) {
    case KEEL_DEVICE_CPU:
    case KEEL_DEVICE_SIM: return NULL;
    case KEEL_DEVICE_CUDA: {
#ifdef KEEL_HAVE_CUDA
      int n = 0;
      KEEL_TRY(keel_cuda_device_count(&n));
      int want = cuda_device_index();
      if (want < 0 || want >= n)
        return keel_error(KEEL_INVALID_ARGUMENT, "KEEL_CUDA_DEVICE='%s' names no device (%d found)",
                          getenv("KEEL_CUDA_DEVICE"), n);
      return NULL;
#else
      return keel_error(KEEL_UNSUPPORTED, "this keel was built without the CUDA backend (devices compiled in: cpu, sim)");
#endif
    }
    default: return keel_error(KEEL_INVALID_ARGUMENT, "unknown device kind %d", (int)kind);
  }
}

double keel_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

void keel_spin_us(double us) {
  if (us <= 0) return;
  double end = keel_now_us() + us;
  while (keel_now_us() < end) {
  }
}

static void *sim_alloc(void *user, size_t size, size_t align) {
  keel_device *d = user;
  keel_spin_us(d->alloc_delay_us);
  size_t rounded = (size + align - 1) & ~(align - 1);
  return aligned_alloc(align, rounded ? rounded : align);
}

static void sim_free(void *user, void *ptr, size_t size) {
  keel_device *d = user;
  (void)size;
  keel_spin_us(d->free_delay_us);
  free(ptr);
}

keel_status *keel_device_create(const keel_module_options *opt, keel_allocator *host, keel_device **out) {
  *out = NULL;
  keel_device *d = calloc(1, sizeof *d);
  if (!d) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a device");
  d->kind = opt->device;
  switch (opt->device) {
    case KEEL_DEVICE_CPU:
      d->memory = host;
      break;
    case KEEL_DEVICE_SIM: {
      d->alloc_delay_us = opt->sim_alloc_delay_us;
      d->free_delay_us = opt->sim_free_delay_us;
      d->copy_gbps = opt->sim_copy_gbps > 0 ? opt->sim_copy_gbps : 25.0;
      keel_allocator_vtable vt = {sim_alloc, sim_free};
      d->memory = keel_allocator_create(&vt, d);
      d->owns_memory = true;
      if (!d->memory) {
        free(d);
        return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating the simulated device");
      }
      break;
    }
    case KEEL_DEVICE_CUDA: {
#ifdef KEEL_HAVE_CUDA
      int idx = cuda_device_index();
      if (idx < 0) {
        free(d);
        return keel_error(KEEL_INVALID_ARGUMENT, "KEEL_CUDA_DEVICE='%s' is not a device index", getenv("KEEL_CUDA_DEVICE"));
      }
      keel_status *s = keel_cuda_ctx_create(idx, &d->cuda);
      if (s) {
        free(d);
        return s;
      }
      d->memory = keel_cuda_ctx_memory(d->cuda);
      d->owns_memory = true;
      break;
#else
      free(d);
      return keel_error(KEEL_UNSUPPORTED, "this keel was built without the CUDA backend (devices compiled in: cpu, sim)");
#endif
    }
    default:
      free(d);
      return keel_error(KEEL_INVALID_ARGUMENT, "unknown device kind %d", (int)opt->device);
  }
  *out = d;
  return NULL;
}

void keel_device_destroy(keel_device *d) {
  if (!d) return;
#ifdef KEEL_HAVE_CUDA
  keel_cuda_ctx_destroy(d->cuda); /* before its memory: the context frees its own blocks into it */
#endif
  if (d->owns_memory) keel_allocator_destroy(d->memory);
  free(d);
}

keel_status *keel_tensor_copy_to_host(const keel_tensor *t, void *dst, size_t nbytes) {
  if (!t || (!dst && nbytes)) return keel_error(KEEL_INVALID_ARGUMENT, "keel_tensor_copy_to_host: tensor or dst is NULL");
  if (nbytes != t->nbytes)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_tensor_copy_to_host: the tensor has %zu bytes, dst %zu", t->nbytes,
                      nbytes);
  if (!nbytes) return NULL;
  int dev = t->storage ? t->storage->device : 0;
  if (dev == KEEL_DEVICE_CUDA) {
#ifdef KEEL_HAVE_CUDA
    return keel_cuda_copy_any(dst, t->data, nbytes, "copying a CUDA tensor to the host");
#else
    return keel_error(KEEL_UNSUPPORTED, "a CUDA tensor in a keel built without CUDA");
#endif
  }
  memcpy(dst, t->data, nbytes);
  return NULL;
}

keel_status *keel_tensor_wrap_device(keel_device_kind kind, keel_dtype dtype, const int64_t *dims, int ndim, void *data,
                                     size_t nbytes, void (*deleter)(void *data, void *user), void *user,
                                     keel_tensor **out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_tensor_wrap_device: out is NULL");
  *out = NULL;
  if (kind != KEEL_DEVICE_CPU) KEEL_TRY(keel_device_check(kind));
  KEEL_TRY(keel_tensor_wrap(dtype, dims, ndim, data, nbytes, deleter, user, out));
  (*out)->storage->device = (int)kind;
  return NULL;
}

void keel_device_copy(const keel_device *d, void *dst, const void *src, size_t n) {
  if (!n) return;
  double start = d->kind == KEEL_DEVICE_SIM ? keel_now_us() : 0;
  memcpy(dst, src, n);
  if (d->kind == KEEL_DEVICE_SIM) {
    double want = (double)n / (d->copy_gbps * 1e3); /* bytes / (GB/s) in us */
    double spent = keel_now_us() - start;
    if (want > spent) keel_spin_us(want - spent);
  }
}
