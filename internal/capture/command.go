package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

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
