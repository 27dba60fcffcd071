#!/bin/bash
# How much of a working set recorded on input 1 another input leaves untouched,
# against single cold runs (docs/measurements/issue3.md, session 5). Needs the
# snapshots and input-1 sets of scripts/measure-issue3.sh in $I/snaps. Then:
# python3 scripts/other-input-table.py $R $I
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
I=${I:-/var/tmp/issue3}
R=${R:-/var/tmp/other-input}
REPS=${REPS:-3}
mkdir -p $R
for f in aes bert gzip image json linpack rnn alloc; do
  S=$R/$f
  rm -rf $S; mkdir -p $S/wset
  cp -a $I/snaps/$f/manifest.json $I/snaps/$f/state $S/
  ln $I/snaps/$f/mem $S/mem 2>/dev/null || cp -a $I/snaps/$f/mem $S/mem
  for in in 1 2; do
    for r in $(seq 1 $REPS); do
      # One cold nora run under capture: the pages this input touched.
      $B record --snapshot $S --input $in --runs 1 --json > /dev/null
      $B ws show $S/wset/default.ws --json > $R/$f.in$in.$r.json
    done
  done
  echo "$(date +%T) $f done"
done
