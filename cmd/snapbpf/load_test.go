package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/serveclient"
	"github.com/snapbpf/snapbpf/internal/serveclient/servetest"
)

// readyFunctions registers functions on the fake service and waits for them.
func readyFunctions(t *testing.T, srv *servetest.Server, names ...string) {
	t.Helper()
	c, err := serveclient.New(serveclient.Options{Socket: srv.Socket})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range names {
		if _, err := c.Create(context.Background(), api.CreateRequest{Name: n, Function: "json"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(context.Background(), n, time.Millisecond, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoadCommand: snapbpf load against the fake service over its unix
// socket, printing the summary, writing the JSON and the plots, and with
// --json the same shape on stdout; the same seed sends the same trace.
func TestLoadCommand(t *testing.T) {
	srv := servetest.New(t, servetest.Options{Polls: 1, ColdDelay: 30 * time.Millisecond})
	readyFunctions(t, srv, "f1", "f2", "f3")
	srv.Status.Store("f3", http.StatusTooManyRequests)
	out := filepath.Join(t.TempDir(), "run.json")
	args := []string{"load", "--socket=" + srv.Socket, "--functions=f1,f2,f3", "--rate=40", "--duration=1500ms", "--skew=0.5", "--seed=5", "--inputs=3", "--verify=false"}
	stdout, stderr, err := runOut(append(args, "--out="+out)...)
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr)
	}
	for _, want := range []string{"ok/s", "latency ms: p50", "cold ", "rejected (429)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "seed=5") || !strings.Contains(stderr, "out="+out) ||
		!strings.Contains(stderr, `job=load step=`) || !strings.Contains(stderr, `msg="progress: done" job=load steps=10 n=10`) {
		t.Errorf("stderr: %s", stderr)
	}
	var file loadOutput
	b, err := os.ReadFile(out)
	if err != nil || json.Unmarshal(b, &file) != nil || len(file.Runs) != 1 || len(file.Plots) != 2 {
		t.Fatalf("--out: %v, %+v", err, file)
	}
	for _, p := range file.Plots {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	r := file.Runs[0]
	s := r.Summary
	if s.Arrivals == 0 || s.OK+s.Rejected != s.Arrivals || s.Rejected != r.PerFunction["f3"].Arrivals || s.Rejected == 0 || s.ColdFraction <= 0 {
		t.Errorf("summary %+v", s)
	}
	if r.Config.Seed != 5 || len(r.Requests) != s.Arrivals || len(r.Samples) == 0 {
		t.Errorf("config %+v, %d requests, %d samples", r.Config, len(r.Requests), len(r.Samples))
	}

	var again loadOutput
	runJSON(t, &again, append(args, "--json")...)
	if len(again.Runs) != 1 || again.Runs[0].Summary.Arrivals != s.Arrivals {
		t.Errorf("the same seed gave %d arrivals, then %d", s.Arrivals, again.Runs[0].Summary.Arrivals)
	}
	for i, q := range again.Runs[0].Requests {
		if q.Arrival != r.Requests[i].Arrival {
			t.Fatalf("request %d: %+v, first time %+v", i, q.Arrival, r.Requests[i].Arrival)
		}
	}
}

// TestLoadErrors: bad flags fail before anything is sent; an absent
// service is named; errors from the service are counted, not fatal.
func TestLoadErrors(t *testing.T) {
	srv := servetest.New(t, servetest.Options{Polls: 1})
	readyFunctions(t, srv, "f1")
	sock := "--socket=" + srv.Socket
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load", sock}, "no functions"},
		{[]string{"load", sock, "--functions=f1", "--rate=0"}, "rate 0"},
		{[]string{"load", sock, "--functions=f1", "--skew=-1"}, "skew -1"},
		{[]string{"load", sock, "--functions=f1", "--duration=0s"}, "duration 0s"},
		{[]string{"load", sock, "--functions=f1", "--compare=lazy,fast"}, "--compare fast: unknown policy"},
		{[]string{"load", "--url=http://127.0.0.1:1", "--functions=f1", "--compare=lazy,snapbpf"}, "leave out --url"},
		{[]string{"load", sock, "--functions=f1", "--compare=lazy,snapbpf"}, "a snapbpf serve already answers on " + srv.Socket},
		{[]string{"load", sock, "--functions=f1", "--out=/nonexistent/x.json"}, "create the directory first"},
		{[]string{"load", "--socket=" + filepath.Join(t.TempDir(), "none.sock"), "--functions=f1"}, "cannot reach snapbpf serve"},
		{[]string{"load", sock, "--functions=f1", "--soak"}, "--soak needs --compare"},
		{[]string{"load", sock, "--functions=f1", "--budget-half"}, "--budget-half needs --compare"},
		{[]string{"load", sock, "--functions=f1", "--compare=snapbpf", "--budget-half", "--soak"}, "run them apart"},
		{[]string{"load", sock, "--functions=f1", "--compare=snapbpf", "--budget-half", "--serve-arg=--memory-budget=300"}, "leave it out of --serve-arg"},
		{[]string{"load", sock, "--functions=f1", "--compare=snapbpf", "--soak", "--verify=false"}, "--soak needs every result verified"},
		{[]string{"load", sock, "--functions=f1", "--compare=snapbpf", "--soak", "--duration=1m", "--soak-warmup=2m"}, "--soak-warmup 2m0s: want less than --duration"},
	} {
		t.Run(strings.Join(tc.args[2:], " "), func(t *testing.T) {
			_, _, err := runOut(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
			}
		})
	}
	// An unknown function is an error answer per request, counted.
	var out loadOutput
	runJSON(t, &out, "load", sock, "--functions=f1,nope", "--skew=0", "--rate=30", "--duration=1s", "--seed=2", "--json", "--verify=false")
	s := out.Runs[0].Summary
	if s.Errors == 0 || s.Errors != out.Runs[0].PerFunction["nope"].Arrivals || s.OK == 0 {
		t.Errorf("summary %+v", s)
	}
	for msg := range s.ErrorMessages {
		if !strings.Contains(msg, "HTTP 404") {
			t.Errorf("error %q", msg)
		}
	}
}

// TestLoadVerify: each result is checked against the function computed on
// this host; the fake service's made-up checksums are counted wrong, with
// the checksum wanted in the message, and none is counted ok.
func TestLoadVerify(t *testing.T) {
	srv := servetest.New(t, servetest.Options{Polls: 1})
	readyFunctions(t, srv, "f1")
	var out loadOutput
	runJSON(t, &out, "load", "--socket="+srv.Socket, "--functions=f1", "--rate=10", "--duration=1s", "--seed=3", "--inputs=2", "--json")
	s := out.Runs[0].Summary
	if s.Arrivals == 0 || s.Wrong != s.Arrivals || s.OK != 0 || s.Verified != 0 || s.Errors != 0 {
		t.Errorf("summary %+v", s)
	}
	for msg := range s.ErrorMessages {
		if !strings.Contains(msg, "wrong result: f1 input") || !strings.Contains(msg, "checksum sum-") || !strings.Contains(msg, "(json computed on this host)") {
			t.Errorf("error %q", msg)
		}
	}
}
