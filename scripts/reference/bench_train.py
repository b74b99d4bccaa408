#!/usr/bin/env python3
"""PyTorch CPU against `cxrlens bench-backends`, side by side on this machine, in one run.

For each configuration (network, input side, batch) it times, in PyTorch with --threads threads and
in cxrlens (`bench-backends --json --backends …`, flex by default) alternately, --rounds times:
  forward            inference (no autograd), the network's outputs
  forward+backward   training mode, loss = sum of every output, backward into the parameters
  train step         forward+backward and one Adam step (what the trainer does per batch)
and prints the medians, the ratio cxrlens / PyTorch (below 1: cxrlens is faster) and, with more
than one round, the lowest and highest of the rounds' own ratios (how much the machine moved).

PyTorch runs with the glibc malloc settings cxrlens sets for itself: its thresholds and one arena
(--pytorch-malloc default: glibc's own, under which a fresh process pays page faults on every
large buffer).

The architectures are the ones cxrlens ships (ml::lung's U-Net; EfficientNet-Lite0 with the grey
stem cxrlens uses and a 2-class head, optionally with the stem and the first K blocks frozen as
`train --frozen-blocks K`); weights are random, time does not depend on them. Parameter counts are
printed by both sides for comparison.

Run:  scripts/reference/run.sh bench_train.py --cxrlens target/release/cxrlens
      (--threads 2 --rounds 3 --repeat 5; --config lung:128:8 efficientnet:224:16:8 …)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_analysis import UNet, EffUNet, grey_effnet  # noqa: E402

# The batch sizes the shipped models were trained with (models/*/training-report.json): lung 128²
# batch 8, classifier 224² batch 16 with 8 blocks frozen; plus the lung figures (batch 4).
DEFAULT_CONFIGS = [
    "lung:128:4",
    "lung:256:4",
    "lung:128:8",
    "efficientnet:224:16:8",
    "efficientnet:224:16:0",
]


# src/ml/memory.rs: buffers up to 256 MiB from the heap, free memory returned beyond 512 MiB, one
# arena (every thread allocates from the main heap).
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
ARENAS = 1


def parse_config(text):
    parts = text.split(":")
    network, size, batch = parts[0], int(parts[1]), int(parts[2])
    frozen = int(parts[3]) if len(parts) > 3 else 0
    return network, size, batch, frozen


def build(network, frozen):
    if network == "lung":
        net = UNet(16, 4, 3)
    elif network == "lung-efficientnet":
        net = EffUNet(3)
    elif network == "efficientnet":
        net = grey_effnet(2)
        if frozen:
            for p in list(net._conv_stem.parameters()) + list(net._bn0.parameters()):
                p.requires_grad_(False)
            for blk in net._blocks[:frozen]:
                for p in blk.parameters():
                    p.requires_grad_(False)
    else:
        raise SystemExit(f"unknown network {network}")
    return net


def outputs(net, network, x):
    if network.startswith("lung"):
        mask, logits, _ = net(x)
        return mask.sum() + logits.sum()
    logits, _, _ = net(x)
    return logits.sum()


def time_torch(network, size, batch, frozen, repeat):
    torch.manual_seed(0)
    net = build(network, frozen)
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(batch, 1, size, size)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    def forward():
        net.eval()
        with torch.no_grad():
            outputs(net, network, x)

    def forward_backward():
        net.train()
        net.zero_grad(set_to_none=True)
        outputs(net, network, x).backward()

    def step():
        forward_backward()
        opt.step()

    result = {}
    for name, fn in (("forward", forward), ("forward_backward", forward_backward), ("step", step)):
        fn()  # warm-up
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        result[name] = statistics.median(times)
    return params, result


def time_cxrlens(binary, backends, network, size, batch, frozen, repeat, threads):
    cmd = [binary, "bench-backends", "--json", "--backends", backends, "--network", network, "--size", str(size),
           "--batch", str(batch), "--repeat", str(repeat), "--frozen-blocks", str(frozen), "--train-step"]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cxrlens", default="target/release/cxrlens")
    ap.add_argument("--backends", default="flex",
                    help="cxrlens backends, comma-separated (flex, ndarray, wgpu; ndarray is ~20× slower)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median)")
    ap.add_argument("--rounds", type=int, default=2, help="alternated rounds cxrlens / PyTorch (median)")
    ap.add_argument("--config", nargs="*", default=DEFAULT_CONFIGS,
                    help="network:size:batch[:frozen-blocks]")
    ap.add_argument("--pytorch-malloc", choices=("same", "default"), default="same",
                    help="same: run PyTorch with the glibc thresholds cxrlens sets for itself "
                         "(src/ml/memory.rs); default: glibc's defaults")
    args = ap.parse_args()
    if args.pytorch_malloc == "same" and os.environ.get("MALLOC_MMAP_THRESHOLD_") != str(MMAP_THRESHOLD):
        # glibc reads these at start-up only: run this script again with them set. Without them a
        # fresh process maps every buffer over the dynamic threshold anew and takes a page fault on
        # each page (EfficientNet-Lite0 at batch 16: forward 340 ms instead of 140 until the first
        # backward pass), a cost cxrlens avoids with mallopt; the comparison is of the compute.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD),
                   MALLOC_TRIM_THRESHOLD_=str(TRIM_THRESHOLD), MALLOC_ARENA_MAX=str(ARENAS))
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    print(f"PyTorch {torch.__version__} ({args.threads} threads) against {args.cxrlens} "
          f"(RAYON_NUM_THREADS={args.threads}); median of {args.repeat} calls, median of {args.rounds} alternated rounds")
    if args.pytorch_malloc == "same":
        print(f"PyTorch's glibc malloc as cxrlens sets its own: mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
              f"trim threshold {TRIM_THRESHOLD >> 20} MiB, {ARENAS} arena")
    else:
        print("PyTorch's glibc malloc: defaults (cxrlens raises its thresholds, src/ml/memory.rs)")
    table = []
    for cfg in args.config:
        network, size, batch, frozen = parse_config(cfg)
        torch_runs, cx_runs = [], {}
        params = None
        cx_params = {}
        for _ in range(args.rounds):
            for row in time_cxrlens(args.cxrlens, args.backends, network, size, batch, frozen, args.repeat, args.threads):
                cx_runs.setdefault(row["backend"], []).append(row)
                cx_params[row["backend"]] = row["parameters"]
            params, r = time_torch(network, size, batch, frozen, args.repeat)
            torch_runs.append(r)
        label = f"{network} {size}² batch {batch}" + (f", {frozen} blocks frozen" if frozen else "")
        med = {k: statistics.median(r[k] for r in torch_runs) for k in torch_runs[0]}
        print(f"\n{label}: PyTorch {params:,} parameters; cxrlens "
              + ", ".join(f"{b} {p:,}" for b, p in cx_params.items()))
        print(f"  {'':<22}{'forward':>12}{'fwd+bwd':>12}{'train step':>12}{'train img/s':>13}")
        print(f"  {'PyTorch':<22}{1000 * med['forward']:>10.1f}ms{1000 * med['forward_backward']:>10.1f}ms"
              f"{1000 * med['step']:>10.1f}ms{batch / med['step']:>13.1f}")
        for backend, rows in cx_runs.items():
            m = {k: statistics.median(r[k] for r in rows) for k in ("forward", "forward_backward", "step")}
            print(f"  {'cxrlens ' + backend:<22}{1000 * m['forward']:>10.1f}ms{1000 * m['forward_backward']:>10.1f}ms"
                  f"{1000 * m['step']:>10.1f}ms{batch / m['step']:>13.1f}")
            ratio = {k: m[k] / med[k] for k in m}
            print(f"  {'  ratio (÷ PyTorch)':<22}{ratio['forward']:>11.2f}×{ratio['forward_backward']:>11.2f}×"
                  f"{ratio['step']:>11.2f}×")
            if len(rows) == len(torch_runs) > 1:
                # Each round's own ratio (cxrlens then PyTorch, back to back): the spread shows how
                # much the machine moved during the run.
                spread = {k: [r[k] / t[k] for r, t in zip(rows, torch_runs)] for k in m}
                print(f"  {'  per round, min–max':<22}"
                      + "".join(f"{f'{min(v):.2f}–{max(v):.2f}×':>12}" for v in spread.values()))
            table.append((label, backend, m, med, ratio))
    print("\n| configuration | backend | forward | PyTorch | ratio | train step | PyTorch | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for label, backend, m, med, ratio in table:
        print(f"| {label} | {backend} | {1000 * m['forward']:,.0f} ms | {1000 * med['forward']:,.0f} ms | "
              f"{ratio['forward']:.2f}× | {1000 * m['step']:,.0f} ms | {1000 * med['step']:,.0f} ms | {ratio['step']:.2f}× |")


if __name__ == "__main__":
    main()
