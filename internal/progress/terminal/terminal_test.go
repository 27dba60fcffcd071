package terminal

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

func TestIsTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if !IsTerminal(tty) {
		t.Error("a pty is not a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(w) {
		t.Error("a pipe is a terminal")
	}
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
}

// TestTerminalBar draws a job on a pseudo-terminal: the bar counts the
// steps, a log line written meanwhile comes out whole, and the job ends
// on a full bar and a new line.
func TestTerminalBar(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(ptmx) // until tty closes (EIO)
		out <- string(b)
	}()

	term := NewTerminal(tty)
	j := term.Start("bench", 4)
	nested := term.Start("record", 8) // inside the bench: shows nothing
	nested.Step("run 1")
	nested.Done()
	j.Step("latency/json/lazy/1")
	time.Sleep(50 * time.Millisecond)
	j.Step("latency/json/nora/1")
	io.WriteString(term.Writer(), "level=INFO msg=\"a log line\"\n")
	j.Step("latency/json/snapbpf/1")
	j.Done()
	io.WriteString(term.Writer(), "after\n")
	tty.Close()
	got := <-out
	t.Logf("terminal output: %q", got)

	for _, want := range []string{
		"bench: latency/json/nora/1", "1/4", "2/4", "4/4",
		"level=INFO msg=\"a log line\"\r\n", "after\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	// The log line is not interleaved with a bar: the bar is cleared
	// (carriage return) right before it.
	if i := strings.Index(got, "level=INFO"); i < 1 || got[i-1] != '\r' {
		t.Errorf("log line not at the start of a cleared line:\n%q", got)
	}
	if strings.Contains(got, "record") {
		t.Error("a job started inside another drew a bar")
	}
	if term.bar != nil {
		t.Error("the bar is still active after Done")
	}
}
