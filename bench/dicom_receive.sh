#!/usr/bin/env bash
# Receiving a 512 x 512 x 300 CT series (uncompressed, 150 MiB) from DCMTK's storescu on loopback:
# into `stylet dicom listen` (stored, complete, then loaded as a volume) and, side by side, into
# DCMTK's own storescp. Prints per run the transfer time (storescu start to its exit, the series
# stored), stylet's time to the loaded volume, and the medians. Needs: cargo, dcmtk.
# Debian's DCMTK keeps Nagle's algorithm on unless TCP_NODELAY=1 is in the environment; with it on,
# storescu -> storescp takes about 45 ms per instance (the peer's delayed ACK), so both DCMTK tools
# run with TCP_NODELAY=1 here (the node sets it on its own sockets).
# Usage: bench/dicom_receive.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
export TCP_NODELAY=1
runs="${1:-5}"
tmp="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
cargo build --release -q
stylet=./target/release/stylet
# DCMTK's own tools (pynetdicom installs Python apps with the same names).
dcmtk() { for d in $(echo "$PATH" | tr : ' ') /usr/bin; do
  # grep reads all of it (grep -q would stop early, and pipefail would see the tool's SIGPIPE).
  if [ -x "$d/$1" ] && "$d/$1" --version 2>/dev/null | grep -i dcmtk > /dev/null; then echo "$d/$1"; return; fi; done
  echo "DCMTK's $1 not found (apt install dcmtk)" >&2; exit 1; }
storescu=$(dcmtk storescu); storescp=$(dcmtk storescp); echoscu=$(dcmtk echoscu)
$stylet sim phantom --dims 512,512,300 --spacing-mm 0.7,0.7,1.0 --dicom --out "$tmp/src" > /dev/null
now() { python3 -c 'import time; print(time.monotonic())'; }
for r in $(seq "$runs"); do
  # stylet: quiet time 0.2 s; the "complete" line comes after the volume is loaded.
  rm -rf "$tmp/rx"; mkfifo "$tmp/out.$r"
  $stylet dicom listen --port 0 --out "$tmp/rx" --json --series 1 --quiet-s 0.2 > "$tmp/out.$r" &
  exec 3< "$tmp/out.$r"
  read -r first <&3
  port=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["address"].rsplit(":",1)[1])' "$first")
  t0=$(now); "$storescu" -aet BENCH -aec STYLET 127.0.0.1 "$port" "$tmp/src/dicom/"* ; t1=$(now)
  read -r done <&3; t2=$(now); exec 3<&-; wait
  echo "$done" | grep -q '"state":"complete"' || { echo "not complete: $done" >&2; exit 1; }
  # DCMTK's storescp on the same series.
  rm -rf "$tmp/scp"; mkdir -p "$tmp/scp"
  "$storescp" -od "$tmp/scp" --fork 11190 & scp=$!
  for _ in $(seq 50); do "$echoscu" 127.0.0.1 11190 2>/dev/null && break; sleep 0.1; done
  u0=$(now); "$storescu" -aet BENCH -aec ANY-SCP 127.0.0.1 11190 "$tmp/src/dicom/"* ; u1=$(now)
  kill $scp; wait $scp 2>/dev/null || true
  python3 -c "import sys; a=[float(x) for x in sys.argv[1:]]; print(f'stylet transfer {a[1]-a[0]:.2f} s, to the loaded volume {a[2]-a[0]:.2f} s; storescp transfer {a[4]-a[3]:.2f} s')" "$t0" "$t1" "$t2" "$u0" "$u1"
done | tee "$tmp/times"
python3 - "$tmp/times" <<'PY'
import re, statistics, sys
rows = [list(map(float, re.findall(r"([\d.]+) s", l))) for l in open(sys.argv[1])]
m = [statistics.median(c) for c in zip(*rows)]
print(f"median over {len(rows)} runs: stylet transfer {m[0]:.2f} s, to the loaded volume {m[1]:.2f} s; "
      f"storescp transfer {m[2]:.2f} s (stylet/storescp {m[0]/m[2]:.2f})")
PY
