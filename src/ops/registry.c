/* Operator registry: the families of operators compiled into keel. Lookups happen at engine build only. */
#include <string.h>

#include "ops/op.h"

KEEL_OP_FAMILY(elementwise)
KEEL_OP_FAMILY(nn)
KEEL_OP_FAMILY(tensor)
KEEL_OP_FAMILY(reduce)
KEEL_OP_FAMILY(quant)
KEEL_OP_FAMILY(loss)
KEEL_OP_FAMILY(rnn)
KEEL_OP_FAMILY(image)
KEEL_OP_FAMILY(signal)
KEEL_OP_FAMILY(misc)
KEEL_OP_FAMILY(control)
KEEL_OP_FAMILY(attention)
KEEL_OP_FAMILY(extra)
KEEL_OP_FAMILY(string)
KEEL_OP_FAMILY(fused)
KEEL_OP_FAMILY(ml)
KEEL_OP_FAMILY(optimizer)

typedef struct {
  const keel_op_def *defs;
  const int *count;
} family;

static const family families[] = {
    {keel_ops_elementwise, &keel_ops_elementwise_count},
    {keel_ops_nn, &keel_ops_nn_count},
    {keel_ops_tensor, &keel_ops_tensor_count},
    {keel_ops_reduce, &keel_ops_reduce_count},
    {keel_ops_quant, &keel_ops_quant_count},
    {keel_ops_loss, &keel_ops_loss_count},
    {keel_ops_rnn, &keel_ops_rnn_count},
    {keel_ops_image, &keel_ops_image_count},
    {keel_ops_signal, &keel_ops_signal_count},
    {keel_ops_misc, &keel_ops_misc_count},
    {keel_ops_control, &keel_ops_control_count},
    {keel_ops_attention, &keel_ops_attention_count},
    {keel_ops_extra, &keel_ops_extra_count},
    {keel_ops_string, &keel_ops_string_count},
    {keel_ops_fused, &keel_ops_fused_count},
    {keel_ops_ml, &keel_ops_ml_count},
    {keel_ops_optimizer, &keel_ops_optimizer_count},
};

static bool domain_eq(const char *a, const char *b) {
  /* "ai.onnx" is the default domain spelled out. */
  if (!a || !strcmp(a, "ai.onnx")) a = "";
  if (!b || !strcmp(b, "ai.onnx")) b = "";
  return strcmp(a, b) == 0;
}

const keel_op_def *keel_op_find(const char *op_type, const char *domain, int opset) {
  for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
    for (int i = 0; i < *families[f].count; i++) {
      const keel_op_def *d = &families[f].defs[i];
      if (strcmp(d->op_type, op_type) == 0 && domain_eq(d->domain, domain) && opset >= d->min_opset &&
          opset <= d->max_opset)
        return d;
    }
  }
  return NULL;
}

bool keel_op_known(const char *op_type, const char *domain) {
  for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
    for (int i = 0; i < *families[f].count; i++)
      if (strcmp(families[f].defs[i].op_type, op_type) == 0 && domain_eq(families[f].defs[i].domain, domain))
        return true;
  return false;
}

int keel_op_def_count(void) {
  int n = 0;
  for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) n += *families[f].count;
  return n;
}

const keel_op_def *keel_op_def_at(int i) {
  for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
    if (i < *families[f].count) return &families[f].defs[i];
    i -= *families[f].count;
  }
  return NULL;
}
