// SPDX-License-Identifier: GPL-2.0

//! Every ownership transition attempted from every frame state (pKVM-selftest style: expected
//! result, then expected state), plus lifecycle sequences.

mod common;

use common::*;
use hyperps_verifier::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    HostPgd,
    Zero,
    VmLive,
    VmOrphaned,
    Shared,
    Pool,
    PoolStale,
    Ept,
    Vmcs,
    Vmxon,
    Aux,
    HyperPsRoot,
    Own,
}

const ALL: [Kind; 14] = [
    Kind::Host,
    Kind::HostPgd,
    Kind::Zero,
    Kind::VmLive,
    Kind::VmOrphaned,
    Kind::Shared,
    Kind::Pool,
    Kind::PoolStale,
    Kind::Ept,
    Kind::Vmcs,
    Kind::Vmxon,
    Kind::Aux,
    Kind::HyperPsRoot,
    Kind::Own,
];

#[derive(Clone, Copy, Debug)]
enum Op {
    Donate,
    Reclaim,
    KsmMerge,
    KsmUnmerge,
    UnshareToVm,
    Protect,
    Unprotect,
    RegisterZero,
    ReleaseZero,
    RegisterPgd,
    UnregisterPgd,
    RegisterHyperPsRoot,
    RegisterEpt,
    UnregisterEpt,
    RegisterVmcs,
    UnregisterVmcs,
    RegisterAux,
    UnregisterAux,
    RegisterVmxon,
    ProtectOwn,
}

const OPS: [Op; 20] = [
    Op::Donate,
    Op::Reclaim,
    Op::KsmMerge,
    Op::KsmUnmerge,
    Op::UnshareToVm,
    Op::Protect,
    Op::Unprotect,
    Op::RegisterZero,
    Op::ReleaseZero,
    Op::RegisterPgd,
    Op::UnregisterPgd,
    Op::RegisterHyperPsRoot,
    Op::RegisterEpt,
    Op::UnregisterEpt,
    Op::RegisterVmcs,
    Op::UnregisterVmcs,
    Op::RegisterAux,
    Op::UnregisterAux,
    Op::RegisterVmxon,
    Op::ProtectOwn,
];

/// The frame under test, a second frame of the live VM, and the fixture handles.
const P: u64 = 100;
const Q: u64 = 101;

struct Ctx {
    vm: VmId,
    vcpu: VcpuId,
}

fn kind_of(v: &Verifier<'_>, pfn: u64) -> Kind {
    match v.frame_state(Pfn(pfn)).unwrap() {
        FrameState::Host => Kind::Host,
        FrameState::HostPgd => Kind::HostPgd,
        FrameState::Zero => Kind::Zero,
        FrameState::Vm(vm) if v.vm_is_live(vm) => Kind::VmLive,
        FrameState::Vm(_) => Kind::VmOrphaned,
        FrameState::Shared(_) => Kind::Shared,
        FrameState::Protected(Protected::Pool {
            invept_pending: None,
        }) => Kind::Pool,
        FrameState::Protected(Protected::Pool {
            invept_pending: Some(_),
        }) => Kind::PoolStale,
        FrameState::Protected(Protected::Ept(_)) => Kind::Ept,
        FrameState::Protected(Protected::Vmcs { .. }) => Kind::Vmcs,
        FrameState::Protected(Protected::Vmxon { .. }) => Kind::Vmxon,
        FrameState::Protected(Protected::Aux { .. }) => Kind::Aux,
        FrameState::Protected(Protected::HyperPsRoot) => Kind::HyperPsRoot,
        FrameState::Protected(Protected::Own) => Kind::Own,
    }
}

