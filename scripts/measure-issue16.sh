#!/bin/bash
# Python functions (issue 16): snapshot each one, then restore it cold under
# lazy on both input shapes and once under nora; raw JSON in $R, one line per
# cell on stdout. Needs the python image: bin/snapbpf image build --runtime python
# (RT=python-torch FNS=rnn: the torch image, --runtime python-torch).
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/issue16}
FNS=${FNS:-"hello pyaes json gzip image matmul linpack chameleon"}
RT=${RT:-python}
mkdir -p $R
for f in $FNS; do
  S=$R/snap-$f
  [ -f $R/$f.create.json ] || $B snapshot create --runtime $RT --function $f --out $S --replace --json > $R/$f.create.json
  for s in 1 2; do
    [ -f $R/$f.lazy.$s.json ] || $B restore --snapshot $S --policy lazy --cold --input $s --json > $R/$f.lazy.$s.json
  done
  [ -f $R/$f.nora.1.json ] || $B restore --snapshot $S --policy nora --cold --input 1 --json > $R/$f.nora.1.json
  jq -r --arg f $f '[$f, (.stats.boot_ms|round), (.stats.init_ms|round), (.snapshot.manifest.mem_data_bytes/1048576|round), .snapshot.manifest.state_size] | @tsv' $R/$f.create.json
  for c in lazy.1 lazy.2 nora.1; do
    jq -r --arg c $c '["  "+$c, (.vms[0].guest_fn_ms|round), (.vms[0].resume_to_result_ms|round), (.vms[0].e2e_ms|round), (.vms[0].host_fn_ms|round), (.vms[0].mem_file_read_bytes/1048576*10|round/10), .vms[0].result_ok] | @tsv' $R/$f.$c.json
  done
done
