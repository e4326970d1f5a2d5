// SPDX-License-Identifier: GPL-2.0
/*
 * HyperPS: the C half of hyperps.ko.
 *
 * The policy and all hook logic are in Rust (the backend in rust/verifier, the
 * entry points in glue.rs).  This file holds what the 6.12 Rust abstractions
 * lack: a raw spinlock taken with IRQs off, page allocation with a gfp, host
 * register and MSR reads, the lockless walk of a VMM's page tables, struct page
 * tests, INVEPT/INVVPID on all CPUs, the module parameter, debugfs, the trace
 * event and rate-limited logging.  The ops table and the SPTE atomics are
 * Rust's (glue.rs): rustc checks the table against <linux/hyperps.h>.
 */
#define pr_fmt(fmt) "hyperps: " fmt

#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/gfp.h>
#include <linux/hardirq.h>
#include <linux/hyperps.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/pgtable.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>

#include <asm/apic.h>
#include <asm/asm.h>
#include <asm/cpu_entry_area.h>
#include <asm/desc.h>
#include <asm/mmu_context.h>
#include <asm/msr.h>
#include <asm/processor.h>
#include <asm/tlbflush.h>

#define CREATE_TRACE_POINTS
#include "hps_trace.h"

#include "hps_glue.h"

/* All verifier state is behind this lock; hooks may run with IRQs off. */
static DEFINE_RAW_SPINLOCK(hps_lock);

unsigned long hps_c_lock(void)
{
	unsigned long flags;

	raw_spin_lock_irqsave(&hps_lock, flags);
	return flags;
}

void hps_c_unlock(unsigned long flags)
{
	raw_spin_unlock_irqrestore(&hps_lock, flags);
}

bool hps_c_in_nmi(void)
{
	return in_nmi();
}

/*
 * mode=enforce (the default) or mode=audit, chosen at load.  Once the backend is
 * registered the mode may only move from audit to enforce: nothing reachable
 * from outside may weaken enforcement again.
 */
static bool hps_enforce = true;
static bool hps_registered;

bool hps_c_enforce(void)
{
	return READ_ONCE(hps_enforce);
}

static int hps_mode_set(const char *val, const struct kernel_param *kp)
{
	if (sysfs_streq(val, "enforce")) {
		WRITE_ONCE(hps_enforce, true);
		return 0;
	}
	if (!sysfs_streq(val, "audit"))
		return -EINVAL;
	if (READ_ONCE(hps_registered)) {
		pr_warn_ratelimited("mode cannot go back to audit once enforcing\n");
		return READ_ONCE(hps_enforce) ? -EPERM : 0;
	}
	WRITE_ONCE(hps_enforce, false);
	return 0;
}

static int hps_mode_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", READ_ONCE(hps_enforce) ? "enforce" : "audit");
}

static const struct kernel_param_ops hps_mode_ops = {
	.set = hps_mode_set,
	.get = hps_mode_get,
};
module_param_cb(mode, &hps_mode_ops, NULL, 0644);
MODULE_PARM_DESC(mode, "enforce: refused writes are not performed; audit: logged, then allowed (at load only; audit may later become enforce, never the reverse)");

/*
 * The verifier's tables.  They live as long as the module, which a registered
 * backend is pinned for; they are freed only when module init fails.
 */
static void *hps_tables[32];
static size_t hps_table_sizes[32];
static unsigned int hps_nr_tables;

void *hps_c_vzalloc(size_t size)
{
	void *p;

	if (hps_nr_tables == ARRAY_SIZE(hps_tables))
		return NULL;
	p = vzalloc(size);
	if (p) {
		hps_table_sizes[hps_nr_tables] = size;
		hps_tables[hps_nr_tables++] = p;
	}
	return p;
}

unsigned int hps_c_table_count(void)
{
	return hps_nr_tables;
}

size_t hps_c_table_size(unsigned int i)
{
	return i < hps_nr_tables ? hps_table_sizes[i] : 0;
}

u64 hps_c_table_pfn(unsigned int i, size_t offset)
{
	return vmalloc_to_pfn(hps_tables[i] + offset);
}

