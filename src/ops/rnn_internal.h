/* Shared pieces of the rnn operator family (RNN, GRU, LSTM): configuration parsed from a node and its
 * input shapes, activation functions, and the per-dtype kernels in rnn_tmpl.h. */
#ifndef KEEL_OPS_RNN_INTERNAL_H
#define KEEL_OPS_RNN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ops/op.h"

typedef enum { RNN_KIND_RNN, RNN_KIND_GRU, RNN_KIND_LSTM } rnn_kind;

typedef enum {
  RNN_ACT_RELU,
  RNN_ACT_TANH,
  RNN_ACT_SIGMOID,
  RNN_ACT_AFFINE,
  RNN_ACT_LEAKY_RELU,
  RNN_ACT_THRESHOLDED_RELU,
  RNN_ACT_SCALED_TANH,
  RNN_ACT_HARD_SIGMOID,
  RNN_ACT_ELU,
  RNN_ACT_SOFTSIGN,
  RNN_ACT_SOFTPLUS,
} rnn_act_kind;

typedef struct rnn_act {
  rnn_act_kind k;
  float alpha, beta;
} rnn_act;

enum { RNN_FORWARD = 0, RNN_REVERSE = 1, RNN_BIDIRECTIONAL = 2 };

typedef struct rnn_cfg {
  rnn_kind kind;
  int gates;  /* 1 (RNN), 3 (GRU: z r h), 4 (LSTM: i o f c) */
  int n_act;  /* activations per direction: 1, 2, 3 */
  int64_t S, B, isz, H; /* seq_length, batch, input_size, hidden_size; -1 unknown (infer only) */
  int ndir, direction, layout;
  bool has_clip;
  float clip;
  bool lbr;          /* GRU linear_before_reset */
  bool input_forget; /* LSTM */
  rnn_act act[2][3]; /* [direction][f, g, h] */
  bool has_b, has_seq, has_h0, has_c0, has_p;
} rnn_cfg;

/* Workspace in elements for cfg (per dtype the caller multiplies by the element size). */
int64_t rnn_workspace_elems(const rnn_cfg *c);

keel_status *rnn_run_f32(const rnn_cfg *c, const keel_view *in, keel_view *out, int n_out, bool want_y,
                         bool want_yh, bool want_yc, void *ws);
keel_status *rnn_run_f64(const rnn_cfg *c, const keel_view *in, keel_view *out, int n_out, bool want_y,
                         bool want_yh, bool want_yc, void *ws);

#endif
