package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/protocol"
)

// fakeSystem records what the agent asked of the guest system.
type fakeSystem struct {
	entropy [][]byte
	orders  []int // SetReporting's
}

func (s *fakeSystem) AddEntropy(e []byte) error {
	s.entropy = append(s.entropy, e)
	return nil
}

func (s *fakeSystem) PrepareSnapshot(order int) (protocol.Message, error) {
	if order > 10 {
		return protocol.Message{}, errors.New("order too large")
	}
	return protocol.Message{Mem: map[string]int64{"MemFree": 1 << 20}}, nil
}

func (s *fakeSystem) SetReporting(order int) (protocol.Message, error) {
	s.orders = append(s.orders, order)
	return protocol.Message{}, nil
}

func (s *fakeSystem) MemInfo() (map[string]int64, error) {
	return map[string]int64{"MemTotal": 64 << 20}, nil
}

// serve starts an agent on one end of a pipe and returns a client on the
// other and the channel Serve's result arrives on.
func serve(t *testing.T, sys System) (*protocol.Client, <-chan error) {
	t.Helper()
	host, guest := net.Pipe()
	a := New(guest, sys)
	done := make(chan error, 1)
	go func() {
		if err := a.Ready(map[string]string{"kernel": "test"}); err != nil {
			done <- err
			return
		}
		done <- a.Serve(guest)
		guest.Close()
	}()
	c := protocol.NewClient(host)
	t.Cleanup(func() { c.Close() })
	return c, done
}

func TestServe(t *testing.T) {
	sys := &fakeSystem{}
	c, done := serve(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready, err := c.WaitReady(ctx)
	if err != nil || ready.Info["kernel"] != "test" {
		t.Fatalf("ready: %+v, %v", ready, err)
	}
	call := func(req protocol.Message) (protocol.Message, error) {
		t.Helper()
		return c.Call(ctx, req)
	}
	if _, err := call(protocol.Message{Type: protocol.TypeInvoke, Input: 1}); err == nil || !strings.Contains(err.Error(), "no function initialised") {
		t.Errorf("invoke before init: got %v", err)
	}
	if _, err := call(protocol.Message{Type: protocol.TypeInit, Function: "nosuch"}); err == nil || !strings.Contains(err.Error(), `unknown function "nosuch"`) {
		t.Errorf("init of an unknown function: got %v", err)
	}
	if _, err := call(protocol.Message{Type: protocol.TypeInit, Function: "linpack", DataMiB: 1}); err != nil {
		t.Fatalf("init: %v", err)
	}
	if _, err := call(protocol.Message{Type: protocol.TypeInit, Function: "linpack", DataMiB: 1}); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Errorf("second init: got %v", err)
	}
	r1, err := call(protocol.Message{Type: protocol.TypeInvoke, Input: 3})
	if err != nil || r1.Checksum == "" {
		t.Fatalf("invoke: %+v, %v", r1, err)
	}
	r2, err := call(protocol.Message{Type: protocol.TypeInvoke, Input: 3})
	if err != nil || r2.Checksum != r1.Checksum {
		t.Errorf("invoke again: checksum %q, %v; want %q", r2.Checksum, err, r1.Checksum)
	}
	if _, err := call(protocol.Message{Type: protocol.TypeEntropy, Entropy: []byte("short")}); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short entropy: got %v", err)
	}
	before, err := call(protocol.Message{Type: protocol.TypeRandom, N: 16})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(protocol.Message{Type: protocol.TypeEntropy, Entropy: make([]byte, 32)}); err != nil || len(sys.entropy) != 1 {
		t.Errorf("entropy: %v; system got %d pools", err, len(sys.entropy))
	}
	after, err := call(protocol.Message{Type: protocol.TypeRandom, N: 16})
	if err != nil || len(after.AgentRandom) != 16 || string(after.AgentRandom) == string(before.AgentRandom) {
		t.Errorf("random after reseed: %x (before %x), %v", after.AgentRandom, before.AgentRandom, err)
	}
	if _, err := call(protocol.Message{Type: protocol.TypeRandom, N: 0}); err == nil {
		t.Error("random n=0: no error")
	}
	if m, err := call(protocol.Message{Type: protocol.TypePrepare, ReportOrder: 11}); err == nil || !strings.Contains(err.Error(), "order too large") {
		t.Errorf("prepare: got %+v, %v", m, err)
	}
	for _, order := range []int{-1, 0} {
		if _, err := call(protocol.Message{Type: protocol.TypeReporting, ReportOrder: order}); err != nil {
			t.Errorf("reporting order %d: %v", order, err)
		}
	}
	if fmt.Sprint(sys.orders) != "[-1 0]" {
		t.Errorf("reporting orders set: %v, want [-1 0]", sys.orders)
	}
	if m, err := call(protocol.Message{Type: protocol.TypeStats}); err != nil || m.Mem["MemTotal"] != 64<<20 {
		t.Errorf("stats: got %+v, %v", m, err)
	}
	if _, err := call(protocol.Message{Type: "dance"}); err == nil || !strings.Contains(err.Error(), `unknown request type "dance"`) {
		t.Errorf("unknown request: got %v", err)
	}
	if _, err := call(protocol.Message{Type: protocol.TypePoweroff}); err != nil {
		t.Errorf("poweroff: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrPoweroff) {
			t.Errorf("Serve after poweroff returned %v, want ErrPoweroff", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return after poweroff")
	}
}

// TestServeMalformedAndEOF: a damaged line gets an error message and the
// loop goes on; the end of the stream ends it.
func TestServeMalformedAndEOF(t *testing.T) {
	host, guest := net.Pipe()
	a := New(guest, &fakeSystem{})
	done := make(chan error, 1)
	go func() { done <- a.Serve(guest) }()
	go io.WriteString(host, protocol.Marker+"{not json\n")
	r := protocol.NewReader(host)
	m, err := r.Read()
	if err != nil || m.Type != protocol.TypeError || !strings.Contains(m.Error, "malformed") {
		t.Fatalf("reply to a malformed line: %+v, %v", m, err)
	}
	host.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Serve returned nil at the end of the stream")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return at the end of the stream")
	}
}
