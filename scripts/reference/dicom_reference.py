"""Independent decode references for every DICOM file in ../shared/data/dicom and dicom-zoo.

pydicom 3.0.2 with the pylibjpeg plugins (libjpeg, OpenJPEG, RLE) decodes each file; for the first
and last frame it records the modality values (Rescale Slope/Intercept or Modality LUT applied by
pydicom; colour converted to RGB by pydicom — YBR to RGB, palette through its LUT — then to luminance
with Rec. 601 weights, as the app's viewer shows colour to the models) as summary statistics and the
values at an 8×8 grid of pixel positions; for colour frames also the R, G, B values at the same
grid positions (what the viewer shows). Files pydicom cannot decode, or that hold no pixels, are
recorded with the reason. tests/decode.rs compares cxrlens's decode with this file.

    scripts/reference/run.sh dicom_reference.py > tests/fixtures/dicom_reference.json
"""

import json
import os
import sys
import warnings

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, apply_modality_lut

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
FOLDERS = ["dicom", "dicom-zoo"]
GRID = 8


def colour(frame, ds):
    """R, G, B values of a colour frame (palette through its LUT), or None for a grey one."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        return apply_color_lut(frame, ds).astype(np.float64)
    if frame.ndim == 3:
        return frame.astype(np.float64)
    return None


def luminance(frame, ds):
    rgb = colour(frame, ds)
    if rgb is not None:
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return apply_modality_lut(frame, ds).astype(np.float64)


def summary(frame, ds):
    values = luminance(frame, ds)
    rgb = colour(frame, ds)
    rows, cols = values.shape
    grid = []
    rgb_grid = []
    for i in range(GRID):
        for j in range(GRID):
            r = int((i + 0.5) * rows / GRID)
            c = int((j + 0.5) * cols / GRID)
            grid.append([r, c, float(values[r, c])])
            if rgb is not None:
                rgb_grid.append([r, c] + [float(v) for v in rgb[r, c, :3]])
    out = {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "grid": grid,
    }
    if rgb is not None:
        out["rgb_grid"] = rgb_grid
        out["rgb_is_grey"] = bool(
            np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])
        )
    return out


def windows(ds):
    """The file's windows as [centre, width] pairs (several values are alternative windows)."""
    def values(keyword):
        v = ds.get(keyword)
        if v is None:
            return []
        return [float(x) for x in (v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v])]

    return [[c, w] for c, w in zip(values("WindowCenter"), values("WindowWidth"))]


def reference(path):
    entry = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as e:  # noqa: BLE001 - recorded, not hidden
            return {"pydicom": f"read error: {type(e).__name__}"}
        if "PixelData" not in ds:
            return {"pydicom": "no pixel data"}
        try:
            arr = ds.pixel_array
        except Exception as e:  # noqa: BLE001
            return {"pydicom": f"decode error: {type(e).__name__}"}
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    if frames > 1:
        first, last = arr[0], arr[-1]
    else:
        first, last = arr, None
    entry["pydicom"] = "decoded"
    entry["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in ds.file_meta else ""
    entry["rows"] = int(ds.Rows)
    entry["columns"] = int(ds.Columns)
    entry["frames"] = frames
    entry["samples_per_pixel"] = samples
    entry["photometric"] = str(ds.get("PhotometricInterpretation", ""))
    entry["windows"] = windows(ds)
    entry["first"] = summary(first, ds)
    if last is not None:
        entry["last"] = summary(last, ds)
    return entry


def main():
    out = {
        "generator": "scripts/reference/dicom_reference.py",
        "pydicom": pydicom.__version__,
        "files": {},
    }
    for folder in FOLDERS:
        base = os.path.join(SHARED, folder)
        for name in sorted(os.listdir(base)):
            if not name.endswith(".dcm"):
                continue
            out["files"][f"{folder}/{name}"] = reference(os.path.join(base, name))
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
