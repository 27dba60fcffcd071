#!/usr/bin/env python3
"""Table from scripts/measure-issue19.sh: python3 issue19-tables.py R."""
import json, os, sys
R = sys.argv[1] if len(sys.argv) > 1 else '/var/tmp/issue14'
FNS = os.environ.get('FNS', "aes gzip image json linpack").split()
def j(p):
    with open(p) as f: return json.load(f)
def pages(p):
    s = set()
    for a, n in j(p)['extents']: s.update(range(a, a + n))
    return s
print("| function | quiet pages | under load: pages (vs quiet) | missing from quiet | extra | foreign left out | second quiet: missing / extra | record wall s quiet / load |")
print("|---|---:|---|---:|---:|---:|---|---|")
for f in FNS:
    d = f'{R}/rec19/{f}'
    if not os.path.exists(f'{d}.quiet2.json'): continue
    q, l, q2 = pages(f'{d}.quiet1.json'), pages(f'{d}.load.json'), pages(f'{d}.quiet2.json')
    rl = j(f'{d}.load.record.json')
    fp = rl.get('foreign_pages', '-')
    wall = lambda k: float(open(f'{d}.{k}.wall').read())
    print(f"| {f} | {len(q)} | {len(l)} ({(len(l) - len(q)) / len(q) * 100:+.1f}%) | {len(q - l)} | {len(l - q)} | {fp} | {len(q - q2)} / {len(q2 - q)} | {wall('quiet1'):.1f} / {wall('load'):.1f} |")
