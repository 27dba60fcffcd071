#!/bin/bash
# Harness lazy vs VM lazy, side by side, on the bench snapshots and their traces
# (docs/measurements/issue5.md, session 4); needs a full bench run first (bin/snapbpf bench --full).
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/hv}
mkdir -p $R
for f in aes bert gzip image json linpack rnn alloc; do
  S=/var/lib/snapbpf/bench/snapshots/$f
  for i in 1 2 3 4 5; do
    $B restore --snapshot $S --policy lazy --cold --json > $R/$f.$i.vm.json
    $B replay --snapshot $S --trace $S/bench-input-1.trace --policy lazy --json > $R/$f.$i.rp.json
    $B replay --snapshot $S --trace $S/bench-input-1.trace --policy lazy --include-late --json > $R/$f.$i.rpl.json
  done
  echo "$(date +%T) $f done"
done
