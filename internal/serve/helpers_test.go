package serve

// Fast tests of the service on the fake VMM of package vmmtest (the real
// agent in-process), over real HTTP on a unix socket: no root, no QEMU.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/protocol"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/vmm"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
	"github.com/snapbpf/snapbpf/internal/wset"
)

// fakeBuilder makes snapshots on the fake VMM and "records" a fixed
// working set of the first pages; gate, if set, holds each step until it
// is closed or receives.
type fakeBuilder struct {
	gate chan struct{}

	mu      sync.Mutex
	records [][]uint64 // inputs of each Record, merge marked by a leading 0
	fail    error
}

func (b *fakeBuilder) wait(ctx context.Context) error {
	if b.gate == nil {
		return nil
	}
	select {
	case <-b.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *fakeBuilder) Snapshot(ctx context.Context, f api.Function, out string) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	dir, _, err := funcvm.CreateSnapshot(ctx, &vmmtest.Driver{}, vmmtest.Image(), funcvm.CreateOptions{
		Function: f.Function, DataMiB: f.DataMiB, MemMiB: f.MemMiB, Out: out, Replace: true, FreePages: snapshot.FreePagesNone,
	})
	if err != nil {
		return err
	}
	return dir.Close()
}

func (b *fakeBuilder) Record(ctx context.Context, dir *snapshot.Dir, inputs []uint64, merge bool) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	rec := inputs
	if merge {
		rec = append([]uint64{0}, inputs...)
	}
	b.records = append(b.records, rec)
	fail := b.fail
	b.mu.Unlock()
	if fail != nil {
		return fail
	}
	id, err := wset.IdentifyFile(dir.MemPath(), dir.Manifest.ID)
	if err != nil {
		return err
	}
	npages := uint64(16)
	if merge {
		npages = 32
	}
	set := &wset.Set{Mem: id, Extents: []pages.Extent{{Page: 0, N: npages}}}
	b2, err := set.MarshalBinary()
	if err != nil {
		return err
	}
	return dir.AddFile(policy.WorkingSetFile, func(w io.Writer) error {
		_, err := w.Write(b2)
		return err
	})
}

// testService is a Server on the fake VMM behind a unix socket.
type testService struct {
	t      testing.TB
	s      *Server
	d      *vmmtest.Driver
	b      *fakeBuilder
	home   string
	sock   string
	client *http.Client
	srv    *http.Server
}

// startService starts a service in home (a new one if empty) with cfg's
// limits.
func startService(t testing.TB, home string, cfg Config, b *fakeBuilder) *testService {
	t.Helper()
	if home == "" {
		home = t.TempDir()
	}
	if b == nil {
		b = &fakeBuilder{}
	}
	d := &vmmtest.Driver{Function: vmmtest.FastFunction, DataMiB: vmmtest.FastDataMiB}
	var drv vmm.Driver = d
	if st, ok := cfg.Driver.(serviceTime); ok {
		st.Driver = d
		drv = st
	}
	cfg.Home, cfg.Driver, cfg.Builder = home, drv, b
	cfg.MinGuestMiB = func(string, int) int { return vmmtest.FastMemMiB }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hd := s.Handler()
	if tt, ok := t.(*testing.T); ok {
		hd = contract(tt, hd)
	}
	sock, srv := serveUnix(t, home, hd)
	ts := &testService{t: t, s: s, d: d, b: b, home: home, sock: sock, srv: srv, client: unixClient(sock)}
	t.Cleanup(ts.stop)
	return ts
}

// serviceTime, as the Driver of a Config given to startService, makes
// the service's fake VMM one whose guests answer each invocation after
// Wait, without running the function: a service time that uses no host
// CPU, for tests of capacity and routing that the host's CPUs must not
// limit (set Config.NoCheck: the results are not the function's).
// startService fills in the fake driver (one per node: the value is
// copied).
type serviceTime struct {
	*vmmtest.Driver
	Wait time.Duration
}

// Start implements vmm.Driver.
func (d serviceTime) Start(ctx context.Context, c vmm.Config) (vmm.Machine, error) {
	m, err := d.Driver.Start(ctx, c)
	if err != nil {
		return nil, err
	}
	return waitMachine{m, newWaitSerial(m.Serial(), d.Wait)}, nil
}

type waitMachine struct {
	vmm.Machine
	serial *waitSerial
}

// Serial is the agent's port with invocations answered by the port.
func (m waitMachine) Serial() io.ReadWriteCloser { return m.serial }

