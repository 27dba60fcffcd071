package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests here run the QMP client against a fake QMP server on a unix
// socket; no QEMU.

const qmpGreeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`

// qmpCommand is one command the fake server received.
type qmpCommand struct {
	Execute   string         `json:"execute"`
	Arguments map[string]any `json:"arguments"`
	fds       int            // descriptors passed with it
}

// closeConn, as a line from a qmpServer's reply function, closes the
// connection once the lines before it are sent.
const closeConn = "<close>"

// qmpServer is a fake QMP server. It greets with greeting and answers each
// command with the lines reply returns (none: it never answers).
type qmpServer struct {
	path     string
	greeting string
	reply    func(c qmpCommand) []string
	cmds     chan qmpCommand
}

// startQMPServer listens on a socket in a temporary directory and serves
// one connection at a time until the test ends.
func startQMPServer(t *testing.T, greeting string, reply func(c qmpCommand) []string) *qmpServer {
	t.Helper()
	s := &qmpServer{
		path:     filepath.Join(t.TempDir(), "qmp.sock"),
		greeting: greeting,
		reply:    reply,
		cmds:     make(chan qmpCommand, 100),
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go s.serve(conn)
		}
	}()
	return s
}

func (s *qmpServer) serve(conn *net.UnixConn) {
	defer conn.Close()
	if s.greeting != "" {
		if _, err := conn.Write([]byte(s.greeting + "\r\n")); err != nil {
			return
		}
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		// The client sends one command and waits for its reply, so each
		// read is one command; reading with recvmsg sees passed files.
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			return
		}
		fds := 0
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				rights, err := unix.ParseUnixRights(&m)
				if err != nil {
					continue
				}
				for _, fd := range rights {
					unix.Close(fd)
				}
				fds += len(rights)
			}
		}
		dec := json.NewDecoder(bytes.NewReader(buf[:n]))
		for dec.More() {
			var c qmpCommand
			if err := dec.Decode(&c); err != nil {
				return
			}
			c.fds = fds
			s.cmds <- c
			for _, line := range s.reply(c) {
				if line == closeConn {
					return
				}
				if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
					return
				}
			}
		}
	}
}

// standardReply answers qmp_capabilities, query-status (after an event,
// which the client must not take for the reply) and getfd; cont fails as
// QEMU fails a command; anything else is never answered.
func standardReply(c qmpCommand) []string {
	switch c.Execute {
	case "qmp_capabilities", "getfd":
		return []string{`{"return": {}}`}
	case "query-status":
		return []string{
			`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}`,
			`{"return": {"status": "running", "running": true}}`,
		}
	case "cont":
		return []string{`{"error": {"class": "GenericError", "desc": "migration is not finished"}}`}
	}
	return nil
}

func dialTest(t *testing.T, s *qmpServer) *qmp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, s.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.close() })
	if c := <-s.cmds; c.Execute != "qmp_capabilities" {
		t.Fatalf("first command %q, want qmp_capabilities", c.Execute)
	}
	return q
}

func TestQMPExecute(t *testing.T) {
	s := startQMPServer(t, qmpGreeting, standardReply)
	q := dialTest(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	raw, err := q.execute(ctx, "query-status", nil)
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Status string }
	if err := json.Unmarshal(raw, &st); err != nil || st.Status != "running" {
		t.Errorf("query-status returned %s (%v), want status running", raw, err)
	}

	_, err = q.execute(ctx, "cont", map[string]any{"x": 1})
	if err == nil || err.Error() != "QMP cont: GenericError: migration is not finished" {
		t.Errorf("cont: got %v, want QEMU's error class and description", err)
	}
	if c := <-s.cmds; c.Execute != "query-status" || c.Arguments != nil {
		t.Errorf("server got %+v, want query-status without arguments", c)
	}
	if c := <-s.cmds; c.Execute != "cont" || c.Arguments["x"] != float64(1) {
		t.Errorf("server got %+v, want cont with x=1", c)
	}
	// The connection is still in step after an error.
	if _, err := q.execute(ctx, "query-status", nil); err != nil {
		t.Errorf("query-status after an error: %v", err)
	}
}

// TestQMPExecuteFile: a descriptor goes with its command in one message.
func TestQMPExecuteFile(t *testing.T) {
	s := startQMPServer(t, qmpGreeting, standardReply)
	q := dialTest(t, s)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := q.executeFile(ctx, "getfd", map[string]any{"fdname": "state"}, f); err != nil {
		t.Fatal(err)
	}
	if c := <-s.cmds; c.Execute != "getfd" || c.Arguments["fdname"] != "state" || c.fds != 1 {
		t.Errorf("server got %+v with %d descriptors, want getfd of state with 1", c, c.fds)
	}
}

func TestQMPDialErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		greeting string
		reply    func(qmpCommand) []string
		want     string
	}{
		{"not QMP", `{"hello": "world"}`, standardReply, "QMP greeting: not a QMP server"},
		{"no greeting", "", standardReply, "QMP greeting: context deadline exceeded"},
		{"garbage greeting", `<html>`, standardReply, "QMP greeting: invalid character"},
		{"capabilities refused", qmpGreeting, func(qmpCommand) []string {
			return []string{`{"error": {"class": "CommandNotFound", "desc": "no"}}`}
		}, "QMP qmp_capabilities: CommandNotFound: no"},
		{"capabilities unanswered", qmpGreeting, func(qmpCommand) []string { return nil }, "QMP qmp_capabilities: context deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startQMPServer(t, tc.greeting, tc.reply)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			q, err := dialQMP(ctx, s.path)
			if err == nil {
				q.close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q", err, tc.want)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("took %v: the deadline was not honoured", el)
			}
		})
	}
	t.Run("closed before greeting", func(t *testing.T) {
		_, err := dialQMP(context.Background(), closingServer(t).path)
		if err == nil || !strings.Contains(err.Error(), "QMP greeting: EOF") {
			t.Errorf("error %v, want QMP greeting: EOF", err)
		}
	})
	t.Run("no server", func(t *testing.T) {
		_, err := dialQMP(context.Background(), filepath.Join(t.TempDir(), "none.sock"))
		if err == nil || !strings.Contains(err.Error(), "connect QMP") {
			t.Errorf("error %v, want connect QMP", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		// A socket file nobody listens on: connectQMP retries on this.
		p := filepath.Join(t.TempDir(), "qmp.sock")
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: p}); err != nil {
			t.Fatal(err)
		}
		_, err = dialQMP(context.Background(), p)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("error %v, want ECONNREFUSED", err)
		}
	})
}

// closingServer accepts connections and closes them at once.
func closingServer(t *testing.T) *qmpServer {
	t.Helper()
	s := &qmpServer{path: filepath.Join(t.TempDir(), "closing.sock")}
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return s
}

// TestQMPHang: a command QEMU never answers ends at its deadline, and
// the connection, out of step now, is closed rather than reused.
func TestQMPHang(t *testing.T) {
	s := startQMPServer(t, qmpGreeting, standardReply)
	q := dialTest(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := q.execute(ctx, "migrate", map[string]any{"uri": "exec:cat"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "QMP migrate") {
		t.Fatalf("error %v, want QMP migrate: deadline exceeded", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v", el)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := q.execute(ctx2, "query-status", nil); err == nil {
		t.Error("a command after a timed-out one succeeded on an out-of-step connection")
	}
}

// TestQMPClosedMidReply: a QEMU that exits halfway through a reply fails
// the command with the connection's end, not a hang.
func TestQMPClosedMidReply(t *testing.T) {
	s := startQMPServer(t, qmpGreeting, func(c qmpCommand) []string {
		if c.Execute == "quit" {
			return []string{`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN"}`, `{"retu`, closeConn}
		}
		return standardReply(c)
	})
	q := dialTest(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := q.execute(ctx, "quit", nil)
	if err == nil || !strings.Contains(err.Error(), "QMP quit: connection closed") {
		t.Fatalf("error %v, want connection closed", err)
	}
	if ctx.Err() != nil {
		t.Error("the command waited for its deadline")
	}
	if _, err := q.execute(ctx, "query-status", nil); err == nil || !strings.Contains(err.Error(), "QMP query-status") {
		t.Errorf("command after the close: %v", err)
	}
}