void hps_c_free_tables(void)
{
	while (hps_nr_tables)
		vfree(hps_tables[--hps_nr_tables]);
}

u64 hps_c_pa(const void *p)
{
	return __pa(p);
}

void *hps_c_va(u64 pa)
{
	return __va(pa);
}

/* A paging-structure page filled with @init_value (which also scrubs it). */
void *hps_c_pt_page(gfp_t gfp, u64 init_value)
{
	void *pt = (void *)__get_free_page(gfp | (init_value ? 0 : __GFP_ZERO));

	if (pt && init_value)
		memset64(pt, init_value, PAGE_SIZE / sizeof(u64));
	return pt;
}

void hps_c_free_page(void *p)
{
	free_page((unsigned long)p);
}

unsigned int hps_c_cpu(void)
{
	return raw_smp_processor_id();
}

unsigned int hps_c_nr_cpus(void)
{
	return nr_cpu_ids;
}

/* max_pfn is not exported; on x86-64 high_memory is __va(max_pfn << PAGE_SHIFT). */
u64 hps_c_max_pfn(void)
{
	return (__pa((unsigned long)high_memory - 1) >> PAGE_SHIFT) + 1;
}

/* MAXPHYADDR as CPUID 0x80000008 reports it (KVM's kvm_host.maxphyaddr). */
u8 hps_c_phys_bits(void)
{
	if (boot_cpu_data.extended_cpuid_level >= 0x80000008)
		return cpuid_eax(0x80000008) & 0xff;
	return 36;
}

/* The CPU's CR4 itself, not the kernel's per-CPU copy of it. */
u64 hps_c_cr4(void)
{
	return __read_cr4();
}

u64 hps_c_zero_pfn(void)
{
	return page_to_pfn(ZERO_PAGE(0));
}

/*
 * kvm_intel's VM-exit entry point, the one value HOST_RIP may hold, from the
 * export table of kvm_intel (KVM patch 0031); 0 while kvm_intel is not
 * loaded.  kvm_intel loads after HyperPS and may come back at another
 * address, so this is looked up at every HOST_RIP write (once per vCPU).  An
 * export name is unique: the module loader refuses a second one.
 */
static u64 hps_vmx_vmexit(void)
{
	void *addr = __symbol_get("vmx_vmexit");

	if (!addr)
		return 0;
	/* The reference taken above keeps the export until this put. */
	__symbol_put("vmx_vmexit");
	return (unsigned long)addr;
}

/*
 * The value a host-state field must hold, read from this CPU: the registers
 * and MSRs themselves, the per-CPU addresses that are fixed since boot (the
 * TSS and the entry stack, which KVM computes the same way), and kvm_intel's
 * VM-exit entry point.
 */
