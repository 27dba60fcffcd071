package remotesnap_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/bus/bustest"
	"github.com/snapbpf/snapbpf/internal/remotesnap"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/snapstore"
	"github.com/snapbpf/snapbpf/internal/stats"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

// TestMeasure prints issue 18's cold-start table: on a three-node cluster,
// a json snapshot made and recorded on node A; each round restores it
// (snapbpf policy, one VM, result checked)
//
//   - local: on node A, memory file dropped from the page cache first;
//   - lazy: on node B, which lacks it, through a fresh lazymem mount
//     (the rest of the file streams in after DefaultBackgroundDelay);
//   - lazy-bg-now: the same with the rest streaming in at once;
//   - full: on node B, fetched whole first (--remote-fetch full).
//
// Remote times include getting the directory (mount or fetch). Rounds
// interleave the modes; a lazy round waits for its local copy before the
// next restore. Off by default (a few minutes):
//
//	SNAPBPF_MEASURE=remote SNAPBPF_ROUNDS=5 go test -run TestMeasure -v ./internal/remotesnap
//
// SNAPBPF_FREE_PAGES=none snapshots without free page reporting: the whole
// 256 MiB memory file is data.
func TestMeasure(t *testing.T) {
	if os.Getenv("SNAPBPF_MEASURE") != "remote" {
		t.Skip("measurement: set SNAPBPF_MEASURE=remote to run")
	}
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("SNAPBPF_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	img := testenv.NeedVM(t)
	needFUSE(t)
	ctx := context.Background()
	log := testLog(t)
	nodes := bustest.Open(t, bustest.Cluster(t, 3))
	freePages := snapshot.FreePagesReport
	if os.Getenv("SNAPBPF_FREE_PAGES") == snapshot.FreePagesNone {
		freePages = snapshot.FreePagesNone // all 256 MiB data: a larger fetch
	}
	src, want := publishedSnapshot(ctx, t, img, nodes[0], freePages, log)
	id := src.Manifest.ID
	storeB, err := snapstore.Open(ctx, nodes[1].JetStream(), snapstore.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	man, err := storeB.Manifest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot %s: %.1f MiB of data, %.1f MiB early pages, %d chunks of %d KiB",
		id, float64(man.Mem.Size)/(1<<20), float64(man.Early.Size)/(1<<20), man.Mem.Chunks()+man.Early.Chunks(), man.ChunkSize>>10)
	// Let the replicas of the upload settle before timing anything.
	time.Sleep(5 * time.Second)

	type row struct{ total, get, fn, prefetch, faults, complete []float64 }
	rows := map[string]*row{}
	modes := []string{"local", "lazy", "lazy-bg-now", "full"}
	for _, m := range modes {
		rows[m] = &row{}
	}
	homeB := t.TempDir()
	for r := range rounds {
		for _, mode := range modes {
			rw := rows[mode]
			if mode == "local" {
				res := restoreDir(ctx, t, src, true, want, log)
				vm := res.VMs[0]
				rw.total = append(rw.total, vm.E2EMs)
				rw.fn, rw.prefetch = append(rw.fn, vm.GuestFnMs), append(rw.prefetch, res.Prefetch.CompleteMs)
				rw.faults = append(rw.faults, float64(vm.MemFileMajorFaults))
				continue
			}
			o := remotesnap.Options{Mode: remotesnap.Lazy, Log: log}
			switch mode {
			case "full":
				o.Mode = remotesnap.Full
			case "lazy-bg-now":
				o.BackgroundDelay = -1
			}
			dir := filepath.Join(homeB, fmt.Sprintf("%s-%d", mode, r))
			cache, err := remotesnap.New(dir, storeB, o)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			lease, err := cache.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			get := msSince(t0)
			d, err := snapshot.Open(lease.Dir)
			if err != nil {
				t.Fatal(err)
			}
			res := restoreDir(ctx, t, d, false, want, log)
			d.Close()
			total := msSince(t0)
			lease.Release()
			vm := res.VMs[0]
			rw.total, rw.get = append(rw.total, total), append(rw.get, get)
			rw.fn, rw.prefetch = append(rw.fn, vm.GuestFnMs), append(rw.prefetch, res.Prefetch.CompleteMs)
			rw.faults = append(rw.faults, float64(vm.MemFileMajorFaults))
			if lease.Lazy {
				// Wait for the copy, so its fetch does not overlap the
				// next restore.
				for !cache.Local(id) {
					time.Sleep(20 * time.Millisecond)
				}
				rw.complete = append(rw.complete, msSince(t0))
			}
			if err := cache.Close(); err != nil {
				t.Error(err)
			}
			os.RemoveAll(dir)
		}
	}
	med := func(v []float64) string {
		if len(v) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", stats.Median(slices.Clone(v)))
	}
	local := stats.Median(slices.Clone(rows["local"].total))
	var b strings.Builder
	fmt.Fprintf(&b, "\nmedians of %d rounds (ms)\n| mode | total | vs local | get | guest fn | prefetch | mem-file major faults | copy complete |\n|---|---|---|---|---|---|---|---|\n", rounds)
	for _, m := range modes {
		rw := rows[m]
		fmt.Fprintf(&b, "| %s | %s | %.2fx | %s | %s | %s | %s | %s |\n", m, med(rw.total), stats.Median(slices.Clone(rw.total))/local,
			med(rw.get), med(rw.fn), med(rw.prefetch), med(rw.faults), med(rw.complete))
	}
	for _, m := range modes {
		fmt.Fprintf(&b, "%s totals: %v\n", m, rows[m].total)
	}
	t.Log(b.String())
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }
