#!/usr/bin/env python3
"""pyigtl (PyPI) as the client of `stylet_igtl::server`: the BWH start of a session (START_UP,
CALIBRATION matrix, TARGETING, TGT_ target), then POINT and IMAGE to the server, then waits for
what the server broadcasts (CURRENT_POSITION transform, a STRING, an IMAGE slice, POINTs). Prints
JSON of everything it received. Exit 3 when pyigtl is missing."""
import json
import sys

try:
    import numpy as np
    import pyigtl
except ImportError as e:  # pragma: no cover
    print(f"pyigtl is not installed: {e} (pip install pyigtl)", file=sys.stderr)
    sys.exit(3)

port = int(sys.argv[1])
c = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
out = {}


def wait(device, timeout=10):
    m = c.wait_for_message(device, timeout=timeout)
    if m is None:
        print(json.dumps({"error": f"no {device} within {timeout} s", "so_far": out}))
        sys.exit(1)
    return m


c.send_message(pyigtl.StringMessage("START_UP", device_name="CMD_0001"), wait=True)
ack = wait("ACK_0001")
out["ack_start_up"] = ack.string
out["ack_start_up_time"] = ack.timestamp
calibration = np.eye(4)
calibration[:3, 3] = [10.0, 20.0, 30.0]
c.send_message(pyigtl.TransformMessage(calibration, device_name="CLB_0002"), wait=True)
out["ack_calibration"] = wait("ACK_0002").matrix.tolist()
# Protocol 3 (header version 2, with metadata), as Slicer sends it: answered in kind.
targeting = pyigtl.StringMessage("TARGETING", device_name="CMD_0003")
targeting.header_version = 2
targeting.metadata = {"Requester": "Slicer"}
c.send_message(targeting, wait=True)
ack = wait("ACK_0003")
out["ack_targeting"] = ack.string
out["ack_targeting_header_version"] = ack.header_version
target = np.eye(4)
target[:3, 3] = [5.0, -6.0, 7.0]
c.send_message(pyigtl.TransformMessage(target, device_name="TGT_0004"), wait=True)
out["ack_target"] = wait("ACK_0004").matrix.tolist()
c.send_message(
    pyigtl.PointMessage(positions=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], names=["entry", "target"], device_name="PLAN"),
    wait=True,
)
image = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
ct_in = pyigtl.ImageMessage(image, device_name="CT_IN")
ct_in.header_version = 2
ct_in.metadata = {"Modality": "CT"}
c.send_message(ct_in, wait=True)
position = wait("CURRENT_POSITION")
out["current_position"] = position.matrix.tolist()
out["current_position_time"] = position.timestamp
out["note"] = wait("NOTE").string
out["slice"] = np.asarray(wait("CT_SLICE").image).flatten().tolist()
out["points"] = np.asarray(wait("PLAN_OUT").positions).tolist()
print(json.dumps(out))
c.stop()
