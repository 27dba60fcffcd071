#!/bin/bash
# Issue 14's numbers: snapbpf (readahead kept outside the working set, the
# default) against lazy and warm, on the recorded input 1 and on three
# inputs the recording never saw (4, 5, 6), at N=1 and N=4 concurrent
# clones, cold, medians of $RUNS rounds taken side by side; snapbpf
# --no-readahead (the paper's policy) beside them at N=1. Also one capture
# of each unseen input (record --runs 1: the pages it touches, for "pages
# prefetched but not touched" and "touched but not prefetched") and, from
# the replay harness, the host memory of 8 clones under snapbpf, REAP and
# FaaSnap with each function's written fraction.
# Run as root from the repository after make build; then:
#   python3 scripts/issue14-tables.py $R
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/issue14}
RUNS=${RUNS:-5}
FNS=${FNS:-"aes bert gzip image json linpack rnn alloc"}
UNSEEN=${UNSEEN:-"4 5 6"}
# PHASE=setup makes the snapshots, recordings and replays only (none of
# them is timed against another run); PHASE=rounds only the timed restores,
# which want a quiet host.
PHASE=${PHASE:-all}
mkdir -p $R/snaps $R/raw $R/ws $R/trace
log() { echo "$(date +%T) $*" >&2; }
for f in $FNS; do
  S=$R/snaps/$f
  if [ $PHASE != rounds ]; then
  if [ ! -d $S ]; then
    log "$f: create"
    $B snapshot create --function $f --out $S --json > $R/raw/$f.create.json
  fi
  # What each unseen input touches: one cold nora run under capture. Then
  # input 1's recording, the set every restore below uses, goes in last.
  for in in $UNSEEN; do
    [ -s $R/ws/$f.in$in.json ] && continue
    log "$f: capture input $in"
    $B record --snapshot $S --input $in --runs 1 --json > $R/raw/$f.record$in.json
    $B ws show $S/wset/default.ws --json > $R/ws/$f.in$in.json
  done
  if [ ! -s $R/ws/$f.in1.json ]; then
    log "$f: record input 1"
    $B record --snapshot $S --input 1 --json > $R/raw/$f.record1.json
    $B ws show $S/wset/default.ws --json > $R/ws/$f.in1.json
  fi
  if [ ! -s $R/raw/$f.replay8.json ]; then
    log "$f: trace and replay, 8 clones"
    $B trace --snapshot $S --out $R/trace/$f.trace --input 1 --json > $R/raw/$f.trace.json
    $B trace show $R/trace/$f.trace --json > $R/raw/$f.traceshow.json
    $B replay --snapshot $S --trace $R/trace/$f.trace --policies all --concurrency 8 --rounds 3 --json > $R/raw/$f.replay8.json
  fi
  fi
  [ $PHASE = setup ] && continue
  for i in $(seq 1 $RUNS); do
    log "$f: round $i"; uptime >> $R/load.log
    r() { local out=$R/raw/$f.$i.$1.json; shift; [ -s $out ] || $B restore --snapshot $S --json "$@" > $out; }
    for n in 1 4; do
      r warm-1-n$n --policy lazy --warm --input 1 --concurrency $n
      for in in 1 $UNSEEN; do
        r lazy-$in-n$n --policy lazy --cold --input $in --concurrency $n
        r snapbpf-$in-n$n --policy snapbpf --cold --input $in --concurrency $n
        # The paper's policy, for comparison: the recorded input and one unseen.
        if [ $n = 1 ] && [ $in = 1 -o $in = ${UNSEEN%% *} ]; then r strict-$in-n$n --policy snapbpf --no-readahead --cold --input $in --concurrency $n; fi
      done
    done
  done
done
log done
