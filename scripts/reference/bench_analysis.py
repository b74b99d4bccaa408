#!/usr/bin/env python3
"""The analysis `cxrlens bench-analysis` times, done in PyTorch on the same machine, per step:
preprocess a size×size radiograph to each network's grid (area averaging), the lung U-Net
(the shipped bundle's config.json: on an EfficientNet-Lite0 encoder when it says so, else the plain
U-Net; sigmoid; its gate's Mahalanobis distance), the mask back to image size (bilinear),
EfficientNet-Lite0 features + logits + the Mahalanobis distance of the gate features (block 11's
output average-pooled to 2×2, 448 values), Grad-CAM (backward from the class logit to the head activations) and the
heatmap back to image size. Weights are random (time does not depend on them); PyTorch is used
with the same number of threads.

Run: scripts/reference/run.sh bench_analysis.py --size 3000 --threads 2 --repeat 5
It prints the table `cxrlens bench-analysis` prints, for a side-by-side comparison.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from efficientnet_lite0 import EfficientNetLite0  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class DoubleConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """The lung network of ml::lung: DoubleConv encoder, max-pool, transposed-conv decoder with skips,
    a 1×1 mask head and a GAP + linear class head on the bottleneck."""

    def __init__(self, base, depth, classes):
        super().__init__()
        w = [base << i for i in range(depth + 1)]
        self.enc = nn.ModuleList()
        cin = 1
        for c in w[:depth]:
            self.enc.append(DoubleConv(cin, c))
            cin = c
        self.bottleneck = DoubleConv(w[depth - 1], w[depth])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[l + 1], w[l], 2, stride=2) for l in reversed(range(depth))])
        self.dec = nn.ModuleList([DoubleConv(2 * w[l], w[l]) for l in reversed(range(depth))])
        self.mask = nn.Conv2d(w[0], 1, 1)
        self.cls = nn.Linear(w[depth], classes)

    def forward(self, x):
        skips = []
        for e in self.enc:
            x = e(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        pooled = x.mean((2, 3))
        logits = self.cls(pooled)
        for up, dec, s in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), s], 1))
        return self.mask(x), logits, pooled


TAPS = [0, 2, 4, 10, 15]
TAP_CHANNELS = [16, 24, 40, 112, 320]
DECODER = [96, 48, 32, 24, 16]


def grey_effnet(classes):
    from efficientnet_lite0 import same_pad

    class GreyStem(nn.Conv2d):
        def forward(self, x):
            return F.conv2d(same_pad(x, 3, 2), self.weight, None, 2)

    net = EfficientNetLite0()
    net._conv_stem = GreyStem(1, 32, 3, stride=2, bias=False)  # grey stem, as in cxrlens
    net._fc = nn.Linear(1280, classes)
    return net


class EffUNet(nn.Module):
    """ml::lung with the EfficientNet-Lite0 encoder: skips are the outputs of blocks 0, 2, 4, 10
    (strides 2–16) and the input image; block 15 (stride 32) is the bottleneck; each decoder level is
    a 2×2 transposed convolution, concatenation with the skip and a double convolution."""

    def __init__(self, classes):
        super().__init__()
        self.backbone = grey_effnet(1)
        skips = [TAP_CHANNELS[3], TAP_CHANNELS[2], TAP_CHANNELS[1], TAP_CHANNELS[0], 1]
        c = TAP_CHANNELS[4]
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        for w, sk in zip(DECODER, skips):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.dec.append(DoubleConv(w + sk, w))
            c = w
        self.mask = nn.Conv2d(c, 1, 1)
        self.cls = nn.Linear(TAP_CHANNELS[4], classes)

    def forward(self, x):
        b = self.backbone
        h = F.relu6(b._bn0(b._conv_stem(x)))
        taps = []
        for i, blk in enumerate(b._blocks[: TAPS[-1] + 1]):
            h = blk(h)
            if i in TAPS:
                taps.append(h)
        bottom = taps.pop()
        gate = F.adaptive_avg_pool2d(taps[-1], 2).flatten(1)
        logits = self.cls(bottom.mean((2, 3)))
        h = bottom
        for up, dec, s in zip(self.up, self.dec, reversed([x] + taps)):
            h = dec(torch.cat([up(h), s], 1))
        return self.mask(h), logits, gate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--lung", default=os.path.join(REPO, "models", "lung-unet", "config.json"))
    ap.add_argument("--classifier-size", type=int, default=224)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = json.load(open(args.lung))
    if cfg.get("encoder") == "efficientnet-lite0":
        lung = EffUNet(len(cfg["class_names"])).eval()
        lung_gate = 448
    else:
        lung = UNet(cfg["base_channels"], cfg["depth"], len(cfg["class_names"])).eval()
        lung_gate = cfg["base_channels"] << cfg["depth"]
    effnet = grey_effnet(2).eval()

    def mahalanobis(v):
        n = v.shape[-1]
        precision = torch.eye(n) + 0.01 * torch.ones(n, n)
        d = v[0] - torch.zeros(n)
        return (d @ precision @ d).sqrt().item()
    image = torch.rand(1, 1, args.size, args.size)
    s_lung, s_cls = cfg["input_size"], args.classifier_size
    # The robust range comes with the decoded image in cxrlens (not part of the analysis).
    lo, hi = torch.quantile(image.flatten()[:: max(1, image.numel() // 1_000_000)], torch.tensor([0.01, 0.99]))

    def run():
        t = {}
        t0 = time.perf_counter()
        with torch.no_grad():
            x_lung = (F.adaptive_avg_pool2d(image, s_lung) - lo) / (hi - lo) * 2 - 1
            t[f"preprocess to {s_lung}²"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            mask_logits, _, gate = lung(x_lung.clamp(-1, 1))
            mask = torch.sigmoid(mask_logits)
            assert gate.shape[-1] == lung_gate
            mahalanobis(gate)
            t["lung network and gate"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            F.interpolate(mask, size=(args.size, args.size), mode="bilinear", align_corners=False)
            t["lung mask to image space"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            x_cls = (F.adaptive_avg_pool2d(image, s_cls) - lo) / (hi - lo) * 2 - 1
            t[f"preprocess to {s_cls}²"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            taps = []
            _, pooled, head = effnet(x_cls.clamp(-1, 1), taps)
            mahalanobis(F.adaptive_avg_pool2d(taps[11], 2).flatten(1))
        t["classifier and gate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        feats = head.detach().requires_grad_(True)
        logit = effnet._fc(feats.mean((2, 3)))[0, 1]
        (g,) = torch.autograd.grad(logit, feats)
        cam = F.relu((g.mean((2, 3), keepdim=True) * feats).sum(1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=(s_cls, s_cls), mode="bilinear", align_corners=False)
        cam = cam / cam.max().clamp_min(1e-12)
        t["Grad-CAM"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        F.interpolate(cam, size=(args.size, args.size), mode="bilinear", align_corners=False)
        t["heatmap to image space"] = time.perf_counter() - t0
        return t

    run()
    runs = [run() for _ in range(args.repeat)]
    print(f"PyTorch {torch.__version__}, {args.threads} threads, {args.size}×{args.size}, median of {args.repeat} after one warm-up")
    total = []
    for k in runs[0]:
        print(f"  {k:<40} {1000 * statistics.median(r[k] for r in runs):8.1f} ms")
    for r in runs:
        total.append(sum(r.values()))
    print(f"  {'total':<40} {1000 * statistics.median(total):8.1f} ms")


if __name__ == "__main__":
    main()
