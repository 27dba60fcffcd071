package tracepoint

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

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