u64 hps_c_host_value(u32 which)
{
	int cpu = raw_smp_processor_id();
	struct desc_ptr dt;
	u64 v = 0;
	u16 sel;

	switch (which) {
	case HPS_HOST_CR0:
		return native_read_cr0();
	case HPS_HOST_CR3:
		return __native_read_cr3() & ~X86_CR3_PCID_NOFLUSH;
	case HPS_HOST_CR4:
		return __read_cr4();
	case HPS_HOST_FS_SEL:
		savesegment(fs, sel);
		/* vmx_set_host_fs_gs() writes 0 for an LDT or RPL != 0 selector. */
		return sel & 7 ? 0 : sel;
	case HPS_HOST_GS_SEL:
		savesegment(gs, sel);
		return sel & 7 ? 0 : sel;
	case HPS_HOST_FS_BASE:
		rdmsrl(MSR_FS_BASE, v);
		return v;
	case HPS_HOST_GS_BASE:
		rdmsrl(MSR_GS_BASE, v);
		return v;
	case HPS_HOST_TR_BASE:
		return (unsigned long)&get_cpu_entry_area(cpu)->tss.x86_tss;
	case HPS_HOST_GDTR_BASE:
		native_store_gdt(&dt);
		return dt.address;
	case HPS_HOST_IDTR_BASE:
		store_idt(&dt);
		return dt.address;
	case HPS_HOST_SYSENTER_CS:
		rdmsrl(MSR_IA32_SYSENTER_CS, v);
		return (u32)v;
	case HPS_HOST_SYSENTER_ESP:
		return (unsigned long)(cpu_entry_stack(cpu) + 1);
	case HPS_HOST_SYSENTER_EIP:
		rdmsrl(MSR_IA32_SYSENTER_EIP, v);
		return v;
	case HPS_HOST_PAT:
		rdmsrl(MSR_IA32_CR_PAT, v);
		return v;
	case HPS_HOST_EFER:
		rdmsrl(MSR_EFER, v);
		return v;
	case HPS_HOST_PERF_GLOBAL_CTRL:
		if (rdmsrl_safe(MSR_CORE_PERF_GLOBAL_CTRL, &v))
			v = 0;
		return v;
	case HPS_HOST_PI_DEST:
		/* This CPU's APIC ID, in the format of a descriptor's NDST. */
		rdmsrl(MSR_IA32_APICBASE, v);
		if (v & X2APIC_ENABLE) {
			rdmsrl(APIC_BASE_MSR + (APIC_ID >> 4), v);
			return v;
		}
		return (native_apic_mem_read(APIC_ID) >> 16) & 0xff00;
	case HPS_HOST_RIP:
		return hps_vmx_vmexit();
	}
	return ~0ULL;
}

bool hps_c_rdmsr(u32 msr, u64 *val)
{
	return !rdmsrl_safe(msr, val);
}

/*
 * VMREAD of the current VMCS.  Fails (CF or ZF set) without a current VMCS
 * or for an unsupported field, and faults (#UD, fixed up) outside VMX
 * operation: the backend is never made to trust a value it did not read.
 */
bool hps_c_vmread(u32 field, u64 *val)
{
	unsigned long value = 0;
	u8 failed = 1;

	asm volatile("1: vmread %[field], %[value]\n\t"
		     "setna %[failed]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : [value] "+r" (value), [failed] "+q" (failed)
		     : [field] "r" ((unsigned long)field)
		     : "cc");
	*val = value;
	return !failed;
}

/* The VMM's address space is named by its address; keep it from being reused. */
unsigned long hps_c_current_mm(void)
{
	return (unsigned long)current->mm;
}

void hps_c_mm_grab(unsigned long mm)
{
	if (mm)
		mmgrab((struct mm_struct *)mm);
}

void hps_c_mm_drop(unsigned long mm)
{
	if (mm)
		mmdrop((struct mm_struct *)mm);
}

/*
 * What the current task maps at @hva.  A lockless walk like GUP-fast: IRQs are
 * off (the caller holds hps_lock), so the page tables of the current mm, which
 * this CPU has loaded, cannot be freed under the walk.
 */
bool hps_c_user_mapping(u64 hva, u64 *pfn, bool *writable, u32 *level)
{
	struct mm_struct *mm = current->mm;
	pgd_t *pgdp, pgd;
	p4d_t *p4dp, p4d;
	pud_t *pudp, pud;
	pmd_t *pmdp, pmd;
	pte_t *ptep, pte;

	lockdep_assert_irqs_disabled();
	if (!mm || hva >= TASK_SIZE_MAX)
		return false;

	pgdp = pgd_offset(mm, hva);
	pgd = READ_ONCE(*pgdp);
	if (!pgd_present(pgd))
		return false;
	p4dp = p4d_offset_lockless(pgdp, pgd, hva);
	p4d = READ_ONCE(*p4dp);
	if (!p4d_present(p4d))
		return false;
	pudp = pud_offset_lockless(p4dp, p4d, hva);
	pud = READ_ONCE(*pudp);
	if (!pud_present(pud))
		return false;
	if (pud_leaf(pud)) {
		*pfn = pud_pfn(pud) + ((hva & ~PUD_MASK) >> PAGE_SHIFT);
		*writable = pud_write(pud);
		*level = 3;
		return true;
	}
	pmdp = pmd_offset_lockless(pudp, pud, hva);
	pmd = pmdp_get_lockless(pmdp);
	if (!pmd_present(pmd))
		return false;
	if (pmd_leaf(pmd)) {
		*pfn = pmd_pfn(pmd) + ((hva & ~PMD_MASK) >> PAGE_SHIFT);
		*writable = pmd_write(pmd);
		*level = 2;
		return true;
	}
	if (pmd_bad(pmd))
		return false;
	/* No highmem on x86-64: the PTE table is in the direct map. */
	ptep = pte_offset_kernel(&pmd, hva);
	pte = ptep_get_lockless(ptep);
	/* Special mappings (PFN maps, device memory) are never guest memory. */
	if (!pte_present(pte) || pte_special(pte))
		return false;
	*pfn = pte_pfn(pte);
	*writable = pte_write(pte);
	*level = 1;
	return true;
}

