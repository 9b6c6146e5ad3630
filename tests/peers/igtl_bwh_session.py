#!/usr/bin/env python3
"""3D Slicer's part, scripted with pyigtl: runs the simulated procedure of `stylet igtl serve`
through the BWH phases. Refusals first (MOVE_TO_TARGET and TARGETING before START_UP, a CLB_
matrix: Stylet registers itself, MANUAL), then START_UP, TARGETING (Stylet's plan), MOVE_TO_TARGET
with the needle (CURRENT_POSITION), the gate (STRING GATE) and the workflow (STRING WORKFLOW)
watched, ANSWER yes to the ablation prompt, and the end. Records every ACK's delay and the
longest time the needle held still during the insertion (the same script runs against a world
whose gate closes or whose pedal is released mid-insertion), and the scene Slicer would load (the
CTs as IMAGE, the needle path and the ablation zones as POLYDATA, read into VTK), rendered
off-screen with VTK into PNG when a path is given. Prints JSON; exit 3 when pyigtl or VTK is
missing.

With --calibration TRUTH.json (`stylet sim phantom`'s truth; the server runs with
--calibration-from-slicer), the calibration is Slicer's: after START_UP, CALIBRATION and a CLB_
with the world's true robot-to-image matrix (RAS), which must come back as the REGISTRATION.

Usage: igtl_bwh_session.py PORT [PICTURE.png] [--calibration TRUTH.json]"""
import json
import os
import struct
import sys
import time

try:
    import numpy as np
    import pyigtl
    import igtl_status  # noqa: F401 (registers STATUS with pyigtl)
    import pyigtl.messages as pm
    import vtk  # noqa: F401 (Slicer's stand-in reads the scene into VTK)
except ImportError as e:  # pragma: no cover
    print(f"pyigtl or vtk is not installed: {e} (pip install pyigtl vtk)", file=sys.stderr)
    sys.exit(3)




class PolyDataMessage(pm.MessageBase):
    """POLYDATA as received (pyigtl 0.3's own unpacker is unfinished): points and cells."""

    def __init__(self, timestamp=None, device_name=None):
        pm.MessageBase.__init__(self, timestamp=timestamp, device_name=device_name)
        self._message_type = "POLYDATA"
        self.points, self.cells = np.zeros((0, 3)), {}
        self._valid_message = True

    def _unpack_content(self, content):
        h = struct.unpack("> 10I", content[:40])
        at = 40
        self.points = np.frombuffer(content[at : at + 12 * h[0]], dtype=">f4").reshape(-1, 3).astype(float)
        at += 12 * h[0]
        for name, size in zip(["vertices", "lines", "polygons", "strips"], [h[2], h[4], h[6], h[8]]):
            flat, cells, i = np.frombuffer(content[at : at + size], dtype=">u4"), [], 0
            while i < len(flat):
                cells.append(flat[i + 1 : i + 1 + flat[i]].tolist())
                i += 1 + flat[i]
            self.cells[name] = cells
            at += size


pm.message_type_to_class_constructor["POLYDATA"] = PolyDataMessage

# pyigtl keeps only the latest message of each device: every STRING (the workflow's phases, the
# prompts) is also kept here as it arrives, so that none is lost when several come between two
# polls of a busy script.
STRINGS = []


class RecordedString(pyigtl.StringMessage):
    def _unpack_content(self, content):
        super()._unpack_content(content)
        STRINGS.append(self)


pm.message_type_to_class_constructor["STRING"] = RecordedString

# Likewise every TRANSFORM's timestamp (the needle's rate during motion).
TRANSFORMS = []


class RecordedTransform(pyigtl.TransformMessage):
    def _unpack_content(self, content):
        super()._unpack_content(content)
        TRANSFORMS.append(self)


