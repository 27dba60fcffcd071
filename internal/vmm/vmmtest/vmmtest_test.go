package vmmtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/vmm"
)

// TestBootAndSave: a booted fake VM's agent says it is ready on the first
// resume, answers requests, and its state saves once paused.
func TestBootAndSave(t *testing.T) {
	log := &Log{}
	d := &Driver{Log: log}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := d.Start(ctx, vmm.Config{MemMiB: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := protocol.NewClient(m.Serial())
	defer c.Close()
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Call(ctx, protocol.Message{Type: protocol.TypeStats}); err != nil || r.Mem["MemTotal"] == 0 {
		t.Fatalf("stats: %+v, %v", r, err)
	}
	state := filepath.Join(t.TempDir(), "state")
	if err := m.SaveState(ctx, state); err == nil {
		t.Error("state saved from a running VM")
	}
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.SaveState(ctx, state); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Exited():
	default:
		t.Error("Exited not closed after Stop")
	}
	want := []string{"start", "resume 0", "save-state 0", "pause 0", "save-state 0", "stop 0"}
	if got := log.Events(); !slices.Equal(got, want) {
		t.Errorf("log %q, want %q", got, want)
	}
	if len(d.Running()) != 0 {
		t.Error("a stopped machine is still running")
	}
}

// TestFaults: an error fails the operation it is given for, ErrHang holds
// it until its context ends, and a restored VM needs its state first.
func TestFaults(t *testing.T) {
	boom := errors.New("boom")
	d := &Driver{Faults: func(m *Machine, op Op) error {
		switch op {
		case OpLoadState:
			return ErrHang
		case OpPause:
			return boom
		}
		return nil
	}}
	ctx := context.Background()
	m, err := d.Start(ctx, vmm.Config{Incoming: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop(ctx)
	if err := m.Resume(ctx); err == nil {
		t.Error("an incoming VM resumed without a state")
	}
	if err := m.Pause(ctx); !errors.Is(err, boom) {
		t.Errorf("pause: %v, want %v", err, boom)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := m.LoadState(short, f); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung load state: %v, want deadline exceeded", err)
	}
}
