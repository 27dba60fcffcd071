// Package readahead turns kernel readahead off for one process's view of a
// file, without the process's cooperation.
//
// Readahead is a property of an open file description (struct file), not of
// the file: the kernel copies the device's read_ahead_kb into the struct
// file at open(2), and again on posix_fadvise(POSIX_FADV_NORMAL). A process
// that maps a file and never madvises it (a VMM mapping guest memory) keeps
// reading 2*read_ahead_kb around every fault. madvise cannot be applied
// from outside and process_madvise takes no MADV_RANDOM, so the window is
// changed where the kernel reads it: the device's value is set to 0 for the
// moment the struct file copies it, then put back.
package readahead

// knob is the queue attribute a window holds at 0.
const knob = "read_ahead_kb"
