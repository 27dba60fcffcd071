package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/procfs"
	"github.com/snapbpf/snapbpf/internal/tracepoint"
)

// ErrNoPrivilege is wrapped by errors that come from missing BPF privileges.
var ErrNoPrivilege = errors.New("BPF capture needs root/CAP_BPF and CAP_PERFMON")

// DefaultRingBuffer is the default ring buffer size: 16 MiB holds ~400k
// records (40 bytes each with its header), every page of a 1.6 GiB memory
// file, so a reader that falls behind for a while loses nothing.
const DefaultRingBuffer = 16 << 20

// Event kinds, as in bpf/capture.c.
const (
	eventInsert = 1
	eventOpen   = 2
)

// Counter slots, as in bpf/capture.c.
const (
	counterLost = iota
	counterRAWindows
	counterRAPages
	counterNoOrder
	numCounters
)

// Option configures a Recorder.
type Option func(*options)

type options struct {
	ringBuffer  uint32
	kernelTypes *btf.Spec // tests: the kernel BTF CO-RE resolves against
}

// WithRingBuffer sets the ring buffer size in bytes (a power of two, at
// least one page).
func WithRingBuffer(bytes int) Option {
	return func(o *options) { o.ringBuffer = uint32(bytes) }
}

// Recorder streams page-cache insertions of a set of files from the kernel.
// NewRecorder loads and attaches the program (so missing privileges or
// kernel support show up at once); nothing is recorded until Start puts the
// files in the kernel's watch list; Stop detaches, drains and returns the
// Capture. A Recorder is used from one goroutine.
type Recorder struct {
	files []File
	keys  []captureFileKey

	objs   captureObjects
	links  []link.Link
	rd     *ringbuf.Reader
	raHook bool
	opens  chan Open

	mu       sync.Mutex
	accesses []Access
	workload *workload // nil: every process's insertions count
	openLog  []Open
	inserted chan struct{} // closed at the workload's first insertion (see Attribute)
	once     sync.Once

	hold      chan struct{} // tests: the reader waits for it to close
	done      chan struct{} // reader exited
	readErr   error
	dataStart [][]pages.Extent
	resident  uint64
	started   bool
	closed    bool
}

