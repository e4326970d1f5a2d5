// SPDX-License-Identifier: GPL-2.0
/*
 * hyperps_vm_attack_test: a compromised host attacks one VM's isolation
 * through another VM, and HyperPS must refuse every attempt.
 *
 * A victim VM fills its memory with a pattern.  For each attack a fresh
 * attacker VM is created and run, then hyperps_attack.ko calls the HyperPS
 * hooks the way the patched KVM call sites do, with a malicious value:
 *
 *  - eptp_foreign_root:  the attacker's EPT pointer aimed at the victim's root
 *  - host_rip:           HOST_RIP pointed at code of the attack module
 *  - extint_exiting_off: external-interrupt exiting turned off
 *  - nmi_exiting_off:    NMI exiting turned off
 *  - spte_foreign_frame: an attacker SPTE mapping a frame of the victim
 *  - spte_hyperps_page:  an attacker SPTE mapping the victim's EPT root
 *
 * In enforce mode each attempt must be refused (the value never reaches the
 * VMCS or the EPT), counted in its class and recorded in the refusal log.  A
 * refused SPTE write stops the attacker VM (KVM_RUN fails with EIO); a refused
 * VMWRITE leaves the attacker's VMCS as it was, so the attacker VM still runs.
 * In audit mode each attempt must be counted and logged as audited, and
 * reach the hardware (the attack module undoes it before any vCPU runs).  In
 * both modes the victim keeps running after every attack with its memory
 * intact.
 *
 * Needs hyperps.ko registered and hyperps_attack.ko loaded; skips otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "kselftest.h"

#define ATTACK_FILE	"/sys/kernel/debug/hyperps_attack/vm"
#define COUNTERS_FILE	"/sys/kernel/debug/hyperps/counters"
#define REFUSALS_FILE	"/sys/kernel/debug/hyperps/refusals"
#define MODE_FILE	"/sys/module/hyperps/parameters/mode"

#define MEM_GPA		0x10000000ULL
#define MEM_SLOT	1
#define MEM_PAGES	16
#define WORDS_PER_PAGE	(PAGE_SIZE / sizeof(u64))

#define VICTIM_SEED	0x5eed0000c0ffee00ULL
#define ATTACKER_SEED	0xa77ac4e400000000ULL

/* Stage 0: fill one word per page with seed + page; then verify, forever. */
static void guest_code(u64 seed)
{
	u64 *mem = (u64 *)MEM_GPA;
	int i;

	for (i = 0; i < MEM_PAGES; i++)
		WRITE_ONCE(mem[i * WORDS_PER_PAGE], seed + i);
	GUEST_SYNC(0);
	for (;;) {
		for (i = 0; i < MEM_PAGES; i++)
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
	g->vm = vm_create_with_one_vcpu(&g->vcpu, guest_code);
	vm_userspace_mem_region_add(g->vm, VM_MEM_SRC_ANONYMOUS, MEM_GPA,
				    MEM_SLOT, MEM_PAGES, 0);
	virt_map(g->vm, MEM_GPA, MEM_GPA, MEM_PAGES);
	g->seed = seed;
	vcpu_args_set(g->vcpu, 1, seed);
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

/* The host's view of the guest's memory. */
static bool guest_memory_intact(struct guest *g)
{
	int i;

	for (i = 0; i < MEM_PAGES; i++) {
		u64 *word = addr_gpa2hva(g->vm, MEM_GPA + i * PAGE_SIZE);

		if (*word != g->seed + i) {
			ksft_print_msg("page %d holds 0x%llx, expected 0x%llx\n",
				       i, (unsigned long long)*word,
				       (unsigned long long)(g->seed + i));
			return false;
		}
	}
	return true;
}

static long long read_refused(const char *class)
{
	char line[256], name[32];
	unsigned long long verified, refused;
	long long found = -1;
	FILE *f = fopen(COUNTERS_FILE, "r");

	TEST_ASSERT(f, "cannot open %s", COUNTERS_FILE);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%31s verified %llu refused %llu", name,
			   &verified, &refused) == 3 && !strcmp(name, class))
			found = refused;
	fclose(f);
	TEST_ASSERT(found >= 0, "no counter for class %s", class);
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

static int run_attack(const char *attack, struct guest *attacker,
		      struct guest *victim, char *result, size_t len)
{
	char cmd[128];
	ssize_t n;
	int fd;

	snprintf(cmd, sizeof(cmd), "%s %d %d %llx %llx\n", attack,
		 attacker->vm->fd, victim->vm->fd, MEM_GPA, MEM_GPA);
	fd = open(ATTACK_FILE, O_RDWR);
	TEST_ASSERT(fd >= 0, "cannot open %s", ATTACK_FILE);
	n = write(fd, cmd, strlen(cmd));
	if (n < 0) {
		close(fd);
		return -errno;
	}
	close(fd);

	fd = open(ATTACK_FILE, O_RDONLY);
	TEST_ASSERT(fd >= 0, "cannot open %s", ATTACK_FILE);
	n = read(fd, result, len - 1);
	close(fd);
	TEST_ASSERT(n > 0, "no result for %s", attack);
	result[n] = '\0';
	if (n && result[n - 1] == '\n')
		result[n - 1] = '\0';
	return 0;
}

static const struct {
	const char *name;
	const char *class;
	bool stops_attacker;
} attacks[] = {
	{ "eptp_foreign_root",	"eptp",	false },
	{ "host_rip",		"vmcs",	false },
	{ "extint_exiting_off",	"vmcs",	false },
	{ "nmi_exiting_off",	"vmcs",	false },
	{ "spte_foreign_frame",	"ept",	true },
	{ "spte_hyperps_page",	"ept",	true },
};

int main(void)
{
	char mode[16] = "", result[256], reason[64];
	struct guest victim, attacker;
	long long before, after;
	bool ok, enforce, stops;
	int i, ret, fd, tries;

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

	for (i = 0; i < ARRAY_SIZE(attacks); i++) {
		guest_start(&attacker, ATTACKER_SEED + ((u64)i << 16));
		TEST_ASSERT_EQ(guest_step(&attacker), 0);

		before = read_refused(attacks[i].class);
		/*
		 * The SPTE attacks need the leaves that map both guests' pages; if KVM
		 * zapped one meanwhile (-ENOENT, nothing was written), fault it back in.
		 */
		for (tries = 0; tries < 3; tries++) {
			ret = run_attack(attacks[i].name, &attacker, &victim, result,
					 sizeof(result));
			if (ret != -ENOENT)
				break;
			ksft_print_msg("%s: a leaf is not mapped; running both guests again\n",
				       attacks[i].name);
			TEST_ASSERT_EQ(guest_step(&attacker), 1);
			TEST_ASSERT_EQ(guest_step(&victim), 1);
		}
		after = read_refused(attacks[i].class);
		ok = true;
		if (ret) {
			ksft_print_msg("%s: the attack module failed: %s\n",
				       attacks[i].name, strerror(-ret));
			ok = false;
		} else {
			ksft_print_msg("%s\n", result);
			if (enforce && strncmp(result, "refused ", 8)) {
				ksft_print_msg("%s: the value reached the hardware\n",
					       attacks[i].name);
				ok = false;
			} else if (!enforce && strncmp(result, "ALLOWED ", 8)) {
				ksft_print_msg("%s: audit mode did not let the value through\n",
					       attacks[i].name);
				ok = false;
			}
		}
		if (after != before + 1) {
			ksft_print_msg("%s: %s refused went %lld -> %lld, expected +1\n",
				       attacks[i].name, attacks[i].class, before, after);
			ok = false;
		}
		if (!last_refusal_is(attacks[i].class, enforce ? " enforced" : " audit",
				     reason, sizeof(reason))) {
			ksft_print_msg("%s: the last refusal logged is not an %s %s one\n",
				       attacks[i].name, enforce ? "enforced" : "audited",
				       attacks[i].class);
			ok = false;
		} else {
			ksft_print_msg("%s: logged as %s %s\n", attacks[i].name,
				       attacks[i].class, reason);
		}

		/* Only an enforced SPTE refusal stops the attacker VM. */
		stops = enforce && attacks[i].stops_attacker;
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

		ret = guest_step(&victim);
		if (ret != 1 || !guest_memory_intact(&victim)) {
			ksft_print_msg("%s: the victim did not run on intact (KVM_RUN: %d)\n",
				       attacks[i].name, ret);
			ok = false;
		}
		ksft_test_result(ok, "%s is %s, counted and logged; victim intact\n",
				 attacks[i].name, enforce ? "refused" : "audited");

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
