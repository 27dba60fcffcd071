package protocol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Reader reads protocol messages from a stream, skipping console output.
type Reader struct {
	br *bufio.Reader
	// Other receives every line that is not a message (console output).
	Other func(line []byte)
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Read returns the next message. Lines over MaxLine are an error, not a
// reason to buffer forever.
func (r *Reader) Read() (Message, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return Message{}, err
		}
		m, err := Decode(line)
		if errors.Is(err, ErrNotMessage) {
			if r.Other != nil {
				r.Other(line)
			}
			continue
		}
		return m, err
	}
}

func (r *Reader) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := r.br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > MaxLine {
			return nil, fmt.Errorf("line longer than %d bytes", MaxLine)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// Writer writes messages; it is safe for concurrent use.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write sends one message.
func (w *Writer) Write(m Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	return nil
}

// Client is the host's end of a connection to one agent.
type Client struct {
	w      *Writer
	closer io.Closer

	msgs chan Message
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the read loop ends
	err  error         // why the read loop ended; valid after done

	closeOnce sync.Once

	mu     sync.Mutex
	nextID uint64
	log    []byte // tail of the guest's console output
}

// logLimit bounds the console tail kept for error messages.
const logLimit = 16 << 10

// NewClient starts reading from rwc. Close stops it.
func NewClient(rwc io.ReadWriteCloser) *Client {
	c := &Client{
		w:      NewWriter(rwc),
		closer: rwc,
		msgs:   make(chan Message, 16),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	r := NewReader(rwc)
	r.Other = c.appendLog
	go c.readLoop(r)
	return c
}

func (c *Client) readLoop(r *Reader) {
	defer close(c.done)
	for {
		m, err := r.Read()
		if err != nil {
			c.err = err
			return
		}
		select {
		case c.msgs <- m:
		case <-c.quit:
			return
		}
	}
}

func (c *Client) appendLog(line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, line...)
	c.log = append(c.log, '\n')
	if len(c.log) > logLimit {
		c.log = append([]byte(nil), c.log[len(c.log)-logLimit:]...)
	}
}

// Log returns the tail of what the guest printed that was not a message.
func (c *Client) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.log)
}

// Close closes the connection and waits for the read loop to end.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { close(c.quit) })
	err := c.closer.Close()
	<-c.done
	return err
}

// next waits for the next message.
func (c *Client) next(ctx context.Context) (Message, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	case <-c.done:
		// Drain what was read before the stream ended.
		select {
		case m := <-c.msgs:
			return m, nil
		default:
		}
		if c.err == nil || errors.Is(c.err, io.EOF) {
			return Message{}, errors.New("guest closed the connection")
		}
		return Message{}, fmt.Errorf("read from guest: %w", c.err)
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// WaitReady waits for the agent's Ready message.
func (c *Client) WaitReady(ctx context.Context) (Message, error) {
	for {
		m, err := c.next(ctx)
		if err != nil {
			return Message{}, fmt.Errorf("wait for agent ready: %w", err)
		}
		if m.Type == TypeReady {
			return m, nil
		}
	}
}

// Call sends req and waits for the reply with the same ID. An Error reply
// becomes an error; replies to earlier, abandoned calls are skipped.
func (c *Client) Call(ctx context.Context, req Message) (Message, error) {
	c.mu.Lock()
	c.nextID++
	req.ID = c.nextID
	c.mu.Unlock()
	if err := c.w.Write(req); err != nil {
		return Message{}, err
	}
	for {
		m, err := c.next(ctx)
		if err != nil {
			return Message{}, fmt.Errorf("%s: %w", req.Type, err)
		}
		if m.ID != req.ID {
			continue
		}
		switch m.Type {
		case TypeResult:
			return m, nil
		case TypeError:
			return m, fmt.Errorf("%s: agent: %s", req.Type, m.Error)
		default:
			return m, fmt.Errorf("%s: unexpected reply type %q", req.Type, m.Type)
		}
	}
}
