// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only module: plays a compromised host kernel.  It calls the hooked
 * functions and the HyperPS ops that KVM and the kernel call, and the kernel's
 * exported functions, with values and in an order of its choosing, to break
 * the isolation of a victim VM, take over the host through a VM, or switch
 * HyperPS off.  With hyperps.ko in enforce mode every attempt must be refused.
 * Never load it on a machine you care about: if HyperPS let a write through,
 * the module puts it back at once, but the host ran with it meanwhile.
 *
 * Control registers: each file under /sys/kernel/debug/hyperps_attack/
 * named cr* runs one attack when read and prints "refused" or "ALLOWED" with
 * the register before and after.
 *
 * VMs: writing
 *
 *	<attack> <attacker vm fd> <victim vm fd> <attacker gpa> <victim gpa>
 *	<victim hva> [<address>]
 *
 * to "vm" (fds of the writing process, both VMs with a vCPU 0 that has run
 * and touched the given guest-physical pages; <victim hva> is memory of the
 * victim's memslot that its guest has not touched) runs the attack; reading
 * "vm" returns "refused ...", "ALLOWED ..." or, for the MSR-list attacks that
 * the next VM entry decides, "armed ...".
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/hyperps.h>
#include <linux/jump_label.h>
#include <linux/kvm_host.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/task.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/static_call.h>
#include <linux/vmalloc.h>
#include <asm/asm.h>
#include <asm/msr-index.h>
#include <asm/pgalloc.h>
#include <asm/processor-flags.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>
#include <asm/vmx.h>

static struct dentry *attack_dir;

/* Control registers. */

static int cr0_wp_clear_show(struct seq_file *m, void *v)
{
	unsigned long before, after;

	preempt_disable();
	before = read_cr0();
	/* The exported primitive every CR0 write of the kernel ends in. */
	native_write_cr0(before & ~X86_CR0_WP);
	after = read_cr0();
	if (!(after & X86_CR0_WP))
		native_write_cr0(before);
	preempt_enable();

	seq_printf(m, "%s cr0 before 0x%lx after 0x%lx\n",
		   after & X86_CR0_WP ? "refused" : "ALLOWED", before, after);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cr0_wp_clear);

static int cr0_cd_set_show(struct seq_file *m, void *v)
{
	unsigned long before, after;

	preempt_disable();
	before = read_cr0();
	/* Caches off: the host crawls, and MTRR games become possible. */
	native_write_cr0(before | X86_CR0_CD);
	after = read_cr0();
	if (after & X86_CR0_CD)
		native_write_cr0(before);
	preempt_enable();

	seq_printf(m, "%s cr0 before 0x%lx after 0x%lx\n",
		   after & X86_CR0_CD ? "ALLOWED" : "refused", before, after);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cr0_cd_set);

/* Clear @bit of CR4 the way KVM changes CR4; report whether it stayed. */
static void cr4_clear_attack(struct seq_file *m, unsigned long bit,
			     const char *what)
{
	unsigned long before, after;
	unsigned long flags;

	local_irq_save(flags);
	before = __read_cr4();
	if (!(before & bit)) {
		local_irq_restore(flags);
		seq_printf(m, "skip: %s is not set on this CPU\n", what);
		return;
	}
	cr4_update_irqsoff(0, bit);
	after = __read_cr4();
	/* The shadow was updated before the refused write; put it back. */
	cr4_update_irqsoff(bit, 0);
	local_irq_restore(flags);

	seq_printf(m, "%s cr4 before 0x%lx after 0x%lx\n",
		   after & bit ? "refused" : "ALLOWED", before, after);
}

static int cr4_smep_clear_show(struct seq_file *m, void *v)
{
	cr4_clear_attack(m, X86_CR4_SMEP, "SMEP");
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cr4_smep_clear);

/* Only run in enforce mode: a CR3 with a PCID makes this write #GP. */
static int cr4_pcide_clear_show(struct seq_file *m, void *v)
{
	cr4_clear_attack(m, X86_CR4_PCIDE, "PCIDE");
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cr4_pcide_clear);

/* Only run in enforce mode: clearing VMXE in VMX operation is a #GP. */
static int cr4_vmxe_clear_show(struct seq_file *m, void *v)
{
	cr4_clear_attack(m, X86_CR4_VMXE, "VMXE");
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cr4_vmxe_clear);

static int cr3_unregistered_root_show(struct seq_file *m, void *v)
{
	unsigned long before, after, flags;
	pgd_t *copy;

	/* A faithful copy, so that the kernel would keep running if it loaded. */
	copy = (pgd_t *)__get_free_pages(GFP_KERNEL, PGD_ALLOCATION_ORDER);
	if (!copy)
		return -ENOMEM;

	local_irq_save(flags);
	before = __read_cr3();
	memcpy(copy, __va(before & CR3_ADDR_MASK), PAGE_SIZE << PGD_ALLOCATION_ORDER);
	/* The kernel's own CR3 write, with the current PCID. */
	write_cr3(__pa(copy) | (before & ~CR3_ADDR_MASK));
	after = __read_cr3();
	if (after != before)
		write_cr3(before);
	local_irq_restore(flags);
	free_pages((unsigned long)copy, PGD_ALLOCATION_ORDER);

	seq_printf(m, "%s cr3 wrote root 0x%llx before 0x%lx after 0x%lx\n",
		   after == before ? "refused" : "ALLOWED", (u64)__pa(copy),
		   before, after);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cr3_unregistered_root);

/* VM isolation attacks. */

#define ATTACK_SPTE_PRESENT	BIT_ULL(11)	/* KVM's SPTE_MMU_PRESENT_MASK */
#define ATTACK_SPTE_WRITABLE	BIT_ULL(1)
#define ATTACK_SPTE_LARGE	BIT_ULL(7)
#define ATTACK_SPTE_PFN		GENMASK_ULL(51, 12)
#define ATTACK_SPTE_NONPRESENT	BIT_ULL(63)	/* SHADOW_NONPRESENT_VALUE */
/* A read/execute 2 MiB leaf as KVM builds them: WB, IPAT, A, host-writable. */
#define ATTACK_SPTE_2M_RX	(ATTACK_SPTE_PRESENT | ATTACK_SPTE_LARGE | \
				 BIT_ULL(0) | BIT_ULL(2) | (6ULL << 3) | \
				 BIT_ULL(6) | BIT_ULL(8) | BIT_ULL(57))

