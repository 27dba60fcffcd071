#!/usr/bin/env python3
"""Table of scripts/measure-other-input.sh: the input-1 working set against
single cold runs of inputs 1 and 2. Usage: scripts/other-input-table.py R I"""
import json
import statistics
import sys

R, I = sys.argv[1], sys.argv[2]


def pages(path):
    out = set()
    for first, n in json.load(open(path))["extents"]:
        out.update(range(first, first + n))
    return out


print("| function | WS(1) pages | one run, input 2: pages | WS(1) not touched by input 2 (of WS(1)) | input 2 touched, not in WS(1) (of touched) | same for input 1: not touched / touched not in WS |")
print("|---|---:|---:|---:|---:|---:|")
for f in ["aes", "bert", "gzip", "image", "json", "linpack", "rnn", "alloc"]:
    ws = pages(f"{I}/snaps/{f}.ws.json")
    row = {}
    for inp in (1, 2):
        runs = []
        r = 1
        while True:
            try:
                runs.append(pages(f"{R}/{f}.in{inp}.{r}.json"))
            except FileNotFoundError:
                break
            r += 1
        row[inp] = (statistics.median(len(t) for t in runs),
                    statistics.median(len(ws - t) / len(ws) for t in runs),
                    statistics.median(len(t - ws) / len(t) for t in runs))
    n2, un2, miss2 = row[2]
    _, un1, miss1 = row[1]
    print(f"| {f} | {len(ws)} | {n2:g} | {100 * un2:.1f}% | {100 * miss2:.1f}% | {100 * un1:.1f}% / {100 * miss1:.1f}% |")