/*
 * What the kernel uses a frame for.  A VM may only get process memory, and only
 * pages the kernel keeps for itself may become HyperPS pages.
 */
u32 hps_c_frame_kind(u64 pfn)
{
	struct folio *folio;
	struct page *page;

	if (!pfn_valid(pfn))
		return HPS_FRAME_UNUSABLE;
	page = pfn_to_page(pfn);
	if (PageReserved(page) || is_zero_pfn(pfn))
		return HPS_FRAME_UNUSABLE;
	folio = page_folio(page);
	if (!folio_ref_count(folio))
		return HPS_FRAME_UNUSABLE;
	if (hyperps_is_huge_zero_pfn(pfn))
		return HPS_FRAME_HUGE_ZERO;
	if (PageSlab(page) || PageTable(page))
		return HPS_FRAME_KERNEL;
	if (folio_test_anon(folio) || folio_test_hugetlb(folio) ||
	    READ_ONCE(folio->mapping) || page_mapped(page))
		return HPS_FRAME_USER;
	return HPS_FRAME_KERNEL;
}

/*
 * The free op runs with the folio's last reference gone (free_pages_prepare(),
 * free_huge_folio()); a caller that claims a free of a page still in use is
 * not believed.
 */
bool hps_c_frame_unreferenced(u64 pfn)
{
	return pfn_valid(pfn) && !folio_ref_count(page_folio(pfn_to_page(pfn)));
}

bool hps_c_frames_equal(u64 a, u64 b)
{
	if (!pfn_valid(a) || !pfn_valid(b))
		return false;
	return !memcmp(pfn_to_kaddr(a), pfn_to_kaddr(b), PAGE_SIZE);
}

void hps_c_scrub(u64 pfn)
{
	if (pfn_valid(pfn))
		clear_page(pfn_to_kaddr(pfn));
}

bool hps_c_pgd_is_new(u64 pa, unsigned int nr_pages)
{
	return hyperps_pgd_is_new(pa, nr_pages);
}

bool hps_c_read_phys(u64 pa, u64 *val)
{
	if (!pfn_valid(PHYS_PFN(pa)) || !IS_ALIGNED(pa, sizeof(u64)))
		return false;
	*val = READ_ONCE(*(u64 *)__va(pa));
	return true;
}

/* The direct-map address of a RAM frame, or NULL. */
void *hps_c_frame_va(u64 pfn)
{
	return pfn_valid(pfn) ? pfn_to_kaddr(pfn) : NULL;
}

/*
 * The last HPS_RING refusals, lockless so that CR refusals can be recorded
 * from NMI; a reader racing with a writer may see a torn record.
 */
static struct hps_refusal hps_ring[HPS_RING];
static atomic64_t hps_ring_seq = ATOMIC64_INIT(0);

static const char * const hps_class_names[HPS_CLASSES] = {
	"vmcs", "ept", "eptp", "cr0", "cr3", "cr4", "ownership", "vmx",
	"registration",
};

static const char *hps_class_name(u32 class)
{
	return class < HPS_CLASSES ? hps_class_names[class] : "?";
}

