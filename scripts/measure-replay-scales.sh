#!/bin/bash
# Every replay policy on the bench snapshots' traces, one VM, 5 runs each, at
# native speed and at gap scale 1 (docs/measurements/issue5.md, session 5);
# needs a full bench run first (bin/snapbpf bench --full). Then:
# python3 scripts/replay-scales-table.py $R
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/scales}
mkdir -p $R
for f in aes bert gzip image json linpack rnn alloc; do
  S=/var/lib/snapbpf/bench/snapshots/$f
  uptime >> $R/load.log
  $B replay --snapshot $S --trace $S/bench-input-1.trace --policy all --runs 5 --json > $R/$f.native.json
  $B replay --snapshot $S --trace $S/bench-input-1.trace --policy all --runs 5 --gap-scale 1 --json > $R/$f.scale1.json
  echo "$(date +%T) $f done"
done
