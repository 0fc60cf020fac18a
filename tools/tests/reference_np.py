"""Straightforward numpy forward passes and random state dicts, independent of the exporter.

The reference deliberately does things the slow, obvious way (BatchNorm applied
separately, padding computed from the TensorFlow formula, explicit sliding windows), so a
wiring, folding or padding mistake in the exported graph shows up as a mismatch. The
layer tables here are written out again rather than imported from export_backbone.py.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# ---------------------------------------------------------------------------------------
# Layers (float64, NCHW)
# ---------------------------------------------------------------------------------------


def conv2d(x, w, b=None, stride=1, pads=(0, 0, 0, 0), groups=1):
    """pads = (top, bottom, left, right)."""
    top, bottom, left, right = pads
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    batch, cin = x.shape[:2]
    cout, cin_g, kh, kw = w.shape
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    oh, ow = win.shape[2:4]
    win = win.reshape(batch, groups, cin // groups, oh, ow, kh, kw)
    wg = w.reshape(groups, cout // groups, cin_g, kh, kw)
    y = np.einsum("bgchwij,gocij->bgohw", win, wg, optimize=True).reshape(batch, cout, oh, ow)
    return y if b is None else y + b[None, :, None, None]


def batchnorm(x, sd, prefix, eps):
    g, b, m, v = (sd[f"{prefix}.{p}"] for p in ("weight", "bias", "running_mean", "running_var"))
    shape = (1, -1, 1, 1)
    return (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + eps) * g.reshape(shape) + b.reshape(shape)


def relu(x):
    return np.maximum(x, 0)


def relu6(x):
    return np.clip(x, 0, 6)


def maxpool3x3s2p1(x):
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    return sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-1, -2))


def classifier(x, weight, bias):
    return x.mean(axis=(2, 3)) @ weight.T + bias


def tf_same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'SAME': output ceil(n/s), total padding split with the extra pixel after."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------------------------------
# Random state dicts with the real key layouts
# ---------------------------------------------------------------------------------------


def _conv(sd, rng, name, cout, cin, k, bias=False):
    # He-normal keeps activations in a sane range through deep random networks.
    std = math.sqrt(2.0 / (cin * k * k))
    sd[f"{name}.weight"] = (rng.standard_normal((cout, cin, k, k), dtype=np.float32) * std)
    if bias:
        sd[f"{name}.bias"] = rng.standard_normal(cout, dtype=np.float32) * 0.1


def _bn(sd, rng, name, c):
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.0, c).astype(np.float32)
    sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
    sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype(np.float32)
    sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(1000, np.int64)  # must be ignored


def _fc(sd, rng, name, cout, cin):
    sd[f"{name}.weight"] = rng.standard_normal((cout, cin), dtype=np.float32) / math.sqrt(cin)
    sd[f"{name}.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)


# torchvision: (block type, blocks per layer, width_per_group)
TORCHVISION = {
    "resnet18": ("basic", (2, 2, 2, 2), 64),
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), 128),
}


def random_resnet(name: str, seed: int = 0) -> dict:
    kind, layers, wpg = TORCHVISION[name]
    rng = np.random.default_rng(seed)
    expansion = 4 if kind == "bottleneck" else 1
    sd = {}
    _conv(sd, rng, "conv1", 64, 3, 7)
    _bn(sd, rng, "bn1", 64)
    cin = 64
    for li, n in enumerate(layers):
        planes = 64 * 2**li
        for bi in range(n):
            p = f"layer{li + 1}.{bi}"
            stride = 2 if li > 0 and bi == 0 else 1
            cout = planes * expansion
            if kind == "basic":
                convs = [(planes, cin, 3), (planes, planes, 3)]
            else:
                width = planes * wpg // 64
                convs = [(width, cin, 1), (width, width, 3), (cout, width, 1)]
            for ci, (o, i, k) in enumerate(convs, 1):
                _conv(sd, rng, f"{p}.conv{ci}", o, i, k)
                _bn(sd, rng, f"{p}.bn{ci}", o)
            if stride != 1 or cin != cout:
                _conv(sd, rng, f"{p}.downsample.0", cout, cin, 1)
                _bn(sd, rng, f"{p}.downsample.1", cout)
            cin = cout
    _fc(sd, rng, "fc", 1000, cin)
    return sd


# (expand, kernel, stride, out channels), written out per block
LITE0 = [
    (1, 3, 1, 16), (6, 3, 2, 24), (6, 3, 1, 24), (6, 5, 2, 40), (6, 5, 1, 40),
    (6, 3, 2, 80), (6, 3, 1, 80), (6, 3, 1, 80), (6, 5, 1, 112), (6, 5, 1, 112),
    (6, 5, 1, 112), (6, 5, 2, 192), (6, 5, 1, 192), (6, 5, 1, 192), (6, 5, 1, 192),
    (6, 3, 1, 320),
]
# Lite1/Lite2 as the checkpoints have them, written out per stage as
# (expand, kernel, first stride, out channels, blocks): Lite1 is Lite0 deeper (21 blocks),
# Lite2 is Lite1 with wider stages 2-6.
LITE1_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 40, 3), (6, 3, 2, 80, 4),
                (6, 5, 1, 112, 4), (6, 5, 2, 192, 5), (6, 3, 1, 320, 1)]
LITE2_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 48, 3), (6, 3, 2, 88, 4),
                (6, 5, 1, 120, 4), (6, 5, 2, 208, 5), (6, 3, 1, 352, 1)]


def _per_block(stages):
    return [(e, k, s if j == 0 else 1, c) for e, k, s, c, n in stages for j in range(n)]


LITE1 = _per_block(LITE1_STAGES)
LITE2 = _per_block(LITE2_STAGES)
# block index of f1, f2, f3: the last block at strides 4, 8 and 16
LITE_FEATURES = {"efficientnet_lite0": (2, 4, 10), "efficientnet_lite1": (3, 6, 14),
                 "efficientnet_lite2": (3, 6, 14)}
LITE_BLOCKS = {"efficientnet_lite0": LITE0, "efficientnet_lite1": LITE1,
               "efficientnet_lite2": LITE2}


def random_lite(name: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    sd = {}
    _conv(sd, rng, "_conv_stem", 32, 3, 3)
    _bn(sd, rng, "_bn0", 32)
    cin = 32
    for i, (e, k, _s, cout) in enumerate(LITE_BLOCKS[name]):
        p, hidden = f"_blocks.{i}", cin * e
        if e != 1:
            _conv(sd, rng, f"{p}._expand_conv", hidden, cin, 1)
            _bn(sd, rng, f"{p}._bn0", hidden)
        _conv(sd, rng, f"{p}._depthwise_conv", hidden, 1, k)
        _bn(sd, rng, f"{p}._bn1", hidden)
        _conv(sd, rng, f"{p}._project_conv", cout, hidden, 1)
        _bn(sd, rng, f"{p}._bn2", cout)
        cin = cout
    _conv(sd, rng, "_conv_head", 1280, cin, 1)
    _bn(sd, rng, "_bn1", 1280)
    _fc(sd, rng, "_fc", 1000, 1280)
    return sd


def random_lite0(seed: int = 0) -> dict:
    return random_lite("efficientnet_lite0", seed)


# ---------------------------------------------------------------------------------------
# Forward passes
# ---------------------------------------------------------------------------------------


def _f64(sd):
    return {k: v.astype(np.float64) for k, v in sd.items()}


def resnet_forward(name: str, sd: dict, x: np.ndarray, classifier_too: bool = False) -> dict:
    kind, layers, wpg = TORCHVISION[name]
    sd = _f64(sd)
    eps = 1e-5

    def cbr(h, conv, bn, stride, pad, act=True):
        h = batchnorm(conv2d(h, sd[f"{conv}.weight"], stride=stride, pads=(pad,) * 4), sd, bn, eps)
        return relu(h) if act else h

    h = maxpool3x3s2p1(cbr(x.astype(np.float64), "conv1", "bn1", 2, 3))
    out = {}
    for li, n in enumerate(layers if classifier_too else layers[:3]):
        for bi in range(n):
            p = f"layer{li + 1}.{bi}"
            stride = 2 if li > 0 and bi == 0 else 1
            if kind == "basic":
                y = cbr(h, f"{p}.conv1", f"{p}.bn1", stride, 1)
                y = cbr(y, f"{p}.conv2", f"{p}.bn2", 1, 1, act=False)
            else:
                y = cbr(h, f"{p}.conv1", f"{p}.bn1", 1, 0)
                y = cbr(y, f"{p}.conv2", f"{p}.bn2", stride, 1)
                y = cbr(y, f"{p}.conv3", f"{p}.bn3", 1, 0, act=False)
            if f"{p}.downsample.0.weight" in sd:
                h = cbr(h, f"{p}.downsample.0", f"{p}.downsample.1", stride, 0, act=False)
            h = relu(y + h)
        if li < 3:
            out[f"f{li + 1}"] = h
    if classifier_too:
        out["logits"] = classifier(h, sd["fc.weight"], sd["fc.bias"])
    return out


def _same_conv(h, w, stride, groups=1):
    k = w.shape[-1]
    pads = tf_same_pads(h.shape[2], k, stride) + tf_same_pads(h.shape[3], k, stride)
    return conv2d(h, w, stride=stride, pads=pads, groups=groups)


def lite_forward(name: str, sd: dict, x: np.ndarray, classifier_too: bool = False) -> dict:
    blocks, feature_blocks = LITE_BLOCKS[name], LITE_FEATURES[name]
    sd = _f64(sd)
    eps = 1e-3
    h = relu6(batchnorm(_same_conv(x.astype(np.float64), sd["_conv_stem.weight"], 2), sd, "_bn0", eps))
    out, cin = {}, 32
    last = len(blocks) - 1 if classifier_too else feature_blocks[-1]
    for i, (e, _k, s, cout) in enumerate(blocks[:last + 1]):
        p, inp = f"_blocks.{i}", h
        if e != 1:
            h = relu6(batchnorm(conv2d(h, sd[f"{p}._expand_conv.weight"]), sd, f"{p}._bn0", eps))
        h = relu6(batchnorm(_same_conv(h, sd[f"{p}._depthwise_conv.weight"], s, groups=h.shape[1]),
                            sd, f"{p}._bn1", eps))
        h = batchnorm(conv2d(h, sd[f"{p}._project_conv.weight"]), sd, f"{p}._bn2", eps)
        if s == 1 and cin == cout:
            h = h + inp
        cin = cout
        if i in feature_blocks:
            out[f"f{feature_blocks.index(i) + 1}"] = h
    if classifier_too:
        h = relu6(batchnorm(conv2d(h, sd["_conv_head.weight"]), sd, "_bn1", eps))
        out["logits"] = classifier(h, sd["_fc.weight"], sd["_fc.bias"])
    return out


def lite0_forward(sd: dict, x: np.ndarray, classifier_too: bool = False) -> dict:
    return lite_forward("efficientnet_lite0", sd, x, classifier_too)
