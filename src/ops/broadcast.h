/* numpy-style broadcasting: output shapes and a row iterator over up to KEEL_BCAST_MAX_INPUTS inputs.
 *
 * keel_bcast_init maps each input onto the output shape (element strides, 0 along broadcast dims) and
 * merges adjacent dims that every input walks the same way, so that a same-shape op becomes a single
 * row of numel elements and "tensor op scalar" a single row where the scalar's stride is 0. Kernels then
 * loop over rows; inside a row each input's stride is 0 or 1, which lets them write plain contiguous
 * loops the compiler vectorizes:
 *
 *   keel_bcast b; KEEL_TRY(keel_bcast_init(&b, out->dims, out->ndim, dims, ndims, 2));
 *   keel_bcast_iter it;
 *   if (keel_bcast_begin(&b, &it)) do {
 *     ... row of b.inner elements: out + it.out, in k at it.off[k] with step b.inner_step[k] (0 or 1)
 *   } while (keel_bcast_next(&b, &it));
 */
#ifndef KEEL_OPS_BROADCAST_H
#define KEEL_OPS_BROADCAST_H

#include <stdbool.h>
#include <stdint.h>

#include <keel/status.h>
#include <keel/tensor.h>

#define KEEL_BCAST_MAX_INPUTS 3

typedef struct keel_bcast {
  int n_in;
  int ndim;                                           /* >= 1 after merging */
  int64_t dims[KEEL_MAX_DIMS];                        /* merged output dims */
  int64_t strides[KEEL_BCAST_MAX_INPUTS][KEEL_MAX_DIMS]; /* element strides per input, 0 = broadcast */
  int64_t numel;                                      /* output elements */
  int64_t inner;                                      /* dims[ndim-1]: elements per row */
  int inner_step[KEEL_BCAST_MAX_INPUTS];              /* strides[k][ndim-1]: 0 or 1 */
} keel_bcast;

typedef struct keel_bcast_iter {
  int64_t idx[KEEL_MAX_DIMS];
  int64_t off[KEEL_BCAST_MAX_INPUTS]; /* element offset of the row start in each input */
  int64_t out;                        /* element offset of the row start in the output */
} keel_bcast_iter;

/* Broadcast n shapes together (numpy rules) into out/nout. On failure returns KEEL_SHAPE_MISMATCH naming
 * the two shapes that conflict; `what` (e.g. "Add"), if not NULL, prefixes the message. */
keel_status *keel_broadcast_shapes(const char *what, int n, const int64_t *const *dims, const int *ndims,
                                   int64_t *out, int *nout);

/* Can shape `from` be broadcast to `to` (unidirectional, as Expand / PRelu slope)? */
bool keel_broadcast_to_ok(const int64_t *from, int nfrom, const int64_t *to, int nto);

/* Prepare iteration of n inputs (each broadcastable to the output shape) over the output. Returns
 * KEEL_SHAPE_MISMATCH if an input does not broadcast to the output. */
keel_status *keel_bcast_init(keel_bcast *b, const int64_t *out_dims, int out_ndim, const int64_t *const *dims,
                             const int *ndims, int n);

/* Start at the first row; false if the output is empty. */
bool keel_bcast_begin(const keel_bcast *b, keel_bcast_iter *it);
/* Advance to the next row; false after the last one. */
static inline bool keel_bcast_next(const keel_bcast *b, keel_bcast_iter *it) {
  it->out += b->inner;
  for (int d = b->ndim - 2; d >= 0; d--) {
    if (++it->idx[d] < b->dims[d]) {
      for (int k = 0; k < b->n_in; k++) it->off[k] += b->strides[k][d];
      return true;
    }
    it->idx[d] = 0;
    for (int k = 0; k < b->n_in; k++) it->off[k] -= b->strides[k][d] * (b->dims[d] - 1);
  }
  return false;
}

#endif
