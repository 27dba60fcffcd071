//go:build ignore

/*
 * Page-cache capture for snapbpf.
 *
 * One tracepoint does the work: mm_filemap_add_to_page_cache fires whenever
 * a folio enters a file's page cache, the moment a cold page is read for a
 * fault, a read() or readahead. Only the watched files pass the (device,
 * inode) lookup in the `files` map; their insertions go to user space
 * through the `events` ring buffer. A record that does not fit in the ring
 * buffer is counted, never dropped silently.
 *
 * Every program is a raw tracepoint: the kernel finds a raw tracepoint by
 * name through bpf(2), so attaching needs no tracefs or debugfs mount, and
 * the program reads the tracepoint's own arguments (the folio, not a
 * formatted record) with CO-RE. User space checks each tracepoint's
 * prototype in the kernel's BTF before attaching (internal/tracepoint).
 *
 * Two helpers make a recording trustworthy:
 *  - sys_exit, filtered to open, openat and openat2, reports when a process
 *    opens a watched file, with the readahead window its new struct file
 *    starts with, so user space can end a device-wide "no readahead" window
 *    as soon as the file is open, and fix a later open that got readahead
 *    (the per-syscall exit events are not raw tracepoints);
 *  - page_cache_ra_order counts readahead windows of more than one page on
 *    watched files: zero means the capture holds no readahead.
 *
 * Older kernels lack parts of this: the readahead tracepoint, and the folio
 * layout this program knows how to read an order from. The program checks
 * fields with CO-RE existence tests, so one object loads on every kernel
 * with BTF; an insertion whose order cannot be read is counted
 * (COUNTER_NO_ORDER) and taken as one page, and user space attaches only
 * the tracepoints that exist.
 *
 * Regenerate with `make generate` (see internal/capture/bpf.go).
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum event_kind {
	EVENT_INSERT = 1, /* a folio entered a watched file's page cache */
	EVENT_OPEN = 2,   /* a process opened a watched file */
};

struct event {
	__u64 time_ns;  /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 index;    /* EVENT_INSERT: first page of the folio; EVENT_OPEN: the fd */
	__u32 file;     /* the file's position in the watch list */
	__u32 pid;      /* thread-group id of the task that caused the event */
	__u32 ra_pages; /* EVENT_OPEN: the new struct file's readahead window */
	__u8 kind;      /* enum event_kind */
	__u8 order;     /* EVENT_INSERT: the folio holds 2^order pages */
	__u8 pad[2];
};

struct file_key {
	__u64 ino;
	__u32 dev; /* kernel dev_t of the superblock: major<<20 | minor */
	__u32 pad;
};

enum counter {
	COUNTER_LOST = 0,       /* records the ring buffer had no room for */
	COUNTER_RA_WINDOWS = 1, /* readahead windows > 1 page on watched files */
	COUNTER_RA_PAGES = 2,   /* pages those windows asked for */
	COUNTER_NO_ORDER = 3,   /* insertions the kernel reported without an order */
	COUNTER_MAX = 4,
};

/* Our own process: its opens of a watched file are not the workload's. */
const volatile __u32 ignore_tgid = 0;

/*
 * The open syscalls' numbers on this architecture, set by the loader; -1
 * where one does not exist (open on arm64).
 */
const volatile __s64 nr_open = -1;
const volatile __s64 nr_openat = -1;
const volatile __s64 nr_openat2 = -1;

/*
 * Insertions do not wake the reader, which polls, until this many bytes
 * wait in the ring: a wakeup per record (the default when the reader keeps
 * up) costs an irq_work and a context switch per page fault, measured as
 * tens of percent of fault time on a loaded two-core VM.
 */
const volatile __u64 wakeup_bytes = 1 << 20;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64); /* resized by the loader to the watch list */
	__type(key, struct file_key);
	__type(value, __u32);
} files SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24); /* resized by the loader */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Gives struct event a BTF type, which bpf2go turns into a Go type. */
const struct event *unused_event __attribute__((unused));

static __always_inline void count(__u32 which, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);

	if (v)
		*v += n; /* per-CPU slot: no other writer */
}

/*
 * folio_order returns the number of pages of folio as a power of two, as the
 * kernel's folio_order() computes it, or -1 where this kernel's struct folio
 * has no layout the program knows.
 */
