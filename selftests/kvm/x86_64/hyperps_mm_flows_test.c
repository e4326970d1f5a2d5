// SPDX-License-Identifier: GPL-2.0
/*
 * hyperps_mm_flows_test: what a KVM host does to guest memory while its VMs
 * run, with the guests' data checked at every step.
 *
 * KSM merges identical pages of two VMs and a guest write unshares them; KSM
 * with use_zero_pages; THP-backed memory mapped with 2 MiB leaves, split by
 * dirty logging (eagerly, then lazily) and collapsed again; hugetlbfs-backed
 * memory; pages migrated to the other NUMA node with move_pages() and by
 * compaction; pages swapped out to zram and faulted back; MADV_DONTNEED under
 * a running VM; and a churn of VMs created and destroyed with KSM on.
 *
 * Every guest fills its pages with a pattern and checks it, and the host checks
 * the same bytes through its own mapping.  The test is plain KVM and runs
 * without HyperPS.  With hyperps.ko registered it also prints the frame census
 * (host, vm, shared, protected) before, during and after each flow, and checks
 * that no write was refused and that every frame is back with the host once
 * the flow's VMs are gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <linux/bitmap.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "kselftest.h"
#include "hyperps_counters.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT		21
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25
#endif
#define MPOL_MF_MOVE		BIT(1)

#define FLOW_SLOT		1
#define FLOW_GPA		0x40000000ULL	/* 1 GiB: 2 MiB aligned, clear of slot 0 */
#define FLOW_PAGES		64
#define HUGE_PAGES_4K		512
#define THP_PAGES		(2 * HUGE_PAGES_4K)
#define CHURN_PAGES		16
#define CHURN_VCPUS		2

#define KSM_DIR			"/sys/kernel/mm/ksm/"
#define ZRAM_DIR		"/sys/block/zram0/"
#define ZRAM_DEV		"/dev/zram0"
#define ZRAM_SIZE		(64ULL << 20)
#define NR_HUGEPAGES		"/proc/sys/vm/nr_hugepages"

enum guest_op { OP_FILL, OP_CHECK, OP_CHECK_ZERO };

/* What the guest does next; written by the host before each run. */
struct command {
	u64 op;
	u64 gpa;
	u64 pages;
	u64 seed;
};

static struct command cmd;

static u64 pattern(u64 seed, u64 gpa, u64 word)
{
	return (seed << 40) ^ (gpa + word * 8) ^ 0x5a5a000000000000ULL;
}

/* Reports the number of words that were not what the command expects. */
static void guest_code(void)
{
	for (;;) {
		u64 op = READ_ONCE(cmd.op), gpa = READ_ONCE(cmd.gpa);
		u64 pages = READ_ONCE(cmd.pages), seed = READ_ONCE(cmd.seed);
		u64 bad = 0, p, w;

		for (p = 0; p < pages; p++) {
			u64 page = gpa + p * PAGE_SIZE;
			u64 *words = (u64 *)page;

			for (w = 0; w < PAGE_SIZE / 8; w++) {
				u64 want = op == OP_CHECK_ZERO ? 0 : pattern(seed, page, w);

				if (op == OP_FILL)
					WRITE_ONCE(words[w], want);
				else if (READ_ONCE(words[w]) != want)
					bad++;
			}
		}
		GUEST_SYNC(bad);
	}
}

struct flow_vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[CHURN_VCPUS];
	int nr_vcpus;
	u64 pages;
	u8 *hva;
};

static int flow_vm_create(struct flow_vm *f, enum vm_mem_backing_src_type src, u64 pages,
			  int nr_vcpus)
{
	f->nr_vcpus = nr_vcpus;
	f->pages = pages;
	f->vm = vm_create_with_vcpus(nr_vcpus, guest_code, f->vcpus);
	vm_userspace_mem_region_add(f->vm, src, FLOW_GPA, FLOW_SLOT, pages, 0);
	virt_map(f->vm, FLOW_GPA, FLOW_GPA, pages);
	f->hva = addr_gpa2hva(f->vm, FLOW_GPA);
	return 0;
}

static void flow_vm_free(struct flow_vm *f)
{
	kvm_vm_free(f->vm);
	f->vm = NULL;
}

