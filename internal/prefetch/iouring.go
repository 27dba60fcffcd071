package prefetch

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uringEngine submits the requests through one io_uring, keeping up to
// `workers` in flight, from a single goroutine and without cgo.
//
// With opRead each request is a buffered read into one shared scratch
// buffer (the data is thrown away; only the page-cache fill matters). The
// kernel issues the readahead inline at submission and completes the read
// when the pages are up to date (async buffered reads), so completion is
// observed, not polled, and no thread blocks per request.
//
// With opFadvise each request is a POSIX_FADV_WILLNEED; io_uring runs it
// on its worker threads, and the completion only says the reads are queued.
type uringEngine struct {
	op uint8
}

func init() {
	register(uringEngine{op: opRead})
	register(uringEngine{op: opFadvise})
}

func (e uringEngine) name() string {
	if e.op == opFadvise {
		return "iouring-willneed"
	}
	return "iouring"
}

func (e uringEngine) completes() bool   { return e.op == opRead }
func (uringEngine) defaultWorkers() int { return 64 }

// ringEntries bounds the submission ring; deeper queues gain nothing on a
// single device and cost locked memory.
const ringEntries = 256

func (e uringEngine) run(ctx context.Context, t *task) (retErr error) {
	issuedCalled := false
	defer func() {
		if !issuedCalled {
			t.issued()
		}
	}()
	// The ring's completions of buffered reads run as task work on the
	// thread that submitted; keep that one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	depth := uint32(min(t.workers, ringEntries))
	r, err := newUring(ringEntries)
	if err != nil {
		return err
	}
	defer func() {
		if err := r.close(); err != nil && retErr == nil {
			retErr = err
		}
	}()

	var scratch []byte
	if e.op == opRead {
		scratch, err = unix.Mmap(-1, 0, int(max(t.maxLen, 4096)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("io_uring scratch buffer: %w", err)
		}
		defer unix.Munmap(scratch)
	}

	// left[i] is what request i still has to read: a short read is
	// resubmitted for the rest.
	left := append([]request(nil), t.reqs...)
	var retry []int
	next, inflight := 0, uint32(0)
	fd := int32(t.f.Fd())
	for {
		stop := ctx.Err() != nil
		for !stop && inflight+r.pending < depth && r.space() > 0 {
			i := -1
			if len(retry) > 0 {
				i, retry = retry[len(retry)-1], retry[:len(retry)-1]
			} else if next < len(left) {
				i = next
				next++
			} else {
				break
			}
			q := left[i]
			s := sqe{opcode: e.op, fd: fd, off: uint64(q.off), len: uint32(q.len), userData: uint64(i)}
			if e.op == opRead {
				s.addr = uint64(uintptr(unsafe.Pointer(&scratch[0])))
			} else {
				s.opFlags = unix.FADV_WILLNEED
			}
			r.queue(s)
		}
		if r.pending == 0 && inflight == 0 {
			break
		}
		queuedAll := next == len(left) && len(retry) == 0
		wait := uint32(0)
		if inflight+r.pending >= depth || queuedAll || stop {
			wait = 1
		}
		n, err := r.enter(wait)
		if err != nil {
			return err
		}
		inflight += n
		if queuedAll && r.pending == 0 && !issuedCalled {
			issuedCalled = true
			t.issued()
		}
		var cerr error
		r.reap(func(c cqe) {
			inflight--
			i := int(c.userData)
			switch {
			case c.res < 0 && (c.res == -int32(unix.EINTR) || c.res == -int32(unix.EAGAIN)):
				retry = append(retry, i)
			case c.res < 0:
				if cerr == nil {
					cerr = fmt.Errorf("io_uring %s %s at %d+%d: %w", e.name(), t.f.Name(), left[i].off, left[i].len, syscall.Errno(-c.res))
				}
			case e.op == opRead && c.res > 0 && int64(c.res) < left[i].len:
				left[i].off += int64(c.res)
				left[i].len -= int64(c.res)
				retry = append(retry, i)
			}
		})
		if cerr != nil {
			return cerr
		}
	}
	return ctx.Err()
}
