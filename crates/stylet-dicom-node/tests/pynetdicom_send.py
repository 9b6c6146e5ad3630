#!/usr/bin/env python3
"""Sends DICOM files to a storage node with pynetdicom (PyPI), a third-party SCU: a C-ECHO, then a
C-STORE per file in its own transfer syntax, then a release. Prints JSON
{"echo": status, "stored": [status per file]}. Exit 3 when pynetdicom is missing.

    pynetdicom_send.py HOST PORT CALLING_AE CALLED_AE FILE...
"""
import json
import sys

try:
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification
except ImportError as e:  # pragma: no cover
    print(f"pynetdicom is not installed: {e} (pip install pynetdicom)", file=sys.stderr)
    sys.exit(3)

host, port, calling, called, *files = sys.argv[1:]
datasets = [dcmread(f) for f in files]
ae = AE(ae_title=calling)
ae.add_requested_context(Verification)
for ts in sorted({str(d.file_meta.TransferSyntaxUID) for d in datasets}):
    ae.add_requested_context(CTImageStorage, ts)
assoc = ae.associate(host, int(port), ae_title=called)
if not assoc.is_established:
    print(json.dumps({"associated": False}))
    sys.exit(1)
echo = assoc.send_c_echo()
stored = []
for d in datasets:
    rsp = assoc.send_c_store(d)
    if "Status" not in rsp:  # no response: the association ended or timed out
        print(json.dumps({"associated": True, "echo": int(echo.Status), "stored": stored, "cut": assoc.is_aborted}))
        sys.exit(1)
    stored.append(int(rsp.Status))
assoc.release()
print(json.dumps({"associated": True, "echo": int(echo.Status), "stored": stored}))
