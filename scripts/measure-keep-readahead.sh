#!/bin/bash
# snapbpf with readahead kept on outside the working set (restore
# --keep-readahead), on an input the recording did not see (input 4): the
# input-1 set and the core of inputs 1-3 (ws merge --common), each with
# readahead off (the policy as the issue defines it) and on, against lazy;
# and on the recorded input 1. Run as root from the repository after make
# build; then: python3 scripts/keep-readahead-tables.py $R
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/keep-readahead}
RUNS=${RUNS:-5}
FNS=${FNS:-"aes bert gzip image json linpack rnn alloc"}
mkdir -p $R/snaps $R/raw $R/ws
log() { echo "$(date +%T) $*" >&2; }
for f in $FNS; do
  S=$R/snaps/$f
  if [ ! -d $S ]; then
    log "$f: create"
    $B snapshot create --function $f --out $S --json > $R/raw/$f.create.json
  fi
  # One snapshot directory, its stored set replaced by each recording in
  # turn (restores never modify a snapshot; record replaces the set
  # atomically); input 1's goes back last.
  for in in 2 3 4 1; do
    log "$f: record input $in"
    $B record --snapshot $S --input $in --json > $R/raw/$f.record$in.json
    cp $S/wset/default.ws $R/ws/$f.in$in.ws
  done
  $B ws merge --common --out $R/ws/$f.core.ws $R/ws/$f.in1.ws $R/ws/$f.in2.ws $R/ws/$f.in3.ws
  for ws in in1 in4 core; do
    $B ws show $R/ws/$f.$ws.ws --json > $R/ws/$f.$ws.json
  done
  for i in $(seq 1 $RUNS); do
    log "$f: run $i"; uptime >> $R/load.log
    r() { local name=$1; shift; $B restore --snapshot $S --cold --json "$@" > $R/raw/$f.$i.$name.json; }
    r lazy4 --policy lazy --input 4
    r ws1-4 --policy snapbpf --input 4
    r ws1ra-4 --policy snapbpf --keep-readahead --input 4
    r core4 --policy snapbpf --ws $R/ws/$f.core.ws --input 4
    r corera-4 --policy snapbpf --ws $R/ws/$f.core.ws --keep-readahead --input 4
    r lazy1 --policy lazy --input 1
    r ws1-1 --policy snapbpf --input 1
    r ws1ra-1 --policy snapbpf --keep-readahead --input 1
  done
done
log done
