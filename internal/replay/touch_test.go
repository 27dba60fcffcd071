package replay

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pagecache"
)

// TestMajorFaultsUnderSignals: a fault that reads from disk counts as major
// even when the replaying thread is sent signals all along, as the Go
// runtime's preemption does to a spinning goroutine. Without SIGURG blocked
// a signal pending when the fault retries sends it back to user space, and
// the repeated fault counts as minor.
func TestMajorFaultsUnderSignals(t *testing.T) {
	m := newSynthMem(t)
	f, err := os.Open(m.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(m.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	// One page per fault, as under nora: every touch of a cold page reads.
	if err := unix.Madvise(mem, unix.MADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	var s schedule
	for p := uint64(0); p < m.pages; p += 61 {
		if !m.hole(p) {
			s.steps = append(s.steps, step{page: p})
		}
	}
	if _, err := pagecache.Drop(m.path); err != nil {
		t.Fatal(err)
	}
	// A page fadvise could not drop (another CPU's LRU batch held it) is
	// not a major fault: expect only the ones mincore says are cold.
	vec, err := pagecache.Residency(m.path)
	if err != nil {
		t.Fatal(err)
	}
	var cold int64
	for _, st := range s.steps {
		if vec[st.page]&1 == 0 {
			cold++
		}
	}
	if cold < int64(len(s.steps))*9/10 {
		t.Fatalf("only %d of %d pages cold after dropping the cache", cold, len(s.steps))
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	var stop atomic.Bool
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			if unix.Tgkill(os.Getpid(), tid, unix.SIGURG) == nil {
				sent.Add(1)
			}
			// Nanosleep, not time.Sleep: the Go timer sleeps far longer.
			unix.Nanosleep(&unix.Timespec{Nsec: 20e3}, nil)
		}
	}()
	st := replay(mem, s, ComputeSpin, true)
	stop.Store(true)
	<-done
	if sent.Load() < 100 {
		t.Fatalf("only %d signals sent during the replay", sent.Load())
	}
	// More than cold is possible (this host's DAMON may evict a page that
	// was still cached); fewer means faults were lost.
	if st.major < cold || st.major > int64(len(s.steps)) {
		t.Errorf("replay counted %d major faults for %d cold pages of %d (%d signals sent)", st.major, cold, len(s.steps), sent.Load())
	}
}