/* Runs vCPU @v through one command; returns the words it found wrong. */
static u64 guest_do(struct flow_vm *f, int v, enum guest_op op, u64 first, u64 pages, u64 seed)
{
	struct ucall uc;

	cmd = (struct command){ .op = op, .gpa = FLOW_GPA + first * PAGE_SIZE,
				.pages = pages, .seed = seed };
	sync_global_to_guest(f->vm, cmd);
	vcpu_run(f->vcpus[v]);
	switch (get_ucall(f->vcpus[v], &uc)) {
	case UCALL_SYNC:
		return uc.args[1];
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected exit %s", exit_reason_str(f->vcpus[v]->run->exit_reason));
	}
	return 0;
}

static u64 fill(struct flow_vm *f, u64 first, u64 pages, u64 seed)
{
	return guest_do(f, 0, OP_FILL, first, pages, seed);
}

static u64 check(struct flow_vm *f, u64 first, u64 pages, u64 seed)
{
	return guest_do(f, 0, OP_CHECK, first, pages, seed);
}

/* The host's view of the same pages; returns the words that are wrong. */
static u64 host_check(struct flow_vm *f, u64 first, u64 pages, u64 seed, bool zero)
{
	u64 bad = 0, p, w;

	for (p = first; p < first + pages; p++) {
		u64 *words = (u64 *)(f->hva + p * PAGE_SIZE);

		for (w = 0; w < PAGE_SIZE / 8; w++)
			if (words[w] != (zero ? 0 : pattern(seed, FLOW_GPA + p * PAGE_SIZE, w)))
				bad++;
	}
	return bad;
}

/* Guest and host agree that the pages hold @seed's pattern. */
static bool intact(struct flow_vm *f, u64 first, u64 pages, u64 seed)
{
	u64 guest = check(f, first, pages, seed), host = host_check(f, first, pages, seed, false);

	if (guest || host)
		ksft_print_msg("%llu wrong words in the guest, %llu in the host\n",
			       (unsigned long long)guest, (unsigned long long)host);
	return !guest && !host;
}

/* sysfs and procfs */

static bool read_u64(const char *path, u64 *val)
{
	FILE *f = fopen(path, "r");
	unsigned long long v;
	int n;

	if (!f)
		return false;
	n = fscanf(f, "%llu", &v);
	fclose(f);
	if (n == 1)
		*val = v;
	return n == 1;
}

static u64 value_of(const char *path)
{
	u64 v = 0;

	read_u64(path, &v);
	return v;
}

static bool write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val);
}

static bool write_u64(const char *path, u64 val)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)val);
	return write_str(path, buf);
}

static u64 vmstat_counter(const char *name)
{
	FILE *f = fopen("/proc/vmstat", "r");
	unsigned long long v;
	char key[64];
	u64 val = 0;

	if (!f)
		return 0;
	while (fscanf(f, "%63s %llu", key, &v) == 2)
		if (!strcmp(key, name)) {
			val = v;
			break;
		}
	fclose(f);
	return val;
}

/* HyperPS's frame census and refusal counters */

static struct hps_counters census_show(const char *flow, const char *when)
{
	struct hps_counters c = hps_counters_read();
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ksft_print_msg("%s %s at %ld.%01ld s\n", flow, when, (long)now.tv_sec,
		       now.tv_nsec / 100000000);

	if (c.present)
		ksft_print_msg("%s census %s: host %llu vm %llu shared %llu protected %llu\n",
			       flow, when, c.host, c.vm, c.shared, c.protected);
	if (c.present)
		ksft_print_msg("%s census %s: refused %llu, EPT leaves written 4k %llu 2m %llu\n",
			       flow, when, c.refused, c.leaves_4k, c.leaves_2m);
	return c;
}

static struct hps_counters baseline;

/* A flow that cannot run here skips its results, the census one included. */
static void skip_flow(const char *flow, int results, const char *why)
{
	int i;

	for (i = 0; i < results + baseline.present; i++)
		ksft_test_result_skip("%s: %s\n", flow, why);
}

static bool nothing_refused(struct hps_counters now)
{
	return !now.present ||
	       (now.refused == baseline.refused && now.anomalies == baseline.anomalies);
}

/*
 * Once a flow's VMs are gone, every frame they owned or shared is back with
 * the host.  Freed EPT pages wait for a global INVEPT from a work item, and
 * KSM pages for their last mapping to go, so give it a few seconds.
 */
