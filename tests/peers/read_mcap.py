#!/usr/bin/env python3
"""Reads an MCAP file with the `mcap` package (PyPI) and prints JSON: the header's profile and
library, the metadata records, and per topic its schema (name, encoding), message encoding and
messages (decoded JSON, with log_time in ns). Exit 3 when the package is missing (the Rust tests
then fail in CI and skip elsewhere)."""
import json
import sys

try:
    from mcap.reader import make_reader
except ImportError as e:  # pragma: no cover
    print(f"the mcap package is not installed: {e} (pip install mcap)", file=sys.stderr)
    sys.exit(3)

with open(sys.argv[1], "rb") as f:
    reader = make_reader(f)
    header = reader.get_header()
    summary = reader.get_summary()
    metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
    topics = {}
    for schema, channel, message in reader.iter_messages(log_time_order=False):
        t = topics.setdefault(channel.topic, {
            "schema": schema.name if schema else None,
            "schema_encoding": schema.encoding if schema else None,
            "schema_data": json.loads(schema.data) if schema and schema.encoding == "jsonschema" else None,
            "message_encoding": channel.message_encoding,
            "messages": [],
        })
        body = json.loads(message.data) if channel.message_encoding == "json" else None
        t["messages"].append({"log_time": message.log_time, "sequence": message.sequence, "data": body})
print(json.dumps({
    "profile": header.profile,
    "library": header.library,
    "metadata": metadata,
    "message_count": summary.statistics.message_count if summary and summary.statistics else None,
    "topics": topics,
}))