pm.message_type_to_class_constructor["TRANSFORM"] = RecordedTransform
# What Slicer loads as the scene: the CTs (volumes) and the models.
SCENE = {"CT_PLANNING", "CT_CONFIRMATION", "CT_CHECKPOINT", "NEEDLE_PATH", "ZONE_PLANNED", "ZONE_ACHIEVED"}



def polydata(m):
    """A received POLYDATA as a vtkPolyData (what Slicer makes of it)."""
    import vtk
    from vtk.util import numpy_support

    pd, pts = vtk.vtkPolyData(), vtk.vtkPoints()
    pts.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(m.points)))
    pd.SetPoints(pts)
    for name, setter in [("lines", pd.SetLines), ("polygons", pd.SetPolys)]:
        arr = vtk.vtkCellArray()
        for cell in m.cells.get(name, []):
            arr.InsertNextCell(len(cell), cell)
        setter(arr)
    return pd


def describe_scene(scene):
    """What arrived: each CT's grid (IJK to RAS, voxel 0 at the origin) and each model's points,
    cells and, for a closed surface, its volume as VTK measures it."""
    import vtk

    out = {}
    for name, m in scene.items():
        if m.message_type == "IMAGE":
            out[name] = {"size": [int(x) for x in m.image.shape[::-1]], "ijk_to_ras": m.ijk_to_world_matrix.tolist(),
                         "coordinate": m.world_coordinate_system, "mean": float(np.mean(m.image))}
        else:
            d = {"points": len(m.points), "lines": len(m.cells["lines"]), "polygons": len(m.cells["polygons"]),
                 "first_point": m.points[0].tolist() if len(m.points) else None,
                 "last_point": m.points[-1].tolist() if len(m.points) else None}
            if m.cells["polygons"]:
                mp = vtk.vtkMassProperties()
                tri = vtk.vtkTriangleFilter()
                tri.SetInputData(polydata(m))
                mp.SetInputConnection(tri.GetOutputPort())
                mp.Update()
                d["volume_mm3"] = mp.GetVolume()
                # Closed: no edge that only one polygon has.
                fe = vtk.vtkFeatureEdges()
                fe.SetInputData(polydata(m))
                fe.BoundaryEdgesOn()
                fe.FeatureEdgesOff()
                fe.NonManifoldEdgesOff()
                fe.ManifoldEdgesOff()
                fe.Update()
                d["open_edges"] = fe.GetOutput().GetNumberOfCells()
            out[name] = d
    return out


