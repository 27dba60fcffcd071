//go:build ignore

/*
 * Page-fault tracer for snapbpf (internal/record).
 *
 * Streams every page fault of one process, its address, error code and
 * time, to user space through the `faults` ring buffer, from the x86
 * exceptions tracepoints, which fire at the start of a fault:
 * page_fault_user (the process touched memory) and page_fault_kernel (a
 * syscall touched the process's memory). Both are raw tracepoints, attached
 * by name through bpf(2): no tracefs or debugfs, and the arguments come
 * from the tracepoint itself, not from a record whose offsets tracefs
 * would have to describe.
 *
 * Regenerate with `make generate`.
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum fault_kind {
	FAULT_USER = 1,   /* page_fault_user */
	FAULT_KERNEL = 2, /* page_fault_kernel */
};

struct fault {
	__u64 time_ns; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 addr;    /* the faulting address */
	__u64 code;    /* the x86 page fault error code */
	__u32 tid;     /* the faulting thread */
	__u32 kind;    /* enum fault_kind */
};

/* Set by the loader: the process whose faults are traced. */
const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 25); /* resized by the loader */
} faults SEC(".maps");

/* Records the ring buffer had no room for. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Gives struct fault a BTF type, which bpf2go turns into a Go type. */
const struct fault *unused_fault __attribute__((unused));

static __always_inline int record(__u64 addr, __u64 code, __u32 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct fault f;
	__u32 zero = 0;
	__u64 *n;

	if (id >> 32 != target_tgid)
		return 0;
	f.time_ns = bpf_ktime_get_ns();
	f.addr = addr;
	f.code = code;
	f.tid = (__u32)id;
	f.kind = kind;
	/* BPF_RB_NO_WAKEUP: the reader polls, so a fault never pays for waking it. */
	if (bpf_ringbuf_output(&faults, &f, sizeof(f), BPF_RB_NO_WAKEUP)) {
		n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return 0;
}

SEC("raw_tp/page_fault_user")
int BPF_PROG(on_page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	return record(address, error_code, FAULT_USER);
}

SEC("raw_tp/page_fault_kernel")
int BPF_PROG(on_page_fault_kernel, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	return record(address, error_code, FAULT_KERNEL);
}
