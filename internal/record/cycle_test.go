package record

import (
	"path/filepath"
	"testing"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// TestRecordRestoreCycle is the end-to-end cycle: snapshot,
// record the working set with eBPF, then restore cold under every policy
// with the results verified; snapbpf must take a small fraction of nora's
// page faults and storage reads.
func TestRecordRestoreCycle(t *testing.T) {
	img := needVM(t)
	f := createSnapshot(t, img, "bert", 16, filepath.Join(t.TempDir(), "bert"))
	set, rep := record(t, f, capture.MethodEBPF)

	if set.Pages() == 0 || rep.Pages != set.Pages() {
		t.Fatalf("working set of %d pages (report says %d): want a non-empty set", set.Pages(), rep.Pages)
	}
	if rep.Method != capture.MethodEBPF || rep.Lost != 0 || rep.IncludesReadahead {
		t.Errorf("report: method %q, %d lost events, includes readahead %v: want an exact eBPF capture", rep.Method, rep.Lost, rep.IncludesReadahead)
	}
	if !rep.VM.ResultOK {
		t.Errorf("recorded invoke: wrong result %+v", rep.VM)
	}
	stored, err := wset.Read(f.dir.File(policy.WorkingSetFile))
	if err != nil {
		t.Fatal(err)
	}
	if stored.Pages() != set.Pages() || len(stored.Extents) != len(set.Extents) {
		t.Errorf("stored set: %d pages in %d extents, recorded %d in %d", stored.Pages(), len(stored.Extents), set.Pages(), len(set.Extents))
	}
	if err := stored.CheckFile(f.dir.MemPath(), f.dir.Manifest.ID); err != nil {
		t.Errorf("stored set does not match its own snapshot: %v", err)
	}
	checkInData(t, f.dir.MemPath(), set)

	results := map[string]int64{}
	reads := map[string]int64{}
	memFaults := map[string]int64{}
	for _, name := range policy.Names() {
		vms, st := restoreWith(t, f, name, 1, 1)
		r := vms[0]
		t.Logf("%-7s e2e %6.0f ms, major faults %5d (%5d on the memory file), read %6.1f MiB, prefetch %5.1f MiB in %3.0f ms",
			name, r.E2EMs, r.MajorFaults, r.MemFileMajorFaults, float64(r.MemFileReadBytes)/(1<<20), float64(st.Bytes)/(1<<20), st.CompleteMs)
		results[name], reads[name], memFaults[name] = r.MajorFaults, r.MemFileReadBytes, r.MemFileMajorFaults
		if name == policy.SnapBPF && st.Bytes < set.Bytes() {
			t.Errorf("snapbpf prefetched %d bytes, less than the working set's %d", st.Bytes, set.Bytes())
		}
		if name != policy.SnapBPF && st.Bytes != 0 {
			t.Errorf("%s prefetched %d bytes: only snapbpf prefetches", name, st.Bytes)
		}
	}
	// Every restore counted its faults on the memory file apart, and those
	// are part of the process's.
	for name, f := range memFaults {
		if f < 0 || f > results[name] {
			t.Errorf("%s: %d major faults on the memory file of %d in all", name, f, results[name])
		}
	}
	// nora reads every touched page on a fault of its own: about the
	// working set. snapbpf's remaining faults are pages the prefetch had
	// not finished and hole pages (never in a working set; no I/O).
	if results[policy.NoRA] < set.Pages()/2 {
		t.Errorf("nora took %d major faults for a working set of %d pages: the cold restore was not cold", results[policy.NoRA], set.Pages())
	}
	if results[policy.SnapBPF]*10 > results[policy.NoRA] {
		t.Errorf("snapbpf took %d major faults, more than 10%% of nora's %d", results[policy.SnapBPF], results[policy.NoRA])
	}
	// A page the set lacks comes in as under lazy, with a readahead
	// window around it (megabytes for one fault), so the bound on bytes
	// is lazy's, not nora's: snapbpf never reads more than Linux alone.
	if reads[policy.SnapBPF] > reads[policy.Lazy] {
		t.Errorf("snapbpf's VMM read %d bytes of the memory file, more than lazy's %d", reads[policy.SnapBPF], reads[policy.Lazy])
	}
}

// checkInData fails for working-set pages that lie in holes of the memory
// file: reading a hole needs no I/O, so a hole page in the set is capture
// noise.
func checkInData(t *testing.T, mem string, set *wset.Set) {
	t.Helper()
	data, err := pages.Data(mem)
	if err != nil {
		t.Fatal(err)
	}
	inData := func(p uint64) bool { _, in := pages.Search(data, p); return in }
	var holes int
	for _, e := range set.Extents {
		for p := e.Page; p < e.End(); p++ {
			if !inData(p) {
				if holes < 5 {
					t.Errorf("working-set page %d lies in a hole of %s", p, mem)
				}
				holes++
			}
		}
	}
	if holes > 0 {
		t.Errorf("%d of %d working-set pages lie in holes", holes, set.Pages())
	}
}

// TestZeroFillRemovesHoleFaults records alloc on a snapshot with free
// pages reported: the pages it allocates are holes of the memory file, so
// they are not in the working set but listed as its zero extents, and
// snapbpf's prefetch fills them with zeroes. Under nora every one of them
// is a major fault (the kernel zero-fills a page on the fault); under
// snapbpf almost none is.
func TestZeroFillRemovesHoleFaults(t *testing.T) {
	img := needVM(t)
	const dataMiB = 16
	f := createSnapshotWith(t, img, "alloc", dataMiB, filepath.Join(t.TempDir(), "alloc"), snapshot.FreePagesReport)
	set, rep := record(t, f, capture.MethodEBPF)
	if rep.Runs != DefaultRuns || rep.ZeroPages != set.ZeroPages() {
		t.Errorf("report: %d runs, %d zero pages; want %d runs and the set's %d", rep.Runs, rep.ZeroPages, DefaultRuns, set.ZeroPages())
	}
	// alloc writes dataMiB of fresh memory: the guest takes it from free
	// pages, which reporting made holes.
	if min := int64(dataMiB << 20 / pages.Size); set.ZeroPages() < min {
		t.Fatalf("working set lists %d touched hole pages, want at least the %d pages alloc fills", set.ZeroPages(), min)
	}
	checkInData(t, f.dir.MemPath(), set)

	nora, _ := restoreWith(t, f, policy.NoRA, 1, 1)
	sb, st := restoreWith(t, f, policy.SnapBPF, 1, 1)
	t.Logf("nora: %d major faults; snapbpf: %d major faults, prefetch %d bytes + %d zero-filled",
		nora[0].MajorFaults, sb[0].MajorFaults, st.Bytes, st.ZeroBytes)
	if st.ZeroBytes != set.ZeroPages()*pages.Size {
		t.Errorf("prefetch zero-filled %d bytes, want the set's %d zero pages", st.ZeroBytes, set.ZeroPages())
	}
	if nora[0].MajorFaults < set.ZeroPages() {
		t.Errorf("nora took %d major faults, fewer than the %d hole pages touched: the restore was not cold", nora[0].MajorFaults, set.ZeroPages())
	}
	if sb[0].MajorFaults*50 > nora[0].MajorFaults {
		t.Errorf("snapbpf took %d major faults, more than 2%% of nora's %d", sb[0].MajorFaults, nora[0].MajorFaults)
	}
}
