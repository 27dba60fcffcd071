package serve

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/owner"
)

// sleeper starts a process that outlives nothing by itself, and kills it
// at the end of the test.
func sleeper(t *testing.T) (*exec.Cmd, owner.Owner) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	o, err := owner.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, o
}

func writeRecord(t *testing.T, home, name string, rec vmmRecord) {
	t.Helper()
	b, _ := json.Marshal(rec)
	if err := os.MkdirAll(filepath.Join(home, "vmms"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "vmms", name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReapLeftVMMs: on start the service ends the VMMs a previous one
// recorded, only those still running with the recorded command line (a
// reused pid or another program is left alone), and removes the records.
func TestReapLeftVMMs(t *testing.T) {
	home := t.TempDir()
	orphan, o1 := sleeper(t)
	other, o2 := sleeper(t)
	writeRecord(t, home, "0.json", vmmRecord{VMM: o1, Cmdline: cmdline(o1.PID)})
	// Same process, other command line: as if the pid now named another
	// program.
	writeRecord(t, home, "1.json", vmmRecord{VMM: o2, Cmdline: "qemu-system-x86_64 -M microvm"})
	r, err := openVMMRecords(home)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	deadline := time.Now().Add(5 * time.Second)
	for o1.Alive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if o1.Alive() {
		t.Errorf("the recorded VMM %d still runs", orphan.Process.Pid)
	}
	if !o2.Alive() {
		t.Errorf("process %d, whose command line differs from the record, was killed", other.Process.Pid)
	}
	if des, _ := os.ReadDir(filepath.Join(home, "vmms")); len(des) != 0 {
		t.Errorf("%d records left after the reap", len(des))
	}
}

// TestPidfileRefusesSecondService: a second service on the same home is
// refused while the first runs, and accepted once its pidfile names a
// process that is gone.
func TestPidfileRefusesSecondService(t *testing.T) {
	home := t.TempDir()
	_, o := sleeper(t)
	b, _ := json.Marshal(o)
	if err := os.WriteFile(filepath.Join(home, "serve.pid"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openVMMRecords(home); err == nil || !strings.Contains(err.Error(), "another snapbpf serve") {
		t.Errorf("second service: %v, want refused", err)
	}
	gone := o
	gone.Start++ // the pid's process started at another time: not it
	b, _ = json.Marshal(gone)
	os.WriteFile(filepath.Join(home, "serve.pid"), b, 0o600)
	r, err := openVMMRecords(home)
	if err != nil {
		t.Fatalf("after the first service is gone: %v", err)
	}
	r.close()
}
