#!/usr/bin/env python3
"""Tables of scripts/measure-core-option.sh: issue 3's targets with the core
of inputs 1-3 prefetched and readahead kept for the rest.
Usage: scripts/core-option-table.py R I"""
import json
import statistics
import sys

R, I = sys.argv[1], sys.argv[2]
FNS = ["aes", "bert", "gzip", "image", "json", "linpack", "rnn", "alloc"]


def pages(path):
    out = set()
    for first, n in json.load(open(path))["extents"]:
        out.update(range(first, first + n))
    return out


def runs(f, name):
    out, i = [], 1
    while True:
        try:
            d = json.load(open(f"{R}/raw/{f}.{i}.{name}.json"))
        except FileNotFoundError:
            return out
        v = d["vms"][0]
        if not v["result_ok"]:
            sys.exit(f"{f} run {i} {name}: result not ok")
        out.append(v)
        i += 1


def med(vs, key):
    return statistics.median(v[key] for v in vs)


print("| function | core pages | one run of input 4: pages | core untouched by input 4 (of core) | input 4 touched, not in core (of touched) |")
print("|---|---:|---:|---:|---:|")
for f in FNS:
    core = pages(f"{I}/snaps/{f}.core.ws.json")
    touched = []
    r = 1
    while True:
        try:
            touched.append(pages(f"{R}/touch/{f}.in4.{r}.json"))
        except FileNotFoundError:
            break
        r += 1
    un = statistics.median(len(core - t) / len(core) for t in touched)
    miss = statistics.median(len(t - core) / len(t) for t in touched)
    n = statistics.median(len(t) for t in touched)
    print(f"| {f} | {len(core)} | {n:g} | {100 * un:.1f}% | {100 * miss:.1f}% |")

for inp in (4, 1):
    print()
    print(f"Input {inp}: e2e ms warm / lazy / core+readahead, ratios, major faults (process-wide; on the memory file)")
    print()
    print("| function | e2e ms warm / lazy / core+ra | core+ra / warm | core+ra / lazy | major faults lazy / core+ra | on the memory file lazy / core+ra | core+ra / lazy faults |")
    print("|---|---|---:|---:|---|---|---:|")
    for f in FNS:
        w, l, c = runs(f, f"warm{inp}"), runs(f, f"lazy{inp}"), runs(f, f"corera{inp}")
        if not c:
            continue
        ew, el, ec = med(w, "e2e_ms"), med(l, "e2e_ms"), med(c, "e2e_ms")
        fl, fc = med(l, "major_faults"), med(c, "major_faults")
        ml, mc = med(l, "mem_file_major_faults"), med(c, "mem_file_major_faults")
        print(f"| {f} | {ew:.0f} / {el:.0f} / {ec:.0f} | {ec / ew:.2f} | {ec / el:.2f} | {fl:g} / {fc:g} | {ml:g} / {mc:g} | {fc / fl:.2f} |")
