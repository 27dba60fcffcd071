package prefetch

import (
	"cmp"
	"context"
	"os"
	"slices"
	"sync"
	"sync/atomic"
)

// engine issues the reads of a prefetch.
type engine interface {
	// name selects the engine in Options and on the command line.
	name() string
	// completes reports whether run returns only once the data is in the
	// page cache; if not, the job waits for residency itself.
	completes() bool
	// defaultWorkers is the concurrency used when Options leave it 0.
	defaultWorkers() int
	// run issues t.reqs (in order, inside the file) and calls
	// t.issued once every request is in the kernel's hands. It stops
	// issuing when ctx is done.
	run(ctx context.Context, t *task) error
}

// task is one prefetch as an engine sees it.
type task struct {
	f       *os.File
	reqs    []request
	maxLen  int64 // longest request, for scratch buffers
	workers int
	issued  func()
}

var engines = map[string]engine{}

func register(e engine) { engines[e.name()] = e }

// Engines lists the engine names, sorted.
func Engines() []string {
	var names []string
	for n := range engines {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// workQueue hands requests to a pool of workers in ascending order, so the
// device sees offsets rising even with several submitters.
type workQueue struct {
	reqs []request
	next atomic.Int64
}

// take returns the next request, or false when none is left or ctx is done.
func (q *workQueue) take(ctx context.Context) (request, bool) {
	if ctx.Err() != nil {
		return request{}, false
	}
	i := q.next.Add(1) - 1
	if i >= int64(len(q.reqs)) {
		return request{}, false
	}
	return q.reqs[i], true
}

// pool runs t.workers goroutines that call do on requests until none is
// left and returns the first error. Requests count as issued when the last
// one is started (blocking engines: do returns when the data is there) or
// else when every do has returned (do issues I/O and returns).
func pool(ctx context.Context, t *task, bufSize int64, issuedOnStart bool, do func(r request, buf []byte) error) error {
	q := &workQueue{reqs: t.reqs}
	var (
		wg      sync.WaitGroup
		once    sync.Once
		mu      sync.Mutex
		first   error
		started atomic.Int64
	)
	for range t.workers {
		wg.Go(func() {
			var buf []byte
			if bufSize > 0 {
				buf = make([]byte, bufSize)
			}
			for {
				r, ok := q.take(ctx)
				if !ok {
					return
				}
				if issuedOnStart && started.Add(1) == int64(len(t.reqs)) {
					once.Do(t.issued)
				}
				if err := do(r, buf); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	once.Do(t.issued)
	return cmp.Or(first, ctx.Err())
}
