// SPDX-License-Identifier: GPL-2.0
/*
 * hyperps_vm_attack_test: a compromised host attacks one VM's isolation, the
 * host through a VM, and HyperPS itself, and HyperPS must refuse every attempt.
 *
 * A victim VM fills its memory with a pattern.  For each attack a fresh
 * attacker VM is created and run, then hyperps_attack.ko plays the host: it
 * calls the HyperPS ops the way the patched KVM call sites do, and exported
 * kernel functions, choosing every argument and the order of the calls (see
 * the table below).  Two attacks run in a forked child, which is not the
 * VMs' VMM.
 *
 * Enforce mode: every attempt is refused (the value never reaches the VMCS,
 * the EPT, the MSR lists or bitmap, the page is not freed, the record not
 * changed), counted in its class and recorded in the refusal log as
 * enforced.  An attempt on the attacker's EPT, MSR lists or bitmap stops the
 * attacker VM (KVM_RUN fails with EIO); a refused VMWRITE leaves its VMCS as
 * it was, so it runs on.
 * Audit mode: the value attacks reach the hardware (the attack module puts
 * them back before any vCPU runs) and are counted and logged as audited;
 * attacks on HyperPS's records are refused in both modes.  In both modes the
 * victim runs on after every attack, with its memory intact as its guest and
 * the host see it, and its registers unchanged by the attack.
 *
 * Needs hyperps.ko registered and hyperps_attack.ko loaded; skips otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "kselftest.h"

#define ATTACK_FILE	"/sys/kernel/debug/hyperps_attack/vm"
#define COUNTERS_FILE	"/sys/kernel/debug/hyperps/counters"
#define REFUSALS_FILE	"/sys/kernel/debug/hyperps/refusals"
#define MODE_FILE	"/sys/module/hyperps/parameters/mode"
#define MPOL_MF_MOVE	BIT(1)

#define MEM_GPA		0x10000000ULL
#define MEM_SLOT	1
/* The guest touches the first half; the second half only its VMM touches. */
#define MEM_PAGES	32
#define GUEST_PAGES	16
#define WORDS_PER_PAGE	(PAGE_SIZE / sizeof(u64))

#define VICTIM_SEED	0x5eed0000c0ffee00ULL
#define ATTACKER_SEED	0xa77ac4e400000000ULL

/* The attacker VM is stopped by the refusal (its EPT or MSR lists). */
#define STOPS		BIT(0)
/* Decided at the attacker's next VM entry: the module only arms it. */
#define ARMED		BIT(1)
/* An attack on HyperPS's records: refused in audit mode as well. */
#define RECORDS		BIT(2)
/* Too dangerous to let through: run in enforce mode only. */
#define ENFORCE_ONLY	BIT(3)
/* Run from a forked child, which is not the VMM of either VM. */
#define CHILD		BIT(4)
/* An exported static key or static call function: the registry's seal. */
#define SEAL		BIT(5)
/* The op has no verdict: judged by the counters and the log only. */
#define NO_VERDICT	BIT(6)
/*
 * Checked twice on KVM's path (ept_load, then the VMWRITE): in audit mode the
 * value gets past the first check and is refused again by the second.
 */
#define TWO_CHECKS	BIT(7)

