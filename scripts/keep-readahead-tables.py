#!/usr/bin/env python3
"""Tables from scripts/measure-keep-readahead.sh's raw JSON."""
import json, os, statistics, sys
R = sys.argv[1] if len(sys.argv) > 1 else '/var/tmp/keep-readahead'
FNS = "aes bert gzip image json linpack rnn alloc".split()
RUNS = int(os.environ.get('RUNS', 5))
med = statistics.median
MiB = 1 << 20
def j(p):
    with open(p) as f: return json.load(f)
def pages(name):
    s = set()
    for p, n in j(f'{R}/ws/{name}.json')['extents']: s.update(range(p, p + n))
    return s
KINDS4 = 'lazy4 ws1-4 ws1ra-4 core4 corera-4'.split()
KINDS1 = 'lazy1 ws1-1 ws1ra-1'.split()
t1, t2 = [], []
for f in FNS:
    if not os.path.exists(f'{R}/raw/{f}.{RUNS}.ws1ra-1.json'): continue
    w1, w4, core = pages(f'{f}.in1'), pages(f'{f}.in4'), pages(f'{f}.core')
    runs = {k: [j(f'{R}/raw/{f}.{i}.{k}.json') for i in range(1, RUNS + 1)] for k in KINDS4 + KINDS1}
    e2e = {k: med(r['vms'][0]['e2e_ms'] for r in v) for k, v in runs.items()}
    mf = {k: med(r['vms'][0]['major_faults'] for r in v) for k, v in runs.items()}
    rd = {k: med((r['vms'][0]['mem_file_read_bytes'] + r['prefetch_bytes']) / MiB for r in v) for k, v in runs.items()}
    un = lambda s: f"{len(s - w4) / len(s) * 100:.1f}%"
    t1.append(f"| {f} | {len(w1)} / {len(core)} / {len(w4)} | {un(w1)} / {un(core)} | "
              + " / ".join(f"{e2e[k]:.0f}" for k in KINDS4) + " | "
              + " / ".join(f"{mf[k]:g}" for k in KINDS4) + " | "
              + " / ".join(f"{rd[k]:.1f}" for k in KINDS4) + " | "
              + f"{e2e['corera-4'] / e2e['lazy4']:.2f} | {e2e['ws1ra-4'] / e2e['lazy4']:.2f} |")
    t2.append(f"| {f} | " + " / ".join(f"{e2e[k]:.0f}" for k in KINDS1) + " | "
              + " / ".join(f"{mf[k]:g}" for k in KINDS1) + " | "
              + " / ".join(f"{rd[k]:.1f}" for k in KINDS1) + " |")
print("### Input 4 (not recorded): lazy / snapbpf WS(1) / WS(1) + readahead / core / core + readahead\n")
print("| function | pages WS(1) / core / input 4 | untouched by input 4: WS(1) / core | e2e ms | major faults | MiB read (prefetch + VMM) | core+ra / lazy | WS(1)+ra / lazy |")
print("|---|---|---|---|---|---|---|---|")
print("\n".join(t1))
print("\n### Input 1 (recorded): lazy / snapbpf WS(1) / WS(1) + readahead\n")
print("| function | e2e ms | major faults | MiB read (prefetch + VMM) |")
print("|---|---|---|---|")
print("\n".join(t2))
