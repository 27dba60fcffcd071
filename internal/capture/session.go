package capture

import (
	"fmt"

	"github.com/snapbpf/snapbpf/internal/pagecache"
	"github.com/snapbpf/snapbpf/internal/pages"
)

// Session is a recording of one file in progress.
type Session interface {
	// Stop ends the recording and returns what it captured.
	Stop() (*Capture, error)
	// Close releases the session's resources; safe after Stop.
	Close() error
	// Attribute keeps only the pages the process pid and its descendants
	// bring in (see Recorder.Attribute); a no-op for mincore, whose
	// residency has no owner.
	Attribute(pid int)
}

// Watch starts recording which pages of file enter the page cache, by
// method (MethodEBPF or MethodMincore), for a workload the caller runs
// itself (a VMM it starts). The caller drops the file's cache first if it
// wants a cold recording; with eBPF the caller also keeps readahead off
// the workload's descriptor, or the capture includes it.
func Watch(file, method string) (Session, error) {
	switch method {
	case "", MethodEBPF:
		rec, err := NewRecorder([]string{file})
		if err != nil {
			return nil, err
		}
		if err := rec.Start(); err != nil {
			rec.Close()
			return nil, err
		}
		return rec, nil
	case MethodMincore:
		return startMincore(file)
	}
	return nil, fmt.Errorf("record: unknown method %q (want %s or %s)", method, MethodEBPF, MethodMincore)
}

// mincoreSession is FaaSnap's method: what is resident after the run.
type mincoreSession struct {
	file      string
	f         File
	cached    uint64
	dataStart []pages.Extent
}

func startMincore(file string) (*mincoreSession, error) {
	cached, err := pagecache.Drop(file)
	if err != nil {
		return nil, err
	}
	f, _, err := watchKey(file)
	if err != nil {
		return nil, err
	}
	dataStart, err := pages.Data(file)
	if err != nil {
		return nil, err
	}
	return &mincoreSession{file: file, f: f, cached: uint64(cached), dataStart: dataStart}, nil
}

func (s *mincoreSession) Stop() (*Capture, error) {
	runs, _, err := pagecache.SettledResident(s.file)
	if err != nil {
		return nil, err
	}
	dataNow, err := pages.Data(s.file)
	if err != nil {
		return nil, err
	}
	c := &Capture{
		Method:            MethodMincore,
		Files:             []File{s.f},
		ResidentAtStart:   s.cached,
		IncludesReadahead: true,
	}
	for _, r := range runs {
		c.Accesses = append(c.Accesses, runAccesses(r)...)
	}
	c.Accesses, c.HoleAccesses = clip(c.Accesses, pages.Intersect(s.dataStart, dataNow))
	c.HolePagesDropped = countPages(c.HoleAccesses)
	return c, nil
}

func (s *mincoreSession) Close() error { return nil }

func (s *mincoreSession) Attribute(int) {}

// runAccesses splits a run of pages into Accesses (NPages is 32-bit).
func runAccesses(r pages.Extent) []Access {
	var out []Access
	for p := r.Page; p < r.End(); {
		n := min(r.End()-p, 1<<30)
		out = append(out, Access{Page: p, NPages: uint32(n)})
		p += n
	}
	return out
}
