/* The runtime module: output modes, shape-change detection with a plan cache, an in-order stream that
 * computes while the host prepares the next call's outputs, pooled buffers and statistics.
 * docs/RUNTIME.md describes the contract; comments here say how it is kept. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <keel/module.h>

#include "backend/cpu/stream.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/tensor_internal.h"
#include "runtime/device.h"
#include "runtime/engine_internal.h"
#include "runtime/interp.h"
#include "runtime/output_pool.h"
#ifdef KEEL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

typedef struct plan_entry {
  uint8_t *key;
  size_t key_len;
  keel_plan *plan;
  keel_view *views; /* execution scratch; only the stream touches it, one call at a time */
  uint64_t last_used;
  int inflight;
  struct keel_cuda_plan *cuda; /* CUDA: constants on the device, kernel per step */
  uint64_t *step_ns;           /* opt.profile: wall time per step, summed over profiled_calls */
  uint64_t profiled_calls;
} plan_entry;

struct keel_call {
  keel_module *m;
  bool in_use;
  uint64_t ticket;
  keel_status *status; /* written by the stream task, read after the wait */
  plan_entry *plan;
  void *arena;
  keel_tensor **inputs;  /* retained until the call ends */
  keel_tensor **outputs; /* handed to the caller by wait */
  void **in_ptrs, **out_ptrs;
  void **staging; /* SIM: this slot's device copies of the inputs (per slot, so copies for the next call
                   * can run on the copy engine while this one computes) */
  size_t *staging_cap;
  uint64_t copy_ticket; /* SIM: the copy-engine task that stages this call's inputs */
  struct keel_cuda_events *ev; /* CUDA: start / inputs staged / done on the engine stream */
  void **pinned;               /* CUDA: this slot's pinned host staging per input */
  size_t *pinned_cap;
  bool interp;    /* no static plan: the interpreter computes the outputs (allocating them) */
  keel_module_stats before;
};

struct keel_module {
  keel_engine *engine;
  keel_module_options opt;
  pthread_mutex_t mu;         /* protects module state; held by submit and wait, not during compute */
  pthread_mutex_t forward_mu; /* serializes whole forward calls */
  keel_allocator *host_alloc;
  bool owns_host_alloc;
  keel_device *device;
  keel_output_pool *pool;
  keel_stream *stream;      /* compute; NULL when not async */
  keel_stream *copy_stream; /* SIM: the copy engine (host->device), overlapping compute */
  int n_in, n_out;
  plan_entry *plans;
  int n_plans;
  plan_entry *current;
  uint64_t clock;
  uint8_t *key;
  size_t key_cap, key_len;
  keel_view *in_views;
  void *arena;
  size_t arena_cap;
  keel_tensor **prepared;
  keel_tensor **persistent;
  keel_tensor **bound;
  keel_output_allocator *out_alloc;
  bool *has_out_alloc;
  keel_tensor **alloc_wrapped;
  keel_call *calls;
  int n_calls;
  keel_module_stats st, last;
  /* CUDA */
  bool cuda_graphs;
  void *caller_stream;
  void *cuda_ws; /* kernel workspace (im2col...) of the current plan */
  size_t cuda_ws_cap;
  keel_device_stats dev_st;
  struct keel_cuda_events *d2h_ev; /* times keel_module_copy_to_host */
};

static bool is_cuda(const keel_module *m) { return m->opt.device == KEEL_DEVICE_CUDA; }

/* Wait until nothing queued by this module runs any more (the stream thread, or the CUDA stream). */
static void module_sync(keel_module *m) {
  if (m->stream) keel_stream_synchronize(m->stream);
#ifdef KEEL_HAVE_CUDA
  if (m->device && m->device->cuda) {
    keel_status *s = keel_cuda_sync(m->device->cuda);
    keel_status_free(s); /* a failed call reports its error in its own wait */
  }
#endif
}

void keel_module_options_init(keel_module_options *o) {
  memset(o, 0, sizeof *o);
  o->output_mode = KEEL_OUTPUTS_FRESH;
  o->device = KEEL_DEVICE_CPU;
  o->async = -1;
  o->prefault = 1;
  o->plan_cache_size = 8;
  o->max_inflight = 4;
  o->num_threads = 1;
  o->sim_alloc_delay_us = 30;
  o->sim_free_delay_us = 10;
  o->sim_copy_gbps = 25;
}

keel_device_kind keel_tensor_device(const keel_tensor *t) {
  return t && t->storage ? (keel_device_kind)t->storage->device : KEEL_DEVICE_CPU;
}

/* ---- lifetime ------------------------------------------------------------------------------------------- */

/* The pool calls this once it is gone for good (module destroyed and every output released). */
static void release_memory(void *user) {
  keel_module *m = user;
  keel_device_destroy(m->device);
  if (m->owns_host_alloc) keel_allocator_destroy(m->host_alloc);
  free(m);
}

static void free_plan_entry(keel_module *m, plan_entry *e) {
#ifdef KEEL_HAVE_CUDA
  if (e->cuda) keel_cuda_plan_destroy(m->device->cuda, e->cuda);
#else
  (void)m;
#endif
  keel_plan_destroy(e->plan);
  free(e->key);
  free(e->views);
  free(e->step_ns);
  memset(e, 0, sizeof *e);
}

