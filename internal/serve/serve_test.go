package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/pages"
	"github.com/snapbpf/snapbpf/internal/vmm/vmmtest"
)

// invoke invokes name on input and checks a 200 with the host's checksum
// and the start kind wanted ("" for any).
func (ts *testService) invoke(name, input, start string) *http.Response {
	ts.t.Helper()
	code, body, resp := ts.do("POST", "/v1/functions/"+name+"/invoke", input)
	if code != http.StatusOK {
		ts.t.Fatalf("invoke %s %q: %d %s", name, input, code, body)
	}
	var r goResult
	if err := json.Unmarshal(body, &r); err != nil {
		ts.t.Fatalf("invoke result %s: %v", body, err)
	}
	seed := uint64(1)
	if input != "" {
		fmt.Sscan(input, &seed)
	}
	want, _ := funcvm.Expect(vmmtest.FastFunction, vmmtest.FastDataMiB, seed)
	if r.Checksum != want {
		ts.t.Errorf("invoke %s %q: checksum %s, want %s", name, input, r.Checksum, want)
	}
	if got := resp.Header.Get("X-Snapbpf-Start"); start != "" && got != start {
		ts.t.Errorf("invoke %s %q: start %q, want %q", name, input, got, start)
	}
	for _, h := range []string{"X-Snapbpf-Restore-Ms", "X-Snapbpf-Prefetch-Bytes", "X-Snapbpf-Queue-Ms", "X-Snapbpf-Total-Ms"} {
		if resp.Header.Get(h) == "" {
			ts.t.Errorf("invoke %s: no %s header", name, h)
		}
	}
	return resp
}

