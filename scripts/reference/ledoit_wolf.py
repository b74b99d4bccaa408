#!/usr/bin/env python3
"""Independent reference for the out-of-distribution gate (src/ml/ood.rs): scikit-learn's
Ledoit–Wolf covariance and Mahalanobis distances on a fixed data set, written to
tests/fixtures/ledoit_wolf_reference.json.

Run: scripts/reference/run.sh ledoit_wolf.py   (needs scikit-learn in the reference environment:
     $CXRLENS_PYREF/bin/pip install scikit-learn)
"""
import json
import os

import numpy as np
from sklearn.covariance import LedoitWolf

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures", "ledoit_wolf_reference.json"))


def data(n, d):
    """Rows the Rust test rebuilds exactly: ((7 i + 3 j² + i j) mod 17) / 4 − 2, plus a correlated column."""
    i = np.arange(n)[:, None]
    j = np.arange(d)[None, :]
    x = (((7 * i + 3 * j * j + i * j) % 17).astype(np.float64)) / 4.0 - 2.0
    x[:, -1] = 0.5 * x[:, 0] + 0.25 * x[:, 1]  # exactly dependent: the sample covariance is singular
    return x.astype(np.float32)


def main():
    x = data(30, 6)
    lw = LedoitWolf().fit(x.astype(np.float64))
    queries = data(35, 6)[30:] + np.float32(0.5)
    d2 = lw.mahalanobis(queries.astype(np.float64))
    with open(OUT, "w") as f:
        json.dump({
            "producer": "scripts/reference/ledoit_wolf.py (scikit-learn LedoitWolf)",
            "n": 30, "d": 6,
            "shrinkage": float(lw.shrinkage_),
            "queries": queries.tolist(),
            "distances": [float(np.sqrt(v)) for v in d2],
        }, f, indent=1)
    print(f"shrinkage {lw.shrinkage_:.6f}; distances {np.sqrt(d2)}; wrote {OUT}")


if __name__ == "__main__":
    main()
