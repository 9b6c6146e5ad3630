#!/usr/bin/env bash
# Soak of the real-time control loop under load (docs/PERFORMANCE.md, "Real-time soak"): builds the
# release binary, then bench/soak.py with the arguments given (see its --help), e.g.
#   bench/soak.sh --bringups 200 --demos 50 --load busy
#   bench/soak.sh --bringups 200 --demos 50 --load build
#   bench/soak.sh --bringups 50 --demos 10 --load busy --refused
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
exec python3 bench/soak.py "$@"
