package serve

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/snapshot"
	"github.com/snapbpf/snapbpf/internal/testenv"
	"github.com/snapbpf/snapbpf/internal/vmm/qemu"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// TestServeRealVM: the service on QEMU, eBPF and the page cache: a small
// json function is snapshotted and recorded in the background, invoked
// cold (the snapbpf policy prefetches its working set) and then warm on
// the same VMM, each result checked against the function run on the host;
// deleting it stops its VMM.
func TestServeRealVM(t *testing.T) {
	img := testenv.NeedVM(t)
	root, err := testenv.Dir()
	if err != nil {
		t.Fatal(err)
	}
	home, err := os.MkdirTemp(root, "serve-")
	if err != nil {
		t.Fatal(err)
	}
	d := &qemu.Driver{RunDir: filepath.Join(home, "run")}
	s, err := New(Config{Home: home, Driver: d, Builder: &NodeBuilder{Driver: d, Image: img, RecordRuns: 2, FreePages: snapshot.FreePagesNone}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(home, "s.sock")
	l, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := HTTPServer(s.Handler())
	go srv.Serve(l)
	defer func() {
		srv.Shutdown(context.Background())
		s.Close()
	}()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
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
	if code, b, _ := do("POST", "/v1/functions", `{"name":"json1","function":"json","runtime":"go","memory_mib":256,"data_mib":8}`); code != 202 {
		t.Fatalf("create: %d %s", code, b)
	}
	deadline := time.Now().Add(10 * time.Minute)
	var f Function
	for {
		_, b, _ := do("GET", "/v1/functions/json1", "")
		json.Unmarshal(b, &f)
		if f.State == StateReady || f.State == StateFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready in time: %s", b)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if f.State != StateReady || f.WSetPages == 0 || f.SnapshotID == "" {
		t.Fatalf("function %+v: want ready with a working set", f)
	}
	for i, tc := range []struct {
		input, start string
		seed         uint64
	}{{"3", "cold", 3}, {"4", "warm", 4}} {
		code, b, h := do("POST", "/v1/functions/json1/invoke", tc.input)
		if code != 200 {
			t.Fatalf("invoke %d: %d %s", i, code, b)
		}
		var r goResult
		json.Unmarshal(b, &r)
		want, _ := funcvm.Expect("json", 8, tc.seed)
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
	if code, b, _ := do("DELETE", "/v1/functions/json1", ""); code != 204 {
		t.Fatalf("delete: %d %s", code, b)
	}
	if _, err := os.Stat("/proc/" + itoa(pids[0])); err == nil {
		t.Errorf("VMM %d still runs after the delete", pids[0])
	}
}
