#!/usr/bin/env python3
"""Peer benchmark: Orocos KDL's joint-limited Newton-Raphson IK (ChainIkSolverPos_NR_JL), the classic
baseline TRAC-IK's figures are quoted against, on the lines `stylet bench ik --export-lines` wrote.

KDL solves the full 6-D pose (roll fixed at the generating configuration's), from the same home seed,
with the same acceptance check as Stylet's: tip within 0.01 mm of the stand-off point, needle axis
within 0.01 deg of the line, joints within limits. Needs Debian's python3-pykdl (run with
/usr/bin/python3). Usage: kdl_ik.py LINES.json
"""
import json
import math
import sys
import time
import xml.etree.ElementTree as ET

import PyKDL as kdl


def chain_from_urdf(path, base, tip):
    """Serial chain base -> tip; fixed and prismatic joints become fixed segments (needle held at 0)."""
    root = ET.parse(path).getroot()
    joints = {j.find("child").get("link"): j for j in root.findall("joint")}
    path_joints = []
    link = tip
    while link != base:
        j = joints[link]
        path_joints.append(j)
        link = j.find("parent").get("link")
    path_joints.reverse()
    chain = kdl.Chain()
    lower, upper = [], []
    for j in path_joints:
        o = j.find("origin")
        xyz = [float(v) for v in (o.get("xyz", "0 0 0") if o is not None else "0 0 0").split()]
        rpy = [float(v) for v in (o.get("rpy", "0 0 0") if o is not None else "0 0 0").split()]
        frame = kdl.Frame(kdl.Rotation.RPY(*rpy), kdl.Vector(*xyz))
        chain.addSegment(kdl.Segment(kdl.Joint(kdl.Joint.Fixed), frame))
        if j.get("type") in ("revolute", "continuous"):
            axis = [float(v) for v in j.find("axis").get("xyz").split()]
            assert axis == [0.0, 0.0, 1.0], "this peer handles z axes only"
            chain.addSegment(kdl.Segment(kdl.Joint(kdl.Joint.RotZ), kdl.Frame.Identity()))
            lim = j.find("limit")
            lower.append(float(lim.get("lower")) if j.get("type") == "revolute" else -1e9)
            upper.append(float(lim.get("upper")) if j.get("type") == "revolute" else 1e9)
    return chain, lower, upper


def jnt(values):
    a = kdl.JntArray(len(values))
    for i, v in enumerate(values):
        a[i] = v
    return a


def main():
    doc = json.load(open(sys.argv[1]))
    chain, lower, upper = chain_from_urdf(doc["urdf"], doc["base"], doc["tip"])
    n = chain.getNrOfJoints()
    fk = kdl.ChainFkSolverPos_recursive(chain)
    vel = kdl.ChainIkSolverVel_pinv(chain)
    ik = kdl.ChainIkSolverPos_NR_JL(chain, jnt(lower), jnt(upper), fk, vel, 100, 1e-6)
    seed = jnt(doc["seed"][:n])
    standoff = doc["standoff_mm"]
    ok, times = 0, []
    for line in doc["lines"]:
        p = line["pose_m"]
        r = p["rotation"]
        target = kdl.Frame(kdl.Rotation(*[r[i][j] for i in range(3) for j in range(3)]), kdl.Vector(*p["position"]))
        # The peer's chain must reproduce Stylet's FK at the generating configuration.
        check = kdl.Frame()
        fk.JntToCart(jnt(line["q"][:n]), check)
        assert (check.p - target.p).Norm() < 1e-9, "KDL chain disagrees with Stylet's FK"
        assert kdl.diff(check.M, target.M).Norm() < 1e-9
        out = kdl.JntArray(n)
        t0 = time.perf_counter()
        rc = ik.CartToJnt(seed, target, out)
        times.append((time.perf_counter() - t0) * 1e6)
        if rc < 0:
            continue
        f = kdl.Frame()
        fk.JntToCart(out, f)
        entry, tgt = line["entry_mm"], line["target_mm"]
        d = [tgt[i] - entry[i] for i in range(3)]
        norm = math.sqrt(sum(x * x for x in d))
        u = [x / norm for x in d]
        goal = [entry[i] - u[i] * standoff for i in range(3)]
        pos = [f.p[i] * 1e3 for i in range(3)]
        dp = math.sqrt(sum((pos[i] - goal[i]) ** 2 for i in range(3)))
        z = f.M.UnitZ()
        cosang = max(-1.0, min(1.0, sum(z[i] * u[i] for i in range(3))))
        angle = math.degrees(math.acos(cosang))
        in_limits = all(lower[i] - 1e-12 <= out[i] <= upper[i] + 1e-12 for i in range(n))
        if dp <= 0.01 and angle <= 0.01 and in_limits:
            ok += 1
    times.sort()
    q = lambda x: times[min(len(times) - 1, max(0, math.ceil(x * len(times)) - 1))]
    res = {"solver": "KDL ChainIkSolverPos_NR_JL (6-D pose, 100 iterations, eps 1e-6)", "lines": len(times),
           "success": ok / len(times), "p50_us": q(0.5), "p99_us": q(0.99)}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
