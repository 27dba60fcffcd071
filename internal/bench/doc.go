// Package bench runs snapbpf's evaluation on real microVMs and turns the
// raw runs into results.json, a Markdown report and plots.
//
// A bench is a list of cells, each one measurement keyed by experiment,
// function, policy, concurrency N and run number. Every finished cell is
// kept in DIR/results.json, which is rewritten atomically after each cell,
// so an interrupted bench resumes by skipping the cells already there.
//
// The experiments follow the SnapBPF paper's figures, measured here with
// QEMU microVMs (see Experiments). REAP and FaaSnap need a VMM that hands
// guest memory to userfaultfd or maps it per region; they belong to the
// replay harness, which this package does not run yet, so their series are
// absent and every caption says so.
package bench