static void flow_end(const char *flow, struct hps_counters start)
{
	struct hps_counters end = start;
	int i;

	if (!start.present)
		return;
	for (i = 0; i < 100; i++) {
		end = hps_counters_read();
		if (end.vm <= start.vm && end.shared <= start.shared &&
		    end.protected <= start.protected)
			break;
		usleep(100 * 1000);
	}
	census_show(flow, "after");
	ksft_test_result(nothing_refused(end) && end.vm <= start.vm &&
			 end.shared <= start.shared && end.protected <= start.protected,
			 "%s: nothing refused, every frame back with the host\n", flow);
}

/* KSM */

/* KSM's settings as the test found them, put back when it is done with KSM. */
static u64 ksm_saved[4];
static const char *const ksm_settings[4] = {
	KSM_DIR "run", KSM_DIR "sleep_millisecs", KSM_DIR "pages_to_scan",
	KSM_DIR "use_zero_pages",
};

static bool ksm_start(void)
{
	int i;

	for (i = 0; i < 4; i++)
		if (!read_u64(ksm_settings[i], &ksm_saved[i]))
			return false;
	return write_u64(KSM_DIR "sleep_millisecs", 0) &&
	       write_u64(KSM_DIR "pages_to_scan", 5000) &&
	       write_u64(KSM_DIR "run", 1);
}

static void ksm_stop(void)
{
	int i;

	for (i = 3; i >= 0; i--)
		write_u64(ksm_settings[i], ksm_saved[i]);
}

/*
 * Waits until KSM's counter @name has grown by @want, or has grown and then
 * stood still for 5 s; returns the growth.
 */
static u64 ksm_wait(const char *name, u64 before, u64 want)
{
	u64 now = before, last = before;
	int i, still = 0;
	char path[128];

	snprintf(path, sizeof(path), KSM_DIR "%s", name);
	for (i = 0; i < 600 && still < 50; i++) {
		now = value_of(path);
		if (now >= before + want)
			break;
		still = now > before && now == last ? still + 1 : 0;
		last = now;
		usleep(100 * 1000);
	}
	return now > before ? now - before : 0;
}

static void mergeable(struct flow_vm *f)
{
	TEST_ASSERT(!madvise(f->hva, f->pages * PAGE_SIZE, MADV_MERGEABLE),
		    "madvise(MADV_MERGEABLE): %s", strerror(errno));
}

static void flow_ksm(void)
{
	struct hps_counters start = census_show("ksm", "before"), during;
	struct flow_vm a, b;
	u64 shared, sharing0 = value_of(KSM_DIR "pages_sharing");
	u64 zero0 = value_of(KSM_DIR "ksm_zero_pages");
	bool ok;

	if (!ksm_start()) {
		skip_flow("ksm", 3, "no KSM (" KSM_DIR "run is not writable)");
		return;
	}
	flow_vm_create(&a, VM_MEM_SRC_ANONYMOUS, FLOW_PAGES, 1);
	flow_vm_create(&b, VM_MEM_SRC_ANONYMOUS, FLOW_PAGES, 1);
	/* The same bytes at the same guest addresses in both VMs. */
	fill(&a, 0, FLOW_PAGES, 1);
	fill(&b, 0, FLOW_PAGES, 1);
	mergeable(&a);
	mergeable(&b);
	shared = ksm_wait("pages_sharing", sharing0, FLOW_PAGES);
	during = census_show("ksm", "merged");
	ok = intact(&a, 0, FLOW_PAGES, 1) & intact(&b, 0, FLOW_PAGES, 1);
	ksft_print_msg("ksm: pages_sharing +%llu\n", (unsigned long long)shared);
	ksft_test_result(ok && shared >= FLOW_PAGES && nothing_refused(during) &&
			 (!during.present || during.shared >= start.shared + FLOW_PAGES),
			 "ksm: %d identical pages of two VMs merged, both guests read their data\n",
			 FLOW_PAGES);

	/* A write by one guest unshares its copy; the other keeps the old bytes. */
	fill(&a, 0, FLOW_PAGES / 2, 2);
	ok = intact(&a, 0, FLOW_PAGES / 2, 2) & intact(&a, FLOW_PAGES / 2, FLOW_PAGES / 2, 1) &
	     intact(&b, 0, FLOW_PAGES, 1);
	census_show("ksm", "unshared");
	ksft_test_result(ok && nothing_refused(hps_counters_read()),
			 "ksm: a guest write unshares (copy on write), both guests' data right\n");

	/* use_zero_pages: pages of zeroes merge with the zero page. */
	write_u64(KSM_DIR "use_zero_pages", 1);
	fill(&b, 0, FLOW_PAGES, 3);
	memset(b.hva, 0, FLOW_PAGES * PAGE_SIZE);
	shared = ksm_wait("ksm_zero_pages", zero0, FLOW_PAGES);
	census_show("ksm", "zero pages merged");
	ok = !guest_do(&b, 0, OP_CHECK_ZERO, 0, FLOW_PAGES, 0) &&
	     !host_check(&b, 0, FLOW_PAGES, 0, true);
	fill(&b, 0, FLOW_PAGES, 4);
	ok &= intact(&b, 0, FLOW_PAGES, 4);
	ksft_print_msg("ksm: ksm_zero_pages +%llu of %d\n", (unsigned long long)shared, FLOW_PAGES);
	ksft_test_result(ok && shared && nothing_refused(hps_counters_read()),
			 "ksm: use_zero_pages merges zeroed guest pages, a write takes them back\n");
	flow_vm_free(&a);
	flow_vm_free(&b);
	ksm_stop();
	flow_end("ksm", start);
}