fn setup(v: &mut Verifier<'_>, kind: Kind) -> Ctx {
    let vm = v.create_vm().unwrap();
    let vcpu = v.create_vcpu(vm).unwrap();
    v.donate_to_vm(vm, Pfn(Q), 1).unwrap();
    let p = Pfn(P);
    match kind {
        Kind::Host => {}
        Kind::HostPgd => v.register_host_pgd(p, 1).unwrap(),
        Kind::Zero => v.register_zero_pages(p, 1).unwrap(),
        Kind::VmLive => v.donate_to_vm(vm, p, 1).unwrap(),
        Kind::VmOrphaned => {
            let dead = v.create_vm().unwrap();
            v.donate_to_vm(dead, p, 1).unwrap();
            v.destroy_vm(dead).unwrap();
        }
        Kind::Shared => {
            v.donate_to_vm(vm, p, 1).unwrap();
            v.donate_to_vm(vm, Pfn(Q + 1), 1).unwrap();
            v.ksm_merge(p, Pfn(Q + 1)).unwrap();
        }
        Kind::Pool => v.protect(p).unwrap(),
        Kind::PoolStale => {
            v.register_ept_page(vm, p, EptLevel::L1).unwrap();
            v.unregister_ept_page(p).unwrap();
        }
        Kind::Ept => v.register_ept_page(vm, p, EptLevel::L1).unwrap(),
        Kind::Vmcs => v.register_vmcs(vcpu, p, VmcsKind::Vmcs01).unwrap(),
        Kind::Vmxon => v.register_vmxon(CpuId(0), p).unwrap(),
        Kind::Aux => v
            .register_aux_page(AuxOwner::Vcpu(vcpu), p, AuxKind::MsrBitmap)
            .unwrap(),
        Kind::HyperPsRoot => v.register_hyperps_root(p).unwrap(),
        Kind::Own => v.protect_own(p).unwrap(),
    }
    assert_eq!(kind_of(v, P), kind, "fixture for {kind:?}");
    Ctx { vm, vcpu }
}

fn run(v: &mut Verifier<'_>, ctx: &Ctx, op: Op) -> Result<(), Denial> {
    let p = Pfn(P);
    match op {
        Op::Donate => v.donate_to_vm(ctx.vm, p, 1),
        Op::Reclaim => reclaim(v, P),
        Op::KsmMerge => v.ksm_merge(p, Pfn(Q)).map(|_| ()),
        Op::KsmUnmerge => v.ksm_unmerge(p),
        Op::UnshareToVm => {
            let plan = v.check_unshare_to_vm(p, ctx.vm)?;
            v.commit_unshare_to_vm(plan);
            Ok(())
        }
        Op::Protect => v.protect(p),
        Op::Unprotect => v.unprotect(p),
        Op::RegisterZero => v.register_zero_pages(p, 1),
        Op::ReleaseZero => v.release_zero_pages(p, 1),
        Op::RegisterPgd => v.register_host_pgd(p, 1),
        Op::UnregisterPgd => v.unregister_host_pgd(p, 1),
        Op::RegisterHyperPsRoot => v.register_hyperps_root(p),
        Op::RegisterEpt => v.register_ept_page(ctx.vm, p, EptLevel::L2),
        Op::UnregisterEpt => v.unregister_ept_page(p),
        Op::RegisterVmcs => v.register_vmcs(ctx.vcpu, p, VmcsKind::Vmcs02),
        Op::UnregisterVmcs => v.unregister_vmcs(p),
        Op::RegisterAux => v.register_aux_page(AuxOwner::Vcpu(ctx.vcpu), p, AuxKind::Pml),
        Op::UnregisterAux => v.unregister_aux_page(p),
        Op::RegisterVmxon => v.register_vmxon(CpuId(1), p),
        Op::ProtectOwn => v.protect_own(p),
    }
}

/// The transition table: the state each operation leads to from each state where it is
/// allowed. Every other (state, operation) pair must be refused and leave the state alone.
fn expected(op: Op, from: Kind) -> Option<Kind> {
    use Kind::*;
    match (op, from) {
        (Op::Donate, Host) => Some(VmLive),
        (Op::Reclaim, VmLive | VmOrphaned | Shared) => Some(Host),
        (Op::KsmMerge, Host | VmLive) => Some(Shared),
        (Op::KsmMerge, Shared) => Some(Shared),
        (Op::KsmMerge, Zero) => Some(Zero),
        (Op::KsmUnmerge, Shared) => Some(Shared),
        (Op::Protect, Host) => Some(Pool),
        (Op::Unprotect, Pool) => Some(Host),
        (Op::RegisterZero, Host) => Some(Zero),
        (Op::ReleaseZero, Zero) => Some(Host),
        (Op::RegisterPgd, Host) => Some(HostPgd),
        (Op::UnregisterPgd, HostPgd) => Some(Host),
        (
            Op::RegisterHyperPsRoot
            | Op::RegisterEpt
            | Op::RegisterVmcs
            | Op::RegisterAux
            | Op::RegisterVmxon,
            Host | Pool,
        ) => Some(match op {
            Op::RegisterHyperPsRoot => HyperPsRoot,
            Op::RegisterEpt => Ept,
            Op::RegisterVmcs => Vmcs,
            Op::RegisterAux => Aux,
            _ => Vmxon,
        }),
        (Op::UnregisterEpt, Ept) => Some(PoolStale),
        (Op::UnregisterVmcs, Vmcs) => Some(Pool),
        (Op::UnregisterAux, Aux) => Some(Pool),
        (Op::ProtectOwn, Host | Own) => Some(Own),
        _ => None,
    }
}

