#!/bin/bash
# Lazy on a report snapshot vs a full one: is the difference paging or the guest?
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/lr}
mkdir -p $R
for f in ${FNS:-bert alloc}; do
  [ -d $R/$f.full ] || $B snapshot create --function $f --free-pages none --out $R/$f.full --json > $R/$f.full.create.json
  [ -d $R/$f.report ] || $B snapshot create --function $f --out $R/$f.report --json > $R/$f.report.create.json
  for i in $(seq 1 ${RUNS:-5}); do
    for s in full report; do
      for p in warm lazy nora; do
        if [ $p = warm ]; then a="--policy lazy --warm"; else a="--policy $p --cold"; fi
        $B restore --snapshot $R/$f.$s $a --input 1 --json > $R/$f.$s.$p.$i.json
      done
    done
  done
done
echo done
