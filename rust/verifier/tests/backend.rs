// SPDX-License-Identifier: GPL-2.0

//! The backend against a mock kernel: every class of attack of the L1 soundness issue, written
//! as the sequence of legal-looking calls an attacker makes, and the flows a real host makes.

mod common;

use common::mock::*;
use common::*;
use hyperps_verifier::policy::backend::*;
use hyperps_verifier::*;

const VMM_A: usize = 0xa000;
const VMM_B: usize = 0xb000;
const HVA_A: u64 = 0x7f00_0000_0000;
const HVA_B: u64 = 0x7e00_0000_0000;

struct World {
    p: Mock,
    t: EptMem,
}

fn world() -> World {
    World {
        p: Mock::new(),
        t: EptMem::default(),
    }
}

/// Two VMs of two VMMs, A (victim) and B (attacker); A maps frame 2000 at GFN_BASE.
fn two_vms(b: &mut Backend<'_>, w: &mut World) -> (TestVm, TestVm) {
    let a = make_vm(b, &mut w.p, &mut w.t, 0xa1, VMM_A, HVA_A);
    let x = make_vm(b, &mut w.p, &mut w.t, 0xb1, VMM_B, HVA_B);
    w.p.map(a.mm, a.hva_of(GFN_BASE), 2000, true);
    w.p.contents.insert(2000, 0x5ec2e7);
    assert_eq!(
        a.map(b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Written
    );
    (a, x)
}

#[test]
fn a_frame_becomes_the_vms_when_its_vmm_maps_it() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    assert_eq!(
        b.verifier().frame_state(Pfn(2000)),
        Some(FrameState::Vm(vm_id(&b, &a)))
    );
    assert_eq!(w.p.refusals(), 0);
}

fn vm_id(b: &Backend<'_>, _vm: &TestVm) -> VmId {
    // The first VM created takes slot 0, generation 0.
    let _ = b;
    VmId::from_raw(0)
}

/// Class 1: a zap (a value KVM writes every day) followed by another VM's leaf on the frame.
#[test]
fn zap_then_map_into_another_vm_is_refused() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    assert_eq!(
        a.zap(&mut b, &mut w.p, &mut w.t, GFN_BASE),
        SpteOutcome::Written
    );
    // The attacker's VMM maps the victim's frame too (the host can arrange that).
    w.p.map(x.mm, x.hva_of(GFN_BASE), 2000, true);
    let before = w.t.get(x.l1, 0);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::EptForeignFrame));
    assert_eq!(w.p.killed, vec![x.kvm]);
    assert_eq!(w.t.get(x.l1, 0), before, "the refused leaf was not written");
    // The frame is still the victim's, data and all, and the victim may map it again.
    assert_eq!(w.p.contents.get(&2000), Some(&0x5ec2e7));
    assert_eq!(
        a.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Written
    );
}

/// Ownership ends only when the page allocator frees the frame, with a scrub.
#[test]
fn a_freed_frame_is_scrubbed_and_then_anyones() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    // Still mapped: the free is refused and the page kept.
    assert!(b.free_pages(&mut w.p, Pfn(2000), 0));
    assert_eq!(w.p.last(), Some(Denial::FrameMapped));
    assert!(w.p.scrubbed.is_empty());
    assert_eq!(
        a.zap(&mut b, &mut w.p, &mut w.t, GFN_BASE),
        SpteOutcome::Written
    );
    // Zapped, but the VMM still has the page: a free op without a free changes nothing.
    w.p.referenced.insert(2000);
    assert!(b.free_pages(&mut w.p, Pfn(2000), 0));
    assert_eq!(w.p.last(), Some(Denial::FrameInUse));
    assert!(w.p.scrubbed.is_empty());
    assert_eq!(w.p.contents.get(&2000), Some(&0x5ec2e7));
    // The page allocator really frees it.
    w.p.referenced.remove(&2000);
    assert!(!b.free_pages(&mut w.p, Pfn(2000), 0));
    assert_eq!(w.p.scrubbed, vec![Pfn(2000)]);
    assert_eq!(w.p.contents.get(&2000), None, "the victim's data is gone");
    assert_eq!(b.verifier().frame_state(Pfn(2000)), Some(FrameState::Host));
    // Reused by the attacker's VMM: now it may map it.
    w.p.map(x.mm, x.hva_of(GFN_BASE), 2000, true);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Written
    );
}

/// A high-order free is all or nothing.
#[test]
fn a_block_with_one_mapped_frame_is_kept_whole() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    w.p.map(a.mm, a.hva_of(GFN_BASE + 1), 2001, true);
    assert_eq!(
        a.map(&mut b, &mut w.p, &mut w.t, GFN_BASE + 1, 2001, true),
        SpteOutcome::Written
    );
    assert_eq!(
        a.zap(&mut b, &mut w.p, &mut w.t, GFN_BASE + 1),
        SpteOutcome::Written
    );
    // 2000..2003, with 2000 still mapped.
    assert!(b.free_pages(&mut w.p, Pfn(2000), 2));
    assert!(w.p.scrubbed.is_empty());
    assert_eq!(
        b.verifier().frame_state(Pfn(2001)),
        Some(FrameState::Vm(VmId::from_raw(0)))
    );
}

/// Class 2: a leaf may only name what the VM's own VMM maps at the memslot address.
#[test]
fn only_the_vmms_memory_at_the_slot_address_is_donated() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    let g = GFN_BASE + 5;
    // A victim frame its guest has not touched yet: host-owned, mapped only by the victim.
    w.p.map(a.mm, a.hva_of(g), 2005, true);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, g, 2005, true),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::NotVmMemory));
    // A kernel page (say, another vCPU's vcpu_vmx) that the attacker's VMM got mapped.
    let kpage = w.p.kernel_page();
    w.p.map(x.mm, x.hva_of(g), kpage.0, true);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, g, kpage.0, true),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::KernelFrame));
    // The victim's own frame, named from the victim's context but for the attacker's VM.
    w.p.mm = a.mm;
    let victim_leaf = leaf(2005, 1, true);
    assert_eq!(
        write(
            &mut b,
            &mut w.p,
            &mut w.t,
            x.l1,
            (g % 512) as u16,
            1,
            victim_leaf,
            g
        ),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::WrongContext));
    // A guest frame outside every memslot of the VM.
    w.p.mm = x.mm;
    let outside = leaf(2005, 1, true);
    assert_eq!(
        write(
            &mut b,
            &mut w.p,
            &mut w.t,
            x.l1,
            7,
            1,
            outside,
            GFN_BASE + SLOT_PAGES + 7
        ),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::NoMemslot));
    // Nothing was donated on the way to these refusals.
    assert_eq!(b.verifier().frame_state(Pfn(2005)), Some(FrameState::Host));
    assert_eq!(b.verifier().frame_state(kpage), Some(FrameState::Host));
}

