#!/usr/bin/env python3
"""Build the TensorFlow-checkpoint fixtures of ugatit-rs (tests/fixtures/tf/).

The released U-GAT-IT models (selfie2anime, 50 and 100 epochs) are TensorFlow 1 checkpoints
written by taki0112/UGATIT: a `tf.train.Saver` tensor bundle (`.index` + `.data-*`) of every
global variable of the training graph. The Rust side reads such bundles and runs the
official TF generator, which differs from UGATIT-pytorch in many small ways (biases
everywhere, affine instance norms, biased variances, asymmetric stride-2 padding, a shared
CAM FC whose bias is added to the channel weights, rho smoothing, ...; see
`tools/oracle/TF_CHECKPOINT.md`). This script produces the ground truth for both halves,
with real TensorFlow (2.x, `tf.compat.v1` graph mode):

1. It rebuilds the official training graph's variables under the official names: both
   generators (`generator_B` = A->B, `generator_A` = B->A), both discriminators
   (`discriminator_{A,B}/{local,global}/...` with spectral-norm `u`), and the two
   `tf.compat.v1.train.AdamOptimizer`s of `UGATIT.build_model` (G first, then D), so the
   checkpoint also holds `<var>/Adam`, `<var>/Adam_1`, `beta1_power`, `beta2_power`,
   `beta1_power_1` and `beta2_power_1`, as a real one does. Each optimizer runs one step on
   a stand-in loss (so the slots are not all zero); the official losses are not needed for a
   reader test.
2. It moves every generator variable away from its initial value (kernels, biases, norm
   affines, MLP, CAM: +U(-0.1, 0.1); every rho: U(0, 1)), so a port that drops a bias, an
   affine, or the rho smoothing fails the comparison.
3. It saves with `Saver().save(sess, .../UGATIT.model, global_step=1000)`, which writes
   `UGATIT.model-1000.{index,data-00000-of-00001,meta}` and the `checkpoint` state file.
4. In a fresh graph built like the official test phase (`phase == 'test'`: placeholders of
   batch 1, generators only, a `Saver()` over those variables restored from the bundle) it
   translates two real test images per direction, one at a time, and stores the inputs and
   every generator output in `expected.safetensors` (NCHW float32, torch layout).

Two independent checks run before anything is kept:

* a numpy float64 forward, written from the semantics in TF_CHECKPOINT.md and fed by a
  small pure-Python reader of the bundle format (footer, SSTable blocks, BundleEntryProto,
  crc32c), must match TF's outputs; its tensors must equal `NewCheckpointReader`'s;
* the batch-2 forward of the training graph must match the batch-1 test-phase forward.

Variants (both with the official defaults `--n_res 4 --smoothing True`, and `n_dis 6`, sn):

  light/   light=True,  ch 4, n_res 4, img 64
  full/    light=False, ch 4, n_res 4, img 32 (MLP linear_0 kernel [8*8*16, 16])

n_res must be 4: the official MLP width is `ch * n_res`, which equals the generator's
bottleneck width `4 * ch` only for n_res 4 (any other value fails to broadcast gamma/beta).
The discriminators use their own `--d-ch` (default 1) to keep the files small; their
shapes do not matter to a generator reader, only their names do.

Run:
  python3 -m venv /tmp/tfv && /tmp/tfv/bin/pip install "tensorflow-cpu==2.21.*" numpy safetensors Pillow
  /tmp/tfv/bin/python tools/oracle/make_tf_fixtures.py             # both variants (~1 min)
  /tmp/tfv/bin/python tools/oracle/make_tf_fixtures.py --only light
  /tmp/tfv/bin/python tools/oracle/make_tf_fixtures.py --describe  # variable tables + bundle facts
"""

import argparse
import glob
import json
import os
import shutil
import struct
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Plain Eigen kernels (no oneDNN graph rewrites), so reruns are reproducible.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from PIL import Image  # noqa: E402
import PIL  # noqa: E402
import tensorflow as tf  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_v2_behavior()  # TF1 semantics: graph mode, ref variables, as TF 1.14 had

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT_ROOT = os.path.join(REPO, "tests", "fixtures", "tf")
SAMPLES = os.path.join(REPO, "assets", "sample")

VARIANTS = {
    "light": dict(light=True, ch=4, n_res=4, img_size=64),
    "full": dict(light=False, ch=4, n_res=4, img_size=32),
}
COMMON = dict(smoothing=True, n_dis=6, sn=True, d_ch=1, d_img=128, step=1000, seed=20240611,
              n_images=2)
