#!/usr/bin/env python3
"""Tables for docs/measurements/issue3.md from run.sh's raw JSON."""
import json, os, statistics, sys
R = sys.argv[1] if len(sys.argv) > 1 else '/var/tmp/issue3'
FNS = "aes bert gzip image json linpack rnn alloc".split()
RUNS = 5
med = statistics.median
def j(p):
    with open(p) as f: return json.load(f)
def vm(f, i, kind): return j(f'{R}/raw/{f}.{i}.{kind}.json')['vms'][0]
def top(f, i, kind): return j(f'{R}/raw/{f}.{i}.{kind}.json')
def pages(path, key='extents'):
    s = set()
    for p, n in j(path)[key]: s.update(range(p, p + n))
    return s
def planned(ws, gap=4):
    w = sorted(ws); out = set(w)
    for a, b in zip(w, w[1:]):
        if 1 < b - a <= gap + 1: out.update(range(a, b))
    return out
MiB = 1 << 20
# Faults in the memory file's mapping alone (restore JSON from session 4 on).
def memf(vms): return ' '.join(str(v.get('mem_file_major_faults', '-')) for v in vms)
rows1, rows2, rows3, rows4, rows5 = [], [], [], [], []
for f in FNS:
    if not os.path.exists(f'{R}/raw/{f}.{RUNS}.nora2.json'): continue
    m = j(f'{R}/snaps/{f}/manifest.json')
    ws = j(f'{R}/snaps/{f}.ws.json')
    k = {kind: [vm(f, i, kind) for i in range(1, RUNS + 1)] for kind in 'warm lazy nora snapbpf snapbpf2 nora2'.split()}
    e2e = {x: med(v['e2e_ms'] for v in k[x]) for x in k}
    mf = {x: med(v['major_faults'] for v in k[x]) for x in k}
    rd = {x: med(v['mem_file_read_bytes'] for v in k[x]) / MiB for x in k}
    sb = [top(f, i, 'snapbpf') for i in range(1, RUNS + 1)]
    pms, pmb, pzb = med(s['prefetch_ms'] for s in sb), med(s['prefetch_bytes'] for s in sb) / MiB, med(s['prefetch_zero_bytes'] for s in sb) / MiB
    rows1.append(f"| {f} | {m['mem_mib']} | {ws['bytes']/MiB:.1f} | {ws['zero_pages']*4096/MiB:.1f} | {e2e['warm']:.0f} / {e2e['lazy']:.0f} / {e2e['nora']:.0f} / {e2e['snapbpf']:.0f} | "
                 f"{mf['warm']:g} / {mf['lazy']:g} / {mf['nora']:g} / {mf['snapbpf']:g} | {rd['lazy']:.1f} / {rd['nora']:.1f} / {rd['snapbpf']:.1f} | {pms:.1f} | {pmb:.1f} + {pzb:.1f} | "
                 f"{e2e['snapbpf']/e2e['warm']:.2f} | {e2e['snapbpf']/e2e['lazy']:.2f} | {e2e['snapbpf']/e2e['nora']:.2f} | {mf['snapbpf']/mf['lazy']:.3f} |")
    sbf = sorted(v['major_faults'] for v in k['snapbpf'])
    rows2.append(f"| {f} | {min(v['e2e_ms'] for v in k['warm']):.0f}-{max(v['e2e_ms'] for v in k['warm']):.0f} | "
                 f"{min(v['e2e_ms'] for v in k['lazy']):.0f}-{max(v['e2e_ms'] for v in k['lazy']):.0f} | "
                 f"{min(v['e2e_ms'] for v in k['nora']):.0f}-{max(v['e2e_ms'] for v in k['nora']):.0f} | "
                 f"{min(v['e2e_ms'] for v in k['snapbpf']):.0f}-{max(v['e2e_ms'] for v in k['snapbpf']):.0f} | "
                 f"{med(v['guest_fn_ms'] for v in k['warm']):.0f} / {med(v['guest_fn_ms'] for v in k['snapbpf']):.0f} | {' '.join(map(str, sbf))} | {' '.join(str(v['major_faults']) for v in k['lazy'])} | "
                 f"{memf(k['snapbpf'])} | {memf(k['lazy'])} |")
    rec = [j(f'{R}/raw/{f}.{i}.record.json')['vm']['e2e_ms'] for i in range(1, RUNS + 1)]
    r1 = j(f'{R}/raw/{f}.record1.json')
    rows3.append(f"| {f} | {med(rec):.0f} | {e2e['nora']:.0f} | {med(rec)/e2e['nora']:.3f} | {r1['pages']} | {r1.get('refined_pages', 0)} | {r1.get('margin_pages', 0)} | {r1['zero_pages']} | {r1.get('refined_zero_pages', 0)} |")
    W1 = pages(f'{R}/snaps/{f}.ws.json'); W2 = pages(f'{R}/snaps/{f}.in2.ws.json'); W1b = pages(f'{R}/snaps/{f}.in1b.ws.json')
    P = planned(W1)
    rows4.append(f"| {f} | {len(W1)} | {len(W2)} | {len(W1-W2)} ({100*len(W1-W2)/len(W1):.1f}%) | {len(W2-W1)} ({100*len(W2-W1)/len(W2):.1f}%) | "
                 f"{100*len(W1-W1b)/len(W1):.1f}% / {100*len(W1b-W1)/len(W1b):.1f}% | {e2e['snapbpf2']:.0f} | {e2e['nora2']:.0f} | {mf['snapbpf2']:g} | {mf['nora2']:g} |")
