#!/bin/bash
# Issue 17's numbers through the real service: four Go functions registered
# once in their own SNAPBPF_HOME, then one `snapbpf load --compare
# lazy,snapbpf --budget-half` on one arrival trace: each policy's service
# unconstrained, then each again under --memory-budget at half the largest
# peak of the functions' memory the service measured in the first runs.
# The report has, per run, p99 against lazy's, the cold share, cold against
# warm net of compute (cold_of_bound), failures and evictions.
#   B=/var/tmp/issue17/bin/snapbpf R=/var/tmp/issue17 scripts/measure-issue17.sh
#   SOAK=1 ... scripts/measure-issue17.sh     # the 30-minute soak instead
# B is a copy of bin/snapbpf with snapbpf-agent beside it (a rebuild
# mid-run changes nothing). RATE, DURATION, IDLE (the service's
# --idle-timeout, which with RATE sets the cold share), SEED, INPUTS, SKEW
# shape the run; EXTRA adds --serve-arg flags (e.g. EXTRA=--serve-arg=--memory-budget=300
# with HALF=0 for a fixed budget). Resumes: functions already ready are kept.
set -euo pipefail
R=${R:-/var/tmp/issue17}
B=${B:-$R/bin/snapbpf}
RATE=${RATE:-0.5} DURATION=${DURATION:-240s} IDLE=${IDLE:-15s}
SEED=${SEED:-7} INPUTS=${INPUTS:-4} SKEW=${SKEW:-1} HALF=${HALF:-1}
FNS=${FNS:-json gzip aes image}
export SNAPBPF_HOME=$R/home
mkdir -p "$SNAPBPF_HOME" "$R/out"
[ -x "$B" ] && [ -x "$(dirname "$B")/snapbpf-agent" ] || {
	echo "B=$B: copy bin/snapbpf and bin/snapbpf-agent there first (make build)" >&2; exit 1; }
names=(); for f in $FNS; do names+=("${f}1"); done
list=$(IFS=,; echo "${names[*]}")

# Register the functions (snapshot + working set), those not there yet.
"$B" serve >>"$R/out/create-serve.log" 2>&1 &
serve=$!
trap 'kill -TERM $serve 2>/dev/null; wait $serve' EXIT
for i in $(seq 100); do "$B" fn ls >/dev/null 2>&1 && break; sleep 0.2; done
for f in $FNS; do
	"$B" fn get "${f}1" >/dev/null 2>&1 || "$B" fn create "${f}1" --function "$f"
done
for f in $FNS; do
	until "$B" fn get "${f}1" --json | grep -q '"state": "ready"'; do
		if "$B" fn get "${f}1" --json | grep -q '"state": "failed"'; then
			"$B" fn get "${f}1"; exit 1
		fi
		sleep 2
	done
done
"$B" fn ls
kill -TERM $serve; wait $serve || true
trap - EXIT
echo "$(date -u +%T) load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

if [ "${SOAK:-0}" = 1 ]; then
	"$B" load --functions "$list" --rate "${SOAK_RATE:-0.25}" --duration 30m --skew "$SKEW" \
		--inputs "$INPUTS" --seed 17 --compare snapbpf --soak \
		--serve-arg=--idle-timeout=15s --serve-arg=--queue-timeout=2m ${EXTRA:-} \
		--out "$R/out/soak.json" | tee "$R/out/soak.txt"
else
	half=(); [ "$HALF" = 1 ] && half=(--budget-half)
	"$B" load --functions "$list" --rate "$RATE" --duration "$DURATION" --skew "$SKEW" \
		--inputs "$INPUTS" --seed "$SEED" --compare lazy,snapbpf "${half[@]}" \
		--serve-arg=--idle-timeout="$IDLE" ${EXTRA:-} \
		--out "$R/out/compare.json" | tee "$R/out/compare.txt"
fi
echo "$(date -u +%T) load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