// TestCreateInvokeDelete: the function's life through the API: created in
// the background (creating, recording, ready), invoked cold then warm on
// the same instance, listed, deleted with its instance and snapshot.
func TestCreateInvokeDelete(t *testing.T) {
	ts := startService(t, "", Config{}, nil)
	f := ts.create("lin1")
	if f.SnapshotID == "" || f.WSetPages != 16 || f.RecordedAt == nil || f.Runtime != "go" || f.MemMiB != vmmtest.FastMemMiB {
		t.Errorf("ready function %+v: want its snapshot id, 16 working-set pages, when recorded", f)
	}
	resp := ts.invoke("lin1", "3", "cold")
	if resp.Header.Get("X-Snapbpf-Prefetch-Bytes") != "65536" {
		t.Errorf("cold start prefetched %s bytes, want the 16-page set", resp.Header.Get("X-Snapbpf-Prefetch-Bytes"))
	}
	ts.invoke("lin1", "4", "warm")
	ts.invoke("lin1", "", "warm")
	if n := len(ts.d.Machines()); n != 1 {
		t.Errorf("%d VMs started for 3 sequential invocations, want 1", n)
	}
	code, body, _ := ts.do("GET", "/v1/functions", "")
	var list struct{ Functions []api.Function }
	json.Unmarshal(body, &list)
	if code != 200 || len(list.Functions) != 1 || list.Functions[0].Instances.Warm != 1 {
		t.Errorf("list: %d %s: want lin1 with one warm instance", code, body)
	}
	code, body, _ = ts.do("GET", "/metrics", "")
	for _, want := range []string{`snapbpf_invocations_total{function="lin1",outcome="ok"} 3`, `snapbpf_starts_total{function="lin1",start="cold"} 1`, `snapbpf_instances{function="lin1",state="warm"} 1`, "snapbpf_restore_seconds_bucket", "snapbpf_prefetch_bytes_total"} {
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, body, _ := ts.do("DELETE", "/v1/functions/lin1", ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	if len(ts.d.Running()) != 0 {
		t.Error("the deleted function's instance still runs")
	}
	if _, err := os.Stat(ts.s.reg.snapshotPath("lin1")); !os.IsNotExist(err) {
		t.Errorf("the deleted function's snapshot is still there: %v", err)
	}
	code, body, _ = ts.do("GET", "/v1/functions/lin1", "")
	if code != http.StatusNotFound {
		t.Errorf("get after delete: %d %s", code, body)
	}
	code, body, _ = ts.do("POST", "/v1/functions/lin1/invoke", "1")
	if code != http.StatusNotFound {
		t.Errorf("invoke after delete: %d %s", code, body)
	}
}

// TestBadInput: every bad request gets its status and a message naming
// the thing and the fix, and the service goes on serving.
func TestBadInput(t *testing.T) {
	b := &fakeBuilder{gate: make(chan struct{})}
	ts := startService(t, "", Config{}, b)
	close(b.gate)
	ts.create("ok1")
	b.gate = make(chan struct{}) // the next creation stays in progress
	if code, body, _ := ts.do("POST", "/v1/functions", `{"name":"slow","function":"linpack","memory_mib":4,"data_mib":1}`); code != http.StatusAccepted {
		t.Fatalf("create slow: %d %s", code, body)
	}
	defer close(b.gate)
	big := strings.Repeat("x", MaxCreateBody+1)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		says                     string
	}{
		{"malformed JSON", "POST", "/v1/functions", `{"name":`, 400, "request body"},
		{"unknown field", "POST", "/v1/functions", `{"name":"a","function":"json","colour":1}`, 400, "colour"},
		{"two values", "POST", "/v1/functions", `{"name":"a","function":"json"} {}`, 400, "more than one"},
		{"path in name", "POST", "/v1/functions", `{"name":"../etc","function":"json"}`, 400, "name"},
		{"upper case name", "POST", "/v1/functions", `{"name":"Json","function":"json"}`, 400, "name"},
		{"long name", "POST", "/v1/functions", `{"name":"` + strings.Repeat("a", 64) + `","function":"json"}`, 400, "name"},
		{"unknown function", "POST", "/v1/functions", `{"name":"a","function":"nope"}`, 400, "nope"},
		{"runtime", "POST", "/v1/functions", `{"name":"a","function":"json","runtime":"cobol"}`, 400, "runtime"},
		{"python data", "POST", "/v1/functions", `{"name":"a","function":"pyaes","runtime":"python","data_mib":4}`, 400, "data_mib 4: python functions take their input"},
		{"python unknown", "POST", "/v1/functions", `{"name":"a","function":"bert","runtime":"python"}`, 400, "no python function"},
		{"memory", "POST", "/v1/functions", `{"name":"a","function":"json","memory_mib":1}`, 400, "memory_mib"},
		{"data", "POST", "/v1/functions", `{"name":"a","function":"json","data_mib":-1}`, 400, "data_mib"},
		{"body too big", "POST", "/v1/functions", big, 413, "bytes"},
		{"exists", "POST", "/v1/functions", `{"name":"ok1","function":"linpack","memory_mib":4}`, 409, "exists"},
		{"get unknown", "GET", "/v1/functions/nope", "", 404, "no function nope"},
		{"get bad name", "GET", "/v1/functions/a.b", "", 400, "name"},
		{"delete unknown", "DELETE", "/v1/functions/nope", "", 404, "nope"},
		{"invoke unknown", "POST", "/v1/functions/nope/invoke", "1", 404, "nope"},
		{"invoke not a number", "POST", "/v1/functions/ok1/invoke", "abc", 400, "decimal"},
		{"invoke zero", "POST", "/v1/functions/ok1/invoke", "0", 400, "input"},
		{"invoke too big", "POST", "/v1/functions/ok1/invoke", strings.Repeat("1", MaxInvokeBody+1), 413, "bytes"},
		{"invoke not ready", "POST", "/v1/functions/slow/invoke", "1", 409, "not ready"},
		{"unknown endpoint", "GET", "/v2/things", "", 404, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := ts.do(tc.method, tc.path, tc.body)
			if code != tc.status {
				t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.status)
			}
			errorBody(t, body, tc.says)
		})
	}
	// Headers are bounded too.
	req, _ := http.NewRequest("GET", "http://snapbpf/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 2*MaxHeaderBytes))
	if resp, err := ts.client.Do(req); err == nil {
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("oversized headers: %d, want 431", resp.StatusCode)
		}
		resp.Body.Close()
	}
	ts.invoke("ok1", "2", "cold")
	if code, _, _ := ts.do("GET", "/healthz", ""); code != 200 {
		t.Errorf("healthz: %d", code)
	}
}

// TestCreateDeleteSerialised: a create of a name being deleted is refused
// with 409 until the delete has ended (which stops the creation); then it
// is created anew.
func TestCreateDeleteSerialised(t *testing.T) {
	b := &fakeBuilder{gate: make(chan struct{})}
	ts := startService(t, "", Config{}, b)
	body := `{"name":"fn","function":"linpack","memory_mib":4,"data_mib":1}`
	if code, out, _ := ts.do("POST", "/v1/functions", body); code != http.StatusAccepted {
		t.Fatalf("create: %d %s", code, out)
	}
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				codes[i], _, _ = ts.do("DELETE", "/v1/functions/fn", "")
				return
			}
			codes[i], _, _ = ts.do("POST", "/v1/functions", body)
		}()
	}
	wg.Wait()
	if codes[0] != http.StatusNoContent {
		t.Errorf("delete during creation: %d, want 204", codes[0])
	}
	created := 0
	for _, c := range codes[1:] {
		switch c {
		case http.StatusAccepted:
			created++
		case http.StatusConflict:
		default:
			t.Errorf("concurrent create: %d, want 202 or 409", c)
		}
	}
	// At most one create may have won, after the delete ended.
	if created > 1 {
		t.Errorf("%d concurrent creates of one name succeeded", created)
	}
	close(b.gate)
	if created == 0 {
		if code, out, _ := ts.do("POST", "/v1/functions", body); code != http.StatusAccepted {
			t.Fatalf("create after delete: %d %s", code, out)
		}
	}
	ts.waitState("fn", api.StateReady)
	ts.invoke("fn", "1", "cold")
}