// NewRecorder loads and attaches the capture program for files.
func NewRecorder(files []string, opts ...Option) (*Recorder, error) {
	o := options{ringBuffer: DefaultRingBuffer}
	for _, opt := range opts {
		opt(&o)
	}
	if len(files) == 0 {
		return nil, errors.New("capture: no files to watch")
	}
	r := &Recorder{
		opens:    make(chan Open, 64),
		inserted: make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, path := range files {
		f, key, err := watchKey(path)
		if err != nil {
			return nil, err
		}
		r.files = append(r.files, f)
		r.keys = append(r.keys, key)
	}

	if err := r.load(o); err != nil {
		return nil, err
	}
	return r, nil
}

// Start puts the files in the kernel's watch list and starts reading.
func (r *Recorder) Start() error {
	if r.started || r.closed {
		return errors.New("capture: recorder already started")
	}
	for i, path := range r.files {
		d, err := pages.Data(path.Path)
		if err != nil {
			return err
		}
		r.dataStart = append(r.dataStart, d)
		_, n, err := pagecache.Resident(path.Path)
		if err != nil {
			return err
		}
		r.resident += n
		if err := r.objs.Files.Put(r.keys[i], uint32(i)); err != nil {
			return fmt.Errorf("watch %s: %w", path.Path, err)
		}
	}
	r.started = true
	go r.read()
	return nil
}

// Opens reports, while recording, every open of a watched file by a
// process other than this one. Reports that find the channel full are only
// kept in Capture.Opens.
func (r *Recorder) Opens() <-chan Open { return r.opens }

// pollInterval is how often the reader looks for insertions, which do not
// wake it until a quarter of the ring buffer is full (bpf/capture.c).
const pollInterval = 10 * time.Millisecond

// read drains the ring buffer until Stop flushes or Close closes it.
func (r *Recorder) read() {
	defer close(r.done)
	if r.hold != nil {
		<-r.hold
	}
	r.readErr = tracepoint.Drain(r.rd, pollInterval, r.handle)
}

// handle decodes one ring buffer record into the type bpf2go generated
// from struct event in bpf/capture.c.
func (r *Recorder) handle(b []byte) {
	var e captureEvent
	if _, err := binary.Decode(b, binary.LittleEndian, &e); err != nil {
		return // shorter than struct event: not ours
	}
	switch e.Kind {
	case eventInsert:
		r.mu.Lock()
		r.accesses = append(r.accesses, Access{File: int(e.File), Page: e.Index, NPages: 1 << e.Order, TimeNs: e.TimeNs, Pid: e.Pid})
		// Now, while the process most likely still exists: a descendant
		// that has exited cannot be traced to the root.
		owned := r.workload != nil && r.workload.owns(e.Pid)
		r.mu.Unlock()
		if owned {
			r.once.Do(func() { close(r.inserted) })
		}
	case eventOpen:
		o := Open{File: int(e.File), Pid: int(e.Pid), FD: int(e.Index), RAPages: e.RaPages, TimeNs: e.TimeNs}
		r.mu.Lock()
		r.openLog = append(r.openLog, o)
		r.mu.Unlock()
		select {
		case r.opens <- o:
		default:
		}
	}
}

// Attribute keeps only the insertions caused by the thread group pid and
// its descendants: the recorded workload. Other processes that read the
// watched files meanwhile (other VMs restored from the same snapshot, a
// prefetch, this process) are counted in Capture.ForeignPages and left
// out. Insertions before the call count if their process is pid's by then.
// Call it as soon as the workload's process exists, before it exits.
func (r *Recorder) Attribute(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.workload = &workload{root: uint32(pid), known: map[uint32]bool{}}
	for _, a := range r.accesses {
		if r.workload.owns(a.Pid) {
			r.once.Do(func() { close(r.inserted) })
		}
	}
}

// Inserted is closed at the workload's first page-cache insertion (every
// process's, before Attribute).
func (r *Recorder) Inserted() <-chan struct{} { return r.inserted }

// Owns reports whether thread group pid is the workload's (every process
// is, before Attribute).
func (r *Recorder) Owns(pid uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.workload == nil || r.workload.owns(pid)
}

// workload decides which thread groups belong to a workload: its root process
// and that process's descendants, found through the parent links in /proc
// when a thread group's first insertion is read (every 10 ms at most; see
// pollInterval). A descendant that exits before then cannot be traced and
// counts as foreign (Capture.UnattributedPages).
type workload struct {
	root  uint32
	known map[uint32]bool
	lost  map[uint32]bool // thread groups gone before they could be traced
}

// owns reports whether thread group pid is the root or descends from it,
// remembering the answer.
func (o *workload) owns(pid uint32) bool {
	if v, ok := o.known[pid]; ok {
		return v
	}
	v, gone := descends(pid, o.root)
	if gone {
		if o.lost == nil {
			o.lost = map[uint32]bool{}
		}
		o.lost[pid] = true
	}
	o.known[pid] = v
	return v
}

// keep returns the accesses of the workload and counts the others in c.
func (o *workload) keep(accs []Access, c *Capture) []Access {
	var kept []Access
	foreign := map[uint32]bool{}
	self := uint32(os.Getpid())
	for _, a := range accs {
		if o.owns(a.Pid) {
			kept = append(kept, a)
			continue
		}
		if a.Pid == self {
			continue // our own prefetch: known, not another reader
		}
		foreign[a.Pid] = true
		c.ForeignPages += uint64(a.NPages)
		if o.lost[a.Pid] {
			c.UnattributedPages += uint64(a.NPages)
		}
	}
	c.Attributed = true
	c.ForeignProcesses = len(foreign)
	return kept
}

// descends reports whether process pid is root or one of its descendants,
// following parent links in /proc; gone says a process on the way had
// exited, so the answer is a guess (false).
func descends(pid, root uint32) (v, gone bool) {
	// A bound on the walk: parent links end at PID 1 (or 0) well before.
	for range 1024 {
		if pid == root {
			return true, false
		}
		if pid <= 1 {
			return false, false
		}
		st, err := procfs.ReadStat(int(pid))
		if err != nil {
			return false, true
		}
		pid = uint32(st.Parent)
	}
	return false, false
}

// Stop ends the recording and returns the capture. The kernel's records are
// drained first, so nothing queued is lost; records the kernel could not
// queue are counted in Capture.Lost and make Stop return ErrLostEvents
// along with the capture.
func (r *Recorder) Stop() (*Capture, error) {
	if !r.started || r.closed {
		return nil, errors.New("capture: recorder not running")
	}
	// Detach first: after this no program runs, so the flush below
	// returns every record there will ever be.
	var errs []error
	if err := tracepoint.Detach(r.links, r.rd); err != nil {
		errs = append(errs, err)
	}
	r.links = nil
	<-r.done
	if r.readErr != nil {
		errs = append(errs, r.readErr)
	}
	counts, err := r.counters()
	if err != nil {
		errs = append(errs, err)
	}
	c := &Capture{
		Method:           MethodEBPF,
		Files:            r.files,
		Opens:            r.openLog,
		ResidentAtStart:  r.resident,
		Lost:             counts[counterLost],
		ReadaheadChecked: r.raHook,
		ReadaheadWindows: counts[counterRAWindows],
		ReadaheadPages:   counts[counterRAPages],
		NoOrder:          counts[counterNoOrder],
	}
	c.IncludesReadahead = c.ReadaheadWindows > 0
	if r.workload != nil {
		r.accesses = r.workload.keep(r.accesses, c)
	}
	// Records from different CPUs can reach the ring slightly out of time
	// order.
	slices.SortStableFunc(r.accesses, func(a, b Access) int {
		return compare(a.TimeNs, b.TimeNs)
	})
	c.Accesses = r.accesses
	if err := r.dropHoles(c); err != nil {
		errs = append(errs, err)
	}
	if err := r.Close(); err != nil {
		errs = append(errs, err)
	}
	if c.Lost > 0 {
		errs = append(errs, fmt.Errorf("%w: %d records", ErrLostEvents, c.Lost))
	}
	return c, errors.Join(errs...)
}

func compare(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// dropHoles moves captured pages in holes of a file to HoleAccesses, as it was at Start
// or is now: a page counts only if it held data both times. (After the
// run, SEEK_DATA also reports cached pages of unwritten extents as data.)
func (r *Recorder) dropHoles(c *Capture) error {
	byFile := make([][]Access, len(r.files))
	for _, a := range c.Accesses {
		byFile[a.File] = append(byFile[a.File], a)
	}
	var kept, holes []Access
	for i, f := range r.files {
		now, err := pages.Data(f.Path)
		if err != nil {
			return err
		}
		d, h := clip(byFile[i], pages.Intersect(r.dataStart[i], now))
		kept, holes = append(kept, d...), append(holes, h...)
	}
	byTime := func(a, b Access) int { return compare(a.TimeNs, b.TimeNs) }
	slices.SortStableFunc(kept, byTime)
	slices.SortStableFunc(holes, byTime)
	c.Accesses, c.HoleAccesses = kept, holes
	c.HolePagesDropped = countPages(holes)
	return nil
}

// counters sums the per-CPU counters.
func (r *Recorder) counters() ([numCounters]uint64, error) {
	var out [numCounters]uint64
	for i := range out {
		var perCPU []uint64
		if err := r.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return out, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out, nil
}

// Close detaches and frees everything; Stop calls it. Safe to call twice.
func (r *Recorder) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, l := range r.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	r.links = nil
	if r.rd != nil {
		if err := r.rd.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ring buffer: %w", err))
		}
		if r.started {
			<-r.done
		}
	}
	if err := r.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close BPF objects: %w", err))
	}
	return errors.Join(errs...)
}
