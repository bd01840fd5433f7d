/* The CUDA backend's caching allocator (backend/cuda/cuda_cache.h) against a fake backend that counts
 * calls like cudaMalloc/cudaFree: size classes, reuse, the limit, trim, and failure handling. Runs everywhere
 * (no GPU, no CUDA toolkit needed). */
#include <stdint.h>

#include "backend/cuda/cuda_cache.h"
#include "test_main.h"

typedef struct fake {
  int allocs, frees, fail_next;
  size_t live_bytes;
  char mem[64][16]; /* distinct addresses; content never touched */
  int used[64];
} fake;

static void *fake_alloc(void *user, size_t bytes) {
  fake *f = user;
  if (f->fail_next) {
    f->fail_next--;
    return NULL;
  }
  for (int i = 0; i < 64; i++)
    if (!f->used[i]) {
      f->used[i] = 1;
      f->allocs++;
      f->live_bytes += bytes;
      return f->mem[i];
    }
  return NULL;
}

static void fake_free(void *user, void *ptr, size_t bytes) {
  fake *f = user;
  for (int i = 0; i < 64; i++)
    if (f->mem[i] == (char *)ptr) f->used[i] = 0;
  f->frees++;
  f->live_bytes -= bytes;
}

TEST(size_classes) {
  TEST_BEGIN("size_classes");
  CHECK(keel_cuda_cache_class(0) == 512);
  CHECK(keel_cuda_cache_class(1) == 512);
  CHECK(keel_cuda_cache_class(512) == 512);
  CHECK(keel_cuda_cache_class(513) == 1024);
  CHECK(keel_cuda_cache_class((size_t)1 << 20) == (size_t)1 << 20);
  /* above 1 MiB: 1, 1.25, 1.5, 1.75 x 2^k */
  CHECK(keel_cuda_cache_class(((size_t)1 << 20) + 1) == ((size_t)5 << 18));
  CHECK(keel_cuda_cache_class((size_t)3 << 20) == (size_t)3 << 20);
  CHECK(keel_cuda_cache_class(((size_t)3 << 20) + 1) == (size_t)7 << 19);
  CHECK(keel_cuda_cache_class(((size_t)7 << 19) + 1) == (size_t)4 << 20);
  /* every class holds its request and wastes less than a quarter above 1 MiB */
  for (size_t b = 1; b < ((size_t)64 << 20); b = b * 3 / 2 + 7) {
    size_t c = keel_cuda_cache_class(b);
    CHECK(c >= b);
    if (b > ((size_t)1 << 20)) CHECK(c - b < b / 4 + 1);
    CHECK(keel_cuda_cache_class(c) == c); /* classes are fixed points */
  }
}

TEST(reuse_and_stats) {
  TEST_BEGIN("reuse_and_stats");
  fake f = {0};
  keel_cuda_cache_backend be = {fake_alloc, fake_free, &f};
  keel_cuda_cache *c = keel_cuda_cache_create(&be, 0);
  CHECK(c != NULL);
  void *a = keel_cuda_cache_alloc(c, 1000); /* class 1024 */
  void *b = keel_cuda_cache_alloc(c, 1000);
  CHECK(a && b && a != b);
  CHECK(f.allocs == 2);
  keel_cuda_cache_free(c, a, 1000);
  void *a2 = keel_cuda_cache_alloc(c, 900); /* same class: served from the free list */
  CHECK(a2 == a);
  CHECK(f.allocs == 2);
  void *d = keel_cuda_cache_alloc(c, 2000); /* another class: a backend call */
  CHECK(f.allocs == 3);
  keel_cuda_cache_stats st;
  keel_cuda_cache_get_stats(c, &st);
  CHECK(st.backend_allocs == 3 && st.hits == 1 && st.misses == 3);
  CHECK(st.bytes_held == 1024 + 1024 + 2048);
  CHECK(st.bytes_in_use == st.bytes_held && st.bytes_idle == 0);
  keel_cuda_cache_free(c, a2, 900);
  keel_cuda_cache_free(c, b, 1000);
  keel_cuda_cache_free(c, d, 2000);
  keel_cuda_cache_get_stats(c, &st);
  CHECK(st.bytes_idle == 4096 && st.bytes_in_use == 0 && f.frees == 0);
  /* steady state: a loop of the same sizes never reaches the backend */
  for (int i = 0; i < 100; i++) {
    void *x = keel_cuda_cache_alloc(c, 1000), *y = keel_cuda_cache_alloc(c, 2000);
    keel_cuda_cache_free(c, x, 1000);
    keel_cuda_cache_free(c, y, 2000);
  }
  CHECK(f.allocs == 3);
  keel_cuda_cache_trim(c);
  keel_cuda_cache_get_stats(c, &st);
  CHECK(f.frees == 3 && st.bytes_held == 0 && st.bytes_idle == 0 && st.backend_frees == 3);
  CHECK(f.live_bytes == 0);
  CHECK(st.peak_held == 4096);
  /* a foreign pointer is ignored, not freed */
  char other;
  keel_cuda_cache_free(c, &other, 1);
  CHECK(f.frees == 3);
  keel_cuda_cache_destroy(c);
}

