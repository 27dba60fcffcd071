package serve

import (
	"testing"

	"github.com/snapbpf/snapbpf/internal/snapshot"
)

// fakeSnap is a snapRef whose release only counts: the logic of who holds
// a snapshot, without files or mounts.
func fakeSnap(rs *snapRefs, path string, released *map[string]int) *snapRef {
	return rs.add(&snapRef{dir: &snapshot.Dir{Path: path}, release: func() { (*released)[path]++ }})
}

// TestSnapRefSwitch: an entry on a mount switches to the local copy while
// an instance restored from the mount runs. The next cold start holds the
// copy; the mount is released exactly once, when the last instance
// restored from it ends, not when the entry moves on; the budget sees both
// memory files while both are in use.
func TestSnapRefSwitch(t *testing.T) {
	var rs snapRefs
	released := map[string]int{}
	e := &entry{name: "f"}
	mount := fakeSnap(&rs, "/mnt/id", &released)
	if !e.replaceSnap(nil, mount) {
		t.Fatal("the first snapshot was not installed")
	}
	a := e.holdSnap() // a cold start on the mount
	b := e.holdSnap() // another one
	if a != mount || b != mount {
		t.Fatalf("cold starts hold %v %v, want the mount", a, b)
	}

	local := fakeSnap(&rs, "/snapshots/id", &released)
	if !e.replaceSnap(mount, local) {
		t.Fatal("the local copy did not replace the mount")
	}
	if released["/mnt/id"] != 0 {
		t.Fatal("the mount was released while instances restored from it run")
	}
	c := e.holdSnap()
	if c != local {
		t.Fatalf("a cold start after the switch holds %s, want the local copy", c.dir.Path)
	}
	use := rs.inUse()
	if len(use) != 2 {
		t.Fatalf("in use: %+v, want the mount and the local copy", use)
	}
	for _, u := range use {
		if !u.mapped {
			t.Errorf("%s in use without instances, want both mapped", u.dir.Path)
		}
	}

	// A stale switch (the entry moved on) gives up what it opened.
	stale := fakeSnap(&rs, "/snapshots/other", &released)
	if e.replaceSnap(mount, stale) {
		t.Error("a snapshot replaced one the entry no longer uses")
	}
	if released["/snapshots/other"] != 1 {
		t.Errorf("the stale switch's snapshot released %d times, want 1", released["/snapshots/other"])
	}

	a.drop()
	if released["/mnt/id"] != 0 {
		t.Error("the mount was released while a second instance restored from it runs")
	}
	b.drop()
	if released["/mnt/id"] != 1 {
		t.Errorf("the mount released %d times after its last instance ended, want 1", released["/mnt/id"])
	}
	select {
	case <-mount.gone:
	default:
		t.Error("the mount's ref not marked gone")
	}
	if use := rs.inUse(); len(use) != 1 || use[0].dir.Path != "/snapshots/id" || !use[0].mapped {
		t.Errorf("in use after the mount went: %+v, want the local copy, mapped", use)
	}

	// The function deleted while an instance of the copy runs: the copy
	// stays until that instance ends.
	e.closeDir()
	if e.holdSnap() != nil {
		t.Error("a cold start after closeDir got a snapshot")
	}
	if released["/snapshots/id"] != 0 {
		t.Error("the local copy was released while an instance restored from it runs")
	}
	if use := rs.inUse(); len(use) != 1 || !use[0].mapped {
		t.Errorf("in use: %+v, want the copy, mapped", use)
	}
	c.drop()
	if released["/snapshots/id"] != 1 || rs.count() != 0 {
		t.Errorf("after the last instance: released %v, %d in use; want the copy released once, none in use", released, rs.count())
	}
}

// TestSnapRefUnmapped: a snapshot only its entry holds is in use but
// unmapped (the budget may drop its page cache); a failed cold start's
// hold, dropped, leaves it so.
func TestSnapRefUnmapped(t *testing.T) {
	var rs snapRefs
	released := map[string]int{}
	e := &entry{name: "f"}
	e.replaceSnap(nil, fakeSnap(&rs, "/snapshots/f", &released))
	r := e.holdSnap()
	if use := rs.inUse(); len(use) != 1 || !use[0].mapped {
		t.Fatalf("in use during a cold start: %+v, want mapped", use)
	}
	r.drop() // the restore failed
	if use := rs.inUse(); len(use) != 1 || use[0].mapped {
		t.Fatalf("in use after a failed cold start: %+v, want it unmapped", use)
	}
	if released["/snapshots/f"] != 0 {
		t.Fatal("released while its entry owns it")
	}
	e.closeDir()
	e.closeDir()
	if released["/snapshots/f"] != 1 {
		t.Errorf("released %d times after closeDir twice, want 1", released["/snapshots/f"])
	}
}