#[test]
fn writable_leaves_need_writable_memory() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let g = GFN_BASE + 9;
    w.p.map(a.mm, a.hva_of(g), 2009, false);
    assert_eq!(
        a.map(&mut b, &mut w.p, &mut w.t, g, 2009, true),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::ReadOnlyMapping));
    assert_eq!(
        a.map(&mut b, &mut w.p, &mut w.t, g, 2009, false),
        SpteOutcome::Written
    );
}

/// A 2 MiB leaf over 512 kernel frames, and over memory mapped with 4 KiB pages.
#[test]
fn huge_leaves_need_a_huge_mapping_of_process_memory() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let g = GFN_BASE + 512;
    let index = (g / 512) as u16;
    // 512 frames mapped one by one: no 2 MiB leaf.
    for i in 0..512 {
        w.p.map(a.mm, a.hva_of(g) + i * 4096, 2560 + i, true);
    }
    w.p.mm = a.mm;
    let huge = leaf(2560, 2, true);
    let leaves_before = b.leaf_writes();
    assert_eq!(
        write(&mut b, &mut w.p, &mut w.t, a.l2, index, 2, huge, g),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::NotVmMemory));
    // Kernel frames under a huge mapping.
    for i in 0..512 {
        w.p.kernel.insert(2560 + i);
    }
    w.p.map_2m(a.mm, a.hva_of(g), 2560, true);
    assert_eq!(
        write(&mut b, &mut w.p, &mut w.t, a.l2, index, 2, huge, g),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::KernelFrame));
    for i in 0..512 {
        w.p.kernel.remove(&(2560 + i));
    }
    assert_eq!(
        write(&mut b, &mut w.p, &mut w.t, a.l2, index, 2, huge, g),
        SpteOutcome::Written
    );
    assert_eq!(
        b.verifier().frame_state(Pfn(2560 + 511)),
        Some(FrameState::Vm(VmId::from_raw(0)))
    );
    // Only the leaf that was written is counted, as one 2 MiB leaf.
    let leaves = b.leaf_writes();
    assert_eq!(leaves[1], leaves_before[1] + 1);
    assert_eq!(leaves[0], leaves_before[0]);
}

/// A destroyed VM's frames are orphaned until the kernel frees them.
#[test]
fn a_destroyed_vms_frames_go_nowhere_until_freed() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    assert_eq!(
        a.zap(&mut b, &mut w.p, &mut w.t, GFN_BASE),
        SpteOutcome::Written
    );
    // Tear A's EPT down as KVM does and destroy it.
    for (table, index, level) in [(a.l2, 1u16, 2u8), (a.l3, 0, 3), (a.root, 0, 4)] {
        assert_eq!(
            write(&mut b, &mut w.p, &mut w.t, table, index, level, NONPRESENT, 0),
            SpteOutcome::Written
        );
    }
    for pt in [a.l1, a.l2, a.l3, a.root] {
        assert_eq!(b.pt_free(&mut w.p, pt), PtFree::Deferred);
    }
    w.p.mm = a.mm;
    // The backend keeps A's VMM (and its reference) to recognise A's next VM.
    assert_eq!(b.vm_destroy(&mut w.p, a.kvm), None);
    w.p.map(x.mm, x.hva_of(GFN_BASE), 2000, true);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::EptOrphanedFrame));
    assert!(!b.free_pages(&mut w.p, Pfn(2000), 0));
    assert_eq!(w.p.scrubbed, vec![Pfn(2000)]);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Written
    );
}

/// Class 4: `pt_free` takes only paging-structure pages it handed out.
#[test]
fn pt_free_refuses_what_pt_alloc_did_not_hand_out() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    // A victim's guest frame, a kernel page, and a vCPU's VMCS-like protected page.
    let kpage = w.p.kernel_page();
    for pfn in [Pfn(2000), kpage] {
        assert_eq!(b.pt_free(&mut w.p, pfn), PtFree::Keep);
        assert_eq!(w.p.last(), Some(Denial::NotPtPage));
    }
    // A linked table is not given back while it is linked.
    assert_eq!(b.pt_free(&mut w.p, a.l1), PtFree::Deferred);
    assert_eq!(b.deferred_pass1(), 0, "still linked and mapping a frame");
    // A page allocated but never used goes back at once.
    let spare = w.p.kernel_page();
    b.pt_alloc(&mut w.p, a.kvm, spare).unwrap();
    assert_eq!(b.pt_free(&mut w.p, spare), PtFree::Now);
}

/// Class 4: a KSM merge compares the pages and needs them write-protected.
#[test]
fn ksm_merges_need_equal_write_protected_pages() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    w.p.map(x.mm, x.hva_of(GFN_BASE), 3000, true);
    w.p.contents.insert(3000, 0xa77ac4);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 3000, false),
        SpteOutcome::Written
    );
    // Unequal contents: refused.
    assert!(b.ksm_merge(&mut w.p, 0, Pfn(2000), Pfn(3000)));
    assert_eq!(w.p.last(), Some(Denial::ContentMismatch));
    // Equal, but the victim still maps its page writable: refused.
    w.p.contents.insert(3000, 0x5ec2e7);
    assert!(b.ksm_merge(&mut w.p, 0, Pfn(2000), Pfn(3000)));
    assert_eq!(w.p.last(), Some(Denial::FrameMapped));
    // Write-protected as KSM leaves it: merged into a share, mapped read-only by both.
    let ro = leaf(2000, 1, false);
    assert_eq!(
        write(&mut b, &mut w.p, &mut w.t, a.l1, 0, 1, ro, GFN_BASE),
        SpteOutcome::Written
    );
    assert!(!b.ksm_merge(&mut w.p, 0, Pfn(2000), Pfn(3000)));
    assert!(matches!(
        b.verifier().frame_state(Pfn(3000)),
        Some(FrameState::Shared(_))
    ));
    // A VM maps the share read-only only where its own VMM maps it.
    w.p.map(a.mm, a.hva_of(GFN_BASE + 1), 3000, false);
    assert_eq!(
        a.map(&mut b, &mut w.p, &mut w.t, GFN_BASE + 1, 3000, false),
        SpteOutcome::Written
    );
    assert_eq!(
        a.map(&mut b, &mut w.p, &mut w.t, GFN_BASE + 2, 3000, false),
        SpteOutcome::Refused
    );
}

