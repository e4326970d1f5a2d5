// SPDX-License-Identifier: GPL-2.0

//! EPT entry rules: every encoding KVM 6.12 writes is accepted, every malformed or unsafe one is
//! refused with its reason, and the mapping counts follow the values actually replaced.

mod common;

use common::*;
use hyperps_verifier::policy::ept::*;
use hyperps_verifier::*;

fn classify(v: u64, level: EptLevel) -> Result<EptClass, Denial> {
    classify_spte(EptEntry(v), level, &config())
}

#[test]
fn kvm_encodings_are_accepted() {
    let l1 = EptLevel::L1;
    assert_eq!(classify(NONPRESENT.0, l1), Ok(EptClass::NonPresent));
    assert_eq!(classify(0, EptLevel::L4), Ok(EptClass::NonPresent));
    assert_eq!(classify(FROZEN.0, EptLevel::L3), Ok(EptClass::Frozen));
    // MMIO SPTEs carry a GPA and a 19-bit generation anywhere in bits 3-10 and 52-62.
    for gen in [0u64, 1, 0xff, 0x100, 0x7ffff] {
        for gfn in [0u64, 0xfee00, (1 << 40) - 1] {
            assert_eq!(
                classify(mmio(gfn, gen).0, l1),
                Ok(EptClass::Mmio),
                "gen {gen:#x} gfn {gfn:#x}"
            );
        }
    }
    let leaf4k = classify(leaf(0x1234, 1, true).0, l1).unwrap();
    assert_eq!(
        leaf4k,
        EptClass::Leaf {
            pfn: Pfn(0x1234),
            size: PageSize::Size4K,
            writable: true,
            access_tracked: false
        }
    );
    assert!(matches!(
        classify(leaf(0x200, 2, false).0, EptLevel::L2),
        Ok(EptClass::Leaf {
            size: PageSize::Size2M,
            ..
        })
    ));
    assert!(matches!(
        classify(leaf(0x40000, 3, true).0, EptLevel::L3),
        Ok(EptClass::Leaf {
            size: PageSize::Size1G,
            ..
        })
    ));
    assert_eq!(
        classify(nonleaf(77).0, EptLevel::L4),
        Ok(EptClass::NonLeaf { child: Pfn(77) })
    );
    assert!(matches!(
        classify(access_tracked(0x99, 1).0, l1),
        Ok(EptClass::Leaf {
            access_tracked: true,
            writable: false,
            ..
        })
    ));
    assert!(matches!(
        classify(access_tracked(0x200, 2).0, EptLevel::L2),
        Ok(EptClass::Leaf {
            access_tracked: true,
            ..
        })
    ));
    // Prefetched (no A bit), A/D disabled, write-protect-only A/D, dirty-logged (W cleared but
    // MMU-writable kept), not host-writable, execute-only (nested EPT), UC memory type for MMIO.
    let w = leaf(0x10, 1, true).0;
    for v in [
        w & !EPT_ACCESSED,
        (w & !(EPT_ACCESSED | EPT_DIRTY)) | SPTE_TDP_AD_DISABLED,
        w | SPTE_TDP_AD_WRPROT_ONLY,
        w & !(EPT_WRITE | EPT_DIRTY),
        leaf_ro_not_host_writable(0x10, 1).0,
        (leaf(0x10, 1, false).0 & !EPT_READ) | EPT_EXEC,
        w & !(EPT_MEMTYPE | EPT_IPAT),
    ] {
        assert!(
            matches!(classify(v, l1), Ok(EptClass::Leaf { .. })),
            "{v:#x}"
        );
    }
    // Non-leaf without A/D.
    let n = (nonleaf(5).0 & !EPT_ACCESSED) | SPTE_TDP_AD_DISABLED;
    assert_eq!(
        classify(n, EptLevel::L2),
        Ok(EptClass::NonLeaf { child: Pfn(5) })
    );
}