static const struct {
	const char *name;
	const char *class;
	unsigned int flags;
} attacks[] = {
	/* VM exits redirected or host state replaced (the attacker's VMCS). */
	{ "eptp_foreign_root",		"eptp",		TWO_CHECKS },
	{ "host_rip",			"vmcs",		0 },
	{ "host_cr3_other_root",	"vmcs",		0 },
	{ "host_idtr",			"vmcs",		0 },
	{ "host_gs_base",		"vmcs",		0 },
	{ "extint_exiting_off",		"vmcs",		0 },
	{ "nmi_exiting_off",		"vmcs",		0 },
	{ "exit_load_pat_off",		"vmcs",		0 },
	{ "io_bitmaps_on",		"vmcs",		0 },
	{ "ept_off",			"vmcs",		0 },
	{ "vpid_victim",		"vmcs",		0 },
	{ "msr_bitmap_victim",		"vmcs",		0 },
	{ "apic_access_victim_frame",	"vmcs",		0 },
	{ "msr_list_victim_frame",	"vmcs",		0 },
	/* Another VM's memory, or the host's, mapped into the attacker. */
	{ "spte_foreign_frame",		"ept",		STOPS },
	{ "spte_hyperps_page",		"ept",		STOPS },
	{ "zap_then_map",		"ept",		STOPS },
	{ "zap_then_free",		"ownership",	RECORDS },
	{ "spte_untouched_frame",	"ept",		STOPS },
	{ "spte_vcpu_struct",		"ept",		STOPS },
	{ "spte_slab_page",		"ept",		STOPS },
	{ "spte_page_table",		"ept",		STOPS },
	{ "spte_kernel_image",		"ept",		STOPS },
	{ "spte_module_text",		"ept",		STOPS },
	{ "spte_2m_kernel",		"ept",		STOPS },
	{ "nonleaf_foreign_table",	"ept",		STOPS },
	{ "spte_outside_ept",		"ept",		0 },
	{ "spte_readonly_victim_frame",	"ept",		STOPS },
	/* Frames on their way back to the host: a destroyed VM's, a migrated one. */
	{ "destroyed_vm_frame",		"ept",		STOPS },
	{ "migrated_victim_frame",	"ept",		STOPS },
	/* KSM: merges that would make the victim's frame a share. */
	{ "ksm_merge_unequal",		"ownership",	RECORDS },
	{ "ksm_merge_mapped_writable",	"ownership",	RECORDS },
	/* HyperPS's records: ownership, registration and lifecycle. */
	{ "guest_page_victim_frame",	"ownership",	RECORDS | STOPS },
	{ "guest_page_kernel_page",	"ownership",	RECORDS | STOPS },
	{ "pt_free_victim_vmcs",	"registration",	RECORDS },
	{ "pt_free_victim_frame",	"registration",	RECORDS },
	{ "vm_destroy_victim",		"registration",	RECORDS | NO_VERDICT },
	{ "vcpu_create_victim_frame",	"registration",	RECORDS },
	{ "vcpu_create_kernel_image",	"registration",	RECORDS },
	{ "page_free_victim_vmcs",	"registration",	RECORDS },
	{ "page_free_victim_msr_bitmap", "registration", RECORDS },
	{ "vmptrld_elsewhere",		"vmx",		RECORDS | CHILD },
	{ "memslot_elsewhere",		"registration",	RECORDS | CHILD },
	{ "vcpu_free_elsewhere",	"registration",	RECORDS | CHILD | NO_VERDICT },
	{ "memslot_remove_elsewhere",	"registration",	RECORDS | CHILD | NO_VERDICT },
	/* Memory the CPU reads at VM entry and exit: the MSR lists and bitmap. */
	{ "exit_msr_load_lstar",	"vmcs",		ARMED | STOPS },
	{ "exit_msr_load_efer_nx_off",	"vmcs",		ARMED | STOPS | ENFORCE_ONLY },
	{ "entry_msr_load_unrestored",	"vmcs",		ARMED | STOPS },
	{ "msr_bitmap_lstar_write",	"vmcs",		ARMED | STOPS },
	{ "entry_efer_without_exit_load", "vmcs",	ARMED | STOPS | ENFORCE_ONLY },
	/* Switching the hooks off through exported functions. */
	{ "static_key_disable",		NULL,		SEAL },
	{ "static_key_slow_dec",	NULL,		SEAL },
	{ "static_call_retarget",	NULL,		SEAL },
};

/* Stage 0: fill one word per page with seed + page; then verify, forever. */
static void guest_code(u64 seed)
{
	u64 *mem = (u64 *)MEM_GPA;
	int i;

	for (i = 0; i < GUEST_PAGES; i++)
		WRITE_ONCE(mem[i * WORDS_PER_PAGE], seed + i);
	GUEST_SYNC(0);
	for (;;) {
		for (i = 0; i < GUEST_PAGES; i++)
			GUEST_ASSERT_EQ(READ_ONCE(mem[i * WORDS_PER_PAGE]), seed + i);
		GUEST_SYNC(1);
	}
}

struct guest {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	u64 seed;
};

