package capture

import (
	"context"
	"errors"
	"fmt"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/seccomp"
	"time"

	"github.com/snapbpf/snapbpf/internal/readahead"
)

// RecordCommand records which pages of file the command argv brings into
// the page cache: it drops file's cached pages (POSIX_FADV_DONTNEED), runs
// argv with this process's stdio, and captures until it exits. If the
// command fails, the capture is returned with the error. Cancelling ctx
// stops the command (SIGTERM to its process group, then SIGKILL after 5 s);
// it dies with this process too, even by SIGKILL (see command).
//
// With eBPF the capture is exact: the pages the command touched, no
// readahead, for a command that never madvises its mapping (a VMM) and
// opens file whenever it likes. How:
//
//   - The disk's read_ahead_kb is 0 from just before the command starts
//     until the BPF program sees the command open file (or, failing that,
//     the first page-cache insertion into it), the command exits, or
//     o.ReadaheadWindow passes, whichever comes first: other restores on
//     the disk wait for it. The window is journaled, so that if snapbpf
//     is killed meanwhile the next snapbpf command puts the value back
//     (readahead.Repair). A struct file takes its readahead window from
//     the disk at open, so the command's descriptor is born with none and
//     keeps none, from its first fault, after the disk's value is back.
//     The disk is lowered only for the command's startup
//     (DeviceReadaheadOff in the capture; ~1 ms for a small program);
//     files any process opens on that disk meanwhile also start without
//     readahead.
//   - A later open of file that starts with readahead (after the window's
//     deadline, which the capture's warnings then report) gets it turned
//     off at once (readahead.DisableForProcess); the few
//     faults that may beat it show up in ReadaheadWindows.
//   - The command runs under a seccomp filter that ignores
//     madvise(MADV_HUGEPAGE): QEMU advises all guest RAM so, and a
//     VM_HUGEPAGE file mapping reads 4 MiB per fault even with readahead
//     off (see seccomp.Wrap).
//
// Rejected: the disk at 0 for the whole run (every file opened on the disk
// while a VM runs loses readahead for good); turning readahead off only
// after seeing the open (a program that opens, maps and touches at once
// faults before user space can react: measured in TestMeasureOpenRace: 2529 pages for 500 touched); a BPF-side
// fix (BPF cannot write a struct file, and fentry/LSM programs are refused
// on these kernels anyway).
//
// With mincore (FaaSnap's method, no BPF needed) the capture is the file's
// residency after the run, in page order: the touched pages plus all the
// readahead around them, and IncludesReadahead says so.
func RecordCommand(ctx context.Context, file string, argv []string, o CommandOptions) (*Capture, error) {
	if len(argv) == 0 {
		return nil, errors.New("record: no command")
	}
	if o.ReadaheadWindow == 0 {
		o.ReadaheadWindow = DefaultReadaheadWindow
	}
	switch o.Method {
	case "", MethodEBPF:
		return recordEBPF(ctx, file, argv, o.ReadaheadWindow)
	case MethodMincore:
		return recordMincore(ctx, file, argv)
	}
	return nil, fmt.Errorf("record: unknown method %q (want %s or %s)", o.Method, MethodEBPF, MethodMincore)
}

// CommandOptions are RecordCommand's options.
type CommandOptions struct {
	// Method is MethodEBPF (default, "") or MethodMincore.
	Method string
	// ReadaheadWindow bounds how long an eBPF recording holds the disk's
	// read_ahead_kb at 0 waiting for the command to open the file
	// (DefaultReadaheadWindow if 0).
	ReadaheadWindow time.Duration
}

// DefaultReadaheadWindow is long enough for a VMM or a restore script to
// start and open its memory file (QEMU: about 50 ms here), and short
// enough that restores waiting on the disk meanwhile still finish.
const DefaultReadaheadWindow = 2 * time.Second

func recordEBPF(ctx context.Context, file string, argv []string, window time.Duration) (c *Capture, retErr error) {
	resident, err := pagecache.Drop(file)
	if err != nil {
		return nil, err
	}
	rec, err := NewRecorder([]string{file})
	if err != nil {
		return nil, err
	}
	defer rec.Close()
	if err := rec.Start(); err != nil {
		return nil, err
	}

	cmd := command(ctx, argv)
	if err := seccomp.Wrap(cmd, seccomp.Policy{IgnoreHugepageAdvice: true}); err != nil {
		return nil, err
	}
	w, err := readahead.Suspend(ctx, file, window, fmt.Sprintf("record --mem %s, until %s opens it", file, argv[0]))
	if err != nil {
		return nil, fmt.Errorf("record: turn readahead off until the command opens %s: %w", file, err)
	}
	g := &guard{ctx: ctx, file: file, w: w}
	defer func() {
		g.end() // at once if anything below fails; a no-op otherwise
		retErr = errors.Join(retErr, g.err())
	}()
	done, err := start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	// Only the command's process tree: other readers of file are not
	// the workload.
	rec.Attribute(cmd.Process.Pid)
	stop := make(chan struct{})
	guarded := make(chan struct{})
	go func() {
		defer close(guarded)
		g.run(rec, stop)
	}()
	waitErr := <-done
	close(stop)
	<-guarded
	g.end()

	c, err = rec.Stop()
	if c != nil {
		c.ResidentAtStart = uint64(resident)
		c.DeviceReadaheadOff = w.Lowered()
		select {
		case <-w.Expired():
			c.ReadaheadWindowExpired = window
		default:
		}
	}
	if waitErr != nil {
		waitErr = fmt.Errorf("run %s: %w", argv[0], waitErr)
	}
	return c, errors.Join(waitErr, err)
}