META_LIMIT = 1 << 20  # delete the .meta file if it is larger than this
# Outputs kept in expected.safetensors. The feature-map intermediates (down, enc,
# cam_features, dec) are checked against numpy here but not stored, to keep the files small.
STORED = ("image", "cam_logit", "heatmap", "gamma", "beta")

# ----------------------------------------------------------------------------------------
# Layers: the official ops.py semantics, rebuilt on tf.compat.v1.get_variable + tf.nn
# (tf.contrib and tf.layers are gone in TF 2.x). The scopes reproduce the variable names
# the official code gets from tf.layers.conv2d ("conv2d/"), tf.layers.dense ("dense/") and
# tf.contrib.layers.instance_norm ("beta", "gamma").
# ----------------------------------------------------------------------------------------

W_INIT = tf1.random_normal_initializer(mean=0.0, stddev=0.02)
ZERO = tf1.constant_initializer(0.0)
ONE = tf1.constant_initializer(1.0)


def _clip01(v):
    return tf.clip_by_value(v, 0.0, 1.0)


def pad_amounts(kernel, stride, pad):
    """(before, after) padding of the official conv(): symmetric when (k - s) is even,
    else `pad` before and `k - s - pad` after (top/left get `pad`)."""
    if pad <= 0:
        return 0, 0
    if (kernel - stride) % 2 == 0:
        return pad, pad
    return pad, kernel - stride - pad


def spectral_norm(w):
    """One power iteration with the stored u ([1, out], not trainable), as ops.spectral_norm."""
    shape = w.shape.as_list()
    w2 = tf.reshape(w, [-1, shape[-1]])
    u = tf1.get_variable("u", [1, shape[-1]], initializer=tf1.random_normal_initializer(),
                         trainable=False)
    v_hat = tf.nn.l2_normalize(tf.matmul(u, tf.transpose(w2)))
    u_hat = tf.nn.l2_normalize(tf.matmul(v_hat, w2))
    u_hat = tf.stop_gradient(u_hat)
    v_hat = tf.stop_gradient(v_hat)
    sigma = tf.matmul(tf.matmul(v_hat, w2), tf.transpose(u_hat))
    with tf.control_dependencies([u.assign(u_hat)]):
        return tf.reshape(w2 / sigma, shape)


def conv(x, channels, kernel, stride, pad=0, reflect=False, sn=False, scope="conv_0"):
    with tf1.variable_scope(scope):
        before, after = pad_amounts(kernel, stride, pad)
        if before or after:
            x = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]],
                       mode="REFLECT" if reflect else "CONSTANT")
        shape = [kernel, kernel, int(x.shape[-1]), channels]
        if sn:
            w = spectral_norm(tf1.get_variable("kernel", shape, initializer=W_INIT))
            b = tf1.get_variable("bias", [channels], initializer=ZERO)
        else:
            with tf1.variable_scope("conv2d"):  # the name tf.layers.conv2d gives its layer
                w = tf1.get_variable("kernel", shape, initializer=W_INIT)
                b = tf1.get_variable("bias", [channels], initializer=ZERO)
        x = tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding="VALID")
        return tf.nn.bias_add(x, b)


def flatten(x):
    return tf.reshape(x, [-1, int(np.prod(x.shape.as_list()[1:]))])  # NHWC row-major


def dense(x, units, scope):
    with tf1.variable_scope(scope):
        x = flatten(x)
        with tf1.variable_scope("dense"):  # the name tf.layers.dense gives its layer
            w = tf1.get_variable("kernel", [int(x.shape[-1]), units], initializer=W_INIT)
            b = tf1.get_variable("bias", [units], initializer=ZERO)
        return tf.matmul(x, w) + b


def cam_fc(x, sn=False, reuse=False, scope="CAM_logit"):
    """ops.fully_connected_with_w: logit = x @ w + b, channel weights = w[:, 0] + b."""
    with tf1.variable_scope(scope, reuse=reuse):
        x = flatten(x)
        w = tf1.get_variable("kernel", [int(x.shape[-1]), 1], initializer=W_INIT)
        if sn:
            w = spectral_norm(w)
        b = tf1.get_variable("bias", [1], initializer=ZERO)
        logit = tf.matmul(x, w) + b
        weights = tf.transpose(tf.nn.bias_add(w, b))[0]
        return logit, weights


def instance_norm(x, scope):
    """tf.contrib.layers.instance_norm(epsilon=1e-5, center, scale): biased moments over H, W."""
    with tf1.variable_scope(scope):
        c = int(x.shape[-1])
        beta = tf1.get_variable("beta", [c], initializer=ZERO)
        gamma = tf1.get_variable("gamma", [c], initializer=ONE)
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-5)