#[test]
fn malformed_entries_are_refused_with_their_reason() {
    let l1 = EptLevel::L1;
    let w = leaf(0x10, 1, true).0;
    let cases: &[(u64, EptLevel, Denial)] = &[
        (w | (1 << 47), l1, Denial::EptReservedBits),
        (w | (1 << 51), l1, Denial::EptReservedBits),
        (
            nonleaf(5).0 | (6 << 3),
            EptLevel::L2,
            Denial::EptReservedBits,
        ),
        (
            nonleaf(5).0 | EPT_IPAT,
            EptLevel::L4,
            Denial::EptReservedBits,
        ),
        (
            leaf(0x200, 2, true).0,
            EptLevel::L4,
            Denial::EptReservedBits,
        ),
        (
            leaf(0x201, 2, true).0,
            EptLevel::L2,
            Denial::EptReservedBits,
        ),
        (
            leaf(0x40200, 3, true).0,
            EptLevel::L3,
            Denial::EptReservedBits,
        ),
        ((w & !EPT_MEMTYPE) | (2 << 3), l1, Denial::EptBadMemoryType),
        ((w & !EPT_MEMTYPE) | (3 << 3), l1, Denial::EptBadMemoryType),
        ((w & !EPT_MEMTYPE) | (7 << 3), l1, Denial::EptBadMemoryType),
        ((w & !0x7) | EPT_WRITE, l1, Denial::EptBadPermissions),
        (mmio(1, 1).0 | (1 << 63), l1, Denial::EptBadPermissions),
        (
            mmio(1, 1).0 | SPTE_MMU_PRESENT,
            l1,
            Denial::EptBadPermissions,
        ),
        ((1 << 63) | 0x100, l1, Denial::EptUnknownEncoding),
        (0x1000, l1, Denial::EptUnknownEncoding),
        (w & !SPTE_MMU_PRESENT, l1, Denial::EptUnknownEncoding),
        (
            access_tracked(0x10, 1).0 & !SPTE_TDP_AD_DISABLED,
            l1,
            Denial::EptUnknownEncoding,
        ),
        (w & !EPT_SPTE_MMU_WRITABLE, l1, Denial::EptWritableInvariant),
        (
            leaf(0x10, 1, false).0 & !EPT_SPTE_HOST_WRITABLE | EPT_SPTE_MMU_WRITABLE,
            l1,
            Denial::EptWritableInvariant,
        ),
        (w | EPT_USER_EXEC, l1, Denial::EptUnexpectedBits),
        (w | (1 << 55), l1, Denial::EptUnexpectedBits),
        (w | (1 << 54), l1, Denial::EptUnexpectedBits),
        (w | (1 << 60), l1, Denial::EptUnexpectedBits),
        (w | SPTE_TDP_AD_MASK, l1, Denial::EptUnexpectedBits),
        (w | EPT_PAGE_SIZE, l1, Denial::EptUnexpectedBits),
        (
            nonleaf(5).0 | EPT_SPTE_MMU_WRITABLE,
            EptLevel::L3,
            Denial::EptUnexpectedBits,
        ),
        (
            nonleaf(5).0 | EPT_DIRTY,
            EptLevel::L3,
            Denial::EptUnexpectedBits,
        ),
    ];
    for (value, level, want) in cases {
        assert_eq!(
            classify(*value, *level),
            Err(*want),
            "{value:#x} at level {}",
            level.get()
        );
    }
    // Execute-only needs the capability; 1 GiB pages need the capability.
    let mut c = config();
    c.ept_exec_only = false;
    c.ept_1g_pages = false;
    let xonly = (leaf(0x10, 1, false).0 & !EPT_READ) | EPT_EXEC;
    assert_eq!(
        classify_spte(EptEntry(xonly), l1, &c),
        Err(Denial::EptBadPermissions)
    );
    assert_eq!(
        classify_spte(leaf(0x40000, 3, true), EptLevel::L3, &c),
        Err(Denial::EptHugePageNotAllowed)
    );
}

