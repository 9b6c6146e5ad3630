#!/usr/bin/env python3
"""Checks the SBOM of the shipped binary (CycloneDX JSON from cargo-cyclonedx) against Cargo's own
view: every crate `cargo tree -p stylet -e normal` builds into the binary (Stylet's own library
crates included) is a component at the same version with a licence. (The SBOM may list more:
cargo-cyclonedx takes the whole workspace's feature resolution.)

    python3 .ci/check_sbom.py target/sbom/stylet.cdx.json"""
import json
import subprocess
import sys

bom = json.load(open(sys.argv[1]))
assert bom.get("bomFormat") == "CycloneDX", bom.get("bomFormat")
assert bom["metadata"]["component"]["name"] == "stylet", bom["metadata"]["component"]


def walk(components):
    for c in components:
        yield c
        yield from walk(c.get("components", []))


listed = {}
for c in walk(bom.get("components", [])):
    listed[(c["name"], c.get("version"))] = c
tree = subprocess.run(
    ["cargo", "tree", "-p", "stylet", "-e", "normal", "--prefix", "none", "--offline", "--locked", "-f", "{p}"],
    check=True, capture_output=True, text=True,
).stdout
built = set()
for line in tree.splitlines():
    parts = line.split()
    if len(parts) >= 2 and parts[1].startswith("v") and parts[0] != "stylet":
        built.add((parts[0], parts[1][1:]))
missing = sorted(built - set(listed))
extra = sorted(set(listed) - built)
unlicensed = sorted(k for k, c in listed.items() if not c.get("licenses"))
problems = []
if missing:
    problems.append(f"{len(missing)} crate(s) built into the binary but not in the SBOM: {missing[:10]}")
if unlicensed:
    problems.append(f"{len(unlicensed)} component(s) without a licence: {unlicensed[:10]}")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(
    f"SBOM {sys.argv[1]}: {len(listed)} components with their licences: the binary's {len(built)} crates "
    f"and {len(extra)} that the workspace's other crates' features resolve in (cargo-cyclonedx reads the "
    "whole workspace's resolution; a superset errs on the safe side)"
)
