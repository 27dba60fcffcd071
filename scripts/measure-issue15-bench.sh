#!/bin/bash
# The reduced bench before and after the re-cut, interleaved: round r of the
# old binary, then round r of the new, ROUNDS times, each binary in its own
# SNAPBPF_HOME (snapshots and traces made once, reused by later rounds).
# Interleaving puts the machine's drift on both sides alike; a whole run of
# one then a whole run of the other (session 7) measured the drift instead.
#   BEFORE=/tmp/before-src/bin AFTER=/work/main/bin OUT=/var/tmp/b15 ROUNDS=4 \
#     scripts/measure-issue15-bench.sh
#   python3 scripts/bench-compare.py $OUT/before.json $OUT/after.json
# The old binary predates issue 14 and needs tracefs: it runs in a private
# mount namespace with tracefs mounted there only.
set -euo pipefail
: "${BEFORE:?old bin dir}" "${AFTER:?new bin dir}" "${OUT:?output dir}"
ROUNDS=${ROUNDS:-4}
mkdir -p "$OUT"
run() { # side bindir round
	local side=$1 bin=$2 r=$3 home=$OUT/$1-home
	mkdir -p "$home"
	local rf=--rounds; [ "$side" = before ] && rf=--runs
	local cmd=("$bin/snapbpf" bench "$rf" 1 --out "$OUT/$side-$r" \
		--image "$home/image" --snapshots "$home/snapshots" \
		--note "issue 15 interleaved, $side, round $r")
	echo "$(date +%T) $side round $r" >&2
	if [ "$side" = before ]; then
		SNAPBPF_HOME=$home unshare -m sh -c \
			'mount -t tracefs nodev /sys/kernel/tracing && exec "$@"' sh "${cmd[@]}" \
			>"$OUT/$side-$r.log" 2>&1
	else
		SNAPBPF_HOME=$home "${cmd[@]}" >"$OUT/$side-$r.log" 2>&1
	fi
}
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then run before "$BEFORE" "$r"; run after "$AFTER" "$r"
	else run after "$AFTER" "$r"; run before "$BEFORE" "$r"; fi
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for side in ("before", "after"):
    runs = []
    for r in range(1, rounds + 1):
        runs += json.load(open(f"{out}/{side}-{r}/results.json"))["runs"]
    json.dump({"runs": runs}, open(f"{out}/{side}.json", "w"))
PY
echo "$(date +%T) done" >&2
