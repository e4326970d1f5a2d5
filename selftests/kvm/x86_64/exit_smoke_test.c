// SPDX-License-Identifier: GPL-2.0
/*
 * exit_smoke_test: the smallest proof that VT-x guests run on this host.
 *
 * A real-mode guest writes a byte to an I/O port, halts, and after the HLT writes a
 * second byte. The VM has no in-kernel irqchip, so KVM hands both the I/O exits and
 * the HLT exit to userspace, where the test checks each one and its payload.
 */
#include <stdint.h>
#include <string.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "kselftest.h"

#define CODE_GPA	0x1000
#define PORT_BEFORE	0x42
#define BYTE_BEFORE	0xa5
#define PORT_AFTER	0x43
#define BYTE_AFTER	0x5a

static const u8 guest_code[] = {
	0xb0, BYTE_BEFORE,	/* mov $BYTE_BEFORE, %al */
	0xe6, PORT_BEFORE,	/* out %al, $PORT_BEFORE */
	0xf4,			/* hlt */
	0xb0, BYTE_AFTER,	/* mov $BYTE_AFTER, %al */
	0xe6, PORT_AFTER,	/* out %al, $PORT_AFTER */
	0xf4,			/* hlt */
};

static void expect_io_out(struct kvm_vcpu *vcpu, u16 port, u8 byte)
{
	struct kvm_run *run = vcpu->run;
	u8 data;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT(run->io.port == port && run->io.size == 1 &&
		    run->io.direction == KVM_EXIT_IO_OUT && run->io.count == 1,
		    "unexpected I/O exit: port 0x%x size %u dir %u count %u",
		    run->io.port, run->io.size, run->io.direction, run->io.count);
	data = *((u8 *)run + run->io.data_offset);
	TEST_ASSERT(data == byte, "guest wrote 0x%x to port 0x%x, expected 0x%x",
		    data, port, byte);
	ksft_test_result_pass("I/O exit: outb 0x%x to port 0x%x\n", data, port);
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_vm *vm;

	ksft_print_header();
	ksft_set_plan(4);

	/* Barebones: no irqchip, so HLT exits to userspace instead of blocking in KVM. */
	vm = vm_create_barebones();
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, 0, 1, 4, 0);
	memcpy(addr_gpa2hva(vm, CODE_GPA), guest_code, sizeof(guest_code));

	vcpu = __vm_vcpu_add(vm, 0);
	vcpu_sregs_get(vcpu, &sregs);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	vcpu_sregs_set(vcpu, &sregs);
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rflags = 0x2;
	vcpu_regs_set(vcpu, &regs);

	expect_io_out(vcpu, PORT_BEFORE, BYTE_BEFORE);

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_HLT);
	vcpu_regs_get(vcpu, &regs);
	TEST_ASSERT(regs.rip == CODE_GPA + 5, "HLT exit at rip 0x%llx, expected 0x%x",
		    regs.rip, CODE_GPA + 5);
	ksft_test_result_pass("HLT exit at rip 0x%llx\n", regs.rip);

	expect_io_out(vcpu, PORT_AFTER, BYTE_AFTER);

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_HLT);
	ksft_test_result_pass("guest resumed after HLT and halted again\n");

	kvm_vm_free(vm);
	ksft_finished();
}
