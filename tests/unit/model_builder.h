/* A tiny ModelProto builder for unit tests (protobuf-c structs, every allocation tracked and freed by
 * mb_free), so tests can build the models they need without data files. Include after test_main.h, in a
 * file that defines _GNU_SOURCE (strtok_r). */
#ifndef KEEL_TEST_MODEL_BUILDER_H
#define KEEL_TEST_MODEL_BUILDER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"

typedef struct {
  void *allocs[1024];
  int n_allocs;
  Onnx__NodeProto *nodes[32];
  Onnx__ValueInfoProto *ins[8], *outs[8];
  Onnx__TensorProto *inits[8];
  Onnx__OperatorSetIdProto *opsets[4];
  int n_nodes, n_in, n_out, n_init, n_opsets;
} mb;

static inline void *mb_alloc(mb *b, size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (!p || b->n_allocs == 1024) abort();
  b->allocs[b->n_allocs++] = p;
  return p;
}
static inline char *mb_str(mb *b, const char *s) { return strcpy(mb_alloc(b, strlen(s) + 1), s); }

static inline void mb_free(mb *b) {
  for (int i = 0; i < b->n_allocs; i++) free(b->allocs[i]);
}

static inline void mb_opset(mb *b, const char *domain, int64_t v) {
  Onnx__OperatorSetIdProto *o = mb_alloc(b, sizeof *o);
  onnx__operator_set_id_proto__init(o);
  o->domain = mb_str(b, domain);
  o->has_version = 1;
  o->version = v;
  b->opsets[b->n_opsets++] = o;
}

static inline Onnx__ValueInfoProto *mb_vi(mb *b, const char *name, int elem, int ndim, const int64_t *dims) {
  Onnx__ValueInfoProto *v = mb_alloc(b, sizeof *v);
  onnx__value_info_proto__init(v);
  v->name = mb_str(b, name);
  Onnx__TypeProto *t = mb_alloc(b, sizeof *t);
  onnx__type_proto__init(t);
  Onnx__TypeProto__Tensor *tt = mb_alloc(b, sizeof *tt);
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = 1;
  tt->elem_type = elem;
  if (ndim >= 0) {
    Onnx__TensorShapeProto *sh = mb_alloc(b, sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)ndim;
    sh->dim = mb_alloc(b, sizeof(void *) * (size_t)(ndim + 1));
    for (int i = 0; i < ndim; i++) {
      Onnx__TensorShapeProto__Dimension *d = mb_alloc(b, sizeof *d);
      onnx__tensor_shape_proto__dimension__init(d);
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[i];
      sh->dim[i] = d;
    }
    tt->shape = sh;
  }
  t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  t->tensor_type = tt;
  v->type = t;
  return v;
}
static inline void mb_input(mb *b, const char *name, int elem) { b->ins[b->n_in++] = mb_vi(b, name, elem, -1, NULL); }
static inline void mb_output(mb *b, const char *name, int elem) { b->outs[b->n_out++] = mb_vi(b, name, elem, -1, NULL); }

/* "a,b" -> array of names ("" for an omitted input) */
static inline char **mb_names(mb *b, const char *csv, size_t *n) {
  *n = 0;
  if (!csv[0]) return NULL;
  char **out = mb_alloc(b, sizeof(char *) * 16);
  char *copy = mb_str(b, csv), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) out[(*n)++] = t;
  return out;
}

#define MB_MAX_ATTRS 32 /* per node */

static inline Onnx__NodeProto *mb_node(mb *b, const char *op, const char *domain, const char *ins, const char *outs) {
  Onnx__NodeProto *n = mb_alloc(b, sizeof *n);
  onnx__node_proto__init(n);
  n->op_type = mb_str(b, op);
  n->domain = mb_str(b, domain);
  n->input = mb_names(b, ins, &n->n_input);
  n->output = mb_names(b, outs, &n->n_output);
  n->attribute = mb_alloc(b, sizeof(void *) * MB_MAX_ATTRS);
  b->nodes[b->n_nodes++] = n;
  return n;
}

