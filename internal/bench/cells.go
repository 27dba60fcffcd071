package bench

import (
	"context"
	"fmt"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/prefetch"
	"github.com/snapbpf/snapbpf/internal/restore"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/trace"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// restore restores k.N clones of d at once under k's policy, each invoked
// once, and measures latency and the host memory their guest RAM takes.
func (b *bench) restore(ctx context.Context, d *snapshot.Dir, k Key, run *Run) error {
	name, ws, warm := k.Policy, "", k.Policy == PolicyWarm
	switch k.Policy {
	case PolicyWarm:
		name = policy.Lazy
	case PolicySnapBPFOther:
		name, ws = policy.SnapBPF, d.File(otherWSFile(b.cfg.otherInput()))
	}
	want, err := b.expected(ctx, d, b.cfg.Input)
	if err != nil {
		return err
	}
	res, err := restore.Run(ctx, b.driver, d, restore.Config{
		Policy: name, WorkingSet: ws, Input: b.cfg.Input, Count: k.N, Cold: !warm, Warm: warm, Accel: b.accel, Log: b.cfg.Log,
		Expected: want.sum,
	})
	if res == nil {
		return err
	}
	run.VMs = res.VMs
	if res.Prefetch.Bytes > 0 {
		run.Prefetch = &res.Prefetch
	}
	if err != nil {
		return err
	}
	// Every clone has exited: what stays is the memory file's page cache,
	// shared by all of them, counted once; their private copies were
	// measured before each exited.
	resident, err := pagecache.Residency(d.MemPath())
	if err != nil {
		return err
	}
	cached, err := CachedBytes(d.MemPath())
	if err != nil {
		return err
	}
	restoreMetrics(run.Metrics, res.VMs, cached, res.Prefetch)
	run.Metrics[MetricHostFnMs] = ms(want.time)
	if k.Experiment == ExpLatency && k.N == 1 {
		// The trace (recorded once, after this restore's residency was
		// read) says which pages an invocation on this input touches.
		t, _, err := b.loadTrace(ctx, d)
		if err != nil {
			return fmt.Errorf("the pages the function touches: %w", err)
		}
		seen := touchedPages(t)
		// Holes come into the page cache too (zero pages, read from no
		// storage): only data pages count as read for nothing.
		data, err := pages.Data(d.MemPath())
		if err != nil {
			return err
		}
		run.Metrics[MetricTouchedPages], run.Metrics[MetricUntouchedPages] = float64(len(seen)), float64(untouched(seen, data, resident))
		if name == policy.SnapBPF {
			if ws == "" {
				ws = d.File(policy.WorkingSetFile)
			}
			set, err := wset.Read(ws)
			if err != nil {
				return err
			}
			var n int
			for _, e := range set.Extents {
				for p := e.Page; p < e.End(); p++ {
					if !seen[p] {
						n++
					}
				}
			}
			run.Metrics[MetricWSPages], run.Metrics[MetricWSUntouched] = float64(set.Pages()), float64(n)
		}
	}
	return nil
}

// touchedPages are the data pages trace t touches.
func touchedPages(t *trace.Trace) map[uint64]bool {
	seen := make(map[uint64]bool, len(t.Events))
	for _, e := range t.Events {
		if e.Op != trace.OpUpgrade && e.Flags&trace.FlagHole == 0 {
			seen[e.Page] = true
		}
	}
	return seen
}

// untouched counts the data pages (data: the memory file's data extents)
// resident (mincore's vector of the memory file) that are not in touched.
func untouched(touched map[uint64]bool, data []pages.Extent, resident []byte) int {
	n := 0
	for _, e := range data {
		for p := e.Page; p < e.End() && p < uint64(len(resident)); p++ {
			if resident[p]&1 != 0 && !touched[p] {
				n++
			}
		}
	}
	return n
}

// restoreMetrics fills a restore cell's metrics.
func restoreMetrics(mt map[string]float64, vms []funcvm.VMResult, cached int64, pst policy.PrefetchStats) {
	var e2e, e2eMax, guest, private, read, major, memMajor float64
	memMeasured := len(vms) > 0
	for _, v := range vms {
		memMajor += float64(v.MemFileMajorFaults)
		memMeasured = memMeasured && v.MemFileMajorFaults >= 0
		e2e += v.E2EMs
		guest += v.GuestFnMs
		e2eMax = max(e2eMax, v.E2EMs)
		private += float64(v.GuestPrivateB)
		read += float64(v.MemFileReadBytes)
		major += float64(v.MajorFaults)
	}
	if len(vms) > 0 {
		e2e /= float64(len(vms))
		guest /= float64(len(vms))
	}
	mt[MetricE2EMs], mt[MetricE2EMaxMs], mt[MetricGuestFnMs] = e2e, e2eMax, guest
	mt[MetricCacheBytes], mt[MetricPrivateBytes] = float64(cached), private
	mt[MetricTotalBytes] = float64(cached) + private
	mt[MetricReadBytes], mt[MetricMajorFaults] = read, major
	if memMeasured {
		mt[MetricMemFaults] = memMajor
	}
	if pst.Bytes > 0 {
		mt[MetricPrefetchMs] = pst.CompleteMs
	}
}

// prefetch reads d's working set cold, either with snapbpf's prefetch or
// with fio replaying the same requests.
func (b *bench) prefetch(ctx context.Context, d *snapshot.Dir, k Key, run *Run) error {
	ws, err := wset.Read(d.File(policy.WorkingSetFile))
	if err != nil {
		return err
	}
	mem := d.MemPath()
	if _, err := pagecache.Drop(mem); err != nil {
		return err
	}
	mt := run.Metrics
	switch k.Policy {
	case SeriesPrefetch:
		st, err := prefetch.Prefetch(ctx, mem, ws.Extents, prefetch.Options{})
		if err != nil {
			return err
		}
		mt[MetricBytes], mt[MetricMs], mt[MetricRequests] = float64(st.Bytes), ms(st.CompleteDur), float64(st.Requests)
		run.Detail = fmt.Sprintf("prefetch engine %s, %d workers, plan %.1f ms, issue %.1f ms", st.Engine, st.Workers, ms(st.PlanDur), ms(st.IssueDur))
	case SeriesFio:
		// The prefetch's own requests, in file order (the prefetch issues
		// them in first-touch order).
		reqs, err := prefetch.Requests(mem, ws.Extents, prefetch.Options{OffsetOrder: true})
		if err != nil {
			return err
		}
		res, err := fioReplay(ctx, mem, reqs)
		if err != nil {
			return err
		}
		// fio's byte count is short at depth 32 (see fioResult); what it
		// achieved is what it left cached of the requests, the cache having
		// been empty before.
		cached, err := cachedIn(mem, reqs)
		if err != nil {
			return err
		}
		if missed := res.Logged - cached; missed > res.Logged/100 {
			return fmt.Errorf("fio left %d of the %d bytes it was asked to read uncached", missed, res.Logged)
		}
		mt[MetricBytes], mt[MetricMs], mt[MetricRequests] = float64(cached), res.Ms, float64(res.Requests)
		mt[MetricMissedBytes] = float64(res.Logged - cached)
		run.Detail = fmt.Sprintf("%s (requested %d bytes, fio counted %d as read, %d of them cached afterwards)",
			res.Command, res.Logged, res.Bytes, cached)
	default:
		return fmt.Errorf("unknown prefetch series %q", k.Policy)
	}
	if mt[MetricMs] > 0 {
		mt[MetricMBps] = mt[MetricBytes] / 1e6 / (mt[MetricMs] / 1000)
	}
	return nil
}
