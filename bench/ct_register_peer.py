#!/usr/bin/env python3
"""Peer benchmark for `stylet register --ct DIR --robot-fiducials FILE`: the same steps with pydicom,
NumPy and scipy.ndimage. Load a DICOM series (sorted by position along the slice normal, rescaled to
HU), threshold, 6-connected components, size and elongation filters, HU-weighted centroids, label-free
matching to the frame (triangle hypotheses), Umeyama. Prints the transform and the time of each step.

Usage: ct_register_peer.py DICOM_DIR MARKER_FRAME.txt   (pip install pydicom numpy scipy)
"""
import itertools
import json
import sys
import time

import numpy as np
import pydicom
from scipy import ndimage

THRESHOLD_HU, DIAMETER_MM, VOLUME_FRACTION, MAX_ELONGATION, TOL_MM = 1800.0, 4.0, (0.3, 2.5), 2.0, 2.0


def load(folder):
    import os
    ds = [pydicom.dcmread(os.path.join(folder, f)) for f in sorted(os.listdir(folder))]
    iop = np.array(ds[0].ImageOrientationPatient, dtype=float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    ds.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    vol = np.stack([d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds])
    ps = [float(x) for x in ds[0].PixelSpacing]
    p0 = np.array(ds[0].ImagePositionPatient, dtype=float)
    p1 = np.array(ds[-1].ImagePositionPatient, dtype=float)
    step = (p1 - p0) / (len(ds) - 1)
    return vol, p0, row, col, step, (ps[1], ps[0])


def detect(vol, p0, row, col, step, spacing):
    mask = vol >= THRESHOLD_HU
    labels, n = ndimage.label(mask)  # 6-connected
    voxel_mm3 = spacing[0] * spacing[1] * np.linalg.norm(step)
    sphere = np.pi / 6 * DIAMETER_MM ** 3
    counts = np.bincount(labels.ravel())
    keep = [i for i in range(1, n + 1) if VOLUME_FRACTION[0] * sphere <= counts[i] * voxel_mm3 <= VOLUME_FRACTION[1] * sphere]
    weights = np.where(mask, vol - THRESHOLD_HU + 1.0, 0.0)
    objects = ndimage.find_objects(labels)
    centres = []
    for i in keep:
        sl = objects[i - 1]
        k, j, ii = np.nonzero(labels[sl] == i)
        k, j, ii = k + sl[0].start, j + sl[1].start, ii + sl[2].start
        pts = p0 + np.outer(ii * spacing[0], row) + np.outer(j * spacing[1], col) + np.outer(k, step)
        w = weights[k, j, ii]
        c = (pts * w[:, None]).sum(0) / w.sum()
        cov = np.cov((pts - pts.mean(0)).T, bias=True) + np.diag([spacing[0] ** 2, spacing[1] ** 2, np.linalg.norm(step) ** 2]) / 12
        e = np.sqrt(np.clip(np.linalg.eigvalsh(cov), 1e-12, None))
        if e.max() / e.min() <= MAX_ELONGATION:
            centres.append(c)
    return np.array(centres)


def umeyama(src, dst):
    ms, md = src.mean(0), dst.mean(0)
    h = (dst - md).T @ (src - ms)
    u, _, vt = np.linalg.svd(h)
    d = np.diag([1, 1, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    return r, md - r @ ms


def match(det, model):
    best = None
    for a, b, c in itertools.combinations(range(len(model)), 3):
        tri = model[[a, b, c]]
        sides = [np.linalg.norm(tri[0] - tri[1]), np.linalg.norm(tri[1] - tri[2]), np.linalg.norm(tri[0] - tri[2])]
        for i, j, k in itertools.permutations(range(len(det)), 3):
            d = det[[i, j, k]]
            if (abs(np.linalg.norm(d[0] - d[1]) - sides[0]) > 2 * TOL_MM or abs(np.linalg.norm(d[1] - d[2]) - sides[1]) > 2 * TOL_MM
                    or abs(np.linalg.norm(d[0] - d[2]) - sides[2]) > 2 * TOL_MM):
                continue
            r, t = umeyama(tri, d)
            mapped = model @ r.T + t
            dist = np.linalg.norm(mapped[:, None, :] - det[None, :, :], axis=2)
            pairs = [(int(dist[m].argmin()), m) for m in range(len(model)) if dist[m].min() <= TOL_MM]
            if best is None or len(pairs) > len(best):
                best = pairs
    return best


def main():
    t0 = time.perf_counter()
    vol, p0, row, col, step, spacing = load(sys.argv[1])
    t1 = time.perf_counter()
    det = detect(vol, p0, row, col, step, spacing)
    t2 = time.perf_counter()
    model = np.loadtxt(sys.argv[2], comments="#", skiprows=4) if False else np.array(
        [[float(x) for x in line.split()] for line in open(sys.argv[2]) if line.strip() and not line.startswith("#") and line.split()[0] != "x"])
    pairs = match(det, model)
    ct = det[[i for i, _ in pairs]]
    robot = model[[m for _, m in pairs]]
    r, t = umeyama(ct, robot)
    t3 = time.perf_counter()
    print(json.dumps({"peer": "pydicom + numpy + scipy.ndimage", "voxels": int(vol.size), "markers": len(det), "matched": len(pairs),
                      "robot_from_ct": np.vstack([np.hstack([r, t[:, None]]), [0, 0, 0, 1]]).tolist(),
                      "load_s": t1 - t0, "detect_s": t2 - t1, "match_register_s": t3 - t2, "total_s": t3 - t0}))


if __name__ == "__main__":
    main()