static __always_inline int folio_order(struct folio *folio)
{
	struct folio___memdesc *fm = (void *)folio;
	unsigned long flags;

	if (!bpf_core_enum_value_exists(enum pageflags, PG_head))
		return -1;
	if (bpf_core_field_exists(fm->flags.f))
		flags = BPF_CORE_READ(fm, flags.f);
	else if (bpf_core_field_exists(folio->flags))
		flags = BPF_CORE_READ(folio, flags);
	else
		return -1;

	/*
	 * Only a large folio has a first tail page: test the head flag first,
	 * and never read the order fields of a single page, whose next struct
	 * page belongs to someone else.
	 */
	if (bpf_core_field_exists(folio->_folio_order)) {
		if (!(flags & (1UL << bpf_core_enum_value(enum pageflags, PG_head))))
			return 0;
		return BPF_CORE_READ(folio, _folio_order);
	}
	if (bpf_core_field_exists(folio->_flags_1)) {
		if (!(flags & (1UL << bpf_core_enum_value(enum pageflags, PG_head))))
			return 0;
		return BPF_CORE_READ(folio, _flags_1) & 0xff;
	}
	return -1;
}

SEC("raw_tp/mm_filemap_add_to_page_cache")
int BPF_PROG(on_add_to_page_cache, struct folio *folio)
{
	struct file_key key = {};
	struct inode *host;
	struct event *e;
	__u32 *file;
	int order;

	host = BPF_CORE_READ(folio, mapping, host);
	if (!host)
		return 0;
	key.ino = BPF_CORE_READ(host, i_ino);
	key.dev = BPF_CORE_READ(host, i_sb, s_dev);
	file = bpf_map_lookup_elem(&files, &key);
	if (!file)
		return 0;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_LOST, 1);
		return 0;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->index = BPF_CORE_READ(folio, index);
	e->file = *file;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ra_pages = 0;
	e->kind = EVENT_INSERT;
	order = folio_order(folio);
	if (order >= 0) {
		e->order = order;
	} else {
		e->order = 0;
		count(COUNTER_NO_ORDER, 1);
	}
	e->pad[0] = 0;
	e->pad[1] = 0;
	bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
				      BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	return 0;
}

/* Reports a successful open of a watched file; ret is the new fd. */
static __always_inline int on_open_exit(long ret)
{
	struct task_struct *task;
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;
	struct file_key key = {};
	struct event *e;
	__u32 *file;
	__u32 tgid;

	if (ret < 0)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == ignore_tgid)
		return 0;

	task = (struct task_struct *)bpf_get_current_task();
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || (unsigned long)ret >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[ret]) || !f)
		return 0;
	key.ino = BPF_CORE_READ(f, f_inode, i_ino);
	key.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);

	file = bpf_map_lookup_elem(&files, &key);
	if (!file)
		return 0;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_LOST, 1);
		return 0;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->index = ret;
	e->file = *file;
	e->pid = tgid;
	e->ra_pages = BPF_CORE_READ(f, f_ra.ra_pages);
	e->kind = EVENT_OPEN;
	e->order = 0;
	e->pad[0] = 0;
	e->pad[1] = 0;
	/* Wake the reader now: it may be holding a device-wide setting. */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}

/*
 * Every syscall's exit passes here; only the open family goes on. The
 * syscall number is in orig_ax on x86-64; elsewhere the loader leaves the
 * numbers at -1 and does not attach this program.
 */
SEC("raw_tp/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	long nr;

	if (!bpf_core_field_exists(regs->orig_ax))
		return 0;
	nr = BPF_CORE_READ(regs, orig_ax);
	if (nr != nr_openat && nr != nr_openat2 && nr != nr_open)
		return 0;
	return on_open_exit(ret);
}

SEC("raw_tp/page_cache_ra_order")
int BPF_PROG(on_ra_order, struct inode *inode, unsigned long index, struct file_ra_state *ra)
{
	struct file_key key = {};
	unsigned int size;

	key.ino = BPF_CORE_READ(inode, i_ino);
	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	size = BPF_CORE_READ(ra, size);
	if (size <= 1 || !bpf_map_lookup_elem(&files, &key))
		return 0;
	count(COUNTER_RA_WINDOWS, 1);
	count(COUNTER_RA_PAGES, size);
	return 0;
}
