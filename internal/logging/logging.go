// Package logging owns the diagnostics logger: the nil-safe accessor every
// library uses and the handler the CLI builds from its flags.
//
// Diagnostics (what a command is doing, warnings, timings) go to a
// *slog.Logger; a command's results (tables, --json) are not logs and go to
// stdout.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// discard drops every record: what a library logs to when its caller gave
// it no logger.
var discard = slog.New(slog.DiscardHandler)

// Or returns l, or a logger that discards everything when l is nil, so
// library options can leave their logger unset.
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discard
	}
	return l
}

// Formats are the values New accepts for its format.
var Formats = []string{"text", "json"}

// ParseLevel reads a level name (debug, info, warn, error; case-insensitive).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// New returns a logger writing records at level and above to w, as
// key=value text or as one JSON object a line.
func New(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	o := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("log format %q: want %s", format, strings.Join(Formats, " or "))
}
