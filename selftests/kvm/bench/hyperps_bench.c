// SPDX-License-Identifier: GPL-2.0
/*
 * hyperps_bench: guest micro-benchmarks in the spirit of HyperBench, to
 * compare the cost of VM exits and EPT faults with and without HyperPS.
 *
 * One guest runs each benchmark and measures it with its own TSC:
 *
 *  empty    an empty loop, the control subtracted from the others
 *  vmcall   a hypercall KVM answers in the kernel (unknown number: -ENOSYS)
 *  cpuid    CPUID leaf 0, emulated by KVM
 *  pio      IN from the PIC's mask register, emulated in the kernel
 *  cold     first write to a fresh 4 KiB page: one EPT violation each
 *  hot      the same pages again, mapped now: no exit
 *  set_pt   the guest rewrites one of its own PTEs, INVLPG, reads through it
 *  cpu      a CPU-bound loop that exits by itself (CPUID) every 100000 steps
 *  apic_mode  the local APIC from xAPIC to x2APIC, off and back to xAPIC: three
 *           WRMSR exits per operation, each of which makes KVM rewrite the
 *           secondary controls and the MSR bitmap, security-critical state,
 *           before the next entry (the commit path)
 *
 * and two on the host, for the page allocator, whose free path HyperPS hooks:
 *
 *  page_4k  map, first touch and unmap of anonymous 4 KiB pages, per page
 *  page_2m  the same with 2 MiB transparent huge pages, per huge page
 *
 * measured with the host's TSC (no VM exit; exits_per_op is 0).
 *
 * Each benchmark runs REPEAT times; the median is reported in guest TSC
 * cycles per operation, after the empty loop's cost per iteration is taken
 * off.  If hyperps.ko is registered, the verifier calls it made during each
 * run (the verified and refused counters of every class) are reported per
 * operation too.  Output, one line per benchmark:
 *
 *   HPS-BENCH label=<label> name=<name> ops=<n> cycles_per_op=<c> \
 *             verifier_calls_per_op=<v> exits_per_op=<e> by_class=<class>:<v>,...
 *
 * by_class splits the verifier calls by the counter class (the hook) that made them.
 *
 * Usage: hyperps_bench [label]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "test_util.h"
#include "kselftest.h"

#define COUNTERS_FILE	"/sys/kernel/debug/hyperps/counters"

#define REPEAT		3
#define REGION_SLOT	1	/* slots 1..REPEAT: one fresh region per cold run */
#define REGION_GPA	0x40000000ULL
#define REGION_STRIDE	0x10000000ULL
#define REGION_PAGES	1024
#define WINDOW_GVA	0x7f000000ULL
#define PTE_PAGE_GVA	0x7f200000ULL
#define CPU_EXIT_EVERY	100000
#define BENCH_HYPERCALL	0x4850		/* no such hypercall: KVM returns -ENOSYS */
#define PIC_MASTER_IMR	0x21

enum bench_kind {
	B_EMPTY, B_VMCALL, B_CPUID, B_PIO, B_COLD, B_HOT, B_SET_PT, B_CPU, B_APIC_MODE,
	NR_BENCH
};

static const struct {
	const char *name;
	u64 iters;
} benches[NR_BENCH] = {
	[B_EMPTY]	= { "empty",	1000000 },
	[B_VMCALL]	= { "vmcall",	2000 },
	[B_CPUID]	= { "cpuid",	2000 },
	[B_PIO]		= { "pio",	2000 },
	[B_COLD]	= { "cold",	REGION_PAGES },
	[B_HOT]		= { "hot",	REGION_PAGES },
	[B_SET_PT]	= { "set_pt",	4096 },
	[B_CPU]		= { "cpu",	2000000 },
	[B_APIC_MODE]	= { "apic_mode", 1000 },
};

/* What the guest runs next; written by the host before each run. */
struct bench_cmd {
	u64 kind;
	u64 iters;
	u64 region;		/* GVA (= GPA) of the region for cold/hot/set_pt */
	u64 pte_gva;		/* where the guest sees the PTE that maps WINDOW_GVA */
	u64 pte_flags;		/* that PTE's flags, kept when it is rewritten */
};

static struct bench_cmd cmd;