// TestRestartKeepsFunctions: a service that stops (or is killed) leaves
// its functions on disk; the next one serves the ready ones and finishes
// the creation the first one was doing.
func TestRestartKeepsFunctions(t *testing.T) {
	home := t.TempDir()
	b := &fakeBuilder{gate: make(chan struct{})}
	ts := startService(t, home, Config{}, b)
	close(b.gate)
	ts.create("ready1")
	ts.invoke("ready1", "1", "cold")
	b.gate = make(chan struct{})
	if code, out, _ := ts.do("POST", "/v1/functions", `{"name":"half","function":"linpack","memory_mib":4,"data_mib":1}`); code != http.StatusAccepted {
		t.Fatalf("create: %d %s", code, out)
	}
	ts.stop()

	b2 := &fakeBuilder{}
	ts2 := startService(t, home, Config{}, b2)
	f := ts2.waitState("ready1", api.StateReady)
	if f.SnapshotID == "" {
		t.Errorf("after restart: %+v", f)
	}
	ts2.invoke("ready1", "2", "cold")
	ts2.waitState("half", api.StateReady)
	ts2.invoke("half", "2", "cold")
}

// TestFailedSnapshotNeverRestored: a ready function whose snapshot no
// longer validates is marked failed with the reason at the next start and
// its invocations are refused.
func TestFailedSnapshotNeverRestored(t *testing.T) {
	home := t.TempDir()
	ts := startService(t, home, Config{}, nil)
	ts.create("bad")
	ts.stop()
	if err := os.WriteFile(ts.s.reg.snapshotPath("bad")+"/state", []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts2 := startService(t, home, Config{}, nil)
	f := ts2.waitState("bad", api.StateFailed)
	if !strings.Contains(f.Error, "validation") {
		t.Errorf("error %q: want it to say the snapshot fails validation", f.Error)
	}
	code, body, _ := ts2.do("POST", "/v1/functions/bad/invoke", "1")
	if code != http.StatusConflict {
		t.Errorf("invoke of a failed function: %d %s", code, body)
	}
	if n := len(ts2.d.Machines()); n != 0 {
		t.Errorf("%d VMs started for a failed function", n)
	}
}

// TestQueueDeadline: beyond the per-function instance limit an invocation
// queues; past the queue deadline it gets 429 with Retry-After; once the
// instance frees up, the queued ones run on it.
func TestQueueDeadline(t *testing.T) {
	ts := startService(t, "", Config{MaxInstances: 1, QueueTimeout: 2 * time.Second}, nil)
	ts.create("q")
	gate := ts.holdRestores()
	first := make(chan int)
	go func() {
		code, _, _ := ts.do("POST", "/v1/functions/q/invoke", "1")
		first <- code
	}()
	time.Sleep(50 * time.Millisecond) // the first holds the only slot
	code, body, resp := ts.do("POST", "/v1/functions/q/invoke", "2")
	if code != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("over the limit past the deadline: %d %s (Retry-After %q), want 429 with Retry-After", code, body, resp.Header.Get("Retry-After"))
	}
	errorBody(t, body, "queue deadline")
	queued := make(chan int)
	go func() {
		code, _, _ := ts.do("POST", "/v1/functions/q/invoke", "3")
		queued <- code
	}()
	time.Sleep(50 * time.Millisecond)
	close(gate)
	if c := <-first; c != 200 {
		t.Errorf("first invocation: %d", c)
	}
	if c := <-queued; c != 200 {
		t.Errorf("queued invocation: %d", c)
	}
	if n := len(ts.d.Machines()); n != 1 {
		t.Errorf("%d VMs for a limit of 1", n)
	}
}

