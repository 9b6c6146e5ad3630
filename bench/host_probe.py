#!/usr/bin/env python3
"""Does the host hold its timing, whatever Stylet does? A trivial 1 kHz sleeper at SCHED_FIFO 90
(above every Stylet thread) pinned to a core, with nothing of Stylet's in its process: it counts
how late each wake-up is, and the hypervisor's steal on that core meanwhile (/proc/stat). Where
this probe is late by more than the lateness limit (10 ms, HAZ-11), so is any runner on that core:
no lock, kernel worker or thread priority inside the machine explains it.

Usage: bench/host_probe.py [--seconds S] [--core N] [--load none|busy|build] [--json]
  (as root, or with CAP_SYS_NICE, for SCHED_FIFO)
"""
import argparse
import json
import os
import signal
import subprocess
import tempfile
import time


def steal_ms(core):
    with open("/proc/stat") as f:
        for line in f:
            w = line.split()
            if w[0] == f"cpu{core}":
                return int(w[8]) * 10
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--load", choices=["none", "busy", "build"], default="none")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    load = []
    tmp = tempfile.mkdtemp(prefix="stylet-probe-")
    if a.load == "busy":
        load = [subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
                for _ in range(os.cpu_count() or 2)]
    elif a.load == "build":
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        loop = f"while :; do cargo build -q -p stylet-planning --target-dir {tmp}/t >/dev/null 2>&1; rm -rf {tmp}/t; done"
        load = [subprocess.Popen(["sh", "-c", loop], cwd=root, start_new_session=True)]
    try:
        os.sched_setaffinity(0, {a.core})
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(90))
        s0 = steal_ms(a.core)
        late, worst, t = 0, 0.0, time.monotonic()
        end, cycles = t + a.seconds, 0
        while t < end:
            t += 0.001
            d = t - time.monotonic()
            if d > 0:
                time.sleep(d)
            lateness = time.monotonic() - t
            cycles += 1
            if lateness > 0.002:
                late += 1
            if lateness > worst:
                worst = lateness
        out = {"load": a.load, "core": a.core, "cycles": cycles, "late_over_2ms": late,
               "max_lateness_ms": round(worst * 1e3, 2), "steal_ms": steal_ms(a.core) - s0}
    finally:
        for p in load:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    print(json.dumps(out) if a.json else
          f"{a.load}: {out['cycles']} wake-ups on core {a.core}, {late} more than 2 ms late, "
          f"worst {out['max_lateness_ms']} ms; steal on the core {out['steal_ms']} ms")


if __name__ == "__main__":
    main()
