#!/usr/bin/env python3
"""pyigtl (PyPI) as the server for `stylet_igtl::client::Client`: listens on the port given,
sends a TRANSFORM, a STRING, a POINT list and an IMAGE to the client once it is connected, then
prints JSON of what it received from the client (TRANSFORM, STRING, POINT, IMAGE) and exits.
Exit 3 when pyigtl is missing."""
import json
import sys
import time

try:
    import numpy as np
    import pyigtl
except ImportError as e:  # pragma: no cover
    print(f"pyigtl is not installed: {e} (pip install pyigtl)", file=sys.stderr)
    sys.exit(3)

port = int(sys.argv[1])
s = pyigtl.OpenIGTLinkServer(port=port, local_server=True)
print("READY", flush=True)
deadline = time.time() + 20
while not s.is_connected() and time.time() < deadline:
    time.sleep(0.01)
m = np.eye(4)
m[:3, 3] = [1.0, 2.0, 3.0]
s.send_message(pyigtl.TransformMessage(m, device_name="REG"), wait=True)
s.send_message(pyigtl.StringMessage("hello from pyigtl", device_name="GREETING"), wait=True)
s.send_message(pyigtl.PointMessage(positions=[[4.0, 5.0, 6.0]], names=["p"], device_name="PTS"), wait=True)
s.send_message(pyigtl.ImageMessage(np.arange(6, dtype=np.uint8).reshape(1, 2, 3), device_name="IMG"), wait=True)
got = {}
for dev in ["TIP", "NOTE", "PLAN", "SLICE"]:
    msg = s.wait_for_message(dev, timeout=10)
    if msg is None:
        print(json.dumps({"error": f"no {dev}", "got": got}), flush=True)
        sys.exit(1)
    if dev == "TIP":
        got[dev] = np.asarray(msg.matrix)[:3, 3].tolist()
    elif dev == "NOTE":
        got[dev] = msg.string
    elif dev == "PLAN":
        got[dev] = np.asarray(msg.positions).tolist()
    else:
        got[dev] = np.asarray(msg.image).flatten().tolist()
print(json.dumps(got), flush=True)
s.stop()