static void guest_start(struct guest *g, u64 seed)
{
	u64 *untouched;
	int i;

	g->vm = vm_create_with_one_vcpu(&g->vcpu, guest_code);
	vm_userspace_mem_region_add(g->vm, VM_MEM_SRC_ANONYMOUS, MEM_GPA,
				    MEM_SLOT, MEM_PAGES, 0);
	virt_map(g->vm, MEM_GPA, MEM_GPA, MEM_PAGES);
	g->seed = seed;
	vcpu_args_set(g->vcpu, 1, seed);
	/* The VMM's own data in the pages its guest never touches. */
	for (i = GUEST_PAGES; i < MEM_PAGES; i++) {
		untouched = addr_gpa2hva(g->vm, MEM_GPA + i * PAGE_SIZE);
		*untouched = seed ^ ~0ULL;
	}
}

/* Runs the guest to its next sync; returns the stage, or -errno of KVM_RUN. */
static int guest_step(struct guest *g)
{
	struct ucall uc;
	int ret;

	do {
		ret = __vcpu_run(g->vcpu);
	} while (ret == -1 && errno == EINTR);
	if (ret)
		return -errno;

	switch (get_ucall(g->vcpu, &uc)) {
	case UCALL_SYNC:
		return uc.args[1];
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected exit %s", exit_reason_str(g->vcpu->run->exit_reason));
	}
	return -EINVAL;
}

/* The host's view of the guest's memory, and of the VMM's own pages. */
static bool guest_memory_intact(struct guest *g)
{
	int i;

	for (i = 0; i < MEM_PAGES; i++) {
		u64 *word = addr_gpa2hva(g->vm, MEM_GPA + i * PAGE_SIZE);
		u64 want = i < GUEST_PAGES ? g->seed + i : g->seed ^ ~0ULL;

		if (*word != want) {
			ksft_print_msg("page %d holds 0x%llx, expected 0x%llx\n",
				       i, (unsigned long long)*word,
				       (unsigned long long)want);
			return false;
		}
	}
	return true;
}

static long long read_counter(const char *class, const char *which)
{
	char line[256], name[32], key[32];
	unsigned long long verified, refused, value;
	long long found = -1;
	FILE *f = fopen(COUNTERS_FILE, "r");

	TEST_ASSERT(f, "cannot open %s", COUNTERS_FILE);
	while (fgets(line, sizeof(line), f)) {
		if (class && sscanf(line, "%31s verified %llu refused %llu", name,
				    &verified, &refused) == 3 && !strcmp(name, class))
			found = refused;
		if (!class && sscanf(line, "%31s %llu", key, &value) == 2 &&
		    !strcmp(key, which))
			found = value;
	}
	fclose(f);
	TEST_ASSERT(found >= 0, "no counter %s", class ? class : which);
	return found;
}

/* The newest refusal record: "<seq> <class> <reason> subject ... <mode>". */
static bool last_refusal_is(const char *class, const char *mode, char *reason,
			    size_t len)
{
	char line[512], last[512] = "", cls[32], why[64];
	FILE *f = fopen(REFUSALS_FILE, "r");

	TEST_ASSERT(f, "cannot open %s", REFUSALS_FILE);
	while (fgets(line, sizeof(line), f))
		snprintf(last, sizeof(last), "%s", line);
	fclose(f);
	if (sscanf(last, "%*u %31s %63s", cls, why) != 2)
		return false;
	snprintf(reason, len, "%s", why);
	return !strcmp(cls, class) && strstr(last, mode);
}

/* The outcome of the last attack, whoever ran it. */
static void read_result(const char *attack, char *result, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(ATTACK_FILE, O_RDONLY);
	TEST_ASSERT(fd >= 0, "cannot open %s", ATTACK_FILE);
	n = read(fd, result, len - 1);
	close(fd);
	TEST_ASSERT(n > 0, "no result for %s", attack);
	result[n] = '\0';
	if (n && result[n - 1] == '\n')
		result[n - 1] = '\0';
}

