package bus

import (
	"fmt"
	"log/slog"
	"sync/atomic"
)

// serverLogger hands the embedded server's log to slog: its notices (many
// at start and stop) at debug, its warnings at info (they are the normal
// course of a cluster forming: "Waiting for routing", "no meta leader
// yet"), its errors as such.
type serverLogger struct {
	l *slog.Logger
	// fatal is the last fatal error, why a start failed.
	fatal atomic.Pointer[string]
}

func (s *serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Warnf(format string, v ...any)   { s.l.Info(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Fatalf(format string, v ...any) {
	m := fmt.Sprintf(format, v...)
	s.fatal.Store(&m)
	s.l.Error(m)
}
func (s *serverLogger) Errorf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLogger) Tracef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
