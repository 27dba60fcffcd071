#!/bin/bash
# Issue 18's cold start on a node without the snapshot: a three-node NATS
# cluster in one test process (embedded servers with routes on loopback,
# nkeys and TLS), a json snapshot (256 MiB guest, 8 MiB data, free pages
# reported) made and recorded on node A and published to the Object Store;
# then ROUNDS rounds, modes interleaved, of one restore each under the
# snapbpf policy with the result checked:
#   local        node A, memory file dropped from the page cache first
#   lazy         node B through a lazymem mount (remotesnap.Lazy, the default)
#   lazy-bg-now  the same with the rest of the file streaming in at once
#   full         node B fetches the whole snapshot first (remotesnap.Full)
# Remote times count from asking for the snapshot to the checked result.
# Then the snapshot store's fetch rates (chunk by chunk against streaming,
# in-process and across the cluster) and the corrupted-chunk tests.
#   ROUNDS=5 scripts/measure-issue18-remote.sh     (as root; about 5 minutes)
# FREE_PAGES=none makes the snapshot without free page reporting (all of
# its 256 MiB is data: a larger fetch).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
uptime
SNAPBPF_MEASURE=remote SNAPBPF_ROUNDS=$ROUNDS SNAPBPF_FREE_PAGES=${FREE_PAGES:-report} go test -count=1 -v -timeout 30m \
	-run '^TestMeasure$' ./internal/remotesnap 2>&1 | grep -v 'level=\(INFO\|DEBUG\)' | grep -v '^\s*$'
uptime
go test -count=1 -run '^$' -bench Chunks -benchtime 5x ./internal/snapstore | grep Benchmark
go test -count=1 -v -run 'Corrupt' ./internal/snapstore | grep -v 'level=INFO'
uptime