/// Host-only KSM merges are not tracked and need no check.
#[test]
fn ksm_merges_of_host_pages_are_not_tracked() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    w.p.contents.insert(3001, 1);
    assert!(!b.ksm_merge(&mut w.p, 0, Pfn(3000), Pfn(3001)));
    assert_eq!(b.verifier().frame_state(Pfn(3001)), Some(FrameState::Host));
}

/// Class 4: lifecycle ops are checked against the backend's own records.
#[test]
fn lifecycle_ops_are_checked() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    // A memslot for the victim VM, from the attacker's VMM.
    w.p.mm = x.mm;
    let slot = Memslot {
        id: 9,
        base_gfn: 0x10_0000,
        npages: 16,
        hva: HVA_B,
        ..Memslot::default()
    };
    assert_eq!(
        b.memslot_add(&mut w.p, a.kvm, &slot),
        Err(Denial::WrongContext)
    );
    // A malformed memslot from the VM's own VMM.
    w.p.mm = a.mm;
    let bad = Memslot {
        hva: u64::MAX - 4095,
        ..slot
    };
    assert_eq!(
        b.memslot_add(&mut w.p, a.kvm, &bad),
        Err(Denial::BadMemslot)
    );
    assert_eq!(b.memslot_count(a.kvm), 1);
    // Nor may another VMM remove the victim's memslot (its memory would become unmappable).
    w.p.mm = x.mm;
    let victims = Memslot {
        base_gfn: GFN_BASE,
        npages: SLOT_PAGES,
        hva: HVA_A,
        ..Memslot::default()
    };
    b.memslot_remove(&mut w.p, a.kvm, &victims);
    assert_eq!(w.p.last(), Some(Denial::WrongContext));
    assert_eq!(b.memslot_count(a.kvm), 1);
    // A VM from a kernel thread, and a second VM with the same handle.
    w.p.mm = Handle::NONE;
    assert_eq!(
        b.vm_create(&mut w.p, Handle(0xc1)),
        Err(Denial::WrongContext)
    );
    w.p.mm = x.mm;
    assert_eq!(b.vm_create(&mut w.p, a.kvm), Err(Denial::DuplicateHandle));
}

fn new_vcpu(
    b: &mut Backend<'_>,
    w: &mut World,
    vm: &TestVm,
    vcpu: usize,
) -> Result<VcpuInfo, Denial> {
    let mut page = || w.p.kernel_page().0 << 12;
    let info = VcpuInfo {
        kvm: vm.kvm,
        vcpu: Handle(vcpu),
        vpid: u16::try_from(vcpu & 0xff).unwrap() + 1,
        vmcs01_pa: page(),
        msr_bitmap_pa: page(),
        pml_pa: page(),
        ve_info_pa: 0,
        pi_desc_pa: 0,
        msr_autoload_guest_pa: page(),
        msr_autoload_host_pa: 0,
        virtual_apic_pa: page(),
    };
    w.p.mm = vm.mm;
    b.vcpu_create(&mut w.p, &info, true).map(|()| info)
}

/// A vCPU of `vm` whose vmcs01 is current on CPU 0, in VMX operation, as before an entry.
fn running_vcpu(b: &mut Backend<'_>, w: &mut World, vm: &TestVm) -> VcpuInfo {
    let info = new_vcpu(b, w, vm, 0x100).unwrap();
    let vmxon = w.p.kernel_page();
    w.p.mm = vm.mm;
    assert!(!b.vmxon(&mut w.p, vmxon.0 << 12));
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
    info
}

/// Class 4: a vCPU's pages must be kernel pages; nothing is registered on a refusal.
#[test]
fn vcpu_create_takes_only_kernel_pages_and_all_or_nothing() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let good = new_vcpu(&mut b, &mut w, &a, 0x100).unwrap();
    assert!(matches!(
        b.verifier().frame_state(Hpa(good.vmcs01_pa).pfn()),
        Some(FrameState::Protected(_))
    ));
    // The victim's guest frame as the virtual-APIC page of a new vCPU.
    let mut info = VcpuInfo {
        vcpu: Handle(0x101),
        vpid: 7,
        vmcs01_pa: w.p.kernel_page().0 << 12,
        virtual_apic_pa: 2000 << 12,
        ..good
    };
    info.msr_bitmap_pa = w.p.kernel_page().0 << 12;
    info.pml_pa = 0;
    info.msr_autoload_guest_pa = 0;
    w.p.mm = a.mm;
    assert_eq!(
        b.vcpu_create(&mut w.p, &info, true),
        Err(Denial::WrongState)
    );
    assert_eq!(
        b.verifier().frame_state(Hpa(info.vmcs01_pa).pfn()),
        Some(FrameState::Host),
        "vmcs01 was not taken on the way to the refusal"
    );
    assert_eq!(b.live_vcpus(), 1);
    // A user page (not yet any VM's) as vmcs01.
    let user = VcpuInfo {
        vmcs01_pa: 2100 << 12,
        virtual_apic_pa: 0,
        ..info
    };
    assert_eq!(b.vcpu_create(&mut w.p, &user, true), Err(Denial::UserFrame));
    // The same vCPU handle twice.
    assert_eq!(
        b.vcpu_create(&mut w.p, &good, true),
        Err(Denial::DuplicateHandle)
    );
}

/// Class 6: a VMCS is made current only from its VM's VMM or on teardown.
#[test]
fn vmptrld_from_another_vmm_is_refused() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    let info = running_vcpu(&mut b, &mut w, &a);
    w.p.mm = x.mm;
    assert!(b.vmcs_load(&mut w.p, info.vmcs01_pa));
    assert_eq!(w.p.last(), Some(Denial::WrongContext));
    // The refused VMPTRLD was not executed, so the caller's next VMWRITEs would land in
    // whatever VMCS the CPU still has: they are refused until a VMPTRLD goes through.
    let guest_rip = 0x681e;
    assert!(b.vmcs_write(&mut w.p, guest_rip, 0x1000));
    assert_eq!(w.p.last(), Some(Denial::NoCurrentVmcs));
    w.p.mm = a.mm;
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
    assert!(!b.vmcs_write(&mut w.p, guest_rip, 0x1000));
    // Teardown (an exiting task has no address space).
    assert!(!b.vmcs_clear(&mut w.p, info.vmcs01_pa));
    w.p.mm = Handle::NONE;
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
}

