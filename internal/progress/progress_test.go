package progress

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestETA(t *testing.T) {
	for _, tc := range []struct {
		elapsed     time.Duration
		done, total int
		want        time.Duration
		ok          bool
	}{
		{10 * time.Second, 0, 4, 0, false}, // nothing finished: no rate yet
		{10 * time.Second, 1, 4, 30 * time.Second, true},
		{10 * time.Second, 2, 4, 10 * time.Second, true},
		{10 * time.Second, 4, 4, 0, true},
		{time.Minute, 3, 99, 32 * time.Minute, true},
		{time.Second, 1, 0, 0, false},
	} {
		got, ok := ETA(tc.elapsed, tc.done, tc.total)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ETA(%v, %d, %d) = %v, %v; want %v, %v", tc.elapsed, tc.done, tc.total, got, ok, tc.want, tc.ok)
		}
	}
}

// TestLogLines: off a terminal, each step is one log line saying which of
// how many it is, the time so far and, once a step has finished, the ETA.
func TestLogLines(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	m := &logMeter{l: l, now: func() time.Time { return clock }}
	j := m.Start("bench", 4)
	j.Step("latency/json/lazy/1")
	clock = clock.Add(20 * time.Second)
	j.Step("latency/json/nora/1")
	clock = clock.Add(20 * time.Second)
	j.Step("latency/json/snapbpf/1")
	clock = clock.Add(80 * time.Second)
	j.Done()
	j.Step("after done") // ignored

	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		"level=INFO msg=progress job=bench step=latency/json/lazy/1 i=1 n=4 elapsed=0s",
		"level=INFO msg=progress job=bench step=latency/json/nora/1 i=2 n=4 elapsed=20s eta=1m0s",
		"level=INFO msg=progress job=bench step=latency/json/snapbpf/1 i=3 n=4 elapsed=40s eta=40s",
		"level=INFO msg=\"progress: done\" job=bench steps=3 n=4 elapsed=2m0s",
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, lines[i], want[i])
		}
	}
}

func TestOrNil(t *testing.T) {
	j := Or(nil).Start("x", 3) // must not panic
	j.Step("a")
	j.Done()
	var b bytes.Buffer
	m := Log(slog.New(slog.NewTextHandler(&b, nil)))
	if Or(m) != m {
		t.Error("Or(m) is not m")
	}
}