static DEFINE_MUTEX(attack_vm_lock);
static char attack_vm_result[256];

struct attack_vm_args {
	struct kvm *attacker;
	struct kvm *victim;
	gpa_t attacker_gpa;
	gpa_t victim_gpa;
	unsigned long victim_hva;
	unsigned long address;
};

/* Where a VM exit, a syscall or a retargeted op would land. */
static noinline void attack_gadget(void)
{
	pr_emerg("the attack gadget was reached\n");
}

static int attack_allow_all(unsigned long field, unsigned long value)
{
	return 0;
}

#define result(fmt, ...) \
	scnprintf(attack_vm_result, sizeof(attack_vm_result), fmt, ##__VA_ARGS__)

static int attack_vmread(unsigned long field, unsigned long *value)
{
	bool fail;

	asm volatile("vmread %[field], %[value]" CC_SET(na)
		     : CC_OUT(na) (fail), [value] "=rm" (*value)
		     : [field] "r" (field) : "cc");
	return fail ? -EIO : 0;
}

static int attack_vmwrite(unsigned long field, unsigned long value)
{
	bool fail;

	asm volatile("vmwrite %[value], %[field]" CC_SET(na)
		     : CC_OUT(na) (fail)
		     : [field] "r" (field), [value] "rm" (value) : "cc");
	return fail ? -EIO : 0;
}

/*
 * As __vmcs_writel() with HyperPS: ask the hook, write only if allowed.
 * Returns 0 if the write was performed, 1 if the hook refused it.
 */
static int attack_hooked_vmwrite(unsigned long field, unsigned long value)
{
	if (hyperps_call(vmcs_write, field, value))
		return 1;
	return attack_vmwrite(field, value);
}

/* Runs @fn with vCPU 0 of @kvm loaded on this CPU, as KVM's ioctls load it. */
static int attack_on_vcpu(struct kvm *kvm, int (*fn)(void *), void *arg)
{
	struct kvm_vcpu *vcpu = kvm_get_vcpu(kvm, 0);
	int ret;

	if (!vcpu)
		return -ENOENT;
	ret = mutex_lock_killable(&vcpu->mutex);
	if (ret)
		return ret;
	vcpu_load(vcpu);
	preempt_disable();
	ret = fn(arg);
	preempt_enable();
	vcpu_put(vcpu);
	mutex_unlock(&vcpu->mutex);
	return ret;
}

struct vmcs_read {
	unsigned long field;
	unsigned long value;
};

static int attack_vmread_fn(void *arg)
{
	struct vmcs_read *r = arg;

	return attack_vmread(r->field, &r->value);
}

/* A field of vCPU 0's VMCS of @kvm. */
static int attack_vcpu_field(struct kvm *kvm, unsigned long field,
			     unsigned long *value)
{
	struct vmcs_read r = { .field = field };
	int ret = attack_on_vcpu(kvm, attack_vmread_fn, &r);

	*value = r.value;
	return ret;
}

static int attack_vmptrst_fn(void *arg)
{
	u64 *pa = arg;

	asm volatile("vmptrst %0" : "=m" (*pa) : : "cc");
	return 0;
}

/* The physical address of vCPU 0's vmcs01 of @kvm. */
static int attack_vcpu_vmcs(struct kvm *kvm, u64 *pa)
{
	return attack_on_vcpu(kvm, attack_vmptrst_fn, pa);
}

struct vmcs_attack {
	const char *name;
	unsigned long field;
	unsigned long set;
	unsigned long clear;
	hpa_t root;
	struct kvm *kvm;
};

static int attack_vmcs_fn(void *arg)
{
	struct vmcs_attack *a = arg;
	unsigned long before, after, value;
	int refused, ret;

	ret = attack_vmread(a->field, &before);
	if (ret)
		return ret;
	value = a->clear ? (before & ~a->clear) | a->set : a->set;
	refused = 0;
	/* vmx_load_mmu_pgd(): the EPT pointer op comes before the VMWRITE. */
	if (a->field == EPT_POINTER &&
	    hyperps_call(ept_load, a->kvm, kvm_get_vcpu(a->kvm, 0), a->root,
			 value))
		refused = 1;
	if (!refused)
		refused = attack_hooked_vmwrite(a->field, value);
	if (refused < 0)
		return refused;
	ret = attack_vmread(a->field, &after);
	if (ret)
		return ret;
	/* If HyperPS let it through, undo it before the vCPU runs again. */
	if (after != before)
		attack_vmwrite(a->field, before);
	result("%s %s field 0x%lx wrote 0x%lx before 0x%lx after 0x%lx\n",
	       refused && after == before ? "refused" : "ALLOWED", a->name,
	       a->field, value, before, after);
	return 0;
}

/*
 * Writes @set to @field of vCPU 0's VMCS of @kvm (or, if @clear, the current
 * value with the bits of @clear replaced by @set).
 */
static int attack_vmcs_field(struct kvm *kvm, const char *name,
			     unsigned long field, unsigned long set,
			     unsigned long clear, hpa_t root)
{
	struct vmcs_attack a = {
		.name = name, .field = field, .set = set, .clear = clear,
		.root = root, .kvm = kvm,
	};

	return attack_on_vcpu(kvm, attack_vmcs_fn, &a);
}

/* The current EPT root of vCPU 0 of @kvm, or INVALID_PAGE. */
static hpa_t attack_ept_root(struct kvm *kvm, int *root_level)
{
	struct kvm_vcpu *vcpu = kvm_get_vcpu(kvm, 0);

	if (!vcpu)
		return INVALID_PAGE;
	*root_level = vcpu->arch.mmu->root_role.level;
	return vcpu->arch.mmu->root.hpa;
}

/*
 * The entry that maps @gpa in @kvm's EPT at @want_level (0: the leaf, at
 * whatever level); under RCU and mmu_lock.
 */
static u64 *attack_find_entry(struct kvm *kvm, gpa_t gpa, int want_level,
			      int *found_level)
{
	int level, root_level = 0;
	hpa_t root = attack_ept_root(kvm, &root_level);
	u64 *table, *sptep, spte;

	if (!VALID_PAGE(root) || root_level < 1 || root_level > 5)
		return NULL;
	table = __va(root);
	for (level = root_level; level >= 1; level--) {
		sptep = &table[(gpa >> (PAGE_SHIFT + 9 * (level - 1))) & 511];
		spte = READ_ONCE(*sptep);
		if (level == want_level) {
			*found_level = level;
			return sptep;
		}
		if (!(spte & ATTACK_SPTE_PRESENT))
			return NULL;
		if (level == 1 || (spte & ATTACK_SPTE_LARGE)) {
			if (want_level)
				return NULL;
			*found_level = level;
			return sptep;
		}
		table = __va(spte & ATTACK_SPTE_PFN);
	}
	return NULL;
}

/*
 * Writes @new_spte over the attacker's entry for its gpa at @level (0: its
 * 4 KiB leaf) through the hooked SPTE exchange, as the TDP MMU's
 * tdp_mmu_set_spte_atomic() would, and puts it back if it went through.
 */
static int attack_spte_value(struct attack_vm_args *a, const char *name,
			     int want_level, u64 (*make)(u64 before, u64 arg),
			     u64 arg)
{
	u64 *sptep, before, after, new_spte;
	gfn_t gfn = a->attacker_gpa >> PAGE_SHIFT;
	int level = 0;
	int ret = 0;

	write_lock(&a->attacker->mmu_lock);
	rcu_read_lock();
	sptep = attack_find_entry(a->attacker, a->attacker_gpa, want_level,
				  &level);
	if (!sptep || (!want_level && level != PG_LEVEL_4K)) {
		ret = -ENOENT;
		goto out;
	}
	before = READ_ONCE(*sptep);
	if (!want_level && !(before & ATTACK_SPTE_PRESENT)) {
		ret = -ENOENT;
		goto out;
	}
	new_spte = make(before, arg);
	hyperps_call(spte_xchg, sptep, new_spte, level,
		     gfn & ~(KVM_PAGES_PER_HPAGE(level) - 1));
	after = READ_ONCE(*sptep);
	/*
	 * Audit mode let it through without recording it: put the old value
	 * back behind HyperPS's back, so that its records stay as they were.
	 */
	if (after != before)
		xchg(sptep, before);
	result("%s %s spte at 0x%llx level %d wrote 0x%llx before 0x%llx after 0x%llx\n",
	       after == before ? "refused" : "ALLOWED", name, (u64)__pa(sptep),
	       level, new_spte, before, after);
out:
	rcu_read_unlock();
	write_unlock(&a->attacker->mmu_lock);
	return ret;
}

static u64 make_retarget(u64 before, u64 pfn)
{
	return (before & ~ATTACK_SPTE_PFN) | (pfn << PAGE_SHIFT);
}

static u64 make_2m_leaf(u64 before, u64 pfn)
{
	return ATTACK_SPTE_2M_RX | ((pfn & ~511ULL) << PAGE_SHIFT);
}

/* Points the attacker's 4 KiB leaf for its gpa at @target_pfn. */
static int attack_spte(struct attack_vm_args *a, const char *name,
		       u64 target_pfn)
{
	return attack_spte_value(a, name, 0, make_retarget, target_pfn);
}

/* The frame that backs @gpa in @kvm, as its EPT maps it. */
static int attack_mapped_pfn(struct kvm *kvm, gpa_t gpa, u64 *pfn)
{
	int level = 0;
	u64 *sptep;
	int ret = 0;

	read_lock(&kvm->mmu_lock);
	rcu_read_lock();
	sptep = attack_find_entry(kvm, gpa, 0, &level);
	if (sptep && level == PG_LEVEL_4K &&
	    (READ_ONCE(*sptep) & ATTACK_SPTE_PRESENT))
		*pfn = (READ_ONCE(*sptep) & ATTACK_SPTE_PFN) >> PAGE_SHIFT;
	else
		ret = -ENOENT;
	rcu_read_unlock();
	read_unlock(&kvm->mmu_lock);
	return ret;
}

/* The EPT table (level 1) that holds @kvm's leaf for @gpa. */
static int attack_leaf_table(struct kvm *kvm, gpa_t gpa, u64 *pfn)
{
	int level = 0;
	u64 *sptep;
	int ret = 0;

	read_lock(&kvm->mmu_lock);
	rcu_read_lock();
	sptep = attack_find_entry(kvm, gpa, 1, &level);
	if (sptep)
		*pfn = __pa(sptep) >> PAGE_SHIFT;
	else
		ret = -ENOENT;
	rcu_read_unlock();
	read_unlock(&kvm->mmu_lock);
	return ret;
}

/* Zaps the victim's 4 KiB leaf, as KVM does every day; returns its frame. */
static int attack_zap_victim_leaf(struct attack_vm_args *a, u64 *pfn)
{
	gfn_t gfn = a->victim_gpa >> PAGE_SHIFT;
	u64 *sptep, old;
	int level = 0;

	write_lock(&a->victim->mmu_lock);
	rcu_read_lock();
	sptep = attack_find_entry(a->victim, a->victim_gpa, 0, &level);
	if (!sptep || level != PG_LEVEL_4K ||
	    !(READ_ONCE(*sptep) & ATTACK_SPTE_PRESENT)) {
		rcu_read_unlock();
		write_unlock(&a->victim->mmu_lock);
		return -ENOENT;
	}
	old = hyperps_call(spte_xchg, sptep, ATTACK_SPTE_NONPRESENT, level, gfn);
	rcu_read_unlock();
	write_unlock(&a->victim->mmu_lock);
	/* The victim's next access faults the frame back in. */
	kvm_flush_remote_tlbs(a->victim);
	*pfn = (old & ATTACK_SPTE_PFN) >> PAGE_SHIFT;
	return 0;
}

/* Class 1: then maps the frame the zapped leaf named into the attacker. */
static int attack_zap_then_map(struct attack_vm_args *a, const char *name)
{
	u64 pfn;
	int ret = attack_zap_victim_leaf(a, &pfn);

	return ret ? ret : attack_spte(a, name, pfn);
}

/*
 * Class 1: then reports the frame freed, while the victim's VMM still has the
 * page: scrubbed and handed back, it could go to the next VM, and the victim's
 * data would be gone.  The page allocator's op is built in and not exported:
 * @a->address is its static-call trampoline, __SCT__hyperps_op_free_pages,
 * found in /proc/kallsyms, which is where a ROP chain would call it too.
 */
static int attack_zap_then_free(struct attack_vm_args *a, const char *name)
{
	int (*free_op)(unsigned long pfn, unsigned int order);
	u64 pfn;
	int ret;

	if (!a->address)
		return -EINVAL;
	free_op = (void *)a->address;
	ret = attack_zap_victim_leaf(a, &pfn);
	if (ret)
		return ret;
	ret = free_op(pfn, 0);
	result("%s %s free op for pfn 0x%llx\n", ret ? "refused" : "ALLOWED",
	       name, pfn);
	return 0;
}

/*
 * KSM: reports a merge of the attacker's frame into the victim's, as
 * replace_page() would just before it makes both mappings name the victim's
 * frame.  The op is built in and not exported: @a->address is its static-call
 * trampoline, __SCT__hyperps_op_ksm_merge, from /proc/kallsyms.  With
 * @same_bytes the attacker's page first gets the victim's bytes, so only the
 * victim's writable EPT leaf stands in the way.
 */
static int attack_ksm_merge(struct attack_vm_args *a, const char *name,
			    bool same_bytes)
{
	int (*merge_op)(struct mm_struct *mm, unsigned long addr,
			unsigned long pfn, unsigned long kpfn);
	void *saved = NULL;
	u64 pfn, kpfn;
	int ret, r;

	if (!a->address)
		return -EINVAL;
	merge_op = (void *)a->address;
	ret = attack_mapped_pfn(a->attacker, a->attacker_gpa, &pfn);
	if (!ret)
		ret = attack_mapped_pfn(a->victim, a->victim_gpa, &kpfn);
	if (ret)
		return ret;
	if (same_bytes) {
		saved = (void *)__get_free_page(GFP_KERNEL);
		if (!saved)
			return -ENOMEM;
		copy_page(saved, pfn_to_kaddr(pfn));
		copy_page(pfn_to_kaddr(pfn), pfn_to_kaddr(kpfn));
	}
	r = merge_op(current->mm, a->victim_hva, pfn, kpfn);
	if (saved) {
		/* The attacker's guest checks its own memory afterwards. */
		copy_page(pfn_to_kaddr(pfn), saved);
		free_page((unsigned long)saved);
	}
	result("%s %s ksm_merge(pfn 0x%llx into 0x%llx, %s bytes) returned %d\n",
	       r ? "refused" : "ALLOWED", name, pfn, kpfn,
	       same_bytes ? "same" : "different", r);
	return 0;
}

static u64 make_readonly_retarget(u64 before, u64 pfn)
{
	return make_retarget(before, pfn) & ~ATTACK_SPTE_WRITABLE;
}

/* Writes through the SPTE hook into a kernel page that is no EPT table. */
static int attack_spte_outside_ept(struct attack_vm_args *a, const char *name)
{
	u64 pfn, *fake, after;
	int ret;

	ret = attack_mapped_pfn(a->attacker, a->attacker_gpa, &pfn);
	if (ret)
		return ret;
	fake = kzalloc(sizeof(*fake), GFP_KERNEL);
	if (!fake)
		return -ENOMEM;
	hyperps_call(spte_xchg, fake, ATTACK_SPTE_PRESENT | 7 | (6 << 3) |
		     (pfn << PAGE_SHIFT), 1, a->attacker_gpa >> PAGE_SHIFT);
	after = READ_ONCE(*fake);
	kfree(fake);
	result("%s %s wrote into a slab word, which now holds 0x%llx\n",
	       after ? "ALLOWED" : "refused", name, after);
	return 0;
}

/* Class 4, the ops KVM calls with physical addresses and handles. */
static int attack_guest_page(struct attack_vm_args *a, const char *name,
			     u64 pfn)
{
	int r = hyperps_call(guest_page, a->attacker,
			     a->attacker_gpa >> PAGE_SHIFT, pfn);

	result("%s %s guest_page(0x%llx) returned %d\n",
	       r ? "refused" : "ALLOWED", name, pfn, r);
	return 0;
}

/* pt_free() of a page that is no paging-structure page of HyperPS's. */
static int attack_pt_free(struct attack_vm_args *a, const char *name,
			  struct page *page)
{
	int before = page_ref_count(page), after;

	/* If HyperPS let it go, the page allocator has it now: keep a ref. */
	get_page(page);
	hyperps_call(pt_free, page_address(page));
	after = page_ref_count(page);
	put_page(page);
	result("%s %s page 0x%llx refcount %d -> %d\n",
	       after == before + 1 ? "refused" : "ALLOWED", name,
	       (u64)page_to_pfn(page), before + 1, after);
	return 0;
}

static int attack_vcpu_create(struct attack_vm_args *a, const char *name,
			      u64 vmcs_pa)
{
	struct kvm_vcpu *fake;
	struct hyperps_vcpu_info info;
	int r;

	fake = kzalloc(sizeof(*fake), GFP_KERNEL);
	if (!fake)
		return -ENOMEM;
	info = (struct hyperps_vcpu_info) {
		.kvm = a->attacker,
		.vcpu = fake,
		.vcpu_id = 99,
		.vmcs01_pa = vmcs_pa,
	};
	r = hyperps_call(vcpu_create, &info);
	/* If it was accepted, take it back as KVM would. */
	if (!r)
		hyperps_call(vcpu_free, a->attacker, fake);
	kfree(fake);
	result("%s %s vmcs01 0x%llx returned %d\n",
	       r ? "refused" : "ALLOWED", name, vmcs_pa, r);
	return 0;
}

static int attack_page_free(struct attack_vm_args *a, const char *name,
			    u32 type, u64 pa)
{
	int keep = hyperps_call(page_free, type, pa);

	result("%s %s page_free(0x%llx) returned %d\n",
	       keep ? "refused" : "ALLOWED", name, pa, keep);
	return 0;
}

static int attack_vm_destroy(struct attack_vm_args *a, const char *name)
{
	u64 root_before, root_after;
	int level = 0;

	root_before = attack_ept_root(a->victim, &level);
	hyperps_call(vm_destroy, a->victim);
	root_after = attack_ept_root(a->victim, &level);
	/* The op has no verdict: the refusal log tells, and the victim runs on. */
	result("called %s vm_destroy of the victim (root 0x%llx -> 0x%llx)\n",
	       name, root_before, root_after);
	return 0;
}

/* The victim's vmcs01, for an attack from another process. */
static int attack_victim_vmcs(struct attack_vm_args *a, const char *name)
{
	u64 pa = 0;
	int ret = attack_vcpu_vmcs(a->victim, &pa);

	if (!ret)
		result("vmcs 0x%llx\n", pa);
	return ret;
}

/*
 * From a process that is not the victim's VMM: only the op, without the
 * instruction (KVM would stop the victim for a refused VMPTRLD of its own).
 */
static int attack_vmptrld_elsewhere(struct attack_vm_args *a, const char *name)
{
	int r;

	if (!a->address || a->address & ~PAGE_MASK)
		return -EINVAL;
	r = hyperps_call(vmcs_load, a->address);
	result("%s %s vmcs_load(0x%lx) returned %d\n",
	       r ? "refused" : "ALLOWED", name, a->address, r);
	return 0;
}

static int attack_memslot_elsewhere(struct attack_vm_args *a, const char *name)
{
	struct hyperps_memslot slot = {
		.id = 7, .base_gfn = 0x100000, .npages = 16,
		.userspace_addr = a->victim_hva & PAGE_MASK,
	};
	int r = hyperps_call(memslot_add, a->victim, &slot);

	if (!r)
		hyperps_call(memslot_remove, a->victim, &slot);
	result("%s %s memslot_add returned %d\n", r ? "refused" : "ALLOWED",
	       name, r);
	return 0;
}

/* Teardown of the victim's vCPU and memslot, from a process not its VMM. */
static int attack_teardown_elsewhere(struct attack_vm_args *a, const char *name,
				     bool memslot)
{
	struct hyperps_memslot slot = {
		.id = 1, .base_gfn = a->victim_gpa >> PAGE_SHIFT, .npages = 32,
		.userspace_addr = a->victim_hva,
	};

	if (memslot)
		hyperps_call(memslot_remove, a->victim, &slot);
	else
		hyperps_call(vcpu_free, a->victim, kvm_get_vcpu(a->victim, 0));
	/* The ops have no verdict: the refusal log tells. */
	result("called %s\n", name);
	return 0;
}

/* Class 5: entries in the MSR lists the CPU loads at VM entry and exit. */
struct msr_list_attack {
	unsigned long addr_field;
	unsigned long count_field;
	u32 msr;
	u64 value;
	bool disarm;
};

static int attack_msr_list_fn(void *arg)
{
	struct msr_list_attack *l = arg;
	unsigned long pa;
	struct vmx_msr_entry *e;
	int ret;

	ret = attack_vmread(l->addr_field, &pa);
	if (ret)
		return ret;
	e = __va(pa);
	if (l->disarm) {
		attack_vmwrite(VM_EXIT_MSR_LOAD_COUNT, 0);
		attack_vmwrite(VM_ENTRY_MSR_LOAD_COUNT, 0);
		memset(e, 0, sizeof(*e));
		return 0;
	}
	/* Plain stores, as add_atomic_switch_msr() does. */
	e->index = l->msr;
	e->reserved = 0;
	e->value = l->value;
	return attack_hooked_vmwrite(l->count_field, 1) ? -EPERM : 0;
}

static int attack_msr_list(struct attack_vm_args *a, const char *name,
			   bool exit_list, u32 msr, u64 value)
{
	struct msr_list_attack l = {
		.addr_field = exit_list ? VM_EXIT_MSR_LOAD_ADDR :
					  VM_ENTRY_MSR_LOAD_ADDR,
		.count_field = exit_list ? VM_EXIT_MSR_LOAD_COUNT :
					   VM_ENTRY_MSR_LOAD_COUNT,
		.msr = msr, .value = value,
	};
	int ret = attack_on_vcpu(a->attacker, attack_msr_list_fn, &l);

	if (!ret)
		result("armed %s %s list entry msr 0x%x value 0x%llx\n", name,
		       exit_list ? "VM-exit" : "VM-entry", msr, value);
	return ret;
}

/*
 * Lets the guest write @msr (one of 0xc0000000-0xc0001fff) directly, or stops
 * it, with a plain store into the MSR bitmap as
 * vmx_disable_intercept_for_msr() makes it.
 */
struct msr_bitmap_attack {
	u32 msr;
	bool pass;
};

static int attack_msr_bitmap_fn(void *arg)
{
	struct msr_bitmap_attack *b = arg;
	unsigned long pa, *write_high;
	int ret;

	ret = attack_vmread(MSR_BITMAP, &pa);
	if (ret)
		return ret;
	write_high = __va(pa + 0xc00);
	if (b->pass)
		__clear_bit(b->msr & 0x1fff, write_high);
	else
		__set_bit(b->msr & 0x1fff, write_high);
	return 0;
}

static int attack_msr_bitmap(struct attack_vm_args *a, const char *name,
			     u32 msr)
{
	struct msr_bitmap_attack b = { .msr = msr, .pass = true };
	int ret = attack_on_vcpu(a->attacker, attack_msr_bitmap_fn, &b);

	if (!ret)
		result("armed %s MSR bitmap passes writes of msr 0x%x through\n",
		       name, msr);
	return ret;
}

/*
 * The guest's EFER without NX loaded at entry, and the exit told not to load
 * the host's back: each VMWRITE is legal alone, the pair leaves the host with
 * NX off after the exit.
 */
static int attack_efer_fn(void *arg)
{
	unsigned long entry, exit;
	u64 efer;
	int ret;

	ret = attack_vmread(VM_ENTRY_CONTROLS, &entry);
	if (!ret)
		ret = attack_vmread(VM_EXIT_CONTROLS, &exit);
	if (ret)
		return ret;
	rdmsrl(MSR_EFER, efer);
	if (attack_hooked_vmwrite(GUEST_IA32_EFER, efer & ~EFER_NX) ||
	    attack_hooked_vmwrite(VM_EXIT_CONTROLS,
				  exit & ~VM_EXIT_LOAD_IA32_EFER) ||
	    attack_hooked_vmwrite(VM_ENTRY_CONTROLS,
				  entry | VM_ENTRY_LOAD_IA32_EFER))
		return -EPERM;
	return 0;
}

static int attack_efer(struct attack_vm_args *a, const char *name)
{
	int ret = attack_on_vcpu(a->attacker, attack_efer_fn, NULL);

	if (!ret)
		result("armed %s guest EFER without NX, host EFER not reloaded\n",
		       name);
	return ret;
}

static int attack_msr_disarm(struct attack_vm_args *a, const char *name)
{
	struct msr_list_attack l = {
		.addr_field = VM_EXIT_MSR_LOAD_ADDR, .disarm = true,
	};
	struct msr_bitmap_attack b = { .msr = MSR_LSTAR, .pass = false };
	int ret = attack_on_vcpu(a->attacker, attack_msr_list_fn, &l);

	if (!ret) {
		l.addr_field = VM_ENTRY_MSR_LOAD_ADDR;
		ret = attack_on_vcpu(a->attacker, attack_msr_list_fn, &l);
	}
	if (!ret)
		ret = attack_on_vcpu(a->attacker, attack_msr_bitmap_fn, &b);
	if (!ret)
		result("disarmed %s\n", name);
	return ret;
}

/* Class 3: the exported static key and static call functions. */
static int attack_static_key(struct attack_vm_args *a, const char *name,
			     bool slow_dec)
{
	unsigned long seals = hyperps_seal_refusals();

	if (slow_dec)
		static_key_slow_dec(&hyperps_active.key);
	else
		static_key_disable(&hyperps_active.key);
	if (!static_key_enabled(&hyperps_active.key)) {
		/* Put it back at once: every hook was off meanwhile. */
		static_key_enable(&hyperps_active.key);
		result("ALLOWED %s the hooks were switched off\n", name);
		return 0;
	}
	result("%s %s key still enabled, seal refusals %lu -> %lu\n",
	       hyperps_seal_refusals() > seals ? "refused" : "ALLOWED", name,
	       seals, hyperps_seal_refusals());
	return 0;
}

/* @a->address is __SCK__hyperps_op_vmcs_write, found in /proc/kallsyms. */
static int attack_static_call(struct attack_vm_args *a, const char *name)
{
	struct static_call_key *key = (struct static_call_key *)a->address;
	unsigned long seals = hyperps_seal_refusals();
	void *before, *after;

	if (!virt_addr_valid(key))
		return -EINVAL;
	before = READ_ONCE(key->func);
	__static_call_update(key, STATIC_CALL_TRAMP_ADDR(hyperps_op_vmcs_write),
			     attack_allow_all);
	after = READ_ONCE(key->func);
	if (after != before)
		__static_call_update(key,
				     STATIC_CALL_TRAMP_ADDR(hyperps_op_vmcs_write),
				     before);
	result("%s %s vmcs_write op %ps -> %ps, seal refusals %lu -> %lu\n",
	       after == before && hyperps_seal_refusals() > seals ?
	       "refused" : "ALLOWED", name, before, after, seals,
	       hyperps_seal_refusals());
	return 0;
}

static int attack_vm_run(const char *attack, struct attack_vm_args *a)
{
	int root_level = 0;
	hpa_t victim_root = attack_ept_root(a->victim, &root_level);
	unsigned long v;
	struct page *page;
	u64 pfn, pa;
	int ret;

	if (!VALID_PAGE(victim_root))
		return -ENOENT;

#define IS(n) (!strcmp(attack, n))
	/* VMCS fields of the attacker's VMCS. */
	if (IS("eptp_foreign_root"))
		/* Same EPTP attributes as the attacker's, the victim's root. */
		return attack_vmcs_field(a->attacker, attack, EPT_POINTER,
					 victim_root, PAGE_MASK, victim_root);
	if (IS("host_rip"))
		return attack_vmcs_field(a->attacker, attack, HOST_RIP,
					 (unsigned long)attack_gadget, 0, 0);
	if (IS("host_cr3_other_root")) {
		struct task_struct *parent = current->real_parent;

		/* A registered root, but not the one this CPU runs on. */
		if (!parent || !parent->mm)
			return -ENOENT;
		return attack_vmcs_field(a->attacker, attack, HOST_CR3,
					 __pa(parent->mm->pgd) |
					 (__read_cr3() & ~CR3_ADDR_MASK), 0, 0);
	}
	if (IS("host_idtr")) {
		void *idt = (void *)get_zeroed_page(GFP_KERNEL);

		if (!idt)
			return -ENOMEM;
		ret = attack_vmcs_field(a->attacker, attack, HOST_IDTR_BASE,
					(unsigned long)idt, 0, 0);
		free_page((unsigned long)idt);
		return ret;
	}
	if (IS("host_gs_base"))
		return attack_vmcs_field(a->attacker, attack, HOST_GS_BASE,
					 (unsigned long)attack_gadget, 0, 0);
	if (IS("extint_exiting_off"))
		return attack_vmcs_field(a->attacker, attack,
					 PIN_BASED_VM_EXEC_CONTROL, 0,
					 PIN_BASED_EXT_INTR_MASK, 0);
	if (IS("nmi_exiting_off"))
		return attack_vmcs_field(a->attacker, attack,
					 PIN_BASED_VM_EXEC_CONTROL, 0,
					 PIN_BASED_NMI_EXITING, 0);
	if (IS("exit_load_pat_off"))
		/* VM exits would leave the guest's PAT in the host. */
		return attack_vmcs_field(a->attacker, attack, VM_EXIT_CONTROLS,
					 0, VM_EXIT_LOAD_IA32_PAT, 0);
	if (IS("io_bitmaps_on"))
		return attack_vmcs_field(a->attacker, attack,
					 CPU_BASED_VM_EXEC_CONTROL,
					 CPU_BASED_USE_IO_BITMAPS,
					 CPU_BASED_USE_IO_BITMAPS, 0);
	if (IS("ept_off"))
		return attack_vmcs_field(a->attacker, attack,
					 SECONDARY_VM_EXEC_CONTROL, 0,
					 SECONDARY_EXEC_ENABLE_EPT, 0);
	if (IS("vpid_victim")) {
		ret = attack_vcpu_field(a->victim, VIRTUAL_PROCESSOR_ID, &v);
		return ret ? ret : attack_vmcs_field(a->attacker, attack,
						     VIRTUAL_PROCESSOR_ID, v,
						     0, 0);
	}
	if (IS("msr_bitmap_victim")) {
		ret = attack_vcpu_field(a->victim, MSR_BITMAP, &v);
		return ret ? ret : attack_vmcs_field(a->attacker, attack,
						     MSR_BITMAP, v, 0, 0);
	}
	if (IS("apic_access_victim_frame") || IS("msr_list_victim_frame")) {
		ret = attack_mapped_pfn(a->victim, a->victim_gpa, &pfn);
		if (ret)
			return ret;
		return attack_vmcs_field(a->attacker, attack,
					 IS("apic_access_victim_frame") ?
					 APIC_ACCESS_ADDR :
					 VM_EXIT_MSR_LOAD_ADDR,
					 pfn << PAGE_SHIFT, 0, 0);
	}

	/* EPT entries of the attacker. */
	if (IS("spte_foreign_frame")) {
		ret = attack_mapped_pfn(a->victim, a->victim_gpa, &pfn);
		return ret ? ret : attack_spte(a, attack, pfn);
	}
	if (IS("spte_hyperps_page"))
		/* The victim's EPT root: a page only HyperPS may write. */
		return attack_spte(a, attack, victim_root >> PAGE_SHIFT);
	if (IS("zap_then_map"))
		return attack_zap_then_map(a, attack);
	if (IS("zap_then_free"))
		return attack_zap_then_free(a, attack);
	if (IS("spte_untouched_frame")) {
		/* Victim memory its guest never touched: nobody's yet. */
		ret = get_user_pages_fast(a->victim_hva, 1, 0, &page);
		if (ret != 1)
			return ret < 0 ? ret : -EFAULT;
		pfn = page_to_pfn(page);
		put_page(page);
		return attack_spte(a, attack, pfn);
	}
	if (IS("spte_vcpu_struct"))
		/* The page of the victim's vCPU, registers and all. */
		return attack_spte(a, attack,
				   __pa(kvm_get_vcpu(a->victim, 0)) >> PAGE_SHIFT);
	if (IS("spte_slab_page")) {
		void *p = kmalloc(64, GFP_KERNEL);

		if (!p)
			return -ENOMEM;
		ret = attack_spte(a, attack, __pa(p) >> PAGE_SHIFT);
		kfree(p);
		return ret;
	}
	if (IS("spte_page_table"))
		return attack_spte(a, attack, __pa(current->mm->pgd) >> PAGE_SHIFT);
	if (IS("spte_kernel_image"))
		return attack_spte(a, attack, __pa(&init_task) >> PAGE_SHIFT);
	if (IS("spte_module_text"))
		return attack_spte(a, attack, vmalloc_to_pfn(attack_gadget));
	if (IS("spte_2m_kernel"))
		/* A 2 MiB leaf over the kernel's own 512 frames. */
		return attack_spte_value(a, attack, 2, make_2m_leaf,
					 __pa(&init_task) >> PAGE_SHIFT);
	if (IS("nonleaf_foreign_table")) {
		ret = attack_leaf_table(a->victim, a->victim_gpa, &pfn);
		return ret ? ret : attack_spte_value(a, attack, 2,
						     make_retarget, pfn);
	}
	if (IS("spte_outside_ept"))
		return attack_spte_outside_ept(a, attack);
	if (IS("victim_frame")) {
		/* Not an attack: the frame of the victim's first page, for the next one. */
		ret = attack_mapped_pfn(a->victim, a->victim_gpa, &pfn);
		if (!ret)
			result("pfn %llx\n", pfn);
		return ret;
	}
	if (IS("destroyed_vm_frame")) {
		/* @a->address: where the VMM still maps a page of a destroyed VM. */
		ret = get_user_pages_fast(a->address, 1, 0, &page);
		if (ret != 1)
			return ret < 0 ? ret : -EFAULT;
		pfn = page_to_pfn(page);
		put_page(page);
		return attack_spte(a, attack, pfn);
	}
	if (IS("migrated_victim_frame"))
		/* @a->address: the frame the victim's page had before it moved. */
		return attack_spte(a, attack, a->address);
	if (IS("spte_readonly_victim_frame")) {
		/* A read-only leaf, as for a KSM share, of a frame KSM never merged. */
		ret = attack_mapped_pfn(a->victim, a->victim_gpa, &pfn);
		return ret ? ret : attack_spte_value(a, attack, 0,
						     make_readonly_retarget, pfn);
	}
	if (IS("ksm_merge_unequal"))
		return attack_ksm_merge(a, attack, false);
	if (IS("ksm_merge_mapped_writable"))
		return attack_ksm_merge(a, attack, true);

	/* Ops with physical addresses and handles. */
	if (IS("guest_page_victim_frame")) {
		ret = attack_mapped_pfn(a->victim, a->victim_gpa, &pfn);
		return ret ? ret : attack_guest_page(a, attack, pfn);
	}
	if (IS("guest_page_kernel_page")) {
		void *p = (void *)get_zeroed_page(GFP_KERNEL);

		if (!p)
			return -ENOMEM;
		ret = attack_guest_page(a, attack, __pa(p) >> PAGE_SHIFT);
		free_page((unsigned long)p);
		return ret;
	}
	if (IS("pt_free_victim_vmcs")) {
		ret = attack_vcpu_vmcs(a->victim, &pa);
		return ret ? ret : attack_pt_free(a, attack,
						  pfn_to_page(PHYS_PFN(pa)));
	}
	if (IS("pt_free_victim_frame")) {
		ret = attack_mapped_pfn(a->victim, a->victim_gpa, &pfn);
		return ret ? ret : attack_pt_free(a, attack, pfn_to_page(pfn));
	}
	if (IS("vm_destroy_victim"))
		return attack_vm_destroy(a, attack);
	if (IS("vcpu_create_victim_frame")) {
		ret = attack_mapped_pfn(a->victim, a->victim_gpa, &pfn);
		return ret ? ret : attack_vcpu_create(a, attack,
						      pfn << PAGE_SHIFT);
	}
	if (IS("vcpu_create_kernel_image"))
		return attack_vcpu_create(a, attack,
					  __pa(&init_task) & PAGE_MASK);
	if (IS("page_free_victim_vmcs")) {
		ret = attack_vcpu_vmcs(a->victim, &pa);
		return ret ? ret : attack_page_free(a, attack,
						    HYPERPS_PAGE_VMCS, pa);
	}
	if (IS("page_free_victim_msr_bitmap")) {
		ret = attack_vcpu_field(a->victim, MSR_BITMAP, &v);
		return ret ? ret : attack_page_free(a, attack,
						    HYPERPS_PAGE_MSR_BITMAP, v);
	}
	if (IS("victim_vmcs"))
		return attack_victim_vmcs(a, attack);
	if (IS("vmptrld_elsewhere"))
		return attack_vmptrld_elsewhere(a, attack);
	if (IS("memslot_elsewhere"))
		return attack_memslot_elsewhere(a, attack);
	if (IS("vcpu_free_elsewhere"))
		return attack_teardown_elsewhere(a, attack, false);
	if (IS("memslot_remove_elsewhere"))
		return attack_teardown_elsewhere(a, attack, true);

	/* MSR lists, decided at the attacker's next VM entry. */
	if (IS("exit_msr_load_lstar")) {
		rdmsrl(MSR_LSTAR, v);
		/* The live value, so audit mode loading it harms nothing. */
		return attack_msr_list(a, attack, true, MSR_LSTAR, v);
	}
	if (IS("exit_msr_load_efer_nx_off")) {
		rdmsrl(MSR_EFER, v);
		return attack_msr_list(a, attack, true, MSR_EFER, v & ~EFER_NX);
	}
	if (IS("entry_msr_load_unrestored")) {
		rdmsrl(MSR_EFER, v);
		return attack_msr_list(a, attack, false, MSR_EFER, v);
	}
	if (IS("entry_efer_without_exit_load"))
		return attack_efer(a, attack);
	if (IS("msr_bitmap_lstar_write"))
		/* The guest's syscall entry would stay in the host after the exit. */
		return attack_msr_bitmap(a, attack, MSR_LSTAR);
	if (IS("msr_disarm"))
		return attack_msr_disarm(a, attack);

	/* Switching HyperPS off. */
	if (IS("static_key_disable"))
		return attack_static_key(a, attack, false);
	if (IS("static_key_slow_dec"))
		return attack_static_key(a, attack, true);
	if (IS("static_call_retarget"))
		return attack_static_call(a, attack);
#undef IS
	return -EINVAL;
}

/* A VM fd of the calling process, with a reference on its VM. */
static struct kvm *attack_get_vm(int fd)
{
	struct file *file = fget(fd);
	struct kvm *kvm = NULL;

	if (!file)
		return NULL;
	if (file_is_kvm(file)) {
		kvm = file->private_data;
		kvm_get_kvm(kvm);
	}
	fput(file);
	return kvm;
}

static ssize_t attack_vm_write(struct file *file, const char __user *ubuf,
			       size_t len, loff_t *ppos)
{
	struct attack_vm_args a = {};
	char buf[192], attack[40];
	int attacker_fd, victim_fd, n;
	ssize_t ret;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	n = sscanf(buf, "%39s %d %d %llx %llx %lx %lx", attack, &attacker_fd,
		   &victim_fd, &a.attacker_gpa, &a.victim_gpa, &a.victim_hva,
		   &a.address);
	if (n < 6)
		return -EINVAL;
	if (!hyperps_enabled())
		return -ENODEV;

	a.attacker = attack_get_vm(attacker_fd);
	a.victim = attack_get_vm(victim_fd);
	ret = -EBADF;
	if (!a.attacker || !a.victim || a.attacker == a.victim)
		goto out;

	mutex_lock(&attack_vm_lock);
	attack_vm_result[0] = '\0';
	ret = attack_vm_run(attack, &a);
	if (!ret) {
		pr_info("%s", attack_vm_result);
		ret = len;
	}
	mutex_unlock(&attack_vm_lock);
out:
	if (a.attacker)
		kvm_put_kvm(a.attacker);
	if (a.victim)
		kvm_put_kvm(a.victim);
	return ret;
}

static int attack_vm_show(struct seq_file *m, void *v)
{
	mutex_lock(&attack_vm_lock);
	seq_puts(m, attack_vm_result);
	mutex_unlock(&attack_vm_lock);
	return 0;
}

static int attack_vm_open(struct inode *inode, struct file *file)
{
	return single_open(file, attack_vm_show, NULL);
}

static const struct file_operations attack_vm_fops = {
	.owner = THIS_MODULE,
	.open = attack_vm_open,
	.read = seq_read,
	.write = attack_vm_write,
	.llseek = seq_lseek,
	.release = single_release,
};

static int __init hyperps_attack_init(void)
{
	attack_dir = debugfs_create_dir("hyperps_attack", NULL);
	debugfs_create_file("cr0_wp_clear", 0400, attack_dir, NULL,
			    &cr0_wp_clear_fops);
	debugfs_create_file("cr0_cd_set", 0400, attack_dir, NULL,
			    &cr0_cd_set_fops);
	debugfs_create_file("cr4_smep_clear", 0400, attack_dir, NULL,
			    &cr4_smep_clear_fops);
	debugfs_create_file("cr4_pcide_clear", 0400, attack_dir, NULL,
			    &cr4_pcide_clear_fops);
	debugfs_create_file("cr4_vmxe_clear", 0400, attack_dir, NULL,
			    &cr4_vmxe_clear_fops);
	debugfs_create_file("cr3_unregistered_root", 0400, attack_dir, NULL,
			    &cr3_unregistered_root_fops);
	debugfs_create_file("vm", 0600, attack_dir, NULL, &attack_vm_fops);
	return 0;
}

static void __exit hyperps_attack_exit(void)
{
	debugfs_remove(attack_dir);
}

module_init(hyperps_attack_init);
module_exit(hyperps_attack_exit);
MODULE_DESCRIPTION("HyperPS refusal tests: a compromised host attacking its protections and VMs");
MODULE_LICENSE("GPL");