/// `HOST_RIP` is kvm_intel's `vmx_vmexit`, as its export table gives it, from the very first
/// write: an attacker who writes first cannot choose where every VM exit goes, not even
/// another address in kvm_intel's text; while kvm_intel is not loaded nothing is accepted.
#[test]
fn host_rip_is_kvm_intels_vmexit_even_for_the_first_write() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    running_vcpu(&mut b, &mut w, &a);
    let host_rip = 0x6c16;
    let gadget = VMX_VMEXIT + 0x40;
    assert!(b.vmcs_write(&mut w.p, host_rip, gadget));
    assert_eq!(w.p.last(), Some(Denial::HostStateMismatch));
    assert!(!b.vmcs_write(&mut w.p, host_rip, VMX_VMEXIT));
    assert!(b.vmcs_write(&mut w.p, host_rip, gadget));
    w.p.vmx_vmexit = 0;
    for value in [VMX_VMEXIT, 0, u64::MAX] {
        assert!(b.vmcs_write(&mut w.p, host_rip, value));
        assert_eq!(w.p.last(), Some(Denial::HostStateMismatch));
    }
}

/// A vCPU's pages are given back only as KVM frees the vCPU, never while it lives.
#[test]
fn a_live_vcpus_pages_are_not_freed() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let info = new_vcpu(&mut b, &mut w, &a, 0x100).unwrap();
    assert!(
        b.page_free(&mut w.p, info.vmcs01_pa),
        "vmcs01 of a live vCPU"
    );
    assert!(b.page_free(&mut w.p, info.msr_bitmap_pa), "its MSR bitmap");
    assert!(
        b.free_pages(&mut w.p, Hpa(info.pml_pa).pfn(), 0),
        "its PML page"
    );
    assert_eq!(w.p.last(), Some(Denial::ProtectedFree));
    // Another VMM cannot start the vCPU's teardown.
    w.p.mm = Handle(VMM_B);
    b.vcpu_free(&mut w.p, a.kvm, info.vcpu);
    assert_eq!(w.p.last(), Some(Denial::WrongContext));
    assert!(b.page_free(&mut w.p, info.vmcs01_pa), "still not freed");
    // The real teardown: vcpu_free, then vmcs01, then the pages.
    w.p.mm = a.mm;
    b.vcpu_free(&mut w.p, a.kvm, info.vcpu);
    assert!(!b.page_free(&mut w.p, info.vmcs01_pa));
    // A VMCS holds a guest's registers: scrubbed before the host gets it back.
    assert!(w.p.scrubbed.contains(&Hpa(info.vmcs01_pa).pfn()));
    assert!(!b.page_free(&mut w.p, info.msr_bitmap_pa));
    assert!(!b.free_pages(&mut w.p, Hpa(info.pml_pa).pfn(), 0));
    assert_eq!(b.live_vcpus(), 0);
    // Now the VM can go.
    w.p.mm = a.mm;
    assert_eq!(b.vm_destroy(&mut w.p, a.kvm), None);
}

#[test]
fn vm_destroy_with_vcpus_is_refused() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    new_vcpu(&mut b, &mut w, &a, 0x100).unwrap();
    assert_eq!(b.vm_destroy(&mut w.p, a.kvm), None);
    assert_eq!(w.p.last(), Some(Denial::VmBusy));
    assert_eq!(b.live_vms(), 2);
}

/// The APIC-access page and L1 pages of a vmcs02 become the VM's only like a leaf's frame.
#[test]
fn guest_pages_named_by_a_vmcs_are_checked_like_leaves() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    w.p.mm = x.mm;
    // The victim's frame for the attacker's APIC-access page.
    assert_eq!(
        b.guest_page(&mut w.p, x.kvm, GFN_BASE, 2000),
        Err(Denial::EptForeignFrame)
    );
    // A kernel page.
    let kpage = w.p.kernel_page();
    w.p.map(x.mm, x.hva_of(GFN_BASE + 3), kpage.0, true);
    assert_eq!(
        b.guest_page(&mut w.p, x.kvm, GFN_BASE + 3, kpage.0),
        Err(Denial::KernelFrame)
    );
    // Its own memory.
    w.p.map(x.mm, x.hva_of(GFN_BASE + 4), 3004, true);
    assert_eq!(b.guest_page(&mut w.p, x.kvm, GFN_BASE + 4, 3004), Ok(()));
    w.p.mm = a.mm;
    assert_eq!(b.guest_page(&mut w.p, a.kvm, GFN_BASE, 2000), Ok(()));
}

/// Class 5: the MSR lists the CPU reads at entry and exit.
#[test]
fn msr_lists_are_checked_before_entry() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let info = running_vcpu(&mut b, &mut w, &a);
    let list = info.msr_autoload_guest_pa;
    let efer = 0xc000_0080u64;
    let lstar = 0xc000_0082u64;
    w.p.set_msr_lists((0, 0), (list, 1));
    // EFER with the live host value: fine.
    w.p.phys.insert(list, efer);
    w.p.phys.insert(list + 8, 0xd01);
    assert!(!b.vm_entry(&mut w.p));
    // EFER with another value.
    w.p.phys.insert(list + 8, 0x501);
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::MsrListHostValue));
    // LSTAR, which KVM never switches: the attacker's syscall entry on the next exit.
    w.p.phys.insert(list, lstar);
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::MsrListEntry));
    assert_eq!(w.p.killed.last(), Some(&a.kvm));
    // A list outside the vCPU's MSR-list pages.
    w.p.set_msr_lists((0, 0), (2000 << 12, 1));
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::MsrListAddress));
    // A VM-entry load the exit list does not undo.
    w.p.phys.insert(list, efer);
    w.p.phys.insert(list + 8, 0xd01);
    w.p.phys.insert(list + 16, 0x38f);
    w.p.set_msr_lists((list + 16, 1), (list, 1));
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::MsrListEntry));
    // Audit mode logs it and lets it through.
    w.p.enforcing = false;
    let killed = w.p.killed.len();
    assert!(!b.vm_entry(&mut w.p));
    assert_eq!(w.p.killed.len(), killed);
    assert!(!w.p.reports.last().unwrap().enforced);
    // No current VMCS: nothing to enter.
    w.p.enforcing = true;
    w.p.cpu = 1;
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::NoCurrentVmcs));
}

