/* keel ops: the operators this keel implements, with their opset ranges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ops/op.h"

static int cmp_def(const void *a, const void *b) {
  const keel_op_def *x = *(const keel_op_def *const *)a, *y = *(const keel_op_def *const *)b;
  int c = strcmp(x->domain, y->domain);
  if (!c) c = strcmp(x->op_type, y->op_type);
  return c ? c : x->min_opset - y->min_opset;
}

int keel_cmd_ops(int argc, char **argv) {
  (void)argv;
  if (argc > 1) {
    fprintf(stderr, "usage: keel ops\n");
    return 2;
  }
  int n = keel_op_def_count();
  const keel_op_def **defs = malloc(sizeof *defs * (size_t)(n ? n : 1));
  if (!defs) return 1;
  int m = 0;
  for (int i = 0; i < n; i++)
    if (keel_op_def_at(i)->op_type) defs[m++] = keel_op_def_at(i);
  qsort(defs, (size_t)m, sizeof *defs, cmp_def);
  int ops = 0;
  for (int i = 0; i < m;) {
    int j = i;
    printf("%s%s%s", defs[i]->domain[0] ? defs[i]->domain : "", defs[i]->domain[0] ? "." : "", defs[i]->op_type);
    for (; j < m && !strcmp(defs[j]->op_type, defs[i]->op_type) && !strcmp(defs[j]->domain, defs[i]->domain); j++)
      printf(" %d-%d", defs[j]->min_opset, defs[j]->max_opset);
    printf("\n");
    ops++;
    i = j;
  }
  fprintf(stderr, "%d operators\n", ops);
  free(defs);
  return 0;
}
