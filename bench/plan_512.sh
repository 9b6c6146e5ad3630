#!/usr/bin/env bash
# Full plan of a 512x512x300 phantom (0.7 x 0.7 x 1.0 mm) from its NIfTI CT and label map:
# prints each run's plan time (plan_seconds: from the loaded volumes to the ranked plans), the
# candidate lines and the path-feasible count, then the median. Needs: cargo.
# Usage: bench/plan_512.sh [RUNS]   (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-7}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cargo build --release -q
./target/release/stylet sim phantom --dims 512,512,300 --spacing-mm 0.7,0.7,1.0 --out "$tmp" > /dev/null
for _ in $(seq "$runs"); do
  ./target/release/stylet plan --ct "$tmp/ct.nii.gz" --labels "$tmp/labels.nii.gz" --tumour 3 --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["plan_seconds"], r["report"]["candidates"], r["report"]["path_feasible"])'
done | tee "$tmp/times"
sort -n "$tmp/times" | awk '{a[NR]=$1} END {print "median plan_seconds:", a[int((NR+1)/2)]}'