#[test]
fn every_transition_from_every_state() {
    let mut checked = 0;
    for from in ALL {
        for op in OPS {
            let mut st = Storage::new(FRAMES);
            let mut v = st.verifier();
            let ctx = setup(&mut v, from);
            let before = v.frame_state(Pfn(P));
            let result = run(&mut v, &ctx, op);
            match expected(op, from) {
                Some(to) => {
                    assert_eq!(result, Ok(()), "{op:?} from {from:?}");
                    assert_eq!(kind_of(&v, P), to, "{op:?} from {from:?}");
                }
                None => {
                    assert!(result.is_err(), "{op:?} from {from:?} must be refused");
                    assert_eq!(
                        v.frame_state(Pfn(P)),
                        before,
                        "{op:?} from {from:?} changed state"
                    );
                }
            }
            assert_eq!(v.audit().anomalies(), 0);
            checked += 1;
        }
    }
    assert_eq!(checked, 14 * 20);
}

#[test]
fn refusals_carry_the_right_reason() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let ctx = setup(&mut v, Kind::PoolStale);
    assert_eq!(v.unprotect(Pfn(P)), Err(Denial::NeedsInvept));
    assert_eq!(
        v.register_ept_page(ctx.vm, Pfn(P), EptLevel::L1),
        Err(Denial::NeedsInvept)
    );
    v.note_invept_global();
    assert_eq!(v.unprotect(Pfn(P)), Ok(()));

    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let ctx = setup(&mut v, Kind::Shared);
    assert_eq!(run(&mut v, &ctx, Op::UnshareToVm), Err(Denial::SharedInUse));
    assert_eq!(v.donate_to_vm(ctx.vm, Pfn(P), 1), Err(Denial::WrongState));
    assert_eq!(
        v.donate_to_vm(ctx.vm, Pfn(FRAMES as u64), 1),
        Err(Denial::FrameOutOfRange)
    );
    assert_eq!(v.donate_to_vm(ctx.vm, Pfn(P), 0), Err(Denial::BadRange));
}

#[test]
fn reclaim_needs_unmapped_frame_and_keeps_ownership_across_unmap() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let vm = vm_with_ept(&mut v, 10);
    let other = v.create_vm().unwrap();
    v.donate_to_vm(vm, Pfn(200), 1).unwrap();
    assert_eq!(v.vm_owned_frames(vm), Some(1));

    // Step 1: map it; the frame is now mapped writable once.
    v.write_spte(Pfn(13), 5, NONPRESENT, leaf(200, 1, true))
        .unwrap();
    assert_eq!(v.frame_mappings(Pfn(200)), Some((1, 1)));
    // Step 2: the host may not take it back while mapped.
    assert_eq!(
        v.check_reclaim(Pfn(200)).map(|_| ()),
        Err(Denial::FrameMapped)
    );
    // Step 3: unmap. The frame stays the VM's: another VM still cannot map or get it.
    v.write_spte(Pfn(13), 5, leaf(200, 1, true), NONPRESENT)
        .unwrap();
    assert_eq!(v.frame_mappings(Pfn(200)), Some((0, 0)));
    assert_eq!(v.frame_state(Pfn(200)), Some(FrameState::Vm(vm)));
    assert_eq!(v.donate_to_vm(other, Pfn(200), 1), Err(Denial::WrongState));
    // Step 4: remap (as after swap-in or migration) is fine, then free for real.
    v.write_spte(Pfn(13), 5, NONPRESENT, leaf(200, 1, false))
        .unwrap();
    v.write_spte(Pfn(13), 5, leaf(200, 1, false), NONPRESENT)
        .unwrap();
    reclaim(&mut v, 200).unwrap();
    assert_eq!(v.frame_state(Pfn(200)), Some(FrameState::Host));
    assert_eq!(v.vm_owned_frames(vm), Some(0));
    // Step 5: only now can it go to another VM.
    v.donate_to_vm(other, Pfn(200), 1).unwrap();
    assert_eq!(v.audit().anomalies(), 0);
}

