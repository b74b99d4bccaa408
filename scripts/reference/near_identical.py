#!/usr/bin/env python3
"""Independent reference for src/ml/near_identical.rs: which radiographs of a dataset folder are
listed twice (the same image re-encoded or rescaled, under another id), found with Pillow's box
(area) resampling to 32 x 32 and numpy's Pearson correlation, and how closely the two human lung
masks of each such pair agree (Dice over the pixels neither mask marks "ignore" = 127).

Writes tests/fixtures/near_identical_ieee8023.json (ids, patient ids, r, mask Dice).

Run: scripts/reference/run.sh near_identical.py [--data ../shared/data/cxr-ieee8023]
     (any Python with numpy and Pillow will do)
"""
import argparse
import csv
import json
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(REPO, "tests", "fixtures", "near_identical_ieee8023.json")
THRESHOLD = 0.995


def fingerprint(path):
    a = np.asarray(Image.open(path).convert("L").resize((32, 32), Image.BOX), np.float64).ravel()
    a = a - a.mean()
    return a / np.linalg.norm(a)


def mask_dice(pa, pb):
    a = np.asarray(Image.open(pa).convert("L"))
    b = np.asarray(Image.open(pb).convert("L"))
    if a.shape != b.shape:
        return None
    keep = (a != 127) & (b != 127)
    la, lb = (a > 127) & keep, (b > 127) & keep
    return float(2 * (la & lb).sum() / max(la.sum() + lb.sum(), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "cxr-ieee8023"))
    args = ap.parse_args()
    root = os.path.normpath(args.data)
    rows = list(csv.DictReader(open(os.path.join(root, "labels.csv"))))
    f = np.array([fingerprint(os.path.join(root, r["image"])) for r in rows])
    c = f @ f.T
    iu = np.triu_indices(len(rows), 1)
    v = c[iu]
    order = np.argsort(-v)
    pairs = []
    for k in order:
        if v[k] < THRESHOLD:
            highest_below = float(v[k])
            break
        i, j = int(iu[0][k]), int(iu[1][k])
        a, b = rows[i], rows[j]
        d = None
        if a.get("mask") and b.get("mask"):
            d = mask_dice(os.path.join(root, a["mask"]), os.path.join(root, b["mask"]))
        pairs.append({"a": a["id"], "b": b["id"], "patient_a": a["patient_id"],
                      "patient_b": b["patient_id"], "r": float(v[k]), "mask_dice": d})
    out = {"data": "cxr-ieee8023", "images": len(rows), "threshold": THRESHOLD,
           "highest_r_below_threshold": highest_below, "pairs": pairs}
    with open(OUT, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    for p in pairs:
        print(p)
    print("highest r below the threshold:", highest_below, "->", OUT)


if __name__ == "__main__":
    main()
