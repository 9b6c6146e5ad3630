#!/usr/bin/env python3
"""Reads a DICOM Segmentation two ways and prints JSON, so a Rust test can compare both with the
masks it wrote:
  highdicom (PyPI): the segments (number, label, algorithm, category and property codes), the
    referenced source instances, and per segment and source instance (in the order given on the
    command line) the count of voxels set and the first one (row-major index within the slice);
  pydicom (PyPI): the same per segment and frame position, from the raw frames
    (PerFrameFunctionalGroups: ReferencedSegmentNumber, ImagePositionPatient), and each
    segment's centroid in patient coordinates (LPS mm) from the frames' positions and the shared
    orientation and pixel spacing.
    python3 read_seg.py SEG.dcm [SOP_INSTANCE_UID ...]
Exit 3 when highdicom or pydicom is missing (the Rust tests then fail in CI and skip elsewhere)."""
import json
import sys

try:
    import highdicom as hd
    import numpy as np
    import pydicom
except ImportError as e:  # pragma: no cover
    print(f"highdicom or pydicom is not installed: {e} (pip install highdicom pydicom)", file=sys.stderr)
    sys.exit(3)


def summary(mask2d):
    flat = np.asarray(mask2d).reshape(-1)
    on = np.flatnonzero(flat)
    return [int(on.size), int(on[0]) if on.size else -1]


path, uids = sys.argv[1], sys.argv[2:]
seg = hd.seg.segread(path)
segments = []
for n in seg.get_segment_numbers():
    d = seg.get_segment_description(n)
    segments.append({
        "number": int(n),
        "label": d.segment_label,
        "algorithm": d.algorithm_type.value,
        "category": d.segmented_property_category.meaning,
        "property": d.segmented_property_type.meaning,
    })
by_instance = {}
if uids:
    referenced = {u[2] for u in seg.get_source_image_uids()}
    present = [u for u in uids if u in referenced]
    if present:
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=present,
            segment_numbers=[s["number"] for s in segments],
            ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True,
        )
        for s_i, s in enumerate(segments):
            by_instance[str(s["number"])] = {u: summary(pixels[i, :, :, s_i]) for i, u in enumerate(present)}
ds = pydicom.dcmread(path)
frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
shared = ds.SharedFunctionalGroupsSequence[0]
iop = np.array([float(x) for x in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
row_mm, col_mm = (float(x) for x in shared.PixelMeasuresSequence[0].PixelSpacing)
by_position, sums = {}, {}
for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
    n = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
    pos = [float(x) for x in item.PlanePositionSequence[0].ImagePositionPatient]
    by_position.setdefault(str(n), []).append({"position": pos, "on": summary(frames[f])})
    rows, cols = np.nonzero(frames[f])
    points = np.asarray(pos) + np.outer(cols * col_mm, iop[:3]) + np.outer(rows * row_mm, iop[3:])
    total, count = sums.get(str(n), (np.zeros(3), 0))
    sums[str(n)] = (total + points.sum(axis=0), count + len(rows))
centroids = {n: (total / count).tolist() for n, (total, count) in sums.items() if count}
print(json.dumps({
    "sop_class": ds.SOPClassUID,
    "modality": ds.Modality,
    "study": ds.StudyInstanceUID,
    "frame_of_reference": ds.FrameOfReferenceUID,
    "segmentation_type": ds.SegmentationType,
    "frames": int(ds.NumberOfFrames),
    "segments": segments,
    "source_instances": len(seg.get_source_image_uids()),
    "by_instance": by_instance,
    "by_position": by_position,
    "centroid_lps_mm": centroids,
}))