/// Class 4: new page-table roots are accepted only as pgd_alloc() makes them.
#[test]
fn page_table_roots_are_checked_after_registration() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let forged = w.p.kernel_page();
    b.set_registering(true);
    let existing = w.p.kernel_page();
    assert_eq!(b.pgd_add(&mut w.p, existing, 1), Ok(()));
    b.set_registering(false);
    assert_eq!(b.pgd_add(&mut w.p, forged, 1), Err(Denial::PgdNotNew));
    assert_eq!(b.verifier().frame_state(forged), Some(FrameState::Host));
    w.p.new_pgds.insert(forged.0);
    assert_eq!(b.pgd_add(&mut w.p, forged, 1), Ok(()));
    assert_eq!(b.verifier().frame_state(forged), Some(FrameState::HostPgd));
    // pgd_free(): the root goes back to the host; a frame that is no root is left alone.
    b.pgd_remove(&mut w.p, forged, 1);
    assert_eq!(b.verifier().frame_state(forged), Some(FrameState::Host));
    let refusals = w.p.refusals();
    b.pgd_remove(&mut w.p, forged, 1);
    assert_eq!(b.verifier().frame_state(forged), Some(FrameState::Host));
    assert_eq!(w.p.refusals(), refusals);
    // A VM's frame can never be a root, nor stop being the VM's through pgd_free().
    w.p.new_pgds.insert(2000);
    let (a, _) = two_vms(&mut b, &mut w);
    assert_eq!(b.pgd_add(&mut w.p, Pfn(2000), 1), Err(Denial::WrongState));
    b.pgd_remove(&mut w.p, Pfn(2000), 1);
    assert_eq!(
        b.verifier().frame_state(Pfn(2000)),
        Some(FrameState::Vm(vm_id(&b, &a)))
    );
}

/// Audit mode lets value writes through but never bookkeeping.
#[test]
fn audit_mode_lets_values_through_and_enforces_bookkeeping() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (_, x) = two_vms(&mut b, &mut w);
    w.p.enforcing = false;
    w.p.map(x.mm, x.hva_of(GFN_BASE), 2000, true);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Audited
    );
    assert!(w.p.killed.is_empty());
    assert!(b.free_pages(&mut w.p, Pfn(2000), 0), "still kept");
    assert!(w.p.reports.last().unwrap().enforced);
}

/// Tears VM `v` down as KVM does: zap its leaf at GFN_BASE, unlink and free its tables,
/// destroy it. Returns the address space the backend lets go of.
fn tear_down(b: &mut Backend<'_>, w: &mut World, v: &TestVm) -> Option<Handle> {
    assert_eq!(v.zap(b, &mut w.p, &mut w.t, GFN_BASE), SpteOutcome::Written);
    for (table, index, level) in [(v.l2, 1u16, 2u8), (v.l3, 0, 3), (v.root, 0, 4)] {
        assert_eq!(
            write(b, &mut w.p, &mut w.t, table, index, level, NONPRESENT, 0),
            SpteOutcome::Written
        );
    }
    for pt in [v.l1, v.l2, v.l3, v.root] {
        assert_eq!(b.pt_free(&mut w.p, pt), PtFree::Deferred);
    }
    w.p.mm = v.mm;
    let forgotten = b.vm_destroy(&mut w.p, v.kvm);
    // The work that frees paging-structure pages after a global INVEPT.
    b.deferred_pass1();
    let mut out = [Pfn(0); 8];
    assert_eq!(b.deferred_pass2(&mut w.p, &mut out), 4);
    b.reap_zombies(&mut w.p);
    forgotten
}

/// A VM restart (or snapshot restore) in the same VMM keeps the guest memory: the VMM's next
/// VM takes the destroyed VM's frames over, contents intact. No other VMM's VM can.
#[test]
fn a_restarted_vm_takes_over_its_vmms_memory() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    assert_eq!(tear_down(&mut b, &mut w, &a), None);
    // Another VMM that maps the frame too (shared memory) gets nothing.
    w.p.map(x.mm, x.hva_of(GFN_BASE), 2000, true);
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::EptOrphanedFrame));
    // A's VMM creates its next VM over the same memory.
    let a2 = make_vm(&mut b, &mut w.p, &mut w.t, 0xa2, VMM_A, HVA_A);
    assert_eq!(
        a2.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Written
    );
    assert!(
        !w.p.scrubbed.contains(&Pfn(2000)),
        "the guest memory is kept"
    );
    assert_eq!(w.p.contents.get(&2000), Some(&0x5ec2e7));
    let owner = b.verifier().frame_state(Pfn(2000));
    assert!(matches!(owner, Some(FrameState::Vm(o)) if b.verifier().vm_is_live(o)));
    // And it is now a live VM's frame: foreign to everyone else.
    assert_eq!(
        x.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::EptForeignFrame));
}

/// The backend remembers a bounded number of destroyed VMs' VMMs; the oldest is forgotten
/// (and its address space handed back) first, after which its frames wait for the free.
#[test]
fn forgotten_vmms_leave_their_frames_orphaned() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    assert_eq!(tear_down(&mut b, &mut w, &a), None);
    let mut handed_back = Vec::new();
    for i in 0..MAX_GHOSTS {
        let mm = 0x10_0000 + i * 0x1000;
        let v = make_vm(&mut b, &mut w.p, &mut w.t, 0x100 + i, mm, HVA_B);
        w.p.map(v.mm, v.hva_of(GFN_BASE), 3000 + i as u64, true);
        assert_eq!(
            v.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 3000 + i as u64, true),
            SpteOutcome::Written
        );
        handed_back.extend(tear_down(&mut b, &mut w, &v));
    }
    assert_eq!(handed_back, vec![a.mm]);
    let a2 = make_vm(&mut b, &mut w.p, &mut w.t, 0xa2, VMM_A, HVA_A);
    assert_eq!(
        a2.map(&mut b, &mut w.p, &mut w.t, GFN_BASE, 2000, true),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::EptOrphanedFrame));
}

