package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestOrNilDiscards(t *testing.T) {
	l := Or(nil)
	if l == nil {
		t.Fatal("Or(nil) returned nil")
	}
	l.Error("dropped", "k", 1) // must not panic
	if l.Enabled(t.Context(), slog.LevelError) {
		t.Error("Or(nil) is enabled at error level; want a logger that discards")
	}
	var b bytes.Buffer
	mine := slog.New(slog.NewTextHandler(&b, nil))
	if Or(mine) != mine {
		t.Error("Or(l) did not return l")
	}
}

func TestNewFormatsAndLevel(t *testing.T) {
	var b bytes.Buffer
	l, err := New(&b, "json", slog.LevelWarn)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "pages", 3)
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("json handler wrote %q: %v", b.String(), err)
	}
	if rec["msg"] != "shown" || rec["pages"] != float64(3) {
		t.Errorf("record %v; want msg shown, pages 3", rec)
	}

	b.Reset()
	l, err = New(&b, "text", slog.LevelDebug)
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("detail", "file", "mem")
	if !strings.Contains(b.String(), "level=DEBUG msg=detail file=mem") {
		t.Errorf("text handler wrote %q", b.String())
	}

	if _, err := New(&b, "xml", slog.LevelInfo); err == nil {
		t.Error("New accepted format xml")
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel accepted loud")
	}
}
