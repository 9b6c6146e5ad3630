#!/usr/bin/env bash
# Load + detect + register a 512x512x300 phantom series with Stylet and with a pydicom + scipy.ndimage
# peer doing the same steps, on the same files. Needs: cargo; pip install pydicom numpy scipy.
# Usage: bench/ct_register_side_by_side.sh [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-11}"
tmp="$(mktemp -d)"
cargo build --release -q
./target/release/stylet sim phantom --seed "$seed" --dims 512,512,300 --spacing-mm 0.7,0.7,1.0 --dicom --out "$tmp" > /dev/null
sync
for run in 1 2 3; do
  start=$(date +%s.%N)
  ./target/release/stylet register --json --ct "$tmp/dicom" --robot-fiducials config/robot/marker_frame.txt > "$tmp/stylet.json"
  end=$(date +%s.%N)
  echo "stylet run $run: $(echo "$end - $start" | bc) s"
done
for run in 1 2 3; do
  python3 bench/ct_register_peer.py "$tmp/dicom" config/robot/marker_frame.txt > "$tmp/peer.json"
  echo "peer run $run: $(python3 -c "import json;print(round(json.load(open('$tmp/peer.json'))['total_s'],3))") s"
done
cat "$tmp/peer.json"; echo
python3 - "$tmp" <<'PY'
import json, sys
import numpy as np
d = sys.argv[1]
a = np.array(json.load(open(d + "/stylet.json"))["robot_from_ct"]); b = np.array(json.load(open(d + "/peer.json"))["robot_from_ct"])
t = np.array(json.load(open(d + "/truth.json"))["tumour_in_ct_lps_mm"] + [1.0])
print("stylet vs peer at the tumour: %.4f mm" % np.linalg.norm((a @ t)[:3] - (b @ t)[:3]))
PY
rm -rf "$tmp"
