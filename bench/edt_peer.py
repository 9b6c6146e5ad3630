#!/usr/bin/env python3
"""scipy.ndimage.distance_transform_edt on one label of a NIfTI label map (the Stylet peer).
Reads NIfTI-1 (.nii / .nii.gz) with the standard library and numpy only. Prints JSON.
Usage: edt_peer.py LABELS.nii.gz LABEL [RUNS]"""
import gzip, json, struct, sys, time

import numpy as np
from scipy import ndimage

path, label = sys.argv[1], int(sys.argv[2])
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
raw = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
dim = struct.unpack("<8h", raw[40:56])
datatype = struct.unpack("<h", raw[70:72])[0]
pixdim = struct.unpack("<8f", raw[76:108])
vox_offset = int(struct.unpack("<f", raw[108:112])[0])
slope, inter = struct.unpack("<2f", raw[112:120])
dtypes = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64, 256: np.int8, 512: np.uint16, 768: np.uint32}
nx, ny, nz = dim[1], dim[2], dim[3]
data = np.frombuffer(raw, dtype=dtypes[datatype], count=nx * ny * nz, offset=vox_offset).astype(np.float64)
if slope not in (0.0, 1.0) or inter != 0.0:
    data = data * (slope or 1.0) + inter
vol = data.reshape((nz, ny, nx))  # x fastest
mask = np.rint(vol) == label
best = float("inf")
for _ in range(runs):
    t = time.perf_counter()
    d = ndimage.distance_transform_edt(~mask, sampling=(pixdim[3], pixdim[2], pixdim[1]))
    best = min(best, time.perf_counter() - t)
print(json.dumps({"dims": [nx, ny, nz], "label": label, "best_s": best, "sum_mm": float(d.sum()), "max_mm": float(d.max())}))
