#!/bin/bash
# Issue 19's recording numbers on snapshots $R/snaps/FN (e.g. those of
# measure-issue14.sh): per function a quiet recording, one while 4 cold lazy
# restores of the same snapshot loop, and a second quiet one (the run-to-run
# noise floor), each as record --snapshot does by default (8 runs, margin).
# Run as root after make build; then python3 scripts/issue19-tables.py $R.
# The snapshots' stored sets are replaced; input 1's quiet set is left.
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/issue14}
FNS=${FNS:-"aes gzip image json linpack"}
mkdir -p $R/rec19
log() { echo "$(date +%T) $*" >&2; }
for f in $FNS; do
  S=$R/snaps/$f
  rec() {
    [ -s $R/rec19/$f.$1.json ] && return
    log "$f: record ($1)"
    local s=$(date +%s.%N)
    $B record --snapshot $S --json > $R/rec19/$f.$1.record.json
    echo "$(date +%s.%N) - $s" | bc > $R/rec19/$f.$1.wall
    $B ws show $S/wset/default.ws --json > $R/rec19/$f.$1.json
  }
  rec quiet1
  if [ ! -s $R/rec19/$f.load.json ]; then
    pids=()
    for i in 1 2 3 4; do
      ( while :; do $B restore --snapshot $S --policy lazy --cold --input 1 > /dev/null 2>&1 || true; done ) &
      pids+=($!)
    done
    sleep 3
    rec load
    kill "${pids[@]}"; wait 2>/dev/null || true
  fi
  rec quiet2
done
log done
