package prefetch

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// preadEngine reads every request into a throwaway buffer from a pool of
// goroutines: the reference engine. Its completion is exact (a read returns
// when the data is there) but it copies every byte once more to user space
// and holds a thread per request in flight.
type preadEngine struct{}

func init() { register(preadEngine{}) }

func (preadEngine) name() string        { return "pread" }
func (preadEngine) completes() bool     { return true }
func (preadEngine) defaultWorkers() int { return 32 }

func (preadEngine) run(ctx context.Context, t *task) error {
	fd := int(t.f.Fd())
	return pool(ctx, t, t.maxLen, true, func(r request, buf []byte) error {
		return preadFull(fd, buf[:r.len], r.off, t.f.Name())
	})
}

// preadFull reads len(buf) bytes at off, or up to the end of the file.
func preadFull(fd int, buf []byte, off int64, name string) error {
	for len(buf) > 0 {
		n, err := unix.Pread(fd, buf, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s at %d: %w", name, off, err)
		}
		if n == 0 {
			return nil // the file shrank: nothing left to cache
		}
		buf, off = buf[n:], off+int64(n)
	}
	return nil
}