static int run_attack(const char *attack, struct guest *attacker,
		      struct guest *victim, unsigned long address,
		      char *result, size_t len)
{
	char cmd[192];
	ssize_t n;
	int fd;

	snprintf(cmd, sizeof(cmd), "%s %d %d %llx %llx %lx %lx\n", attack,
		 attacker->vm->fd, victim->vm->fd, MEM_GPA, MEM_GPA,
		 (unsigned long)addr_gpa2hva(victim->vm,
					     MEM_GPA + GUEST_PAGES * PAGE_SIZE),
		 address);
	fd = open(ATTACK_FILE, O_RDWR);
	TEST_ASSERT(fd >= 0, "cannot open %s", ATTACK_FILE);
	n = write(fd, cmd, strlen(cmd));
	if (n < 0) {
		close(fd);
		return -errno;
	}
	close(fd);
	read_result(attack, result, len);
	return 0;
}

/* As run_attack(), from a forked child that is not the VMs' VMM. */
static int run_attack_elsewhere(const char *attack, struct guest *attacker,
				struct guest *victim, unsigned long address,
				char *result, size_t len)
{
	int status, ret;
	pid_t pid;

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		ret = run_attack(attack, attacker, victim, address, result, len);
		_exit(ret ? 1 : 0);
	}
	TEST_ASSERT(waitpid(pid, &status, 0) == pid, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return -EIO;
	read_result(attack, result, len);
	return 0;
}

/* /proc/kallsyms: the address of a kernel symbol (KALLSYMS_ALL), or 0. */
static unsigned long kernel_symbol(const char *want)
{
	char line[256], name[128], type;
	unsigned long addr, found = 0;
	FILE *f = fopen("/proc/kallsyms", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx %c %127s", &addr, &type, name) == 3 &&
		    !strcmp(name, want))
			found = addr;
	fclose(f);
	return found;
}

static bool regs_equal(const struct kvm_regs *a, const struct kvm_regs *b,
		       const struct kvm_sregs *sa, const struct kvm_sregs *sb)
{
	return !memcmp(a, b, sizeof(*a)) && sa->cr0 == sb->cr0 &&
	       sa->cr3 == sb->cr3 && sa->cr4 == sb->cr4 && sa->efer == sb->efer &&
	       !memcmp(&sa->cs, &sb->cs, sizeof(sa->cs));
}

/*
 * A VM whose guest wrote its pages, destroyed while its VMM keeps the memory:
 * the frames are the dead VM's until the page allocator gets them.  Returns
 * the VMM's address of its first page (the struct is leaked with the memory).
 */
static unsigned long destroyed_vm_page(void)
{
	struct guest *g = calloc(1, sizeof(*g));

	TEST_ASSERT(g, "calloc");
	guest_start(g, VICTIM_SEED ^ 0xdeadULL);
	TEST_ASSERT_EQ(guest_step(g), 0);
	kvm_vm_release(g->vm);
	return (unsigned long)addr_gpa2hva(g->vm, MEM_GPA);
}

/*
 * Moves the victim's first page to the other NUMA node; returns the frame it
 * had, which the page allocator gets back once the move is done.
 */
static unsigned long migrate_victim_page(struct guest *attacker, struct guest *victim)
{
	void *hva = addr_gpa2hva(victim->vm, MEM_GPA);
	unsigned long pfn;
	char result[256];
	int node, status, tries, ret;
	long r;

	/* The host zaps leaves on its own (-ENOENT): run the victim to fault it back. */
	for (tries = 0; tries < 3; tries++) {
		ret = run_attack("victim_frame", attacker, victim, 0, result,
				 sizeof(result));
		if (ret != -ENOENT)
			break;
		TEST_ASSERT_EQ(guest_step(victim), 1);
	}
	TEST_ASSERT_EQ(ret, 0);
	TEST_ASSERT(sscanf(result, "pfn %lx", &pfn) == 1, "no pfn in '%s'", result);
	r = syscall(__NR_move_pages, 0, 1, &hva, NULL, &status, 0);
	TEST_ASSERT(!r && status >= 0, "move_pages(query): %ld, status %d", r, status);
	node = !status;
	r = syscall(__NR_move_pages, 0, 1, &hva, &node, &status, MPOL_MF_MOVE);
	TEST_ASSERT(!r && status == node,
		    "the victim's page did not move to node %d (%ld, status %d): the bench boots with numa=fake=2",
		    node, r, status);
	return pfn;
}

