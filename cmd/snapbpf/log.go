package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/snapbpf/snapbpf/internal/logging"
)

// logFlags are the global flags that shape the diagnostics logger. The
// logger writes to stderr; a command's results (tables, --json) go to
// stdout and are not logs.
type logFlags struct {
	format, level string
	verbose       bool
}

func (f *logFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.format, "log-format", "text", "diagnostics on stderr as "+strings.Join(logging.Formats, " or ")+" (one JSON object a line)")
	fs.StringVar(&f.level, "log-level", "info", "least severe diagnostics shown: debug, info, warn or error")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "show debug diagnostics (--log-level debug)")
}

// logger is the logger the flags ask for, writing to w.
func (f *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	level, err := logging.ParseLevel(f.level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.level)
	}
	if f.verbose {
		if f.level != "info" && level != slog.LevelDebug {
			return nil, errors.New("--verbose and --log-level " + f.level + " disagree: give one of them")
		}
		level = slog.LevelDebug
	}
	l, err := logging.New(w, f.format, level)
	if err != nil {
		return nil, fmt.Errorf("--log-format %q: want %s", f.format, strings.Join(logging.Formats, " or "))
	}
	return l, nil
}

// setDefaultLogger makes the command's logger the process's default, for
// the few packages that log without being handed a logger. main sets it;
// tests, which run many commands in one process, leave it a no-op.
var setDefaultLogger = func(*slog.Logger) {}

type loggerKey struct{}

// logger is the command's diagnostics logger, built from the global flags
// before the command runs.
func logger(cmd *cobra.Command) *slog.Logger {
	if l, ok := cmd.Context().Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	// A command run without the root's pre-run hook (a test calling RunE).
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
}
