#!/usr/bin/env python3
# Issue 16's paired ratios from a bench results.json: per function, the median
# over rounds of the per-round ratio (each round runs every policy back to back),
# so round-to-round drift of TCG guests cancels. Usage: issue16-paired.py RESULTS.json
import json,sys,statistics as st,collections
d=json.load(open(sys.argv[1]))
lat=collections.defaultdict(dict); rep=collections.defaultdict(dict); un={}
for x in d['runs']:
    if x.get('error'): continue
    m=x['metrics']
    if x['experiment']=='latency' and x['n']==1:
        lat[(x['function'],x['run'])][x['policy']]=(m['e2e_ms'],m['e2e_ms']-m['guest_fn_ms'],m.get('mem_file_major_faults'))
        if x['policy']=='snapbpf-other':
            un.setdefault(x['function'],[]).append(m['ws_untouched_pages']/m['ws_pages'])
    if x['experiment']=='replay' and x['n']==1:
        rep[(x['function'],x['run'])][x['policy']]=m['e2e_ms']
fns=sorted(set(f for f,r in lat))
med=lambda v: st.median(v) if v else float('nan')
print('function | snap/warm | snap/lazy | lesscomp snap/lazy | lesscomp warm/lazy | other/warm | other/lazy | untouched(other) | memfaults snap | replay snap/min(reap,faasnap)')
rr=[]
for f in fns:
    rs=[lat[k] for k in lat if k[0]==f]
    def pr(a,b,i=0): return med([r[a][i]/r[b][i] for r in rs if a in r and b in r])
    reps=[rep[k] for k in rep if k[0]==f]
    rpl=med([r['snapbpf']/min(r['reap'],r['faasnap']) for r in reps if 'snapbpf' in r and 'reap' in r and 'faasnap' in r])
    rr.append(rpl)
    mf=[r['snapbpf'][2] for r in rs if 'snapbpf' in r]
    print(f'{f} | {pr("snapbpf","warm"):.2f} | {pr("snapbpf","lazy"):.2f} | {pr("snapbpf","lazy",1):.2f} | {pr("warm","lazy",1):.2f} | {pr("snapbpf-other","warm"):.2f} | {pr("snapbpf-other","lazy"):.2f} | {100*med(un.get(f,[])):.1f}% | {min(mf)}-{max(mf)} | {rpl:.2f}')
print('replay mean paired', round(st.mean(rr),3))
