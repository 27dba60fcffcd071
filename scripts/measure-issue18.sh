#!/bin/bash
# Issue 18's load spreading and failover numbers: three snapbpf serve nodes
# on loopback as one NATS cluster (the embedded servers with routes; nkeys
# and TLS from a CA made here), each with its own SNAPBPF_HOME, memory
# budget and --max-instances.
#   B=/var/tmp/issue18/bin/snapbpf R=/var/tmp/issue18 scripts/measure-issue18.sh
# B is a copy of bin/snapbpf with snapbpf-agent beside it. FN (the
# function), RATE, DURATION, MAXI (instances per node), BUDGET (MiB per
# node) shape the runs.
#  1. one node: function f is made on node0; nodes 1 and 2 run with
#     --remote-fetch none, so node0 alone serves the load (through its API).
#  2. three nodes: nodes 1 and 2 restarted with the default --remote-fetch
#     lazy: each opens f from the snapshot store at its first cold start;
#     the same load round-robin over the three APIs (load --spread).
# Each phase prints the host's CPU use over its run (/proc/stat): a phase
# that already keeps the host's CPUs busy bounds what more nodes can add.
#  3. failover: the load through node0 and node1 only; node2 is killed
#     (kill -9) halfway. Requests node2 had taken end 504 at the forward
#     deadline (at most once: never sent again); the rest go on.
set -euo pipefail
R=${R:-/var/tmp/issue18}
B=${B:-$R/bin/snapbpf}
FN=${FN:-gzip} RATE=${RATE:-8} DURATION=${DURATION:-60} MAXI=${MAXI:-1} BUDGET=${BUDGET:-1024}
SEED=${SEED:-18}
HTTP=(18181 18182 18183) NATS=(14281 14282 14283) ROUTES=(16281 16282 16283)
[ -x "$B" ] && [ -x "$(dirname "$B")/snapbpf-agent" ] || {
	echo "B=$B: copy bin/snapbpf and bin/snapbpf-agent there first (make build)" >&2; exit 1; }
mkdir -p "$R/out" "$R/keys"
K=$R/keys

