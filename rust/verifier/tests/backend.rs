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
    assert_eq!(b.vm_destroy(&mut w.p, a.kvm), Some(a.mm));
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
    let info = new_vcpu(&mut b, &mut w, &a, 0x100).unwrap();
    let vmxon = w.p.kernel_page();
    w.p.mm = a.mm;
    assert!(!b.vmxon(&mut w.p, vmxon.0 << 12));
    w.p.mm = a.mm;
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
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
    assert_eq!(b.vm_destroy(&mut w.p, a.kvm), Some(a.mm));
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
    let info = new_vcpu(&mut b, &mut w, &a, 0x100).unwrap();
    let vmxon = w.p.kernel_page();
    w.p.mm = a.mm;
    assert!(!b.vmxon(&mut w.p, vmxon.0 << 12));
    assert!(!b.vmcs_load(&mut w.p, info.vmcs01_pa));
    let list = info.msr_autoload_guest_pa;
    let efer = 0xc000_0080u64;
    let lstar = 0xc000_0082u64;
    let lists = MsrLists {
        exit_load_addr: list,
        exit_load_count: 1,
        ..MsrLists::default()
    };
    // EFER with the live host value: fine.
    w.p.phys.insert(list, efer);
    w.p.phys.insert(list + 8, 0xd01);
    assert!(!b.vm_entry(&mut w.p, &lists));
    // EFER with another value.
    w.p.phys.insert(list + 8, 0x501);
    assert!(b.vm_entry(&mut w.p, &lists));
    assert_eq!(w.p.last(), Some(Denial::MsrListHostValue));
    // LSTAR, which KVM never switches: the attacker's syscall entry on the next exit.
    w.p.phys.insert(list, lstar);
    assert!(b.vm_entry(&mut w.p, &lists));
    assert_eq!(w.p.last(), Some(Denial::MsrListEntry));
    assert_eq!(w.p.killed.last(), Some(&a.kvm));
    // A list outside the vCPU's MSR-list pages.
    let elsewhere = MsrLists {
        exit_load_addr: 2000 << 12,
        ..lists
    };
    assert!(b.vm_entry(&mut w.p, &elsewhere));
    assert_eq!(w.p.last(), Some(Denial::MsrListAddress));
    // A VM-entry load the exit list does not undo.
    w.p.phys.insert(list, efer);
    w.p.phys.insert(list + 8, 0xd01);
    w.p.phys.insert(list + 16, 0x38f);
    let entry_only = MsrLists {
        entry_load_addr: list + 16,
        entry_load_count: 1,
        ..lists
    };
    assert!(b.vm_entry(&mut w.p, &entry_only));
    assert_eq!(w.p.last(), Some(Denial::MsrListEntry));
    // Audit mode logs it and lets it through.
    w.p.enforcing = false;
    let killed = w.p.killed.len();
    assert!(!b.vm_entry(&mut w.p, &entry_only));
    assert_eq!(w.p.killed.len(), killed);
    assert!(!w.p.reports.last().unwrap().enforced);
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
    // A VM's frame can never be a root.
    w.p.new_pgds.insert(2000);
    let _ = two_vms(&mut b, &mut w);
    assert_eq!(b.pgd_add(&mut w.p, Pfn(2000), 1), Err(Denial::WrongState));
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
