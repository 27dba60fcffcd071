package record

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/readahead"
	"github.com/snapbpf/snapbpf/internal/seccomp"
)

// Command records which pages of file the command argv brings into
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
// faults before user space can react: measured in capture's TestMeasureOpenRace: 2529 pages for 500 touched); a BPF-side
// fix (BPF cannot write a struct file, and fentry/LSM programs are refused
// on these kernels anyway).
//
// With mincore (FaaSnap's method, no BPF needed) the capture is the file's
// residency after the run, in page order: the touched pages plus all the
// readahead around them, and IncludesReadahead says so.
func Command(ctx context.Context, file string, argv []string, o CommandOptions) (*capture.Capture, error) {
	if len(argv) == 0 {
		return nil, errors.New("record: no command")
	}
	if o.ReadaheadWindow == 0 {
		o.ReadaheadWindow = DefaultReadaheadWindow
	}
	switch o.Method {
	case "", capture.MethodEBPF:
		return recordEBPF(ctx, file, argv, o.ReadaheadWindow)
	case capture.MethodMincore:
		return recordMincore(ctx, file, argv)
	}
	return nil, fmt.Errorf("record: unknown method %q (want %s or %s)", o.Method, capture.MethodEBPF, capture.MethodMincore)
}

// CommandOptions are Command's options.
type CommandOptions struct {
	// Method is capture.MethodEBPF (default, "") or capture.MethodMincore.
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

func recordEBPF(ctx context.Context, file string, argv []string, window time.Duration) (c *capture.Capture, retErr error) {
	resident, err := pagecache.Drop(file)
	if err != nil {
		return nil, err
	}
	rec, err := capture.NewRecorder([]string{file})
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

func (g *guard) run(rec *capture.Recorder, stop <-chan struct{}) {
	inserted := rec.Inserted()
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
			if !rec.Owns(uint32(o.Pid)) {
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

func recordMincore(ctx context.Context, file string, argv []string) (*capture.Capture, error) {
	sess, err := capture.Watch(file, capture.MethodMincore)
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

// command makes the recorded command argv: this process's stdio, its own
// process group, and SIGKILL when this process dies. Cancelling ctx sends
// SIGTERM to the group, then SIGKILL to the command after 5 s.
//
// The group is what lets snapbpf stop everything the command started (a
// restore script's VMM): leaving a VM running with nobody recording it
// would only hold memory and, before the readahead window ends, keep the
// disk waiting. A command in its own group is not the terminal's
// foreground job, so one that reads the terminal stops (SIGTTIN): give it
// its input from a file or pipe.
func command(ctx context.Context, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// start starts cmd (made by command) and returns a channel that yields
// Wait's result once it has exited and the rest of its process group has
// been killed.
//
// The kernel sends Pdeathsig when the thread that forked the child exits,
// not the process: Go may retire any thread, so the child is started from
// a goroutine locked to its thread that then waits for it. The goroutine
// never unlocks, so the runtime ends the thread with it, after the child.
func start(cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		// What the command left running in its group goes with it.
		if kerr := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
			err = errors.Join(err, fmt.Errorf("kill what %s left in its process group %d: %w", cmd.Path, cmd.Process.Pid, kerr))
		}
		done <- err
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}

// run is cmd.Run with start's guarantees.
func run(cmd *exec.Cmd) error {
	done, err := start(cmd)
	if err != nil {
		return err
	}
	return <-done
}
