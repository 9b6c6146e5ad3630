"""A real respiratory belt in ADC counts, at 1000 Hz and at 25 Hz, from the recording systole
(PyPI, GPL-3.0) ships: `systole/datasets/Task1_Respiration.npy`, 25 min of a healthy participant's
respiration at 1000 Hz (Legrand et al., Sci Rep 2020), in volts of a +-10 V input. Written as a
16-bit ADC would give it (counts = (volts + 10) / 20 x 65535), each file the plain CSV that
`stylet resp eval` and the sensor take: `# unit = counts`, `# rate_hz = N`, one value per row.

    python3 belt_from_systole.py OUT_DIR [MINUTES [FROM_MINUTE]]

writes OUT_DIR/belt-1000hz-counts.csv (every sample) and OUT_DIR/belt-25hz-counts.csv (every
40th: a sensor sampling at 25 Hz), MINUTES long (default: all) from FROM_MINUTE (default 0; the
first five minutes hold large movement artefacts). Exit 2 when systole is not installed.
"""

import importlib.util
import os
import sys

import numpy as np


def main() -> int:
    out = sys.argv[1]
    minutes = float(sys.argv[2]) if len(sys.argv) > 2 else None
    start = int(float(sys.argv[3]) * 60 * 1000) if len(sys.argv) > 3 else 0
    spec = importlib.util.find_spec("systole")
    if spec is None or not spec.submodule_search_locations:
        print("systole is not installed (pip install --no-deps systole==0.3.1)", file=sys.stderr)
        return 2
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "Task1_Respiration.npy")
    volts = np.load(path)[start:]
    if minutes is not None:
        volts = volts[: int(minutes * 60 * 1000)]
    counts = np.clip(np.round((volts + 10.0) / 20.0 * 65535.0), 0, 65535).astype(np.int64)
    os.makedirs(out, exist_ok=True)
    for rate, step in ((1000, 1), (25, 40)):
        name = os.path.join(out, f"belt-{rate}hz-counts.csv")
        with open(name, "w") as f:
            f.write(f"# a respiratory belt (systole's Task1_Respiration.npy), 16-bit ADC\n")
            f.write(f"# unit = counts\n# rate_hz = {rate}\nvalue_counts\n")
            f.write("\n".join(str(c) for c in counts[::step]))
            f.write("\n")
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
