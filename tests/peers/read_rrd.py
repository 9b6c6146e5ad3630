#!/usr/bin/env python3
"""Reads an .rrd with rerun's own reader (PyPI rerun-sdk 0.36.3, the SDK's version) and prints
JSON: {"entities": {"/path": {"Archetype:field": [one value per logged row, in time order],
"procedure_time": [seconds per row]}}}. A row holding one value is that value (a scalar, a text);
image buffers are given by their length. Exit 3 when rerun-sdk is missing (the Rust tests then
fail in CI and skip elsewhere)."""
import datetime
import json
import sys

try:
    import pyarrow as pa  # installed with rerun-sdk
    import rerun.experimental as rrx
except ImportError as e:  # pragma: no cover
    print(f"rerun-sdk is not installed: {e} (pip install rerun-sdk==0.36.3)", file=sys.stderr)
    sys.exit(3)

SKIP = {"rerun.controls.RowId", "log_time"}


def plain(v):
    if isinstance(v, datetime.timedelta):
        return v.total_seconds()
    if isinstance(v, (bytes, bytearray)):
        return len(v)
    if isinstance(v, list):
        if len(v) == 1 and not isinstance(v[0], list):
            return plain(v[0])
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


rows = {}
for chunk in rrx.RrdReader(sys.argv[1]).stream():
    path = chunk.entity_path
    if path.startswith("/__"):
        continue
    batch = chunk.to_record_batch()
    names = [n for n in batch.schema.names if n not in SKIP]
    cols = {}
    for n in names:
        col = batch.column(n)
        if pa.types.is_duration(col.type):
            # As seconds (timedelta cannot hold nanoseconds).
            scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[col.type.unit]
            cols[n] = [None if x is None else x / scale for x in col.cast(pa.int64()).to_pylist()]
        else:
            cols[n] = col.to_pylist()
    for i in range(batch.num_rows):
        row = {}
        for n in names:
            v = cols[n][i]
            if n == "Image:buffer" and v is not None:
                v = len(v[0]) if v and isinstance(v[0], (list, bytes)) else len(v)
            row[n] = plain(v)
        rows.setdefault(path, []).append(row)

entities = {}
for path, rs in rows.items():
    rs.sort(key=lambda r: r.get("procedure_time") or 0.0)
    out = {}
    for r in rs:
        for k, v in r.items():
            out.setdefault(k, []).append(v)
    entities[path] = out
json.dump({"entities": entities}, sys.stdout)