/// The huge zero page, which a read fault of THP memory maps, may be mapped read-only with a
/// 2 MiB leaf; it must hold zeroes, and returns to the host only when unmapped.
#[test]
fn the_huge_zero_page_is_mapped_read_only() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let zero = w.p.kernel_page();
    b.set_zero_page(zero).unwrap();
    let a = make_vm(&mut b, &mut w.p, &mut w.t, 0xa1, VMM_A, HVA_A);
    let huge = 2560u64;
    w.p.huge_zero.extend(huge..huge + 512);
    w.p.map_2m(a.mm, a.hva_of(GFN_BASE + 512), huge, false);
    let gfn = GFN_BASE + 512;
    let index = (gfn / 512) as u16;
    let huge_leaf = |writable| leaf(huge, 2, writable);
    // Writable: refused.
    assert_eq!(
        write(
            &mut b,
            &mut w.p,
            &mut w.t,
            a.l2,
            index,
            2,
            huge_leaf(true),
            gfn
        ),
        SpteOutcome::Refused
    );
    // Not zeroes (the host wrote into it): refused.
    w.p.contents.insert(huge + 7, 0x5ec2e7);
    assert_eq!(
        write(
            &mut b,
            &mut w.p,
            &mut w.t,
            a.l2,
            index,
            2,
            huge_leaf(false),
            gfn
        ),
        SpteOutcome::Refused
    );
    assert_eq!(w.p.last(), Some(Denial::ContentMismatch));
    w.p.contents.remove(&(huge + 7));
    assert_eq!(
        write(
            &mut b,
            &mut w.p,
            &mut w.t,
            a.l2,
            index,
            2,
            huge_leaf(false),
            gfn
        ),
        SpteOutcome::Written
    );
    assert_eq!(
        b.verifier().frame_state(Pfn(huge + 3)),
        Some(FrameState::Zero)
    );
    // Freed while mapped: kept.
    assert!(b.free_pages(&mut w.p, Pfn(huge), 9));
    assert_eq!(w.p.last(), Some(Denial::FrameMapped));
    // The shared zero page never goes.
    assert!(b.free_pages(&mut w.p, zero, 0));
    assert_eq!(w.p.last(), Some(Denial::ProtectedFree));
    assert_eq!(
        write(&mut b, &mut w.p, &mut w.t, a.l2, index, 2, NONPRESENT, gfn),
        SpteOutcome::Written
    );
    // A piece of it: kept.
    assert!(b.free_pages(&mut w.p, Pfn(huge), 0));
    assert!(!b.free_pages(&mut w.p, Pfn(huge), 9));
    assert_eq!(
        b.verifier().frame_state(Pfn(huge + 3)),
        Some(FrameState::Host)
    );
}

/// KVM unmaps L1's virtual-APIC page at a nested VM exit but leaves vmcs02 naming it. The
/// page may then be freed; vmcs02 is not entered with it until KVM names a page again.
#[test]
fn a_vmcs_naming_a_freed_page_is_not_entered() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let info = running_vcpu(&mut b, &mut w, &a);
    let vmcs02 = w.p.kernel_page().0 << 12;
    let nested = NestedInfo {
        kvm: a.kvm,
        vcpu: info.vcpu,
        vpid02: 0,
        vmcs02_pa: vmcs02,
        vmcs02_msr_bitmap_pa: w.p.kernel_page().0 << 12,
        shadow_vmcs_pa: 0,
    };
    assert_eq!(b.nested_enter(&mut w.p, &nested, true), Ok(()));
    assert!(!b.vmcs_load(&mut w.p, vmcs02));
    // L1's page 2001 as vmcs02's virtual-APIC page, with TPR shadow on.
    w.p.map(a.mm, a.hva_of(GFN_BASE + 1), 2001, true);
    assert_eq!(b.guest_page(&mut w.p, a.kvm, GFN_BASE + 1, 2001), Ok(()));
    assert!(!b.vmcs_write(&mut w.p, 0x2012, 2001 << 12));
    w.p.vmcs.insert(0x4002, 1 << 21);
    assert!(!b.vm_entry(&mut w.p));
    // Named by vmcs02 while it is current (L2 may be running): not freed.
    assert!(b.free_pages(&mut w.p, Pfn(2001), 0));
    assert_eq!(w.p.last(), Some(Denial::FrameMapped));
    let refusals = w.p.refusals();
    // Nested VM exit: back to vmcs01; KVM unmaps the page and the VMM frees it.
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
    assert!(!b.free_pages(&mut w.p, Pfn(2001), 0));
    assert_eq!(w.p.refusals(), refusals);
    assert_eq!(b.verifier().frame_state(Pfn(2001)), Some(FrameState::Host));
    // The frame is another VM's now; vmcs02 must not be entered with it.
    assert!(!b.vmcs_load(&mut w.p, vmcs02));
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::StaleAddress));
    // Without TPR shadow the CPU does not use the field.
    w.p.vmcs.insert(0x4002, 0);
    assert!(!b.vm_entry(&mut w.p));
    // KVM names a page again at the next nested entry.
    w.p.vmcs.insert(0x4002, 1 << 21);
    w.p.map(a.mm, a.hva_of(GFN_BASE + 2), 2002, true);
    assert_eq!(b.guest_page(&mut w.p, a.kvm, GFN_BASE + 2, 2002), Ok(()));
    assert!(!b.vmcs_write(&mut w.p, 0x2012, 2002 << 12));
    assert!(!b.vm_entry(&mut w.p));
}

/// The CPU never accesses the APIC-access page, so naming it pins nothing: it can be freed
/// while vmcs01 names it (process exit frees guest memory before the VM goes).
#[test]
fn the_apic_access_page_is_checked_but_not_pinned() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    running_vcpu(&mut b, &mut w, &a);
    // A frame that is not the VM's: refused.
    assert!(b.vmcs_write(&mut w.p, 0x2014, 2006 << 12));
    assert_eq!(w.p.last(), Some(Denial::BadAddress));
    w.p.map(a.mm, a.hva_of(GFN_BASE + 5), 2005, true);
    assert_eq!(b.guest_page(&mut w.p, a.kvm, GFN_BASE + 5, 2005), Ok(()));
    assert!(!b.vmcs_write(&mut w.p, 0x2014, 2005 << 12));
    let refusals = w.p.refusals();
    assert!(!b.free_pages(&mut w.p, Pfn(2005), 0));
    assert_eq!(w.p.refusals(), refusals);
    assert_eq!(b.verifier().frame_state(Pfn(2005)), Some(FrameState::Host));
}