keel_status *keel_module_create(keel_engine *engine, const keel_module_options *opt, keel_module **out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_create: out is NULL");
  *out = NULL;
  if (!engine) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_create: engine is NULL");
  keel_module_options o;
  keel_module_options_init(&o);
  if (opt) o = *opt;
  if (o.output_mode < KEEL_OUTPUTS_FRESH || o.output_mode > KEEL_OUTPUTS_PERSISTENT)
    return keel_error(KEEL_INVALID_ARGUMENT, "unknown output mode %d", (int)o.output_mode);
  if (o.plan_cache_size < 1) o.plan_cache_size = 1;
  if (o.max_inflight < 1) o.max_inflight = 1;
  if (o.num_threads < 1) o.num_threads = 1;
  if (o.async < 0) o.async = o.device != KEEL_DEVICE_CPU;
  if (o.device != KEEL_DEVICE_CPU) o.async = 1; /* a device always computes on its stream */
  if (o.device == KEEL_DEVICE_CUDA) {
    /* refuse what the GPU cannot run before allocating anything on it */
    if (atomic_load(&engine->interp_only))
      return keel_error(KEEL_UNSUPPORTED, "this model needs the interpreter (control flow or data-dependent shapes), "
                                          "which runs on the CPU only; use device cpu");
#ifdef KEEL_HAVE_CUDA
    KEEL_TRY(keel_cuda_check_graph(engine->graph));
#endif
  }
  keel_module *m = calloc(1, sizeof *m);
  if (!m) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a module");
  keel_status *s = NULL;
  m->opt = o;
  m->n_in = engine->graph->n_inputs;
  m->n_out = engine->graph->n_outputs;
  pthread_mutex_init(&m->mu, NULL);
  pthread_mutex_init(&m->forward_mu, NULL);
  m->host_alloc = o.allocator;
  if (!m->host_alloc) {
    m->host_alloc = keel_allocator_create(NULL, NULL);
    m->owns_host_alloc = true;
    if (!m->host_alloc) {
      s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a module");
      goto fail_early;
    }
  }
  s = keel_device_create(&o, m->host_alloc, &m->device);
  if (s) goto fail_early;
  m->pool = keel_output_pool_create(m->device->memory, (int)o.device, o.pool_limit_bytes, release_memory, m);
  if (!m->pool) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a module");
    goto fail_early;
  }
  size_t ni = (size_t)m->n_in + 1, no = (size_t)m->n_out + 1;
  m->plans = calloc((size_t)o.plan_cache_size, sizeof *m->plans);
  m->key_cap = ni * (8 + 8 * KEEL_MAX_DIMS + 64 * 8);
  m->key = malloc(m->key_cap);
  m->in_views = calloc(ni, sizeof *m->in_views);
  m->prepared = calloc(no, sizeof *m->prepared);
  m->persistent = calloc(no, sizeof *m->persistent);
  m->bound = calloc(no, sizeof *m->bound);
  m->out_alloc = calloc(no, sizeof *m->out_alloc);
  m->has_out_alloc = calloc(no, sizeof *m->has_out_alloc);
  m->alloc_wrapped = calloc(no, sizeof *m->alloc_wrapped);
  m->n_calls = o.max_inflight;
  m->calls = calloc((size_t)m->n_calls, sizeof *m->calls);
  bool ok = m->plans && m->key && m->in_views && m->prepared && m->persistent &&
            m->bound && m->out_alloc && m->has_out_alloc && m->alloc_wrapped && m->calls;
  for (int c = 0; ok && c < m->n_calls; c++) {
    keel_call *k = &m->calls[c];
    k->m = m;
    k->inputs = calloc(ni, sizeof *k->inputs);
    k->outputs = calloc(no, sizeof *k->outputs);
    k->in_ptrs = calloc(ni, sizeof *k->in_ptrs);
    k->out_ptrs = calloc(no, sizeof *k->out_ptrs);
    k->staging = calloc(ni, sizeof *k->staging);
    k->staging_cap = calloc(ni, sizeof *k->staging_cap);
    k->pinned = calloc(ni, sizeof *k->pinned);
    k->pinned_cap = calloc(ni, sizeof *k->pinned_cap);
    ok = k->inputs && k->outputs && k->in_ptrs && k->out_ptrs && k->staging && k->staging_cap && k->pinned &&
         k->pinned_cap;
  }
  if (!ok) {
    s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a module");
    goto fail;
  }
  /* CUDA enqueues on its own stream from the submitting thread: no host stream threads */
  if (o.async && o.device != KEEL_DEVICE_CUDA) {
    s = keel_stream_create(2 * m->n_calls + 2, &m->stream);
    if (s) goto fail;
  }
  if (o.device == KEEL_DEVICE_SIM) {
    s = keel_stream_create(2 * m->n_calls + 2, &m->copy_stream);
    if (s) goto fail;
  }
#ifdef KEEL_HAVE_CUDA
  for (int c = 0; o.device == KEEL_DEVICE_CUDA && c < m->n_calls; c++) {
    s = keel_cuda_events_create(m->device->cuda, &m->calls[c].ev);
    if (s) goto fail;
  }
  if (o.device == KEEL_DEVICE_CUDA) {
    s = keel_cuda_events_create(m->device->cuda, &m->d2h_ev);
    if (s) goto fail;
  }
#endif
  m->engine = keel_engine_retain(engine);
  *out = m;
  return NULL;
fail_early:
  if (!m->pool) {
    keel_device_destroy(m->device);
    if (m->owns_host_alloc) keel_allocator_destroy(m->host_alloc);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->forward_mu);
    free(m);
    return s;
  }
fail:
  m->engine = NULL;
  keel_module_destroy(m);
  return s;
}

void keel_module_destroy(keel_module *m) {
  if (!m) return;
  if (m->stream) {
    keel_stream_synchronize(m->stream);
    keel_stream_destroy(m->stream);
    m->stream = NULL;
  }
  if (m->copy_stream) keel_stream_destroy(m->copy_stream);
  m->copy_stream = NULL;
  module_sync(m); /* CUDA: nothing queued may still touch what is freed below */
  /* Calls submitted but never waited: their task ran; drop what they hold. */
  for (int c = 0; m->calls && c < m->n_calls; c++) {
    keel_call *k = &m->calls[c];
    if (k->in_use) {
      for (int i = 0; i < m->n_in; i++) keel_tensor_release(k->inputs[i]);
      for (int i = 0; i < m->n_out; i++) keel_tensor_release(k->outputs[i]);
      keel_status_free(k->status);
    }
    free(k->inputs);
    free(k->outputs);
    free(k->in_ptrs);
    free(k->out_ptrs);
    for (int i = 0; k->staging && i < m->n_in; i++)
      if (k->staging[i]) keel_allocator_free(m->device->memory, k->staging[i], k->staging_cap[i]);
    free(k->staging);
    free(k->staging_cap);
#ifdef KEEL_HAVE_CUDA
    for (int i = 0; k->pinned && i < m->n_in; i++) keel_cuda_pinned_free(m->device->cuda, k->pinned[i]);
    keel_cuda_events_destroy(k->ev);
#endif
    free(k->pinned);
    free(k->pinned_cap);
  }
  free(m->calls);
  for (int i = 0; m->prepared && i < m->n_out; i++) keel_tensor_release(m->prepared[i]);
  for (int i = 0; m->persistent && i < m->n_out; i++) keel_tensor_release(m->persistent[i]);
  for (int i = 0; m->bound && i < m->n_out; i++) keel_tensor_release(m->bound[i]);
  for (int i = 0; m->alloc_wrapped && i < m->n_out; i++) keel_tensor_release(m->alloc_wrapped[i]);
  for (int i = 0; m->plans && i < m->opt.plan_cache_size; i++) free_plan_entry(m, &m->plans[i]);
  if (m->arena) keel_allocator_free(m->device->memory, m->arena, m->arena_cap);
  if (m->cuda_ws) keel_allocator_free(m->device->memory, m->cuda_ws, m->cuda_ws_cap);
#ifdef KEEL_HAVE_CUDA
  keel_cuda_events_destroy(m->d2h_ev);
#endif
  free(m->plans);
  free(m->key);
  free(m->in_views);
  free(m->prepared);
  free(m->persistent);
  free(m->bound);
  free(m->out_alloc);
  free(m->has_out_alloc);
  free(m->alloc_wrapped);
  keel_engine_release(m->engine);
  pthread_mutex_destroy(&m->mu);
  pthread_mutex_destroy(&m->forward_mu);
  /* The pool frees the device, the allocator and m itself once the last output out there is released. */
  keel_output_pool_close(m->pool);
}

