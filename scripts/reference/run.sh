#!/usr/bin/env bash
# Runs one of the reference / comparison scripts in this folder inside a virtual environment with
# PyTorch (CPU use only), pydicom and scikit-image from PyPI. The environment lives outside the
# repository ($CXRLENS_PYREF, default ~/.cache/cxrlens/pyref) and is made on first use. The
# application never depends on Python: these scripts only produce test fixtures and benchmark
# figures to compare against.
#   scripts/reference/run.sh efficientnet_lite0.py
#   scripts/reference/run.sh bench_analysis.py --size 3000
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${CXRLENS_PYREF:-$HOME/.cache/cxrlens/pyref}
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  # PyPI's torch wheel for Linux; its CUDA libraries are installed but unused on a CPU machine.
  "$venv/bin/pip" install -q "torch==2.15.0" numpy pillow scikit-image
fi
script=$1; shift
exec "$venv/bin/python" "$here/$script" "$@"