int main(void)
{
	char mode[16] = "", result[256], reason[64];
	struct kvm_regs regs_before, regs_after;
	struct kvm_sregs sregs_before, sregs_after;
	struct guest victim, attacker;
	long long before, after;
	bool ok, enforce, stops, refused_expected;
	unsigned long address;
	int i, ret, fd, tries, expected;

	ksft_print_header();
	if (access(COUNTERS_FILE, R_OK))
		ksft_exit_skip("hyperps.ko is not registered (no %s)\n", COUNTERS_FILE);
	if (access(ATTACK_FILE, W_OK))
		ksft_exit_skip("hyperps_attack.ko is not loaded (no %s)\n", ATTACK_FILE);
	fd = open(MODE_FILE, O_RDONLY);
	if (fd >= 0) {
		ret = read(fd, mode, sizeof(mode) - 1);
		mode[ret > 0 ? ret : 0] = '\0';
		close(fd);
	}
	enforce = !strncmp(mode, "enforce", 7);
	if (!enforce && strncmp(mode, "audit", 5))
		ksft_exit_fail_msg("unknown hyperps mode '%s'\n", mode);
	ksft_print_msg("hyperps mode: %s\n", enforce ? "enforce" : "audit");

	ksft_set_plan(ARRAY_SIZE(attacks) + 1);

	guest_start(&victim, VICTIM_SEED);
	TEST_ASSERT_EQ(guest_step(&victim), 0);
	TEST_ASSERT_EQ(guest_step(&victim), 1);

	for (i = 0; i < ARRAY_SIZE(attacks); i++) {
		unsigned int flags = attacks[i].flags;
		const char *class = attacks[i].class;
		bool seal = flags & SEAL;

		if (!enforce && (flags & ENFORCE_ONLY)) {
			ksft_test_result_skip("%s is not let through in audit mode\n",
					      attacks[i].name);
			continue;
		}
		guest_start(&attacker, ATTACKER_SEED + ((u64)i << 16));
		TEST_ASSERT_EQ(guest_step(&attacker), 0);
		TEST_ASSERT_EQ(guest_step(&attacker), 1);

		address = 0;
		if (!strcmp(attacks[i].name, "static_call_retarget")) {
			address = kernel_symbol("__SCK__hyperps_op_vmcs_write");
			TEST_ASSERT(address, "no %s in /proc/kallsyms (CONFIG_KALLSYMS_ALL)",
				    "__SCK__hyperps_op_vmcs_write");
		}
		if (!strcmp(attacks[i].name, "zap_then_free") ||
		    !strncmp(attacks[i].name, "ksm_merge_", 10)) {
			/* Ops of the core kernel, reached where a ROP chain would. */
			const char *op = attacks[i].name[0] == 'z' ?
					 "__SCT__hyperps_op_free_pages" :
					 "__SCT__hyperps_op_ksm_merge";

			address = kernel_symbol(op);
			TEST_ASSERT(address, "no %s in /proc/kallsyms (CONFIG_KALLSYMS_ALL)", op);
		}
		if (!strcmp(attacks[i].name, "destroyed_vm_frame"))
			address = destroyed_vm_page();
		if (!strcmp(attacks[i].name, "migrated_victim_frame"))
			address = migrate_victim_page(&attacker, &victim);
		if (!strcmp(attacks[i].name, "vmptrld_elsewhere")) {
			TEST_ASSERT_EQ(run_attack("victim_vmcs", &attacker, &victim, 0,
						  result, sizeof(result)), 0);
			TEST_ASSERT(sscanf(result, "vmcs %lx", &address) == 1,
				    "no vmcs address in '%s'", result);
		}

		vcpu_regs_get(victim.vcpu, &regs_before);
		vcpu_sregs_get(victim.vcpu, &sregs_before);
		before = read_counter(class, "seal_refused");
		/*
		 * The attacks need the leaves that map both guests' pages; if KVM
		 * zapped one meanwhile (-ENOENT, nothing was written), fault it back in.
		 */
		for (tries = 0; tries < 3; tries++) {
			ret = (flags & CHILD) ?
			      run_attack_elsewhere(attacks[i].name, &attacker, &victim,
						   address, result, sizeof(result)) :
			      run_attack(attacks[i].name, &attacker, &victim, address,
					 result, sizeof(result));
			if (ret != -ENOENT)
				break;
			ksft_print_msg("%s: a leaf is not mapped; running both guests again\n",
				       attacks[i].name);
			TEST_ASSERT_EQ(guest_step(&attacker), 1);
			TEST_ASSERT_EQ(guest_step(&victim), 1);
			vcpu_regs_get(victim.vcpu, &regs_before);
			vcpu_sregs_get(victim.vcpu, &sregs_before);
		}
		ok = true;
		/* Records and the seal are enforced in both modes. */
		refused_expected = enforce || (flags & (RECORDS | SEAL));
		if (ret) {
			ksft_print_msg("%s: the attack module failed: %s\n",
				       attacks[i].name, strerror(-ret));
			ok = false;
		} else {
			ksft_print_msg("%s\n", result);
			if (flags & ARMED) {
				if (strncmp(result, "armed ", 6)) {
					ksft_print_msg("%s: not armed\n", attacks[i].name);
					ok = false;
				}
			} else if (flags & NO_VERDICT) {
				if (strncmp(result, "called ", 7))
					ok = false;
			} else if (refused_expected && strncmp(result, "refused ", 8)) {
				ksft_print_msg("%s: the value reached the hardware\n",
					       attacks[i].name);
				ok = false;
			} else if (!refused_expected && strncmp(result, "ALLOWED ", 8)) {
				ksft_print_msg("%s: audit mode did not let the value through\n",
					       attacks[i].name);
				ok = false;
			}
		}

		/* The victim's registers: nothing of the attack reached them. */
		vcpu_regs_get(victim.vcpu, &regs_after);
		vcpu_sregs_get(victim.vcpu, &sregs_after);
		if (!regs_equal(&regs_before, &regs_after, &sregs_before, &sregs_after)) {
			ksft_print_msg("%s: the victim's registers changed\n",
				       attacks[i].name);
			ok = false;
		}

		/* The attacker's next entry decides the MSR-list attacks. */
		stops = (flags & STOPS) && refused_expected;
		ret = guest_step(&attacker);
		if (stops && ret != -EIO) {
			ksft_print_msg("%s: the attacker VM was not stopped (KVM_RUN: %d)\n",
				       attacks[i].name, ret);
			ok = false;
		} else if (!stops && ret != 1) {
			ksft_print_msg("%s: the attacker VM no longer runs (KVM_RUN: %d)\n",
				       attacks[i].name, ret);
			ok = false;
		}
		if ((flags & ARMED) && !stops)
			TEST_ASSERT_EQ(run_attack("msr_disarm", &attacker, &victim, 0,
						  result, sizeof(result)), 0);

		after = read_counter(class, "seal_refused");
		expected = (flags & TWO_CHECKS) && !refused_expected ? 2 : 1;
		/* Let through, an armed attack is refused again at every entry. */
		if ((flags & ARMED) && !stops ? after <= before : after != before + expected) {
			ksft_print_msg("%s: %s refused went %lld -> %lld, expected +%d\n",
				       attacks[i].name, class ? class : "seal", before,
				       after, expected);
			ok = false;
		}
		if (!seal) {
			const char *logged = refused_expected ? " enforced" : " audit";

			if (!last_refusal_is(class, logged, reason, sizeof(reason))) {
				ksft_print_msg("%s: the last refusal logged is not an%s %s one\n",
					       attacks[i].name, logged, class);
				ok = false;
			} else {
				ksft_print_msg("%s: logged as %s %s%s\n", attacks[i].name,
					       class, reason, logged);
			}
		}

		ret = guest_step(&victim);
		if (ret != 1 || !guest_memory_intact(&victim)) {
			ksft_print_msg("%s: the victim did not run on intact (KVM_RUN: %d)\n",
				       attacks[i].name, ret);
			ok = false;
		}
		ksft_test_result(ok, "%s is %s, counted and logged; victim intact\n",
				 attacks[i].name,
				 refused_expected ? "refused" : "audited");

		/* A stopped VM refuses the ioctls that free it; exit() releases it. */
		if (!stops)
			kvm_vm_free(attacker.vm);
	}

	ret = guest_step(&victim);
	ksft_test_result(ret == 1 && guest_memory_intact(&victim),
			 "the victim still runs with its memory intact after all attacks\n");
	kvm_vm_free(victim.vm);
	ksft_finished();
}