// TestGuestFailuresReplaceInstance: a guest that does not answer in time
// gets 504, one that crashed is not handed out again; either way the
// instance is ended and the next invocation restores a new one.
func TestGuestFailuresReplaceInstance(t *testing.T) {
	ts := startService(t, "", Config{InvokeTimeout: time.Nanosecond}, nil)
	ts.create("g")
	code, body, _ := ts.do("POST", "/v1/functions/g/invoke", "1")
	if code != http.StatusGatewayTimeout {
		t.Errorf("hung guest: %d %s, want 504", code, body)
	}
	errorBody(t, body, "replaced")
	if len(ts.d.Running()) != 0 {
		t.Error("the timed-out instance still runs")
	}
	ts.s.cfg.InvokeTimeout = time.Minute
	ts.invoke("g", "1", "cold")
	// A warm instance whose VMM dies is dropped, not handed out.
	ts.d.Machines()[1].Crash("killed by the test")
	deadline := time.Now().Add(5 * time.Second)
	for ts.s.reg.get("g").pool.counts().Warm != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ts.invoke("g", "2", "cold")
	code, body, _ = ts.do("GET", "/healthz", "")
	if code != 200 {
		t.Errorf("healthz after failures: %d %s", code, body)
	}
}

// TestIdleTimeout: a warm instance unused past the idle timeout is ended.
func TestIdleTimeout(t *testing.T) {
	ts := startService(t, "", Config{IdleTimeout: 100 * time.Millisecond}, nil)
	ts.create("idle")
	ts.invoke("idle", "1", "cold")
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.d.Running()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle instance was not ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.invoke("idle", "1", "cold")
}

// TestBudgetEvictsLRU: at the memory budget a cold start first evicts the
// least recently used idle instance of any function; with nothing idle to
// evict it queues, and past the deadline gets 429.
func TestBudgetEvictsLRU(t *testing.T) {
	ts := startService(t, "", Config{MemoryBudget: 150, QueueTimeout: 200 * time.Millisecond}, nil)
	// Each instance "uses" 100 bytes: two fit, a third does not.
	ts.s.budget.meter = func() Usage { return Usage{PrivateBytes: 100 * int64(len(ts.d.Running()))} }
	for _, n := range []string{"a", "b", "c"} {
		ts.create(n)
	}
	ts.invoke("a", "1", "cold")
	ts.invoke("b", "1", "cold")
	ts.invoke("a", "2", "warm") // b is now the least recently used
	ts.invoke("c", "1", "cold")
	if w := ts.s.reg.get("b").pool.counts().Warm; w != 0 {
		t.Errorf("b has %d warm instances, want its instance evicted", w)
	}
	if w := ts.s.reg.get("a").pool.counts().Warm; w != 1 {
		t.Errorf("a has %d warm instances, want 1 (recently used)", w)
	}
	_, body, _ := ts.do("GET", "/metrics", "")
	if !strings.Contains(string(body), "snapbpf_evictions_total 1") {
		t.Errorf("metrics: want one eviction")
	}
	// Memory that evictions do not give back: b's cold start evicts a
	// and c (idle), finds the host still over budget with nothing idle
	// and queues until the deadline.
	ts.s.budget.meter = func() Usage { return Usage{PrivateBytes: 300} }
	code, body, _ := ts.do("POST", "/v1/functions/b/invoke", "1")
	if code != http.StatusTooManyRequests {
		t.Errorf("over budget with nothing to evict: %d %s, want 429", code, body)
	}
	if len(ts.d.Running()) != 0 {
		t.Errorf("%d instances left, want every idle one evicted", len(ts.d.Running()))
	}
}

