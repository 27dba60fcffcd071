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
// (a few milliseconds). A cold start's memory shows in the measurement
// only as its restore proceeds, so several cold starts admitted at once on
// one measurement would overshoot: each admitted cold start reserves what
// the last cold start of its function was measured to add (its instance's
// private memory plus its working set in the page cache), and holds the
// reservation until its first invocation has ended and the measurement
// sees it.
type budget struct {
	s *Server
	// meter, if set, replaces the measurement (tests of the eviction
	// logic on fake VMs, whose "VMM" is the test process).
	meter func() Usage
	// private, if set, replaces the measurement of one instance's
	// private memory (the same tests).
	private func(pid int) (int64, error)

	// Guarded by Server.mu:
	// reserved is what the cold starts in progress hold.
	reserved int64
	// coldCost is, by function, what its latest cold start was measured
	// to add.
	coldCost map[string]int64
}

// Usage is a measurement of the memory the functions use.
type Usage struct {
	PageCacheBytes int64 `json:"page_cache_bytes"`
	PrivateBytes   int64 `json:"private_bytes"`
}

// Total is all of it.
func (u Usage) Total() int64 { return u.PageCacheBytes + u.PrivateBytes }

// fits says whether a cold start reserving cost fits under the budget when
// the functions use used: with no cold start in progress, whenever used is
// below the budget (a function larger than what is left still starts once
// the rest is evicted); otherwise only if used, the reservations and cost
// together stay within it. Call with Server.mu held.
func (b *budget) fits(used, cost int64) bool {
	limit := b.s.cfg.MemoryBudget
	switch {
	case limit <= 0:
		return true
	case b.reserved == 0:
		return used < limit
	}
	return used+b.reserved+cost <= limit
}

// used measures what the functions use for an admission of a cold start
// reserving cost; when that does not fit, it first gives back the page
// cache of functions without instances (the cheapest: no instance maps
// it, and a cold start prefetches what it needs again). Without a budget
// it measures nothing.
func (b *budget) used(cost int64) int64 {
	if b.s.cfg.MemoryBudget <= 0 {
		return 0
	}
	u := b.measure().Total()
	b.s.mu.Lock()
	ok := b.fits(u, cost)
	b.s.mu.Unlock()
	if !ok && b.dropUnused() > 0 {
		u = b.measure().Total()
	}
	return u
}

// cost is what a cold start of e reserves: what its latest cold start was
// measured to add, or before any, twice its working set (the prefetch
// brings it into the page cache, and the guest writes to part of it).
// Call with Server.mu held.
func (b *budget) cost(e *entry, wsetPages int64) int64 {
	if c, ok := b.coldCost[e.name]; ok {
		return c
	}
	return 2 * wsetPages * pages.Size
}

// reserve takes cost for an admitted cold start; call with Server.mu held.
func (b *budget) reserve(cost int64) { b.reserved += cost }

// settle ends a cold start's reservation once its first invocation has
// ended. With a budget, the instance (pid, if it still runs) is measured
// first: its private memory plus e's working set is what e's next cold
// start reserves.
func (b *budget) settle(e *entry, pid int, wsetPages, cost int64) {
	var learned int64 = -1
	if b.s.cfg.MemoryBudget > 0 && pid > 0 {
		priv := privateBytes
		if b.private != nil {
			priv = b.private
		}
		if n, err := priv(pid); err == nil {
			learned = n + wsetPages*pages.Size
		}
	}
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	b.reserved -= cost
	if learned >= 0 {
		if b.coldCost == nil {
			b.coldCost = map[string]int64{}
		}
		b.coldCost[e.name] = learned
	}
	s.notify()
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
	// Every memory file in use: a function's current snapshot and those
	// its instances were restored from (a mount the local copy replaced
	// keeps its page cache while they run).
	for _, su := range b.s.snaps.inUse() {
		n, err := pagecache.Cached(su.dir.MemPath())
		if err != nil {
			slog.Debug("serve: budget: page cache", "snapshot", su.dir.Path, "err", err)
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

// dropUnused drops the cached pages of the memory files no instance maps
// and returns how many it dropped.
func (b *budget) dropUnused() int64 {
	var dropped int64
	for _, su := range b.s.snaps.inUse() {
		if su.mapped {
			continue
		}
		n, err := pagecache.Drop(su.dir.MemPath())
		if err == nil && n > 0 {
			slog.Info("serve: memory budget: dropped the page cache of a snapshot without instances", "snapshot", su.dir.Path, "pages", n)
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