// waitSerial passes every request but invoke to the agent; it answers
// an invoke itself after the wait. What the host reads is the agent's
// lines and these answers, whole lines each.
type waitSerial struct {
	rw   io.ReadWriteCloser
	wait time.Duration
	pr   *io.PipeReader
	pw   *io.PipeWriter
	mu   sync.Mutex // one line at a time into pw
}

// newWaitSerial starts copying the agent's lines; the copy ends when the
// agent's port closes (the machine stops).
func newWaitSerial(rw io.ReadWriteCloser, wait time.Duration) *waitSerial {
	s := &waitSerial{rw: rw, wait: wait}
	s.pr, s.pw = io.Pipe()
	go func() {
		r := bufio.NewReader(rw)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				s.line(line)
			}
			if err != nil {
				s.pw.CloseWithError(err)
				return
			}
		}
	}()
	return s
}

func (s *waitSerial) line(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pw.Write(b)
}

func (s *waitSerial) Read(b []byte) (int, error) { return s.pr.Read(b) }

// Write answers an invoke request after the wait, in its own goroutine
// (the host's writer must not be held), and passes anything else on. The
// protocol writes one whole line per Write.
func (s *waitSerial) Write(b []byte) (int, error) {
	msg, err := protocol.Decode(bytes.TrimSuffix(b, []byte("\n")))
	if err != nil || msg.Type != protocol.TypeInvoke {
		return s.rw.Write(b)
	}
	time.AfterFunc(s.wait, func() {
		reply, err := protocol.Encode(protocol.Message{Type: protocol.TypeResult, ID: msg.ID, Checksum: "service-time", FnNs: s.wait.Nanoseconds()})
		if err == nil {
			s.line(reply)
		}
	})
	return len(b), nil
}

func (s *waitSerial) Close() error {
	err := s.rw.Close()
	s.pr.Close()
	return err
}

// holdRestores makes each cold restore wait at its state load until the
// returned channel receives or is closed: an instance that stays busy.
func (ts *testService) holdRestores() chan struct{} {
	gate := make(chan struct{})
	ts.d.Faults = func(_ *vmmtest.Machine, op vmmtest.Op) error {
		if op == vmmtest.OpLoadState {
			<-gate
		}
		return nil
	}
	return gate
}

// serveUnix serves h on a unix socket in home, as snapbpf serve does, and
// returns the socket and the server (the caller shuts it down).
func serveUnix(t testing.TB, home string, h http.Handler) (string, *http.Server) {
	t.Helper()
	sock := filepath.Join(home, "s.sock")
	l, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := HTTPServer(h)
	go srv.Serve(l)
	return sock, srv
}

// unixClient is an HTTP client of the service on the unix socket sock.
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

// stop closes the service and checks it left no fake VM running.
func (ts *testService) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts.srv.Shutdown(ctx)
	ts.s.Close()
	for _, m := range ts.d.Running() {
		ts.t.Errorf("fake VM %d still running after the service closed", m.Index())
	}
}

// do sends a request and returns the status, the body and the response.
func (ts *testService) do(method, path, body string) (int, []byte, *http.Response) {
	ts.t.Helper()
	req, err := http.NewRequest(method, "http://snapbpf"+path, strings.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp
}

// create registers a fake function and waits until it is ready.
func (ts *testService) create(name string) api.Function {
	ts.t.Helper()
	code, body, _ := ts.do("POST", "/v1/functions", `{"name":"`+name+`","function":"linpack","runtime":"go","memory_mib":4,"data_mib":1}`)
	if code != http.StatusAccepted {
		ts.t.Fatalf("create %s: %d %s", name, code, body)
	}
	return ts.waitState(name, api.StateReady)
}

// waitState polls function name until it is in state want.
func (ts *testService) waitState(name, want string) api.Function {
	ts.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, _ := ts.do("GET", "/v1/functions/"+name, "")
		var f api.Function
		if code == http.StatusOK {
			json.Unmarshal(body, &f)
			if f.State == want {
				return f
			}
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("function %s: %d %s; want state %s", name, code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errorBody checks that body is {"error": "..."} containing want.
func errorBody(t *testing.T, body []byte, want string) {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Errorf("body %s: want {\"error\": ...}", body)
		return
	}
	if !strings.Contains(e.Error, want) {
		t.Errorf("error %q: want it to say %q", e.Error, want)
	}
}

func readBody(resp *http.Response) ([]byte, error) { return io.ReadAll(resp.Body) }

func itoa(n int) string { return fmt.Sprint(n) }
