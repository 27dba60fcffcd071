package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/blockdev"
	"github.com/snapbpf/snapbpf/internal/owner"
	"github.com/snapbpf/snapbpf/internal/readahead"
	"github.com/snapbpf/snapbpf/internal/testenv"
)

// TestCheckHost runs the host checks here (a machine that runs everything,
// as root) and with SNAPBPF_HOME on tmpfs, which must fail the filesystem
// check and the report.
func TestCheckHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the checks load BPF")
	}
	status := func(r *checkReport) map[string]hostCheck {
		m := map[string]hostCheck{}
		for _, c := range r.Checks {
			m[c.Name] = c
		}
		return m
	}
	// /var/tmp, not t.TempDir: /tmp may be tmpfs.
	base, err := os.MkdirTemp("/var/tmp", "snapbpf-check-")
	if err != nil {
		t.Skipf("no /var/tmp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	good := filepath.Join(base, "not", "made", "yet")
	r := checkHost(context.Background(), good)
	got := status(r)
	for _, name := range []string{"root", "qemu", "bpf capture", "bpf attach", "home filesystem", "userfaultfd"} {
		if c, ok := got[name]; !ok || c.Status == checkFail {
			t.Errorf("check %q = %+v, want it to pass here", name, c)
		}
	}
	if !r.OK {
		t.Errorf("report not OK: %+v", r.Checks)
	}
	if r.BPFAttach == "" || !strings.Contains(got["bpf attach"].Detail, "tracefs") {
		t.Errorf("bpf attach: report %q, check %+v; want the mechanism and the tracefs mounts", r.BPFAttach, got["bpf attach"])
	}
	if _, err := os.Stat(good); err == nil {
		t.Errorf("check created %s", good)
	}

	const shm = "/dev/shm"
	if st, err := os.Stat(shm); err != nil || !st.IsDir() {
		t.Skipf("no %s to try tmpfs", shm)
	}
	r = checkHost(context.Background(), filepath.Join(shm, "snapbpf-check-test"))
	if c := status(r)["home filesystem"]; c.Status != checkFail || r.OK {
		t.Errorf("home on tmpfs: check %+v, report OK %v; want a failure", c, r.OK)
	}
}

// TestStartupRepairsReadahead: a disk left at read_ahead_kb 0 by a snapbpf
// process that died in its window is put back by the next command,
// whichever it is, and check reports it.
func TestStartupRepairsReadahead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: changes read_ahead_kb")
	}
	_, queue := testenv.Loop(t)
	old := readahead.LockDir
	readahead.LockDir = t.TempDir()
	t.Cleanup(func() { readahead.LockDir = old })

	dev, err := os.ReadFile(filepath.Join(filepath.Dir(queue), "dev"))
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	name := strings.TrimSpace(string(dev))
	e := readahead.Entry{
		Queue: blockdev.Queue(queue), Device: name, ReadaheadKB: "768", Why: "test",
		Owner: owner.Owner{PID: dead.Process.Pid, Start: 1, Boot: strings.TrimSpace(string(boot))},
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(readahead.LockDir, "readahead-"+name+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(queue, "read_ahead_kb"), []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := newRootCmd()
	cmd.SetArgs([]string{"functions"})
	cmd.SetOut(io.Discard)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if kb, _ := os.ReadFile(filepath.Join(queue, "read_ahead_kb")); strings.TrimSpace(string(kb)) != "768" {
		t.Errorf("read_ahead_kb %s after a command, want 768 put back", kb)
	}
	status, detail := readaheadWindows()
	t.Logf("check: %s: %s", status, detail)
	if status != checkWarn || !strings.Contains(detail, fmt.Sprintf("pid %d (test) died", dead.Process.Pid)) {
		t.Errorf("check says %s: %s; want a warning naming pid %d", status, detail, dead.Process.Pid)
	}
}
