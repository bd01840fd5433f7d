/* Per-step profile of a plan: the table behind keel_module_write_profile and `keel bench --profile`. */
#include <stdlib.h>
#include <string.h>

#include <keel/tensor.h>

#include "runtime/plan.h"

typedef struct op_total {
  const char *op;
  uint64_t ns;
  int nodes;
} op_total;

typedef struct step_time {
  uint64_t ns;
  int step;
} step_time;

static int by_step_time(const void *a, const void *b) {
  const step_time *x = a, *y = b;
  return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : x->step - y->step;
}

static int by_op_time(const void *a, const void *b) {
  uint64_t x = ((const op_total *)a)->ns, y = ((const op_total *)b)->ns;
  return x < y ? 1 : x > y ? -1 : 0;
}

void keel_plan_write_profile(const keel_plan *p, const uint64_t *step_ns, uint64_t calls, FILE *f, int max_rows) {
  int n = p->n_steps;
  step_time *order = malloc(sizeof *order * (size_t)(n + 1));
  op_total *ops = calloc((size_t)n + 1, sizeof *ops);
  if (!order || !ops) {
    fprintf(f, "profile: out of memory\n");
    free(order);
    free(ops);
    return;
  }
  uint64_t total = 0;
  int n_ops = 0;
  for (int s = 0; s < n; s++) {
    order[s] = (step_time){step_ns[s], s};
    total += step_ns[s];
    const char *op = p->steps[s].node->op_type;
    int k = 0;
    while (k < n_ops && strcmp(ops[k].op, op)) k++;
    if (k == n_ops) ops[n_ops++].op = op;
    ops[k].ns += step_ns[s];
    ops[k].nodes++;
  }
  qsort(order, (size_t)n, sizeof *order, by_step_time);
  qsort(ops, (size_t)n_ops, sizeof *ops, by_op_time);
  const double per_call = 1e-6 / (double)calls; /* ns summed over calls -> ms per call */
  const double pct = total ? 100.0 / (double)total : 0;
  fprintf(f, "profile: %d steps, %.3f ms per call in kernels (mean over %llu calls)\n", n, (double)total * per_call,
          (unsigned long long)calls);
  fprintf(f, "%5s %10s %6s %6s  %-22s %-32s %s\n", "rank", "ms", "%", "cum%", "op", "node", "output shape");
  uint64_t cum = 0;
  int rows = max_rows > 0 && max_rows < n ? max_rows : n;
  for (int r = 0; r < rows; r++) {
    int s = order[r].step;
    const keel_node *node = p->steps[s].node;
    cum += step_ns[s];
    char shape[160] = "";
    if (node->n_outputs > 0) {
      const keel_view *v = &p->views[p->steps[s].first_view + node->n_inputs];
      keel_shape_format(v->dims, v->ndim, shape, sizeof shape);
    }
    fprintf(f, "%5d %10.4f %6.2f %6.2f  %-22.22s %-32.32s %s\n", r + 1, (double)step_ns[s] * per_call,
            (double)step_ns[s] * pct, (double)cum * pct, node->op_type, node->name ? node->name : "", shape);
  }
  if (rows < n) fprintf(f, "  ... %d more steps\n", n - rows);
  fprintf(f, "by op type:\n%10s %6s %6s  %s\n", "ms", "%", "nodes", "op");
  for (int k = 0; k < n_ops; k++)
    fprintf(f, "%10.4f %6.2f %6d  %s\n", (double)ops[k].ns * per_call, (double)ops[k].ns * pct, ops[k].nodes, ops[k].op);
  free(order);
  free(ops);
}
