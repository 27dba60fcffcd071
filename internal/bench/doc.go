// Package bench runs snapbpf's evaluation on real microVMs and with the
// replay harness, and turns the raw runs into results.json, a Markdown
// report and plots.
//
// A bench is a list of cells, each one measurement keyed by experiment,
// function, policy, concurrency N and run number. Every finished cell is
// kept in DIR/results.json, which is rewritten atomically after each cell,
// so an interrupted bench resumes by skipping the cells already there.
//
// The experiments follow the SnapBPF paper's figures (see Experiments),
// measured with QEMU microVMs and, for the same figures at native speed,
// with the replay harness (package replay) on one first-touch trace per
// function (package trace) recorded on a real VM. REAP and FaaSnap need a
// VMM that hands guest memory to userfaultfd or maps it per region, so
// only the harness measures them, and figure 5 (fragmentation). Each run
// records its source (vm or replay) and every caption says which numbers
// come from the harness.
package bench
