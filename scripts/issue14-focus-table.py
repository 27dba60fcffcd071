#!/usr/bin/env python3
"""Table from scripts/measure-issue14-focus.sh (raw JSON in /var/tmp/issue14/focus)."""
import json, glob, statistics as st
R='/var/tmp/issue14/focus'
cells="image:6:1 aes:5:4 aes:6:4 bert:4:4 bert:5:4 bert:6:4 json:5:4 json:6:4".split()
def e2e(p):
    return max(v['e2e_ms'] for v in json.load(open(p))['vms'])
def mf(p):
    v=json.load(open(p))['vms']; return sum(x['mem_file_major_faults'] for x in v)/len(v)
print("| function | input | N | lazy ms | snapbpf ms | paired snapbpf / lazy (median) | rounds snapbpf faster | per-round ratios | faults lazy / snapbpf |")
print("|---|---|---|---:|---:|---:|---|---|---|")
for c in cells:
    f,i,n=c.split(':')
    rs=[]; ls=[]; ss=[]; fl=[]; fs=[]
    for r in range(1,10):
        l=f'{R}/{f}.{i}.n{n}.lazy.{r}.json'; s=f'{R}/{f}.{i}.n{n}.snapbpf.{r}.json'
        try: a,b=e2e(l),e2e(s)
        except Exception: continue
        ls.append(a); ss.append(b); rs.append(b/a); fl.append(mf(l)); fs.append(mf(s))
    print(f"| {f} | {i} | {n} | {st.median(ls):.0f} | {st.median(ss):.0f} | {st.median(rs):.2f} | {sum(x<1 for x in rs)} of {len(rs)} | {' '.join('%.2f'%x for x in rs)} | {st.median(fl):g} / {st.median(fs):g} |")