static void guest_code(void)
{
	for (;;) {
		u64 kind = READ_ONCE(cmd.kind), n = READ_ONCE(cmd.iters);
		u64 region = READ_ONCE(cmd.region);
		u64 *pte = (u64 *)READ_ONCE(cmd.pte_gva);
		u64 flags = READ_ONCE(cmd.pte_flags);
		u64 start, end, i, x = 0x9e3779b97f4a7c15ULL, apic_base;
		u32 a, b, c, d;
		u8 v;

		start = rdtsc();
		switch (kind) {
		case B_EMPTY:
			for (i = 0; i < n; i++)
				asm volatile("" ::: "memory");
			break;
		case B_VMCALL:
			for (i = 0; i < n; i++)
				kvm_hypercall(BENCH_HYPERCALL, 0, 0, 0, 0);
			break;
		case B_CPUID:
			for (i = 0; i < n; i++)
				__cpuid(0, 0, &a, &b, &c, &d);
			break;
		case B_PIO:
			for (i = 0; i < n; i++)
				asm volatile("inb %1, %0" : "=a"(v) : "Nd"((u16)PIC_MASTER_IMR));
			break;
		case B_COLD:
		case B_HOT:
			for (i = 0; i < n; i++)
				WRITE_ONCE(*(u64 *)(region + i * PAGE_SIZE), i);
			break;
		case B_SET_PT:
			for (i = 0; i < n; i++) {
				WRITE_ONCE(*pte, (region + (i % REGION_PAGES) * PAGE_SIZE) | flags);
				asm volatile("invlpg (%0)" :: "r"(WINDOW_GVA) : "memory");
				x += READ_ONCE(*(u64 *)WINDOW_GVA);
			}
			break;
		case B_CPU:
			for (i = 0; i < n; i++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				if (i % CPU_EXIT_EVERY == 0)
					__cpuid(0, 0, &a, &b, &c, &d);
			}
			break;
		case B_APIC_MODE:
			/* x2APIC cannot go straight back to xAPIC: through off. */
			apic_base = rdmsr(MSR_IA32_APICBASE) &
				    ~(MSR_IA32_APICBASE_ENABLE | X2APIC_ENABLE);
			for (i = 0; i < n; i++) {
				wrmsr(MSR_IA32_APICBASE, apic_base |
				      MSR_IA32_APICBASE_ENABLE | X2APIC_ENABLE);
				wrmsr(MSR_IA32_APICBASE, apic_base);
				wrmsr(MSR_IA32_APICBASE, apic_base | MSR_IA32_APICBASE_ENABLE);
			}
			break;
		}
		end = rdtsc();
		GUEST_SYNC_ARGS(kind, end - start, n, x, 0);
	}
}

#define MAX_CLASSES	16

/* Verified plus refused calls per counter class; all 0 without hyperps. */
struct calls {
	int nr;
	char name[MAX_CLASSES][16];
	u64 count[MAX_CLASSES];
};

static struct calls verifier_calls(void)
{
	unsigned long long verified, refused;
	char line[256], name[16];
	struct calls c = {};
	FILE *f = fopen(COUNTERS_FILE, "r");

	if (!f)
		return c;
	while (fgets(line, sizeof(line), f) && c.nr < MAX_CLASSES)
		if (sscanf(line, "%15s verified %llu refused %llu", name, &verified,
			   &refused) == 3) {
			snprintf(c.name[c.nr], sizeof(c.name[c.nr]), "%s", name);
			c.count[c.nr++] = verified + refused;
		}
	fclose(f);
	return c;
}

static void calls_sub(struct calls *after, const struct calls *before)
{
	int i;

	for (i = 0; i < after->nr && i < before->nr; i++)
		after->count[i] -= before->count[i];
}

/* The vCPU's "exits" statistic, from its binary stats file. */
static int exits_fd = -1;
static struct kvm_stats_header exits_header;
static struct kvm_stats_desc *exits_desc;

static u64 vcpu_exits(struct kvm_vcpu *vcpu)
{
	struct kvm_stats_desc *descs, *desc;
	u64 exits;
	u32 i;

	if (exits_fd < 0) {
		exits_fd = vcpu_get_stats_fd(vcpu);
		read_stats_header(exits_fd, &exits_header);
		descs = read_stats_descriptors(exits_fd, &exits_header);
		for (i = 0; i < exits_header.num_desc; i++) {
			desc = get_stats_descriptor(descs, i, &exits_header);
			if (!strcmp(desc->name, "exits"))
				exits_desc = desc;
		}
		TEST_ASSERT(exits_desc, "no 'exits' vCPU statistic");
	}
	read_stat_data(exits_fd, &exits_header, exits_desc, &exits, 1);
	return exits;
}

struct result {
	u64 cycles, exits;
	struct calls calls;
};

static struct result run_one(struct kvm_vcpu *vcpu, enum bench_kind kind, u64 region)
{
	struct result r;
	struct ucall uc;
	struct calls calls;
	u64 exits;

	cmd.kind = kind;
	cmd.iters = benches[kind].iters;
	cmd.region = region;
	sync_global_to_guest(vcpu->vm, cmd);

	calls = verifier_calls();
	exits = vcpu_exits(vcpu);
	vcpu_run(vcpu);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_SYNC:
		break;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected exit %s", exit_reason_str(vcpu->run->exit_reason));
	}
	TEST_ASSERT(uc.args[1] == kind, "guest ran benchmark %lu, not %d", uc.args[1], kind);
	r.cycles = uc.args[2];
	/* The counters read and the ucall exit are outside the measured interval. */
	r.exits = vcpu_exits(vcpu) - exits - 1;
	r.calls = verifier_calls();
	calls_sub(&r.calls, &calls);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

static u64 median(u64 *v)
{
	qsort(v, REPEAT, sizeof(*v), cmp_u64);
	return v[REPEAT / 2];
}

