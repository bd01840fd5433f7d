/* CPU and simulated devices. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "runtime/device.h"

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
    case KEEL_DEVICE_CUDA:
      free(d);
      return keel_error(KEEL_UNSUPPORTED, "this keel was built without the CUDA backend (devices compiled in: cpu, sim)");
    default:
      free(d);
      return keel_error(KEEL_INVALID_ARGUMENT, "unknown device kind %d", (int)opt->device);
  }
  *out = d;
  return NULL;
}

void keel_device_destroy(keel_device *d) {
  if (!d) return;
  if (d->owns_memory) keel_allocator_destroy(d->memory);
  free(d);
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
