package main

import (
	"errors"
	"fmt"

	"github.com/snapbpf/snapbpf/internal/bench"
	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/funcvm"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/record"
)

// hints say, for errors the library reports by kind, which flag changes
// the outcome: the library knows the kind, only the CLI knows its flags.
var hints = []struct {
	err  error
	hint string
}{
	{capture.ErrNoPrivilege, "run as root, or use record --method mincore, which includes readahead"},
	{record.ErrBusy, "wait for it, or run without --no-wait to wait"},
	{funcvm.ErrGuestModules, "use --free-pages none to snapshot without"},
	{bench.ErrOtherResults, "use another --out"},
	{policy.ErrNoWorkingSet, "record one with snapbpf record --snapshot DIR, or check --ws"},
}

// hint adds to err the advice for the first kind of error it wraps.
func hint(err error) error {
	for _, h := range hints {
		if errors.Is(err, h.err) {
			return fmt.Errorf("%w; %s", err, h.hint)
		}
	}
	return err
}
