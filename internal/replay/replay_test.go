package replay

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
)

// TestBackendsYieldMemoryFile replays one trace under every policy with
// two VMs and checks that every VM sees exactly the memory file's bytes on
// every page it touched (SHA-256 over the touched pages, and page by page).
func TestBackendsYieldMemoryFile(t *testing.T) {
	needRoot(t, "drops page caches; reap needs userfaultfd")
	m := newSynthMem(t)
	tr := synthTrace(t, m)
	pages := len(pagesOf(tr))
	variants := map[string]func(*Options){
		policy.SnapBPF + "-holes-anon": func(o *Options) { o.Policy, o.SnapBPFHolesAnon = policy.SnapBPF, true },
		FaaSnap + "-exact":             func(o *Options) { o.Policy, o.FaaSnapRecordNoRA = FaaSnap, true },
		REAP + "-shared-read":          func(o *Options) { o.Policy, o.REAPSharedRead = REAP, true },
	}
	for _, p := range Policies() {
		variants[p] = nil
	}
	for policy, mod := range variants {
		t.Run(policy, func(t *testing.T) {
			r := runPolicy(t, m, tr, policy, 2, mod)
			run := r.Runs[0]
			if run.FileDigest == "" || run.VerifiedPages != int64(2*pages) {
				t.Fatalf("verified %d pages, want %d", run.VerifiedPages, 2*pages)
			}
			for i, v := range run.VMs {
				if v.Digest != run.FileDigest || v.Mismatches != 0 {
					t.Errorf("vm %d: digest %s, file %s, %d pages differ", i, v.Digest, run.FileDigest, v.Mismatches)
				}
			}
			if r.CompletionMs <= 0 || run.TotalBytes <= 0 {
				t.Errorf("completion %.1f ms, memory %d bytes", r.CompletionMs, run.TotalBytes)
			}
		})
	}
}

// TestPolicyShapes checks what tells the policies apart: nora reads only
// what is touched, snapbpf prefetches and so waits less than nora, REAP's
// pages are all anonymous and its working set is installed, FaaSnap maps
// per region and never reads a zero page.
func TestPolicyShapes(t *testing.T) {
	needRoot(t, "drops page caches; reap needs userfaultfd")
	m := newSynthMem(t)
	tr := synthTrace(t, m)
	var touched, data int64
	for _, p := range pagesOf(tr) {
		touched++
		if !m.hole(p) {
			data++
		}
	}
	reps := map[string]*Report{}
	for _, p := range Policies() {
		reps[p] = runPolicy(t, m, tr, p, 1, func(o *Options) { o.VMMStart = 20 * time.Millisecond })
	}
	if got := reps[policy.NoRA].ReadBytes; got > (data+64)*pages.Size {
		t.Errorf("nora read %d bytes for %d touched data pages", got, data)
	}
	if reps[policy.SnapBPF].StallMs >= reps[policy.NoRA].StallMs {
		t.Errorf("snapbpf stalled %.2f ms, nora %.2f ms", reps[policy.SnapBPF].StallMs, reps[policy.NoRA].StallMs)
	}
	reap := reps[REAP]
	if reap.Prepare == nil || reap.Prepare.WorkingSetPages != touched {
		t.Errorf("reap recorded %+v, want %d pages", reap.Prepare, touched)
	}
	if reap.UffdFaults != 0 {
		t.Errorf("reap served %.0f faults on demand replaying its own record trace", reap.UffdFaults)
	}
	if reap.AnonBytes != touched*pages.Size {
		t.Errorf("reap anonymous memory %d, want every touched page (%d)", reap.AnonBytes, touched*pages.Size)
	}
	fs := reps[FaaSnap]
	if fs.Runs[0].VMs[0].Mappings < 3 {
		t.Errorf("faasnap made %d mappings", fs.Runs[0].VMs[0].Mappings)
	}
	if fs.Prepare.WorkingSetPages == 0 || fs.Prepare.OverlayRegions == 0 {
		t.Errorf("faasnap prepared %+v", fs.Prepare)
	}
}

