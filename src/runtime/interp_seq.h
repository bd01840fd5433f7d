/* Values of the interpreter that are not only tensors: ONNX `seq(tensor)` and `optional(...)`.
 *
 * The interpreter's environment holds keel_ivalue pointers. An ivalue is a tensor, a sequence of tensors or
 * an empty optional (an optional that holds something is just that tensor or sequence). Ivalues belong to one
 * interpreter call and are never shared across threads, so their reference count is a plain int; the tensors
 * inside are ordinary (atomically counted) keel_tensors and may be shared with constants. Sequences are
 * immutable once built: every sequence operator makes a new one that retains the tensors it keeps. */
#ifndef KEEL_RUNTIME_INTERP_SEQ_H
#define KEEL_RUNTIME_INTERP_SEQ_H

#include <stdbool.h>
#include <stdint.h>

#include <keel/allocator.h>
#include <keel/status.h>
#include <keel/tensor.h>

#include "graph/ir.h"

typedef enum keel_iv_kind { KEEL_IV_TENSOR = 0, KEEL_IV_SEQUENCE, KEEL_IV_NONE } keel_iv_kind;

typedef struct keel_ivalue {
  int refcount;
  keel_iv_kind kind;
  keel_tensor *t;      /* KEEL_IV_TENSOR */
  keel_tensor **items; /* KEEL_IV_SEQUENCE: n items (each retained) */
  int64_t n, cap;
  keel_dtype elem;     /* KEEL_IV_SEQUENCE: element type, UNDEFINED if not known (empty, untyped) */
} keel_ivalue;

/* Constructors return NULL on out of memory. keel_iv_tensor takes over the caller's reference to t (and
 * releases it on failure); keel_iv_seq_push retains t. */
keel_ivalue *keel_iv_tensor(keel_tensor *t);
keel_ivalue *keel_iv_seq(keel_dtype elem, int64_t cap);
keel_ivalue *keel_iv_none(void);
bool keel_iv_seq_push(keel_ivalue *s, keel_tensor *t);
keel_ivalue *keel_iv_retain(keel_ivalue *v); /* NULL is fine */
void keel_iv_release(keel_ivalue *v);         /* NULL is fine */
const char *keel_iv_kind_name(const keel_ivalue *v);

/* Is this node one of the sequence/optional operators keel_interp_seq_run implements (not SequenceMap,
 * which runs a subgraph and lives in interp.c)? */
bool keel_interp_is_seq_op(const keel_node *n);
/* Run such a node: in[0..n_in) are its formal inputs (NULL where omitted), out[0..n->n_outputs) receive new
 * references. Errors name the problem; the caller prefixes the node. */
keel_status *keel_interp_seq_run(const keel_node *n, keel_ivalue *const *in, int n_in, keel_ivalue **out,
                                 keel_allocator *alloc);

#endif