/* ---- statistics ------------------------------------------------------------------------------------------ */

static void snapshot(keel_module *m, keel_module_stats *out) {
  keel_alloc_stats a;
  keel_allocator_get_stats(m->device->memory, &a);
  keel_pool_stats p;
  keel_output_pool_get_stats(m->pool, &p);
  *out = m->st;
  out->system_allocations = a.allocations;
  out->system_frees = a.frees;
  out->bytes_allocated = a.bytes_allocated;
  out->pool_hits = p.hits;
  out->pool_misses = p.misses;
  out->pool_bytes_idle = p.idle_bytes;
  uint64_t held = m->arena_cap + m->cuda_ws_cap + p.idle_bytes;
  for (int c = 0; c < m->n_calls; c++)
    for (int i = 0; i < m->n_in; i++) held += m->calls[c].staging_cap[i];
  for (int k = 0; k < m->n_out; k++) {
    if (m->prepared[k]) held += m->prepared[k]->storage->nbytes;
    if (m->persistent[k]) held += m->persistent[k]->storage->nbytes;
  }
  out->bytes_held = held;
  out->peak_bytes = a.peak_bytes;
}

static void diff_stats(const keel_module_stats *a, const keel_module_stats *b, keel_module_stats *d) {
  d->calls = b->calls - a->calls;
  d->failed_calls = b->failed_calls - a->failed_calls;
  d->system_allocations = b->system_allocations - a->system_allocations;
  d->system_frees = b->system_frees - a->system_frees;
  d->bytes_allocated = b->bytes_allocated - a->bytes_allocated;
  d->pool_hits = b->pool_hits - a->pool_hits;
  d->pool_misses = b->pool_misses - a->pool_misses;
  d->pool_bytes_idle = b->pool_bytes_idle;
  d->bytes_held = b->bytes_held;
  d->peak_bytes = b->peak_bytes;
  d->shape_changes = b->shape_changes - a->shape_changes;
  d->plan_cache_hits = b->plan_cache_hits - a->plan_cache_hits;
  d->plan_cache_misses = b->plan_cache_misses - a->plan_cache_misses;
  d->prepared_used = b->prepared_used - a->prepared_used;
  d->prepared_discarded = b->prepared_discarded - a->prepared_discarded;
}

void keel_module_get_stats(const keel_module *cm, keel_module_stats *out) {
  keel_module *m = (keel_module *)cm;
  pthread_mutex_lock(&m->mu);
  snapshot(m, out);
  pthread_mutex_unlock(&m->mu);
}

void keel_module_get_last_call_stats(const keel_module *cm, keel_module_stats *out) {
  keel_module *m = (keel_module *)cm;
  pthread_mutex_lock(&m->mu);
  *out = m->last;
  pthread_mutex_unlock(&m->mu);
}

void keel_module_reset_stats(keel_module *m) {
  pthread_mutex_lock(&m->mu);
  memset(&m->st, 0, sizeof m->st);
  memset(&m->last, 0, sizeof m->last);
  memset(&m->dev_st, 0, sizeof m->dev_st);
  keel_allocator_reset_stats(m->device->memory);
  pthread_mutex_unlock(&m->mu);
}

keel_status *keel_module_write_profile(keel_module *m, FILE *f, int max_rows) {
  if (!m || !f) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_write_profile: module or file is NULL");
  if (!m->opt.profile)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_write_profile: the module was created without options.profile");
  module_sync(m); /* the counters are written by whoever computes */
  pthread_mutex_lock(&m->mu);
  const plan_entry *e = m->current;
  keel_status *s = NULL;
  if (!e || !e->profiled_calls)
    s = keel_error(KEEL_INVALID_ARGUMENT, "keel_module_write_profile: no call has run a static plan yet%s",
                   is_cuda(m) ? " (profiling times CPU plans only)" : "");
  else
    keel_plan_write_profile(e->plan, e->step_ns, e->profiled_calls, f, max_rows);
  pthread_mutex_unlock(&m->mu);
  return s;
}

void keel_module_trim(keel_module *m) {
  pthread_mutex_lock(&m->mu);
  for (int i = 0; i < m->opt.plan_cache_size; i++) {
    plan_entry *e = &m->plans[i];
    if (e->plan && e != m->current && e->inflight == 0) free_plan_entry(m, e);
  }
  keel_output_pool_trim(m->pool);
#ifdef KEEL_HAVE_CUDA
  if (m->device->cuda) keel_cuda_trim(m->device->cuda);
#endif
  pthread_mutex_unlock(&m->mu);
}

/* ---- configuration --------------------------------------------------------------------------------------- */

