#!/usr/bin/env python3
"""Reads a DICOM Structured Report with pydicom (PyPI) and prints JSON: the SOP class, modality,
study, completion flag, the root container's title, and each content item as
{"type", "name", "value", "unit"}. Exit 3 when pydicom is missing (the Rust tests then fail in CI
and skip elsewhere)."""
import json
import sys

try:
    import pydicom
except ImportError as e:  # pragma: no cover
    print(f"pydicom is not installed: {e} (pip install pydicom)", file=sys.stderr)
    sys.exit(3)

ds = pydicom.dcmread(sys.argv[1])
items = []
for it in ds.ContentSequence:
    t = it.ValueType
    row = {"type": t, "relationship": it.RelationshipType, "name": it.ConceptNameCodeSequence[0].CodeMeaning}
    if t == "NUM":
        mv = it.MeasuredValueSequence[0]
        row["value"] = float(mv.NumericValue)
        row["unit"] = mv.MeasurementUnitsCodeSequence[0].CodeValue
    elif t == "TEXT":
        row["value"] = str(it.TextValue)
    elif t == "CODE":
        row["value"] = it.ConceptCodeSequence[0].CodeMeaning
    elif t == "UIDREF":
        row["value"] = str(it.UID)
    items.append(row)
print(json.dumps({
    "sop_class": ds.SOPClassUID,
    "modality": ds.Modality,
    "study": ds.StudyInstanceUID,
    "completion": ds.CompletionFlag,
    "title": ds.ConceptNameCodeSequence[0].CodeMeaning,
    "items": items,
}))