// TestBudgetReservesColdStarts: cold starts that begin together do not
// overshoot the budget on one measurement that cannot see them yet: each
// reserves what its function's last cold start added, the one that does
// not fit waits until the others' first invocations have ended, and what
// they were measured to add is what the next cold start reserves.
func TestBudgetReservesColdStarts(t *testing.T) {
	ts := startService(t, "", Config{MemoryBudget: 250, QueueTimeout: time.Minute}, nil)
	// The measurement never sees the instances: only the reservations
	// keep the third cold start out.
	ts.s.budget.meter = func() Usage { return Usage{} }
	ts.s.budget.private = func(int) (int64, error) { return 7, nil }
	fns := []string{"a", "b", "c"}
	for _, n := range fns {
		ts.create(n)
	}
	ts.s.mu.Lock()
	ts.s.budget.coldCost = map[string]int64{"a": 100, "b": 100, "c": 100}
	ts.s.mu.Unlock()
	gate := ts.holdRestores()
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	defer release() // a failed check must not leave restores held
	codes := make(chan int, len(fns))
	for _, n := range fns {
		go func() {
			code, _, _ := ts.do("POST", "/v1/functions/"+n+"/invoke", "1")
			codes <- code
		}()
	}
	deadline := time.Now().Add(time.Minute) // a loaded host
	for len(ts.d.Machines()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a third would have started by now
	if n := len(ts.d.Machines()); n != 2 {
		t.Fatalf("%d cold starts under way, want 2: 100 + 100 reserved of 250", n)
	}
	ts.s.mu.Lock()
	reserved := ts.s.budget.reserved
	ts.s.mu.Unlock()
	if reserved != 200 {
		t.Errorf("reserved %d, want 200", reserved)
	}
	release()
	for range fns {
		if c := <-codes; c != 200 {
			t.Errorf("invocation: %d, want 200", c)
		}
	}
	ts.s.mu.Lock()
	defer ts.s.mu.Unlock()
	want := 7 + 16*int64(pages.Size) // the instance's private memory and the fake's 16-page set
	if ts.s.budget.reserved != 0 || ts.s.budget.coldCost["a"] != want || ts.s.budget.coldCost["c"] != want {
		t.Errorf("after: reserved %d, cold costs %v, want 0 and %d each", ts.s.budget.reserved, ts.s.budget.coldCost, want)
	}
}

// TestTokenOnTCP: the TCP listener answers only requests with the bearer
// token.
func TestTokenOnTCP(t *testing.T) {
	ts := startService(t, "", Config{}, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef0123"
	srv := HTTPServer(RequireToken(ts.s.Handler(), token))
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())
	url := "http://" + l.Addr().String() + "/v1/functions"
	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer wrong", 401}, {"Basic " + token, 401}, {"Bearer " + token, 200}} {
		req, _ := http.NewRequest("GET", url, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
	}
}

// TestSocketMode: the unix socket is 0600; a live one is not taken over,
// a stale one is.
func TestSocketMode(t *testing.T) {
	ts := startService(t, "", Config{}, nil)
	fi, err := os.Stat(ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := ListenUnix(ts.sock); err == nil || !strings.Contains(err.Error(), "another service") {
		t.Errorf("listen on a live socket: %v", err)
	}
}

// TestRerecordOnMisses: cold restores that keep missing the working set
// trigger a re-recording on their inputs, merged with the old set, and
// the function says when and why; hits in between reset the count.
func TestRerecordOnMisses(t *testing.T) {
	ts := startService(t, "", Config{Rerecord: RerecordConfig{MissFaults: 10, After: 3}}, nil)
	ts.create("drift")
	e := ts.s.reg.get("drift")
	ts.s.coldRestored(e, 5, 50)
	ts.s.coldRestored(e, 6, 50)
	ts.s.coldRestored(e, 7, 2) // a hit: the streak starts again
	ts.s.coldRestored(e, 8, 50)
	ts.s.coldRestored(e, 9, 50)
	if n := len(ts.b.records); n != 1 {
		t.Fatalf("%d recordings before the third miss in a row, want only the creation's", n)
	}
	ts.s.coldRestored(e, 9, 60)
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := ts.s.reg.get("drift").view()
		if len(f.Rerecords) == 1 {
			if f.WSetPages != 32 || !strings.Contains(f.Rerecords[0].Reason, "3 cold restore(s)") {
				t.Errorf("after re-recording: %+v", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no re-recording: %+v", f)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ts.b.mu.Lock()
	got := fmt.Sprint(ts.b.records[1])
	ts.b.mu.Unlock()
	if got != "[0 8 9]" {
		t.Errorf("re-recording of inputs %s, want a merge of [8 9]", got)
	}
	ts.invoke("drift", "9", "cold")
}

// TestDrain: once draining (SIGTERM), new invocations get 503 while the
// one in flight finishes with its result; HTTP shutdown then waits for it.
func TestDrain(t *testing.T) {
	ts := startService(t, "", Config{}, nil)
	ts.create("d")
	gate := ts.holdRestores()
	inflight := make(chan int)
	go func() {
		code, _, _ := ts.do("POST", "/v1/functions/d/invoke", "1")
		inflight <- code
	}()
	time.Sleep(50 * time.Millisecond)
	ts.s.Drain()
	code, body, _ := ts.do("POST", "/v1/functions/d/invoke", "2")
	if code != http.StatusServiceUnavailable {
		t.Errorf("invocation while draining: %d %s, want 503", code, body)
	}
	shut := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.srv.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	close(gate)
	if c := <-inflight; c != http.StatusOK {
		t.Errorf("in-flight invocation: %d, want 200", c)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
