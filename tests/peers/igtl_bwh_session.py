#!/usr/bin/env python3
"""3D Slicer's part, scripted with pyigtl: runs the simulated procedure of `stylet igtl serve`
through the BWH phases. Refusals first (MOVE_TO_TARGET and TARGETING before START_UP, a CLB_
matrix: Stylet registers itself, MANUAL), then START_UP, TARGETING (Stylet's plan), MOVE_TO_TARGET
with the needle (CURRENT_POSITION), the gate (STRING GATE) and the workflow (STRING WORKFLOW)
watched, ANSWER yes to the ablation prompt, and the end. Records every ACK's delay and the
longest time the needle held still during the insertion (the same script runs against a world
whose gate closes or whose pedal is released mid-insertion). Prints JSON; exit 3 when pyigtl is
missing."""
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
log = {"steps": [], "prompts": [], "phases": []}


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
    step = {"phase": phase, "ack": ack.string, "ack_ms": round(ack_ms, 1)}
    if status_timeout is not None:
        st = wait(phase, status_timeout)
        step.update({"status": st.code, "error": st.error_name, "text": st.status_string})
    log["steps"].append(step)
    return step


# Wait for the connection (the server is up before the script starts).
deadline = time.time() + 10
while not c.is_connected() and time.time() < deadline:
    time.sleep(0.05)
# Refused before START_UP.
command(1, "MOVE_TO_TARGET")
command(2, "TARGETING")
# Stylet registers on the CT's fiducials: a calibration matrix from the network is refused.
c.send_message(pyigtl.TransformMessage(np.eye(4), device_name="CLB_0003"), wait=True)
wait("ACK_0003")
st = wait("CALIBRATION")
log["calibration_matrix"] = {"status": st.code, "error": st.error_name, "text": st.status_string}
command(4, "MANUAL")
# START_UP: the procedure starts (planning CT, fiducials, registration, plans).
command(5, "START_UP", status_timeout=30)
# TARGETING: reported once Stylet has its plans, reachable by the arm.
command(6, "TARGETING", status_timeout=120)
reg = wait("REGISTRATION", 5)
log["registration_ras"] = np.asarray(reg.matrix).tolist()
# MOVE_TO_TARGET: alignment, confirmation CT, gated insertion steps, checkpoint CTs.
command(7, "MOVE_TO_TARGET", status_timeout=None)
gate, gate_since = None, None
workflow = None
gate_closings = 0
positions = []  # (t, [x, y, z], gate open, seconds since the gate last changed, workflow)
done = None
deadline = time.time() + 300
while done is None and time.time() < deadline:
    # In the order of their timestamps: when their content was true in the procedure's time
    # (a simulation paced to the wall clock keeps its intervals however late a message arrives).
    for m in sorted(c.get_latest_messages(), key=lambda m: m.timestamp):
        now = m.timestamp
        if m.device_name == "GATE":
            if m.string != gate:
                gate, gate_since = m.string, now
                gate_closings += workflow == "Insertion" and gate == "closed"
        elif m.device_name == "WORKFLOW":
            workflow = m.string
            log["phases"].append(workflow)
        elif m.device_name == "CURRENT_POSITION":
            since = now - gate_since if gate_since is not None else None
            positions.append((now, np.asarray(m.matrix)[:3, 3].tolist(), gate, since, workflow))
        elif m.device_name == "PROMPT":
            log["prompts"].append(m.string)
        elif m.device_name == "MOVE_TO_TARGET":
            done = m
    time.sleep(0.005)
if done is None:
    fail("MOVE_TO_TARGET did not complete")
log["steps"].append({"phase": "MOVE_TO_TARGET", "status": done.code, "text": done.status_string})
# The longest hold of the insertion: the longest time over which the tip stayed within 0.05 mm of
# where it stopped, and how deep it was then (from the first position of the insertion). The
# gate (RESP-2) and the pedal (INS-2) hold the needle; so does nothing else during an insertion.
inserting = [(t, np.asarray(p)) for (t, p, _g, _s, w) in positions if w == "Insertion"]
hold_s, hold_depth_mm, start = 0.0, None, 0
for i, (t, p) in enumerate(inserting):
    while np.linalg.norm(p - inserting[start][1]) > 0.05:
        start += 1
    if t - inserting[start][0] > hold_s:
        hold_s = t - inserting[start][0]
        hold_depth_mm = float(np.linalg.norm(inserting[start][1] - inserting[0][1]))
log["positions"] = len(positions)
log["insertion_positions"] = len(inserting)
log["longest_hold_s"] = round(hold_s, 2)
log["longest_hold_depth_mm"] = hold_depth_mm
log["gate_closings_seen"] = gate_closings
log["insertion_travel_mm"] = float(
    sum(np.linalg.norm(np.subtract(b[1], a[1])) for a, b in zip(positions, positions[1:]) if b[4] == "Insertion")
)
# The ablation prompt: answered yes; then the procedure runs to its end.
c.send_message(pyigtl.StringMessage("yes", device_name="ANSWER"), wait=True)
deadline = time.time() + 120
ended = None
while ended is None and time.time() < deadline:
    m = c.wait_for_message("PROMPT", timeout=0.1)
    if m is not None:
        log["prompts"].append(m.string)
        if m.string.startswith("the procedure has ended"):
            ended = m.string
    w = c.wait_for_message("WORKFLOW", timeout=0)
    if w is not None:
        log["phases"].append(w.string)
if ended is None:
    fail("the procedure did not end")
log["ended"] = ended
log["ack_ms_max"] = max(s["ack_ms"] for s in log["steps"] if "ack_ms" in s)
print(json.dumps(log))
c.stop()