/// Class 5: the posted-interrupt descriptor tells IOMMUs and IPI-virtualising CPUs which
/// interrupt to send where; at entry it must name KVM's vector and this CPU, unless
/// notifications are suppressed. The VMCS's own notification vector is KVM's.
#[test]
fn the_posted_interrupt_descriptor_notifies_only_kvm() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let mut page = || w.p.kernel_page().0 << 12;
    let pi = page() + 0x40;
    let info = VcpuInfo {
        kvm: a.kvm,
        vcpu: Handle(0x100),
        vpid: 1,
        vmcs01_pa: page(),
        msr_bitmap_pa: page(),
        pml_pa: page(),
        pi_desc_pa: pi,
        msr_autoload_guest_pa: page(),
        virtual_apic_pa: page(),
        ..VcpuInfo::default()
    };
    w.p.mm = a.mm;
    b.vcpu_create(&mut w.p, &info, true).unwrap();
    let vmxon = w.p.kernel_page();
    assert!(!b.vmxon(&mut w.p, vmxon.0 << 12));
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
    // POSTED_INTR_NV: KVM's vector only (another would swallow that host interrupt).
    assert!(b.vmcs_write(&mut w.p, 0x0002, 0xec));
    assert_eq!(w.p.last(), Some(Denial::PinnedMismatch));
    assert!(!b.vmcs_write(&mut w.p, 0x0002, 0xf2));
    assert!(!b.vmcs_write(&mut w.p, 0x2016, pi));
    w.p.vmcs.insert(0x4000, 1 << 7);
    w.p.vmcs.insert(0x2016, pi);
    let control = |nv: u64, ndst: u64, sn: bool| (ndst << 32) | (nv << 16) | (u64::from(sn) << 1);
    // Suppressed: nothing is sent, whatever NV and NDST say.
    w.p.phys.insert(pi + 32, control(0x20, 7, true));
    assert!(!b.vm_entry(&mut w.p));
    // KVM's vector, to this CPU (CPU 0, xAPIC ID 0).
    w.p.phys.insert(pi + 32, control(0xf2, 0, false));
    assert!(!b.vm_entry(&mut w.p));
    // The host's timer vector, or another CPU: refused.
    w.p.phys.insert(pi + 32, control(0xec, 0, false));
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::PiDescriptor));
    w.p.phys.insert(pi + 32, control(0xf2, 3 << 8, false));
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::PiDescriptor));
    // A descriptor that is not the vCPU's.
    w.p.phys.insert(pi + 32, control(0xf2, 0, false));
    w.p.vmcs.insert(0x2016, 2000 << 12);
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::BadAddress));
    w.p.vmcs.insert(0x2016, pi);
    assert!(!b.vm_entry(&mut w.p));
    // IPI virtualisation: every valid PID-table entry names a descriptor of this VM's vCPUs,
    // with a KVM vector.
    let table = w.p.kernel_page().0 << 12;
    w.p.vmcs.insert(0x4002, 1 << 17);
    w.p.vmcs.insert(0x2034, 1 << 4);
    w.p.vmcs.insert(0x2042, table);
    w.p.vmcs.insert(0x0008, 1);
    w.p.phys.insert(table, pi | 1);
    assert!(!b.vm_entry(&mut w.p));
    w.p.phys.insert(table + 8, (2000 << 12) | 1);
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::PiDescriptor));
    w.p.phys.insert(table + 8, 0);
    w.p.phys.insert(pi + 32, control(0x31, 0, false));
    assert!(b.vm_entry(&mut w.p));
}

/// Clears the intercept bit of `msr` (read or write) in the MSR bitmap at `bitmap`.
fn pass_through(p: &mut Mock, bitmap: u64, msr: u32, write: bool) {
    let high = msr >= 0xc000_0000;
    let bit = u64::from(msr & 0x1fff) + if high { 8192 } else { 0 } + if write { 16384 } else { 0 };
    let word = bitmap + bit / 64 * 8;
    let v = p.phys.get(&word).copied().unwrap_or(0);
    p.phys.insert(word, v & !(1 << (bit % 64)));
}

/// Class 5: the MSR bitmap passes through only MSRs that KVM switches itself or that cannot
/// reach the host.
#[test]
fn the_msr_bitmap_passes_through_only_switched_msrs() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let info = running_vcpu(&mut b, &mut w, &a);
    let bitmap = info.msr_bitmap_pa;
    for i in 0..512 {
        w.p.phys.insert(bitmap + i * 8, u64::MAX);
    }
    w.p.vmcs.insert(0x4002, (1 << 28) | (1 << 31));
    w.p.vmcs.insert(0x2004, bitmap);
    assert!(!b.vm_entry(&mut w.p));
    // What KVM passes through by default.
    for msr in [
        0xc000_0100,
        0xc000_0101,
        0xc000_0102,
        0x174,
        0x175,
        0x176,
        0x48,
        0x49,
    ] {
        pass_through(&mut w.p, bitmap, msr, true);
        pass_through(&mut w.p, bitmap, msr, false);
    }
    pass_through(&mut w.p, bitmap, 0x10, false);
    assert!(!b.vm_entry(&mut w.p));
    // The guest's syscall entry would stay in the host after the exit.
    pass_through(&mut w.p, bitmap, 0xc000_0082, true);
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::MsrBitmapPassThrough));
    assert_eq!(w.p.reports.last().map(|r| r.subject), Some(0xc000_0082));
    assert_eq!(w.p.killed.last(), Some(&a.kvm));
    w.p.phys
        .insert(bitmap + (16384 + 8192 + 0x82) / 64 * 8, u64::MAX);
    assert!(!b.vm_entry(&mut w.p));
    // Writing the TSC; reading the host's LSTAR (a host address).
    pass_through(&mut w.p, bitmap, 0x10, true);
    assert!(b.vm_entry(&mut w.p));
    w.p.phys.insert(bitmap + 16384 / 64 * 8, u64::MAX);
    pass_through(&mut w.p, bitmap, 0xc000_0082, false);
    assert!(b.vm_entry(&mut w.p));
    w.p.phys.insert(bitmap + (8192 + 0x82) / 64 * 8, u64::MAX);
    assert!(!b.vm_entry(&mut w.p));
    // x2APIC: TPR with x2APIC virtualisation, never the ICR (an IPI to a host CPU).
    pass_through(&mut w.p, bitmap, 0x808, true);
    assert!(b.vm_entry(&mut w.p));
    w.p.vmcs.insert(0x401e, 1 << 4);
    pass_through(&mut w.p, bitmap, 0x808, false);
    assert!(!b.vm_entry(&mut w.p));
    pass_through(&mut w.p, bitmap, 0x830, true);
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::MsrBitmapPassThrough));
    // Another vCPU's bitmap, or none of HyperPS's.
    w.p.vmcs.insert(0x2004, 2000 << 12);
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::BadAddress));
}