#[test]
fn leaf_ownership_rules() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let a = vm_with_ept(&mut v, 10);
    let b = vm_with_ept(&mut v, 20);
    let vcpu = v.create_vcpu(a).unwrap();
    v.donate_to_vm(a, Pfn(100), 1).unwrap();
    v.donate_to_vm(b, Pfn(101), 1).unwrap();
    v.register_zero_pages(Pfn(102), 1).unwrap();
    v.register_host_pgd(Pfn(103), 1).unwrap();
    v.register_vmcs(vcpu, Pfn(104), VmcsKind::Vmcs01).unwrap();
    v.protect(Pfn(105)).unwrap();
    let t = Pfn(13);
    let check = |v: &mut Verifier<'_>, e: EptEntry| v.check_spte(t, 0, e).map(|_| ());
    assert_eq!(check(&mut v, leaf(100, 1, true)), Ok(()));
    assert_eq!(
        check(&mut v, leaf(101, 1, false)),
        Err(Denial::EptForeignFrame)
    );
    assert_eq!(check(&mut v, leaf(102, 1, false)), Ok(()));
    assert_eq!(
        check(&mut v, leaf(102, 1, true)),
        Err(Denial::EptWritableShared)
    );
    assert_eq!(
        check(&mut v, leaf(103, 1, false)),
        Err(Denial::EptHostFrame)
    );
    assert_eq!(
        check(&mut v, leaf(104, 1, false)),
        Err(Denial::EptProtectedFrame)
    );
    assert_eq!(
        check(&mut v, leaf(105, 1, false)),
        Err(Denial::EptProtectedFrame)
    );
    assert_eq!(
        check(&mut v, leaf(10, 1, false)),
        Err(Denial::EptProtectedFrame)
    );
    assert_eq!(
        check(&mut v, leaf(999, 1, false)),
        Err(Denial::EptHostFrame)
    );
    assert_eq!(
        check(&mut v, access_tracked(101, 1)),
        Err(Denial::EptForeignFrame)
    );
    assert_eq!(
        check(&mut v, leaf(FRAMES as u64 + 5, 1, false)),
        Err(Denial::FrameOutOfRange)
    );
    // Not an EPT page, bad index.
    assert_eq!(
        v.check_spte(Pfn(100), 0, NONPRESENT).map(|_| ()),
        Err(Denial::NotEptPage)
    );
    assert_eq!(
        v.check_spte(t, 512, NONPRESENT).map(|_| ()),
        Err(Denial::BadEptIndex)
    );
    // Huge page straddling the end of the frame table.
    let last_region = FRAMES as u64 - 512;
    v.donate_to_vm(a, Pfn(last_region), 512).unwrap();
    assert_eq!(
        v.check_spte(Pfn(12), 9, leaf(last_region, 2, true))
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(
        v.check_spte(Pfn(11), 9, leaf(0, 3, true)).map(|_| ()),
        Err(Denial::FrameOutOfRange)
    );
    assert_eq!(v.counters(CheckClass::Ept).refused, 12);
    assert!(v.audit().last().is_some());
}

#[test]
fn gigabyte_leaf_needs_every_region() {
    // 2 GiB of frames so that a 1 GiB leaf fits.
    let frames = 2 * 512 * 512;
    let mut st = Storage::new(frames);
    let mut v = st.verifier();
    let a = vm_with_ept(&mut v, 10);
    let g = 512 * 512;
    v.donate_to_vm(a, Pfn(g), g).unwrap();
    v.write_spte(Pfn(11), 1, NONPRESENT, leaf(g, 3, true))
        .unwrap();
    assert_eq!(v.frame_mappings(Pfn(g + 12345)), Some((1, 1)));
    assert_eq!(
        v.check_reclaim(Pfn(g + 7)).map(|_| ()),
        Err(Denial::FrameMapped)
    );
    v.write_spte(Pfn(11), 1, leaf(g, 3, true), NONPRESENT)
        .unwrap();
    reclaim(&mut v, g + 7).unwrap();
    assert_eq!(
        v.check_spte(Pfn(11), 1, leaf(g, 3, true)).map(|_| ()),
        Err(Denial::EptHostFrame)
    );
    assert_eq!(v.audit().anomalies(), 0);
}

#[test]
fn nonleaf_rules() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let a = vm_with_ept(&mut v, 10);
    let b = vm_with_ept(&mut v, 20);
    v.register_ept_page(a, Pfn(30), EptLevel::L1).unwrap();
    v.donate_to_vm(a, Pfn(31), 1).unwrap();
    let _ = b;
    // Right VM, right level.
    assert!(v.check_spte(Pfn(12), 1, nonleaf(30)).is_ok());
    // Wrong level, wrong VM, not an EPT page, bottom level.
    assert_eq!(
        v.check_spte(Pfn(11), 1, nonleaf(30)).map(|_| ()),
        Err(Denial::EptBadChild)
    );
    assert_eq!(
        v.check_spte(Pfn(22), 1, nonleaf(30)).map(|_| ()),
        Err(Denial::EptBadChild)
    );
    assert_eq!(
        v.check_spte(Pfn(12), 1, nonleaf(31)).map(|_| ()),
        Err(Denial::EptBadChild)
    );
    assert_eq!(v.check_spte(Pfn(12), 1, nonleaf(13)).map(|_| ()), Ok(()));
    // At level 1 every entry is a leaf: a non-leaf value there is a writable leaf without KVM's
    // writable software bits, and as a well-formed leaf it would map a protected page.
    assert_eq!(
        v.check_spte(Pfn(13), 1, nonleaf(30)).map(|_| ()),
        Err(Denial::EptWritableInvariant)
    );
    assert_eq!(
        v.check_spte(Pfn(13), 1, leaf(30, 1, true)).map(|_| ()),
        Err(Denial::EptProtectedFrame)
    );
}