#[test]
fn destroy_vm_orphans_frames_until_reclaimed() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let vm = v.create_vm().unwrap();
    v.donate_to_vm(vm, Pfn(300), 4).unwrap();
    let vcpu = v.create_vcpu(vm).unwrap();
    assert_eq!(v.destroy_vm(vm), Err(Denial::VmBusy));
    v.destroy_vcpu(vcpu).unwrap();
    v.register_ept_page(vm, Pfn(50), EptLevel::L4).unwrap();
    assert_eq!(v.destroy_vm(vm), Err(Denial::VmBusy));
    v.unregister_ept_page(Pfn(50)).unwrap();
    v.destroy_vm(vm).unwrap();
    assert!(!v.vm_is_live(vm));

    // A new VM reuses the slot with a new generation: the old frames are not its own.
    let next = v.create_vm().unwrap();
    assert_eq!(next.slot(), vm.slot());
    assert_ne!(next, vm);
    assert_eq!(v.frame_state(Pfn(300)), Some(FrameState::Vm(vm)));
    assert_eq!(v.donate_to_vm(next, Pfn(300), 1), Err(Denial::WrongState));
    let table = {
        v.register_ept_page(next, Pfn(51), EptLevel::L1).unwrap();
        Pfn(51)
    };
    assert_eq!(
        v.check_spte(table, 0, leaf(300, 1, false)).map(|_| ()),
        Err(Denial::EptOrphanedFrame)
    );
    // Reclaim (with scrub) is the only way out, and does not touch the new VM's counters.
    for pfn in 300..304 {
        reclaim(&mut v, pfn).unwrap();
    }
    assert_eq!(v.vm_owned_frames(next), Some(0));
    v.donate_to_vm(next, Pfn(300), 4).unwrap();
    assert_eq!(v.vm_owned_frames(next), Some(4));
    assert_eq!(v.destroy_vm(vm), Err(Denial::UnknownVm));
}

#[test]
fn ksm_lifecycle() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let a = vm_with_ept(&mut v, 10);
    let b = v.create_vm().unwrap();
    v.register_ept_page(b, Pfn(20), EptLevel::L1).unwrap();
    v.donate_to_vm(a, Pfn(400), 1).unwrap();
    v.donate_to_vm(b, Pfn(401), 1).unwrap();
    v.donate_to_vm(b, Pfn(402), 1).unwrap();

    // A's page is mapped writable: KSM must write-protect (zap) it first.
    v.write_spte(Pfn(13), 0, NONPRESENT, leaf(400, 1, true))
        .unwrap();
    assert_eq!(v.ksm_merge(Pfn(400), Pfn(401)), Err(Denial::FrameMapped));
    v.write_spte(Pfn(13), 0, leaf(400, 1, true), NONPRESENT)
        .unwrap();
    // A read-only refault before replace_page() is fine.
    v.write_spte(Pfn(13), 0, NONPRESENT, leaf_ro_not_host_writable(400, 1))
        .unwrap();
    let id = v.ksm_merge(Pfn(400), Pfn(401)).unwrap().unwrap();
    assert_eq!(v.frame_state(Pfn(400)), Some(FrameState::Shared(id)));
    assert_eq!(v.share_users(id), Some(2));
    assert_eq!(v.vm_owned_frames(a), Some(0));
    // B maps it read-only; writable is refused for everyone.
    v.write_spte(Pfn(20), 1, NONPRESENT, leaf_ro_not_host_writable(400, 1))
        .unwrap();
    assert_eq!(
        v.check_spte(Pfn(20), 2, leaf(400, 1, true)).map(|_| ()),
        Err(Denial::EptWritableShared)
    );
    // Third user.
    assert_eq!(v.ksm_merge(Pfn(400), Pfn(402)), Ok(Some(id)));
    assert_eq!(v.share_users(id), Some(3));
    v.ksm_unmerge(Pfn(400)).unwrap();
    v.ksm_unmerge(Pfn(400)).unwrap();
    assert_eq!(v.ksm_unmerge(Pfn(400)), Err(Denial::SharedInUse));
    // One user left, but still mapped: cannot become exclusive yet.
    assert_eq!(
        v.check_unshare_to_vm(Pfn(400), b).map(|_| ()),
        Err(Denial::FrameMapped)
    );
    v.write_spte(Pfn(20), 1, leaf_ro_not_host_writable(400, 1), NONPRESENT)
        .unwrap();
    v.write_spte(Pfn(13), 0, leaf_ro_not_host_writable(400, 1), NONPRESENT)
        .unwrap();
    let plan = v.check_unshare_to_vm(Pfn(400), b).unwrap();
    v.commit_unshare_to_vm(plan);
    assert_eq!(v.frame_state(Pfn(400)), Some(FrameState::Vm(b)));
    assert_eq!(v.share_users(id), None);
    assert_eq!(v.vm_owned_frames(b), Some(3));
    assert_eq!(v.audit().anomalies(), 0);
}

