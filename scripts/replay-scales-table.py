#!/usr/bin/env python3
"""Tables of scripts/measure-replay-scales.sh's results: completion (median of
5) per policy, snapbpf / min(reap, faasnap), at native speed and gap scale 1.
Usage: scripts/replay-scales-table.py DIR"""
import json
import sys

d = sys.argv[1]
FNS = ["aes", "bert", "gzip", "image", "json", "linpack", "rnn", "alloc"]
POL = ["lazy", "nora", "snapbpf", "faasnap", "reap"]
for scale in ["native", "scale1"]:
    print(f"\n{'native speed' if scale == 'native' else 'gap scale 1'}: completion ms (major faults)\n")
    print("| function | " + " | ".join(POL) + " | snapbpf / min(reap, faasnap) |")
    print("|---|" + "---:|" * (len(POL) + 1))
    ratios = []
    for f in FNS:
        reps = {r["policy"]: r for r in json.load(open(f"{d}/{f}.{scale}.json"))}
        c = {p: reps[p]["completion_ms"] for p in POL}
        q = c["snapbpf"] / min(c["reap"], c["faasnap"])
        ratios.append(q)
        cells = " | ".join(f"{c[p]:.1f} ({reps[p]['major_faults']:g})" for p in POL)
        print(f"| {f} | {cells} | {q:.2f} |")
    print(f"| **mean** | | | | | | **{sum(ratios) / len(ratios):.3f}** (max {max(ratios):.2f}) |")
