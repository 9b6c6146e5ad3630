#!/usr/bin/env python3
"""Soak of the real-time control loop: N bring-ups and M wall-clock demos back to back while other
work at normal priority loads both cores. Counts spurious faults (a run that should pass and
latched a fault or failed), checks that every injected fault is still detected, and prints the
cycle lateness (p50/p99/p99.9/max) of each run and over all runs.

Every tenth bring-up injects a fault (disconnect, e-stop, over-current in turn) and must latch
it; every tenth demo runs the fault-link-loss scenario and must end in its safe stop.

Usage: bench/soak.py [--bringups N] [--demos M] [--load busy|build|none] [--refused]
                     [--stylet PATH] [--config DIR] [--json FILE]
  --load busy   two busy loops at normal priority (one per core), the default
  --load build  a parallel `cargo build` of the planning crate in a scratch target, over and over
  --refused     run every command without CAP_SYS_NICE and CAP_IPC_LOCK (setpriv): the host
                refuses the real-time policy and the memory lock, and the run goes on
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRINGUP_FAULTS = [("disconnect@0.3", "stale_controller_state"), ("estop@0.3", "estop_input"),
                  ("overcurrent=2@0.3", "over_current")]


def start_load(kind, tmp):
    procs = []
    if kind == "busy":
        for _ in range(os.cpu_count() or 2):
            procs.append(subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True))
    elif kind == "build":
        target = os.path.join(tmp, "build-target")
        loop = (f"while :; do cargo build -q -p stylet-planning --target-dir {target} >/dev/null 2>&1; "
                f"rm -rf {target}; done")
        procs.append(subprocess.Popen(["sh", "-c", loop], cwd=ROOT, start_new_session=True))
    return procs


def stop_load(procs):
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def steal_ms():
    """Per-core steal time so far (/proc/stat, 10 ms ticks): the time the hypervisor ran something
    else while this virtual machine's core wanted to run; nothing inside the machine prevents it."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            w = line.split()
            if w[0].startswith("cpu") and w[0] != "cpu":
                out[int(w[0][3:])] = int(w[8]) * 10
    return out


def run_json(cmd, prefix):
    s0 = steal_ms()
    o = subprocess.run(prefix + cmd, capture_output=True, text=True, cwd=ROOT)
    s1 = steal_ms()
    o.steal_ms = {c: s1[c] - s0.get(c, 0) for c in s1}
    try:
        return json.loads(o.stdout.strip().splitlines()[-1]), o
    except (ValueError, IndexError):
        return None, o


def rt_steal(v, o):
    """Steal during the run on the cores of the runner and of the simulated controller."""
    r = v.get("realtime") or {}
    cores = {(r.get(k) or {}).get("core") for k in ("runner", "simulated_controller")} - {None}
    return max([o.steal_ms.get(c, 0) for c in cores] or [max(o.steal_ms.values() or [0])])


def lateness(v, key="lateness_us"):
    lat = v.get(key) or {}
    return {k: lat.get(k) for k in ("p50", "p99", "p999", "max")}