/* One page_4k or page_2m run: the TSC cycles to map, touch and unmap @units pages. */
static u64 host_pages_once(size_t unit, u64 units)
{
	size_t len = unit * units;
	u8 *map, *mem;
	u64 start, i;

	start = rdtsc();
	map = mmap(NULL, len + unit, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(map != MAP_FAILED, "mmap");
	mem = (u8 *)(((unsigned long)map + unit - 1) & ~(unsigned long)(unit - 1));
	TEST_ASSERT(!madvise(mem, len, unit == PAGE_SIZE ? MADV_NOHUGEPAGE : MADV_HUGEPAGE),
		    "madvise");
	for (i = 0; i < units; i++)
		mem[i * unit] = 1;
	TEST_ASSERT(!munmap(map, len + unit), "munmap");
	return rdtsc() - start;
}

static void host_pages_bench(const char *label, const char *name, size_t unit, u64 units)
{
	u64 cycles[REPEAT], calls[REPEAT], by[REPEAT], total;
	struct calls before, after[REPEAT];
	int rep, c;

	for (rep = 0; rep < REPEAT; rep++) {
		before = verifier_calls();
		cycles[rep] = host_pages_once(unit, units);
		after[rep] = verifier_calls();
		calls_sub(&after[rep], &before);
		for (total = 0, c = 0; c < after[rep].nr; c++)
			total += after[rep].count[c];
		calls[rep] = total;
	}
	printf("HPS-BENCH label=%s name=%s ops=%lu", label, name, units);
	printf(" cycles_per_op=%.2f verifier_calls_per_op=%.3f exits_per_op=0.0000",
	       (double)median(cycles) / units, (double)median(calls) / units);
	printf(" by_class=");
	for (c = 0; c < after[0].nr; c++) {
		for (rep = 0; rep < REPEAT; rep++)
			by[rep] = after[rep].count[c];
		printf("%s%s:%.3f", c ? "," : "", after[0].name[c], (double)median(by) / units);
	}
	printf("\n");
	fflush(stdout);
}

int main(int argc, char *argv[])
{
	const char *label = argc > 1 ? argv[1] : "run";
	u64 cycles[REPEAT], calls[REPEAT], exits[REPEAT], total, by[REPEAT];
	double empty_per_iter = 0, per_op;
	struct result r[REPEAT];
	int c, nr_classes;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	u64 *pte, region;
	int k, rep;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	for (rep = 0; rep < REPEAT; rep++) {
		region = REGION_GPA + rep * REGION_STRIDE;
		vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, region,
					    REGION_SLOT + rep, REGION_PAGES, 0);
		virt_map(vm, region, region, REGION_PAGES);
	}
	/* set_pt: a window page whose PTE the guest can reach through PTE_PAGE_GVA. */
	virt_map(vm, WINDOW_GVA, REGION_GPA, 1);
	pte = vm_get_page_table_entry(vm, WINDOW_GVA);
	virt_map(vm, PTE_PAGE_GVA, addr_hva2gpa(vm, pte) & ~(u64)(PAGE_SIZE - 1), 1);
	cmd.pte_gva = PTE_PAGE_GVA + ((u64)pte & (PAGE_SIZE - 1));
	cmd.pte_flags = *pte & ((PAGE_SIZE - 1) | BIT_ULL(63));

	for (k = 0; k < NR_BENCH; k++) {
		for (rep = 0; rep < REPEAT; rep++) {
			/* cold needs fresh pages every time; hot reuses the first region. */
			region = REGION_GPA + (k == B_COLD ? rep * REGION_STRIDE : 0);
			r[rep] = run_one(vcpu, k, region);
			cycles[rep] = r[rep].cycles;
			exits[rep] = r[rep].exits;
			for (total = 0, c = 0; c < r[rep].calls.nr; c++)
				total += r[rep].calls.count[c];
			calls[rep] = total;
		}
		if (k == B_EMPTY) {
			empty_per_iter = (double)median(cycles) / benches[k].iters;
			per_op = empty_per_iter;
		} else {
			per_op = (double)median(cycles) / benches[k].iters - empty_per_iter;
		}
		/* One line per benchmark: scripts/perf-report.py reads it. */
		printf("HPS-BENCH label=%s name=%s ops=%lu", label, benches[k].name,
		       benches[k].iters);
		printf(" cycles_per_op=%.2f verifier_calls_per_op=%.3f exits_per_op=%.4f",
		       per_op, (double)median(calls) / benches[k].iters,
		       (double)median(exits) / benches[k].iters);
		printf(" by_class=");
		nr_classes = r[0].calls.nr;
		for (c = 0; c < nr_classes; c++) {
			for (rep = 0; rep < REPEAT; rep++)
				by[rep] = r[rep].calls.count[c];
			printf("%s%s:%.3f", c ? "," : "", r[0].calls.name[c],
			       (double)median(by) / benches[k].iters);
		}
		printf("\n");
		fflush(stdout);
	}
	kvm_vm_free(vm);
	host_pages_bench(label, "page_4k", PAGE_SIZE, 2048);
	host_pages_bench(label, "page_2m", 512 * PAGE_SIZE, 16);
	return 0;
}
