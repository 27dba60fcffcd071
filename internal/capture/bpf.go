package capture

// The BPF program lives in bpf/capture.c. Regenerate the committed
// capture_bpfel.go and capture_bpfel.o after editing it (needs clang and
// llvm-strip; a plain `go build` does not):
//
//	go generate ./internal/capture/
//
// bpfel rather than a single architecture: the program only reads
// tracepoint records and CO-RE-relocated kernel fields, nothing
// architecture-specific such as pt_regs, so one object serves every
// little-endian machine.

//go:generate go tool bpf2go -tags linux -target bpfel -type event -type file_key capture ../../bpf/capture.c -- -I../../bpf/include -Wall -Werror -O2 -g