def _ins_ln(x):
    eps = 1e-5
    m_in, v_in = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    m_ln, v_ln = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
    return (x - m_in) / tf.sqrt(v_in + eps), (x - m_ln) / tf.sqrt(v_ln + eps)


def adaptive_instance_layer_norm(x, gamma, beta, smoothing, scope="instance_layer_norm"):
    with tf1.variable_scope(scope):
        x_in, x_ln = _ins_ln(x)
        rho = tf1.get_variable("rho", [int(x.shape[-1])], initializer=ONE, constraint=_clip01)
        if smoothing:
            rho = tf.clip_by_value(rho - 0.1, 0.0, 1.0)
        return (rho * x_in + (1 - rho) * x_ln) * gamma + beta


def layer_instance_norm(x, scope):
    with tf1.variable_scope(scope):
        c = int(x.shape[-1])
        x_in, x_ln = _ins_ln(x)
        rho = tf1.get_variable("rho", [c], initializer=ZERO, constraint=_clip01)
        gamma = tf1.get_variable("gamma", [c], initializer=ONE)
        beta = tf1.get_variable("beta", [c], initializer=ZERO)
        return (rho * x_in + (1 - rho) * x_ln) * gamma + beta


def resblock(x0, c, scope):
    with tf1.variable_scope(scope):
        with tf1.variable_scope("res1"):
            x = tf.nn.relu(instance_norm(conv(x0, c, 3, 1, 1, True), "instance_norm"))
        with tf1.variable_scope("res2"):
            x = instance_norm(conv(x, c, 3, 1, 1, True), "instance_norm")
        return x + x0


def adaptive_resblock(x0, c, gamma, beta, smoothing, scope):
    with tf1.variable_scope(scope):
        with tf1.variable_scope("res1"):
            x = conv(x0, c, 3, 1, 1, True)
            x = tf.nn.relu(adaptive_instance_layer_norm(x, gamma, beta, smoothing))
        with tf1.variable_scope("res2"):
            x = conv(x, c, 3, 1, 1, True)
            x = adaptive_instance_layer_norm(x, gamma, beta, smoothing)
        return x + x0


def up_sample(x):
    _, h, w, _ = x.shape.as_list()
    return tf1.image.resize_nearest_neighbor(x, [2 * h, 2 * w])  # align_corners=False


