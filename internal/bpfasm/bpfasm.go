// Package bpfasm holds the instruction sequences that the BPF programs
// snapbpf assembles in Go (trace's fault tracer, majfault's counter)
// share.
package bpfasm

import "github.com/cilium/ebpf/asm"

// Increment adds one to the 64-bit value of array map mapFD at the key
// stored as a 32-bit word at FP+keyOff, jumping to label missing if the
// key is out of range. It clobbers R0-R5.
func Increment(mapFD int, keyOff int16, missing string) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(keyOff)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, missing),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
	}
}
