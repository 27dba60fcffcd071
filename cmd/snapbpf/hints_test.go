package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/snapbpf/snapbpf/internal/capture"
	"github.com/snapbpf/snapbpf/internal/policy"
	"github.com/snapbpf/snapbpf/internal/record"
)

func TestHint(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("load capture program: %w", capture.ErrNoPrivilege), "--method mincore"},
		{fmt.Errorf("record x: %w", record.ErrBusy), "--no-wait"},
		{fmt.Errorf("policy snapbpf: %w", policy.ErrNoWorkingSet), "snapbpf record"},
		{errors.New("something else"), ""},
	} {
		got := hint(tc.err)
		if !errors.Is(got, tc.err) {
			t.Errorf("hint(%v) = %v: does not wrap the error", tc.err, got)
		}
		if tc.want == "" && got.Error() != tc.err.Error() || !strings.Contains(got.Error(), tc.want) {
			t.Errorf("hint(%v) = %q, want it to name %q", tc.err, got, tc.want)
		}
	}
}
