package blockdev

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFor(t *testing.T) {
	q, err := For("/var/tmp")
	if err != nil {
		t.Skipf("root filesystem is not on a block device: %v", err)
	}
	if filepath.Base(string(q)) != "queue" {
		t.Errorf("For = %s, want a queue directory", q)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(string(q)), "partition")); err == nil {
		t.Errorf("%s belongs to a partition, want its disk", q)
	}
	if dev, err := q.Dev(); err != nil || dev == "" {
		t.Errorf("Dev = %q, %v", dev, err)
	}
	info := q.Info()
	if info.Name == "" || info.ReadAheadKB < 0 || info.MaxSectorsKB <= 0 {
		t.Errorf("Info = %+v", info)
	}
	for _, p := range []string{"/proc/self/status", "/dev/shm"} {
		if _, err := For(p); err == nil {
			t.Errorf("For(%s) succeeded, want an error", p)
		}
	}
}

func TestActiveScheduler(t *testing.T) {
	for in, want := range map[string]string{
		"[mq-deadline] kyber none": "mq-deadline",
		"none [bfq]":               "bfq",
		"none":                     "none",
		"":                         "",
	} {
		if got := activeScheduler(in); got != want {
			t.Errorf("activeScheduler(%q) = %q, want %q", in, got, want)
		}
	}
}
