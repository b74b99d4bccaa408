"""Decode time side by side: pydicom 3 + pylibjpeg against `cxrlens inspect --repeat N`.

Both do the same work per file: read the file, decode the first frame, convert it to f32 modality
values (Rescale Slope/Intercept), and compute the statistics the viewer needs (min, max, 1st and
99th percentile from a 4096-bin histogram). Times are medians of N in-process repeats (interpreter
and process start-up excluded on both sides); the two are alternated file by file in one run.

    cargo build --release
    scripts/reference/run.sh dicom_bench.py --bin target/release/cxrlens --repeat 7
"""

import argparse
import os
import re
import statistics
import subprocess
import time
import warnings

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
FILES = [
    "dicom/RG1_UNCR.dcm",
    "dicom/RG1_UNCI.dcm",
    "dicom/RG1_ImplicitVRLittleEndian_dcmtk.dcm",
    "dicom/RG1_ExplicitBigEndian_dcmtk.dcm",
    "dicom/RG1_Deflated_dcmtk.dcm",
    "dicom/RG1_RLE_dcmtk.dcm",
    "dicom/RG1_JPLL-SV1_dcmtk.dcm",
    "dicom/RG1_JLSL_dcmtk.dcm",
    "dicom/RG1_JLSN.dcm",
    "dicom/RG1_J2KR.dcm",
    "dicom/RG1_J2KI.dcm",
    "dicom/rsna-pneumonia_c64d5667-a776-4f95-9e21-bfabafb07740.dcm",
    "dicom-zoo/JPGExtended.dcm",
]


def pydicom_once(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            arr = arr[0]
        values = apply_modality_lut(arr, ds).astype(np.float32)
    lo, hi = float(values.min()), float(values.max())
    hist, _ = np.histogram(values, bins=4096, range=(lo, max(hi, lo + 1e-6)))
    cum = np.cumsum(hist)
    n = cum[-1]
    p01 = np.searchsorted(cum, 0.01 * n)
    p99 = np.searchsorted(cum, 0.99 * n)
    return lo, hi, p01, p99


def pydicom_ms(path, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        pydicom_once(path)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def cxrlens_ms(binary, path, repeat):
    out = subprocess.run(
        [binary, "inspect", path, "--repeat", str(repeat)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    m = re.search(r"decode time:\s+([0-9.]+) ms", out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/cxrlens")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    print(f"pydicom {pydicom.__version__}, numpy {np.__version__}; median of {args.repeat}")
    print("| file | transfer syntax | pydicom ms | cxrlens ms | ratio |")
    print("|---|---|---|---|---|")
    for rel in FILES:
        path = os.path.join(SHARED, rel)
        ts = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID.name)
        pydicom_once(path)  # warm the page cache and imports for both
        c = cxrlens_ms(args.bin, path, args.repeat)
        p = pydicom_ms(path, args.repeat)
        print(f"| {os.path.basename(rel)} | {ts} | {p:.1f} | {c:.1f} | {c / p:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
