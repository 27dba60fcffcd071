package tracepoint

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Detach detaches every program in links, then flushes rd: in that order
// no program runs after the flush, so the Drain reading rd returns once it
// has handed over every record there will ever be.
func Detach(links []link.Link, rd *ringbuf.Reader) error {
	var errs []error
	for _, l := range links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	if err := rd.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("flush ring buffer: %w", err))
	}
	return errors.Join(errs...)
}

// Drain reads rd until someone flushes it (ringbuf.Reader.Flush, which a
// stop does after detaching its programs, so nothing queued is lost) or
// closes it, handing each record's bytes to handle. It polls every poll
// instead of waking per record: the programs wake the reader only when
// much is queued. handle must not keep the slice.
func Drain(rd *ringbuf.Reader, poll time.Duration, handle func(sample []byte)) error {
	var rec ringbuf.Record
	rd.SetDeadline(time.Now().Add(poll))
	for {
		err := rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			rd.SetDeadline(time.Now().Add(poll))
			continue
		}
		if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read ring buffer: %w", err)
		}
		handle(rec.RawSample)
	}
}
