// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only module: plays a compromised host kernel that calls the hooked
 * control-register functions with values that turn host protections off
 * (CR0.WP, CR4.SMEP) or switch to a page table of its own making (CR3).
 * With hyperps.ko in enforce mode every attempt must be refused, so the
 * register keeps its value.  Never load it on a machine you care about: if
 * HyperPS let a write through, the host would run without the protection
 * until the module restores it.
 *
 * Each CR file under /sys/kernel/debug/hyperps_attack/ runs one attack when
 * it is read and prints "refused" or "ALLOWED" with the register before and
 * after.
 *
 * The "vm" file attacks one VM's isolation from another.  Writing
 *
 *	<attack> <attacker vm fd> <victim vm fd> <attacker gpa> <victim gpa>
 *
 * (fds of the writing process, both VMs with a vCPU 0 that has run and
 * touched the given guest-physical pages) runs the attack; reading the file
 * returns the outcome of the last one.  The attacks call the HyperPS hooks
 * exactly as the patched KVM call sites do, and perform the write only if the
 * hook allows it (an allowed write is put back at once).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/file.h>
#include <linux/hyperps.h>
#include <linux/kvm_host.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <asm/asm.h>
#include <asm/pgalloc.h>
#include <asm/processor-flags.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>
#include <asm/vmx.h>

static struct dentry *attack_dir;

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

static int cr4_smep_clear_show(struct seq_file *m, void *v)
{
	unsigned long before, after;
	unsigned long flags;

	local_irq_save(flags);
	before = __read_cr4();
	if (!(before & X86_CR4_SMEP)) {
		local_irq_restore(flags);
		seq_puts(m, "skip: SMEP is not enabled on this CPU\n");
		return 0;
	}
	/* KVM's own way to change CR4: the shadow, then native_write_cr4(). */
	cr4_update_irqsoff(0, X86_CR4_SMEP);
	after = __read_cr4();
	/* The shadow was updated before the refused write; put it back. */
	cr4_update_irqsoff(X86_CR4_SMEP, 0);
	local_irq_restore(flags);

	seq_printf(m, "%s cr4 before 0x%lx after 0x%lx\n",
		   after & X86_CR4_SMEP ? "refused" : "ALLOWED", before, after);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cr4_smep_clear);

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
#define ATTACK_SPTE_LARGE	BIT_ULL(7)
#define ATTACK_SPTE_PFN		GENMASK_ULL(51, 12)

static DEFINE_MUTEX(attack_vm_lock);
static char attack_vm_result[256];

struct attack_vm_args {
	struct kvm *attacker;
	struct kvm *victim;
	gpa_t attacker_gpa;
	gpa_t victim_gpa;
};

/* Where a VM exit would land if HOST_RIP could be redirected. */
static noinline void attack_gadget(void)
{
	pr_emerg("a VM exit reached the attack gadget\n");
}

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

/*
 * Writes @set to @field of vCPU 0's VMCS of @kvm (or, if @clear, the current
 * value with the bits of @clear replaced by @set), with the VMCS loaded on
 * this CPU the way KVM's ioctls load it.
 */
static int attack_vmcs_field(struct kvm *kvm, const char *name,
			     unsigned long field, unsigned long set,
			     unsigned long clear, hpa_t victim_root)
{
	struct kvm_vcpu *vcpu = kvm_get_vcpu(kvm, 0);
	unsigned long before, after, value;
	int refused, ret;

	if (!vcpu)
		return -ENOENT;
	ret = mutex_lock_killable(&vcpu->mutex);
	if (ret)
		return ret;
	vcpu_load(vcpu);
	preempt_disable();
	ret = attack_vmread(field, &before);
	if (ret)
		goto out;
	value = clear ? (before & ~clear) | set : set;
	refused = 0;
	/* vmx_load_mmu_pgd(): the EPT pointer op comes before the VMWRITE. */
	if (field == EPT_POINTER &&
	    hyperps_call(ept_load, kvm, vcpu, victim_root, value))
		refused = 1;
	if (!refused)
		refused = attack_hooked_vmwrite(field, value);
	if (refused < 0) {
		ret = refused;
		goto out;
	}
	ret = attack_vmread(field, &after);
	if (ret)
		goto out;
	/* If HyperPS let it through, undo it before the vCPU runs again. */
	if (after != before)
		attack_vmwrite(field, before);
	scnprintf(attack_vm_result, sizeof(attack_vm_result),
		  "%s %s field 0x%lx wrote 0x%lx before 0x%lx after 0x%lx\n",
		  refused && after == before ? "refused" : "ALLOWED", name,
		  field, value, before, after);
out:
	preempt_enable();
	vcpu_put(vcpu);
	mutex_unlock(&vcpu->mutex);
	return ret;
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

/* The leaf SPTE that maps @gpa in @kvm's EPT; under RCU and mmu_lock. */
static u64 *attack_find_leaf(struct kvm *kvm, gpa_t gpa, int *leaf_level)
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
		if (!(spte & ATTACK_SPTE_PRESENT))
			return NULL;
		if (level == 1 || (spte & ATTACK_SPTE_LARGE)) {
			*leaf_level = level;
			return sptep;
		}
		table = __va(spte & ATTACK_SPTE_PFN);
	}
	return NULL;
}