// TestREAPConcurrentMemoryGrows: REAP's anonymous memory grows with the
// VMs, snapbpf's page cache does not.
func TestREAPConcurrentMemoryGrows(t *testing.T) {
	needRoot(t, "drops page caches; reap needs userfaultfd")
	m := newSynthMem(t)
	tr := synthTrace(t, m)
	one, four := runPolicy(t, m, tr, REAP, 1, nil), runPolicy(t, m, tr, REAP, 4, nil)
	if four.AnonBytes != 4*one.AnonBytes {
		t.Errorf("reap: %d anonymous bytes for 4 VMs, %d for 1", four.AnonBytes, one.AnonBytes)
	}
	// Sharing alone: with readahead kept (the default), a touch that
	// races ahead of the prefetch reads a window around it, and how many
	// do depends on the timing of 1 or 4 VMs, not on per-VM copies.
	noRA := func(o *Options) { o.SnapBPFNoReadahead = true }
	s1, s4 := runPolicy(t, m, tr, policy.SnapBPF, 1, noRA), runPolicy(t, m, tr, policy.SnapBPF, 4, noRA)
	if c1, c4 := s1.PageCache[m.path], s4.PageCache[m.path]; c4 > c1+64*pages.Size {
		t.Errorf("snapbpf: page cache %d bytes for 4 VMs, %d for 1", c4, c1)
	}
}

// TestREAPLeavesNothing runs REAP and checks that its handlers and
// descriptors are gone afterwards.
func TestREAPLeavesNothing(t *testing.T) {
	needRoot(t, "reap needs userfaultfd")
	m := newSynthMem(t)
	tr := synthTrace(t, m)
	runPolicy(t, m, tr, REAP, 1, nil) // warm up lazily started runtime goroutines
	fds, goroutines := countFDs(t), runtime.NumGoroutine()
	runPolicy(t, m, tr, REAP, 3, func(o *Options) { o.REAPSharedRead = true })
	if got := countFDs(t); got != fds {
		t.Errorf("%d descriptors open after the replay, %d before", got, fds)
	}
	for i := 0; runtime.NumGoroutine() > goroutines && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		t.Errorf("%d goroutines after the replay, %d before", got, goroutines)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestCompactFileRefused: a compact file made for one memory file is
// refused for another, and a damaged one is refused.
func TestCompactFileRefused(t *testing.T) {
	needRoot(t, "reap's record phase needs userfaultfd")
	a, b := newSynthMem(t), newSynthMem(t)
	// b differs from a in its contents (same size).
	f, err := os.OpenFile(b.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("other snapshot"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tr := synthTrace(t, a)
	r := runPolicy(t, a, tr, REAP, 1, nil)
	path := r.Prepare.CompactFile
	env := func(m *synthMem) *env {
		e, err := newTestEnv(m.path)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if _, err := openCompact(path, kindREAP, env(a).id); err != nil {
		t.Fatalf("the file's own memory file: %v", err)
	}
	if _, err := openCompact(path, kindREAP, env(b).id); !errors.Is(err, ErrCompactMismatch) {
		t.Errorf("another memory file: %v, want ErrCompactMismatch", err)
	}
	if _, err := openCompact(path, kindFaaSnap, env(a).id); err == nil {
		t.Error("a REAP file opened as FaaSnap's")
	}
	// Damage: a flipped metadata byte, then a truncated file.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), data...)
	bad[compactFixed+3] ^= 0x40
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openCompact(path, kindREAP, env(a).id); !errors.Is(err, ErrCompactCorrupt) {
		t.Errorf("flipped byte: %v, want ErrCompactCorrupt", err)
	}
	if err := os.WriteFile(path, data[:len(data)-pages.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openCompact(path, kindREAP, env(a).id); !errors.Is(err, ErrCompactCorrupt) {
		t.Errorf("truncated: %v, want ErrCompactCorrupt", err)
	}
	// A run refuses a trace recorded on another memory file.
	if _, err := Run(t.Context(), Options{Mem: b.path, Trace: tr, Policy: policy.NoRA}); err == nil {
		t.Error("replayed a trace on another memory file")
	}
}

// TestREAPUnderGC replays REAP while the garbage collector stops the world
// over and over: the thread that faults on userfaultfd memory must stay
// preemptible, or a stop-the-world waits for it while it waits for the
// stopped handler.
func TestREAPUnderGC(t *testing.T) {
	needRoot(t, "reap needs userfaultfd")
	m := newSynthMem(t)
	tr := synthTrace(t, m)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	o := policyOptions(t, m, tr, REAP, 2)
	done := make(chan error, 1)
	go func() {
		// No context deadline: a deadlocked replay would not see it.
		_, err := Run(context.Background(), o)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		// Reached only if the world is not stopped for good; a deadlocked
		// stop-the-world hangs the test binary until go test's timeout.
		t.Fatal("reap replay did not finish in 2 minutes while the collector ran")
	}
}
