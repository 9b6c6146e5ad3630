#!/usr/bin/env python3
"""A scripted 3D Slicer-style session with pyigtl against `stylet igtl serve` (the simulated
robot): the whole BWH sequence with refusals in the wrong phase, CALIBRATION with a matrix,
TARGETING with entry and target points, MOVE_TO_TARGET with CURRENT_POSITION streamed, EMERGENCY.
pyigtl has no STATUS message class: this script adds one (the body layout of the OpenIGTLink
spec). Prints JSON; exit 3 when pyigtl is missing."""
import json
import struct
import sys
import time

try:
    import numpy as np
    import pyigtl
    import pyigtl.messages as pm
except ImportError as e:  # pragma: no cover
    print(f"pyigtl is not installed: {e} (pip install pyigtl)", file=sys.stderr)
    sys.exit(3)


class StatusMessage(pm.MessageBase):
    def __init__(self, timestamp=None, device_name=None):
        pm.MessageBase.__init__(self, timestamp=timestamp, device_name=device_name)
        self._message_type = "STATUS"
        self.code, self.subcode, self.error_name, self.status_string = 0, 0, "", ""
        self._valid_message = True

    def _pack_content(self):
        name = self.error_name.encode()[:20].ljust(20, b"\0")
        return struct.pack("> H q", self.code, self.subcode) + name + self.status_string.encode() + b"\0"

    def _unpack_content(self, content):
        self.code, self.subcode = struct.unpack("> H q", content[:10])
        self.error_name = content[10:30].split(b"\0")[0].decode()
        self.status_string = content[30:].split(b"\0")[0].decode()


pm.message_type_to_class_constructor["STATUS"] = StatusMessage

port = int(sys.argv[1])
c = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
log = {"steps": []}


def fail(why):
    log["error"] = why
    print(json.dumps(log))
    sys.exit(1)


def wait(device, timeout=10.0):
    m = c.wait_for_message(device, timeout=timeout)
    if m is None:
        fail(f"no {device} within {timeout} s")
    return m


def command(n, phase, status_timeout=10.0):
    """CMD_<n>: its ACK (timed) and then the STATUS named after the phase."""
    t0 = time.time()
    c.send_message(pyigtl.StringMessage(phase, device_name=f"CMD_{n:04d}"), wait=True)
    ack = wait(f"ACK_{n:04d}")
    ack_ms = (time.time() - t0) * 1e3
    st = wait(phase, status_timeout)
    step = {"phase": phase, "ack": ack.string, "ack_ms": round(ack_ms, 1), "status": st.code, "text": st.status_string}
    log["steps"].append(step)
    return step


# Refusals before anything is set up.
command(1, "TARGETING")
command(2, "MOVE_TO_TARGET")
# Start-up: the robot connects, enables and homes.
command(3, "START_UP", status_timeout=60)
# Calibration: robot -> image (RAS); identity, so RAS coordinates are robot millimetres.
c.send_message(pyigtl.StringMessage("CALIBRATION", device_name="CMD_0004"), wait=True)
log["steps"].append({"phase": "CALIBRATION", "ack": wait("ACK_0004").string})
# A scaled matrix is no registration: refused with the reason (the phase waits on).
c.send_message(pyigtl.TransformMessage(np.diag([1.05, 1.05, 1.05, 1.0]), device_name="CLB_0099"), wait=True)
wait("ACK_0099")
st = wait("CALIBRATION")
log["non_rigid_calibration"] = {"status": st.code, "text": st.status_string}
c.send_message(pyigtl.TransformMessage(np.eye(4), device_name="CLB_0005"), wait=True)
log["calibration_echo"] = wait("ACK_0005").matrix.tolist()
st = wait("CALIBRATION")
log["steps"].append({"phase": "CALIBRATION", "status": st.code, "text": st.status_string})
# Targeting: entry and target as two points (RAS = robot here); the arm aligns outside the patient.
c.send_message(pyigtl.StringMessage("TARGETING", device_name="CMD_0006"), wait=True)
log["steps"].append({"phase": "TARGETING", "ack": wait("ACK_0006").string})
entry = np.array([500.0, 300.0, 150.0])
direction = np.array([20.0, 40.0, -110.0]) / np.linalg.norm([20.0, 40.0, -110.0])
target = entry + 40.0 * direction
c.send_message(pyigtl.PointMessage(positions=[entry.tolist(), target.tolist()], names=["entry", "target"],
                                   device_name="PLAN"), wait=True)
st = wait("TARGETING", 60)
log["steps"].append({"phase": "TARGETING", "status": st.code, "text": st.status_string})
# Move to target: positions stream while the needle advances.
c.send_message(pyigtl.StringMessage("MOVE_TO_TARGET", device_name="CMD_0007"), wait=True)
log["steps"].append({"phase": "MOVE_TO_TARGET", "ack": wait("ACK_0007").string})
positions = []
deadline = time.time() + 60
done = None
while done is None and time.time() < deadline:
    m = c.wait_for_message("CURRENT_POSITION", timeout=0.2)
    if m is not None:
        positions.append(np.asarray(m.matrix)[:3, 3].tolist())
    done = c.wait_for_message("MOVE_TO_TARGET", timeout=0)
if done is None:
    fail("MOVE_TO_TARGET did not complete")
log["steps"].append({"phase": "MOVE_TO_TARGET", "status": done.code, "text": done.status_string})
log["positions"] = positions
log["target"] = target.tolist()
# Emergency, then moving again is refused.
command(8, "EMERGENCY")
command(9, "MOVE_TO_TARGET")
print(json.dumps(log))
c.stop()
