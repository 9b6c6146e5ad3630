#!/usr/bin/env bash
# Exact EDT of one structure of a 512x512x300 phantom label map (0.7 x 0.7 x 1.0 mm): Stylet
# beside scipy.ndimage.distance_transform_edt on the same file. Needs: cargo; pip install numpy scipy.
# Usage: bench/edt_side_by_side.sh [LABEL]   (default 4: the vessels)
set -euo pipefail
cd "$(dirname "$0")/.."
label="${1:-4}"
tmp="$(mktemp -d)"
cargo build --release -q
./target/release/stylet sim phantom --dims 512,512,300 --spacing-mm 0.7,0.7,1.0 --out "$tmp" > /dev/null
echo "stylet: $(./target/release/stylet bench edt --json --labels "$tmp/labels.nii.gz" --label "$label")"
echo "scipy:  $(python3 bench/edt_peer.py "$tmp/labels.nii.gz" "$label")"
rm -rf "$tmp"
