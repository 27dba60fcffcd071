// Package snapshot owns the on-disk layout of a snapbpf snapshot: a directory
// holding a manifest, the VMM's device state and the guest memory file.
//
//	DIR/manifest.json  Manifest: format version, ID, function, digests, VMM, sizes
//	DIR/state          device state written by the VMM (hashed in the manifest)
//	DIR/mem            guest memory file, usually sparse (size in the manifest)
//	DIR/<aux>          auxiliary files added later with AddFile, e.g. wset/NAME.ws
//
// A snapshot is created by Create, which makes a sibling temporary directory
// (OUT.tmp-<hex>) on the same filesystem; the VMM writes state and mem there,
// and Builder.Commit hashes and fsyncs them, writes the manifest and renames
// the directory into place. A crash at any point therefore leaves either no
// OUT (or the previous OUT) and a stale temporary directory, never a
// half-written snapshot; the next Create of the same OUT removes the stale
// temporary directory.
//
// Open validates a snapshot without reading guest memory: the memory file is
// only checked for presence and size, so that a cold restore stays cold.
// Every validation error is an *Error naming the offending file and the fix.
//
// Auxiliary files are not listed in the manifest, so that adding one never
// rewrites the manifest; their own format should embed Manifest.ID so that a
// file copied in from another snapshot is recognised as foreign.
package snapshot
