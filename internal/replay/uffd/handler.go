package uffd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ServeFunc serves one missing-page fault at the page-aligned address
// addr; write says the fault was a write. It installs the page (Copy
// without DONTWAKE wakes the faulting thread).
type ServeFunc func(addr uintptr, write bool) error

// Handler serves a userfaultfd's faults in a goroutine until stopped.
type Handler struct {
	u     *FD
	serve ServeFunc
	stopR int
	stopW int

	done   chan struct{}
	err    error
	faults atomic.Int64
	busy   atomic.Int64 // ns spent serving

	once    sync.Once
	stopErr error
}

// Serve starts serving u's faults with serve.
func Serve(u *FD, serve ServeFunc) (*Handler, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("userfaultfd handler: pipe: %w", err)
	}
	h := &Handler{u: u, serve: serve, stopR: p[0], stopW: p[1], done: make(chan struct{})}
	go h.loop()
	return h, nil
}

// Faults is how many faults the handler has taken (served, or failed on).
func (h *Handler) Faults() int64 { return h.faults.Load() }

// Busy is the time the handler spent serving faults.
func (h *Handler) Busy() time.Duration { return time.Duration(h.busy.Load()) }

// msgBatch is how many messages one read takes.
const msgBatch = 64

func (h *Handler) loop() {
	defer close(h.done)
	buf := make([]byte, MsgSize*msgBatch)
	fds := []unix.PollFd{{Fd: int32(h.u.fd), Events: unix.POLLIN}, {Fd: int32(h.stopR), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			h.err = fmt.Errorf("userfaultfd handler: poll: %w", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			h.err = fmt.Errorf("userfaultfd handler: descriptor error (revents %#x)", fds[0].Revents)
			return
		}
		n, err := unix.Read(h.u.fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			h.err = fmt.Errorf("userfaultfd handler: read: %w", err)
			return
		}
		for off := 0; off+MsgSize <= n; off += MsgSize {
			m := buf[off : off+MsgSize]
			if m[0] != EventPagefault {
				continue // events we did not ask for
			}
			flags := binary.LittleEndian.Uint64(m[8:])
			addr := uintptr(binary.LittleEndian.Uint64(m[16:])) &^ (pageSize - 1)
			// Counted before serving: serving wakes the faulting thread,
			// which may read the count at once.
			h.faults.Add(1)
			t := time.Now()
			err := h.serve(addr, flags&FlagWrite != 0)
			h.busy.Add(int64(time.Since(t)))
			if err != nil {
				h.err = fmt.Errorf("userfaultfd handler: serve %#x: %w", addr, err)
				return
			}
		}
	}
}

const pageSize = 4096

// Stop ends the handler and waits for its goroutine; it returns the first
// error the handler met. Safe to call more than once. It does not close
// the userfaultfd.
func (h *Handler) Stop() error {
	h.once.Do(func() {
		_, werr := unix.Write(h.stopW, []byte{1})
		<-h.done
		errs := []error{h.err}
		if werr != nil {
			errs = append(errs, fmt.Errorf("userfaultfd handler: stop: %w", werr))
		}
		errs = append(errs, unix.Close(h.stopR), unix.Close(h.stopW))
		h.stopErr = errors.Join(errs...)
	})
	return h.stopErr
}

// Done is closed when the handler's goroutine has exited (stopped, or
// failed: then Stop returns why).
func (h *Handler) Done() <-chan struct{} { return h.done }