/// Class 6: a guest EFER loaded at entry goes back to the host's at the exit, through the
/// VM-exit controls or the VM-exit MSR-load list, unless it is the host's anyway.
#[test]
fn a_guest_efer_loaded_at_entry_is_restored_at_exit() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, _) = two_vms(&mut b, &mut w);
    let info = running_vcpu(&mut b, &mut w, &a);
    let host_efer = 0xd01;
    // Entry loads the guest's EFER (NX off); the exit loads nothing back.
    w.p.vmcs.insert(0x4012, 1 << 15);
    w.p.vmcs.insert(0x2806, 0x501);
    assert!(b.vm_entry(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::HostStateNotRestored));
    // The exit loads HOST_IA32_EFER: only the live value.
    w.p.vmcs.insert(0x400c, 1 << 21);
    w.p.vmcs.insert(0x2c02, 0x501);
    assert!(b.vm_entry(&mut w.p));
    w.p.vmcs.insert(0x2c02, host_efer);
    assert!(!b.vm_entry(&mut w.p));
    // Or the VM-exit MSR-load list restores it.
    w.p.vmcs.insert(0x400c, 0);
    let list = info.msr_autoload_guest_pa;
    w.p.phys.insert(list, 0xc000_0080);
    w.p.phys.insert(list + 8, host_efer);
    w.p.set_msr_lists((0, 0), (list, 1));
    assert!(!b.vm_entry(&mut w.p));
    // Or the guest's EFER is the host's.
    w.p.set_msr_lists((0, 0), (0, 0));
    w.p.vmcs.insert(0x2806, host_efer);
    assert!(!b.vm_entry(&mut w.p));
    // CET state loaded at entry only with the exit loading the host's.
    w.p.vmcs.insert(0x4012, 1 << 20);
    assert!(b.vm_entry(&mut w.p));
    w.p.vmcs.insert(0x400c, 1 << 28);
    assert!(!b.vm_entry(&mut w.p));
}

/// `ept_load` checks the EPT pointer where KVM builds it, with the vCPU and the root KVM
/// names: only the current VMCS's own vCPU, its VM's root, and a pointer to that root.
#[test]
fn ept_load_accepts_only_the_vcpus_own_root() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (a, x) = two_vms(&mut b, &mut w);
    let eptp = |root: Pfn| 6 | (3 << 3) | (1 << 6) | (root.0 << 12);
    let info = running_vcpu(&mut b, &mut w, &x);
    let refusals = w.p.refusals();
    assert!(!b.ept_load(&mut w.p, (x.kvm, info.vcpu), x.root, eptp(x.root)));
    assert_eq!(w.p.refusals(), refusals);
    // The victim's root, named both ways.
    assert!(b.ept_load(&mut w.p, (x.kvm, info.vcpu), a.root, eptp(a.root)));
    assert_eq!(w.p.last(), Some(Denial::EptpBadRoot));
    assert!(b.ept_load(&mut w.p, (x.kvm, info.vcpu), x.root, eptp(a.root)));
    assert_eq!(w.p.last(), Some(Denial::EptpBadRoot));
    // Its own root, but a pointer KVM never builds (4-level walk on a 4-level root, UC).
    assert!(b.ept_load(&mut w.p, (x.kvm, info.vcpu), x.root, eptp(x.root) & !7));
    assert_eq!(w.p.last(), Some(Denial::EptpBadMemoryType));
    // The victim's VM and its root, while the attacker's VMCS is current.
    assert!(b.ept_load(&mut w.p, (a.kvm, info.vcpu), a.root, eptp(a.root)));
    assert_eq!(w.p.last(), Some(Denial::WrongContext));
    // A vCPU the backend does not know.
    assert!(b.ept_load(&mut w.p, (x.kvm, Handle(0x999)), x.root, eptp(x.root)));
    assert_eq!(w.p.last(), Some(Denial::UnknownVcpu));
    // Refusals stop nothing here: KVM skips the write and stops the VM itself.
    assert!(w.p.killed.is_empty());
    let eptp_checks = b.verifier().audit().counters(CheckClass::Eptp);
    assert_eq!(eptp_checks.refused, 5, "every refusal is counted");
    assert_eq!(eptp_checks.verified, 1);

    // A new root KVM allocated is registered by the ept_load that loads it, and not by one
    // that is refused: check, then do.
    let fresh = w.p.kernel_page();
    w.p.mm = x.mm;
    assert_eq!(b.pt_alloc(&mut w.p, x.kvm, fresh), Ok(()));
    let pending = b.verifier().frame_state(fresh);
    assert!(b.ept_load(&mut w.p, (x.kvm, info.vcpu), fresh, eptp(fresh) & !7));
    assert!(b.ept_load(&mut w.p, (a.kvm, info.vcpu), fresh, eptp(fresh)));
    assert!(b.ept_load(&mut w.p, (x.kvm, info.vcpu), fresh, eptp(x.root)));
    assert_eq!(
        b.verifier().frame_state(fresh),
        pending,
        "a refusal registered the root"
    );
    assert!(!b.ept_load(&mut w.p, (x.kvm, info.vcpu), fresh, eptp(fresh)));
    assert!(matches!(
        b.verifier().frame_state(fresh),
        Some(FrameState::Protected(Protected::Ept(_)))
    ));
}

/// VMXOFF leaves VMX operation on this CPU: no VMCS stays current there, and a second VMXOFF
/// is refused and counted. VMXON comes back only with the CPU's own region.
#[test]
fn vmxoff_leaves_vmx_operation_once() {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut w = world();
    let (_, x) = two_vms(&mut b, &mut w);
    let info = new_vcpu(&mut b, &mut w, &x, 0x100).unwrap();
    let region = w.p.kernel_page().0 << 12;
    w.p.mm = x.mm;
    assert!(!b.vmxon(&mut w.p, region));
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
    let cpu = w.p.cpu();
    assert!(b.vmx_on(cpu));
    assert!(!b.vmxoff(&mut w.p));
    assert!(!b.vmx_on(cpu));
    assert!(
        b.vmcs_write(&mut w.p, 0x681e, 0x1000),
        "no VMCS is current any more"
    );
    assert_eq!(w.p.last(), Some(Denial::NoCurrentVmcs));
    assert!(b.vmxoff(&mut w.p));
    assert_eq!(w.p.last(), Some(Denial::VmxOff));
    assert_eq!(
        b.verifier()
            .audit()
            .counters(CheckClass::VmxInstruction)
            .refused,
        1
    );
    // Another page as this CPU's VMXON region is refused; its own region is taken back.
    let other = w.p.kernel_page().0 << 12;
    assert!(b.vmxon(&mut w.p, other));
    assert!(!b.vmxon(&mut w.p, region));
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
}
