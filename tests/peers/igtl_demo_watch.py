#!/usr/bin/env python3
"""Watches `stylet demo --igtl` as 3D Slicer would with pyigtl: the plan (POINT PLAN), the workflow
phase (STRING WORKFLOW), the needle tip (TRANSFORM CURRENT_POSITION); once the needle is going in
(phase Insertion and some positions seen), sends EMERGENCY and waits for its ACK and STATUS.
Prints JSON; exit 3 when pyigtl is missing."""
import json
import sys
import time

try:
    import numpy as np
    import pyigtl
    import igtl_status  # noqa: F401 (registers STATUS with pyigtl)
except ImportError as e:  # pragma: no cover
    print(f"pyigtl is not installed: {e} (pip install pyigtl)", file=sys.stderr)
    sys.exit(3)


c = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=int(sys.argv[1]))
out = {"phases": [], "positions": 0}
deadline = time.time() + 240
inserting_since = None
while time.time() < deadline:
    m = c.wait_for_message("WORKFLOW", timeout=0.05)
    if m is not None:
        out["phases"].append(m.string)
        if m.string == "Insertion" and inserting_since is None:
            inserting_since = time.time()
    p = c.wait_for_message("PLAN", timeout=0)
    if p is not None:
        out["plan"] = np.asarray(p.positions).tolist()
    t = c.wait_for_message("CURRENT_POSITION", timeout=0)
    if t is not None:
        out["positions"] += 1
        out["last_tip_ras"] = np.asarray(t.matrix)[:3, 3].tolist()
    if inserting_since is not None and time.time() - inserting_since > 2.0:
        break
else:
    print(json.dumps({"error": "the insertion never started", **out}))
    sys.exit(1)
c.send_message(pyigtl.StringMessage("EMERGENCY", device_name="CMD_0001"), wait=True)
ack = c.wait_for_message("ACK_0001", timeout=5)
st = c.wait_for_message("EMERGENCY", timeout=5)
out["ack"] = ack.string if ack else None
out["status"] = st.code if st else None
print(json.dumps(out))
c.stop()
