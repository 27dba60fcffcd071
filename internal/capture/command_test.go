package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

// TestRecordWindowDeadline: a command that never opens the file (sleep)
// holds the disk's readahead off only until the window's deadline, and the
// capture says the window expired.
func TestRecordWindowDeadline(t *testing.T) {
	needRoot(t)
	dir, queue := testenv.LoopFS(t)
	path := filepath.Join(dir, "mem")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	const want = "768" // a value no default has, in whole pages
	if err := os.WriteFile(queue+"/read_ahead_kb", []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, err := os.ReadFile(queue + "/read_ahead_kb")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}

	const window = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		c   *Capture
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		c, err := RecordCommand(ctx, path, []string{"sleep", "30"}, CommandOptions{ReadaheadWindow: window})
		done <- result{c, err}
	}()

	sawZero := false
	var back time.Duration
	for time.Since(start) < window+2*time.Second {
		v := read()
		if v == "0" {
			sawZero = true
		} else if sawZero && v == want {
			back = time.Since(start)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // stops sleep
	r := <-done
	if !sawZero {
		t.Fatal("read_ahead_kb never 0 during the recording")
	}
	t.Logf("read_ahead_kb back to %s after %v (window %v)", want, back, window)
	// Slack: dropping the cache and loading BPF happen before the window.
	if back == 0 || back > window+time.Second {
		t.Errorf("read_ahead_kb %s %v after the start, want %s by %v", read(), time.Since(start), want, window+time.Second)
	}
	if r.c == nil {
		t.Fatalf("no capture: %v", r.err)
	}
	if r.c.ReadaheadWindowExpired != window {
		t.Errorf("ReadaheadWindowExpired = %v, want %v", r.c.ReadaheadWindowExpired, window)
	}
	if r.c.DeviceReadaheadOff > window+100*time.Millisecond {
		t.Errorf("DeviceReadaheadOff = %v, want at most about %v", r.c.DeviceReadaheadOff, window)
	}
}

// recordParent plays snapbpf for TestCommandDiesWithParent: it records
// `sleep 60` on FILE the way record --mem does (mincore: no BPF needed
// for the process handling, which both methods share).
func recordParent() error {
	_, err := RecordCommand(context.Background(), os.Getenv("FILE"), []string{"sleep", "60"}, CommandOptions{Method: MethodMincore})
	return err
}

// TestCommandDiesWithParent: when snapbpf is killed (SIGKILL: no cleanup
// of its own runs), the command it records dies too.
func TestCommandDiesWithParent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mem")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(exe)
	parent.Env = append(os.Environ(), childEnv+"=record-parent", "FILE="+path)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Wait()
	defer parent.Process.Kill()

	sleep := waitProc(t, "sleep", ppid, parent.Process.Pid)
	t.Cleanup(func() { syscall.Kill(sleep, syscall.SIGKILL) })
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	if !gone(sleep, 2*time.Second) {
		t.Fatalf("sleep (pid %d) still runs 2 s after its recording parent was killed", sleep)
	}
}

// TestCommandGroupKilled: what the command started dies with it, whether
// it exits by itself or the recording is cancelled.
func TestCommandGroupKilled(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		cancel       bool
	}{
		{"exit", "sleep 60 & sleep 0.5", false},
		{"cancel", "sleep 60 & wait", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := command(ctx, []string{"sh", "-c", tc.script})
			cmd.Stdin, cmd.Stdout = nil, nil
			done, err := start(cmd)
			if err != nil {
				t.Fatal(err)
			}
			sleep := waitProc(t, "sleep", pgrp, cmd.Process.Pid)
			t.Cleanup(func() { syscall.Kill(sleep, syscall.SIGKILL) })
			if tc.cancel {
				cancel()
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("command still running after 10 s")
			}
			if !gone(sleep, 2*time.Second) {
				t.Fatalf("the command's child sleep (pid %d) still runs after the command ended", sleep)
			}
		})
	}
}

// Fields of /proc/PID/stat after the name, by index.
const (
	ppid = 1
	pgrp = 2
)

// waitProc returns the pid of the process named comm whose stat field is
// value, waiting up to 5 s for it to start.
func waitProc(t *testing.T, comm string, field, value int) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, p := range stats {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			s := string(b)
			i := strings.LastIndexByte(s, ')')
			f := strings.Fields(s[i+1:])
			name := s[strings.IndexByte(s, '(')+1 : i]
			if len(f) > field && f[field] == strconv.Itoa(value) && name == comm {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				return pid
			}
		}
	}
	t.Fatalf("no process %q with stat field %d = %d after 5 s", comm, field, value)
	return 0
}

// gone reports whether pid has exited (or is a zombie) within d.
func gone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		if err == nil {
			s := string(b)
			if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestRecordOpenAfterWindow: a command that opens the file only after the
// window's deadline is still recorded, its descriptor's readahead turned
// off once the open is seen, and the capture warns that the window expired.
func TestRecordOpenAfterWindow(t *testing.T) {
	needRoot(t)
	path := dataFile(t, 64*mib)
	touched := randomPages(3, 100, 64*mib/pages.Size)
	argv := append([]string{"/bin/sh", "-c", `sleep 0.5; exec "$@"`, "sh"}, childArgv(t, path, touched, "", "")...)
	c, err := RecordCommand(context.Background(), path, argv, CommandOptions{ReadaheadWindow: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := Pages(c, 0)
	t.Logf("touched %d, captured %d; readahead windows %d (%d pages); disk readahead off for %v; warnings %q",
		len(touched), len(got), c.ReadaheadWindows, c.ReadaheadPages, c.DeviceReadaheadOff, c.Warnings())
	assertCovers(t, got, touched)
	if c.ReadaheadWindowExpired == 0 {
		t.Error("ReadaheadWindowExpired = 0, want the window")
	}
	if !slices.ContainsFunc(c.Warnings(), func(w string) bool { return strings.Contains(w, "did not open the file within") }) {
		t.Errorf("warnings %q say nothing of the expired window", c.Warnings())
	}
}
