package capture

// syscallNumbers are the open family's syscall numbers, which the
// sys_exit program filters on; -1 for one the architecture lacks.
type syscallNumbers struct {
	open, openat, openat2 int64
}

// known reports whether the numbers are known here: the sys_exit program
// reads the syscall number from pt_regs by its x86-64 name, so it is
// attached on amd64 only (see syscalls_amd64.go).
func (n syscallNumbers) known() bool { return n.openat >= 0 }