#[test]
fn ksm_share_table_full_and_freed_on_reclaim() {
    let mut st = Storage::with_limits(FRAMES, 4, 4, 4, 2);
    let mut v = st.verifier();
    let vm = v.create_vm().unwrap();
    v.donate_to_vm(vm, Pfn(500), 10).unwrap();
    let s1 = v.ksm_merge(Pfn(500), Pfn(501)).unwrap().unwrap();
    let _s2 = v.ksm_merge(Pfn(502), Pfn(503)).unwrap().unwrap();
    assert_eq!(v.ksm_merge(Pfn(504), Pfn(505)), Err(Denial::TableFull));
    reclaim(&mut v, 500).unwrap();
    assert_eq!(v.share_users(s1), None);
    assert!(v.ksm_merge(Pfn(504), Pfn(505)).unwrap().is_some());
    // Merging into the zero page records nothing.
    v.register_zero_pages(Pfn(600), 1).unwrap();
    assert_eq!(v.ksm_merge(Pfn(600), Pfn(506)), Ok(None));
    // The old page must belong to a live VM or the host.
    v.protect(Pfn(700)).unwrap();
    assert_eq!(v.ksm_merge(Pfn(504), Pfn(700)), Err(Denial::WrongState));
    assert_eq!(v.ksm_merge(Pfn(504), Pfn(504)), Err(Denial::BadRange));
}

#[test]
fn huge_zero_page_and_release() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let vm = vm_with_ept(&mut v, 10);
    v.register_zero_pages(Pfn(1024), 512).unwrap();
    assert_eq!(
        v.check_spte(Pfn(12), 3, leaf(1024, 2, true)).map(|_| ()),
        Err(Denial::EptWritableShared)
    );
    v.write_spte(Pfn(12), 3, NONPRESENT, leaf_ro_not_host_writable(1024, 2))
        .unwrap();
    assert_eq!(v.frame_mappings(Pfn(1500)), Some((1, 0)));
    assert_eq!(
        v.release_zero_pages(Pfn(1024), 512),
        Err(Denial::FrameMapped)
    );
    // One frame in the middle of the block is mapped just the same.
    assert_eq!(v.release_zero_pages(Pfn(1142), 1), Err(Denial::FrameMapped));
    assert_eq!(v.frame_state(Pfn(1142)), Some(FrameState::Zero));
    v.write_spte(Pfn(12), 3, leaf_ro_not_host_writable(1024, 2), NONPRESENT)
        .unwrap();
    v.release_zero_pages(Pfn(1024), 512).unwrap();
    assert_eq!(v.frame_state(Pfn(1024)), Some(FrameState::Host));
    let _ = vm;
}

#[test]
fn mmio_ranges() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let a = vm_with_ept(&mut v, 10);
    let b = vm_with_ept(&mut v, 20);
    let bar = FRAMES as u64 + 0x1000;
    assert_eq!(v.assign_mmio(a, Pfn(100), 4), Err(Denial::MmioOverlap));
    v.assign_mmio(a, Pfn(bar), 1024).unwrap();
    assert_eq!(
        v.assign_mmio(b, Pfn(bar + 1000), 100),
        Err(Denial::MmioOverlap)
    );
    // 4 KiB and 2 MiB device mappings for the owner only.
    v.write_spte(Pfn(13), 1, NONPRESENT, leaf(bar + 3, 1, true))
        .unwrap();
    v.write_spte(Pfn(12), 1, NONPRESENT, leaf(bar + 512, 2, true))
        .unwrap();
    assert_eq!(
        v.check_spte(Pfn(23), 1, leaf(bar + 3, 1, true)).map(|_| ()),
        Err(Denial::EptForeignFrame)
    );
    assert_eq!(
        v.check_spte(Pfn(23), 1, leaf(bar + 4096, 1, true))
            .map(|_| ()),
        Err(Denial::FrameOutOfRange)
    );
    assert_eq!(v.release_mmio(a, Pfn(bar)), Err(Denial::FrameMapped));
    v.write_spte(Pfn(13), 1, leaf(bar + 3, 1, true), NONPRESENT)
        .unwrap();
    v.write_spte(Pfn(12), 1, leaf(bar + 512, 2, true), NONPRESENT)
        .unwrap();
    assert_eq!(v.release_mmio(b, Pfn(bar)), Err(Denial::WrongState));
    v.release_mmio(a, Pfn(bar)).unwrap();
    v.assign_mmio(b, Pfn(bar + 1000), 100).unwrap();
    assert_eq!(v.audit().anomalies(), 0);
}

