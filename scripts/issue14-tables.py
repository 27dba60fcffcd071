#!/usr/bin/env python3
"""Tables from scripts/measure-issue14.sh's raw JSON: python3 issue14-tables.py R."""
import glob, json, os, statistics, sys
R = sys.argv[1] if len(sys.argv) > 1 else '/var/tmp/issue14'
FNS = os.environ.get('FNS', "aes bert gzip image json linpack rnn alloc").split()
UNSEEN = os.environ.get('UNSEEN', "4 5 6").split()
med = statistics.median
MiB = 1 << 20
def j(p):
    with open(p) as f: return json.load(f)
def pages(p):
    s = set()
    for a, n in j(p)['extents']: s.update(range(a, a + n))
    return s
def runs(f, kind):
    return [j(p) for p in sorted(glob.glob(f'{R}/raw/{f}.[0-9]*.{kind}.json')) if os.path.getsize(p)]
def e2e(rs):  # a batch's end-to-end: its slowest clone, the restore's latency
    return med(max(v['e2e_ms'] for v in r['vms']) for r in rs)
def paired(a, b):  # median over rounds of b/a, each pair run back to back
    return med(max(v['e2e_ms'] for v in y['vms']) / max(v['e2e_ms'] for v in x['vms']) for x, y in zip(a, b))
def mib(rs):  # storage read per batch: the clones' VMM reads plus the prefetch, MiB
    return med((sum(v['mem_file_read_bytes'] for v in r['vms']) + r.get('prefetch_bytes', 0)) / MiB for r in rs)
def mf(rs):  # memory-file major faults per clone, median over rounds of the batch mean
    return med(sum(v['mem_file_major_faults'] for v in r['vms']) / len(r['vms']) for r in rs)
worst = {}
for n in ('1', '4'):
    print(f"\n### N={n}: e2e ms (median of rounds; slowest clone of each batch) and memory-file major faults per clone\n")
    print("| function | input | warm | lazy | snapbpf | snapbpf / lazy | paired | snapbpf / warm | faults lazy / snapbpf | MiB read lazy / snapbpf |" + (" no-readahead ms / faults / vs lazy |" if n == '1' else ""))
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|" + ("---|" if n == '1' else ""))
    for f in FNS:
        w = runs(f, f'warm-1-n{n}')
        if not w: continue
        for i in ['1'] + UNSEEN:
            l, s = runs(f, f'lazy-{i}-n{n}'), runs(f, f'snapbpf-{i}-n{n}')
            if not l or not s: continue
            rl, rs = e2e(l), e2e(s)
            pr = paired(l, s)
            worst[(f, i, n)] = pr
            row = f"| {f} | {i}{' (recorded)' if i == '1' else ''} | {e2e(w):.0f} | {rl:.0f} | {rs:.0f} | {rs / rl:.2f} | {pr:.2f} | {rs / e2e(w):.2f} | {mf(l):g} / {mf(s):g} | {mib(l):.1f} / {mib(s):.1f} |"
            if n == '1':
                st = runs(f, f'strict-{i}-n{n}')
                row += f" {e2e(st):.0f} / {mf(st):g} / {e2e(st) / rl:.2f} |" if st else " |"
            print(row)
print("\n### Working set of input 1 against what each unseen input touches (one capture of it)\n")
print("| function | set pages | input | touched | prefetched, not touched | touched, not prefetched |")
print("|---|---:|---|---:|---:|---:|")
for f in FNS:
    p1 = f'{R}/ws/{f}.in1.json'
    if not os.path.exists(p1): continue
    ws = pages(p1)
    for i in UNSEEN:
        t = pages(f'{R}/ws/{f}.in{i}.json')
        print(f"| {f} | {len(ws)} | {i} | {len(t)} | {len(ws - t)} ({len(ws - t) / len(ws) * 100:.1f}%) | {len(t - ws)} ({len(t - ws) / len(t) * 100:.1f}%) |")
print("\n### Replay harness, 8 clones of the recorded input: host memory (MiB) and written fraction\n")
print("| function | touched pages | written fraction | snapbpf | reap | faasnap | lazy | snapbpf lowest of the three |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for f in FNS:
    p = f'{R}/raw/{f}.replay8.json'
    if not os.path.exists(p): continue
    rep = j(p)
    rep = rep if isinstance(rep, list) else [rep]
    mem = {r['policy']: r['total_memory_bytes'] / MiB for r in rep}
    t = j(f'{R}/raw/{f}.traceshow.json')['trace']
    wf = (t['write_pages'] + t.get('upgrades', 0)) / t['pages']
    low = mem['snapbpf'] <= min(mem['reap'], mem['faasnap'])
    print(f"| {f} | {t['pages']} | {wf:.2f} | {mem['snapbpf']:.1f} | {mem['reap']:.1f} | {mem['faasnap']:.1f} | {mem['lazy']:.1f} | {'yes' if low else 'no'} |")
if worst:
    k = max(worst, key=worst.get)
    print(f"\nWorst paired snapbpf / lazy: {worst[k]:.2f} ({k[0]}, input {k[1]}, N={k[2]}); cells above 1.00: {sum(v > 1.0 for v in worst.values())} of {len(worst)}")