/*
 * Points the attacker's 4 KiB leaf for its gpa at @target_pfn through the
 * hooked SPTE exchange, as the TDP MMU's tdp_mmu_set_spte_atomic() would.
 */
static int attack_spte(struct attack_vm_args *a, const char *name,
		       u64 target_pfn)
{
	u64 *sptep, before, after, new_spte;
	int level = 0;
	int ret = 0;

	write_lock(&a->attacker->mmu_lock);
	rcu_read_lock();
	sptep = attack_find_leaf(a->attacker, a->attacker_gpa, &level);
	if (!sptep || level != PG_LEVEL_4K) {
		ret = -ENOENT;
		goto out;
	}
	before = READ_ONCE(*sptep);
	new_spte = (before & ~ATTACK_SPTE_PFN) | (target_pfn << PAGE_SHIFT);
	hyperps_call(spte_xchg, sptep, new_spte, level, a->attacker_gpa >> PAGE_SHIFT);
	after = READ_ONCE(*sptep);
	if (after != before)
		hyperps_call(spte_xchg, sptep, before, level,
			     a->attacker_gpa >> PAGE_SHIFT);
	scnprintf(attack_vm_result, sizeof(attack_vm_result),
		  "%s %s spte at 0x%llx wrote 0x%llx before 0x%llx after 0x%llx\n",
		  after == before ? "refused" : "ALLOWED", name,
		  (u64)__pa(sptep), new_spte, before, after);
out:
	rcu_read_unlock();
	write_unlock(&a->attacker->mmu_lock);
	return ret;
}

/* The frame that backs @gpa in @kvm, as its EPT maps it. */
static int attack_victim_pfn(struct kvm *kvm, gpa_t gpa, u64 *pfn)
{
	int level = 0;
	u64 *sptep;
	int ret = 0;

	read_lock(&kvm->mmu_lock);
	rcu_read_lock();
	sptep = attack_find_leaf(kvm, gpa, &level);
	if (sptep && level == PG_LEVEL_4K)
		*pfn = (READ_ONCE(*sptep) & ATTACK_SPTE_PFN) >> PAGE_SHIFT;
	else
		ret = -ENOENT;
	rcu_read_unlock();
	read_unlock(&kvm->mmu_lock);
	return ret;
}

static int attack_vm_run(const char *attack, struct attack_vm_args *a)
{
	int root_level = 0;
	hpa_t victim_root = attack_ept_root(a->victim, &root_level);
	u64 pfn;
	int ret;

	if (!VALID_PAGE(victim_root))
		return -ENOENT;

	if (!strcmp(attack, "eptp_foreign_root"))
		/* Same EPTP attributes as the attacker's, the victim's root. */
		return attack_vmcs_field(a->attacker, attack, EPT_POINTER,
					 victim_root, PAGE_MASK, victim_root);
	if (!strcmp(attack, "host_rip"))
		return attack_vmcs_field(a->attacker, attack, HOST_RIP,
					 (unsigned long)attack_gadget, 0, 0);
	if (!strcmp(attack, "extint_exiting_off"))
		return attack_vmcs_field(a->attacker, attack,
					 PIN_BASED_VM_EXEC_CONTROL, 0,
					 PIN_BASED_EXT_INTR_MASK, 0);
	if (!strcmp(attack, "nmi_exiting_off"))
		return attack_vmcs_field(a->attacker, attack,
					 PIN_BASED_VM_EXEC_CONTROL, 0,
					 PIN_BASED_NMI_EXITING, 0);
	if (!strcmp(attack, "spte_foreign_frame")) {
		ret = attack_victim_pfn(a->victim, a->victim_gpa, &pfn);
		return ret ? ret : attack_spte(a, attack, pfn);
	}
	if (!strcmp(attack, "spte_hyperps_page"))
		/* The victim's EPT root: a page only HyperPS may write. */
		return attack_spte(a, attack, victim_root >> PAGE_SHIFT);
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
	char buf[128], attack[32];
	int attacker_fd, victim_fd;
	ssize_t ret;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = '\0';
	if (sscanf(buf, "%31s %d %d %llx %llx", attack, &attacker_fd,
		   &victim_fd, &a.attacker_gpa, &a.victim_gpa) != 5)
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
	debugfs_create_file("cr4_smep_clear", 0400, attack_dir, NULL,
			    &cr4_smep_clear_fops);
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
