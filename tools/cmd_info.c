/* keel info: what a model looks like to keel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runtime/engine_internal.h"

static void print_io(const char *kind, const keel_io_info *info, keel_value_kind vk) {
  const char *wrap = vk == KEEL_VALUE_SEQUENCE ? "sequence of " : vk == KEEL_VALUE_OPTIONAL ? "optional " :
                     vk == KEEL_VALUE_OPTIONAL_SEQUENCE ? "optional sequence of " : "";
  printf("  %s %-24s %s%s[", kind, info->name, wrap, keel_dtype_name(info->dtype));
  for (int d = 0; d < info->ndim; d++) {
    if (d) printf(",");
    if (info->dim_params[d]) printf("%s", info->dim_params[d]);
    else if (info->dims[d] < 0) printf("?");
    else printf("%lld", (long long)info->dims[d]);
  }
  printf("]\n");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int keel_cmd_info(int argc, char **argv) {
  const char *model = NULL;
  cli_shape shapes[64];
  int n_shapes = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
      if (n_shapes >= 64 || !cli_parse_shape(argv[++i], &shapes[n_shapes])) {
        fprintf(stderr, "keel info: --shape expects NAME=DIMS, got '%s'\n", argv[i]);
        return 2;
      }
      n_shapes++;
    } else if (argv[i][0] == '-' || model) {
      fprintf(stderr, "usage: keel info MODEL [--shape NAME=DIMS]...\n");
      return 2;
    } else {
      model = argv[i];
    }
  }
  if (!model) {
    fprintf(stderr, "usage: keel info MODEL [--shape NAME=DIMS]...\n");
    return 2;
  }
  keel_engine *e = NULL;
  keel_status *s = keel_engine_load_file(model, NULL, &e);
  if (s) return cli_fail("cannot load model", s);
  const keel_graph *g = e->graph;
  printf("model: %s\n", model);
  if (g->producer_name && g->producer_name[0]) printf("producer: %s\n", g->producer_name);
  printf("ir_version: %lld\nopsets:", (long long)g->ir_version);
  for (int i = 0; i < g->n_opsets; i++)
    printf(" %s=%lld", g->opsets[i].domain[0] ? g->opsets[i].domain : "ai.onnx", (long long)g->opsets[i].version);
  printf("\ninputs:\n");
  for (size_t i = 0; i < keel_engine_input_count(e); i++) {
    keel_io_info info;
    keel_engine_input_info(e, i, &info);
    print_io("in ", &info, g->values[g->inputs[i]].kind);
  }
  printf("outputs:\n");
  for (size_t i = 0; i < keel_engine_output_count(e); i++) {
    keel_io_info info;
    keel_engine_output_info(e, i, &info);
    print_io("out", &info, g->values[g->outputs[i]].kind);
  }
  printf("nodes: %d as loaded, %d after optimization\n", e->n_nodes_loaded, g->n_nodes);
  /* operator histogram of the optimized graph */
  char **ops = malloc(sizeof(char *) * ((size_t)g->n_nodes + 1));
  if (ops) {
    for (int i = 0; i < g->n_nodes; i++) ops[i] = g->nodes[i].op_type;
    qsort(ops, (size_t)g->n_nodes, sizeof(char *), cmp_str);
    printf("operators:");
    for (int i = 0; i < g->n_nodes;) {
      int j = i;
      while (j < g->n_nodes && !strcmp(ops[j], ops[i])) j++;
      printf(" %s=%d", ops[i], j - i);
      i = j;
    }
    printf("\n");
    free(ops);
  }
  int64_t params = keel_engine_param_count(e);
  printf("parameters: %lld (%.2f M)\n", (long long)params, (double)params / 1e6);
  /* plan with the default or given shapes */
  size_t n_in = keel_engine_input_count(e);
  keel_view *iv = calloc(n_in + 1, sizeof *iv);
  keel_tensor **gen = calloc(n_in + 1, sizeof *gen);
  char shapes_txt[1024] = "";
  size_t off = 0;
  for (size_t i = 0; iv && gen && i < n_in; i++) {
    keel_io_info info;
    keel_engine_input_info(e, i, &info);
    cli_input_shape(&info, shapes, n_shapes, iv[i].dims, &iv[i].ndim);
    iv[i].dtype = info.dtype;
    /* shape-feeding inputs need values: use the same generated data as `keel run` */
    if (!cli_generate_input(info.dtype, iv[i].dims, iv[i].ndim, 1234 + i, &gen[i])) iv[i].data = keel_tensor_data(gen[i]);
    char sh[128];
    off += (size_t)snprintf(shapes_txt + off, sizeof shapes_txt - off, "%s%s=%s", i ? " " : "", info.name,
                            keel_shape_format(iv[i].dims, iv[i].ndim, sh, sizeof sh));
    if (off >= sizeof shapes_txt) off = sizeof shapes_txt - 1;
  }
  keel_plan *p = NULL;
  bool interp = false;
  s = iv && gen ? keel_engine_plan(e, iv, (int)n_in, &p, &interp) : NULL;
  if (interp) {
    printf("plan (%s): none: the model runs in the interpreter (control flow or data-dependent shapes)\n", shapes_txt);
  } else if (s) {
    printf("plan (%s): not available: %s\n", shapes_txt, keel_status_message(s));
    keel_status_free(s);
  } else if (p) {
    printf("plan (%s): %d steps\n", shapes_txt, p->n_steps);
    printf("  arena: %.3f MiB (intermediates %.3f MiB shared by lifetime, %.1f%% of their sum %.3f MiB; workspace %.3f MiB)\n",
           (double)p->arena_bytes / 1048576.0, (double)p->workspace_offset / 1048576.0,
           p->intermediate_bytes ? 100.0 * (double)p->workspace_offset / (double)p->intermediate_bytes : 0.0,
           (double)p->intermediate_bytes / 1048576.0, (double)p->workspace_bytes / 1048576.0);
    for (int k = 0; k < p->n_outputs; k++) {
      const keel_plan_value *pv = keel_plan_output(p, k);
      char sh[128];
      printf("  output %s: %s%s\n", g->values[g->outputs[k]].name, keel_dtype_name(pv->dtype),
             keel_shape_format(pv->dims, pv->ndim, sh, sizeof sh));
    }
    keel_plan_destroy(p);
  }
  for (size_t i = 0; gen && i < n_in; i++) keel_tensor_release(gen[i]);
  free(gen);
  free(iv);
  keel_engine_release(e);
  return 0;
}