void hps_c_report(u32 class, const char *reason, size_t len, u64 subject,
		  u64 old, u64 new, bool enforced)
{
	u64 seq = atomic64_inc_return(&hps_ring_seq);
	struct hps_refusal *r = &hps_ring[seq % HPS_RING];
	char why[HPS_REASON_LEN];

	len = min_t(size_t, len, HPS_REASON_LEN - 1);
	memcpy(why, reason, len);
	why[len] = '\0';

	r->seq = seq;
	r->class = class;
	r->subject = subject;
	r->old = old;
	r->new = new;
	r->enforced = enforced;
	strscpy(r->reason, why, HPS_REASON_LEN);

	trace_hyperps_refusal(class, why, subject, old, new, enforced);
	pr_warn_ratelimited("refused %s write: %s subject 0x%llx old 0x%llx new 0x%llx (%s)\n",
			    hps_class_name(class), why, subject, old, new,
			    enforced ? "enforced" : "audit, allowed");
}

void hps_c_kill_vm(struct kvm *kvm)
{
	hyperps_kill_vm(kvm);
}

/* INVVPID/INVEPT all-context; a CPU outside VMX operation (#UD) is skipped. */
static void hps_invvpid_one(void *unused)
{
	struct { u64 vpid, gva; } desc = { 0, 0 };

	asm volatile("1: invvpid %0, %1\n2:\n"
		     _ASM_EXTABLE(1b, 2b)
		     : : "m"(desc), "r"(2UL) : "cc", "memory");
}

static void hps_invept_one(void *unused)
{
	struct { u64 eptp, gpa; } desc = { 0, 0 };

	asm volatile("1: invept %0, %1\n2:\n"
		     _ASM_EXTABLE(1b, 2b)
		     : : "m"(desc), "r"(2UL) : "cc", "memory");
}

void hps_c_invvpid_all(void)
{
	on_each_cpu(hps_invvpid_one, NULL, 1);
}

void hps_c_invept_all(void)
{
	on_each_cpu(hps_invept_one, NULL, 1);
}

/* Deferred frees of paging-structure pages (they need a global INVEPT). */
static void hps_work_fn(struct work_struct *work)
{
	hps_rs_deferred_work();
}

static DECLARE_WORK(hps_work, hps_work_fn);

void hps_c_kick_work(void)
{
	schedule_work(&hps_work);
}

/*
 * Page-table roots CR3 may hold, one bit per frame: the CR3 hook runs on
 * every context switch and in NMI, so it tests a bit instead of taking the
 * verifier's lock.  Enforced only once registration has reported every root
 * that already existed.
 */
static unsigned long *hps_roots;
static u64 hps_roots_nbits;
static bool hps_roots_complete;

void hps_c_root_set(u64 pfn, unsigned int nr_pages, bool known)
{
	u64 end = pfn + nr_pages;

	for (; pfn < end && pfn < hps_roots_nbits; pfn++) {
		if (known)
			set_bit(pfn, hps_roots);
		else
			clear_bit(pfn, hps_roots);
	}
}

bool hps_c_cr3_root_known(u64 pfn)
{
	/* Pairs with the release in hps_c_register(). */
	if (!smp_load_acquire(&hps_roots_complete))
		return true;
	return pfn < hps_roots_nbits && test_bit(pfn, hps_roots);
}

int hps_c_register(void)
{
	u64 nbits = hps_c_max_pfn();
	int ret;

	/* Freed with the other tables if registration fails. */
	hps_roots = hps_c_vzalloc(BITS_TO_LONGS(nbits) * sizeof(unsigned long));
	if (!hps_roots)
		return -ENOMEM;
	hps_roots_nbits = nbits;

	ret = hyperps_register_ops(&hps_rs_ops);
	if (ret) {
		hps_roots_nbits = 0;
		hps_roots = NULL;
		return ret;
	}
	/* hyperps_register_ops() has reported every existing root by now. */
	smp_store_release(&hps_roots_complete, true);
	WRITE_ONCE(hps_registered, true);
	return 0;
}