def generator(x_init, cfg, reuse=False, scope="generator"):
    """UGATIT.generator + UGATIT.MLP. Returns the official (x, cam_logit, heatmap) plus a few
    intermediates for debugging a port."""
    ch, n_res = cfg["ch"], cfg["n_res"]
    out = {}
    with tf1.variable_scope(scope, reuse=reuse):
        c = ch
        x = tf.nn.relu(instance_norm(conv(x_init, c, 7, 1, 3, True, scope="conv"), "ins_norm"))
        for i in range(2):
            x = conv(x, c * 2, 3, 2, 1, True, scope="conv_%d" % i)
            x = tf.nn.relu(instance_norm(x, "ins_norm_%d" % i))
            c *= 2
        out["down"] = x
        for i in range(n_res):
            x = resblock(x, c, "resblock_%d" % i)
        out["enc"] = x

        gap_logit, w_gap = cam_fc(tf.reduce_mean(x, axis=[1, 2]), scope="CAM_logit")
        gmp_logit, w_gmp = cam_fc(tf.reduce_max(x, axis=[1, 2]), reuse=True, scope="CAM_logit")
        out["cam_logit"] = tf.concat([gap_logit, gmp_logit], axis=-1)
        x = tf.concat([x * w_gap, x * w_gmp], axis=-1)
        x = tf.nn.relu(conv(x, c, 1, 1, scope="conv_1x1"))
        out["cam_features"] = x
        # Official: tf.squeeze(reduce_sum(x, -1)), i.e. [H, W] at batch 1. Kept as [B, H, W, 1].
        out["heatmap"] = tf.reduce_sum(x, axis=-1, keepdims=True)

        width = ch * n_res  # the official MLP width (== c only when n_res == 4)
        h = tf.reduce_mean(x, axis=[1, 2]) if cfg["light"] else x
        with tf1.variable_scope("MLP", reuse=reuse):
            for i in range(2):
                h = tf.nn.relu(dense(h, width, "linear_%d" % i))
            gamma = dense(h, width, "gamma")
            beta = dense(h, width, "beta")
        out["gamma"], out["beta"] = gamma, beta
        gamma = tf.reshape(gamma, [-1, 1, 1, width])
        beta = tf.reshape(beta, [-1, 1, 1, width])

        for i in range(n_res):
            x = adaptive_resblock(x, c, gamma, beta, cfg["smoothing"], "adaptive_resblock%d" % i)
        out["dec"] = x
        for i in range(2):
            x = conv(up_sample(x), c // 2, 3, 1, 1, True, scope="up_conv_%d" % i)
            x = tf.nn.relu(layer_instance_norm(x, "layer_ins_norm_%d" % i))
            c //= 2
        out["image"] = tf.tanh(conv(x, 3, 7, 1, 3, True, scope="G_logit"))
    return out


def _dis_branch(x, ch, n_down, sn, scope):
    def lrelu(t):
        return tf.nn.leaky_relu(t, 0.2)

    with tf1.variable_scope(scope):
        c = ch
        x = lrelu(conv(x, c, 4, 2, 1, True, sn, scope="conv_0"))
        for i in range(1, n_down):
            x = lrelu(conv(x, c * 2, 4, 2, 1, True, sn, scope="conv_%d" % i))
            c *= 2
        x = lrelu(conv(x, c * 2, 4, 1, 1, True, sn, scope="conv_last"))
        c *= 2
        gap_logit, w_gap = cam_fc(tf.reduce_mean(x, axis=[1, 2]), sn=sn, scope="CAM_logit")
        gmp_logit, w_gmp = cam_fc(tf.reduce_max(x, axis=[1, 2]), sn=sn, reuse=True,
                                  scope="CAM_logit")
        x = tf.concat([x * w_gap, x * w_gmp], axis=-1)
        x = lrelu(conv(x, c, 1, 1, scope="conv_1x1"))
        logit = conv(x, 1, 4, 1, 1, True, sn, scope="D_logit")
        return logit, tf.concat([gap_logit, gmp_logit], axis=-1)


def discriminator(x, d_ch, n_dis, sn, scope):
    """UGATIT.discriminator: local (n_dis - 3 stride-2 convs) then global (n_dis - 1)."""
    with tf1.variable_scope(scope):
        local = _dis_branch(x, d_ch, n_dis - 3, sn, "local")
        glob_ = _dis_branch(x, d_ch, n_dis - 1, sn, "global")
        return [local, glob_]


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------

def load_inputs(size, n):
    """RGB, PIL bilinear resize to size x size, x / 127.5 - 1 in float64, cast to float32
    (the official test feeds float64 into a float32 placeholder). NHWC."""
    out, names = {}, {}
    for dom in ("A", "B"):
        files = sorted(glob.glob(os.path.join(SAMPLES, "test" + dom, "*.jpg")))[:n]
        assert len(files) == n, files
        imgs = []
        for f in files:
            im = Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)
            imgs.append(np.asarray(im, dtype=np.float64) / 127.5 - 1.0)
        out[dom] = np.stack(imgs).astype(np.float32)
        names[dom] = [os.path.relpath(f, REPO) for f in files]
    return out, names


# ----------------------------------------------------------------------------------------
# A small independent reader of the tensor-bundle format (what the Rust reader must do)
# ----------------------------------------------------------------------------------------

TABLE_MAGIC = 0xDB4775248B80FB57
DT_NAMES = {1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 9: "DT_INT64", 10: "DT_BOOL"}
DT_NUMPY = {1: "<f4", 2: "<f8", 3: "<i4", 9: "<i8", 10: "|b1"}


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc_mask(c):
    """leveldb/TF masked crc: rotate right by 15 and add 0xa282ead8."""
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf):
    """Decode a protobuf message into {field: [values]} (varint, fixed32/64, bytes)."""
    pos, fields = 0, {}
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val = bytes(buf[pos:pos + n])
            pos += n
        elif wt == 5:
            val = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError("wire type %d" % wt)
        fields.setdefault(num, []).append(val)
    return fields


def _read_block(data, offset, size, facts):
    """One SSTable block: entries, restart array, then a 5-byte trailer (type, masked crc)."""
    block = data[offset:offset + size]
    ctype = data[offset + size]
    (stored_crc,) = struct.unpack_from("<I", data, offset + size + 1)
    assert crc_mask(crc32c(data[offset:offset + size + 1])) == stored_crc, "block crc"
    facts["compression_types"].add(ctype)
    assert ctype == 0, "compressed block (type %d) not expected from BundleWriter" % ctype
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    facts["restarts"].append(n_restarts)
    pos, key, entries = 0, b"", []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        entries.append((key, bytes(block[pos:pos + vlen])))
        pos += vlen
    return entries


