package loadgen

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/owner"
)

// soakReport is a run whose service had fds and rss MiB at each second.
func soakReport(fds []int, rss []float64, sum Summary) *Report {
	r := &Report{Summary: sum}
	for i := range fds {
		r.Samples = append(r.Samples, Sample{T: float64(i), ServicePID: 7, ServiceFDs: fds[i], ServiceRSSMiB: rss[i]})
	}
	return r
}

func steady(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestCheckSoak: each invariant breaks alone and is named; the baseline
// and the end are medians of tenths, so a burst of instances at one
// instant does not decide, and the warm-up is left out.
func TestCheckSoak(t *testing.T) {
	ok := Summary{Arrivals: 50, OK: 50, Verified: 50}
	fds := func(n, v int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	grow := func(v []float64, to float64) []float64 {
		out := slices.Clone(v)
		for i := len(out) * 8 / 10; i < len(out); i++ {
			out[i] = to
		}
		return out
	}
	growInt := func(v []int, to int) []int {
		out := slices.Clone(v)
		for i := len(out) * 8 / 10; i < len(out); i++ {
			out[i] = to
		}
		return out
	}
	// The warm-up (first 10 samples) grows from 20 fds and 10 MiB.
	warm := func(f []int, r []float64) ([]int, []float64) {
		for i := range 10 {
			f[i], r[i] = 20, 10
		}
		return f, r
	}
	spiky := fds(100, 100)
	spiky[50], spiky[99] = 300, 300 // one instant with many instances, even the last
	for _, tc := range []struct {
		name string
		fds  []int
		rss  []float64
		sum  Summary
		left []int
		want []string // substrings of the failures, in order
	}{
		{"steady", fds(100, 100), steady(100, 200), ok, nil, nil},
		{"spikes", spiky, steady(100, 200), ok, nil, nil},
		{"growth within 10%", growInt(fds(100, 100), 109), grow(steady(100, 200), 219), ok, nil, nil},
		{"fds grow", growInt(fds(100, 100), 115), steady(100, 200), ok, nil, []string{"fds: the service's open descriptors grew 15% (100 to 115)"}},
		{"rss grows", fds(100, 100), grow(steady(100, 200), 240), ok, nil, []string{"rss: the service's resident memory grew 20% (200.0 to 240.0 MiB)"}},
		{"a VMM left", fds(100, 100), steady(100, 200), ok, []int{42}, []string{"vmms: 1 VMM processes outlived the service: pids [42]"}},
		{"wrong and errors", fds(100, 100), steady(100, 200), Summary{Arrivals: 50, OK: 45, Verified: 44, Wrong: 2, Errors: 1, Rejected: 2},
			nil, []string{"results: 2 wrong results", "results: 1 requests failed", "results: 2 requests rejected (429)", "results: 1 results not verified"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, r := warm(tc.fds, tc.rss)
			s := CheckSoak(soakReport(f, r, tc.sum), 10*time.Second, tc.left)
			if len(s.Failures) != len(tc.want) || s.OK() != (len(tc.want) == 0) {
				t.Fatalf("failures %q, want %q", s.Failures, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(s.Failures[i], w) {
					t.Errorf("failure %q, want %q", s.Failures[i], w)
				}
			}
			if s.FDs.Samples != 90 || s.FDs.Start < 100 {
				t.Errorf("the warm-up was counted: %+v", s.FDs)
			}
			var b strings.Builder
			writeSoak(&b, s)
			if want := map[bool]string{true: "soak passed", false: "soak FAILED: "}[s.OK()]; !strings.Contains(b.String(), want) {
				t.Errorf("summary %q, want %q", b.String(), want)
			}
		})
	}
	// A service never sampled (no pidfile) cannot pass.
	s := CheckSoak(&Report{Summary: ok, Samples: []Sample{{T: 20, ServiceError: "no such file"}}}, time.Second, nil)
	if s.OK() || !strings.Contains(s.Failures[0], "service: 0 samples") {
		t.Errorf("failures %q", s.Failures)
	}
}

// TestColdWarm: a cold request's compute is the warm compute of its
// function and input, not its own guest time (which holds its faults);
// the bound is 1.15 × warm p50 plus the compute difference.
func TestColdWarm(t *testing.T) {
	req := func(fn, in, start string, lat, guest float64) Request {
		return Request{Arrival: Arrival{Function: fn, Input: in}, Outcome: OutcomeOK, Start: start, LatencyMs: lat, GuestFnMs: guest}
	}
	reqs := []Request{
		// Warm: a (input 1) computes 100 ms, b 300 ms.
		req("a", "1", api.StartWarm, 150, 100), req("a", "1", api.StartWarm, 160, 100), req("b", "1", api.StartWarm, 400, 300),
		// Cold: b input 1 (compute 300 from its warm run; its own 900
		// holds faults), b input 2 (no warm run of it: b's 300), c (never
		// warm: its own 500).
		req("b", "1", api.StartCold, 1000, 900), req("b", "2", api.StartCold, 1100, 950), req("c", "1", api.StartCold, 1200, 500),
		{Arrival: Arrival{Function: "a"}, Outcome: OutcomeError, LatencyMs: 1},
	}
	cw := coldWarm(reqs)
	want := ColdWarm{Cold: 3, Warm: 3, ColdP50Ms: 1100, WarmP50Ms: 160, ColdComputeP50Ms: 300, WarmComputeP50Ms: 100, ComputeDiffMs: 200}
	want.BoundMs = 1.15*160 + 200
	want.OfBound = 1100 / want.BoundMs
	if math.Abs(cw.BoundMs-want.BoundMs) > 1e-9 || math.Abs(cw.OfBound-want.OfBound) > 1e-9 {
		t.Fatalf("bound %+v, want %+v", cw, want)
	}
	cw.BoundMs, cw.OfBound = want.BoundMs, want.OfBound
	if cw != want {
		t.Errorf("got %+v, want %+v", cw, want)
	}
	// Within the bound.
	met := coldWarm([]Request{req("a", "1", api.StartWarm, 100, 50), req("a", "1", api.StartCold, 110, 80)})
	if !met.Met || met.ComputeDiffMs != 0 || math.Abs(met.BoundMs-115) > 1e-9 {
		t.Errorf("got %+v, want met with bound 115", met)
	}
	if none := coldWarm(reqs[:3]); none.Met || none.Cold != 0 || none.BoundMs != 0 {
		t.Errorf("no cold requests: %+v", none)
	}
}

// TestSampleService: the sampler reads the service's pidfile and measures
// that process; a pidfile naming a process that has gone says so.
func TestSampleService(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "serve.pid")
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	writeOwner(t, pidfile, cmd.Process.Pid)
	s := Sampler{Pidfile: pidfile}.sample(t.Context(), time.Now())
	if s.ServicePID != cmd.Process.Pid || s.ServiceFDs < 3 || s.ServiceRSSMiB <= 0 || s.ServiceError != "" {
		t.Errorf("sample %+v", s)
	}
	cmd.Process.Kill()
	cmd.Wait()
	s = Sampler{Pidfile: pidfile}.sample(t.Context(), time.Now())
	if s.ServiceFDs != 0 || !strings.Contains(s.ServiceError, "no longer runs") {
		t.Errorf("sample of a gone service %+v", s)
	}
	os.WriteFile(pidfile, []byte("12"), 0o600)
	if s = (Sampler{Pidfile: pidfile}).sample(t.Context(), time.Now()); !strings.Contains(s.ServiceError, "not a pidfile of snapbpf serve") {
		t.Errorf("sample of a bad pidfile %+v", s)
	}
}

func writeOwner(t *testing.T, path string, pid int) {
	t.Helper()
	o, err := owner.Of(pid)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(o)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestProcessesUsing: a process is found by a path under the directory
// on its command line, and is not once it has exited.
func TestProcessesUsing(t *testing.T) {
	dir := t.TempDir()
	// A shell waiting on its input, with the path among its arguments
	// (and no child to outlive it).
	cmd := exec.Command("sh", "-c", "read x", "sh", "mem-path="+filepath.Join(dir, "fn", "mem"))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pids, err := ProcessesUsing(dir)
	if err != nil || !slices.Contains(pids, cmd.Process.Pid) || len(pids) != 1 {
		t.Errorf("ProcessesUsing = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if pids, err := ProcessesUsing(dir); err != nil || len(pids) != 0 {
		t.Errorf("after exit: %v, %v", pids, err)
	}
}
