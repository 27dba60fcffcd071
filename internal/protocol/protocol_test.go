package protocol

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	in := Message{Type: TypeInvoke, ID: 7, Function: "aes", Input: 42, Entropy: []byte{1, 2, 3}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(Marker)) || !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("line %q lacks marker or newline", b)
	}
	out, err := Decode(bytes.TrimSuffix(b, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	if out.V != Version || out.Type != in.Type || out.ID != in.ID || out.Input != in.Input || !bytes.Equal(out.Entropy, in.Entropy) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string
	}{
		{"console line", "[    0.1] Linux version 6.1", "not a protocol line"},
		{"bad json", Marker + `{"v":1,"type":`, "malformed message"},
		{"other version", Marker + `{"v":99,"type":"ready"}`, "protocol version 99"},
		{"no type", Marker + `{"v":1}`, "no type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode(%q) = %v, want error containing %q", tc.line, err, tc.want)
			}
		})
	}
}

func TestDecodeAfterConsoleText(t *testing.T) {
	// A printk can land in front of a message on the same line.
	m, err := Decode([]byte("[ 3.2] random: crng init done" + Marker + `{"v":1,"type":"ready"}` + "\r"))
	if err != nil || m.Type != TypeReady {
		t.Fatalf("got %+v, %v", m, err)
	}
}

func TestReaderSkipsConsoleAndLimitsLines(t *testing.T) {
	ready, _ := Encode(Message{Type: TypeReady})
	stream := "boot line 1\nboot line 2\n" + string(ready) + strings.Repeat("x", MaxLine+10) + "\n"
	r := NewReader(strings.NewReader(stream))
	var other []string
	r.Other = func(l []byte) { other = append(other, string(l)) }
	m, err := r.Read()
	if err != nil || m.Type != TypeReady {
		t.Fatalf("first message: %+v, %v", m, err)
	}
	if len(other) != 2 {
		t.Fatalf("console lines = %q, want 2", other)
	}
	if _, err := r.Read(); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("long line: got %v", err)
	}
}

// agent is a scripted peer on the far end of a pipe.
func agent(t *testing.T, conn net.Conn, reply func(req Message) []Message) {
	t.Helper()
	w := NewWriter(conn)
	if err := w.Write(Message{Type: TypeReady}); err != nil {
		return
	}
	r := NewReader(conn)
	for {
		req, err := r.Read()
		if err != nil {
			return
		}
		for _, m := range reply(req) {
			if w.Write(m) != nil {
				return
			}
		}
	}
}

func TestClientCall(t *testing.T) {
	host, guest := net.Pipe()
	go agent(t, guest, func(req Message) []Message {
		switch req.Type {
		case TypeInvoke:
			// A stale reply to another ID first: the client must skip it.
			return []Message{{Type: TypeResult, ID: req.ID + 100}, {Type: TypeResult, ID: req.ID, Checksum: "abc"}}
		case TypeInit:
			return []Message{{Type: TypeError, ID: req.ID, Error: "no such function"}}
		}
		return nil // never answer anything else
	})
	c := NewClient(host)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := c.Call(ctx, Message{Type: TypeInvoke, Input: 1})
	if err != nil || m.Checksum != "abc" {
		t.Fatalf("invoke: %+v, %v", m, err)
	}
	if _, err := c.Call(ctx, Message{Type: TypeInit, Function: "nope"}); err == nil || !strings.Contains(err.Error(), "no such function") {
		t.Fatalf("init: want agent error, got %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if _, err := c.Call(short, Message{Type: TypeStats}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered call: want deadline exceeded, got %v", err)
	}
}

func TestClientGuestGone(t *testing.T) {
	host, guest := net.Pipe()
	go func() {
		io.WriteString(guest, "Kernel panic - not syncing: Attempted to kill init!\n")
		guest.Close()
	}()
	c := NewClient(host)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("want closed error, got %v", err)
	}
	if !strings.Contains(c.Log(), "Kernel panic") {
		t.Fatalf("console log %q lacks the panic", c.Log())
	}
}