// guard ends the disk-wide window and fixes later opens.
type guard struct {
	ctx   context.Context
	file  string
	w     *readahead.Window
	ended bool
	errs  []error
}

// end puts the disk's readahead back, once.
func (g *guard) end() {
	if g.ended {
		return
	}
	g.ended = true
	if err := g.w.Close(); err != nil {
		g.errs = append(g.errs, fmt.Errorf("restore read_ahead_kb: %w", err))
	}
}

func (g *guard) err() error { return errors.Join(g.errs...) }

func (g *guard) run(rec *Recorder, stop <-chan struct{}) {
	inserted := rec.inserted
	expired := g.w.Expired()
	for {
		select {
		case <-stop:
			return
		case <-expired:
			// The window ended at its deadline: opens from now on
			// start with readahead.
			expired = nil // closed: would fire forever
			g.end()
		case <-inserted:
			inserted = nil // closed: would fire forever
			g.end()
		case o := <-rec.Opens():
			if !rec.owns(uint32(o.Pid)) {
				// Another process's file: neither the command's
				// open nor ours to change.
				continue
			}
			// The command opened the file: the window has done its
			// work. An open while the disk was at 0 is born without
			// readahead; a later one (after the deadline) is fixed
			// here, once the window no longer holds the disk's lock.
			g.end()
			if o.RAPages == 0 {
				continue
			}
			if _, err := readahead.DisableForProcess(g.ctx, o.Pid, g.file); err != nil && !errors.Is(err, readahead.ErrNoDescriptor) {
				g.errs = append(g.errs, fmt.Errorf("readahead off for pid %d, which opened %s after the window: %w", o.Pid, g.file, err))
			}
		}
	}
}

func recordMincore(ctx context.Context, file string, argv []string) (*Capture, error) {
	sess, err := Watch(file, MethodMincore)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	waitErr := run(command(ctx, argv))
	if waitErr != nil {
		waitErr = fmt.Errorf("run %s: %w", argv[0], waitErr)
	}
	c, err := sess.Stop()
	return c, errors.Join(waitErr, err)
}

// Session is a recording of one file in progress.
type Session interface {
	// Stop ends the recording and returns what it captured.
	Stop() (*Capture, error)
	// Close releases the session's resources; safe after Stop.
	Close() error
	// Attribute keeps only the pages the process pid and its descendants
	// bring in (see Recorder.Attribute); a no-op for mincore, whose
	// residency has no owner.
	Attribute(pid int)
}

// Watch starts recording which pages of file enter the page cache, by
// method (MethodEBPF or MethodMincore), for a workload the caller runs
// itself (a VMM it starts). The caller drops the file's cache first if it
// wants a cold recording; with eBPF the caller also keeps readahead off
// the workload's descriptor, or the capture includes it.
func Watch(file, method string) (Session, error) {
	switch method {
	case "", MethodEBPF:
		rec, err := NewRecorder([]string{file})
		if err != nil {
			return nil, err
		}
		if err := rec.Start(); err != nil {
			rec.Close()
			return nil, err
		}
		return rec, nil
	case MethodMincore:
		return startMincore(file)
	}
	return nil, fmt.Errorf("record: unknown method %q (want %s or %s)", method, MethodEBPF, MethodMincore)
}

// mincoreSession is FaaSnap's method: what is resident after the run.
type mincoreSession struct {
	file      string
	f         File
	cached    uint64
	dataStart []pages.Extent
}

func startMincore(file string) (*mincoreSession, error) {
	cached, err := pagecache.Drop(file)
	if err != nil {
		return nil, err
	}
	f, _, err := watchKey(file)
	if err != nil {
		return nil, err
	}
	dataStart, err := pages.Data(file)
	if err != nil {
		return nil, err
	}
	return &mincoreSession{file: file, f: f, cached: uint64(cached), dataStart: dataStart}, nil
}

func (s *mincoreSession) Stop() (*Capture, error) {
	runs, _, err := pagecache.SettledResident(s.file)
	if err != nil {
		return nil, err
	}
	dataNow, err := pages.Data(s.file)
	if err != nil {
		return nil, err
	}
	c := &Capture{
		Method:            MethodMincore,
		Files:             []File{s.f},
		ResidentAtStart:   s.cached,
		IncludesReadahead: true,
	}
	for _, r := range runs {
		c.Accesses = append(c.Accesses, runAccesses(r)...)
	}
	c.Accesses, c.HoleAccesses = clip(c.Accesses, intersect(s.dataStart, dataNow))
	c.HolePagesDropped = countPages(c.HoleAccesses)
	return c, nil
}

func (s *mincoreSession) Close() error { return nil }

func (s *mincoreSession) Attribute(int) {}

// runAccesses splits a run of pages into Accesses (NPages is 32-bit).
func runAccesses(r pages.Extent) []Access {
	var out []Access
	for p := r.Page; p < r.End(); {
		n := min(r.End()-p, 1<<30)
		out = append(out, Access{Page: p, NPages: uint32(n)})
		p += n
	}
	return out
}