TEST(limit) {
  TEST_BEGIN("limit");
  fake f = {0};
  keel_cuda_cache_backend be = {fake_alloc, fake_free, &f};
  keel_cuda_cache *c = keel_cuda_cache_create(&be, 4096);
  void *a = keel_cuda_cache_alloc(c, 2048), *b = keel_cuda_cache_alloc(c, 2048);
  CHECK(a && b);
  CHECK(keel_cuda_cache_alloc(c, 512) == NULL); /* 4096 held, all in use: refused */
  keel_cuda_cache_stats st;
  keel_cuda_cache_get_stats(c, &st);
  CHECK(st.limit_refusals == 1 && f.allocs == 2);
  keel_cuda_cache_free(c, b, 2048);
  /* a 1024 request does not fit beside 4096 held, but trimming the idle 2048 block makes room */
  void *x = keel_cuda_cache_alloc(c, 1024);
  CHECK(x != NULL);
  CHECK(f.frees == 1 && f.allocs == 3);
  keel_cuda_cache_get_stats(c, &st);
  CHECK(st.bytes_held == 2048 + 1024);
  /* lowering the limit sheds idle memory at once */
  keel_cuda_cache_free(c, x, 1024);
  keel_cuda_cache_set_limit(c, 2048);
  keel_cuda_cache_get_stats(c, &st);
  CHECK(st.bytes_held == 2048 && st.bytes_idle == 0);
  keel_cuda_cache_free(c, a, 2048); /* over no limit now: kept idle */
  keel_cuda_cache_get_stats(c, &st);
  CHECK(st.bytes_idle == 2048);
  keel_cuda_cache_destroy(c);
  CHECK(f.live_bytes == 0);
}

TEST(backend_failure) {
  TEST_BEGIN("backend_failure");
  fake f = {0};
  keel_cuda_cache_backend be = {fake_alloc, fake_free, &f};
  keel_cuda_cache *c = keel_cuda_cache_create(&be, 0);
  void *a = keel_cuda_cache_alloc(c, 4096);
  keel_cuda_cache_free(c, a, 4096); /* idle */
  /* out of device memory once: the cache gives back its idle blocks and retries */
  f.fail_next = 1;
  void *b = keel_cuda_cache_alloc(c, 8192);
  CHECK(b != NULL);
  CHECK(f.frees == 1);
  /* out of memory with nothing idle: NULL, counted, nothing leaked */
  f.fail_next = 2;
  CHECK(keel_cuda_cache_alloc(c, 100000) == NULL);
  keel_cuda_cache_stats st;
  keel_cuda_cache_get_stats(c, &st);
  CHECK(st.backend_failures == 1);
  CHECK(st.bytes_held == 8192);
  keel_cuda_cache_destroy(c); /* frees the block still in use too */
  CHECK(f.live_bytes == 0);
  keel_cuda_cache_backend bad = {NULL, fake_free, &f};
  CHECK(keel_cuda_cache_create(&bad, 0) == NULL);
}

RUN_TESTS(size_classes, reuse_and_stats, limit, backend_failure)
