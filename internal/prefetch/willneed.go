package prefetch

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// willneedEngine calls posix_fadvise(POSIX_FADV_WILLNEED) per request from
// a pool of goroutines. The kernel starts readahead into the page cache and
// returns once the reads are queued; readahead(2) takes the same kernel
// path (ksys_readahead calls vfs_fadvise with WILLNEED), so it is not a
// separate engine. A call blocks while it allocates pages and while the
// device queue is full, hence several submitters.
type willneedEngine struct{}

func init() { register(willneedEngine{}) }

func (willneedEngine) name() string        { return "willneed" }
func (willneedEngine) completes() bool     { return false }
func (willneedEngine) defaultWorkers() int { return 2 }

func (willneedEngine) run(ctx context.Context, t *task) error {
	fd := int(t.f.Fd())
	return pool(ctx, t, 0, false, func(r request, _ []byte) error {
		if err := unix.Fadvise(fd, r.off, r.len, unix.FADV_WILLNEED); err != nil {
			return fmt.Errorf("fadvise WILLNEED %s at %d+%d: %w", t.f.Name(), r.off, r.len, err)
		}
		return nil
	})
}
