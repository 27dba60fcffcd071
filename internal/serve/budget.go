package serve

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// budget measures the host memory the functions use: the page cache of
// their memory files (shared by all their instances) plus each instance's
// private memory (its VMM's Private_Clean and Private_Dirty in
// /proc/PID/smaps_rollup: the guest pages it wrote, QEMU's own heap and
// translation cache). Nothing is estimated; each admission measures anew
// (a few milliseconds), so concurrent cold starts admitted on one
// measurement can overshoot by what they grow before the next.
type budget struct {
	s *Server
	// meter, if set, replaces the measurement (tests of the eviction
	// logic on fake VMs, whose "VMM" is the test process).
	meter func() Usage
}

// Usage is a measurement of the memory the functions use.
type Usage struct {
	PageCacheBytes int64 `json:"page_cache_bytes"`
	PrivateBytes   int64 `json:"private_bytes"`
}

// Total is all of it.
func (u Usage) Total() int64 { return u.PageCacheBytes + u.PrivateBytes }

// over says whether the functions use the budget or more (never without
// a budget).
func (b *budget) over() bool {
	limit := b.s.cfg.MemoryBudget
	if limit <= 0 {
		return false
	}
	u := b.measure()
	if u.Total() < limit {
		return false
	}
	// Page cache of functions with no instance is the cheapest to give
	// back: no instance maps it, and a cold start prefetches what it
	// needs again.
	if b.dropUnused() > 0 {
		u = b.measure()
	}
	return u.Total() >= limit
}

// measure takes a measurement and publishes it as a metric.
func (b *budget) measure() Usage {
	var u Usage
	if b.meter != nil {
		u = b.meter()
		b.s.metrics.budgetUsed.WithLabelValues("page_cache").Set(float64(u.PageCacheBytes))
		b.s.metrics.budgetUsed.WithLabelValues("private").Set(float64(u.PrivateBytes))
		return u
	}
	for _, e := range b.s.reg.all() {
		e.mu.Lock()
		dir := e.dir
		e.mu.Unlock()
		if dir == nil {
			continue
		}
		n, err := pagecache.Cached(dir.MemPath())
		if err != nil {
			slog.Debug("serve: budget: page cache", "function", e.name, "err", err)
			continue
		}
		u.PageCacheBytes += n * pages.Size
	}
	for _, pid := range b.s.vmms.pids() {
		n, err := privateBytes(pid)
		if err != nil {
			continue // exited meanwhile
		}
		u.PrivateBytes += n
	}
	b.s.metrics.budgetUsed.WithLabelValues("page_cache").Set(float64(u.PageCacheBytes))
	b.s.metrics.budgetUsed.WithLabelValues("private").Set(float64(u.PrivateBytes))
	return u
}

// dropUnused drops the cached pages of the memory files of functions that
// have no instance and returns how many it dropped.
func (b *budget) dropUnused() int64 {
	var dropped int64
	for _, e := range b.s.reg.all() {
		c := e.pool.counts()
		e.mu.Lock()
		dir := e.dir
		e.mu.Unlock()
		if dir == nil || c.Warm+c.Busy > 0 {
			continue
		}
		n, err := pagecache.Drop(dir.MemPath())
		if err == nil && n > 0 {
			slog.Info("serve: memory budget: dropped the page cache of a function without instances", "function", e.name, "pages", n)
			dropped += n
		}
	}
	return dropped
}

// privateBytes is process pid's private memory, from smaps_rollup.
func privateBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		switch string(f[0]) {
		case "Private_Clean:", "Private_Dirty:":
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/smaps_rollup: %q: %w", pid, sc.Text(), err)
			}
			total += kb << 10
		}
	}
	return total, nil
}
