// SPDX-License-Identifier: GPL-2.0
/*
 * hyperps_multi_vm_test: several VMs with several vCPUs each live side by
 * side, gain and lose memory slots, touch their memory and are destroyed one
 * by one, while the others keep running.
 *
 * Every vCPU writes a word that names its VM, its vCPU and the address into
 * each page it is told to touch, and later checks that the word is still
 * there; the host checks the same words through its own mapping.  One VM
 * deletes a slot and another then adds one, so frames the first VM gave up
 * can come back in the second (HyperPS must hand them over, not refuse them).
 *
 * The test is plain KVM and runs without HyperPS.  With hyperps.ko registered
 * it also checks that nothing was refused, that EPT writes and ownership
 * changes were verified, that VM and vCPU records come and go with the VMs,
 * and that once the VMs are gone every frame they owned, and every page HyperPS
 * protected for them, is back with the host.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "kselftest.h"
#include "hyperps_counters.h"

#define NR_VMS		3
#define NR_VCPUS	2

#define SLOT_BASE	1
#define SLOT_EXTRA	2
#define SLOT_LATE	3
#define BASE_GPA	0x10000000ULL
#define EXTRA_GPA	0x20000000ULL
#define LATE_GPA	0x30000000ULL
#define BASE_PAGES	64
#define EXTRA_PAGES	32
#define LATE_PAGES	32

/* What the guest does next; written by the host before each round. */
struct command {
	u64 gpa;
	u64 pages;
	u64 verify;
};

static struct command cmd;

static u64 word_for(u64 vm, u64 vcpu, u64 gpa)
{
	return (vm << 56) | (vcpu << 48) | gpa;
}

static void guest_code(u64 vm, u64 vcpu)
{
	u64 i;

	for (;;) {
		u64 gpa = READ_ONCE(cmd.gpa), pages = READ_ONCE(cmd.pages);
		bool verify = READ_ONCE(cmd.verify);

		for (i = 0; i < pages; i++) {
			u64 page = gpa + i * PAGE_SIZE;
			u64 *word = (u64 *)page + vcpu;

			if (verify)
				GUEST_ASSERT_EQ(READ_ONCE(*word), word_for(vm, vcpu, page));
			else
				WRITE_ONCE(*word, word_for(vm, vcpu, page));
		}
		GUEST_SYNC(0);
	}
}

struct test_vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	bool alive;
};

static struct test_vm vms[NR_VMS];

static void add_slot(struct test_vm *t, u32 slot, u64 gpa, u64 pages)
{
	vm_userspace_mem_region_add(t->vm, VM_MEM_SRC_ANONYMOUS, gpa, slot, pages, 0);
	virt_map(t->vm, gpa, gpa, pages);
}

/* Every vCPU of VM @i touches (or checks) @pages pages at @gpa. */
static void round_vm(int i, u64 gpa, u64 pages, bool verify)
{
	struct test_vm *t = &vms[i];
	struct ucall uc;
	int v;

	cmd = (struct command){ .gpa = gpa, .pages = pages, .verify = verify };
	sync_global_to_guest(t->vm, cmd);
	for (v = 0; v < NR_VCPUS; v++) {
		vcpu_run(t->vcpus[v]);
		switch (get_ucall(t->vcpus[v], &uc)) {
		case UCALL_SYNC:
			break;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		default:
			TEST_FAIL("VM %d vCPU %d: unexpected exit %s", i, v,
				  exit_reason_str(t->vcpus[v]->run->exit_reason));
		}
	}
}

static void round_all(u64 gpa, u64 pages, bool verify)
{
	int i;

	for (i = 0; i < NR_VMS; i++)
		if (vms[i].alive)
			round_vm(i, gpa, pages, verify);
}

/* The host's view: every vCPU's word in every page of the range. */
static bool host_sees(int i, u64 gpa, u64 pages)
{
	u64 p, v;

	for (p = 0; p < pages; p++) {
		u64 page = gpa + p * PAGE_SIZE;
		u64 *words = addr_gpa2hva(vms[i].vm, page);

		for (v = 0; v < NR_VCPUS; v++)
			if (words[v] != word_for(i, v, page)) {
				ksft_print_msg("VM %d page 0x%llx vCPU %llu: 0x%llx\n", i,
					       (unsigned long long)page,
					       (unsigned long long)v,
					       (unsigned long long)words[v]);
				return false;
			}
	}
	return true;
}

