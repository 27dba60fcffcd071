#!/bin/bash
# Issue 3's targets under one configuration that bounds untouched pages on an
# input the recording never saw: the pages common to recordings of inputs
# 1-3 (ws merge --common) prefetched, readahead kept for the rest
# (restore --keep-readahead). Input 4 (never recorded) and input 1 (one of
# the three), against warm and lazy, plus single cold runs of input 4 for
# the pages it touches. Needs the snapshots and sets of
# scripts/measure-issue3.sh in $I/snaps ($f, $f.core). Then:
# python3 scripts/core-option-table.py $R $I
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
I=${I:-/var/tmp/issue3}
R=${R:-/var/tmp/core-option}
RUNS=${RUNS:-5}
REPS=${REPS:-3}
FNS=${FNS:-"aes bert gzip image json linpack rnn alloc"}
mkdir -p $R/raw $R/touch
log() { echo "$(date +%T) $*" >&2; }
for f in $FNS; do
  S=$I/snaps/$f
  C=$I/snaps/$f.core
  # A scratch snapshot for the single runs: record replaces its stored set.
  T=$R/touch/$f
  rm -rf $T; mkdir -p $T/wset
  cp -a $S/manifest.json $S/state $T/
  ln $S/mem $T/mem 2>/dev/null || cp -a $S/mem $T/mem
  for r in $(seq 1 $REPS); do
    log "$f: one cold run of input 4 ($r)"
    $B record --snapshot $T --input 4 --runs 1 --json > /dev/null
    $B ws show $T/wset/default.ws --json > $R/touch/$f.in4.$r.json
  done
  rm -rf $T
  for i in $(seq 1 $RUNS); do
    log "$f: run $i"; uptime >> $R/load.log
    for in in 4 1; do
      $B restore --snapshot $S --policy lazy --warm --input $in --json > $R/raw/$f.$i.warm$in.json
      $B restore --snapshot $S --policy lazy --cold --input $in --json > $R/raw/$f.$i.lazy$in.json
      $B restore --snapshot $C --policy snapbpf --keep-readahead --cold --input $in --json > $R/raw/$f.$i.corera$in.json
    done
  done
done
log done