for f in FNS:
    if not os.path.exists(f'{R}/raw/{f}.{RUNS}.nora4.json'): continue
    k = {kind: [vm(f, i, kind) for i in range(1, RUNS + 1)] for kind in 'core4 snapbpf4 lazy4 nora4'.split()}
    e2e = {x: med(v['e2e_ms'] for v in k[x]) for x in k}
    mf = {x: med(v['major_faults'] for v in k[x]) for x in k}
    C = pages(f'{R}/snaps/{f}.core.ws.json'); W1 = pages(f'{R}/snaps/{f}.ws.json'); W4 = pages(f'{R}/snaps/{f}.in4.ws.json')
    rows5.append(f"| {f} | {len(C)} | {len(W1)} | {len(W4)} | {len(C-W4)} ({100*len(C-W4)/len(C):.1f}%) | {len(W4-C)} ({100*len(W4-C)/len(W4):.1f}%) | {100*len(W1-W4)/len(W1):.1f}% | "
                 f"{e2e['core4']:.0f} / {e2e['snapbpf4']:.0f} / {e2e['lazy4']:.0f} / {e2e['nora4']:.0f} | {mf['core4']:g} / {mf['snapbpf4']:g} / {mf['lazy4']:g} / {mf['nora4']:g} |")
print("| function | RAM MiB | WS MiB | touched holes MiB | e2e ms warm / lazy / nora / snapbpf | major faults warm / lazy / nora / snapbpf | VMM read MiB lazy / nora / snapbpf | prefetch ms | prefetch MiB read + zero-filled | snapbpf / warm | snapbpf / lazy e2e | snapbpf / nora e2e | snapbpf / lazy major faults |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows1)); print()
print("| function | e2e warm | lazy | nora | snapbpf | guest fn ms warm / snapbpf | snapbpf major faults, 5 runs | lazy major faults, 5 runs | snapbpf, memory file only | lazy, memory file only |")
print("|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows2)); print()
print("| function | record e2e ms (1 run) | cold nora e2e ms | ratio | recorded pages (all runs, margin) | added by runs 2-8 | margin pages around them | touched holes | holes added by runs 2-8 |")
print("|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows3)); print()
print("| function | WS(1) pages | WS(2) pages | WS(1) not touched by input 2 (of WS(1)) | input 2 pages not in WS(1) (of WS(2)) | same input, one run: WS not touched / touched not in WS | snapbpf e2e ms input 2 | nora e2e ms input 2 | snapbpf major faults input 2 | nora major faults input 2 |")
print("|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows4))
if rows5:
    print()
    print("| function | core pages (common to inputs 1-3) | WS(1) pages | input 4 pages | core not touched by input 4 (of core) | input 4 pages not in core (of input 4) | WS(1) not touched by input 4 (of WS(1)) | e2e ms input 4: snapbpf core / snapbpf WS(1) / lazy / nora | major faults input 4: core / WS(1) / lazy / nora |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows5))