static inline Onnx__AttributeProto *mb_attr(mb *b, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType t) {
  Onnx__AttributeProto *a = mb_alloc(b, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = mb_str(b, name);
  a->has_type = 1;
  a->type = t;
  if (n->n_attribute >= MB_MAX_ATTRS) {
    fprintf(stderr, "model_builder: more than %d attributes on one node\n", MB_MAX_ATTRS);
    abort(); /* a test-authoring error, not a runtime condition */
  }
  n->attribute[n->n_attribute++] = a;
  return a;
}
static inline void mb_attr_int(mb *b, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  a->has_i = 1;
  a->i = v;
}
static inline void mb_attr_ints(mb *b, Onnx__NodeProto *n, const char *name, const int64_t *v, size_t cnt) {
  Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  a->n_ints = cnt;
  a->ints = mb_alloc(b, sizeof(int64_t) * (cnt + 1)); /* + 1: an empty list still gets a pointer */
  if (cnt) memcpy(a->ints, v, sizeof(int64_t) * cnt);
}
static inline void mb_attr_str(mb *b, Onnx__NodeProto *n, const char *name, const char *v) {
  Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  a->has_s = 1;
  a->s.data = (uint8_t *)mb_str(b, v);
  a->s.len = strlen(v);
}
static inline void mb_attr_strs(mb *b, Onnx__NodeProto *n, const char *name, const char *csv) {
  Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS);
  size_t k;
  char **v = mb_names(b, csv, &k);
  a->strings = mb_alloc(b, sizeof(ProtobufCBinaryData) * (k + 1));
  for (size_t i = 0; i < k; i++) a->strings[i] = (ProtobufCBinaryData){strlen(v[i]), (uint8_t *)v[i]};
  a->n_strings = k;
}

/* A string TensorProto of the given 1-D values. */
static inline Onnx__TensorProto *mb_string_tensor(mb *b, const char *name, const char *csv) {
  Onnx__TensorProto *t = mb_alloc(b, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = mb_str(b, name);
  t->has_data_type = 1;
  t->data_type = 8;
  size_t k;
  char **v = mb_names(b, csv, &k);
  t->n_dims = 1;
  t->dims = mb_alloc(b, sizeof(int64_t));
  t->dims[0] = (int64_t)k;
  t->string_data = mb_alloc(b, sizeof(ProtobufCBinaryData) * (k + 1));
  for (size_t i = 0; i < k; i++) t->string_data[i] = (ProtobufCBinaryData){strlen(v[i]), (uint8_t *)v[i]};
  t->n_string_data = k;
  return t;
}

static inline keel_engine *mb_load(mb *b, keel_status **err) {
  Onnx__GraphProto g;
  onnx__graph_proto__init(&g);
  g.name = "test";
  g.node = b->nodes, g.n_node = (size_t)b->n_nodes;
  g.input = b->ins, g.n_input = (size_t)b->n_in;
  g.output = b->outs, g.n_output = (size_t)b->n_out;
  g.initializer = b->inits, g.n_initializer = (size_t)b->n_init;
  Onnx__ModelProto m;
  onnx__model_proto__init(&m);
  m.has_ir_version = 1;
  m.ir_version = 9;
  m.graph = &g;
  m.opset_import = b->opsets, m.n_opset_import = (size_t)b->n_opsets;
  size_t n = onnx__model_proto__get_packed_size(&m);
  uint8_t *buf = malloc(n);
  onnx__model_proto__pack(&m, buf);
  keel_engine *e = NULL;
  *err = keel_engine_load_memory(buf, n, NULL, NULL, &e);
  free(buf);
  return e;
}

/* A float TensorProto (raw data) of the given shape. */
static inline Onnx__TensorProto *mb_float_tensor(mb *b, const char *name, int ndim, const int64_t *dims, const float *v) {
  Onnx__TensorProto *t = mb_alloc(b, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = mb_str(b, name);
  t->has_data_type = 1;
  t->data_type = 1;
  t->n_dims = (size_t)ndim;
  t->dims = mb_alloc(b, sizeof(int64_t) * (size_t)(ndim + 1));
  size_t n = 1;
  for (int i = 0; i < ndim; i++) t->dims[i] = dims[i], n *= (size_t)dims[i];
  t->has_raw_data = 1;
  t->raw_data.len = n * sizeof(float);
  t->raw_data.data = mb_alloc(b, t->raw_data.len);
  memcpy(t->raw_data.data, v, t->raw_data.len);
  return t;
}

#endif