/* debugfs: counters and the last refusals. */
static struct dentry *hps_dir;

static int hps_counters_show(struct seq_file *m, void *v)
{
	struct hps_stats *s = kzalloc(sizeof(*s), GFP_KERNEL);
	int i;

	if (!s)
		return -ENOMEM;
	hps_rs_stats(s);
	seq_printf(m, "mode %s\n", READ_ONCE(hps_enforce) ? "enforce" : "audit");
	for (i = 0; i < HPS_CLASSES; i++)
		seq_printf(m, "%-12s verified %llu refused %llu\n",
			   hps_class_names[i], s->verified[i], s->refused[i]);
	seq_printf(m, "anomalies %llu lost %llu deferred_frees %llu leaked_pages %llu live_vms %llu live_vcpus %llu noinstr_refused %lu\n",
		   s->anomalies, s->lost, s->deferred, s->leaked, s->vms,
		   s->vcpus, hyperps_noinstr_refusals());
	seq_printf(m, "frames host %llu vm %llu shared %llu protected %llu\n",
		   s->frames_host, s->frames_vm, s->frames_shared,
		   s->frames_protected);
	seq_printf(m, "ept_leaves_written 4k %llu 2m %llu 1g %llu\n",
		   s->leaf_writes[0], s->leaf_writes[1], s->leaf_writes[2]);
	seq_puts(m, "scrub_on_free yes\n");
	seq_printf(m, "seal_refused %lu\n", hyperps_seal_refusals());
	kfree(s);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hps_counters);

static int hps_refusals_show(struct seq_file *m, void *v)
{
	u64 last = atomic64_read(&hps_ring_seq);
	u64 seq = last > HPS_RING ? last - HPS_RING + 1 : 1;

	for (; seq <= last; seq++) {
		struct hps_refusal r = hps_ring[seq % HPS_RING];

		r.reason[HPS_REASON_LEN - 1] = '\0';
		seq_printf(m, "%llu %s %s subject 0x%llx old 0x%llx new 0x%llx %s\n",
			   r.seq, hps_class_name(r.class), r.reason, r.subject,
			   r.old, r.new, r.enforced ? "enforced" : "audit");
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hps_refusals);

#define HPS_VM_FRAMES_SHOWN	64

/*
 * The first frames that VMs own, with what the kernel says of them: once
 * every VM is gone and its VMM has exited, a frame listed here is one that
 * the page allocator never got back.
 */
static int hps_vm_frames_show(struct seq_file *m, void *v)
{
	struct hps_vm_frame *f = kcalloc(HPS_VM_FRAMES_SHOWN, sizeof(*f), GFP_KERNEL);
	u32 i, n;

	if (!f)
		return -ENOMEM;
	n = hps_rs_vm_frames(f, HPS_VM_FRAMES_SHOWN);
	for (i = 0; i < n; i++) {
		struct page *page = pfn_valid(f[i].pfn) ? pfn_to_page(f[i].pfn) : NULL;

		seq_printf(m, "pfn 0x%llx vm 0x%x %s maps %llu",
			   f[i].pfn, f[i].owner,
			   f[i].live ? "live" : "destroyed", f[i].maps);
		if (page)
			seq_printf(m, " refcount %d mapcount %d flags %pGp",
				   page_ref_count(page), folio_mapcount(page_folio(page)),
				   &page->flags);
		seq_putc(m, '\n');
	}
	kfree(f);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(hps_vm_frames);

int hps_c_init(void)
{
	pr_info("a VM's frames stay its own until the page allocator frees them; HyperPS scrubs them there\n");

	hps_dir = debugfs_create_dir("hyperps", NULL);
	debugfs_create_file("counters", 0400, hps_dir, NULL, &hps_counters_fops);
	debugfs_create_file("refusals", 0400, hps_dir, NULL, &hps_refusals_fops);
	debugfs_create_file("vm_frames", 0400, hps_dir, NULL, &hps_vm_frames_fops);
	return 0;
}

void hps_c_exit(void)
{
	debugfs_remove_recursive(hps_dir);
}
