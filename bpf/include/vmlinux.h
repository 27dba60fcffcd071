/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A trimmed vmlinux.h: only the kernel types the programs in bpf/ read, cut from
 *   bpftool btf dump file /sys/kernel/btf/vmlinux format c
 * Every struct is declared with preserve_access_index, so each field access
 * is a CO-RE relocation resolved against the running kernel's BTF at load
 * time: the layouts below need only the fields we use, with the kernel's
 * names; offsets, order and padding come from the kernel, not from here.
 * To add a type, copy its declaration from a fresh bpftool dump and delete
 * the fields the program does not touch.
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef short int __s16;
typedef short unsigned int __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long int __s64;
typedef long long unsigned int __u64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef u32 __kernel_dev_t;
typedef __kernel_dev_t dev_t;
typedef long long int __kernel_loff_t;
typedef __kernel_loff_t loff_t;
typedef int __kernel_pid_t;
typedef __kernel_pid_t pid_t;

enum pageflags {
	PG_head = 6, /* the value is relocated: it differs by kernel version and config */
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
	BPF_RB_CONS_POS = 2,
	BPF_RB_PROD_POS = 3,
};

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

/*
 * struct folio across kernel versions. Every kernel the programs support has
 * the page flags word and, in the first tail page of a large folio, the
 * folio's order; where they live changed:
 *  - up to 6.5 the order is its own byte, _folio_order;
 *  - from 6.6 it is the low byte of _flags_1;
 *  - from 6.18 the flags word is wrapped in memdesc_flags_t (folio___memdesc).
 * The program picks the layout the running kernel has with CO-RE existence
 * checks; a field a kernel lacks is never read there.
 */
struct address_space;

struct folio {
	long unsigned int flags;
	struct address_space *mapping;
	long unsigned int index;
	long unsigned int _flags_1;
	unsigned char _folio_order;
};

typedef struct {
	long unsigned int f;
} memdesc_flags_t;

struct folio___memdesc {
	memdesc_flags_t flags;
};

/* x86-64 names: user space attaches what reads them only there. */
struct pt_regs {
	long unsigned int orig_ax;
};

typedef struct pt_regs bpf_user_pt_regs_t;

/* The context of a perf_event program (majfault.c). */
struct bpf_perf_event_data {
	bpf_user_pt_regs_t regs;
	__u64 sample_period;
	__u64 addr;
};

struct super_block {
	dev_t s_dev;
};

struct inode {
	struct super_block *i_sb;
	long unsigned int i_ino;
};

struct address_space {
	struct inode *host;
};

struct file_ra_state {
	unsigned int size;
	unsigned int ra_pages;
};

struct file {
	struct inode *f_inode;
	struct file_ra_state f_ra;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct task_struct {
	pid_t tgid;
	struct files_struct *files;
};

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
