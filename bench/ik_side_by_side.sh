#!/usr/bin/env bash
# Stylet's needle-axis IK, the k crate's JacobianIkSolver and Orocos KDL's NR_JL on the same random
# reachable lines of the reference arm, from the same home seed, with the same acceptance check.
# Needs: cargo; Debian python3-pykdl (apt-get install python3-pykdl). Usage: bench/ik_side_by_side.sh [LINES]
set -euo pipefail
cd "$(dirname "$0")/.."
lines="${1:-10000}"
tmp="$(mktemp -d)"
cargo run --release -q -- bench ik --lines "$lines" --export-lines "$tmp/lines.json"
/usr/bin/python3 bench/kdl_ik.py "$tmp/lines.json"
rm -rf "$tmp"
