#!/bin/bash
# Cold lazy and snapbpf restores of recorded snapshots (SN/FUNCTION, e.g. from
# scripts/measure-issue3.sh), 5 rounds: major_faults and mem_file_major_faults
# (docs/measurements/issue3.md, session 4). Run as root after make build.
set -euo pipefail
B=${B:-$(pwd)/bin/snapbpf}
R=${R:-/var/tmp/mf}
SN=${SN:-/var/tmp/i4/snaps}
mkdir -p $R
for i in 1 2 3 4 5; do
  for f in aes bert gzip image json linpack rnn alloc; do
    S=$SN/$f
    $B restore --snapshot $S --policy lazy --cold --json > $R/$f.$i.lazy.json
    $B restore --snapshot $S --policy snapbpf --cold --json > $R/$f.$i.snapbpf.json
  done
  echo "$(date +%T) round $i"
done
