#!/bin/bash
# replayfit: snapbpf before/after (the prefetch hold) against REAP and FaaSnap,
# replay harness at native speed, N=1, rounds interleaved.
set -u
OUT=${OUT:-/var/tmp/replayfit}
A=$OUT/after/snapbpf; B=$OUT/before/snapbpf
R=${R:-8}
TAG=${TAG:-traced}
EXTRA=${EXTRA:-}
mkdir -p $OUT/cli/$TAG
for r in $(seq 1 $R); do
  for f in json chameleon; do
    S=$OUT/snaps/python-$f; T=$S/bench-input-1.trace
    echo "$(date -u +%T) r$r $f load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/cli/$TAG/load
    if (( r % 2 )); then
      $B replay --snapshot $S --trace $T --policies snapbpf --compute sleep $EXTRA --json > $OUT/cli/$TAG/$f-before-$r.json 2>>$OUT/cli/$TAG/err
      $A replay --snapshot $S --trace $T --policies snapbpf,faasnap,reap --compute sleep $EXTRA --json > $OUT/cli/$TAG/$f-after-$r.json 2>>$OUT/cli/$TAG/err
    else
      $A replay --snapshot $S --trace $T --policies reap,faasnap,snapbpf --compute sleep $EXTRA --json > $OUT/cli/$TAG/$f-after-$r.json 2>>$OUT/cli/$TAG/err
      $B replay --snapshot $S --trace $T --policies snapbpf --compute sleep $EXTRA --json > $OUT/cli/$TAG/$f-before-$r.json 2>>$OUT/cli/$TAG/err
    fi
  done
done
echo "$(date -u +%T) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/cli/$TAG/load