def read_bundle(prefix):
    """Returns (header_fields, {name: entry dict}, facts). Checks every crc."""
    with open(prefix + ".index", "rb") as f:
        idx = f.read()
    facts = {"index_bytes": len(idx), "compression_types": set(), "restarts": []}
    footer = idx[-48:]
    (magic,) = struct.unpack_from("<Q", footer, 40)
    assert magic == TABLE_MAGIC, hex(magic)
    facts["footer_magic"] = "0x%016x" % magic
    p = 0
    meta_off, p = _varint(footer, p)
    meta_size, p = _varint(footer, p)
    index_off, p = _varint(footer, p)
    index_size, p = _varint(footer, p)
    facts["metaindex_handle"] = (meta_off, meta_size)
    facts["index_handle"] = (index_off, index_size)
    facts["metaindex_entries"] = len(_read_block(idx, meta_off, meta_size, facts))
    handles = _read_block(idx, index_off, index_size, facts)
    facts["data_blocks"] = len(handles)
    entries = []
    for _, handle in handles:
        off, q = _varint(handle, 0)
        size, q = _varint(handle, q)
        entries.extend(_read_block(idx, off, size, facts))
    keys = [k for k, _ in entries]
    assert keys == sorted(keys), "keys not sorted"
    assert keys[0] == b"", "header entry missing"
    header = _proto_fields(entries[0][1])
    out = {}
    for k, v in entries[1:]:
        fl = _proto_fields(v)
        shape = []
        if 2 in fl:
            for d in _proto_fields(fl[2][0]).get(2, []):
                shape.append(_proto_fields(d).get(1, [0])[0])
        out[k.decode()] = dict(dtype=fl.get(1, [0])[0], shape=shape, shard=fl.get(3, [0])[0],
                               offset=fl.get(4, [0])[0], size=fl.get(5, [0])[0],
                               crc32c=fl.get(6, [None])[0], slices=len(fl.get(7, [])))
    facts["compression_types"] = sorted(facts["compression_types"])
    return header, out, facts


def bundle_tensors(prefix, entries):
    """Read every tensor from the data shard and check its masked crc32c."""
    with open(prefix + ".data-00000-of-00001", "rb") as f:
        data = f.read()
    out, end = {}, 0
    for name, e in sorted(entries.items(), key=lambda kv: kv[1]["offset"]):
        assert e["shard"] == 0 and e["slices"] == 0
        raw = data[e["offset"]:e["offset"] + e["size"]]
        assert crc_mask(crc32c(raw)) == e["crc32c"], name
        assert e["offset"] == end, "gap before %s" % name  # packed, no alignment padding
        end = e["offset"] + e["size"]
        arr = np.frombuffer(raw, dtype=DT_NUMPY[e["dtype"]]).reshape(e["shape"])
        out[name] = arr
    assert end == len(data), "trailing bytes in the data shard"
    return out


# ----------------------------------------------------------------------------------------
# numpy float64 forward of the TF generator, from the documented semantics
# ----------------------------------------------------------------------------------------

def np_conv(x, w, b, stride, pad=0):
    before, after = pad_amounts(w.shape[0], stride, pad)
    if before or after:
        x = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)), mode="reflect")
    k = w.shape[0]
    win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # N,H,W,C,kh,kw
    return np.tensordot(win, w.transpose(2, 0, 1, 3), axes=([3, 4, 5], [0, 1, 2])) + b


def np_moments(x, axes):
    m = x.mean(axis=axes, keepdims=True)
    return m, ((x - m) ** 2).mean(axis=axes, keepdims=True)  # biased


