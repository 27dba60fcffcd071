// Command snapbpf builds function microVM snapshots and restores them fast:
// it records which pages of a snapshot's memory file a function touches and
// prefetches them into the page cache on later restores.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	setDefaultLogger = slog.SetDefault
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted; everything started was stopped")
		}
		fmt.Fprintf(os.Stderr, "snapbpf: %v\n", hint(err))
		os.Exit(1)
	}
}
