#!/bin/bash
# The 8 cells whose paired ratio was above 1.00, again on a quiet host:
# N=4, lazy and snapbpf back to back, the order alternating by round.
set -uo pipefail
export SNAPBPF_HOME=${SNAPBPF_HOME:-/var/tmp/issue14/home}
B=${B:-$(pwd)/bin/snapbpf}
R=/var/tmp/issue14/focus
mkdir -p $R
CELLS="image:6:1 aes:5:4 aes:6:4 bert:4:4 bert:5:4 bert:6:4 json:5:4 json:6:4"
for i in $(seq 1 ${ROUNDS:-9}); do
  echo "$(date +%T) round $i $(cut -d' ' -f1 /proc/loadavg)" >&2
  for c in $CELLS; do
    IFS=: read f in n <<< "$c"
    S=/var/tmp/issue14/snaps/$f
    if [ $((i % 2)) = 1 ]; then order="lazy snapbpf"; else order="snapbpf lazy"; fi
    for p in $order; do
      $B restore --snapshot $S --json --policy $p --cold --input $in --concurrency $n > $R/$f.$in.n$n.$p.$i.json 2>/dev/null
    done
  done
done
echo done >&2
