//go:build ignore

/*
 * Major-fault counter for snapbpf (internal/majfault).
 *
 * Runs on the software perf event PAGE_FAULTS_MAJ, one event per CPU,
 * sampling every fault: the kernel gives the program the fault's address.
 * Faults of one process are counted by where they land: inside one address
 * range (a VMM's mapping of a snapshot's memory file) or elsewhere.
 *
 * A perf event is opened with perf_event_open(2) and the program attached
 * by ioctl: no tracefs or debugfs either.
 *
 * Regenerate with `make generate`.
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum slot {
	SLOT_INSIDE = 0,
	SLOT_OUTSIDE = 1,
	SLOT_MAX = 2,
};

/* Set by the loader: the process, and the range [range_start, range_end). */
const volatile __u32 target_tgid = 0;
const volatile __u64 range_start = 0;
const volatile __u64 range_end = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("perf_event")
int count_major_fault(struct bpf_perf_event_data *ctx)
{
	__u32 slot = SLOT_OUTSIDE;
	__u64 addr, *v;

	if (bpf_get_current_pid_tgid() >> 32 != target_tgid)
		return 0;
	/* CO-RE: the offset of addr follows the kernel's pt_regs. */
	addr = ctx->addr;
	if (addr >= range_start && addr < range_end)
		slot = SLOT_INSIDE;
	v = bpf_map_lookup_elem(&counts, &slot);
	if (v)
		__sync_fetch_and_add(v, 1); /* one slot, every CPU */
	return 0;
}
