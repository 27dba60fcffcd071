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
	"github.com/snapbpf/snapbpf/internal/progress"
	"github.com/snapbpf/snapbpf/internal/progress/terminal"
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

// output is where a command's diagnostics and progress go on stderr: on a
// terminal, a progress bar that the log's lines pass around; otherwise
// plain log lines for both.
func (f *logFlags) output(stderr io.Writer) (*slog.Logger, progress.Meter, error) {
	if terminal.IsTerminal(stderr) {
		t := terminal.NewTerminal(stderr)
		l, err := f.logger(t.Writer())
		return l, t, err
	}
	l, err := f.logger(stderr)
	return l, progress.Log(l), err
}

// setDefaultLogger makes the command's logger the process's default, for
// the few packages that log without being handed a logger. main sets it;
// tests, which run many commands in one process, leave it a no-op.
var setDefaultLogger = func(*slog.Logger) {}

type (
	loggerKey struct{}
	meterKey  struct{}
)

// logger is the command's diagnostics logger, built from the global flags
// before the command runs.
func logger(cmd *cobra.Command) *slog.Logger {
	if l, ok := cmd.Context().Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	// A command run without the root's pre-run hook (a test calling RunE).
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
}

// meter is where the command's long jobs show their progress.
func meter(cmd *cobra.Command) progress.Meter {
	if m, ok := cmd.Context().Value(meterKey{}).(progress.Meter); ok {
		return m
	}
	return progress.Log(logger(cmd))
}
