/* malloc_count: an LD_PRELOAD library that counts the process's calls to the C allocator and to mmap.
 *
 * It is an independent check on keel's own counters (keel_module_get_stats): keel counts what goes through
 * its keel_allocator objects, this counts every malloc-family call in the process, whoever makes it.
 *
 *   LD_PRELOAD=build/libkeel_malloc_count.so keel bench model.onnx
 *
 * keel bench finds keel_malloc_count_get() with dlsym(RTLD_DEFAULT) and reports "libc allocations per
 * call" from snapshots taken right before and after the timed calls.
 *
 * KEEL_MALLOC_TRACE=N (N >= 1; 1 means 20) prints a backtrace to stderr for each of the first N allocation
 * calls made while tracing is switched on with keel_malloc_count_trace(1); keel bench switches it on for
 * the timed calls only, so the traces show exactly which code allocates in steady state.
 *
 * Bootstrap: dlsym itself may call calloc/malloc before the real functions are known. Those early calls
 * are served from a static arena (never freed; free() recognises and ignores its pointers). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

/* Exported API (also looked up by name, so keep the names stable). */
void keel_malloc_count_get(unsigned long long out[4]);
void keel_malloc_count_trace(int on);

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef void *(*aligned_alloc_fn)(size_t, size_t);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void *(*memalign_fn)(size_t, size_t);
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);

static malloc_fn real_malloc;
static calloc_fn real_calloc;
static realloc_fn real_realloc;
static free_fn real_free;
static aligned_alloc_fn real_aligned_alloc;
static posix_memalign_fn real_posix_memalign;
static memalign_fn real_memalign;
static mmap_fn real_mmap;
static munmap_fn real_munmap;

enum { C_MALLOC, C_FREE, C_MMAP, C_MUNMAP };
static atomic_ullong counts[4];

/* Tracing: how many backtraces are left to print, and whether the caller switched tracing on. */
static atomic_int trace_on;
static atomic_int trace_left;
static _Thread_local int in_hook; /* no counting of what our own tracing allocates, no recursion */

/* Static arena for calls made while dlsym is resolving the real functions. */
static _Alignas(64) unsigned char boot_arena[64 * 1024];
static atomic_size_t boot_used;
static atomic_int initializing;

static int in_boot_arena(const void *p) {
  return (const unsigned char *)p >= boot_arena && (const unsigned char *)p < boot_arena + sizeof boot_arena;
}

static void *boot_alloc(size_t size, size_t align) {
  if (align < 16) align = 16;
  size_t off = atomic_load(&boot_used);
  for (;;) {
    size_t start = (off + align - 1) & ~(align - 1);
    if (start + size + 16 > sizeof boot_arena || start + size < start) return NULL;
    /* store the size just before the block so realloc can copy from it */
    size_t end = start + 16 + size;
    if (atomic_compare_exchange_weak(&boot_used, &off, end)) {
      unsigned char *p = boot_arena + start + 16;
      memcpy(p - sizeof(size_t), &size, sizeof size);
      memset(p, 0, size);
      return p;
    }
  }
}

static size_t boot_size(const void *p) {
  size_t s;
  memcpy(&s, (const unsigned char *)p - sizeof s, sizeof s);
  return s;
}

