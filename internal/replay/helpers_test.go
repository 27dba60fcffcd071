package replay

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/trace"
	"github.com/snapbpf/snapbpf/internal/wset"

	"github.com/snapbpf/snapbpf/internal/testenv"
)

func needRoot(t *testing.T, why string) {
	t.Helper()
	testenv.NeedRoot(t, why)
}

// synthMem is a memory file made for a test: random data, with every
// fourth MiB a hole and every eighth page of the rest written as zeroes
// (data that FaaSnap's scan calls zero).
type synthMem struct {
	path  string
	size  int64
	hole  func(page uint64) bool
	zero  func(page uint64) bool
	pages uint64
}

const synthMiB = 64

func newSynthMem(t *testing.T) *synthMem {
	t.Helper()
	// On disk, not tmpfs: the page cache and readahead must behave as for
	// a snapshot.
	dir, err := os.MkdirTemp("/var/tmp", "snapbpf-replay-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	m := &synthMem{path: filepath.Join(dir, "mem"), size: synthMiB << 20}
	m.pages = uint64(m.size / pages.Size)
	const perMiB = (1 << 20) / pages.Size
	m.hole = func(p uint64) bool { return (p/perMiB)%4 == 3 }
	m.zero = func(p uint64) bool { return !m.hole(p) && p%8 == 5 }
	f, err := os.Create(m.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(m.size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for mib := uint64(0); mib < synthMiB; mib++ {
		if m.hole(mib * perMiB) {
			continue
		}
		for i := range chunk {
			chunk[i] = byte(rng.Uint32())
		}
		for p := uint64(0); p < perMiB; p++ {
			if m.zero(mib*perMiB + p) {
				clear(chunk[p*pages.Size : (p+1)*pages.Size])
			}
		}
		if _, err := f.WriteAt(chunk, int64(mib)<<20); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return m
}

// synthTrace touches runs and scattered pages of m (holes and zero pages
// among them), reads, writes and upgrades, 2 µs apart.
func synthTrace(t *testing.T, m *synthMem) *trace.Trace {
	t.Helper()
	id, err := wset.IdentifyFile(m.path, "")
	if err != nil {
		t.Fatal(err)
	}
	tr := &trace.Trace{Meta: trace.Meta{
		Mem: id, Function: "synthetic", Created: time.Now().UTC(),
		VMMStartNs: 1e6, StateLoadNs: 1e6, GuestFnNs: 40e6, HostFnNs: 4e6,
	}}
	rng := rand.New(rand.NewPCG(3, 4))
	seen := map[uint64]trace.Op{}
	var now int64
	add := func(p uint64, op trace.Op) {
		now += 2000
		e := trace.Event{TimeNs: now, Page: p, Op: op, StallNs: 500}
		if m.hole(p) {
			e.Flags |= trace.FlagHole
		}
		tr.Events = append(tr.Events, e)
		seen[p] = op
	}
	touch := func(p uint64) {
		op, ok := seen[p]
		switch {
		case !ok && rng.IntN(3) == 0:
			add(p, trace.OpWrite)
		case !ok:
			add(p, trace.OpRead)
		case op == trace.OpRead && rng.IntN(4) == 0:
			add(p, trace.OpUpgrade)
		}
	}
	for range 40 {
		start := rng.Uint64N(m.pages - 64)
		for p := start; p < start+uint64(1+rng.IntN(64)); p++ {
			touch(p)
		}
	}
	for range 1500 {
		touch(rng.Uint64N(m.pages))
	}
	tr.Meta.ResumeToResultNs = now + 1e6
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	return tr
}

// policyOptions are the options runPolicy runs with.
func policyOptions(t *testing.T, m *synthMem, tr *trace.Trace, policy string, n int) Options {
	return Options{
		Mem: m.path, Trace: tr, Policy: policy, Concurrency: n, GapScale: 1,
		VMMStart: time.Millisecond, StateLoad: time.Millisecond,
		WorkDir: t.TempDir(), Verify: true,
	}
}

func runPolicy(t *testing.T, m *synthMem, tr *trace.Trace, policy string, n int, mod func(*Options)) *Report {
	t.Helper()
	o := policyOptions(t, m, tr, policy, n)
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%s: %v", policy, err)
	}
	return r
}
