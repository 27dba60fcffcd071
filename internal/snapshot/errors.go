package snapshot

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is against an *Error.
var (
	// ErrMissing: a file the snapshot needs does not exist.
	ErrMissing = errors.New("missing")
	// ErrTruncated: a file is shorter (or longer) than the manifest says.
	ErrTruncated = errors.New("size does not match manifest")
	// ErrCorrupt: a file exists with the right size but bad contents.
	ErrCorrupt = errors.New("corrupt")
	// ErrForeign: a file is not a snapbpf snapshot file at all.
	ErrForeign = errors.New("not a snapbpf snapshot file")
	// ErrNewerFormat: the snapshot was written by a newer snapbpf.
	ErrNewerFormat = errors.New("newer snapshot format")
	// ErrExists: the output path of a creation already exists.
	ErrExists = errors.New("already exists")
	// ErrNoSpace: the filesystem lacks the space a snapshot file needs.
	ErrNoSpace = errors.New("not enough free space")
	// ErrUnsafe: a file could have been changed by someone other than root
	// or the caller (owner, mode), or is a symbolic link.
	ErrUnsafe = errors.New("not safe to use")
)

// Error describes a problem with one file of a snapshot. Its message names
// the file, says what is wrong and how to fix it, so the CLI can print it as
// is.
type Error struct {
	Path    string // the offending file or directory
	Kind    error  // one of the Err* sentinels
	Problem string // what is wrong, in words
	Fix     string // what the user should do
	Err     error  // underlying error, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Path, e.Problem)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

// Unwrap lets errors.Is match both the sentinel Kind and the underlying
// error (e.g. fs.ErrNotExist).
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}
