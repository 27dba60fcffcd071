package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/serveclient"
	"github.com/snapbpf/snapbpf/internal/serveclient/servetest"
)

// TestMain doubles as a tiny service for TestStartService: with
// LOADGEN_TEST_SERVE=SOCKET it answers /healthz on SOCKET until SIGTERM
// (LOADGEN_TEST_IGNORE_TERM: ignores it; LOADGEN_TEST_EXIT: exits at once).
func TestMain(m *testing.M) {
	if sock := os.Getenv("LOADGEN_TEST_SERVE"); sock != "" {
		if os.Getenv("LOADGEN_TEST_EXIT") != "" {
			os.Exit(3)
		}
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		l, err := net.Listen("unix", sock)
		if err != nil {
			os.Exit(2)
		}
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"ok":true}`) }))
		for range term {
			if os.Getenv("LOADGEN_TEST_IGNORE_TERM") == "" {
				l.Close()
				os.Exit(0)
			}
		}
	}
	os.Exit(m.Run())
}

// TestStartService: the service is started, found ready through its
// socket, and stopped by SIGTERM (or killed past the grace period); one
// that exits early is reported.
func TestStartService(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env string
		wantStart string
		grace     time.Duration
		wantStop  string
	}{
		{"clean", "", "", 10 * time.Second, ""},
		{"ignores SIGTERM", "LOADGEN_TEST_IGNORE_TERM=1", "", 300 * time.Millisecond, "killed"},
		{"exits", "LOADGEN_TEST_EXIT=1", "exited before it was ready", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "s.sock")
			c, err := serveclient.New(serveclient.Options{Socket: sock})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			env := append(os.Environ(), "LOADGEN_TEST_SERVE="+sock, tc.env)
			var log strings.Builder
			p, err := StartService(context.Background(), []string{exe, "-test.run=^$"}, env, &log, c.Health, 20*time.Second)
			if tc.wantStart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantStart) {
					t.Fatalf("start: %v, want %q", err, tc.wantStart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = p.Stop(tc.grace)
			if (tc.wantStop == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantStop)) {
				t.Errorf("stop: %v, want %q", err, tc.wantStop)
			}
			if p.cmd.ProcessState == nil {
				t.Error("service still running after Stop")
			}
		})
	}
}

// TestCompare: the same trace reaches the service of each policy, each
// started before and stopped after its run, and each gets its report.
func TestCompare(t *testing.T) {
	cfg := TraceConfig{Rate: 40, Duration: time.Second, Functions: []string{"f1", "f2"}, Skew: 1, Inputs: 5, Seed: 9}
	trace, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]*servetest.Server{}
	var events []string
	start := func(ctx context.Context, pol string) (Target, func() error, error) {
		if pol == "broken" {
			return nil, nil, errors.New("no such policy")
		}
		delay := 80 * time.Millisecond
		if pol == "snapbpf" {
			delay = 5 * time.Millisecond
		}
		srv := servetest.New(t, servetest.Options{Polls: 1, ColdDelay: delay})
		servers[pol] = srv
		c, err := serveclient.New(serveclient.Options{Socket: srv.Socket})
		if err != nil {
			return nil, nil, err
		}
		for _, f := range cfg.Functions {
			c.Create(ctx, api.CreateRequest{Name: f, Function: "json"})
			c.Get(ctx, f)
		}
		events = append(events, "start "+pol)
		return c, func() error { events = append(events, "stop "+pol); c.Close(); return nil }, nil
	}
	reports, err := Compare(context.Background(), cfg, trace, []string{"lazy", "snapbpf"}, start, CompareOptions{Sampler: Sampler{Interval: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(events, ",") != "start lazy,stop lazy,start snapbpf,stop snapbpf" || len(reports) != 2 {
		t.Fatalf("events %v, %d reports", events, len(reports))
	}
	for _, f := range cfg.Functions {
		a, b := servers["lazy"].Inputs(f), servers["snapbpf"].Inputs(f)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s: lazy got inputs %v, snapbpf %v: not the same trace", f, a, b)
		}
	}
	lazy, snap := reports[0], reports[1]
	if lazy.Policy != "lazy" || snap.Policy != "snapbpf" || lazy.Summary.Arrivals != len(trace) || snap.Summary.OK != len(trace) {
		t.Errorf("reports %+v / %+v", lazy.Summary, snap.Summary)
	}
	if snap.Summary.ColdLatency.P50 >= lazy.Summary.ColdLatency.P50 {
		t.Errorf("cold p50 snapbpf %.1f ms, lazy %.1f ms: the faster fake is not faster", snap.Summary.ColdLatency.P50, lazy.Summary.ColdLatency.P50)
	}
	_, err = Compare(context.Background(), cfg, trace, []string{"lazy", "broken"}, start, CompareOptions{})
	if err == nil || !strings.Contains(err.Error(), "policy broken: no such policy") {
		t.Errorf("broken policy: %v", err)
	}
}
