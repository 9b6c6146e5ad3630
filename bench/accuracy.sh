#!/usr/bin/env bash
# Accuracy study (docs/PERFORMANCE.md): `stylet demo` in virtual time over many seeds of the
# nominal scenarios, JOBS runs at a time, then the tip-to-target error (mean with its 95 %
# confidence interval, p95, max), the CTs with the needle per insertion, and every run that did
# not complete with its reason.
#
#   bench/accuracy.sh [RUNS_PER_SCENARIO] [JOBS] [SCENARIO...]
#   default: 13 seeds of easy, near-vessel, dome and irregular-breathing (52 runs), 2 at a time
#   ACCURACY_SEED0=N   the first seed is N + 1 (default 100: seeds 101...)
#   ACCURACY_ERRORS=F  every run takes its error sources from scenario F
#                      (e.g. config/scenarios/harder-world.toml: the harder world)
#   ACCURACY_TRACES=DIR adds one easy run per recording in DIR, the patient breathing it
#   (e.g. ../shared/data/respiration/krilavicius: 15 real traces).
#   ACCURACY_REALTIME=1 runs on the wall clock over a pty instead (then keep JOBS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-13}
jobs=${2:-2}
seed0=${ACCURACY_SEED0:-100}
extra=""
[ -z "${ACCURACY_ERRORS:-}" ] || extra="$extra --errors-from $ACCURACY_ERRORS"
[ -z "${ACCURACY_REALTIME:-}" ] || extra="$extra --realtime"
export EXTRA="$extra"
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
  for seed in $(seq $((seed0 + 1)) $((seed0 + runs))); do
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
    echo "easy $((seed0 + 900 + k)) $t" >> "$out/jobs"
  done
fi
xargs -P "$jobs" -n 3 sh -c '
  trace=""; [ "$2" = "-" ] || trace="--breathing-trace $2"
  "$STYLET" demo --json --scenario "config/scenarios/$0.toml" --seed "$1" $trace $EXTRA --out "'"$out"'/$0-$1" \
    > "'"$out"'/$0-$1.json" 2> "'"$out"'/$0-$1.err" || true
  printf "%s seed %s done\n" "$0" "$1" >&2' < "$out/jobs"
python3 - "$out" <<'PY'
import glob, json, math, os, statistics, sys
out = sys.argv[1]
rows, failed = [], []
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(f)[:-5]
    try:
        v = json.load(open(f))
    except Exception:
        lines = open(f[:-5] + ".err").read().strip().splitlines()
        failed.append((name, lines[-1:] or ["no output"]))
        continue
    rows.append((name, v))
done = [(n, v) for n, v in rows if v.get("outcome") == "done"]
for n, v in rows:
    if v.get("outcome") != "done":
        failed.append((n, [json.dumps(v.get("driver", {}).get("outcome"))]))
err = sorted(v["tip_error_mm"] for _, v in done)
n_all = len(rows) + len([f for f in failed if f[0] not in dict(rows)])
def p(q):
    return err[min(len(err) - 1, int(round(q * (len(err) - 1))))] if err else float("nan")
print(f"runs {n_all}, completed {len(done)} ({100 * len(done) / max(n_all, 1):.1f} %), not completed {n_all - len(done)}")
if err:
    m, sd = statistics.mean(err), statistics.stdev(err) if len(err) > 1 else 0.0
    half = 1.96 * sd / math.sqrt(len(err))
    print(f"tip-to-target error mm: mean {m:.3f} (95 % CI {m - half:.3f}-{m + half:.3f}), median {p(0.5):.2f}, "
          f"p95 {p(0.95):.2f}, max {err[-1]:.2f}")
    # An insertion: one pass of the needle into tissue (a position's first, and each re-insertion).
    ins = [p.get("reinsertions", 0) + 1 for _, v in done for p in v["driver"]["positions"]]
    cts = [p["cts_with_needle"] for _, v in done for p in v["driver"]["positions"]]
    print(f"CTs with the needle (confirmation + checkpoints): {sum(cts) / max(sum(ins), 1):.2f} per insertion, "
          f"{statistics.mean(cts):.2f} per needle position (<=2: {sum(c <= 2 for c in cts)}/{len(cts)}, max {max(cts)}); "
          f"re-insertions {sum(ins) - len(ins)}")
    keys = ["liver_since_planning_ct_mm", "hidden_calibration_at_tip_mm", "needle_deflection_mm", "tissue_push_mm",
            "patient_shift_mm"]
    for k in keys:
        xs = [v["error_sources_at_the_tip"][k] for _, v in done if v.get("error_sources_at_the_tip")]
        if xs:
            print(f"  {k}: mean {statistics.mean(xs):.2f}, max {max(xs):.2f}")
    # The error split along the needle (deeper positive) and across it, over every needle position.
    pos = [q for _, v in done for q in v["truth"].get("positions", []) if "tip_error_along_axis_mm" in q]
    if pos:
        al = [q["tip_error_along_axis_mm"] for q in pos]
        ac = [q["tip_error_across_axis_mm"] for q in pos]
        print(f"  along the needle: mean {statistics.mean(al):+.2f} (deeper +), mean |.| "
              f"{statistics.mean(abs(a) for a in al):.2f}; across it: mean {statistics.mean(ac):.2f}, max {max(ac):.2f}")
    print(f"wire monitor violations: {sum(v['wire_monitor_violations'] for _, v in rows)}")
    for s in sorted({n.rsplit('-', 1)[0] for n, _ in rows}):
        e = sorted(v["tip_error_mm"] for n, v in done if n.rsplit('-', 1)[0] == s)
        k = len([1 for n, _ in rows if n.rsplit('-', 1)[0] == s])
        if e:
            print(f"  {s}: {len(e)}/{k} completed, mean {statistics.mean(e):.2f}, p95 "
                  f"{e[min(len(e) - 1, int(round(0.95 * (len(e) - 1))))]:.2f}, max {e[-1]:.2f}")
for n, e in failed:
    print(f"NOT COMPLETED {n}: {e}")
PY
