#!/usr/bin/env python3
"""docs/soup.md, the SOUP list (IEC 62304, 8.1.2): every third-party crate the workspace names
directly, with what Stylet uses it for, the version Cargo.lock resolves it to, its licence, and
which of Stylet's crates use it (and whether only to test or benchmark).

    python3 .ci/soup.py          writes docs/soup.md
    python3 .ci/soup.py --check  fails when docs/soup.md is not what it would write, or when a
                                 direct dependency has no purpose below (CI runs this)

Versions and licences come from `cargo metadata` (offline, from Cargo.lock); the purposes are
written here by hand, one line per crate."""
import json
import subprocess
import sys
from pathlib import Path

PURPOSE = {
    "anyhow": "errors with context in the binary (the libraries use thiserror)",
    "clap": "the command line: arguments, help, value parsers",
    "clap_complete": "shell completions (`stylet completions SHELL`)",
    "clap_mangen": "man pages (`stylet man`)",
    "crc": "CRC-32C of procedure-log lines and of the controller's wire frames, CRC-64 of OpenIGTLink bodies",
    "criterion": "benchmarks (docs/PERFORMANCE.md); not shipped",
    "dicom-core": "DICOM data elements and values (dicom-rs)",
    "dicom-dictionary-std": "the standard DICOM tag dictionary (dicom-rs)",
    "dicom-encoding": "DICOM transfer-syntax encoding for the network node (dicom-rs)",
    "dicom-object": "reading and writing DICOM files and datasets (dicom-rs)",
    "dicom-pixeldata": "decoding CT pixel data, JPEG 2000 included (dicom-rs)",
    "dicom-transfer-syntax-registry": "which transfer syntaxes the DICOM node accepts (dicom-rs)",
    "dicom-ul": "DICOM upper layer: associations, C-STORE, C-ECHO (the DICOM node; dicom-rs)",
    "docsplay": "error messages from doc comments (Display derive)",
    "flate2": "gzip-compressed NIfTI and NRRD volumes",
    "indicatif": "progress bars on long work",
    "k": "the arm's kinematic chain from URDF: forward kinematics, Jacobians, IK",
    "mcap": "the procedure log exported as MCAP (`stylet replay --mcap`)",
    "nalgebra": "linear algebra: frames, transforms, registration, planning geometry",
    "nix": "POSIX calls of the real-time set-up (CPU affinity of the control thread)",
    "openjp2": "JPEG 2000 encoding of CT series written as compressed DICOM (pure-Rust OpenJPEG port)",
    "png": "PNG pictures (plots, CT slices)",
    "proptest": "property tests; not shipped",
    "rand": "seeded randomness: IK restarts, the simulated world",
    "ratatui": "the operator console (terminal UI)",
    "rerun": "telemetry to the rerun viewer and .rrd files (default feature `telemetry`)",
    "rtrb": "wait-free single-producer single-consumer queues between the control loop and its I/O",
    "serde": "serialisation of config, reports and logs",
    "serde_json": "JSON: `--json` output, procedure-log records, reports",
    "serialport": "the serial port of the simulated controller (pty) in the simulation",
    "signal-hook": "SIGINT/SIGTERM end a real-time run as a leaving operator does",
    "thiserror": "error types of the libraries",
    "thread-priority": "SCHED_FIFO priorities of the control and driver threads",
    "tokio": "async I/O: OpenIGTLink server, serial link, respiratory sensor, DICOM suite",
    "tokio-serial": "the serial link to the motor controller and serial respiratory sensors",
    "toml": "config files (config/*.toml)",
    "tracing": "log events in the libraries",
    "tracing-subscriber": "the binary's log output (human-readable or JSON, STYLET_LOG, -v)",
    "urdf-rs": "reading URDF and xacro robot descriptions",
}


def metadata():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--offline", "--locked"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def rows(m):
    packages = {p["id"]: p for p in m["packages"]}
    nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
    members = set(m["workspace_members"])
    found = {}
    for mid in sorted(members, key=lambda i: packages[i]["name"]):
        member = packages[mid]
        for dep in nodes[mid]["deps"]:
            pkg = packages[dep["pkg"]]
            if dep["pkg"] in members or pkg.get("source") is None:
                continue
            kinds = {k["kind"] or "normal" for k in dep["dep_kinds"]}
            r = found.setdefault((pkg["name"], pkg["version"]), {"package": pkg, "users": {}})
            r["users"].setdefault(member["name"], set()).update(kinds)
    return found


def render(found):
    lines = [
        "# SOUP: the third-party software Stylet is built from",
        "",
        "Software of unknown provenance (IEC 62304: identified under 8.1.2, its published anomaly lists",
        "evaluated under 7.1.3): every crate the workspace names",
        "directly, the version `Cargo.lock` pins, its licence (SPDX, as the crate declares it) and what",
        "Stylet uses it for. Written by `python3 .ci/soup.py` from `cargo metadata`; `.ci/run` checks",
        "that this file is current (`--check`). Their own dependencies are in the SBOM:",
        "`.ci/run` writes it for the shipped binary with cargo-cyclonedx (CycloneDX 1.5 JSON,",
        "`target/sbom/stylet.cdx.json`), and holds every crate in the tree to the licence and source",
        "policy of `deny.toml` with `cargo deny check licenses bans sources`. The advisory check",
        "(`cargo deny check advisories`, 7.1.3) fetches the RustSec database, so it runs where the",
        "network reaches it (not in CI here): run it before every release. By hand:",
        "",
        "```sh",
        "cargo install --locked cargo-deny@0.20.2 cargo-cyclonedx@0.5.9",
        "cargo deny check                      # licences, bans, sources and advisories (network)",
        "cargo cyclonedx --manifest-path crates/stylet/Cargo.toml --describe binaries --format json \\",
        "  --spec-version 1.5 --no-build-deps  # crates/stylet/stylet_bin.cdx.json",
        "```",
        "",
        "| crate | version | licence | used by | purpose |",
        "|---|---|---|---|---|",
    ]
    missing = []
    for (name, version), r in sorted(found.items()):
        users = []
        for user, kinds in sorted(r["users"].items()):
            only = sorted(k for k in kinds if k != "normal")
            users.append(f"{user} ({', '.join(only)})" if "normal" not in kinds else user)
        purpose = PURPOSE.get(name)
        if purpose is None:
            missing.append(name)
        lic = r["package"].get("license") or "see its licence file"
        lines.append(f"| {name} | {version} | {lic} | {', '.join(users)} | {purpose or '?'} |")
    lines.append("")
    return "\n".join(lines), missing


def main():
    root = Path(__file__).resolve().parent.parent
    text, missing = render(rows(metadata()))
    path = root / "docs" / "soup.md"
    if missing:
        print(f"no purpose written in .ci/soup.py for: {', '.join(missing)}", file=sys.stderr)
        return 1
    if "--check" in sys.argv[1:]:
        if not path.exists() or path.read_text() != text:
            print("docs/soup.md is not current: run python3 .ci/soup.py", file=sys.stderr)
            return 1
        rows_written = sum(1 for line in text.splitlines() if line.startswith("| ") and not line.startswith("| crate "))
        print(f"docs/soup.md is current ({rows_written} direct dependencies)")
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
