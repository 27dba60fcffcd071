package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