#[test]
fn vcpu_and_vpid_lifecycle() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let vm = v.create_vm().unwrap();
    let c1 = v.create_vcpu(vm).unwrap();
    let c2 = v.create_vcpu(vm).unwrap();
    assert_eq!(v.assign_vpid(c1, Vpid(0)), Err(Denial::BadVpid));
    v.assign_vpid(c1, Vpid(7)).unwrap();
    assert_eq!(v.assign_vpid(c2, Vpid(7)), Err(Denial::BadVpid));
    assert_eq!(v.destroy_vcpu(c1), Err(Denial::VcpuBusy));
    assert_eq!(v.release_vpid(c2, Vpid(7)), Err(Denial::BadVpid));
    v.release_vpid(c1, Vpid(7)).unwrap();
    assert_eq!(v.assign_vpid(c2, Vpid(7)), Err(Denial::NeedsInvvpid));
    v.note_invvpid_global();
    v.assign_vpid(c2, Vpid(7)).unwrap();
    assert_eq!(v.vpid_owner(Vpid(7)), Some(c2));
    v.destroy_vcpu(c1).unwrap();
    assert_eq!(
        v.create_vcpu(VmId::from_raw(0xdead_beef)),
        Err(Denial::UnknownVm)
    );
}

#[test]
fn tables_fill_up_without_panicking() {
    let mut st = Storage::with_limits(FRAMES, 2, 2, 1, 1);
    let mut v = st.verifier();
    let a = v.create_vm().unwrap();
    let _b = v.create_vm().unwrap();
    assert_eq!(v.create_vm(), Err(Denial::TableFull));
    let c = v.create_vcpu(a).unwrap();
    let _ = v.create_vcpu(a).unwrap();
    assert_eq!(v.create_vcpu(a), Err(Denial::TableFull));
    v.register_vmcs(c, Pfn(10), VmcsKind::Vmcs01).unwrap();
    assert_eq!(
        v.register_vmcs(c, Pfn(11), VmcsKind::Vmcs02),
        Err(Denial::TableFull)
    );
    assert_eq!(v.counters(CheckClass::Registration).refused, 3);
}

#[test]
fn region_summary_tracks_mixed_and_uniform_regions() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let a = vm_with_ept(&mut v, 10);
    let b = v.create_vm().unwrap();
    // Region 2 (frames 1024..1536): half A, half B.
    v.donate_to_vm(a, Pfn(1024), 256).unwrap();
    v.donate_to_vm(b, Pfn(1280), 256).unwrap();
    assert_eq!(
        v.check_spte(Pfn(12), 2, leaf(1024, 2, true)).map(|_| ()),
        Err(Denial::EptForeignFrame)
    );
    // Move B's half to A through the host: now uniform A.
    for pfn in 1280..1536 {
        reclaim(&mut v, pfn).unwrap();
    }
    assert_eq!(
        v.check_spte(Pfn(12), 2, leaf(1024, 2, true)).map(|_| ()),
        Err(Denial::EptHostFrame)
    );
    v.donate_to_vm(a, Pfn(1280), 256).unwrap();
    v.write_spte(Pfn(12), 2, NONPRESENT, leaf(1024, 2, true))
        .unwrap();
    assert_eq!(v.frame_mappings(Pfn(1300)), Some((1, 1)));
    // A frame of a mapped huge page cannot be reclaimed.
    assert_eq!(
        v.check_reclaim(Pfn(1300)).map(|_| ()),
        Err(Denial::FrameMapped)
    );
    // Protect one page in region 3 and try a huge mapping over it.
    v.donate_to_vm(a, Pfn(1536), 511).unwrap();
    v.protect(Pfn(2047)).unwrap();
    assert_eq!(
        v.check_spte(Pfn(12), 3, leaf(1536, 2, false)).map(|_| ()),
        Err(Denial::EptProtectedFrame)
    );
    assert_eq!(v.audit().anomalies(), 0);
}
