package capture

import (
	"context"
	"errors"
	"fmt"
	"github.com/snapbpf/snapbpf/internal/seccomp"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/snapbpf/snapbpf/internal/readahead"
)

// RecordCommand records which pages of file the command argv brings into
// the page cache: it drops file's cached pages (POSIX_FADV_DONTNEED), runs
// argv with this process's stdio, and captures until it exits. method is
// MethodEBPF (default, "") or MethodMincore. If the command fails, the
// capture is returned with the error. Cancelling ctx stops the command
// (SIGTERM, then SIGKILL after 5 s).
//
// With eBPF the capture is exact: the pages the command touched, no
// readahead, for a command that never madvises its mapping (a VMM) and
// opens file whenever it likes. How:
//
//   - The disk's read_ahead_kb is 0 from just before the command starts
//     until the BPF program sees the command open file (or, failing that,
//     the first page-cache insertion into it). A struct file takes its
//     readahead window from the disk at open, so the command's descriptor
//     is born with none and keeps none, from its first fault, after the
//     disk's value is back. The disk is lowered only for the command's
//     startup (DeviceReadaheadOff in the capture; ~1 ms for a small
//     program); files any process opens on that disk meanwhile also start
//     without readahead.
//   - A later open of file that starts with readahead (after the window)
//     gets it turned off at once (readahead.DisableForProcess); the few
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
func RecordCommand(ctx context.Context, file string, argv []string, method string) (*Capture, error) {
	if len(argv) == 0 {
		return nil, errors.New("record: no command")
	}
	switch method {
	case "", MethodEBPF:
		return recordEBPF(ctx, file, argv)
	case MethodMincore:
		return recordMincore(ctx, file, argv)
	}
	return nil, fmt.Errorf("record: unknown method %q (want %s or %s)", method, MethodEBPF, MethodMincore)
}

func command(ctx context.Context, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func recordEBPF(ctx context.Context, file string, argv []string) (c *Capture, retErr error) {
	resident, err := dropCache(file)
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
	resume, err := readahead.Suspend(file)
	if err != nil {
		return nil, err
	}
	g := &guard{file: file, resume: resume, lowered: time.Now()}
	defer func() {
		g.end() // at once if anything below fails; a no-op otherwise
		retErr = errors.Join(retErr, g.err())
	}()
	if err := cmd.Start(); err != nil {
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
	waitErr := cmd.Wait()
	close(stop)
	<-guarded
	g.end()

	c, err = rec.Stop()
	if c != nil {
		c.ResidentAtStart = resident
		c.DeviceReadaheadOff = g.off
	}
	if waitErr != nil {
		waitErr = fmt.Errorf("run %s: %w", argv[0], waitErr)
	}
	return c, errors.Join(waitErr, err)
}

// guard ends the disk-wide window and fixes later opens.
type guard struct {
	file    string
	resume  func() error
	lowered time.Time
	off     time.Duration
	ended   bool
	errs    []error
}

// end puts the disk's readahead back, once.
func (g *guard) end() {
	if g.ended {
		return
	}
	g.ended = true
	g.off = time.Since(g.lowered)
	if err := g.resume(); err != nil {
		g.errs = append(g.errs, fmt.Errorf("restore read_ahead_kb: %w", err))
	}
}

func (g *guard) err() error { return errors.Join(g.errs...) }

func (g *guard) run(rec *Recorder, stop <-chan struct{}) {
	inserted := rec.inserted
	for {
		select {
		case <-stop:
			return
		case <-inserted:
			inserted = nil // closed: would fire forever
			g.end()
		case o := <-rec.Opens():
			if !rec.owns(uint32(o.Pid)) {
				// Another process's file: neither the command's
				// open nor ours to change.
				continue
			}
			if !g.ended {
				// Opened while the disk was at 0: born without readahead.
				g.end()
				continue
			}
			if o.RAPages == 0 {
				continue
			}
			if _, err := readahead.DisableForProcess(o.Pid, g.file); err != nil && !errors.Is(err, readahead.ErrNoDescriptor) {
				g.errs = append(g.errs, err)
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
	waitErr := command(ctx, argv).Run()
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
	dataStart []extent
}

func startMincore(file string) (*mincoreSession, error) {
	cached, err := dropCache(file)
	if err != nil {
		return nil, err
	}
	f, _, err := watchKey(file)
	if err != nil {
		return nil, err
	}
	dataStart, err := dataExtents(file)
	if err != nil {
		return nil, err
	}
	return &mincoreSession{file: file, f: f, cached: cached, dataStart: dataStart}, nil
}

func (s *mincoreSession) Stop() (*Capture, error) {
	runs, _, err := settledResident(s.file)
	if err != nil {
		return nil, err
	}
	dataNow, err := dataExtents(s.file)
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
func runAccesses(r extent) []Access {
	var out []Access
	for p := r.start; p < r.end; {
		n := min(r.end-p, 1<<30)
		out = append(out, Access{Page: p, NPages: uint32(n)})
		p += n
	}
	return out
}