int main(void)
{
	struct hps_counters start, full, end;
	bool ok;
	int i, v;

	ksft_print_header();
	start = hps_counters_read();
	ksft_set_plan(start.present ? 8 : 5);

	for (i = 0; i < NR_VMS; i++) {
		vms[i].vm = vm_create(NR_VCPUS);
		for (v = 0; v < NR_VCPUS; v++) {
			vms[i].vcpus[v] = vm_vcpu_add(vms[i].vm, v, guest_code);
			vcpu_args_set(vms[i].vcpus[v], 2, (u64)i, (u64)v);
		}
		add_slot(&vms[i], SLOT_BASE, BASE_GPA, BASE_PAGES);
		vms[i].alive = true;
	}
	round_all(BASE_GPA, BASE_PAGES, false);
	round_all(BASE_GPA, BASE_PAGES, true);
	ok = true;
	for (i = 0; i < NR_VMS; i++)
		ok &= host_sees(i, BASE_GPA, BASE_PAGES);
	ksft_test_result(ok, "%d VMs x %d vCPUs wrote and read back %d pages each\n",
			 NR_VMS, NR_VCPUS, BASE_PAGES);

	for (i = 0; i < NR_VMS; i++)
		add_slot(&vms[i], SLOT_EXTRA, EXTRA_GPA, EXTRA_PAGES);
	round_all(EXTRA_GPA, EXTRA_PAGES, false);
	round_all(BASE_GPA, BASE_PAGES, true);
	ok = true;
	for (i = 0; i < NR_VMS; i++)
		ok &= host_sees(i, EXTRA_GPA, EXTRA_PAGES);
	ksft_test_result(ok, "a slot added to every running VM is usable\n");
	full = hps_counters_read();

	/* VM 0 gives its extra slot back; VM 1 then takes new memory. */
	vm_mem_region_delete(vms[0].vm, SLOT_EXTRA);
	add_slot(&vms[1], SLOT_LATE, LATE_GPA, LATE_PAGES);
	round_vm(1, LATE_GPA, LATE_PAGES, false);
	round_all(BASE_GPA, BASE_PAGES, true);
	round_vm(1, EXTRA_GPA, EXTRA_PAGES, true);
	ksft_test_result(host_sees(1, LATE_GPA, LATE_PAGES) && host_sees(0, BASE_GPA, BASE_PAGES),
			 "a slot deleted in one VM and one added in another leave both intact\n");

	for (i = 0; i < NR_VMS; i++) {
		kvm_vm_free(vms[i].vm);
		vms[i].alive = false;
		round_all(BASE_GPA, BASE_PAGES, true);
		if (i == 0)
			ksft_test_result(host_sees(1, BASE_GPA, BASE_PAGES) &&
					 host_sees(2, BASE_GPA, BASE_PAGES),
					 "destroying one VM leaves the others running intact\n");
	}

	/* A fresh VM after all that still works (frames come back from the dead VMs). */
	vms[0].vm = vm_create(NR_VCPUS);
	for (v = 0; v < NR_VCPUS; v++) {
		vms[0].vcpus[v] = vm_vcpu_add(vms[0].vm, v, guest_code);
		vcpu_args_set(vms[0].vcpus[v], 2, 0ULL, (u64)v);
	}
	add_slot(&vms[0], SLOT_BASE, BASE_GPA, BASE_PAGES);
	vms[0].alive = true;
	round_vm(0, BASE_GPA, BASE_PAGES, false);
	round_vm(0, BASE_GPA, BASE_PAGES, true);
	ksft_test_result(host_sees(0, BASE_GPA, BASE_PAGES),
			 "a new VM created after the others were destroyed runs\n");
	kvm_vm_free(vms[0].vm);

	if (start.present) {
		/* Freed EPT pages wait for a global INVEPT, done from a work item. */
		for (i = 0; i < 50; i++) {
			end = hps_counters_read();
			if (end.vm <= start.vm &&
			    end.protected <= start.protected)
				break;
			usleep(100 * 1000);
		}
		/* Before, with all VMs up, after. */
		ksft_print_msg("hyperps: VMs %llu -> %llu -> %llu, vCPUs %llu -> %llu -> %llu\n",
			       start.live_vms, full.live_vms, end.live_vms,
			       start.live_vcpus, full.live_vcpus, end.live_vcpus);
		ksft_print_msg("hyperps: refused %llu -> %llu, ept +%llu ownership +%llu\n",
			       start.refused, end.refused,
			       end.ept_verified - start.ept_verified,
			       end.ownership_verified - start.ownership_verified);
		ksft_test_result(end.refused == start.refused &&
				 end.anomalies == start.anomalies &&
				 end.ept_verified > start.ept_verified &&
				 end.ownership_verified > start.ownership_verified,
				 "hyperps verified the EPT and ownership changes and refused none\n");
		ksft_test_result(full.live_vms == start.live_vms + NR_VMS &&
				 full.live_vcpus == start.live_vcpus + NR_VMS * NR_VCPUS &&
				 end.live_vms == start.live_vms &&
				 end.live_vcpus == start.live_vcpus,
				 "hyperps tracked the VMs and vCPUs and dropped them on destroy\n");
		ksft_print_msg("hyperps: frames owned by VMs %llu -> %llu -> %llu\n",
			       start.vm, full.vm, end.vm);
		ksft_print_msg("hyperps: protected pages %llu -> %llu -> %llu\n",
			       start.protected, full.protected,
			       end.protected);
		ksft_test_result(full.vm >= start.vm +
				 NR_VMS * (BASE_PAGES + EXTRA_PAGES) &&
				 end.vm == start.vm &&
				 full.protected > start.protected &&
				 end.protected == start.protected,
				 "the frames and protected pages of the VMs are back with the host\n");
	}
	ksft_finished();
}
