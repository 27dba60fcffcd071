#!/bin/bash
# A recording of snapshot S alone, then while 4 lazy restores of S loop from a
# cold cache (issue 19): pages, foreign pages left out, the private copy's cost
# and the recording's time. B is the snapbpf binary; compare B=main's build.
# Needs root, a snapshot (snapbpf snapshot create), and tracefs where the
# binary still needs it: run inside
#   unshare -m sh -c 'mount -t tracefs nodev /sys/kernel/tracing; scripts/measure-record-under-load.sh S'
set -euo pipefail
S=${1:?usage: $0 SNAPSHOT_DIR [OUT_DIR]}
OUT=${2:-$(mktemp -d)}
B=${B:-$(pwd)/bin/snapbpf}
mkdir -p "$OUT"
tag=$(basename "$B")

rec() { # rec NAME: one recording, its wall time and JSON report
  local s e
  s=$(date +%s.%N)
  "$B" record --snapshot "$S" --json > "$OUT/$tag.$1.json" 2> "$OUT/$tag.$1.log"
  e=$(date +%s.%N)
  echo "$tag $1: wall $(echo "$e - $s" | bc) s, load $(cut -d' ' -f1 /proc/loadavg)"
}

rec quiet
pids=()
for i in 1 2 3 4; do
  ( while :; do "$B" restore --snapshot "$S" --policy lazy --cold --input 2 > /dev/null 2>&1 || true; done ) &
  pids+=($!)
done
sleep 3
rec load
for p in "${pids[@]}"; do kill "$p"; done
wait 2> /dev/null || true
python3 - "$OUT" "$tag" <<'PY'
import json, sys
out, tag = sys.argv[1], sys.argv[2]
for run in ("quiet", "load"):
    d = json.load(open(f"{out}/{tag}.{run}.json"))
    print(f"{tag} {run}: {d['pages']} pages, {d.get('foreign_pages', '-')} foreign left out, "
          f"copy {d.get('copy_ms', '-')} ms ({d.get('copy_data_bytes', 0) >> 20} MiB), record {d.get('record_ms', '-')} ms, "
          f"first invoke e2e {d['vm']['e2e_ms']:.0f} ms")
PY