def np_generator(W, scope, x, cfg):
    def g(name):
        return W[scope + "/" + name].astype(np.float64)

    def cv(name, t, stride, pad):
        return np_conv(t, g(name + "/conv2d/kernel"), g(name + "/conv2d/bias"), stride, pad)

    def inorm(name, t):
        m, v = np_moments(t, (1, 2))
        return (t - m) / np.sqrt(v + 1e-5) * g(name + "/gamma") + g(name + "/beta")

    def lin(t, rho):
        m, v = np_moments(t, (1, 2))
        ml, vl = np_moments(t, (1, 2, 3))
        return rho * (t - m) / np.sqrt(v + 1e-5) + (1 - rho) * (t - ml) / np.sqrt(vl + 1e-5)

    def relu(t):
        return np.maximum(t, 0)

    out = {}
    x = relu(inorm("ins_norm", cv("conv", x.astype(np.float64), 1, 3)))
    for i in range(2):
        x = relu(inorm("ins_norm_%d" % i, cv("conv_%d" % i, x, 2, 1)))
    out["down"] = x
    for i in range(cfg["n_res"]):
        s = "resblock_%d/" % i
        y = relu(inorm(s + "res1/instance_norm", cv(s + "res1/conv_0", x, 1, 1)))
        y = inorm(s + "res2/instance_norm", cv(s + "res2/conv_0", y, 1, 1))
        x = x + y
    out["enc"] = x
    wk, wb = g("CAM_logit/kernel"), g("CAM_logit/bias")
    gap, gmp = x.mean(axis=(1, 2)), x.max(axis=(1, 2))
    out["cam_logit"] = np.concatenate([gap @ wk + wb, gmp @ wk + wb], axis=1)
    cw = wk[:, 0] + wb  # the same weights for the GAP and the GMP branch
    x = relu(cv("conv_1x1", np.concatenate([x * cw, x * cw], axis=-1), 1, 0))
    out["cam_features"] = x
    out["heatmap"] = x.sum(axis=-1, keepdims=True)
    h = x.mean(axis=(1, 2)) if cfg["light"] else x.reshape(x.shape[0], -1)
    for name in ("linear_0", "linear_1"):
        h = relu(h @ g("MLP/%s/dense/kernel" % name) + g("MLP/%s/dense/bias" % name))
    gamma = h @ g("MLP/gamma/dense/kernel") + g("MLP/gamma/dense/bias")
    beta = h @ g("MLP/beta/dense/kernel") + g("MLP/beta/dense/bias")
    out["gamma"], out["beta"] = gamma, beta
    gm, bt = gamma[:, None, None, :], beta[:, None, None, :]
    for i in range(cfg["n_res"]):
        s = "adaptive_resblock%d/" % i

        def rho(r):
            r = g(s + r + "/instance_layer_norm/rho")
            return np.clip(r - 0.1, 0, 1) if cfg["smoothing"] else r

        y = relu(lin(cv(s + "res1/conv_0", x, 1, 1), rho("res1")) * gm + bt)
        y = lin(cv(s + "res2/conv_0", y, 1, 1), rho("res2")) * gm + bt
        x = x + y
    out["dec"] = x
    for i in range(2):
        x = x.repeat(2, axis=1).repeat(2, axis=2)
        x = cv("up_conv_%d" % i, x, 1, 1)
        n = "layer_ins_norm_%d/" % i
        x = relu(lin(x, g(n + "rho")) * g(n + "gamma") + g(n + "beta"))
    out["image"] = np.tanh(cv("G_logit", x, 1, 3))
    return out


# ----------------------------------------------------------------------------------------
# Building, saving, running
# ----------------------------------------------------------------------------------------

def session():
    conf = tf1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=1)
    return tf1.Session(config=conf)


def build_and_save(cfg, inputs, folder):
    """Training-like graph: G_A, G_B, D_A, D_B, two Adams; perturb G; save. Returns the
    batch-2 outputs of the saved weights and a summary of the perturbation."""
    rng = np.random.default_rng(cfg["seed"])
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(cfg["seed"])
        s = cfg["img_size"]
        real_a = tf1.placeholder(tf.float32, [cfg["n_images"], s, s, 3], name="real_A")
        real_b = tf1.placeholder(tf.float32, [cfg["n_images"], s, s, 3], name="real_B")
        ab = generator(real_a, cfg, scope="generator_B")  # A -> B
        ba = generator(real_b, cfg, scope="generator_A")  # B -> A
        # D sees its own fixed 128 px input: the global D (5 stride-2 convs, then a reflect pad
        # of 2) needs >= 128 px. Its variables do not depend on the image size.
        d_in = tf1.random_uniform([1, cfg["d_img"], cfg["d_img"], 3], -1.0, 1.0, seed=1)
        d_out = [discriminator(d_in, cfg["d_ch"], cfg["n_dis"], cfg["sn"], sc)
                 for sc in ("discriminator_A", "discriminator_B")]

        # Stand-in losses, only to make the two optimizers create and fill their slots.
        g_loss = sum(tf.reduce_mean(tf.square(o["image"] - 0.5)) + tf.reduce_mean(
            tf.square(o["cam_logit"] - 1.0)) for o in (ab, ba))
        d_loss = sum(tf.reduce_mean(tf.square(t - 1.0)) for d in d_out for br in d for t in br)
        t_vars = tf1.trainable_variables()
        g_vars = [v for v in t_vars if "generator" in v.name]
        d_vars = [v for v in t_vars if "discriminator" in v.name]
        g_opt = tf1.train.AdamOptimizer(1e-4, beta1=0.5, beta2=0.999).minimize(g_loss,
                                                                               var_list=g_vars)
        d_opt = tf1.train.AdamOptimizer(1e-4, beta1=0.5, beta2=0.999).minimize(d_loss,
                                                                               var_list=d_vars)
        g_vars = sorted(g_vars, key=lambda v: v.name)
        new_vals = [tf1.placeholder(tf.float32, v.shape) for v in g_vars]
        set_g = tf.group(*[tf1.assign(v, p) for v, p in zip(g_vars, new_vals)])
        saver = tf1.train.Saver(save_relative_paths=True)
        feed = {real_a: inputs["A"], real_b: inputs["B"]}
        with session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(d_opt)
            sess.run(g_opt, feed)
            summary = {"n_vars": len(g_vars), "rho_below_0.1": 0, "rho_total": 0}
            assign = {}
            for v, p, val in zip(g_vars, new_vals, sess.run(g_vars)):
                if v.name.endswith("/rho:0"):
                    new = rng.uniform(0.0, 1.0, val.shape)
                    summary["rho_total"] += new.size
                    summary["rho_below_0.1"] += int((new < 0.1).sum())
                else:
                    new = val + rng.uniform(-0.1, 0.1, val.shape)
                assign[p] = new.astype(np.float32)
            sess.run(set_g, assign)
            outs = sess.run({"A2B": ab, "B2A": ba}, feed)
            if os.path.isdir(folder):
                shutil.rmtree(folder)
            os.makedirs(folder)
            prefix = saver.save(sess, os.path.join(folder, "UGATIT.model"),
                                global_step=cfg["step"])
    return prefix, outs, summary


