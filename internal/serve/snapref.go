package serve

import (
	"sync"

	"github.com/snapbpf/snapbpf/internal/remotesnap"
	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// snapRef is an opened snapshot a function restores from, with the remote
// lease it was opened through (nil for a snapshot in Home/snapshots). Its
// function's entry owns it while new cold starts use it, and each instance
// restored from it holds it until its VMM has ended: a VMM maps the memory
// file, so the file, and a lazymem mount it lies on, must stay until the
// last such VMM ends, even once the entry has moved on to another
// snapshot (the local copy that replaced a mount, a newer copy). Released,
// it closes the directory and then releases the lease: the mount goes with
// its last lease.
type snapRef struct {
	dir   *snapshot.Dir
	lease *remotesnap.Lease
	refs  *snapRefs
	// release closes dir and releases lease (replaced in tests).
	release func()

	// Guarded by refs.mu:
	owned bool // the entry uses it for new cold starts
	vmms  int  // instances restored from it whose VMM may still run
	// gone is closed once it was released.
	gone chan struct{}
}

// snapRefs are the service's snapshots in use, by an entry or an instance:
// what the memory budget measures.
type snapRefs struct {
	mu   sync.Mutex
	live map[*snapRef]struct{}
}

// open registers dir (opened through lease, or nil) as owned by an entry.
func (rs *snapRefs) open(dir *snapshot.Dir, lease *remotesnap.Lease) *snapRef {
	return rs.add(&snapRef{dir: dir, lease: lease, release: func() {
		// The directory first: its open memory file would keep the
		// mount busy.
		dir.Close()
		if lease != nil {
			lease.Release()
		}
	}})
}

// add registers r, owned by an entry.
func (rs *snapRefs) add(r *snapRef) *snapRef {
	r.refs, r.owned, r.gone = rs, true, make(chan struct{})
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.live == nil {
		rs.live = map[*snapRef]struct{}{}
	}
	rs.live[r] = struct{}{}
	return r
}

// hold counts one more instance restored from r. Only while its entry
// owns r (under the entry's lock): a released r is never held again.
func (r *snapRef) hold() {
	r.refs.mu.Lock()
	defer r.refs.mu.Unlock()
	r.vmms++
}

// drop ends an instance's hold, once its VMM has ended (or its restore
// failed).
func (r *snapRef) drop() {
	r.refs.mu.Lock()
	r.vmms--
	last := r.unusedLocked()
	r.refs.mu.Unlock()
	if last {
		r.release()
	}
}

// disown ends the entry's ownership: deleted, closed, or replaced by
// another snapshot.
func (r *snapRef) disown() {
	r.refs.mu.Lock()
	r.owned = false
	last := r.unusedLocked()
	r.refs.mu.Unlock()
	if last {
		r.release()
	}
}

// unusedLocked unregisters r once nothing holds it and reports whether
// it did (the caller releases it, outside the lock).
func (r *snapRef) unusedLocked() bool {
	if r.owned || r.vmms > 0 {
		return false
	}
	if _, ok := r.refs.live[r]; !ok {
		return false
	}
	delete(r.refs.live, r)
	close(r.gone)
	return true
}

// snapUse is a snapshot in use and whether any instance's VMM may map it.
type snapUse struct {
	dir    *snapshot.Dir
	mapped bool
}

// inUse lists the snapshots in use, each memory file once.
func (rs *snapRefs) inUse() []snapUse {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []snapUse
	seen := map[string]int{}
	for r := range rs.live {
		if r.dir == nil {
			continue
		}
		p := r.dir.MemPath()
		if i, ok := seen[p]; ok {
			out[i].mapped = out[i].mapped || r.vmms > 0
			continue
		}
		seen[p] = len(out)
		out = append(out, snapUse{dir: r.dir, mapped: r.vmms > 0})
	}
	return out
}

// count is how many snapshots are in use.
func (rs *snapRefs) count() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.live)
}
