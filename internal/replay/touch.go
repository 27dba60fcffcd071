package replay

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapbpf/snapbpf/internal/pages"
)

// replayStats are one replay's measurements.
type replayStats struct {
	replay  time.Duration // first touch to the end of the tail
	stall   time.Duration // inside touches: waiting for memory
	minor   int64         // faults of the replaying thread
	major   int64
	touches int
}

// sink keeps the compiler from dropping the loads that touch pages.
var sink atomic.Uint32

// Compute modes: how a replay spends the guest's compute between touches.
const (
	// ComputeSpin keeps a CPU busy for each gap, as a vCPU would: VMs
	// compete for the host's CPUs with each other and with the policies'
	// own work.
	ComputeSpin = "spin"
	// ComputeSleep sleeps instead, gaps summed until they are worth a
	// sleep: as if every VM had a CPU of its own, so that many VMs on a
	// small host measure the memory system, not CPU contention.
	ComputeSleep = "sleep"
)

// sleepQuantum is the least compute a sleeping replay sleeps for; shorter
// sleeps overshoot by more than they last.
const sleepQuantum = 200 * time.Microsecond

// preemptibleSpin is the shortest spinning gap during which a replay
// takes the Go runtime's preemption signal (see replay).
const preemptibleSpin = time.Millisecond

// replay touches the schedule's pages in order, computing for each
// recorded gap between touches (mode ComputeSpin or ComputeSleep). The
// caller has locked its OS thread, so the thread's fault counters are the
// replay's.
//
// With blockSignals the thread blocks SIGURG, the Go runtime's preemption
// signal, while it touches pages. A fault that has started a read and must
// retry returns to user space instead when a signal is pending
// (arch/x86/mm/fault.c), and the repeated fault finds the page in the page
// cache and counts as minor: a spinning goroutine is sent SIGURG every 10
// ms or so, which lost one to three of json's 18 major faults per replay. A
// VMM's vCPU thread takes no such signals. Spins of preemptibleSpin or
// longer unblock it, so that VMs spinning on fewer CPUs than there are VMs
// still share them. Memory whose faults a goroutine of this process serves
// (userfaultfd) must not block it: a stop-the-world would wait for the
// faulting thread, and the fault for the stopped handler.
func replay(mem []byte, s schedule, mode string, blockSignals bool) replayStats {
	if blockSignals {
		blockPreemption(true)
		defer blockPreemption(false)
	}
	minor0, major0 := threadFaults()
	start := time.Now()
	last := start
	var st replayStats
	var acc byte
	var debt time.Duration // sleep mode: compute not yet slept
	compute := func(from time.Time, d time.Duration) {
		if mode != ComputeSleep {
			if blockSignals && d >= preemptibleSpin {
				blockPreemption(false)
				defer blockPreemption(true)
			}
			spin(from, d)
			return
		}
		debt += d
		if debt >= sleepQuantum {
			t := time.Now()
			time.Sleep(debt)
			debt -= time.Since(t)
		}
	}
	for _, p := range s.steps {
		if p.gapNs > 0 {
			compute(last, time.Duration(p.gapNs))
		}
		t := time.Now()
		off := p.page * pages.Size
		if p.write {
			// Adding 0 atomically is a write the compiler cannot drop
			// that leaves the page's bytes as they were.
			atomic.AddUint32((*uint32)(unsafe.Pointer(&mem[off])), 0)
		} else {
			acc += mem[off]
		}
		last = time.Now()
		st.stall += last.Sub(t)
		st.touches++
	}
	compute(last, time.Duration(s.tailNs))
	if mode == ComputeSleep && debt > 0 {
		time.Sleep(debt)
	}
	st.replay = time.Since(start)
	sink.Add(uint32(acc))
	minor1, major1 := threadFaults()
	st.minor, st.major = minor1-minor0, major1-major0
	return st
}

// blockPreemption blocks or unblocks SIGURG on the calling thread; the
// caller has locked its OS thread.
func blockPreemption(block bool) {
	var set unix.Sigset_t
	set.Val[(unix.SIGURG-1)/64] |= 1 << ((unix.SIGURG - 1) % 64)
	how := unix.SIG_UNBLOCK
	if block {
		how = unix.SIG_BLOCK
	}
	// Failure only means faults may be miscounted; never fatal.
	_ = unix.PthreadSigmask(how, &set, nil)
}

// spin computes until d has passed since from: the guest's compute, which
// occupies a CPU like the vCPU would.
func spin(from time.Time, d time.Duration) {
	for time.Since(from) < d {
	}
}
