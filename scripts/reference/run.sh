#!/usr/bin/env bash
# Runs one of the reference / comparison scripts in this folder inside a virtual environment with
# PyTorch (CPU use only), pydicom and scikit-image from PyPI. The environment lives outside the
# repository ($CXRLENS_PYREF, default ~/.cache/cxrlens/pyref) and is made on first use. The
# application never depends on Python: these scripts only produce test fixtures and benchmark
# figures to compare against.
#   scripts/reference/run.sh efficientnet_lite0.py
#   scripts/reference/run.sh bench_analysis.py --size 3000
#   scripts/reference/run.sh dicom_reference.py      (pydicom + pylibjpeg only, no PyTorch)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
script=$1; shift
if [[ $script == dicom_* ]]; then
  # pydicom 3 with the pylibjpeg plugins (libjpeg, OpenJPEG, RLE): what a Python user decodes with.
  venv=${CXRLENS_PYDICOM:-$HOME/.cache/cxrlens/pydicom}
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "pydicom==3.0.2" "pylibjpeg==2.1.0" "pylibjpeg-libjpeg==2.3.0" \
      "pylibjpeg-openjpeg==2.5.0" "pylibjpeg-rle==2.2.0" numpy
  fi
  exec "$venv/bin/python" "$here/$script" "$@"
fi
venv=${CXRLENS_PYREF:-$HOME/.cache/cxrlens/pyref}
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  # PyPI's torch wheel for Linux; its CUDA libraries are installed but unused on a CPU machine.
  "$venv/bin/pip" install -q "torch==2.15.0" numpy pillow scikit-image
fi
exec "$venv/bin/python" "$here/$script" "$@"
