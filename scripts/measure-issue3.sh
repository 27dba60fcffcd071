#!/bin/bash
# Issue 3 measurements (docs/measurements/issue3.md, session 2). Run as root from
# the repository after make build; then: python3 scripts/issue3-tables.py $R
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/issue3}
RUNS=${RUNS:-5}
FNS=${FNS:-"aes bert gzip image json linpack rnn alloc"}
mkdir -p $R/snaps $R/raw
log() { echo "$(date +%T) $*" >&2; }
for f in $FNS; do
  S=$R/snaps/$f
  if [ ! -d $S ]; then
    log "$f: create"
    $B snapshot create --function $f --out $S --json > $R/raw/$f.create.json
  fi
  log "$f: record input 1 (the default runs)"
  $B record --snapshot $S --input 1 --json > $R/raw/$f.record1.json
  rm -rf $S.in2 $S.in1b $S.rec
  cp -a $S $S.in2; cp -a $S $S.in1b; cp -a $S $S.rec
  $B record --snapshot $S.in2 --input 2 --json > $R/raw/$f.record2.json
  $B record --snapshot $S.in1b --input 1 --runs 1 --json > $R/raw/$f.record1b.json
  for ws in $S $S.in2 $S.in1b; do
    $B ws show $ws/wset/default.ws --json > $ws.ws.json
  done
  for i in $(seq 1 $RUNS); do
    log "$f: run $i"; uptime >> $R/load.log
    $B restore --snapshot $S --policy lazy --warm --input 1 --json > $R/raw/$f.$i.warm.json
    $B restore --snapshot $S --policy lazy --cold --input 1 --json > $R/raw/$f.$i.lazy.json
    $B restore --snapshot $S --policy nora --cold --input 1 --json > $R/raw/$f.$i.nora.json
    $B restore --snapshot $S --policy snapbpf --cold --input 1 --json > $R/raw/$f.$i.snapbpf.json
    $B record --snapshot $S.rec --input 1 --runs 1 --json > $R/raw/$f.$i.record.json
    $B restore --snapshot $S --policy snapbpf --cold --input 2 --json > $R/raw/$f.$i.snapbpf2.json
    $B restore --snapshot $S --policy nora --cold --input 2 --json > $R/raw/$f.$i.nora2.json
  done
  # The input-independent core: pages common to recordings of inputs 1-3,
  # tried on input 4 against the whole input-1 set, lazy and nora.
  log "$f: core of inputs 1-3, tried on input 4"
  rm -rf $S.in3 $S.in4 $S.core
  cp -a $S $S.in3; cp -a $S $S.in4; cp -a $S $S.core
  $B record --snapshot $S.in3 --input 3 --json > $R/raw/$f.record3.json
  $B record --snapshot $S.in4 --input 4 --json > $R/raw/$f.record4.json
  $B ws merge --common --out $S.core/wset/default.ws $S/wset/default.ws $S.in2/wset/default.ws $S.in3/wset/default.ws
  for ws in $S.in4 $S.core; do
    $B ws show $ws/wset/default.ws --json > $ws.ws.json
  done
  for i in $(seq 1 $RUNS); do
    $B restore --snapshot $S.core --policy snapbpf --cold --input 4 --json > $R/raw/$f.$i.core4.json
    $B restore --snapshot $S --policy snapbpf --cold --input 4 --json > $R/raw/$f.$i.snapbpf4.json
    $B restore --snapshot $S --policy lazy --cold --input 4 --json > $R/raw/$f.$i.lazy4.json
    $B restore --snapshot $S --policy nora --cold --input 4 --json > $R/raw/$f.$i.nora4.json
  done
done
log done