/* THP and hugetlbfs */

#define EAGER_SPLIT		"/sys/module/kvm/parameters/eager_page_split"

/* A boolean module parameter as "Y" or "N". */
static const char *read_param(const char *path)
{
	char c = 'Y';
	FILE *f = fopen(path, "r");

	if (f) {
		if (fread(&c, 1, 1, f) != 1)
			c = 'Y';
		fclose(f);
	}
	return c == 'N' ? "N" : "Y";
}

static u64 stat_of(struct flow_vm *f, const char *name)
{
	return vm_get_stat(f->vm, name);
}

/*
 * A VM with a @src slot of 4 MiB fills it; true if KVM and HyperPS both
 * counted at least two 2 MiB leaves and the data is intact.
 */
static bool maps_huge(struct flow_vm *f, const char *flow, enum vm_mem_backing_src_type src,
		      u64 seed)
{
	struct hps_counters start = hps_counters_read(), during;
	u64 huge;
	bool ok;

	flow_vm_create(f, src, THP_PAGES, 1);
	fill(f, 0, THP_PAGES, seed);
	huge = stat_of(f, "pages_2m");
	during = census_show(flow, "mapped");
	ok = intact(f, 0, THP_PAGES, seed);
	ksft_print_msg("%s: %llu 2 MiB leaves, %llu 4 KiB leaves\n", flow,
		       (unsigned long long)huge, (unsigned long long)stat_of(f, "pages_4k"));
	return ok && huge >= 2 && nothing_refused(hps_counters_read()) &&
	       (!during.present || during.leaves_2m >= start.leaves_2m + 2);
}