# Identities: one CA, a certificate for 127.0.0.1 per node, an nkey per node.
if [ ! -f "$K/ca.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
		-subj /CN=snapbpf-issue18-ca -keyout "$K/ca.key" -out "$K/ca.pem" 2>/dev/null
	: >"$K/users"
	for i in 0 1 2; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=node$i" \
			-keyout "$K/node$i.key" -out "$K/node$i.csr" 2>/dev/null
		openssl x509 -req -in "$K/node$i.csr" -CA "$K/ca.pem" -CAkey "$K/ca.key" -CAcreateserial -days 7 \
			-extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n') \
			-out "$K/node$i.pem" 2>/dev/null
		"$B" nodes nkey --out "$K/node$i.nk" >>"$K/users"
	done
	head -c 24 /dev/urandom | base64 >"$K/token"
	chmod 600 "$K"/*
fi
url() { echo "http://127.0.0.1:${HTTP[$1]}"; }
cli() { local i=$1; shift; "$B" "$@" --url "$(url "$i")" --token-file "$K/token"; }

pids=(0 0 0)
start() { # node, extra serve flags...
	local i=$1 peers=()
	shift
	for j in 0 1 2; do [ "$j" = "$i" ] || peers+=("127.0.0.1:${ROUTES[$j]}"); done
	mkdir -p "$R/node$i"
	SNAPBPF_HOME=$R/node$i "$B" serve --node "node$i" --socket "$R/node$i/s.sock" \
		--listen "127.0.0.1:${HTTP[$i]}" --token-file "$K/token" \
		--memory-budget "$BUDGET" --max-instances "$MAXI" --idle-timeout 60s \
		--queue-timeout 10s --invoke-timeout 20s --forward-timeout 25s \
		--cluster --cluster-listen "127.0.0.1:${NATS[$i]}" --cluster-routes "127.0.0.1:${ROUTES[$i]}" \
		--cluster-peers "$(IFS=,; echo "${peers[*]}")" --cluster-users "$K/users" \
		--nats-creds "$K/node$i.nk" --nats-tls-cert "$K/node$i.pem" --nats-tls-key "$K/node$i.key" \
		--nats-tls-ca "$K/ca.pem" "$@" >>"$R/out/node$i.log" 2>&1 &
	pids[$i]=$!
}
stop() { kill -TERM "${pids[$1]}" 2>/dev/null && wait "${pids[$1]}" || true; pids[$1]=0; }
up() { for _ in $(seq 300); do cli "$1" nodes >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "node$1 did not come up" >&2; exit 1; }
trap 'for i in 0 1 2; do [ "${pids[$i]}" = 0 ] || kill -TERM "${pids[$i]}" 2>/dev/null; done; wait' EXIT

for i in 0 1 2; do rm -rf "$R/node$i/serve/snapshots/f"; done
start 0
for i in 1 2; do start "$i" --remote-fetch none; done
for i in 0 1 2; do up "$i"; done
cli 0 fn rm f >/dev/null 2>&1 || true
cli 0 fn create f --function "$FN" --wait
cli 1 nodes
cpu() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
load() { # name, load flags...
	local name=$1; shift
	echo "$(date -u +%T) $name: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	local c0; c0=$(cpu)
	"$B" load --functions f --rate "$RATE" --duration "${DURATION}s" --seed "$SEED" --inputs 4 \
		--timeout 60s --token-file "$K/token" "$@" --out "$R/out/$name.json" >"$R/out/$name.txt"
	echo "$c0 $(cpu) $(nproc)" | awk -v n="$name" '{printf "%s: host CPU busy %.0f%% of %d CPUs\n", n, 100*($3-$1)/($4-$2), $5}' | tee "$R/out/$name.cpu" >&2
}
# Warm the page cache of the memory file once, so both runs start alike.
cli 0 fn invoke f >/dev/null

load one-node --url "$(url 0)"

for i in 1 2; do
	stop "$i"
	rm -rf "$R/node$i/serve/remote"
	start "$i"
done
for i in 1 2; do up "$i"; done
for _ in $(seq 100); do cli 0 fn get f --json | grep -q '"node2"' && cli 0 fn get f --json | grep -q '"node1"' && break; sleep 0.2; done
cli 0 fn get f
load three-nodes --url "$(url 0)" --spread "$(url 1),$(url 2)"

(sleep $((DURATION / 2)); kill -9 "${pids[2]}"; date -u +%s.%N >"$R/out/killed-at") &
killer=$!
load failover --url "$(url 0)" --spread "$(url 1)"
wait $killer
pids[2]=0
cli 0 nodes
# node2 again: its start ends the VMMs the killed one left.
start 2; up 2

python3 - "$R/out" <<'PY'
import json, sys, os
out = sys.argv[1]
def rep(name):
    r = json.load(open(os.path.join(out, name + ".json")))
    return r["runs"][0] if "runs" in r else r
print("run           arrivals  ok  rejected  errors  thr_rps  p50_ms  p99_ms  by_node")
res = {}
for name in ["one-node", "three-nodes", "failover"]:
    r = rep(name); s = r["summary"]; res[name] = r
    print(f'{name:13s} {s["arrivals"]:8d} {s["ok"]:4d} {s["rejected"]:9d} {s["errors"]:7d} {s["throughput_rps"]:8.2f} '
          f'{s["latency_ms"].get("p50", 0):7.0f} {s["latency_ms"].get("p99", 0):7.0f}  {s.get("by_node", {})}')
one, three = res["one-node"]["summary"]["throughput_rps"], res["three-nodes"]["summary"]["throughput_rps"]
print(f"three nodes / one node throughput: {three / one:.2f}x" if one else "one node served nothing")
for name in ["one-node", "three-nodes", "failover"]:
    print(open(os.path.join(out, name + ".cpu")).read().strip())
f = res["failover"]
killed = float(open(os.path.join(out, "killed-at")).read())
start = f["start"]
print("failover: errors", f["summary"].get("error_messages", {}))
fails = [q for q in f["requests"] if q["outcome"] != "ok"]
print(f"failover: {len(fails)} failed, the longest took {max([q['latency_ms'] for q in fails] or [0]):.0f} ms; every one answered (status {sorted(set(q.get('status', 0) for q in fails))})")
print("failover timeline (arrival second: ok/arrivals, errors):")
for s in f["seconds"]:
    print(f'  t={s["t_s"]:3d}s {s["ok"]}/{s["arrivals"]} errors {s["errors"]} rejected {s["rejected"]}')
PY
