/* String tensors in the interpreter (ops/string.c).
 *
 * Elements of a KEEL_STRING tensor are keel_string records whose bytes the tensor owns (core/tensor.c frees
 * them with the storage). Graphs holding strings never get a static plan (an arena cannot own strings):
 * runtime/plan.c sends them to the interpreter, which asks here how each node touching strings runs:
 *   OWNED     string operators (StringNormalizer, StringConcat...) and string variants of generic ones
 *             (Equal): the kernel allocates every output element itself (the one exception to "kernels
 *             never allocate"; their outputs start all-empty, so an error half way leaks nothing);
 *   BORROWED  data-movement operators (Identity, Reshape, Gather, Concat...) whose byte-copying kernels
 *             copy the element records, i.e. borrow the input's bytes: the interpreter then makes the
 *             output own copies (keel_strings_own) while the inputs are still alive;
 *   REFUSED   everything else: a clear error, never a kernel reading pointers as numbers. */
#ifndef KEEL_OPS_STRING_OPS_H
#define KEEL_OPS_STRING_OPS_H

#include "ops/op.h"

typedef enum { KEEL_STRINGS_REFUSED = 0, KEEL_STRINGS_OWNED, KEEL_STRINGS_BORROWED } keel_strings_mode;

/* The definition that runs node n when it reads or writes strings (n->op or a string variant of it), and
 * how its string outputs come to own their bytes. NULL with *mode == REFUSED if n cannot take strings. */
const keel_op_def *keel_string_def_for(const keel_node *n, keel_strings_mode *mode);

/* Does node n read or make strings (a string input, or Cast/CastLike to string)? */
bool keel_strings_involved(const keel_node *n, const keel_view *in, int n_in);

/* t's elements were copied record by record from other string tensors (borrowed bytes): give each its own
 * copy. On failure the elements not yet copied are emptied (never freed) and an error is returned, so
 * releasing t stays safe either way. Does nothing for other dtypes. */
keel_status *keel_strings_own(keel_tensor *t);
/* The same over a raw element array (n records). */
keel_status *keel_strings_own_array(keel_string *e, int64_t n);
/* Forget borrowed elements without freeing them (after a failed byte-moving kernel). */
void keel_strings_forget(keel_tensor *t);

#endif