static void resolve(void) {
  if (real_malloc && real_free) return;
  atomic_store(&initializing, 1);
  real_malloc = (malloc_fn)dlsym(RTLD_NEXT, "malloc");
  real_calloc = (calloc_fn)dlsym(RTLD_NEXT, "calloc");
  real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
  real_free = (free_fn)dlsym(RTLD_NEXT, "free");
  real_aligned_alloc = (aligned_alloc_fn)dlsym(RTLD_NEXT, "aligned_alloc");
  real_posix_memalign = (posix_memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
  real_memalign = (memalign_fn)dlsym(RTLD_NEXT, "memalign");
  real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
  real_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
  atomic_store(&initializing, 0);
}

static int booting(void) { return atomic_load(&initializing) || !real_malloc; }

static void trace(const char *what, size_t size) {
  if (!atomic_load_explicit(&trace_on, memory_order_relaxed) || in_hook) return;
  if (atomic_fetch_sub(&trace_left, 1) <= 0) return;
  in_hook = 1;
  char line[96];
  /* hand-made formatting: snprintf may allocate */
  const char *pre = "keel_malloc_count: ";
  size_t n = 0;
  for (const char *c = pre; *c && n < sizeof line - 1; c++) line[n++] = *c;
  for (const char *c = what; *c && n < sizeof line - 1; c++) line[n++] = *c;
  line[n++] = '(';
  char digits[24];
  int nd = 0;
  do {
    digits[nd++] = (char)('0' + size % 10);
    size /= 10;
  } while (size && nd < 24);
  while (nd && n < sizeof line - 3) line[n++] = digits[--nd];
  line[n++] = ')';
  line[n++] = '\n';
  ssize_t w = write(2, line, n);
  void *frames[32];
  int nf = backtrace(frames, 32);
  backtrace_symbols_fd(frames + 1, nf > 1 ? nf - 1 : 0, 2);
  w = write(2, "\n", 1);
  (void)w;
  in_hook = 0;
}

static void count_alloc(const char *what, size_t size) {
  if (in_hook) return;
  atomic_fetch_add_explicit(&counts[C_MALLOC], 1, memory_order_relaxed);
  trace(what, size);
}

void *malloc(size_t size) {
  if (booting()) {
    if (atomic_load(&initializing)) return boot_alloc(size, 16);
    resolve();
  }
  count_alloc("malloc", size);
  return real_malloc(size);
}

void *calloc(size_t n, size_t size) {
  if (booting()) {
    if (atomic_load(&initializing)) {
      if (size && n > SIZE_MAX / size) return NULL;
      return boot_alloc(n * size, 16);
    }
    resolve();
  }
  count_alloc("calloc", n * size);
  return real_calloc(n, size);
}

void *realloc(void *p, size_t size) {
  if (booting()) {
    if (atomic_load(&initializing)) {
      void *q = boot_alloc(size, 16);
      if (q && p) memcpy(q, p, in_boot_arena(p) && boot_size(p) < size ? boot_size(p) : size);
      return q;
    }
    resolve();
  }
  count_alloc("realloc", size);
  if (p && in_boot_arena(p)) {
    /* moving a bootstrap block into the real heap */
    void *q = real_malloc(size);
    if (q) memcpy(q, p, boot_size(p) < size ? boot_size(p) : size);
    return q;
  }
  return real_realloc(p, size);
}

void free(void *p) {
  if (!p) return;
  if (in_boot_arena(p)) return; /* bootstrap blocks live forever */
  if (!real_free) resolve();
  if (!in_hook) atomic_fetch_add_explicit(&counts[C_FREE], 1, memory_order_relaxed);
  real_free(p);
}

void *aligned_alloc(size_t align, size_t size) {
  if (booting()) {
    if (atomic_load(&initializing)) return boot_alloc(size, align);
    resolve();
  }
  count_alloc("aligned_alloc", size);
  return real_aligned_alloc(align, size);
}

int posix_memalign(void **out, size_t align, size_t size) {
  if (booting()) {
    if (atomic_load(&initializing)) {
      *out = boot_alloc(size, align);
      return *out ? 0 : ENOMEM;
    }
    resolve();
  }
  count_alloc("posix_memalign", size);
  return real_posix_memalign(out, align, size);
}

void *memalign(size_t align, size_t size) {
  if (booting()) {
    if (atomic_load(&initializing)) return boot_alloc(size, align);
    resolve();
  }
  count_alloc("memalign", size);
  return real_memalign(align, size);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (!real_mmap) resolve();
  if (!in_hook) {
    atomic_fetch_add_explicit(&counts[C_MMAP], 1, memory_order_relaxed);
    trace("mmap", len);
  }
  return real_mmap(addr, len, prot, flags, fd, off);
}

int munmap(void *addr, size_t len) {
  if (!real_munmap) resolve();
  if (!in_hook) atomic_fetch_add_explicit(&counts[C_MUNMAP], 1, memory_order_relaxed);
  return real_munmap(addr, len);
}

void keel_malloc_count_get(unsigned long long out[4]) {
  for (int i = 0; i < 4; i++) out[i] = atomic_load(&counts[i]);
}

void keel_malloc_count_trace(int on) {
  if (on && atomic_load(&trace_left) > 0) {
    /* backtrace() loads libgcc's unwinder on first use (dlopen + malloc): do that outside the timed region */
    void *f[2];
    in_hook = 1;
    (void)backtrace(f, 2);
    in_hook = 0;
  }
  atomic_store(&trace_on, on ? 1 : 0);
}

__attribute__((constructor)) static void malloc_count_init(void) {
  resolve();
  const char *t = getenv("KEEL_MALLOC_TRACE");
  if (t && *t && *t != '0') {
    long n = strtol(t, NULL, 10);
    atomic_store(&trace_left, n > 1 ? (int)n : 20);
  }
}
