package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/loadgen"
	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pyfn"
	"github.com/snapbpf/snapbpf/internal/serveclient"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

func TestMain(m *testing.M) {
	testenv.Run(m)
}

// TestServeRealVM: the service on QEMU, eBPF and the page cache: a small
// image function (its input selects the region of the image it reads, so
// inputs drift) is snapshotted and recorded in the background, invoked
// cold (the snapbpf policy prefetches its working set) and then warm on
// the same VMM, each result checked against the function run on the host;
// deleting it stops its VMM.
func TestServeRealVM(t *testing.T) {
	img := testenv.NeedVM(t)
	home, d := vmHome(t, "serve-")
	// A cold restore with more than one memory-file fault missed, and one
	// such restore re-records.
	s, err := New(Config{Home: home, Driver: d, Builder: &NodeBuilder{Driver: d, Image: img, RecordRuns: 2, FreePages: snapshot.FreePagesNone},
		Rerecord: RerecordConfig{MissFaults: 1, After: 1}})
	if err != nil {
		t.Fatal(err)
	}
	sock, srv := serveUnix(t, home, s.Handler())
	defer func() {
		srv.Shutdown(context.Background())
		s.Close()
	}()
	client := unixClient(sock)
	do := func(method, path, body string) (int, []byte, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://snapbpf"+path, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b []byte
		b, _ = readBody(resp)
		return resp.StatusCode, b, resp.Header
	}
	if code, b, _ := do("POST", "/v1/functions", `{"name":"img1","function":"image","runtime":"go","memory_mib":256,"data_mib":32}`); code != 202 {
		t.Fatalf("create: %d %s", code, b)
	}
	deadline := time.Now().Add(10 * time.Minute)
	var f api.Function
	for {
		_, b, _ := do("GET", "/v1/functions/img1", "")
		json.Unmarshal(b, &f)
		if f.State == api.StateReady || f.State == api.StateFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready in time: %s", b)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if f.State != api.StateReady || f.WSetPages == 0 || f.SnapshotID == "" {
		t.Fatalf("function %+v: want ready with a working set", f)
	}
	for i, tc := range []struct {
		input, start string
		seed         uint64
	}{{"3", "cold", 3}, {"4", "warm", 4}} {
		code, b, h := do("POST", "/v1/functions/img1/invoke", tc.input)
		if code != 200 {
			t.Fatalf("invoke %d: %d %s", i, code, b)
		}
		var r goResult
		json.Unmarshal(b, &r)
		want, _ := funcvm.Expect("image", 32, tc.seed)
		if r.Checksum != want || r.GuestFnMs <= 0 {
			t.Errorf("invoke %d: %s, want checksum %s", i, b, want)
		}
		if h.Get("X-Snapbpf-Start") != tc.start {
			t.Errorf("invoke %d: start %q, want %s", i, h.Get("X-Snapbpf-Start"), tc.start)
		}
		if tc.start == "cold" && h.Get("X-Snapbpf-Prefetch-Bytes") == "0" {
			t.Errorf("cold start prefetched nothing")
		}
		t.Logf("invoke %s: %s total %s ms, restore %s ms, prefetch %s bytes", tc.start, b, h.Get("X-Snapbpf-Total-Ms"), h.Get("X-Snapbpf-Restore-Ms"), h.Get("X-Snapbpf-Prefetch-Bytes"))
	}
	pids := s.vmms.pids()
	if len(pids) != 1 {
		t.Fatalf("%d VMMs recorded, want the warm one", len(pids))
	}

	// Drifted inputs: cold restores, with the memory file out of the page
	// cache, of inputs the recording never saw fault on pages outside the
	// working set; that triggers a re-recording on them, merged into the set.
	e := s.reg.get("img1")
	evictAll := func() {
		for {
			s.mu.Lock()
			v := s.lru()
			s.mu.Unlock()
			if v == nil {
				return
			}
			s.evict(*v, "test")
		}
	}
	var rerecorded api.Function
	for _, in := range []string{"5", "6", "7", "8"} {
		evictAll()
		e.mu.Lock()
		mem := e.snap.dir.MemPath()
		e.mu.Unlock()
		pagecache.Drop(mem)
		if code, b, h := do("POST", "/v1/functions/img1/invoke", in); code != 200 || h.Get("X-Snapbpf-Start") != "cold" {
			t.Fatalf("drifted input %s: %d %s (%s)", in, code, b, h.Get("X-Snapbpf-Start"))
		}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			rerecorded = e.view()
			if len(rerecorded.Rerecords) > 0 || !e.rerecordingNow() || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(rerecorded.Rerecords) > 0 {
			break
		}
	}
	if len(rerecorded.Rerecords) == 0 {
		t.Fatalf("no re-recording after 4 drifted cold restores: %+v", rerecorded)
	}
	if rerecorded.WSetPages < f.WSetPages || rerecorded.RecordedAt == nil {
		t.Errorf("re-recorded set: %d pages (was %d), recorded at %v: want the union", rerecorded.WSetPages, f.WSetPages, rerecorded.RecordedAt)
	}
	t.Logf("re-recorded: %d pages (was %d): %s", rerecorded.WSetPages, f.WSetPages, rerecorded.Rerecords[0].Reason)
	if code, b, _ := do("POST", "/v1/functions/img1/invoke", "6"); code != 200 {
		t.Errorf("invoke after the re-recording: %d %s", code, b)
	}

	// A short load through the client, as snapbpf load --soak runs it:
	// every result checked against the host, the service's (this test
	// process's) descriptors and memory sampled through its pidfile, its
	// VMMs found by their command lines (sockets in the run directory).
	c, err := serveclient.New(serveclient.Options{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := loadgen.TraceConfig{Rate: 3, Duration: 2 * time.Second, Functions: []string{"img1"}, Inputs: 3, Seed: 1}
	trace, err := loadgen.Generate(cfg)
	if err != nil || len(trace) == 0 {
		t.Fatalf("trace %v, %v", trace, err)
	}
	verify := func(a loadgen.Arrival, res []byte) (bool, error) {
		seed, _ := strconv.ParseUint(a.Input, 10, 64)
		want, err := funcvm.Expect("image", 32, seed)
		if err != nil {
			return false, nil
		}
		var r goResult
		if json.Unmarshal(res, &r) != nil || r.Checksum != want {
			return true, fmt.Errorf("%s, want %s", res, want)
		}
		return true, nil
	}
	r, err := loadgen.Load(t.Context(), cfg, trace, c, loadgen.RunOptions{Verify: verify, Timeout: 3 * time.Minute},
		loadgen.Sampler{Pidfile: filepath.Join(home, "serve.pid"), Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if sum := r.Summary; sum.Verified != len(trace) || sum.Wrong != 0 {
		t.Errorf("load: %+v, want all %d verified", sum, len(trace))
	}
	last := r.Samples[len(r.Samples)-1]
	if last.ServicePID != os.Getpid() || last.ServiceFDs <= 0 || last.ServiceRSSMiB <= 0 {
		t.Errorf("service sample %+v, want this process measured", last)
	}
	vmms, err := loadgen.ProcessesUsing(d.RunDir)
	if err != nil || len(vmms) == 0 || !slices.Contains(vmms, s.vmms.pids()[0]) {
		t.Errorf("VMMs by command line %v (%v), recorded %v", vmms, err, s.vmms.pids())
	}

	pids = s.vmms.pids()
	if code, b, _ := do("DELETE", "/v1/functions/img1", ""); code != 204 {
		t.Fatalf("delete: %d %s", code, b)
	}
	if _, err := os.Stat("/proc/" + itoa(pids[0])); err == nil {
		t.Errorf("VMM %d still runs after the delete", pids[0])
	}
	if left, err := loadgen.ProcessesUsing(d.RunDir); err != nil || len(left) > 0 {
		t.Errorf("VMMs left after the delete: %v (%v)", left, err)
	}
}

// TestServePythonRealVM: a python function through the service: its
// snapshot made on the python image and its working set recorded on its
// input shapes in the background, then invoked cold and warm with a
// payload as the request body; the answer is the runner's output, the
// same as the runner gives on the host.
func TestServePythonRealVM(t *testing.T) {
	img := testenv.NeedVM(t)
	py := testenv.NeedPython(t)
	home, d := vmHome(t, "serve-py-")
	s, err := New(Config{Home: home, Driver: d, Builder: &NodeBuilder{Driver: d, Image: img, PythonImage: py, RecordRuns: 2, FreePages: snapshot.FreePagesNone}})
	if err != nil {
		t.Fatal(err)
	}
	sock, srv := serveUnix(t, home, s.Handler())
	defer func() {
		srv.Shutdown(context.Background())
		s.Close()
	}()
	c, err := serveclient.New(serveclient.Options{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	if _, err := c.Create(ctx, api.CreateRequest{Name: "pyaes1", Function: "pyaes", Runtime: api.RuntimePython}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	f, err := c.Wait(wctx, "pyaes1", 500*time.Millisecond, nil)
	if err != nil || f.State != api.StateReady || f.WSetPages == 0 || f.Runtime != api.RuntimePython {
		t.Fatalf("function %+v, %v: want a ready python function with a working set", f, err)
	}
	e := s.reg.get("pyaes1")
	e.mu.Lock()
	rootfs := e.snap.dir.Manifest.RootfsPath
	e.mu.Unlock()
	warmup, err := pyfn.Input("pyaes", 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, start := range []string{api.StartCold, api.StartWarm} {
		// Input shape 2 cold (the recording ran shape 1), then 1 warm.
		payload, err := pyfn.Input("pyaes", uint64(2-i))
		if err != nil {
			t.Fatal(err)
		}
		_, want, _, err := pyfn.Expect(ctx, rootfs, "pyaes", warmup, payload)
		if err != nil {
			t.Fatal(err)
		}
		inv, err := c.Invoke(ctx, "pyaes1", payload)
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		if inv.Start != start || !bytes.Equal(inv.Result, want) || len(want) == 0 {
			t.Errorf("invoke %d: start %s, %d bytes of output (%.40q), want %s and the host's %d bytes (%.40q)", i, inv.Start, len(inv.Result), inv.Result, start, len(want), want)
		}
		t.Logf("invoke %s: %d bytes out, total %.0f ms, restore %.0f ms, prefetch %d bytes", inv.Start, len(inv.Result), inv.TotalMs, inv.RestoreMs, inv.PrefetchBytes)
	}
	if _, err := c.Invoke(ctx, "pyaes1", nil); serveclient.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("an empty payload: %v, want 400", err)
	}
}

// vmHome makes a service home for a real-VM test under the tests' shared
// directory, and the QEMU driver whose VMMs run in it.
func vmHome(t *testing.T, prefix string) (string, *qemu.Driver) {
	t.Helper()
	root, err := testenv.Dir()
	if err != nil {
		t.Fatal(err)
	}
	home, err := os.MkdirTemp(root, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return home, &qemu.Driver{RunDir: filepath.Join(home, "run")}
}
