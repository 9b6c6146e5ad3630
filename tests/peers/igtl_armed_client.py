#!/usr/bin/env python3
"""3D Slicer's side of `stylet procedure --igtl`, scripted with pyigtl and driven line by line
from stdin, so that a test can interleave it with the operator's keys at the console:

  connect              connect to 127.0.0.1:PORT (a new connection each time)
  cmd PHASE [WAIT_S]   send STRING CMD_<n> PHASE; report its ACK and the STATUS named after the
                       phase within WAIT_S seconds (default 10; 0: do not wait for one)
  close                disconnect
  quit

Each command prints one JSON line. Exit 3 when pyigtl is missing.

Usage: igtl_armed_client.py PORT"""
import json
import sys
import time

try:
    import pyigtl
    import igtl_status  # noqa: F401 (registers STATUS with pyigtl)
except ImportError as e:  # pragma: no cover
    print(f"pyigtl is not installed: {e} (pip install pyigtl)", file=sys.stderr)
    sys.exit(3)



port = int(sys.argv[1])
client, n = None, 0


def say(**what):
    print(json.dumps(what), flush=True)


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "connect":
        client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=port)
        deadline = time.time() + 10
        while not client.is_connected() and time.time() < deadline:
            time.sleep(0.05)
        say(connected=client.is_connected())
    elif words[0] == "cmd":
        phase, wait_s = words[1], float(words[2]) if len(words) > 2 else 10.0
        n += 1
        client.send_message(pyigtl.StringMessage(phase, device_name=f"CMD_{n:04d}"), wait=True)
        ack = client.wait_for_message(f"ACK_{n:04d}", timeout=10)
        out = {"phase": phase, "ack": ack.string if ack is not None else None}
        if wait_s > 0:
            st = client.wait_for_message(phase, timeout=wait_s)
            if st is not None:
                out.update(status=st.code, error=st.error_name, text=st.status_string)
        say(**out)
    elif words[0] == "close":
        client.stop()
        client = None
        say(closed=True)
    elif words[0] == "quit":
        break
if client is not None:
    client.stop()