def render_scene(scene, png):
    """The scene as Slicer's 3D view would show it, rendered off-screen with VTK: the planning
    CT's axial slice through the planned zone's centre, the needle path (yellow tube), the zone
    planned (orange), the zone achieved (green mesh) and the organs at risk near the path, seen
    from above the patient's right."""
    import vtk
    from vtk.util import numpy_support

    ren = vtk.vtkRenderer()
    ren.SetBackground(0.08, 0.08, 0.12)

    def add(source, colour, opacity, wire=False):
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputConnection(source.GetOutputPort()) if hasattr(source, "GetOutputPort") else mapper.SetInputData(source)
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*colour)
        actor.GetProperty().SetOpacity(opacity)
        if wire:
            actor.GetProperty().SetRepresentationToWireframe()
        ren.AddActor(actor)

    if "ZONE_PLANNED" in scene:
        add(polydata(scene["ZONE_PLANNED"]), (1.0, 0.55, 0.1), 0.45)
    if "ZONE_ACHIEVED" in scene:
        add(polydata(scene["ZONE_ACHIEVED"]), (0.2, 0.95, 0.35), 0.5, wire=True)
    # The organs at risk near the path: vessels red, bone white, the others blue.
    for name, m in scene.items():
        if name.startswith("OAR_"):
            colour = {"OAR_VESSEL": (0.85, 0.15, 0.15), "OAR_BONE": (0.95, 0.95, 0.9)}.get(name, (0.3, 0.5, 1.0))
            add(polydata(m), colour, 0.8)
    if "NEEDLE_PATH" in scene:
        tube = vtk.vtkTubeFilter()
        tube.SetInputData(polydata(scene["NEEDLE_PATH"]))
        tube.SetRadius(1.2)
        tube.SetNumberOfSides(16)
        add(tube, (1.0, 1.0, 0.2), 1.0)
    centre = scene["ZONE_PLANNED"].points.mean(axis=0) if "ZONE_PLANNED" in scene else np.zeros(3)
    ct = scene.get("CT_PLANNING")
    if ct is not None:
        # The axial slice through the planned zone's centre, placed by the IMAGE's own matrix.
        m = ct.ijk_to_world_matrix
        k = int(round(np.linalg.solve(m[:3, :3], centre - m[:3, 3])[2]))
        k = min(max(k, 0), ct.image.shape[0] - 1)
        sl = np.clip((ct.image[k].astype(float) + 160.0) / 400.0 * 255.0, 0, 255).astype(np.uint8)
        img = vtk.vtkImageData()
        img.SetDimensions(sl.shape[1], sl.shape[0], 1)
        img.GetPointData().SetScalars(numpy_support.numpy_to_vtk(sl.ravel(), deep=True))
        actor = vtk.vtkImageActor()
        actor.GetMapper().SetInputData(img)
        actor.SetOpacity(0.85)
        t = vtk.vtkMatrix4x4()
        for i in range(3):
            for j in range(3):
                t.SetElement(i, j, m[i, j])
            t.SetElement(i, 3, m[i, 3] + m[i, 2] * k)
        actor.SetUserMatrix(t)
        ren.AddActor(actor)
    cam = ren.GetActiveCamera()
    cam.SetFocalPoint(*centre)
    # From the patient's right, anterior and above (RAS), the head up.
    cam.SetPosition(*(centre + np.array([-160.0, 260.0, 220.0])))
    cam.SetViewUp(0.0, 0.0, 1.0)
    ren.ResetCameraClippingRange()
    win = vtk.vtkRenderWindow()
    win.SetOffScreenRendering(1)
    win.AddRenderer(ren)
    win.SetSize(900, 700)
    win.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(win)
    grab.Update()
    w = vtk.vtkPNGWriter()
    w.SetFileName(png)
    w.SetInputConnection(grab.GetOutputPort())
    w.Write()


args = sys.argv[1:]
calibration = None
if "--calibration" in args:
    i = args.index("--calibration")
    calibration = args[i + 1]
    del args[i : i + 2]
port = int(args[0])
picture = args[1] if len(args) > 1 else None
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
if calibration is None:
    c.send_message(pyigtl.TransformMessage(np.eye(4), device_name="CLB_0003"), wait=True)
    wait("ACK_0003")
    st = wait("CALIBRATION")
    log["calibration_matrix"] = {"status": st.code, "error": st.error_name, "text": st.status_string}
command(4, "MANUAL")
# START_UP: the procedure starts (planning CT, fiducials, registration, plans).
command(5, "START_UP", status_timeout=30)
if calibration is not None:
    # Slicer's calibration: the world's true robot-to-image matrix, in RAS (x and y flipped on
    # the image side).
    with open(calibration) as f:
        ras = np.asarray(json.load(f)["ct_from_robot"], dtype=float)
    ras[0, :] *= -1.0
    ras[1, :] *= -1.0
    command(8, "CALIBRATION")
    c.send_message(pyigtl.TransformMessage(ras, device_name="CLB_0009"), wait=True)
    wait("ACK_0009")
    st = wait("CALIBRATION", 120)
    log["calibration_matrix"] = {"status": st.code, "error": st.error_name, "text": st.status_string, "sent_ras": ras.tolist()}