keel_status *keel_module_set_output_mode(keel_module *m, keel_output_mode mode) {
  if (!m) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_set_output_mode: module is NULL");
  if (mode < KEEL_OUTPUTS_FRESH || mode > KEEL_OUTPUTS_PERSISTENT)
    return keel_error(KEEL_INVALID_ARGUMENT, "unknown output mode %d", (int)mode);
  pthread_mutex_lock(&m->mu);
  if (mode != m->opt.output_mode) {
    /* Buffers of the old mode go back to the pool (PERSISTENT ones stay valid for a caller still holding
     * them: they are reference-counted). */
    for (int k = 0; k < m->n_out; k++) {
      keel_tensor_release(m->prepared[k]);
      m->prepared[k] = NULL;
      keel_tensor_release(m->persistent[k]);
      m->persistent[k] = NULL;
    }
    m->opt.output_mode = mode;
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

keel_output_mode keel_module_output_mode(const keel_module *m) { return m ? m->opt.output_mode : KEEL_OUTPUTS_FRESH; }

keel_status *keel_module_bind_output(keel_module *m, size_t index, keel_tensor *t) {
  if (!m) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_bind_output: module is NULL");
  if (index >= (size_t)m->n_out)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_bind_output: output index %zu out of range (the model has %d outputs)",
                      index, m->n_out);
  if (t && keel_tensor_dtype(t) == KEEL_STRING)
    return keel_error(KEEL_UNSUPPORTED, "keel_module_bind_output: output %zu: string tensors cannot be bound (their "
                      "elements own heap memory)", index);
  if (t && keel_tensor_device(t) != m->opt.device)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_bind_output: output %zu is bound to memory of another device",
                      index);
  pthread_mutex_lock(&m->mu);
  keel_tensor_release(m->bound[index]);
  m->bound[index] = keel_tensor_retain(t);
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

keel_status *keel_module_set_output_allocator(keel_module *m, size_t index, const keel_output_allocator *a) {
  if (!m) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_set_output_allocator: module is NULL");
  if (index >= (size_t)m->n_out)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_set_output_allocator: output index %zu out of range (the model has %d outputs)",
                      index, m->n_out);
  if (a && !a->reallocate)
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_set_output_allocator: reallocate callback is NULL");
  pthread_mutex_lock(&m->mu);
  m->has_out_alloc[index] = a != NULL;
  if (a) m->out_alloc[index] = *a;
  keel_tensor_release(m->alloc_wrapped[index]);
  m->alloc_wrapped[index] = NULL;
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

/* ---- devices --------------------------------------------------------------------------------------------- */

keel_status *keel_module_set_cuda_graphs(keel_module *m, int enable) {
  if (!m) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_set_cuda_graphs: module is NULL");
  if (!is_cuda(m)) return keel_error(KEEL_INVALID_ARGUMENT, "CUDA graphs need a module on device cuda");
  pthread_mutex_lock(&m->mu);
  m->cuda_graphs = enable != 0;
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

keel_status *keel_module_set_cuda_stream(keel_module *m, void *cuda_stream) {
  if (!m) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_set_cuda_stream: module is NULL");
  if (!is_cuda(m)) return keel_error(KEEL_INVALID_ARGUMENT, "a caller CUDA stream needs a module on device cuda");
  pthread_mutex_lock(&m->mu);
  m->caller_stream = cuda_stream;
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

void keel_module_get_device_stats(const keel_module *cm, keel_device_stats *out) {
  keel_module *m = (keel_module *)cm;
  memset(out, 0, sizeof *out);
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  *out = m->dev_st;
#ifdef KEEL_HAVE_CUDA
  if (m->device->cuda) {
    keel_cuda_stats cs;
    keel_cuda_get_stats(m->device->cuda, &cs);
    out->graph_captures = cs.graph_captures;
    out->graph_replays = cs.graph_replays;
    out->graph_failures = cs.graph_failures;
    out->eager_runs = cs.eager_runs;
    out->pinned_allocs = cs.pinned_allocs;
    out->scratch_hits = cs.scratch_hits;
    out->scratch_misses = cs.scratch_misses;
  }
#endif
  pthread_mutex_unlock(&m->mu);
}

keel_status *keel_module_copy_to_host(keel_module *m, const keel_tensor *t, void *dst, size_t nbytes) {
  if (!m) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_copy_to_host: module is NULL");
#ifdef KEEL_HAVE_CUDA
  if (is_cuda(m) && t && keel_tensor_device(t) == KEEL_DEVICE_CUDA) {
    if (!dst && nbytes) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_copy_to_host: dst is NULL");
    if (nbytes != t->nbytes)
      return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_copy_to_host: the tensor has %zu bytes, dst %zu", t->nbytes,
                        nbytes);
    pthread_mutex_lock(&m->mu);
    keel_cuda_ctx *ctx = m->device->cuda;
    keel_status *s = keel_cuda_events_record(ctx, m->d2h_ev, KEEL_CUDA_EV_START);
    if (!s) s = keel_cuda_copy_async(ctx, dst, t->data, nbytes, "copying an output to the host");
    if (!s) s = keel_cuda_events_record(ctx, m->d2h_ev, KEEL_CUDA_EV_DONE);
    if (!s) s = keel_cuda_events_wait_host(ctx, m->d2h_ev, KEEL_CUDA_EV_DONE);
    if (!s) {
      float ms = keel_cuda_events_elapsed_ms(m->d2h_ev, KEEL_CUDA_EV_START, KEEL_CUDA_EV_DONE);
      m->dev_st.last_d2h_ms = ms > 0 ? ms : 0;
      m->dev_st.d2h_ms += m->dev_st.last_d2h_ms;
    }
    pthread_mutex_unlock(&m->mu);
    return s;
  }
#endif
  return keel_tensor_copy_to_host(t, dst, nbytes);
}

/* ---- shape keys and plans -------------------------------------------------------------------------------- */

/* Key = per input: dtype, rank, dims, and the bytes of inputs whose values feed shapes. */
static keel_status *compute_key(keel_module *m, keel_tensor *const *inputs, uint64_t mask) {
  size_t need = 0;
  for (int i = 0; i < m->n_in; i++) {
    need += 8 + 8 * (size_t)inputs[i]->ndim;
    if (i < 64 && (mask >> i & 1)) need += inputs[i]->nbytes;
  }
  if (need > m->key_cap) {
    /* only when a shape-feeding input grew: a shape change anyway */
    uint8_t *k = realloc(m->key, need);
    if (!k) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory computing the shape key");
    m->key = k;
    m->key_cap = need;
  }
  uint8_t *p = m->key;
  for (int i = 0; i < m->n_in; i++) {
    int32_t hdr[2] = {(int32_t)inputs[i]->dtype, inputs[i]->ndim};
    memcpy(p, hdr, 8);
    p += 8;
    memcpy(p, inputs[i]->dims, 8 * (size_t)inputs[i]->ndim);
    p += 8 * (size_t)inputs[i]->ndim;
    if (i < 64 && (mask >> i & 1)) {
      memcpy(p, inputs[i]->data, inputs[i]->nbytes);
      p += inputs[i]->nbytes;
    }
  }
  m->key_len = (size_t)(p - m->key);
  return NULL;
}

static bool key_matches(const keel_module *m, const plan_entry *e) {
  return e && e->plan && e->key_len == m->key_len && memcmp(e->key, m->key, m->key_len) == 0;
}

/* Make m->current the plan for these inputs: the same as last call, a cached one, or a new one. */
static keel_status *select_plan(keel_module *m, keel_tensor *const *inputs, bool *interp) {
  *interp = false;
  if (atomic_load(&m->engine->interp_only)) {
    for (int i = 0; i < m->n_in; i++) {
      keel_view *v = &m->in_views[i];
      v->dtype = inputs[i]->dtype;
      v->ndim = inputs[i]->ndim;
      memcpy(v->dims, inputs[i]->dims, sizeof v->dims);
      v->data = inputs[i]->data;
    }
    KEEL_TRY(keel_check_inputs(m->engine->graph, m->in_views, m->n_in));
    *interp = true;
    return NULL;
  }
  uint64_t mask = atomic_load(&m->engine->value_input_mask);
  KEEL_TRY(compute_key(m, inputs, mask));
  if (key_matches(m, m->current)) {
    m->current->last_used = ++m->clock;
    return NULL;
  }
  if (m->current) m->st.shape_changes++;
  for (int i = 0; i < m->opt.plan_cache_size; i++)
    if (key_matches(m, &m->plans[i])) {
      m->st.plan_cache_hits++;
      m->current = &m->plans[i];
      m->current->last_used = ++m->clock;
      return NULL;
    }
  /* Build a plan. */
  for (int i = 0; i < m->n_in; i++) {
    keel_view *v = &m->in_views[i];
    v->dtype = inputs[i]->dtype;
    v->ndim = inputs[i]->ndim;
    memcpy(v->dims, inputs[i]->dims, sizeof v->dims);
    /* device-resident inputs have no host bytes for the planner to read */
    v->data = keel_tensor_device(inputs[i]) == KEEL_DEVICE_CPU ? inputs[i]->data : NULL;
  }
  keel_plan *plan = NULL;
  KEEL_TRY(keel_engine_plan(m->engine, m->in_views, m->n_in, &plan, interp));
  if (*interp) return NULL;
  m->st.plan_cache_misses++;
  /* Planning may have learned that an input feeds shapes: key again with the engine's mask now. */
  uint64_t mask2 = atomic_load(&m->engine->value_input_mask);
  keel_status *s = mask2 != mask ? compute_key(m, inputs, mask2) : NULL;
  keel_view *views = s ? NULL : malloc(sizeof(keel_view) * ((size_t)plan->n_views + 1));
  uint8_t *key = views ? malloc(m->key_len ? m->key_len : 1) : NULL;
  uint64_t *step_ns = key && m->opt.profile ? calloc((size_t)plan->n_steps + 1, sizeof *step_ns) : NULL;
  if (!key || (m->opt.profile && !step_ns)) {
    free(key);
    free(views);
    keel_plan_destroy(plan);
    return s ? s : keel_error(KEEL_OUT_OF_MEMORY, "out of memory caching a plan");
  }
  memcpy(key, m->key, m->key_len);
  struct keel_cuda_plan *cplan = NULL;
#ifdef KEEL_HAVE_CUDA
  if (is_cuda(m)) {
    s = keel_cuda_plan_create(m->device->cuda, plan, &cplan);
    if (s) {
      free(views);
      free(key);
      free(step_ns);
      keel_plan_destroy(plan);
      return s;
    }
  }
#endif
  /* Slot: an empty one, else the least recently used that no call in flight is using. */
  plan_entry *slot = NULL;
  for (int i = 0; i < m->opt.plan_cache_size && !slot; i++)
    if (!m->plans[i].plan) slot = &m->plans[i];
  for (int i = 0; i < m->opt.plan_cache_size && !slot; i++) {
    plan_entry *e = &m->plans[i];
    if (e->inflight == 0 && e != m->current && (!slot || e->last_used < slot->last_used)) slot = e;
  }
  if (!slot) {
    /* every cached plan is in flight: wait for the stream, then reuse the oldest */
    if (m->stream || is_cuda(m)) {
      pthread_mutex_unlock(&m->mu);
      module_sync(m);
      pthread_mutex_lock(&m->mu);
    }
    for (int i = 0; i < m->opt.plan_cache_size; i++) {
      plan_entry *e = &m->plans[i];
      if (e->inflight == 0 && (!slot || e->last_used < slot->last_used)) slot = e;
    }
  }
  if (!slot) {
#ifdef KEEL_HAVE_CUDA
    if (cplan) keel_cuda_plan_destroy(m->device->cuda, cplan);
#endif
    free(views);
    free(key);
    free(step_ns);
    keel_plan_destroy(plan);
    return keel_error(KEEL_INTERNAL, "no plan-cache slot is free although the stream is idle");
  }
  if (slot == m->current) m->current = NULL;
  free_plan_entry(m, slot);
  slot->plan = plan;
  slot->views = views;
  slot->key = key;
  slot->key_len = m->key_len;
  slot->cuda = cplan;
  slot->step_ns = step_ns;
  slot->last_used = ++m->clock;
  m->current = slot;
  return NULL;
}

/* Device buffers sized for the current plan. Growing one waits for the stream: calls in flight use it. */
static keel_status *ensure_buffer(keel_module *m, void **buf, size_t *cap, size_t need, const char *what) {
  if (need <= *cap) return NULL;
  if (m->stream || is_cuda(m)) {
    pthread_mutex_unlock(&m->mu);
    module_sync(m);
    pthread_mutex_lock(&m->mu);
  }
  if (*buf) keel_allocator_free(m->device->memory, *buf, *cap);
  *buf = NULL;
  *cap = 0;
  void *p = keel_allocator_alloc(m->device->memory, need);
  if (!p) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory allocating the %s (%zu bytes)", what, need);
  *buf = p;
  *cap = need;
  return NULL;
}

/* ---- one call -------------------------------------------------------------------------------------------- */

/* SIM copy engine: stage the inputs of one call into device memory. */
static void copy_task(void *arg) {
  keel_call *c = arg;
  keel_module *m = c->m;
  for (int i = 0; i < m->n_in; i++) keel_device_copy(m->device, c->in_ptrs[i], c->inputs[i]->data, c->inputs[i]->nbytes);
}

static void run_task(void *arg) {
  keel_call *c = arg;
  keel_module *m = c->m;
  if (c->interp) {
    c->status = keel_interp_run(m->engine->graph, c->inputs, m->n_in, c->outputs, m->device->memory);
    return;
  }
  const keel_plan *p = c->plan->plan;
  if (m->copy_stream) keel_stream_wait(m->copy_stream, c->copy_ticket); /* inputs staged (a cross-stream event) */
  c->status = keel_plan_execute(p, c->arena, c->in_ptrs, c->out_ptrs, c->plan->views, m->opt.num_threads,
                                c->plan->step_ns);
  if (c->plan->step_ns) c->plan->profiled_calls++;
}

static bool same_shape(const keel_tensor *t, const keel_plan_value *pv) {
  return t->dtype == pv->dtype && keel_shape_equal(t->dims, t->ndim, pv->dims, pv->ndim);
}

static bool aliases_input(keel_tensor *const *inputs, int n_in, const keel_tensor *t) {
  for (int i = 0; i < n_in; i++)
    if (inputs[i]->storage == t->storage) return true;
  return false;
}

static const char *output_name(const keel_module *m, int k) {
  return m->engine->graph->values[m->engine->graph->outputs[k]].name;
}

/* Memory for output k from the caller's output allocator, wrapped as a tensor of this dtype/shape (the
 * wrapper is kept and reused while the memory and shape stay the same). */
static keel_status *callback_output(keel_module *m, int k, keel_dtype dtype, const int64_t *dims, int ndim,
                                    size_t nbytes, keel_tensor **out) {
  keel_output_allocator *oa = &m->out_alloc[k];
  keel_tensor *w = m->alloc_wrapped[k];
  void *cur = w ? w->data : NULL;
  void *mem = oa->reallocate(oa->user, output_name(m, k), cur, nbytes, 64);
  if (!mem)
    return keel_error(KEEL_OUT_OF_MEMORY, "the output allocator returned no memory for output %d ('%s', %zu bytes)", k,
                      output_name(m, k), nbytes);
  if (!w || mem != cur || w->dtype != dtype || !keel_shape_equal(w->dims, w->ndim, dims, ndim)) {
    keel_tensor_release(w);
    m->alloc_wrapped[k] = NULL;
    KEEL_TRY(keel_tensor_wrap(dtype, dims, ndim, mem, nbytes, NULL, NULL, &m->alloc_wrapped[k]));
    m->alloc_wrapped[k]->storage->device = (int)m->opt.device;
  }
  if (oa->notify_shape) oa->notify_shape(oa->user, output_name(m, k), dims, ndim);
  *out = keel_tensor_retain(m->alloc_wrapped[k]);
  return NULL;
}

/* The output tensor for index k of this call, per mode. */
static keel_status *take_output(keel_module *m, keel_tensor *const *inputs, int k, keel_tensor **out) {
  const keel_plan_value *pv = keel_plan_output(m->current->plan, k);
  char a[128], b[128];
  *out = NULL;
  if (m->bound[k]) {
    keel_tensor *t = m->bound[k];
    if (!same_shape(t, pv))
      return keel_error(KEEL_SHAPE_MISMATCH, "output %d ('%s') is bound to a %s%s tensor, but this call produces %s%s", k,
                        output_name(m, k), keel_dtype_name(t->dtype), keel_shape_format(t->dims, t->ndim, a, sizeof a),
                        keel_dtype_name(pv->dtype), keel_shape_format(pv->dims, pv->ndim, b, sizeof b));
    if (aliases_input(inputs, m->n_in, t))
      return keel_error(KEEL_INVALID_ARGUMENT, "output %d ('%s') is bound to the memory of an input of this call", k,
                        output_name(m, k));
    *out = keel_tensor_retain(t);
    return NULL;
  }
  if (m->has_out_alloc[k]) return callback_output(m, k, pv->dtype, pv->dims, pv->ndim, pv->nbytes, out);
  keel_tensor *t = NULL;
  switch (m->opt.output_mode) {
    case KEEL_OUTPUTS_FRESH:
      t = keel_output_pool_acquire_unpooled(m->pool, pv->dtype, pv->dims, pv->ndim);
      break;
    case KEEL_OUTPUTS_PERSISTENT:
      if (m->persistent[k] && (!same_shape(m->persistent[k], pv) || aliases_input(inputs, m->n_in, m->persistent[k]))) {
        /* a new shape, or the caller fed last call's output back in: never write over an input */
        keel_tensor_release(m->persistent[k]);
        m->persistent[k] = NULL;
      }
      if (!m->persistent[k]) m->persistent[k] = keel_output_pool_acquire(m->pool, pv->dtype, pv->dims, pv->ndim, false);
      t = keel_tensor_retain(m->persistent[k]);
      break;
    case KEEL_OUTPUTS_PREALLOCATED:
      if (m->prepared[k] && same_shape(m->prepared[k], pv)) {
        t = m->prepared[k];
        m->st.prepared_used++;
      } else {
        if (m->prepared[k]) {
          keel_tensor_release(m->prepared[k]);
          m->st.prepared_discarded++;
        }
        t = keel_output_pool_acquire(m->pool, pv->dtype, pv->dims, pv->ndim, false);
      }
      m->prepared[k] = NULL;
      break;
  }
  if (!t)
    return keel_error(KEEL_OUT_OF_MEMORY, "out of memory allocating output %d ('%s', %zu bytes)", k, output_name(m, k),
                      pv->nbytes);
  *out = t;
  return NULL;
}

/* PREALLOCATED: while the stream computes this call, get the next call's buffers ready (pool hits, or new
 * buffers whose pages are touched now rather than inside a kernel). A failure here only means the next
 * call allocates on its own critical path. */
static void prepare_next(keel_module *m) {
  /* Without a stream there is no compute to hide behind: preparing after the compute would only lengthen
   * this call and alternate two buffers (colder caches). The next call takes the buffer its caller just
   * released from the pool instead, still without allocating. */
  if (m->opt.output_mode != KEEL_OUTPUTS_PREALLOCATED || (!m->stream && !is_cuda(m))) return;
  for (int k = 0; k < m->n_out; k++) {
    if (m->bound[k] || m->has_out_alloc[k] || m->prepared[k]) continue;
    const keel_plan_value *pv = keel_plan_output(m->current->plan, k);
    /* (never prefault device memory: the host cannot touch it) */
    m->prepared[k] = keel_output_pool_acquire(m->pool, pv->dtype, pv->dims, pv->ndim, m->opt.prefault != 0 && !is_cuda(m));
  }
}

#ifdef KEEL_HAVE_CUDA
/* CUDA: stage host inputs through this slot's pinned buffers, then enqueue the plan, all on the engine
 * stream from the submitting thread; the GPU runs it while the host goes on (prepare_next). */
static keel_status *cuda_enqueue(keel_module *m, keel_call *c) {
  keel_cuda_ctx *ctx = m->device->cuda;
  if (m->caller_stream) KEEL_TRY(keel_cuda_wait_on_caller(ctx, m->caller_stream));
  KEEL_TRY(keel_cuda_events_record(ctx, c->ev, KEEL_CUDA_EV_START));
  for (int i = 0; i < m->n_in; i++) {
    keel_tensor *t = c->inputs[i];
    if (keel_tensor_device(t) == KEEL_DEVICE_CUDA || !t->nbytes) continue; /* in_ptrs is the device data */
    /* the slot is free, so no copy in flight reads its pinned buffer */
    memcpy(c->pinned[i], t->data, t->nbytes);
    KEEL_TRY(keel_cuda_copy_async(ctx, c->staging[i], c->pinned[i], t->nbytes, "staging an input"));
  }
  KEEL_TRY(keel_cuda_events_record(ctx, c->ev, KEEL_CUDA_EV_STAGED));
  KEEL_TRY(keel_cuda_plan_run(ctx, c->plan->cuda, c->arena, m->cuda_ws, c->in_ptrs, c->out_ptrs, m->cuda_graphs));
  KEEL_TRY(keel_cuda_events_record(ctx, c->ev, KEEL_CUDA_EV_DONE));
  if (m->caller_stream) KEEL_TRY(keel_cuda_caller_waits(ctx, c->ev, KEEL_CUDA_EV_DONE, m->caller_stream));
  return NULL;
}
#endif

static void end_call(keel_call *c) {
  keel_module *m = c->m;
  for (int i = 0; i < m->n_in; i++) {
    keel_tensor_release(c->inputs[i]);
    c->inputs[i] = NULL;
  }
  for (int k = 0; k < m->n_out; k++) {
    keel_tensor_release(c->outputs[k]);
    c->outputs[k] = NULL;
  }
  if (c->plan) c->plan->inflight--;
  c->plan = NULL;
  c->in_use = false;
}

keel_status *keel_module_submit(keel_module *m, keel_tensor *const *inputs, size_t n_in, keel_call **call) {
  if (!call) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_submit: call is NULL");
  *call = NULL;
  if (!m) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_submit: module is NULL");
  if (n_in != (size_t)m->n_in)
    return keel_error(KEEL_INVALID_ARGUMENT, "the model has %d inputs, got %zu", m->n_in, n_in);
  if (n_in && !inputs) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_submit: inputs is NULL");
  for (size_t i = 0; i < n_in; i++) {
    if (!inputs[i])
      return keel_error(KEEL_INVALID_ARGUMENT, "input %zu ('%s') is NULL", i,
                        m->engine->graph->values[m->engine->graph->inputs[i]].name);
    keel_device_kind where = keel_tensor_device(inputs[i]);
    if (where != KEEL_DEVICE_CPU && !(where == KEEL_DEVICE_CUDA && is_cuda(m)))
      return keel_error(KEEL_INVALID_ARGUMENT, "input %zu ('%s') is in device memory; pass host tensors", i,
                        m->engine->graph->values[m->engine->graph->inputs[i]].name);
    if (where != KEEL_DEVICE_CPU && i < 64 && (atomic_load(&m->engine->value_input_mask) >> i & 1))
      return keel_error(KEEL_INVALID_ARGUMENT, "input %zu ('%s') feeds shapes, so keel reads its values: pass it in host memory",
                        i, m->engine->graph->values[m->engine->graph->inputs[i]].name);
  }
  pthread_mutex_lock(&m->mu);
  keel_call *c = NULL;
  for (int i = 0; i < m->n_calls && !c; i++)
    if (!m->calls[i].in_use) c = &m->calls[i];
  if (!c) {
    pthread_mutex_unlock(&m->mu);
    return keel_error(KEEL_INVALID_ARGUMENT, "%d calls are already in flight on this module (max_inflight); wait for one first",
                      m->n_calls);
  }
  c->in_use = true;
  snapshot(m, &c->before);
  bool interp = false;
  keel_status *s = select_plan(m, inputs, &interp);
  if (s) goto fail;
  c->interp = interp;
  if (interp && is_cuda(m)) {
    s = keel_error(KEEL_UNSUPPORTED, "these inputs make the model's shapes data-dependent; the CUDA backend runs static "
                                     "plans only (use device cpu)");
    goto fail;
  }
  if (interp) {
    /* Data-dependent shapes: the interpreter allocates the outputs; wait() moves them into bound or
     * callback-allocated outputs where those are set. */
    for (int i = 0; i < m->n_in; i++) c->inputs[i] = keel_tensor_retain(inputs[i]);
    c->plan = NULL;
    c->status = NULL;
    if (m->stream) c->ticket = keel_stream_enqueue(m->stream, run_task, c);
    else run_task(c);
    pthread_mutex_unlock(&m->mu);
    *call = c;
    return NULL;
  }
  const keel_plan *p = m->current->plan;
  s = ensure_buffer(m, &m->arena, &m->arena_cap, p->arena_bytes, "arena for intermediates");
  if (s) goto fail;
#ifdef KEEL_HAVE_CUDA
  if (is_cuda(m)) {
    s = ensure_buffer(m, &m->cuda_ws, &m->cuda_ws_cap, keel_cuda_plan_workspace(m->current->cuda), "CUDA kernel workspace");
    if (s) goto fail;
  }
#endif
  for (int i = 0; i < m->n_in; i++) {
    c->inputs[i] = keel_tensor_retain(inputs[i]);
    c->in_ptrs[i] = inputs[i]->data;
    if (m->device->kind != KEEL_DEVICE_CPU && keel_tensor_device(inputs[i]) == KEEL_DEVICE_CPU) {
#ifdef KEEL_HAVE_CUDA
      if (is_cuda(m) && c->pinned_cap[i] < inputs[i]->nbytes) {
        keel_cuda_pinned_free(m->device->cuda, c->pinned[i]);
        c->pinned[i] = NULL;
        c->pinned_cap[i] = 0;
        s = keel_cuda_pinned_alloc(m->device->cuda, inputs[i]->nbytes, &c->pinned[i]);
        if (s) goto fail;
        c->pinned_cap[i] = inputs[i]->nbytes;
      }
#endif
      /* the slot is free, so no call in flight reads its staging buffers: grow without waiting */
      if (c->staging_cap[i] < inputs[i]->nbytes) {
        if (c->staging[i]) keel_allocator_free(m->device->memory, c->staging[i], c->staging_cap[i]);
        c->staging_cap[i] = 0;
        c->staging[i] = keel_allocator_alloc(m->device->memory, inputs[i]->nbytes);
        if (!c->staging[i]) {
          s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory allocating the device copy of input %d (%zu bytes)", i,
                         inputs[i]->nbytes);
          goto fail;
        }
        c->staging_cap[i] = inputs[i]->nbytes;
      }
      c->in_ptrs[i] = c->staging[i];
    }
  }
  for (int k = 0; k < m->n_out; k++) {
    s = take_output(m, inputs, k, &c->outputs[k]);
    if (s) goto fail;
    c->out_ptrs[k] = c->outputs[k]->data;
  }
  c->plan = m->current;
  c->plan->inflight++;
  c->arena = m->arena;
  c->status = NULL;
  if (m->copy_stream) c->copy_ticket = keel_stream_enqueue(m->copy_stream, copy_task, c);
  if (m->stream) {
    c->ticket = keel_stream_enqueue(m->stream, run_task, c);
    prepare_next(m); /* overlaps with the compute just enqueued */
#ifdef KEEL_HAVE_CUDA
  } else if (is_cuda(m)) {
    s = cuda_enqueue(m, c);
    if (s) {
      module_sync(m); /* what was queued before the failure still writes this call's buffers */
      goto fail;
    }
    prepare_next(m); /* overlaps with the GPU computing this call */
#endif
  } else {
    run_task(c);
  }
  pthread_mutex_unlock(&m->mu);
  *call = c;
  return NULL;
fail:
  end_call(c);
  m->st.failed_calls++;
  snapshot(m, &m->last);
  diff_stats(&c->before, &m->last, &m->last);
  pthread_mutex_unlock(&m->mu);
  return s;
}

/* Interpreter outputs were allocated while computing; bound and callback outputs get a copy. */
static keel_status *deliver_interp_outputs(keel_module *m, keel_call *c) {
  char a[128], b[128];
  for (int k = 0; k < m->n_out; k++) {
    keel_tensor *t = c->outputs[k], *dst = NULL;
    /* String elements own heap bytes: a byte copy into caller memory would share (then double-free) them. */
    if (t->dtype == KEEL_STRING && (m->bound[k] || m->has_out_alloc[k]))
      return keel_error(KEEL_UNSUPPORTED, "output %d ('%s') is a string tensor: bound outputs and output allocators take "
                        "numeric tensors only", k, output_name(m, k));
    if (m->bound[k]) {
      dst = m->bound[k];
      if (dst->dtype != t->dtype || !keel_shape_equal(dst->dims, dst->ndim, t->dims, t->ndim))
        return keel_error(KEEL_SHAPE_MISMATCH, "output %d ('%s') is bound to a %s%s tensor, but this call produced %s%s", k,
                          output_name(m, k), keel_dtype_name(dst->dtype), keel_shape_format(dst->dims, dst->ndim, a, sizeof a),
                          keel_dtype_name(t->dtype), keel_shape_format(t->dims, t->ndim, b, sizeof b));
      keel_tensor_retain(dst);
    } else if (m->has_out_alloc[k]) {
      KEEL_TRY(callback_output(m, k, t->dtype, t->dims, t->ndim, t->nbytes, &dst));
    } else {
      continue;
    }
    if (t->nbytes) memcpy(dst->data, t->data, t->nbytes);
    keel_tensor_release(t);
    c->outputs[k] = dst;
  }
  return NULL;
}

keel_status *keel_call_wait(keel_call *c, keel_tensor **out, size_t n_out) {
  if (!c) return keel_error(KEEL_INVALID_ARGUMENT, "keel_call_wait: call is NULL");
  keel_module *m = c->m;
  pthread_mutex_lock(&m->mu);
  bool pending = c->in_use;
  pthread_mutex_unlock(&m->mu);
  if (!pending) /* (a handle is reused by later submits: wait each call exactly once) */
    return keel_error(KEEL_INVALID_ARGUMENT, "keel_call_wait: this call was already waited for");
  if (m->stream) keel_stream_wait(m->stream, c->ticket);
  keel_status *dev_err = NULL;
#ifdef KEEL_HAVE_CUDA
  /* kernel faults surface here, at the first synchronization after them */
  if (is_cuda(m) && !c->interp) dev_err = keel_cuda_events_wait_host(m->device->cuda, c->ev, KEEL_CUDA_EV_DONE);
#endif
  pthread_mutex_lock(&m->mu);
  keel_status *s = c->status;
  c->status = NULL;
  if (!s) s = dev_err;
  else keel_status_free(dev_err);
#ifdef KEEL_HAVE_CUDA
  if (!s && is_cuda(m) && !c->interp) {
    float h2d = keel_cuda_events_elapsed_ms(c->ev, KEEL_CUDA_EV_START, KEEL_CUDA_EV_STAGED);
    float comp = keel_cuda_events_elapsed_ms(c->ev, KEEL_CUDA_EV_STAGED, KEEL_CUDA_EV_DONE);
    m->dev_st.last_h2d_ms = h2d > 0 ? h2d : 0;
    m->dev_st.last_compute_ms = comp > 0 ? comp : 0;
    m->dev_st.h2d_ms += m->dev_st.last_h2d_ms;
    m->dev_st.compute_ms += m->dev_st.last_compute_ms;
  }
#endif
  if (!s && n_out != (size_t)m->n_out)
    s = keel_error(KEEL_INVALID_ARGUMENT, "the model has %d outputs, got room for %zu", m->n_out, n_out);
  if (!s && n_out && !out) s = keel_error(KEEL_INVALID_ARGUMENT, "keel_call_wait: out is NULL");
  if (!s && c->interp) s = deliver_interp_outputs(m, c);
  if (!s) {
    for (int k = 0; k < m->n_out; k++) {
      out[k] = c->outputs[k]; /* ownership moves to the caller */
      c->outputs[k] = NULL;
    }
    m->st.calls++;
  } else {
    if (out)
      for (size_t k = 0; k < n_out; k++) out[k] = NULL;
    m->st.failed_calls++;
  }
  end_call(c);
  keel_module_stats now;
  snapshot(m, &now);
  diff_stats(&c->before, &now, &m->last);
  pthread_mutex_unlock(&m->mu);
  return s;
}

keel_status *keel_module_forward(keel_module *m, keel_tensor *const *inputs, size_t n_in, keel_tensor **out,
                                 size_t n_out) {
  if (!m) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_forward: module is NULL");
  if (n_out != (size_t)m->n_out)
    return keel_error(KEEL_INVALID_ARGUMENT, "the model has %d outputs, got room for %zu", m->n_out, n_out);
  if (n_out && !out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_forward: out is NULL");
  pthread_mutex_lock(&m->forward_mu);
  keel_call *c = NULL;
  keel_status *s = keel_module_submit(m, inputs, n_in, &c);
  if (!s) s = keel_call_wait(c, out, n_out);
  else
    for (size_t k = 0; k < n_out; k++) out[k] = NULL;
  pthread_mutex_unlock(&m->forward_mu);
  return s;
}

/* ---- module pool ----------------------------------------------------------------------------------------- */

struct keel_module_pool {
  pthread_mutex_t mu;
  pthread_cond_t freed;
  keel_module **modules;
  bool *busy;
  size_t n;
};

keel_status *keel_module_pool_create(keel_engine *engine, size_t n, const keel_module_options *opt,
                                     keel_module_pool **out) {
  if (!out) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_pool_create: out is NULL");
  *out = NULL;
  if (n == 0) return keel_error(KEEL_INVALID_ARGUMENT, "keel_module_pool_create: a pool needs at least one module");
  keel_module_pool *p = calloc(1, sizeof *p);
  if (!p) return keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a module pool");
  p->modules = calloc(n, sizeof *p->modules);
  p->busy = calloc(n, sizeof *p->busy);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->freed, NULL);
  p->n = n;
  keel_status *s = NULL;
  if (!p->modules || !p->busy) s = keel_error(KEEL_OUT_OF_MEMORY, "out of memory creating a module pool");
  for (size_t i = 0; !s && i < n; i++) s = keel_module_create(engine, opt, &p->modules[i]);
  if (s) {
    keel_module_pool_destroy(p);
    return s;
  }
  *out = p;
  return NULL;
}

keel_module *keel_module_pool_acquire(keel_module_pool *p) {
  pthread_mutex_lock(&p->mu);
  for (;;) {
    for (size_t i = 0; i < p->n; i++)
      if (!p->busy[i]) {
        p->busy[i] = true;
        pthread_mutex_unlock(&p->mu);
        return p->modules[i];
      }
    pthread_cond_wait(&p->freed, &p->mu);
  }
}

void keel_module_pool_release(keel_module_pool *p, keel_module *m) {
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < p->n; i++)
    if (p->modules[i] == m) p->busy[i] = false;
  pthread_cond_signal(&p->freed);
  pthread_mutex_unlock(&p->mu);
}

void keel_module_pool_destroy(keel_module_pool *p) {
  if (!p) return;
  for (size_t i = 0; p->modules && i < p->n; i++) keel_module_destroy(p->modules[i]);
  free(p->modules);
  free(p->busy);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->freed);
  free(p);
}
