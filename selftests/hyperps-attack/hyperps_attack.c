// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only module: plays a compromised host kernel that calls the hooked
 * control-register functions with values that turn host protections off.
 * With hyperps.ko in enforce mode every attempt must be refused, so the
 * register keeps its value.  Never load it on a machine you care about: if
 * HyperPS let a write through, the host would run without the protection
 * until the module restores it.
 *
 * Each file under /sys/kernel/debug/hyperps_attack/ runs one attack when it
 * is read and prints "refused" or "ALLOWED" with the register before and
 * after.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <asm/processor-flags.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>

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

static int __init hyperps_attack_init(void)
{
	attack_dir = debugfs_create_dir("hyperps_attack", NULL);
	debugfs_create_file("cr0_wp_clear", 0400, attack_dir, NULL,
			    &cr0_wp_clear_fops);
	debugfs_create_file("cr4_smep_clear", 0400, attack_dir, NULL,
			    &cr4_smep_clear_fops);
	return 0;
}

static void __exit hyperps_attack_exit(void)
{
	debugfs_remove(attack_dir);
}

module_init(hyperps_attack_init);
module_exit(hyperps_attack_exit);
MODULE_DESCRIPTION("HyperPS refusal tests: a compromised host writing control registers");
MODULE_LICENSE("GPL");
