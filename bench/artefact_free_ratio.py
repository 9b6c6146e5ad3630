#!/usr/bin/env python3
"""Prediction ratio of a surrogate trace with and without its movement artefacts.

    stylet resp eval --trace BELT.csv --horizon-ms 400 --timeline /tmp/belt-timeline.csv
    python3 bench/artefact_free_ratio.py /tmp/belt-timeline.csv

Reads the run `stylet resp eval --timeline` writes (t_s, value_mm, predicted_mm, ...; the
horizon in its first line) and prints the prediction RMSE over the RMSE of holding the last
sample, over the whole run and over its artefact-free stretches. An artefact: a sample more than
6 median absolute deviations from the trace's median, widened by 5 s on each side; those samples
are left out of both RMSEs. The first 10 s (the processor's warm-up) are not scored, as in
`resp eval`. A diagnostic of the signal, not of the gate: the processor itself never looks ahead.
"""
import sys

import numpy as np


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    if not first.startswith("# horizon_s = "):
        print(f"{path}: not a `resp eval --timeline` file (first line {first.strip()!r})", file=sys.stderr)
        return 2
    horizon_s = float(first.split("=")[1])
    d = np.genfromtxt(path, delimiter=",", skip_header=2, usecols=(0, 1, 2))
    t, v, p = d[:, 0], d[:, 1], d[:, 2]
    at = t + horizon_s
    scored = (t - t[0] >= 10.0) & (at <= t[-1])
    truth = np.interp(at, t, v)
    median = np.median(v)
    mad = np.median(np.abs(v - median))
    wild = np.abs(v - median) > 6.0 * mad
    dt = float(np.median(np.diff(t)))
    half = int(round(5.0 / dt))
    near = np.convolve(wild.astype(float), np.ones(2 * half + 1), mode="same") > 0
    # A prediction is near an artefact when its own time or its target's is.
    target_near = np.interp(at, t, near.astype(float)) > 0
    clean = scored & ~near & ~target_near

    def ratio(m):
        e = p[m] - truth[m]
        h = v[m] - truth[m]
        return float(np.sqrt(np.mean(e**2)) / np.sqrt(np.mean(h**2)))

    print(f"horizon {horizon_s * 1e3:.0f} ms")
    print(f"whole run:           ratio {ratio(scored):.3f} over {scored.sum()} predictions")
    print(
        f"artefact-free parts: ratio {ratio(clean):.3f} over {clean.sum()} predictions "
        f"({100.0 * clean.sum() / scored.sum():.0f} % of the run; {wild.sum()} artefact samples)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
