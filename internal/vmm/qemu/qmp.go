package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// qmp is a minimal QEMU Machine Protocol client: one command at a time,
// events kept for whoever waits on them.
type qmp struct {
	conn net.Conn
	enc  *json.Encoder

	mu sync.Mutex // one command in flight

	replies chan qmpMessage
	done    chan struct{}
	err     error
}

type qmpMessage struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	QMP   json.RawMessage `json:"QMP"`
}

// dialQMP connects to the QMP socket and negotiates capabilities.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect QMP %s: %w", path, err)
	}
	q := &qmp{
		conn:    conn,
		enc:     json.NewEncoder(conn),
		replies: make(chan qmpMessage, 1),
		done:    make(chan struct{}),
	}
	greeting := make(chan error, 1)
	go q.readLoop(greeting)
	select {
	case err := <-greeting:
		if err != nil {
			conn.Close()
			return nil, err
		}
	case <-ctx.Done():
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %w", ctx.Err())
	}
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) readLoop(greeting chan<- error) {
	defer close(q.done)
	dec := json.NewDecoder(bufio.NewReader(q.conn))
	first := true
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			q.err = err
			if first {
				greeting <- fmt.Errorf("QMP greeting: %w", err)
			}
			return
		}
		switch {
		case first:
			first = false
			if m.QMP == nil {
				greeting <- errors.New("QMP greeting: not a QMP server")
				return
			}
			greeting <- nil
		case m.Event != "":
			// Events are not needed: state is polled with query commands,
			// which cannot miss a transition that happened earlier.
		default:
			select {
			case q.replies <- m:
			case <-q.done:
				return
			}
		}
	}
}

// execute runs one command and returns its "return" value.
func (q *qmp) execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	return q.executeFile(ctx, cmd, args, nil)
}

// executeFile runs one command, passing f's descriptor along with it
// (SCM_RIGHTS) when f is not nil, as QMP's getfd expects.
func (q *qmp) executeFile(ctx context.Context, cmd string, args any, f *os.File) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	if f == nil {
		if err := q.enc.Encode(req); err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
	} else {
		uc, ok := q.conn.(*net.UnixConn)
		if !ok {
			return nil, fmt.Errorf("QMP %s: cannot pass a file over a %T", cmd, q.conn)
		}
		b, err := json.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		// QEMU takes the descriptor from the message that carries the
		// command, so both go in one sendmsg.
		if _, _, err := uc.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil); err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
	}
	select {
	case m := <-q.replies:
		if m.Error != nil {
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	case <-q.done:
		return nil, fmt.Errorf("QMP %s: connection closed: %v", cmd, q.err)
	case <-ctx.Done():
		// The reply may still come; the connection is out of step now.
		q.conn.Close()
		return nil, fmt.Errorf("QMP %s: %w", cmd, ctx.Err())
	}
}

func (q *qmp) close() error {
	err := q.conn.Close()
	<-q.done
	return err
}
