#!/usr/bin/env bash
# Accuracy study (docs/PERFORMANCE.md): `stylet demo` over many seeds of the nominal scenarios,
# JOBS runs at a time, then the tip-to-target error (mean, p95, max) and the CTs per insertion.
# Each run drives a real-time supervisor: on a 2-core machine keep JOBS=1 and other work niced.
#
#   bench/accuracy.sh [RUNS_PER_SCENARIO] [JOBS] [SCENARIO...]
#   default: 13 seeds of easy, near-vessel, dome and irregular-breathing (52 runs), 1 at a time
#   ACCURACY_TRACES=DIR adds one easy run per recording in DIR, the patient breathing it
#   (e.g. ../shared/data/respiration/krilavicius: 15 real traces).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-13}
jobs=${2:-1}
shift $(( $# > 2 ? 2 : $# )) || true
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(easy near-vessel dome irregular-breathing)
# STYLET=path uses that binary (e.g. a copy, so rebuilding meanwhile does not matter).
if [ -z "${STYLET:-}" ]; then cargo build --release --quiet; fi
export STYLET=${STYLET:-./target/release/stylet}
out=${ACCURACY_OUT:-target/accuracy}
# ACCURACY_RESUME=1 keeps the runs already done (a JSON summary) and runs the rest.
[ -n "${ACCURACY_RESUME:-}" ] || rm -rf "$out"
mkdir -p "$out"
for s in "${scenarios[@]}"; do
  for seed in $(seq 101 $((100 + runs))); do
    if [ -n "${ACCURACY_RESUME:-}" ] && python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$out/$s-$seed.json" 2>/dev/null; then
      continue
    fi
    echo "$s $seed -"
  done
done > "$out/jobs"
if [ -n "${ACCURACY_TRACES:-}" ]; then
  k=0
  for t in "$ACCURACY_TRACES"/*.csv; do
    k=$((k + 1))
    echo "easy $((900 + k)) $t" >> "$out/jobs"
  done
fi
xargs -P "$jobs" -n 3 sh -c '
  trace=""; [ "$2" = "-" ] || trace="--breathing-trace $2"
  "$STYLET" demo --json --scenario "config/scenarios/$0.toml" --seed "$1" $trace --out "'"$out"'/$0-$1" \
    > "'"$out"'/$0-$1.json" 2> "'"$out"'/$0-$1.err" || true
  printf "%s seed %s done\n" "$0" "$1" >&2' < "$out/jobs"
python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
rows, failed = [], []
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(f)[:-5]
    try:
        v = json.load(open(f))
    except Exception:
        failed.append((name, open(f[:-5] + ".err").read().strip().splitlines()[-1:]))
        continue
    rows.append((name, v))
done = [(n, v) for n, v in rows if v.get("outcome") == "done"]
err = sorted(v["tip_error_mm"] for _, v in done)
cts = [v["checkpoint_cts"] for _, v in done]
def p(q):
    return err[min(len(err) - 1, int(round(q * (len(err) - 1))))] if err else float("nan")
print(f"runs {len(rows) + len(failed)}, completed {len(done)}, failed {len(failed)}")
if err:
    print(f"tip-to-target error mm: mean {statistics.mean(err):.2f}, median {p(0.5):.2f}, p95 {p(0.95):.2f}, max {err[-1]:.2f}")
    print(f"CTs with the needle per procedure (confirmation + checkpoints): mean {statistics.mean(cts):.2f}, "
          f"<=2: {sum(c <= 2 for c in cts)}/{len(cts)}, max {max(cts)}; re-insertions: "
          f"{sum(v.get('reinsertions', 0) for _, v in done)}")
    keys = ["liver_since_confirmation_ct_mm", "hidden_calibration_at_tip_mm", "needle_deflection_mm"]
    for k in keys:
        xs = [v["error_sources_at_the_tip"][k] for _, v in done if v.get("error_sources_at_the_tip")]
        if xs:
            print(f"  {k}: mean {statistics.mean(xs):.2f}, max {max(xs):.2f}")
    print(f"wire monitor violations: {sum(v['wire_monitor_violations'] for _, v in rows)}")
    for s in sorted({n.rsplit('-', 1)[0] for n, _ in done}):
        e = sorted(v["tip_error_mm"] for n, v in done if n.rsplit('-', 1)[0] == s)
        print(f"  {s}: n {len(e)}, mean {statistics.mean(e):.2f}, max {e[-1]:.2f}")
for n, e in failed:
    print(f"FAILED {n}: {e}")
PY