def stolen(r):
    """The steal that bears on a spurious fault: before it (bring-ups), or the run's worst 100 ms."""
    v = r.get("steal_before_fault_ms")
    if v is None:
        v = r.get("worst_steal_100ms_ms")
    return v or 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bringups", type=int, default=200)
    ap.add_argument("--demos", type=int, default=50)
    ap.add_argument("--load", choices=["busy", "build", "none"], default="busy")
    ap.add_argument("--refused", action="store_true")
    ap.add_argument("--stylet", default=os.path.join(ROOT, "target/release/stylet"))
    ap.add_argument("--config", default=os.path.join(ROOT, "config"))
    ap.add_argument("--json", help="write every run's figures here")
    a = ap.parse_args()
    prefix = ["setpriv", "--bounding-set", "-sys_nice,-ipc_lock"] if a.refused else []
    tmp = tempfile.mkdtemp(prefix="stylet-soak-")
    load = start_load(a.load, tmp)
    runs, spurious, injected, detected = [], [], 0, 0
    try:
        for i in range(a.bringups):
            fault = BRINGUP_FAULTS[(i // 10) % len(BRINGUP_FAULTS)] if i % 10 == 9 else None
            cmd = [a.stylet, "bringup", "--sim", "--json", "--range-deg", "0.5", "--range-mm", "0.5",
                   "--config", a.config]
            if fault:
                cmd += ["--fault", fault[0]]
            v, o = run_json(cmd, prefix)
            if v is None:
                spurious.append(f"bringup {i}: no report: {o.stderr.strip()[-300:]}")
                continue
            got = (v.get("fault") or {}).get("name")
            rec = {"kind": "bringup", "i": i, "fault_injected": fault and fault[0], "fault": got,
                   "passed": v.get("passed"), "late_cycles": v.get("late_cycles"),
                   "stalls": v.get("stalls"), "lateness_us": lateness(v),
                   "max_state_gap_ms": v.get("max_state_gap_ms"),
                   "steal_ms": rt_steal(v, o),
                   "steal_before_fault_ms": (v.get("steal") or {}).get("before_fault_ms"),
                   "worst_steal_100ms_ms": (v.get("steal") or {}).get("worst_100ms_ms"),
                   "realtime": (v.get("realtime") or {}).get("runner", {}).get("policy")}
            runs.append(rec)
            if fault:
                injected += 1
                detected += got == fault[1]
                if got != fault[1]:
                    spurious.append(f"bringup {i}: injected {fault[0]}, latched {got}")
            elif not v.get("passed") or got:
                spurious.append(f"bringup {i}: passed={v.get('passed')} fault={got} "
                                f"steal in the 300 ms before it: {rec['steal_before_fault_ms']} ms")
                rec["spurious"] = True
            print(f"bringup {i:3d} {'fault ' + fault[0] if fault else 'nominal':24s} fault={got} "
                  f"late={rec['late_cycles']} stalls={rec['stalls']} lateness_us={rec['lateness_us']} "
                  f"state_gap_ms={rec['max_state_gap_ms']} steal_ms={rec['steal_ms']} "
                  f"before_fault={rec['steal_before_fault_ms']} {rec['realtime']}", flush=True)
        for i in range(a.demos):
            scenario = "fault-link-loss" if i % 10 == 9 else "easy"
            out = os.path.join(tmp, f"demo-{i}")
            cmd = [a.stylet, "demo", "--realtime", "--json", "--seed", str(5000 + i), "--out", out, "--config", a.config,
                   "--scenario", os.path.join(a.config, "scenarios", scenario + ".toml")]
            v, o = run_json(cmd, prefix)
            shutil.rmtree(out, ignore_errors=True)
            if v is None:
                spurious.append(f"demo {i} ({scenario}): no summary: {o.stderr.strip()[-300:]}")
                continue
            timing = v.get("cycle_timing") or {}
            rec = {"kind": "demo", "i": i, "scenario": scenario, "outcome": v.get("outcome"),
                   "faults": v.get("faults"), "late_cycles": timing.get("late_cycles"),
                   "stalls": timing.get("stalls"), "lateness_us": lateness(timing),
                   "max_state_gap_ms": timing.get("max_state_gap_ms"),
                   "wire_monitor_violations": v.get("wire_monitor_violations"),
                   "steal_ms": rt_steal(v, o),
                   "worst_steal_100ms_ms": ((v.get("realtime") or {}).get("steal") or {}).get("worst_100ms_ms"),
                   "realtime": (v.get("realtime") or {}).get("runner", {}).get("policy")}
            runs.append(rec)
            if scenario == "fault-link-loss":
                injected += 1
                detected += v.get("outcome") == "safe-stop"
                if v.get("outcome") != "safe-stop":
                    spurious.append(f"demo {i}: link loss not detected: {v.get('outcome')}")
            elif v.get("outcome") != "done" or v.get("faults"):
                spurious.append(f"demo {i}: outcome {v.get('outcome')}, faults {v.get('faults')} "
                                f"most steal within 100 ms of the run: {rec['worst_steal_100ms_ms']} ms")
                rec["spurious"] = True
            if v.get("wire_monitor_violations"):
                spurious.append(f"demo {i}: {v.get('wire_monitor_violations')} wire-monitor violations")
            print(f"demo {i:3d} {scenario:18s} outcome={rec['outcome']} faults={rec['faults']} "
                  f"late={rec['late_cycles']} stalls={rec['stalls']} lateness_us={rec['lateness_us']} "
                  f"state_gap_ms={rec['max_state_gap_ms']} steal_ms={rec['steal_ms']} "
                  f"{rec['realtime']}", flush=True)
    finally:
        stop_load(load)
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {"load": a.load, "refused": a.refused, "bringups": a.bringups, "demos": a.demos,
               "spurious_faults": len(spurious), "spurious": spurious,
               "injected_faults": injected, "injected_detected": detected}
    for kind in ("bringup", "demo"):
        rs = [r for r in runs if r["kind"] == kind]
        if not rs:
            continue
        p99 = sorted(r["lateness_us"]["p99"] or 0 for r in rs)
        summary[kind] = {
            "runs": len(rs),
            "median_p50_us": sorted(r["lateness_us"]["p50"] or 0 for r in rs)[len(rs) // 2],
            "median_p99_us": p99[len(rs) // 2],
            "worst_p999_us": max(r["lateness_us"]["p999"] or 0 for r in rs),
            "worst_max_us": max(r["lateness_us"]["max"] or 0 for r in rs),
            "late_cycles": sum(r["late_cycles"] or 0 for r in rs),
            "stalls": sum(r["stalls"] or 0 for r in rs),
            # Runs with an injected fault end with a long gap by design: nominal runs only.
            "worst_state_gap_ms": max([r["max_state_gap_ms"] or 0 for r in rs
                                       if not r.get("fault_injected") and r.get("scenario") != "fault-link-loss"] or [0]),
            "policy": sorted({r["realtime"] or "?" for r in rs}),
            # The hypervisor's steal on the real-time cores: runs with at least one 10 ms tick; the
            # spurious faults with steal of 10 ms or more in the 300 ms before them (bring-ups; for
            # demos, within some 100 ms of the run), and those without.
            "runs_with_steal": sum(1 for r in rs if r["steal_ms"] >= 10),
            "spurious_with_steal": sum(1 for r in rs if r.get("spurious") and stolen(r) >= 10),
            "spurious_without_steal": sum(1 for r in rs if r.get("spurious") and stolen(r) < 10),
            "worst_steal_ms": max(r["steal_ms"] for r in rs),
        }
    print(json.dumps(summary, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"summary": summary, "runs": runs}, f, indent=1)
    return 0 if not spurious and detected == injected else 1


if __name__ == "__main__":
    sys.exit(main())