static void flow_thp(void)
{
	struct hps_counters start = census_show("thp", "before");
	u64 huge, split, lazy, collapsed, dirty;
	const char *eager;
	struct flow_vm f;
	bool ok;

	ksft_test_result(maps_huge(&f, "thp", VM_MEM_SRC_ANONYMOUS_THP, 5),
			 "thp: guest memory mapped with 2 MiB leaves, data intact\n");
	huge = stat_of(&f, "pages_2m");

	/* Dirty logging splits them: eagerly when it is enabled ... */
	vm_mem_region_set_flags(f.vm, FLOW_SLOT, KVM_MEM_LOG_DIRTY_PAGES);
	split = stat_of(&f, "pages_2m");
	fill(&f, 0, THP_PAGES, 6);
	dirty = 0;
	{
		unsigned long *bmap = bitmap_zalloc(THP_PAGES);
		u64 i;

		kvm_vm_get_dirty_log(f.vm, FLOW_SLOT, bmap);
		for (i = 0; i < THP_PAGES; i++)
			dirty += test_bit(i, bmap);
		free(bmap);
	}
	ok = intact(&f, 0, THP_PAGES, 6);
	vm_mem_region_set_flags(f.vm, FLOW_SLOT, 0);
	/* ... and lazily, on write faults, without eager splitting. */
	eager = read_param(EAGER_SPLIT);
	write_str(EAGER_SPLIT, "N");
	check(&f, 0, THP_PAGES, 6);
	vm_mem_region_set_flags(f.vm, FLOW_SLOT, KVM_MEM_LOG_DIRTY_PAGES);
	fill(&f, 0, THP_PAGES, 7);
	lazy = stat_of(&f, "pages_2m");
	ok &= intact(&f, 0, THP_PAGES, 7);
	vm_mem_region_set_flags(f.vm, FLOW_SLOT, 0);
	write_str(EAGER_SPLIT, eager);
	census_show("thp", "split");
	ksft_print_msg("thp: 2 MiB leaves %llu, after eager split %llu, after lazy split %llu\n",
		       (unsigned long long)huge, (unsigned long long)split,
		       (unsigned long long)lazy);
	ksft_print_msg("thp: %llu pages dirty\n", (unsigned long long)dirty);
	ksft_test_result(ok && split < huge && lazy < huge && dirty == THP_PAGES &&
			 nothing_refused(hps_counters_read()),
			 "thp: dirty logging splits the leaves, eagerly and lazily, data intact\n");
	flow_vm_free(&f);

	/* Collapse: memory faulted in 4 KiB pages becomes one huge page (a copy). */
	flow_vm_create(&f, VM_MEM_SRC_ANONYMOUS_THP, THP_PAGES, 1);
	TEST_ASSERT(!madvise(f.hva, THP_PAGES * PAGE_SIZE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE");
	fill(&f, 0, THP_PAGES, 8);
	huge = stat_of(&f, "pages_2m");
	TEST_ASSERT(!madvise(f.hva, THP_PAGES * PAGE_SIZE, MADV_HUGEPAGE), "MADV_HUGEPAGE");
	if (madvise(f.hva, THP_PAGES * PAGE_SIZE, MADV_COLLAPSE)) {
		ksft_test_result_fail("thp: MADV_COLLAPSE: %s\n", strerror(errno));
	} else {
		ok = intact(&f, 0, THP_PAGES, 8);
		collapsed = stat_of(&f, "pages_2m");
		census_show("thp", "collapsed");
		ksft_print_msg("thp: 2 MiB leaves before collapse %llu, after %llu\n",
			       (unsigned long long)huge, (unsigned long long)collapsed);
		ksft_test_result(ok && huge == 0 && collapsed >= 2 &&
				 nothing_refused(hps_counters_read()),
				 "thp: 4 KiB pages collapsed into huge pages, mapped 2 MiB, data intact\n");
	}
	flow_vm_free(&f);
	flow_end("thp", start);
}

static void flow_hugetlb(void)
{
	struct hps_counters start;
	u64 saved, reserved;
	struct flow_vm f;

	/* kvm_util maps 2 MiB more than the slot, to align it. */
	if (!read_u64(NR_HUGEPAGES, &saved) || !write_u64(NR_HUGEPAGES, saved + 3))
		reserved = 0;
	else
		reserved = value_of(NR_HUGEPAGES);
	if (reserved < saved + 3) {
		write_u64(NR_HUGEPAGES, saved);
		skip_flow("hugetlb", 1, "could not reserve 3 huge pages");
		return;
	}
	start = census_show("hugetlb", "before");
	ksft_print_msg("hugetlb: %llu huge pages reserved\n", (unsigned long long)reserved);
	ksft_test_result(maps_huge(&f, "hugetlb", VM_MEM_SRC_ANONYMOUS_HUGETLB, 9),
			 "hugetlb: hugetlbfs memory mapped with 2 MiB leaves, data intact\n");
	flow_vm_free(&f);
	write_u64(NR_HUGEPAGES, saved);
	flow_end("hugetlb", start);
}

/* Migration and compaction */

static int nr_nodes(void)
{
	char path[64];
	int n = 0;

	for (;;) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", n);
		if (access(path, F_OK))
			return n;
		n++;
	}
}

static void flow_migrate(void)
{
	struct hps_counters start = census_show("migrate", "before");
	void *addrs[FLOW_PAGES];
	int nodes[FLOW_PAGES], status[FLOW_PAGES];
	u64 before, scanned, moved = 0, i;
	struct flow_vm f;
	bool ok;
	long r;

	flow_vm_create(&f, VM_MEM_SRC_ANONYMOUS, FLOW_PAGES, 1);
	fill(&f, 0, FLOW_PAGES, 10);
	if (nr_nodes() < 2) {
		ksft_test_result_skip("migrate: one NUMA node (boot with numa=fake=2)\n");
	} else {
		for (i = 0; i < FLOW_PAGES; i++)
			addrs[i] = f.hva + i * PAGE_SIZE;
		r = syscall(__NR_move_pages, 0, FLOW_PAGES, addrs, NULL, status, 0);
		TEST_ASSERT(!r, "move_pages(query): %s", strerror(errno));
		for (i = 0; i < FLOW_PAGES; i++)
			nodes[i] = status[i] == 0 ? 1 : 0;
		before = vmstat_counter("pgmigrate_success");
		r = syscall(__NR_move_pages, 0, FLOW_PAGES, addrs, nodes, status, MPOL_MF_MOVE);
		for (i = 0; i < FLOW_PAGES; i++)
			moved += status[i] == nodes[i];
		census_show("migrate", "moved");
		ok = !r && intact(&f, 0, FLOW_PAGES, 10);
		fill(&f, 0, FLOW_PAGES, 11);
		ok &= intact(&f, 0, FLOW_PAGES, 11);
		ksft_print_msg("migrate: %llu of %d pages moved, pgmigrate_success +%llu\n",
			       (unsigned long long)moved, FLOW_PAGES,
			       (unsigned long long)(vmstat_counter("pgmigrate_success") - before));
		ksft_test_result(ok && moved == FLOW_PAGES && nothing_refused(hps_counters_read()),
				 "migrate: move_pages() of a running VM's memory, data intact\n");
	}

	before = vmstat_counter("pgmigrate_success");
	scanned = vmstat_counter("compact_migrate_scanned");
	TEST_ASSERT(write_str("/proc/sys/vm/compact_memory", "1"), "compact_memory: %s",
		    strerror(errno));
	census_show("compact", "compacted");
	ok = intact(&f, 0, FLOW_PAGES, 11);
	fill(&f, 0, FLOW_PAGES, 12);
	ok &= intact(&f, 0, FLOW_PAGES, 12);
	ksft_print_msg("compact: pgmigrate_success +%llu, compact_migrate_scanned +%llu\n",
		       (unsigned long long)(vmstat_counter("pgmigrate_success") - before),
		       (unsigned long long)(vmstat_counter("compact_migrate_scanned") - scanned));
	ksft_test_result(ok && nothing_refused(hps_counters_read()),
			 "compact: compaction while a VM runs, data intact\n");
	flow_vm_free(&f);
	flow_end("migrate", start);
}

/* Swap */

/* mkswap: a version-1 header on the first page. */
static bool make_swap(const char *dev, u64 size)
{
	u32 header[PAGE_SIZE / 4] = {};
	int fd = open(dev, O_WRONLY);
	bool ok;

	if (fd < 0)
		return false;
	header[1024 / 4] = 1;				/* version */
	header[1024 / 4 + 1] = size / PAGE_SIZE - 1;	/* last_page */
	memcpy((char *)header + PAGE_SIZE - 10, "SWAPSPACE2", 10);
	ok = write(fd, header, sizeof(header)) == sizeof(header) && !fsync(fd);
	close(fd);
	return ok;
}

static bool swap_on(void)
{
	u64 size = 0;

	if (access(ZRAM_DIR "disksize", W_OK))
		return false;
	read_u64(ZRAM_DIR "disksize", &size);
	if (!size && !write_u64(ZRAM_DIR "disksize", ZRAM_SIZE))
		return false;
	if (access(ZRAM_DEV, F_OK))
		mknod(ZRAM_DEV, S_IFBLK | 0600, makedev(value_of("/sys/block/zram0/dev"), 0));
	return make_swap(ZRAM_DEV, size ? size : ZRAM_SIZE) &&
	       !syscall(__NR_swapon, ZRAM_DEV, 0);
}

static void swap_off(void)
{
	syscall(__NR_swapoff, ZRAM_DEV);
	write_str(ZRAM_DIR "reset", "1");
}

static void flow_swap(void)
{
	struct hps_counters start;
	u64 out, in;
	struct flow_vm f;
	bool ok;

	if (!swap_on()) {
		skip_flow("swap", 1, "no zram swap device (CONFIG_ZRAM, CONFIG_SWAP)");
		return;
	}
	start = census_show("swap", "before");
	flow_vm_create(&f, VM_MEM_SRC_ANONYMOUS, FLOW_PAGES, 1);
	fill(&f, 0, FLOW_PAGES, 13);
	out = vmstat_counter("pswpout");
	in = vmstat_counter("pswpin");
	TEST_ASSERT(!madvise(f.hva, FLOW_PAGES * PAGE_SIZE, MADV_PAGEOUT), "MADV_PAGEOUT: %s",
		    strerror(errno));
	out = vmstat_counter("pswpout") - out;
	census_show("swap", "paged out");
	ok = !check(&f, 0, FLOW_PAGES, 13);
	in = vmstat_counter("pswpin") - in;
	ok &= intact(&f, 0, FLOW_PAGES, 13);
	fill(&f, 0, FLOW_PAGES, 14);
	ok &= intact(&f, 0, FLOW_PAGES, 14);
	census_show("swap", "back in");
	ksft_print_msg("swap: pswpout +%llu, pswpin +%llu\n", (unsigned long long)out,
		       (unsigned long long)in);
	ksft_test_result(ok && out >= FLOW_PAGES && in >= FLOW_PAGES &&
			 nothing_refused(hps_counters_read()),
			 "swap: guest memory paged out to zram and faulted back, data intact\n");
	flow_vm_free(&f);
	swap_off();
	flow_end("swap", start);
}

/* MADV_DONTNEED, as a balloon driver's host side does it */

static void flow_dontneed(void)
{
	struct hps_counters start = census_show("dontneed", "before");
	u64 half = FLOW_PAGES / 2;
	struct flow_vm f;
	bool ok;

	flow_vm_create(&f, VM_MEM_SRC_ANONYMOUS, FLOW_PAGES, 1);
	fill(&f, 0, FLOW_PAGES, 15);
	TEST_ASSERT(!madvise(f.hva + half * PAGE_SIZE, half * PAGE_SIZE, MADV_DONTNEED),
		    "MADV_DONTNEED: %s", strerror(errno));
	census_show("dontneed", "dropped");
	ok = intact(&f, 0, half, 15) && !guest_do(&f, 0, OP_CHECK_ZERO, half, half, 0);
	fill(&f, half, half, 16);
	ok &= intact(&f, half, half, 16) & intact(&f, 0, half, 15);
	ksft_test_result(ok && nothing_refused(hps_counters_read()),
			 "dontneed: dropped guest pages re-fault as fresh zeroed pages\n");
	flow_vm_free(&f);
	flow_end("dontneed", start);
}

/* VM churn with KSM on */

static void flow_churn(int cycles)
{
	struct hps_counters start = census_show("churn", "before");
	bool ok = true, ksm = ksm_start();
	struct flow_vm f;
	int c, v;

	for (c = 0; c < cycles && ok; c++) {
		flow_vm_create(&f, VM_MEM_SRC_ANONYMOUS, CHURN_PAGES, CHURN_VCPUS);
		if (ksm)
			mergeable(&f);
		for (v = 0; v < CHURN_VCPUS; v++) {
			ok &= !guest_do(&f, v, OP_FILL, 0, CHURN_PAGES, 100 + c);
			ok &= !guest_do(&f, v, OP_CHECK, 0, CHURN_PAGES, 100 + c);
		}
		ok &= !host_check(&f, 0, CHURN_PAGES, 100 + c, false);
		flow_vm_free(&f);
	}
	if (ksm)
		ksm_stop();
	census_show("churn", "done");
	ksft_test_result(ok && nothing_refused(hps_counters_read()),
			 "churn: %d VMs of %d vCPUs created, run and destroyed%s\n",
			 c, CHURN_VCPUS, ksm ? " with KSM on" : "");
	flow_end("churn", start);
}

/*
 * The first VM after kvm_intel loads makes HyperPS protect KVM's global
 * VMREAD/VMWRITE bitmaps (shadow VMCS), which stay protected until kvm_intel
 * goes; one VM first puts them in the baseline.
 */
static void warm_up(void)
{
	struct flow_vm f;

	flow_vm_create(&f, VM_MEM_SRC_ANONYMOUS, 1, 1);
	fill(&f, 0, 1, 0);
	flow_vm_free(&f);
}

int main(int argc, char *argv[])
{
	int cycles = 100, opt;

	while ((opt = getopt(argc, argv, "c:")) != -1)
		if (opt == 'c')
			cycles = atoi(optarg);
	ksft_print_header();
	warm_up();
	baseline = hps_counters_read();
	/* ksm 3, thp 3, hugetlb 1, migrate 2, swap 1, dontneed 1, churn 1; one census each. */
	ksft_set_plan(12 + (baseline.present ? 7 : 0));

	flow_ksm();
	flow_thp();
	flow_hugetlb();
	flow_migrate();
	flow_swap();
	flow_dontneed();
	flow_churn(cycles);
	ksft_finished();
}