def run_test_phase(cfg, inputs, prefix):
    """The official test phase: batch-1 placeholders, generators only, Saver().restore."""
    g = tf.Graph()
    with g.as_default():
        s = cfg["img_size"]
        test_a = tf1.placeholder(tf.float32, [1, s, s, 3], name="test_domain_A")
        test_b = tf1.placeholder(tf.float32, [1, s, s, 3], name="test_domain_B")
        fake_b = generator(test_a, cfg, scope="generator_B")
        fake_a = generator(test_b, cfg, scope="generator_A")
        saver = tf1.train.Saver()
        res = {"A2B": [], "B2A": []}
        with session() as sess:
            saver.restore(sess, prefix)
            for i in range(cfg["n_images"]):
                res["A2B"].append(sess.run(fake_b, {test_a: inputs["A"][i:i + 1]}))
                res["B2A"].append(sess.run(fake_a, {test_b: inputs["B"][i:i + 1]}))
    return {d: {k: np.concatenate([r[k] for r in rs]) for k in rs[0]} for d, rs in res.items()}


def max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


def nchw(t):
    t = np.asarray(t, np.float32)
    return np.ascontiguousarray(t.transpose(0, 3, 1, 2) if t.ndim == 4 else t)


def make_variant(name, args):
    cfg = dict(COMMON, **VARIANTS[name])
    if args.ch:
        cfg["ch"] = args.ch
    if args.img_size:
        cfg["img_size"] = args.img_size
    assert cfg["n_res"] == 4, "the official MLP width ch*n_res only fits the net for n_res 4"
    folder = os.path.join(OUT_ROOT, name)
    inputs, names = load_inputs(cfg["img_size"], cfg["n_images"])
    prefix, train_outs, pert = build_and_save(cfg, inputs, folder)
    test_outs = run_test_phase(cfg, inputs, prefix)

    # Independent checks: own bundle reader vs NewCheckpointReader, numpy forward vs TF.
    _, entries, _ = read_bundle(prefix)
    mine = bundle_tensors(prefix, entries)
    reader = tf1.train.NewCheckpointReader(prefix)
    listed = dict(tf1.train.list_variables(prefix))
    assert set(mine) == set(listed), set(mine) ^ set(listed)
    for k in mine:
        assert np.array_equal(mine[k], reader.get_tensor(k)), k
    diffs = {}
    for d, scope, dom in (("A2B", "generator_B", "A"), ("B2A", "generator_A", "B")):
        ref = np_generator(mine, scope, inputs[dom], cfg)
        for k, v in test_outs[d].items():
            diffs["numpy.%s.%s" % (d, k)] = max_rel(v, ref[k])
            diffs["batch2.%s.%s" % (d, k)] = max_rel(v, train_outs[d][k])
    worst_np = max(v for k, v in diffs.items() if k.startswith("numpy."))
    worst_b2 = max(v for k, v in diffs.items() if k.startswith("batch2."))
    print("[%s] worst rel diff: numpy f64 %.2e, batch-2 graph %.2e" % (name, worst_np, worst_b2))
    assert worst_np < 1e-4 and worst_b2 < 1e-5, diffs

    meta_path = prefix + ".meta"
    meta_size = os.path.getsize(meta_path)
    meta_deleted = meta_size > META_LIMIT
    if meta_deleted:
        os.remove(meta_path)

    tensors = {"input_A": nchw(inputs["A"]), "input_B": nchw(inputs["B"])}
    for d in ("A2B", "B2A"):
        for k in STORED:
            tensors["%s.%s" % (d, k)] = nchw(test_outs[d][k])
    metadata = {
        "variant": name, "light": str(cfg["light"]), "ch": str(cfg["ch"]),
        "n_res": str(cfg["n_res"]), "img_size": str(cfg["img_size"]),
        "smoothing": str(cfg["smoothing"]), "n_dis": str(cfg["n_dis"]), "sn": str(cfg["sn"]),
        "d_ch": str(cfg["d_ch"]), "seed": str(cfg["seed"]),
        "checkpoint": os.path.basename(prefix),
        "directions": "A2B = scope generator_B (input_A), B2A = scope generator_A (input_B)",
        "tf_version": tf.__version__, "numpy_version": np.__version__,
        "inputs": json.dumps({
            "files": names,
            "how": "PIL.Image.open(f).convert('RGB').resize((S, S), Image.BILINEAR) "
                   "(Pillow %s), then uint8 / 127.5 - 1 in float64, cast to float32; NHWC "
                   "in the graph, stored NCHW. The official load_test_data uses cv2.imread + "
                   "cv2.resize (INTER_LINEAR, no antialias) instead." % PIL.__version__}),
        "outputs": "test-phase graph (batch 1 per image, Saver().restore of the bundle), "
                   "stacked; NCHW float32. image = tanh output; cam_logit [B, 2] = "
                   "(GAP, GMP); heatmap = channel sum of the post-ReLU conv_1x1 features "
                   "[B,1,S/4,S/4] (the official tf.squeeze drops B and C); gamma, beta: "
                   "MLP outputs [B, ch*n_res]",
        "perturbation": json.dumps(dict(pert, rule="after one Adam step: rho := U(0,1); "
                                                   "every other G variable += U(-0.1,0.1)")),
        "meta_file": "deleted (%d bytes)" % meta_size if meta_deleted else "kept (%d bytes)"
                     % meta_size,
        "diff": json.dumps({"worst_numpy_f64_rel": worst_np, "worst_batch2_rel": worst_b2}),
    }
    save_file(tensors, os.path.join(folder, "expected.safetensors"), metadata=metadata)
    sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}
    print("[%s] %s" % (name, json.dumps(sizes)))


