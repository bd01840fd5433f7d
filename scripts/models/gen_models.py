#!/usr/bin/env python3
"""Build ONNX models with seeded random weights for testing and benchmarking keel.

Only onnx.helper and numpy are used (no torch), so this runs in CI. The graphs mirror
what torch.onnx / the ONNX model zoo produce for the same architectures, so that keel's
importer, passes (Conv+BN fusion, shape folding) and kernels see realistic patterns.

Every model is byte-for-byte deterministic for a given set of options: weights come from
numpy's PCG64 seeded from the model name. Weights are stored as raw_data initializers.

Each model carries metadata_props that tell check_against_ort.py how to make inputs:
  keel.test.dims            "sequence=16"      values for symbolic dims (batch dims are
                                               sized by check_against_ort.py --batch)
  keel.test.input.<name>    "int:LO:HI"        integer range [LO, HI) for an input
                            "mask:N"           0/1 attention mask, last N positions 0

Usage:
  gen_models.py --out DIR [--only NAME[,NAME]] [--batch N] [--small] [--list]
  gen_models.py --out DIR --only bert --bert-weights model.safetensors --bert-config config.json
"""
import argparse
import json
import os
import struct
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8  # conservative: every runtime of the last years reads it


class Builder:
    """Small graph builder: unique names, initializers, nodes."""

    def __init__(self, name, seed_extra=""):
        self.name = name
        self.nodes = []
        self.inits = []
        self.inputs = []
        self.outputs = []
        self.meta = {}
        self.counter = {}
        self.rng = np.random.default_rng(zlib.crc32((name + seed_extra).encode()))

    def uniq(self, prefix):
        n = self.counter.get(prefix, 0)
        self.counter[prefix] = n + 1
        return f"{prefix}_{n}" if n else prefix

    # --- tensors -------------------------------------------------------------
    def const(self, arr, prefix="c"):
        name = self.uniq(prefix)
        self.inits.append(numpy_helper.from_array(np.array(arr, order="C", copy=True), name))
        return name

    def i64(self, values, prefix="shape"):
        return self.const(np.array(values, dtype=np.int64), prefix)

    def f32(self, value, prefix="k"):
        return self.const(np.array(value, dtype=np.float32), prefix)

    def randn(self, shape, std, prefix="w"):
        return self.const((self.rng.standard_normal(shape) * std).astype(np.float32), prefix)

    def uniform(self, shape, lo, hi, prefix="w"):
        return self.const(self.rng.uniform(lo, hi, shape).astype(np.float32), prefix)

    # --- nodes ---------------------------------------------------------------
    def node(self, op, inputs, n_out=1, prefix=None, **attrs):
        base = self.uniq(prefix or op.lower())
        outs = [base if n_out == 1 else f"{base}_o{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=base, **attrs))
        return outs[0] if n_out == 1 else outs

    def input(self, name, elem, dims):
        self.inputs.append(helper.make_tensor_value_info(name, elem, dims))
        return name

    def output(self, value, name, elem=TensorProto.FLOAT, dims=None):
        # Route through Identity so that the graph output has a stable, readable name.
        self.nodes.append(helper.make_node("Identity", [value], [name], name=self.uniq("out")))
        self.outputs.append(helper.make_tensor_value_info(name, elem, dims))

    # --- CNN layers ------------------------------------------------------------
    def conv(self, x, cin, cout, k, stride=1, pad=None, group=1, bias=True, dilation=1,
             gain=2.0):
        kh, kw = (k, k) if isinstance(k, int) else k
        if pad is None:
            pad = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        fan_in = (cin // group) * kh * kw
        w = self.randn((cout, cin // group, kh, kw), np.sqrt(gain / fan_in), "conv_w")
        ins = [x, w]
        if bias:
            ins.append(self.uniform((cout,), -0.1, 0.1, "conv_b"))
        return self.node("Conv", ins, prefix="conv", kernel_shape=[kh, kw], strides=[stride, stride],
                         pads=[ph, pw, ph, pw], group=group, dilations=[dilation, dilation])

    def bn(self, x, c, gamma=(0.8, 1.2)):
        scale = self.uniform((c,), gamma[0], gamma[1], "bn_gamma")
        b = self.uniform((c,), -0.1, 0.1, "bn_beta")
        mean = self.uniform((c,), -0.1, 0.1, "bn_mean")
        var = self.uniform((c,), 0.8, 1.2, "bn_var")
        return self.node("BatchNormalization", [x, scale, b, mean, var], prefix="bn", epsilon=1e-5)

    def relu(self, x):
        return self.node("Relu", [x])

    def relu6(self, x):
        lo = self.f32(0.0, "clip_min")
        hi = self.f32(6.0, "clip_max")
        return self.node("Clip", [x, lo, hi], prefix="relu6")

    def maxpool(self, x, k, s, p=0, ceil=0):
        return self.node("MaxPool", [x], prefix="maxpool", kernel_shape=[k, k], strides=[s, s],
                         pads=[p, p, p, p], ceil_mode=ceil)

    def avgpool(self, x, k, s, p=0):
        return self.node("AveragePool", [x], prefix="avgpool", kernel_shape=[k, k], strides=[s, s],
                         pads=[p, p, p, p])

    def gap(self, x):
        return self.node("GlobalAveragePool", [x], prefix="gap")

    def flatten(self, x):
        return self.node("Flatten", [x], axis=1)

    def gemm(self, x, nin, nout, gain=1.0):
        # torch.nn.Linear exports as Gemm with transB=1 (weight stored [out, in]).
        w = self.randn((nout, nin), np.sqrt(gain / nin), "fc_w")
        b = self.uniform((nout,), -0.1, 0.1, "fc_b")
        return self.node("Gemm", [x, w, b], prefix="fc", alpha=1.0, beta=1.0, transB=1)

    # --- finish ----------------------------------------------------------------
    def model(self, opset, doc=""):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="keel-gen_models", producer_version="1",
                              doc_string=doc)
        m.ir_version = IR_VERSION
        for k, v in self.meta.items():
            p = m.metadata_props.add()
            p.key, p.value = k, v
        return m


def batch_dim(batch):
    """--batch 0 means a symbolic batch dim named N."""
    return "N" if batch == 0 else batch


def set_batch_meta(b, batch):
    # A symbolic batch dim N needs no hint: check_against_ort.py sizes it with --batch.
    pass


# =============================================================================
# ResNet-50 v1 (stride in the first 1x1 of a bottleneck, as in the original paper and
# the ONNX zoo resnet50-v1); Conv without bias + BatchNormalization, for Conv+BN fusion.
# =============================================================================
def resnet50(small, batch):
    b = Builder("resnet50")
    set_batch_meta(b, batch)
    if small:
        hw, base, blocks, classes = 64, 8, [1, 1, 1, 1], 10
    else:
        hw, base, blocks, classes = 224, 64, [3, 4, 6, 3], 1000
    x = b.input("data", TensorProto.FLOAT, [batch_dim(batch), 3, hw, hw])
    x = b.relu(b.bn(b.conv(x, 3, base, 7, stride=2, pad=3, bias=False), base))
    x = b.maxpool(x, 3, 2, 1)
    cin = base
    for stage, n in enumerate(blocks):
        mid = base * (2 ** stage)
        cout = mid * 4
        for i in range(n):
            s = 2 if (i == 0 and stage > 0) else 1
            y = b.relu(b.bn(b.conv(x, cin, mid, 1, stride=s, bias=False), mid))
            y = b.relu(b.bn(b.conv(y, mid, mid, 3, bias=False), mid))
            # A small last gamma keeps the residual sum from growing layer after layer.
            y = b.bn(b.conv(y, mid, cout, 1, bias=False), cout, gamma=(0.2, 0.4))
            if i == 0:
                sc = b.bn(b.conv(x, cin, cout, 1, stride=s, bias=False), cout)
            else:
                sc = x
            x = b.relu(b.node("Add", [y, sc]))
            cin = cout
    x = b.flatten(b.gap(x))
    x = b.gemm(x, cin, classes)
    b.output(x, "resnetv17_dense0_fwd", dims=[batch_dim(batch), classes])
    return b.model(13, "ResNet-50 v1, random weights")


# =============================================================================
# MobileNetV2 (torchvision layout, BN folded into Conv bias as torch.onnx exports it).
# =============================================================================
def mobilenetv2(small, batch):
    b = Builder("mobilenetv2")
    set_batch_meta(b, batch)
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]
    if small:
        hw, mult, classes, last = 64, 0.25, 10, 128
        cfg = [(t, c, min(n, 2), s) for t, c, n, s in cfg]
    else:
        hw, mult, classes, last = 224, 1.0, 1000, 1280

    def ch(c):
        return max(8, int(c * mult + 4) // 8 * 8)

    x = b.input("input", TensorProto.FLOAT, [batch_dim(batch), 3, hw, hw])
    cin = ch(32)
    x = b.relu6(b.conv(x, 3, cin, 3, stride=2))
    for t, c, n, s in cfg:
        cout = ch(c)
        for i in range(n):
            stride = s if i == 0 else 1
            hid = cin * t
            y = x
            if t != 1:
                y = b.relu6(b.conv(y, cin, hid, 1))
            y = b.relu6(b.conv(y, hid, hid, 3, stride=stride, group=hid))
            y = b.conv(y, hid, cout, 1, gain=0.5)
            if stride == 1 and cin == cout:
                y = b.node("Add", [x, y])
            x, cin = y, cout
    x = b.relu6(b.conv(x, cin, last, 1))
    x = b.gap(x)
    x = b.flatten(x)
    x = b.gemm(x, last, classes)
    b.output(x, "output", dims=[batch_dim(batch), classes])
    return b.model(13, "MobileNetV2, random weights")


# =============================================================================
# BERT encoder, laid out as torch.onnx exports HuggingFace BertModel.
# =============================================================================
class BertWeights:
    """Weight source: a HuggingFace safetensors file, or seeded random numbers."""

    def __init__(self, b, path=None):
        self.b = b
        self.tensors = read_safetensors(path) if path else None

    def get(self, key, shape, std, linear=False, kind="normal"):
        if self.tensors is not None:
            if key not in self.tensors:
                raise KeyError(f"weights file has no tensor {key}")
            arr = self.tensors[key].astype(np.float32)
            if linear:  # torch Linear stores [out, in]; MatMul wants [in, out]
                arr = arr.T
            if tuple(arr.shape) != tuple(shape):
                raise ValueError(f"{key}: shape {arr.shape}, expected {shape}")
            return self.b.const(np.ascontiguousarray(arr), key)
        if kind == "ones":
            return self.b.uniform(shape, 0.9, 1.1, key)
        if kind == "bias":
            return self.b.uniform(shape, -0.05, 0.05, key)
        return self.b.randn(shape, std, key)

    def has(self, key):
        return self.tensors is None or key in self.tensors


def read_safetensors(path):
    """Minimal safetensors reader (8-byte header size, JSON header, raw little-endian data)."""
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        lo, hi = v["data_offsets"]
        out[k] = np.frombuffer(data[lo:hi], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
    return out


def bert(small, batch, fused_ln=False, weights=None, config=None, name="bert"):
    b = Builder(name)
    cfg = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072, vocab_size=30522, max_position_embeddings=512,
               type_vocab_size=2, layer_norm_eps=1e-12)
    if small:
        cfg.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=256, vocab_size=1000, max_position_embeddings=64)
    if config:
        with open(config) as f:
            cfg.update({k: v for k, v in json.load(f).items() if k in cfg})
    H = cfg["hidden_size"]
    L = cfg["num_hidden_layers"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    inter = cfg["intermediate_size"]
    vocab = cfg["vocab_size"]
    eps = float(cfg["layer_norm_eps"])
    seq = 16 if small else 128
    b.meta["keel.test.dims"] = f"sequence={seq}"  # batch: check_against_ort.py --batch
    b.meta["keel.test.input.input_ids"] = f"int:0:{vocab}"
    b.meta["keel.test.input.token_type_ids"] = f"int:0:{cfg['type_vocab_size']}"
    b.meta["keel.test.input.attention_mask"] = f"mask:{max(1, seq // 8)}"
    W = BertWeights(b, weights)
    std = 0.02 if weights is None else None
    dims = ["batch", "sequence"]
    ids = b.input("input_ids", TensorProto.INT64, dims)
    mask = b.input("attention_mask", TensorProto.INT64, dims)
    tt = b.input("token_type_ids", TensorProto.INT64, dims)

    def layernorm(x, prefix):
        g = W.get(prefix + ".weight", (H,), None, kind="ones")
        beta = W.get(prefix + ".bias", (H,), None, kind="bias")
        if fused_ln:
            return b.node("LayerNormalization", [x, g, beta], prefix="layernorm", axis=-1,
                          epsilon=eps)
        # The opset <= 16 export: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add.
        mean = b.node("ReduceMean", [x], prefix="ln_mean", axes=[-1], keepdims=1)
        d = b.node("Sub", [x, mean], prefix="ln_sub")
        sq = b.node("Pow", [d, b.f32(2.0, "two")], prefix="ln_pow")
        var = b.node("ReduceMean", [sq], prefix="ln_var", axes=[-1], keepdims=1)
        std_ = b.node("Sqrt", [b.node("Add", [var, b.f32(eps, "eps")], prefix="ln_add")],
                      prefix="ln_sqrt")
        y = b.node("Div", [d, std_], prefix="ln_div")
        return b.node("Add", [b.node("Mul", [y, g], prefix="ln_mul"), beta], prefix="ln_out")

    def linear(x, prefix, nin, nout):
        w = W.get(prefix + ".weight", (nin, nout), std or 0, linear=True)
        bias = W.get(prefix + ".bias", (nout,), None, kind="bias")
        return b.node("Add", [b.node("MatMul", [x, w]), bias])

    def dim_of(x, axis):
        shape = b.node("Shape", [x])
        g = b.node("Gather", [shape, b.i64(axis, "axis")], axis=0)
        return b.node("Unsqueeze", [g, b.i64([0], "axes")])

    # Embeddings. position_ids is a [1, max_pos] buffer sliced to the sequence length.
    we = W.get("embeddings.word_embeddings.weight", (vocab, H), std or 0)
    pe = W.get("embeddings.position_embeddings.weight", (cfg["max_position_embeddings"], H), std or 0)
    te = W.get("embeddings.token_type_embeddings.weight", (cfg["type_vocab_size"], H), std or 0)
    pos_buf = b.i64(np.arange(cfg["max_position_embeddings"])[None, :], "position_ids")
    seq_len = dim_of(ids, 1)
    pos = b.node("Slice", [pos_buf, b.i64([0], "starts"), seq_len, b.i64([1], "axes")])
    e = b.node("Add", [b.node("Gather", [we, ids], axis=0), b.node("Gather", [te, tt], axis=0)])
    e = b.node("Add", [e, b.node("Gather", [pe, pos], axis=0)])
    h = layernorm(e, "embeddings.LayerNorm")

    # Extended attention mask: (1 - mask[:, None, None, :]) * -10000.
    m = b.node("Unsqueeze", [mask, b.i64([1], "axes")])
    m = b.node("Unsqueeze", [m, b.i64([2], "axes")])
    m = b.node("Cast", [m], to=TensorProto.FLOAT)
    m = b.node("Sub", [b.f32(1.0, "one"), m])
    ext_mask = b.node("Mul", [m, b.f32(-10000.0, "mask_value")])

    def split_heads(x, perm):
        bs = dim_of(x, 0)
        sl = dim_of(x, 1)
        shape = b.node("Concat", [bs, sl, b.i64([nh], "heads"), b.i64([hd], "head_dim")], axis=0)
        return b.node("Transpose", [b.node("Reshape", [x, shape])], perm=perm)

    for i in range(L):
        p = f"encoder.layer.{i}."
        q = linear(h, p + "attention.self.query", H, H)
        k = linear(h, p + "attention.self.key", H, H)
        v = linear(h, p + "attention.self.value", H, H)
        q = split_heads(q, [0, 2, 1, 3])
        k = split_heads(k, [0, 2, 3, 1])
        v = split_heads(v, [0, 2, 1, 3])
        s = b.node("MatMul", [q, k])
        s = b.node("Div", [s, b.f32(np.sqrt(hd), "sqrt_hd")])
        s = b.node("Add", [s, ext_mask])
        s = b.node("Softmax", [s], axis=-1)
        c = b.node("Transpose", [b.node("MatMul", [s, v])], perm=[0, 2, 1, 3])
        bs = dim_of(c, 0)
        sl = dim_of(c, 1)
        shape = b.node("Concat", [bs, sl, b.i64([H], "hidden")], axis=0)
        c = b.node("Reshape", [c, shape])
        a = linear(c, p + "attention.output.dense", H, H)
        h = layernorm(b.node("Add", [a, h]), p + "attention.output.LayerNorm")
        f = linear(h, p + "intermediate.dense", H, inter)
        # GELU as torch exports it: x * 0.5 * (1 + erf(x / sqrt(2))).
        g = b.node("Erf", [b.node("Div", [f, b.f32(1.4142135381698608, "sqrt2")])])
        g = b.node("Mul", [f, b.node("Add", [g, b.f32(1.0, "one")])])
        g = b.node("Mul", [g, b.f32(0.5, "half")])
        o = linear(g, p + "output.dense", inter, H)
        h = layernorm(b.node("Add", [o, h]), p + "output.LayerNorm")

    b.output(h, "last_hidden_state", dims=["batch", "sequence", H])
    if W.has("pooler.dense.weight"):
        first = b.node("Gather", [h, b.i64(0, "index")], axis=1)
        pooled = b.node("Tanh", [linear(first, "pooler.dense", H, H)])
        b.output(pooled, "pooler_output", dims=["batch", H])
    opset = 17 if fused_ln else 14
    return b.model(opset, "BERT encoder" + (" (trained weights)" if weights else ", random weights"))


# =============================================================================
# ONNX model zoo families (smaller, same architecture patterns).
# =============================================================================
def alexnet(small, batch):
    b = Builder("alexnet")
    set_batch_meta(b, batch)
    div, hw, fc, classes = (8, 99, 256, 10) if small else (1, 227, 4096, 1000)
    c = [96 // div, 256 // div, 384 // div, 384 // div, 256 // div]
    x = b.input("data_0", TensorProto.FLOAT, [batch_dim(batch), 3, hw, hw])
    x = b.relu(b.conv(x, 3, c[0], 11, stride=4, pad=0))
    x = b.node("LRN", [x], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = b.maxpool(x, 3, 2)
    x = b.relu(b.conv(x, c[0], c[1], 5, pad=2, group=2))
    x = b.node("LRN", [x], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = b.maxpool(x, 3, 2)
    x = b.relu(b.conv(x, c[1], c[2], 3))
    x = b.relu(b.conv(x, c[2], c[3], 3, group=2))
    x = b.relu(b.conv(x, c[3], c[4], 3, group=2))
    x = b.maxpool(x, 3, 2)
    side = ((((hw - 11) // 4 + 1 - 3) // 2 + 1 - 3) // 2 + 1 - 3) // 2 + 1
    x = b.flatten(x)
    x = b.relu(b.gemm(x, c[4] * side * side, fc, gain=2.0))
    x = b.node("Dropout", [x])
    x = b.relu(b.gemm(x, fc, fc, gain=2.0))
    x = b.node("Dropout", [x])
    x = b.gemm(x, fc, classes)
    x = b.node("Softmax", [x], axis=1)
    b.output(x, "prob_1", dims=[batch_dim(batch), classes])
    return b.model(13, "AlexNet (bvlc layout, LRN, grouped convs), random weights")


def vgg11(small, batch):
    b = Builder("vgg11")
    set_batch_meta(b, batch)
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    div, hw, fc, classes = (8, 32, 128, 10) if small else (1, 224, 4096, 1000)
    x = b.input("data", TensorProto.FLOAT, [batch_dim(batch), 3, hw, hw])
    cin = 3
    for v in cfg:
        if v == "M":
            x = b.maxpool(x, 2, 2)
            hw //= 2
        else:
            x = b.relu(b.conv(x, cin, v // div, 3))
            cin = v // div
    x = b.flatten(x)
    x = b.relu(b.gemm(x, cin * hw * hw, fc, gain=2.0))
    x = b.relu(b.gemm(x, fc, fc, gain=2.0))
    x = b.gemm(x, fc, classes)
    b.output(x, "vgg0_dense2_fwd", dims=[batch_dim(batch), classes])
    return b.model(13, "VGG-11, random weights")


def squeezenet(small, batch):
    b = Builder("squeezenet")
    set_batch_meta(b, batch)
    div, hw, classes = (4, 64, 10) if small else (1, 224, 1000)
    x = b.input("data", TensorProto.FLOAT, [batch_dim(batch), 3, hw, hw])
    x = b.relu(b.conv(x, 3, 64 // div, 3, stride=2, pad=0))
    x = b.maxpool(x, 3, 2, ceil=1)
    cin = 64 // div

    def fire(x, cin, sq, ex):
        s = b.relu(b.conv(x, cin, sq, 1))
        e1 = b.relu(b.conv(s, sq, ex, 1))
        e3 = b.relu(b.conv(s, sq, ex, 3))
        return b.node("Concat", [e1, e3], axis=1), 2 * ex

    for i, (sq, ex) in enumerate([(16, 64), (16, 64), (32, 128), (32, 128), (48, 192),
                                  (48, 192), (64, 256), (64, 256)]):
        x, cin = fire(x, cin, sq // div, ex // div)
        if i in (1, 3):
            x = b.maxpool(x, 3, 2, ceil=1)
    x = b.node("Dropout", [x])
    x = b.relu(b.conv(x, cin, classes, 1))
    x = b.gap(x)
    x = b.node("Reshape", [x, b.i64([0, -1])])
    b.output(x, "squeezenet0_flatten0_reshape0", dims=[batch_dim(batch), classes])
    return b.model(13, "SqueezeNet 1.1 (ceil-mode pools, fire modules), random weights")


def densenet(small, batch):
    b = Builder("densenet")
    set_batch_meta(b, batch)
    if small:
        hw, k, layers, init, classes = 32, 8, [3, 3], 16, 10
    else:
        hw, k, layers, init, classes = 224, 32, [6, 12], 64, 1000
    x = b.input("data_0", TensorProto.FLOAT, [batch_dim(batch), 3, hw, hw])
    x = b.relu(b.bn(b.conv(x, 3, init, 7, stride=2, pad=3, bias=False), init))
    x = b.maxpool(x, 3, 2, 1)
    c = init
    for bi, n in enumerate(layers):
        for _ in range(n):
            y = b.conv(b.relu(b.bn(x, c)), c, 4 * k, 1, bias=False)
            y = b.conv(b.relu(b.bn(y, 4 * k)), 4 * k, k, 3, bias=False)
            x = b.node("Concat", [x, y], axis=1)
            c += k
        if bi != len(layers) - 1:  # transition
            x = b.conv(b.relu(b.bn(x, c)), c, c // 2, 1, bias=False)
            x = b.avgpool(x, 2, 2)
            c //= 2
    x = b.relu(b.bn(x, c))
    x = b.flatten(b.gap(x))
    x = b.gemm(x, c, classes)
    b.output(x, "fc6_1", dims=[batch_dim(batch), classes])
    return b.model(13, "DenseNet dense blocks + transition, random weights")


def inception(small, batch):
    b = Builder("inception")
    set_batch_meta(b, batch)
    div, hw, classes = (4, 64, 10) if small else (1, 224, 1000)
    x = b.input("data_0", TensorProto.FLOAT, [batch_dim(batch), 3, hw, hw])
    x = b.relu(b.conv(x, 3, 64 // div, 7, stride=2, pad=3))
    x = b.maxpool(x, 3, 2, ceil=1)
    x = b.node("LRN", [x], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    x = b.relu(b.conv(x, 64 // div, 64 // div, 1))
    x = b.relu(b.conv(x, 64 // div, 192 // div, 3))
    x = b.maxpool(x, 3, 2, ceil=1)
    cin = 192 // div

    def module(x, cin, c1, c3r, c3, c5r, c5, pp):
        a = b.relu(b.conv(x, cin, c1, 1))
        m = b.relu(b.conv(b.relu(b.conv(x, cin, c3r, 1)), c3r, c3, 3))
        n = b.relu(b.conv(b.relu(b.conv(x, cin, c5r, 1)), c5r, c5, 5))
        p = b.relu(b.conv(b.maxpool(x, 3, 1, 1), cin, pp, 1))
        return b.node("Concat", [a, m, n, p], axis=1), c1 + c3 + c5 + pp

    for spec in [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)]:
        x, cin = module(x, cin, *[v // div for v in spec])
    x = b.maxpool(x, 3, 2, ceil=1)
    x, cin = module(x, cin, *[v // div for v in (192, 96, 208, 16, 48, 64)])
    x = b.gap(x)
    x = b.node("Dropout", [x])
    x = b.node("Reshape", [x, b.i64([-1, cin])])
    x = b.gemm(x, cin, classes)
    x = b.node("Softmax", [x], axis=1)
    b.output(x, "prob_1", dims=[batch_dim(batch), classes])
    return b.model(13, "Inception-v1 blocks (GoogLeNet 3a/3b/4a), random weights")


def shufflenet(small, batch):
    b = Builder("shufflenet")
    set_batch_meta(b, batch)
    if small:
        hw, stages, chans, classes = 64, [1, 2, 1], [24, 48, 96, 192], 10
    else:
        hw, stages, chans, classes = 224, [4, 8, 4], [24, 116, 232, 464], 1000
    x = b.input("input", TensorProto.FLOAT, [batch_dim(batch), 3, hw, hw])
    x = b.relu(b.bn(b.conv(x, 3, chans[0], 3, stride=2, bias=False), chans[0]))
    x = b.maxpool(x, 3, 2, 1)
    hw = hw // 4

    def branch(x, cin, cout, stride):
        y = b.relu(b.bn(b.conv(x, cin, cout, 1, bias=False), cout))
        y = b.bn(b.conv(y, cout, cout, 3, stride=stride, group=cout, bias=False), cout)
        return b.relu(b.bn(b.conv(y, cout, cout, 1, bias=False), cout))

    def shuffle(x, c, side):
        # Channel shuffle exactly as torch exports it: Reshape, Transpose, Reshape.
        y = b.node("Reshape", [x, b.i64([0, 2, c // 2, side, side])])
        y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return b.node("Reshape", [y, b.i64([0, c, side, side])])

    cin = chans[0]
    for si, n in enumerate(stages):
        cout = chans[si + 1]
        half = cout // 2
        for i in range(n):
            if i == 0:
                hw = (hw + 1) // 2
                left = b.bn(b.conv(x, cin, cin, 3, stride=2, group=cin, bias=False), cin)
                left = b.relu(b.bn(b.conv(left, cin, half, 1, bias=False), half))
                right = branch(x, cin, half, 2)
            else:
                left, r = b.node("Split", [x, b.i64([half, half], "split")], n_out=2, axis=1)
                right = branch(r, half, half, 1)
            x = shuffle(b.node("Concat", [left, right], axis=1), cout, hw)
            cin = cout
    last = 1024 if not small else 128
    x = b.relu(b.bn(b.conv(x, cin, last, 1, bias=False), last))
    x = b.node("ReduceMean", [x], axes=[2, 3], keepdims=0)
    x = b.gemm(x, last, classes)
    b.output(x, "output", dims=[batch_dim(batch), classes])
    return b.model(13, "ShuffleNet v2 (Split, channel shuffle), random weights")


def mnist(small, batch):
    # Layout of the zoo's mnist-8: Conv + separate Add bias, Reshape, MatMul + Add.
    b = Builder("mnist")
    set_batch_meta(b, batch)
    x = b.input("Input3", TensorProto.FLOAT, [batch_dim(batch), 1, 28, 28])
    x = b.conv(x, 1, 8, 5, bias=False)
    x = b.relu(b.node("Add", [x, b.uniform((8, 1, 1), -0.1, 0.1, "bias")]))
    x = b.maxpool(x, 2, 2)
    x = b.conv(x, 8, 16, 5, bias=False)
    x = b.relu(b.node("Add", [x, b.uniform((16, 1, 1), -0.1, 0.1, "bias")]))
    x = b.maxpool(x, 3, 3)
    x = b.node("Reshape", [x, b.i64([-1, 256])])
    x = b.node("MatMul", [x, b.randn((256, 10), np.sqrt(1 / 256), "fc_w")])
    x = b.node("Add", [x, b.uniform((1, 10), -0.1, 0.1, "fc_b")])
    b.output(x, "Plus214_Output_0", dims=[batch_dim(batch), 10])
    return b.model(13, "MNIST CNN (zoo mnist-8 layout), random weights")


def superres(small, batch, d2s=False):
    # The zoo's super-resolution-10: conv stack, then sub-pixel shuffle by 3.
    b = Builder("superres_d2s" if d2s else "superres")
    set_batch_meta(b, batch)
    hw, r = (32 if small else 224), 3
    x = b.input("input", TensorProto.FLOAT, [batch_dim(batch), 1, hw, hw])
    x = b.relu(b.conv(x, 1, 64, 5))
    x = b.relu(b.conv(x, 64, 64, 3))
    x = b.relu(b.conv(x, 64, 32, 3))
    x = b.conv(x, 32, r * r, 3, gain=1.0)
    if d2s:
        x = b.node("DepthToSpace", [x], blocksize=r, mode="CRD")
    else:
        x = b.node("Reshape", [x, b.i64([-1, 1, r, r, hw, hw])])
        x = b.node("Transpose", [x], perm=[0, 1, 4, 2, 5, 3])
        x = b.node("Reshape", [x, b.i64([-1, 1, hw * r, hw * r])])
    b.output(x, "output", dims=[batch_dim(batch), 1, hw * r, hw * r])
    return b.model(13, "Super-resolution x3 (sub-pixel conv), random weights")


def mlp(small, batch):
    b = Builder("mlp")
    set_batch_meta(b, batch)
    x = b.input("x", TensorProto.FLOAT, [batch_dim(batch), 64])
    x = b.relu(b.gemm(x, 64, 128, gain=2.0))
    x = b.relu(b.gemm(x, 128, 64, gain=2.0))
    x = b.gemm(x, 64, 10)
    x = b.node("Softmax", [x], axis=-1)
    b.output(x, "probs", dims=[batch_dim(batch), 10])
    return b.model(13, "Tiny MLP, random weights")


MODELS = {
    "mlp": mlp,
    "mnist": mnist,
    "superres": lambda s, n: superres(s, n, d2s=False),
    "superres_d2s": lambda s, n: superres(s, n, d2s=True),
    "alexnet": alexnet,
    "vgg11": vgg11,
    "squeezenet": squeezenet,
    "densenet": densenet,
    "inception": inception,
    "shufflenet": shufflenet,
    "mobilenetv2": mobilenetv2,
    "resnet50": resnet50,
    "bert": lambda s, n: bert(s, n),
    "bert_ln": lambda s, n: bert(s, n, fused_ln=True, name="bert_ln"),
}


def save(model, path):
    onnx.checker.check_model(model, full_check=False)
    if model.ByteSize() >= 2**31 - 1:
        # protobuf cannot serialize more than 2 GiB in one message
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data")
    else:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models-gen", help="output directory")
    ap.add_argument("--only", help="comma-separated model names (default: all)")
    ap.add_argument("--batch", type=int, default=1, help="batch size; 0 = symbolic dim N")
    ap.add_argument("--small", action="store_true", help="reduced widths/depth for quick tests")
    ap.add_argument("--list", action="store_true", help="list the model names and exit")
    ap.add_argument("--bert-weights", help="HuggingFace BertModel safetensors for --only bert")
    ap.add_argument("--bert-config", help="HuggingFace config.json matching --bert-weights")
    ap.add_argument("--name", help="file name (without .onnx) when building a single model")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(MODELS))
        return 0
    names = args.only.split(",") if args.only else list(MODELS)
    for n in names:
        if n not in MODELS:
            ap.error(f"unknown model {n!r}; known: {', '.join(MODELS)}")
    if args.bert_weights and names != ["bert"] and names != ["bert_ln"]:
        ap.error("--bert-weights needs --only bert or --only bert_ln")
    os.makedirs(args.out, exist_ok=True)
    for n in names:
        if args.bert_weights:
            m = bert(False, args.batch, fused_ln=(n == "bert_ln"), weights=args.bert_weights,
                     config=args.bert_config, name=args.name or n)
        else:
            m = MODELS[n](args.small, args.batch)
        path = os.path.join(args.out, (args.name or n) + ".onnx")
        save(m, path)
        nparams = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
        print(f"{path}: {len(m.graph.node)} nodes, {nparams} parameters, opset "
              f"{m.opset_import[0].version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
