#!/usr/bin/env python3
"""Independent reference for cxrlens' EfficientNet-Lite0 import (tests/fixtures/efficientnet_lite0_reference.json).

The network is written here in plain PyTorch from the published description (Tan & Le 2019; the
Lite variant: no squeeze-excitation, ReLU6, fixed stem and head) in the tensor layout of the
state dict in ../shared/pretrained/efficientnet-lite0 (lukemelas EfficientNet-PyTorch names,
TensorFlow "SAME" padding, batch-norm epsilon 1e-3, as the weights were trained in TensorFlow).
It loads that state dict strictly, runs it on a fixed grey input that the Rust test rebuilds
exactly (integers / 125), and writes the logits, the pooled features and per-stage activation
summaries. It also prints the top-5 ImageNet classes of two natural photographs bundled with
scikit-image (a tabby cat, a cup of coffee) as a sanity check that the padding and the
normalisation ((x - 127) / 128) are the ones the weights expect.

Run: scripts/reference/run.sh efficientnet_lite0.py   (makes a virtual environment with PyTorch;
the application never depends on Python).
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("CXRLENS_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
WEIGHTS = os.path.join(SHARED, "..", "pretrained", "efficientnet-lite0", "efficientnet-lite0-57934424.pth")
OUT = os.path.join(REPO, "tests", "fixtures", "efficientnet_lite0_reference.json")

# (expand ratio, kernel, stride, channels in, channels out, repeats) — EfficientNet-B0 = Lite0 stages.
STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]
EPS = 1e-3


def same_pad(x, k, s):
    """TensorFlow SAME padding (extra pixel at the bottom/right)."""
    ih, iw = x.shape[-2:]
    oh, ow = -(-ih // s), -(-iw // s)
    ph = max((oh - 1) * s + k - ih, 0)
    pw = max((ow - 1) * s + k - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class SameConv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(same_pad(x, self.kernel_size[0], self.stride[0]), self.weight, None,
                        self.stride, 0, 1, self.groups)


class Block(nn.Module):
    def __init__(self, expand, k, s, cin, cout):
        super().__init__()
        mid = cin * expand
        self.expand = expand
        self.skip = s == 1 and cin == cout
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=EPS)
        self._depthwise_conv = SameConv(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=EPS)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=EPS)

    def forward(self, x):
        h = x
        if self.expand != 1:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=EPS)
        blocks = []
        for expand, k, s, cin, cout, repeats in STAGES:
            for r in range(repeats):
                blocks.append(Block(expand, k, s if r == 0 else 1, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=EPS)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x, taps=None):
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for i, b in enumerate(self._blocks):
            h = b(h)
            if taps is not None:
                taps.append(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        pooled = h.mean(dim=(2, 3))
        return self._fc(pooled), pooled, h


def fixed_input(size):
    """The grey test input, rebuilt exactly by the Rust test: ((i−s/2)² + 3(j−s/3)²) mod 251 / 125 − 1."""
    i = np.arange(size)[:, None]
    j = np.arange(size)[None, :]
    v = (((i - size // 2) ** 2 + 3 * (j - size // 3) ** 2) % 251).astype(np.float64) / 125.0 - 1.0
    return v.astype(np.float32)


def main():
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True)
    net = EfficientNetLite0().eval()
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = net.load_state_dict(state, strict=True), None
    del missing, unexpected

    try:
        from skimage import data
        from PIL import Image
        for name, img in [("chelsea (tabby cat)", data.chelsea()), ("coffee", data.coffee())]:
            im = Image.fromarray(img).resize((224, 224), Image.BILINEAR)
            x = (torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)[None] - 127.0) / 128.0
            with torch.no_grad():
                logits, _, _ = net(x)
            top = torch.topk(logits.softmax(1), 5)
            print(f"{name}: top-5 ImageNet indices {top.indices[0].tolist()} "
                  f"p {[round(p, 3) for p in top.values[0].tolist()]}")
    except ImportError:
        print("scikit-image not installed: natural-image sanity check skipped")

    cases = []
    for size in (224, 128):
        grey = fixed_input(size)
        x = torch.from_numpy(grey)[None, None].repeat(1, 3, 1, 1)
        taps = []
        with torch.no_grad():
            logits, pooled, head = net(x, taps)
        cases.append({
            "size": size,
            "logits": [float(v) for v in logits[0]],
            "pooled": [float(v) for v in pooled[0]],
            "head_map_shape": list(head.shape),
            # Mean and mean |x| of every block's output: locates a disagreement to a block.
            "block_mean": [float(t.mean()) for t in taps],
            "block_abs_mean": [float(t.abs().mean()) for t in taps],
        })
        print(f"size {size}: top-5 logits {torch.topk(logits, 5).indices[0].tolist()}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({
            "producer": "scripts/reference/efficientnet_lite0.py",
            "torch": torch.__version__,
            "weights": os.path.basename(WEIGHTS),
            "input": "grey, rebuilt by fixed_input(size); repeated to 3 channels here, 1 channel with the stem summed over RGB in cxrlens",
            "cases": cases,
        }, f, indent=0)
    print(f"wrote {os.path.relpath(OUT, REPO)}")


if __name__ == "__main__":
    sys.exit(main())
