package funcvm

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/snapbpf/snapbpf/internal/functions"
)

// expectCache keeps host-side initialised functions: Init of a large model
// costs more than an invoke.
var expectCache struct {
	sync.Mutex
	fns map[string]functions.Function
}

// Expect computes on the host the checksum a guest must return for
// function name with dataMiB of data on input: the same code, natively.
func Expect(name string, dataMiB int, input uint64) (string, error) {
	sum, _, err := ExpectTimed(name, dataMiB, input)
	return sum, err
}

// ExpectTimed is Expect that also says how long the invocation took on the
// host: against the guest's own time, the VM's compute slowdown (20 to 40
// times under TCG).
func ExpectTimed(name string, dataMiB int, input uint64) (string, time.Duration, error) {
	expectCache.Lock()
	defer expectCache.Unlock()
	key := fmt.Sprintf("%s/%d", name, dataMiB)
	fn := expectCache.fns[key]
	if fn == nil {
		f, err := functions.New(name)
		if err != nil {
			return "", 0, err
		}
		if err := f.Init(functions.Options{DataMiB: dataMiB}); err != nil {
			return "", 0, fmt.Errorf("init %s on the host: %w", name, err)
		}
		if expectCache.fns == nil {
			expectCache.fns = map[string]functions.Function{}
		}
		expectCache.fns[key] = f
		fn = f
	}
	start := time.Now()
	res, err := fn.Invoke(input)
	if err != nil {
		return "", 0, fmt.Errorf("invoke %s on the host: %w", name, err)
	}
	return res.Checksum, time.Since(start), nil
}

// ExpectMedian is ExpectTimed run runs times, with the median time: one
// native run of a few milliseconds is at the mercy of the scheduler, and
// the host time divides the guest's into a slowdown.
func ExpectMedian(name string, dataMiB int, input uint64, runs int) (string, time.Duration, error) {
	var (
		sum   string
		times []time.Duration
	)
	for range max(runs, 1) {
		s, d, err := ExpectTimed(name, dataMiB, input)
		if err != nil {
			return "", 0, err
		}
		sum, times = s, append(times, d)
	}
	slices.Sort(times)
	return sum, times[len(times)/2], nil
}