# TARGETING: reported once Stylet has its plans, reachable by the arm.
command(6, "TARGETING", status_timeout=120)
reg = wait("REGISTRATION", 5)
log["registration_ras"] = np.asarray(reg.matrix).tolist()
# PLANNING: Stylet's plans for review (POINT PLANS: each plan's entry and target); Slicer aims at
# the last one, its entry and target each moved 0.3 mm (placed by hand), and Stylet takes the
# plan it matches (the nearest: plans may lie closer together than that) as the one
# MOVE_TO_TARGET executes.
plans = wait("PLANS", 10)
offered = np.asarray(plans.positions, dtype=float)
k = len(offered) // 2
entry, target = offered[2 * k - 2] + [0.3, 0.0, 0.0], offered[2 * k - 1] + [0.0, 0.3, 0.0]
c.send_message(pyigtl.PointMessage(positions=[entry, target], names=["entry", "target"], device_name="AIM"), wait=True)
st = wait("PLANNING", 10)
log["aim"] = {"plans": k, "status": st.code, "text": st.status_string, "entry": entry.tolist(), "target": target.tolist(),
             "offered": offered.tolist()}
# MOVE_TO_TARGET: alignment, confirmation CT, gated insertion steps, checkpoint CTs.
command(7, "MOVE_TO_TARGET", status_timeout=None)
gate, gate_since = None, None
workflow = None
gate_closings = 0
scene = {}
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
        elif m.device_name == "CURRENT_POSITION":
            since = now - gate_since if gate_since is not None else None
            positions.append((now, np.asarray(m.matrix)[:3, 3].tolist(), gate, since, workflow))
        elif m.device_name == "MOVE_TO_TARGET":
            done = m
        elif m.device_name == "PLAN":
            log["executed_plan"] = np.asarray(m.positions, dtype=float).tolist()
        elif m.device_name in SCENE or m.device_name.startswith("OAR_"):
            scene[m.device_name] = m
    time.sleep(0.005)
if done is None:
    fail("MOVE_TO_TARGET did not complete")
log["steps"].append({"phase": "MOVE_TO_TARGET", "status": done.code, "text": done.status_string})
# How long after the needle reached the target (WORKFLOW AtTarget, stamped with the procedure's
# time on the wall clock) its STATUS left (stamped when sent).
at_target = [m.timestamp for m in STRINGS if m.device_name == "WORKFLOW" and m.string == "AtTarget"]
if at_target:
    log["status_after_completion_s"] = round(done.timestamp - at_target[0], 3)
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
    time.sleep(0.1)
    ends = [m.string for m in STRINGS if m.device_name == "PROMPT" and m.string.startswith("the procedure has ended")]
    ended = ends[0] if ends else None
if ended is None:
    fail("the procedure did not end")
log["ended"] = ended
# The needle's stream during the insertion, every message (procedure-time stamps): the longest
# interval between two while MOVE_TO_TARGET was executing and the needle moving.
stamps = sorted(m.timestamp for m in TRANSFORMS if m.device_name == "CURRENT_POSITION")
moving = [t for (t, _p, _g, _s, w) in positions if w in ("Alignment", "Insertion")]
if moving:
    during = [t for t in stamps if moving[0] <= t <= moving[-1]]
    gaps = np.diff(during) if len(during) > 1 else np.array([np.inf])
    log["needle_stream"] = {"messages": len(during), "max_interval_s": float(np.max(gaps)),
                            "median_interval_s": float(np.median(gaps))}
log["phases"] = [m.string for m in STRINGS if m.device_name == "WORKFLOW"]
log["prompts"] = [m.string for m in STRINGS if m.device_name == "PROMPT"]
for m in c.get_latest_messages():
    if m.device_name in SCENE or m.device_name.startswith("OAR_"):
        scene[m.device_name] = m
log["scene"] = describe_scene(scene)
if picture is not None:
    render_scene(scene, picture)
    log["picture"] = {"path": picture, "bytes": os.path.getsize(picture)}
log["ack_ms_max"] = max(s["ack_ms"] for s in log["steps"] if "ack_ms" in s)
print(json.dumps(log))
c.stop()
