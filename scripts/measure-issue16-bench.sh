#!/bin/bash
# Issue 16's numbers in one run, side by side, medians of 5, cold cache:
# two bench sessions into one results directory.
#  1. The Go functions, once: their snapshots with and without free page
#     reporting and their working sets (the snapshot table's Go rows).
#  2. Every python function, 5 rounds: warm, lazy, snapbpf and
#     snapbpf-other (working set of the other input shape) at N=1 on real
#     VMs, the snapshot without free page reporting (breakdown), and the
#     replay of a trace at native speed under every replay policy (REAP
#     and FaaSnap included) at N=1 and N=8.
# report.md's sections "Snapshots and working sets", "One restore on the
# recorded input...", "A working set recorded on another input" and
# "snapbpf against REAP and FaaSnap" hold the issue's numbers.
# Resumable: run it again with the same OUT to finish an interrupted run.
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
OUT=${OUT:-/var/tmp/issue16-bench}
SNAPS=${SNAPS:-$OUT/snapshots}
ROUNDS=${ROUNDS:-5}
PY=${PY:-$($B functions --json | jq -r '[.[] | select(.runtime == "python") | .ref] | join(",")')}
GO=${GO:-$($B functions --json | jq -r '[.[] | select(.runtime == null) | .ref] | join(",")')}
NOTE=${NOTE:-"1-minute load $(cut -d' ' -f1 /proc/loadavg) at the start"}
start=$(date +%s)
$B bench --out "$OUT" --snapshots "$SNAPS" --functions "$GO" --experiments breakdown,prefetch \
  --concurrency 1 --rounds 1 --note "$NOTE"
$B bench --out "$OUT" --snapshots "$SNAPS" --functions "$PY" --experiments latency,breakdown,replay \
  --policies warm,lazy,snapbpf,snapbpf-other --concurrency 1 --replay-concurrency 1,8 --rounds "$ROUNDS" --note "$NOTE"
echo "issue16 bench: $(( ($(date +%s) - start) / 60 )) min; report $OUT/report.md"
