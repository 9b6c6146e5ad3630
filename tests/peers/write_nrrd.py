"""Writes NRRD files with pynrrd (a third-party writer) for stylet-imaging's NRRD read test.

Usage: python3 write_nrrd.py DIR. Exit code 3 when pynrrd is missing.
Writes DIR/lps.nrrd (gzip, LPS space), DIR/ras.nrrd (raw, RAS space: the same volume) and
DIR/seg.seg.nrrd (a single-layer segmentation with a leading list axis, as 3D Slicer writes).
Voxel (i, j, k) of the 4 x 3 x 2 volume holds (i + 4 j + 12 k) * 37 - 500; the segmentation is 0
but for 5 at (1, 2, 1).
"""
import sys

try:
    import numpy as np
    import nrrd
except ImportError:
    sys.exit(3)

d = sys.argv[1]
a = (np.arange(24, dtype=np.int16).reshape((4, 3, 2), order="F") * 37 - 500).astype(np.int16)
lps = {
    "space": "left-posterior-superior",
    "space directions": np.array([[0.7, 0.0, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 1.5]]),
    "space origin": np.array([-10.5, 20.25, -300.0]),
    "kinds": ["domain"] * 3,
    "encoding": "gzip",
}
nrrd.write(d + "/lps.nrrd", a, lps, index_order="F")
ras = dict(lps)
ras.update(
    {
        "space": "right-anterior-superior",
        "space directions": np.array([[-0.7, 0.0, 0.0], [0.0, -0.8, 0.0], [0.0, 0.0, 1.5]]),
        "space origin": np.array([10.5, -20.25, -300.0]),
        "encoding": "raw",
    }
)
nrrd.write(d + "/ras.nrrd", a, ras, index_order="F")
s = np.zeros((1, 4, 3, 2), dtype=np.uint8)
s[0, 1, 2, 1] = 5
seg = {
    "space": "left-posterior-superior",
    "space directions": np.array([[np.nan] * 3, [0.7, 0, 0], [0, 0.8, 0], [0, 0, 1.5]]),
    "space origin": np.array([-10.5, 20.25, -300.0]),
    "kinds": ["list", "domain", "domain", "domain"],
    "encoding": "gzip",
}
nrrd.write(d + "/seg.seg.nrrd", s, seg, index_order="F")