def describe(names):
    """Markdown tables of the saved bundles (for TF_CHECKPOINT.md) and the format facts."""
    for name in names:
        folder = os.path.join(OUT_ROOT, name)
        prefix = tf1.train.latest_checkpoint(folder)
        header, entries, facts = read_bundle(prefix)
        print("## %s: %s" % (name, os.path.relpath(prefix, REPO)))
        print("header (BundleHeaderProto fields):", header)
        print("facts:", json.dumps({k: v for k, v in facts.items()}, default=str))
        reader = tf1.train.NewCheckpointReader(prefix)
        dtypes = reader.get_variable_to_dtype_map()
        shapes = reader.get_variable_to_shape_map()
        kinds = {"generator": 0, "discriminator": 0, "slots": 0, "other": 0}
        print("\n| variable | shape | dtype |\n|---|---|---|")
        for k in sorted(entries):
            if k.endswith("/Adam") or k.endswith("/Adam_1"):
                kinds["slots"] += 1
                continue
            if k.startswith("generator_"):
                kinds["generator"] += 1
                if k.startswith("generator_B/"):
                    print("| `%s` | %s | %s |" % (k, shapes[k], dtypes[k].name))
            elif k.startswith("discriminator_"):
                kinds["discriminator"] += 1
            else:
                kinds["other"] += 1
                print("| `%s` | %s | %s |" % (k, shapes[k], dtypes[k].name))
            e = entries[k]
            assert e["shape"] == shapes[k], k
            assert DT_NAMES[e["dtype"]] == {"float32": "DT_FLOAT"}[dtypes[k].name], k
        print("\ncounts:", kinds, "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(VARIANTS), nargs="*")
    ap.add_argument("--ch", type=int, help="override ch (default: the variant's)")
    ap.add_argument("--img-size", type=int, help="override the image size")
    ap.add_argument("--describe", action="store_true",
                    help="print variable tables and bundle facts of the saved fixtures")
    args = ap.parse_args()
    names = args.only or sorted(VARIANTS)
    if args.describe:
        describe(names)
        return
    print("tensorflow", tf.__version__, "numpy", np.__version__, file=sys.stderr)
    for name in names:
        make_variant(name, args)


if __name__ == "__main__":
    main()
