package record

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/testenv"

	"github.com/snapbpf/snapbpf/internal/trace"
)

// TestTracerSeesFirstTouches maps a file private in this process, traces
// this process's faults while touching some pages (reads, writes, a later
// write) and checks the events.
func TestTracerSeesFirstTouches(t *testing.T) {
	testenv.NeedRoot(t, "loads eBPF programs")
	f, err := os.CreateTemp("/var/tmp", "snapbpf-trace-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const nPages = 64
	if _, err := f.Write(make([]byte, nPages*pages.Size)); err != nil {
		t.Fatal(err)
	}
	// Cold, as a trace is recorded: a cached file's large folios would be
	// mapped whole by the first fault on them.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, nPages*pages.Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	// One page per fault, as readahead off gives the traced VMM.
	if err := unix.Madvise(m, unix.MADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	g, err := findGuestRAM(os.Getpid(), f.Name())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := startFaultTracer(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	runtime.LockOSThread()
	// Atomic loads, so the compiler keeps them.
	load := func(off int) { atomic.LoadUint32((*uint32)(unsafe.Pointer(&m[off]))) }
	start := monotonicNs()
	load(3 * pages.Size)
	m[10*pages.Size] = 1
	load(20*pages.Size + 4)
	atomic.AddUint32((*uint32)(unsafe.Pointer(&m[3*pages.Size])), 0)
	load(3*pages.Size + 4) // no fault: mapped and written
	end := monotonicNs()
	runtime.UnlockOSThread()
	raws, lost, err := tr.stop()
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := buildEvents(raws, g, nil, start, start, end)
	var got []trace.Event
	for _, e := range ev {
		got = append(got, trace.Event{Page: e.Page, Op: e.Op})
	}
	want := []trace.Event{{Page: 3, Op: trace.OpRead}, {Page: 10, Op: trace.OpWrite}, {Page: 20, Op: trace.OpRead}, {Page: 3, Op: trace.OpUpgrade}}
	if len(got) != len(want) || lost != 0 {
		t.Fatalf("events %+v (lost %d), want %+v", got, lost, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
