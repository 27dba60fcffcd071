#!/bin/bash
# Baseline numbers of the microVM foundation: per function, snapshot
# creation (boot-to-ready, init, total, file sizes) and restore end to end
# cold and warm (policy lazy), major faults, guest memory touched.
# Medians of RUNS restores. Usage: scripts/measure-foundation.sh [RUNS] [FUNCTIONS...]
set -euo pipefail
RUNS=${1:-5}; shift || true
FUNCS=${*:-aes alloc bert gzip image json linpack rnn}
BIN=${BIN:-bin/snapbpf}
export SNAPBPF_HOME=${SNAPBPF_HOME:-/var/lib/snapbpf}
OUT=${OUT:-$SNAPBPF_HOME/measure}
mkdir -p "$OUT"
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq; }
$BIN image build >/dev/null
med() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
printf "| function | guest MiB | boot-to-ready ms | init ms | snapshot total ms | state KiB | mem data MiB | mem holes MiB | cold e2e ms | warm e2e ms | cold major faults | warm major faults | cold read MiB | guest touched MiB | guest fn ms (TCG) | host fn ms | TCG slowdown |\n"
printf "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
for fn in $FUNCS; do
  snap="$OUT/$fn"
  c=$($BIN snapshot create --function "$fn" --out "$snap" --replace --json 2>/dev/null)
  for mode in cold warm; do
    : > "$OUT/$fn.$mode.jsonl"
    for i in $(seq "$RUNS"); do
      $BIN restore --snapshot "$snap" --$mode --json 2>/dev/null | jq -c '.vms[0]' >> "$OUT/$fn.$mode.jsonl"
    done
  done
  m() { jq -r "$2" "$OUT/$fn.$1.jsonl" | med; }
  printf "| %s | %s | %.0f | %.0f | %.0f | %.1f | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f | %.0f | %.1f | %.0f |\n" "$fn" \
    "$(jq -r .snapshot.manifest.mem_mib <<<"$c")" "$(jq -r .stats.boot_ms <<<"$c")" "$(jq -r .stats.init_ms <<<"$c")" \
    "$(jq -r .stats.total_ms <<<"$c")" "$(jq -r '.snapshot.manifest.state_size/1024' <<<"$c")" \
    "$(jq -r '.snapshot.manifest.mem_data_bytes/1048576' <<<"$c")" "$(jq -r '.snapshot.manifest.mem_hole_bytes/1048576' <<<"$c")" \
    "$(m cold .e2e_ms)" "$(m warm .e2e_ms)" "$(m cold .major_faults)" "$(m warm .major_faults)" \
    "$(m cold '.mem_file_read_bytes/1048576')" "$(m warm '.guest_touched_bytes/1048576')" \
    "$(m warm .guest_fn_ms)" "$(m warm .host_fn_ms)" "$(m warm '.guest_fn_ms/.host_fn_ms')"
done
