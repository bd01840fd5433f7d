/* Concurrency: threads sharing one engine through a module pool, mixing shapes and output modes, releasing
 * outputs on other threads than the one that made them; async submissions. Run under ThreadSanitizer in CI. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "test_main.h"

enum { THREADS = 4, CALLS = 40 };

static keel_engine *engine;
static keel_module_pool *pool;
static keel_tensor *inputs[2], *refs[2];
static pthread_mutex_t handoff_mu = PTHREAD_MUTEX_INITIALIZER;
static keel_tensor *handoff[THREADS * CALLS];
static int n_handoff;
static int errors;

static bool same(keel_tensor *a, keel_tensor *b) {
  return a && b && keel_tensor_nbytes(a) == keel_tensor_nbytes(b) &&
         memcmp(keel_tensor_data(a), keel_tensor_data(b), keel_tensor_nbytes(a)) == 0;
}

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < CALLS; i++) {
    keel_module *m = keel_module_pool_acquire(pool);
    keel_status *s = keel_module_set_output_mode(m, (keel_output_mode)((id + i) % 3));
    int which = (id * 7 + i) % 2;
    keel_tensor *y = NULL;
    if (!s) s = keel_module_forward(m, &inputs[which], 1, &y, 1);
    bool ok = !s && same(y, refs[which]);
    /* PERSISTENT outputs are borrowed: copy-check before giving the module back */
    bool persistent = keel_module_output_mode(m) == KEEL_OUTPUTS_PERSISTENT;
    keel_module_pool_release(pool, m);
    pthread_mutex_lock(&handoff_mu);
    if (!ok) errors++;
    if (s) fprintf(stderr, "thread %d call %d: %s\n", id, i, keel_status_message(s));
    /* hand non-persistent outputs to whichever thread comes next: released there, into the module's pool */
    if (y && !persistent) handoff[n_handoff++] = y;
    else keel_tensor_release(y);
    keel_tensor *other = NULL;
    if (n_handoff > 2) { /* take the oldest: most likely made by another thread */
      other = handoff[0];
      handoff[0] = handoff[--n_handoff];
    }
    pthread_mutex_unlock(&handoff_mu);
    keel_tensor_release(other);
    keel_status_free(s);
  }
  return NULL;
}

/* The engine, two inputs of different batch sizes, and their references from keel_engine_run. */
static bool load_engine_and_references(float freq) {
  CHECK_OK(keel_engine_load_file("engine/conv_bn_relu.onnx", NULL, &engine));
  if (!engine) return false;
  int64_t a[] = {1, 3, 8, 8}, b[] = {2, 3, 8, 8};
  for (int k = 0; k < 2; k++) {
    CHECK_OK(keel_tensor_create(KEEL_FLOAT32, k ? b : a, 4, NULL, &inputs[k]));
    float *p = keel_tensor_data(inputs[k]);
    for (int64_t i = 0; i < keel_tensor_numel(inputs[k]); i++) p[i] = cosf((float)i * freq + (float)k);
    CHECK_OK(keel_engine_run(engine, &inputs[k], 1, &refs[k], 1));
  }
  return true;
}

TEST(module_pool_threads) {
  TEST_BEGIN("module_pool_threads");
  if (!load_engine_and_references(0.1f)) return;
  keel_module_options o;
  keel_module_options_init(&o);
  o.async = 1; /* stream threads and cross-thread releases together */
  CHECK_OK(keel_module_pool_create(engine, 2, &o, &pool));
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  CHECK(errors == 0);
  keel_module_pool_destroy(pool); /* outputs still handed off survive the modules */
  for (int i = 0; i < n_handoff; i++) {
    CHECK(same(handoff[i], refs[0]) || same(handoff[i], refs[1]));
    keel_tensor_release(handoff[i]);
  }
  for (int k = 0; k < 2; k++) {
    keel_tensor_release(inputs[k]);
    keel_tensor_release(refs[k]);
  }
  keel_engine_release(engine);
}

/* One module, several threads submitting and waiting their own calls on it. */
static keel_module *shared;
static void *submitter(void *arg) {
  (void)arg;
  for (int i = 0; i < CALLS; i++) {
    keel_call *c = NULL;
    keel_tensor *y = NULL;
    keel_status *s = keel_module_submit(shared, &inputs[i % 2], 1, &c);
    if (s && keel_status_code(s) == KEEL_INVALID_ARGUMENT) { /* all slots busy: try again */
      keel_status_free(s);
      i--;
      continue;
    }
    if (!s) s = keel_call_wait(c, &y, 1);
    pthread_mutex_lock(&handoff_mu);
    if (s || !same(y, refs[i % 2])) errors++;
    pthread_mutex_unlock(&handoff_mu);
    keel_status_free(s);
    keel_tensor_release(y);
  }
  return NULL;
}

TEST(shared_module_async) {
  TEST_BEGIN("shared_module_async");
  if (!load_engine_and_references(0.2f)) return;
  keel_module_options o;
  keel_module_options_init(&o);
  o.output_mode = KEEL_OUTPUTS_PREALLOCATED;
  o.max_inflight = 3;
  o.async = 1; /* the stream thread, even on the CPU */
  CHECK_OK(keel_module_create(engine, &o, &shared));
  errors = 0;
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, submitter, NULL);
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  CHECK(errors == 0);
  keel_module_destroy(shared);
  for (int k = 0; k < 2; k++) {
    keel_tensor_release(inputs[k]);
    keel_tensor_release(refs[k]);
  }
  keel_engine_release(engine);
}

RUN_TESTS(module_pool_threads, shared_module_async)
