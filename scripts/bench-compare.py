#!/usr/bin/env python3
"""Compare two bench results.json side by side: per cell (experiment,
function, policy, N, source) the median of the key metric in each, and
whether each median lies within the other run's min-max.
Usage: python3 scripts/bench-compare.py BEFORE/results.json AFTER/results.json"""
import json, statistics, sys
from collections import defaultdict
def cells(p):
    c = defaultdict(list)
    for r in json.load(open(p))['runs']:
        m = r.get('metrics', {})
        v = m.get('e2e_max_ms', m.get('completion_ms', m.get('max_completion_ms')))
        if v is None:
            v = next((m[k] for k in ('throughput_mib_s', 'mem_total_bytes') if k in m), None)
        if v is None:
            continue
        c[(r['experiment'], r['function'], r['policy'], r.get('n', 1), r.get('source', ''))].append(v)
    return c
a, b = cells(sys.argv[1]), cells(sys.argv[2])
print("| experiment | function | policy | N | source | before median (min-max) | after median (min-max) | after/before | each within the other's range |")
print("|---|---|---|---|---|---|---|---:|---|")
inside = total = 0
for k in sorted(set(a) & set(b), key=str):
    x, y = a[k], b[k]
    mx, my = statistics.median(x), statistics.median(y)
    ok = min(y) <= mx <= max(y) and min(x) <= my <= max(x)
    inside += ok; total += 1
    print(f"| {' | '.join(map(str, k))} | {mx:.0f} ({min(x):.0f}-{max(x):.0f}) | {my:.0f} ({min(y):.0f}-{max(y):.0f}) | {my / mx:.2f} | {'yes' if ok else 'no'} |")
print(f"\n{inside} of {total} cells within each other's range")