#[test]
fn counts_follow_actual_old_values_and_guard_unregister() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let a = vm_with_ept(&mut v, 10);
    v.donate_to_vm(a, Pfn(100), 2).unwrap();
    assert_eq!(v.ept_page_counts(Pfn(13)), Some((0, 1)));
    v.write_spte(Pfn(13), 0, NONPRESENT, leaf(100, 1, true))
        .unwrap();
    assert_eq!(v.ept_page_counts(Pfn(13)), Some((1, 1)));
    // Hardware set A and D meanwhile; the caller reports the value it actually replaced.
    let hw_old = EptEntry(leaf(100, 1, true).0 | EPT_ACCESSED | EPT_DIRTY);
    // Dirty logging write-protects (fetch-and on a snapshot): W goes, MMU-writable stays.
    let wp = EptEntry(leaf(100, 1, true).0 & !(EPT_WRITE | EPT_DIRTY));
    let plan = v.check_spte(Pfn(13), 0, wp).unwrap();
    v.commit_spte(plan, hw_old);
    assert_eq!(v.frame_mappings(Pfn(100)), Some((1, 0)));
    // Lockless fast_page_fault makes it writable again with cmpxchg; a failed cmpxchg drops
    // the plan and changes nothing.
    let plan = v.check_spte(Pfn(13), 0, leaf(100, 1, true)).unwrap();
    drop(plan);
    assert_eq!(v.frame_mappings(Pfn(100)), Some((1, 0)));
    // Access tracking keeps the reference.
    let plan = v.check_spte(Pfn(13), 0, access_tracked(100, 1)).unwrap();
    v.commit_spte(plan, wp);
    assert_eq!(v.frame_mappings(Pfn(100)), Some((1, 0)));
    // Page tables with live entries or references cannot be freed.
    assert_eq!(v.unregister_ept_page(Pfn(13)), Err(Denial::EptPageInUse));
    assert_eq!(v.unregister_ept_page(Pfn(12)), Err(Denial::EptPageInUse));
    // Zap: the child entry goes frozen then non-present, the parent link goes.
    let plan = v.check_spte(Pfn(13), 0, FROZEN).unwrap();
    v.commit_spte(plan, access_tracked(100, 1));
    v.write_spte(Pfn(13), 0, FROZEN, NONPRESENT).unwrap();
    v.write_spte(Pfn(12), 0, nonleaf(13), NONPRESENT).unwrap();
    assert_eq!(v.ept_page_counts(Pfn(13)), Some((0, 0)));
    v.unregister_ept_page(Pfn(13)).unwrap();
    assert_eq!(v.vm_ept_pages(a), Some(3));
    assert_eq!(v.frame_mappings(Pfn(100)), Some((0, 0)));
    assert_eq!(v.audit().anomalies(), 0);
}

#[test]
fn stale_plans_and_bogus_old_values_are_anomalies_not_panics() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let a = vm_with_ept(&mut v, 10);
    v.donate_to_vm(a, Pfn(100), 2).unwrap();
    let stale = v.check_spte(Pfn(13), 0, leaf(100, 1, true)).unwrap();
    v.donate_to_vm(a, Pfn(200), 1).unwrap();
    v.commit_spte(stale, NONPRESENT);
    assert_eq!(v.audit().anomalies(), 1);
    assert_eq!(v.frame_mappings(Pfn(100)), Some((0, 0)));
    // An old value that was never written (garbage) is counted as an anomaly.
    let plan = v.check_spte(Pfn(13), 1, NONPRESENT).unwrap();
    v.commit_spte(plan, EptEntry(0x1000));
    assert_eq!(v.audit().anomalies(), 2);
    // An old leaf that was never counted saturates at zero.
    let plan = v.check_spte(Pfn(13), 1, NONPRESENT).unwrap();
    v.commit_spte(plan, leaf(101, 1, true));
    assert_eq!(v.frame_mappings(Pfn(101)), Some((0, 0)));
    assert!(v.audit().anomalies() >= 3);
}

#[test]
fn tables_of_a_destroyed_vm_cannot_exist() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let a = v.create_vm().unwrap();
    v.register_ept_page(a, Pfn(10), EptLevel::L1).unwrap();
    assert_eq!(v.destroy_vm(a), Err(Denial::VmBusy));
    assert_eq!(
        v.register_ept_page(a, Pfn(10), EptLevel::L1),
        Err(Denial::WrongState)
    );
    assert_eq!(
        v.register_ept_page(a, Pfn(11), EptLevel::L5),
        Err(Denial::BadRange)
    );
}
