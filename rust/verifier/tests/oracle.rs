// SPDX-License-Identifier: GPL-2.0

//! Control registers and VMCS controls: unit cases, and property tests against an independent
//! bit-mask oracle written from the architectural bit numbers (not from the crate's constants).

mod common;

use common::*;
use hyperps_verifier::policy::cr::{cr0_verdict, cr3_decode, cr4_verdict};
use hyperps_verifier::policy::vmcs::control_verdict;
use hyperps_verifier::policy::vmcs_fields::ControlField;
use hyperps_verifier::*;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// Oracle: PE (bit 0), WP (bit 16), PG (bit 31) set, nothing above bit 31.
fn cr0_oracle(v: u64) -> bool {
    // PE, WP, PG set; CD (30) and NW (29) clear; bits 63:32 reserved.
    v & 0x8001_0001 == 0x8001_0001 && v & 0x6000_0000 == 0 && v <= 0xffff_ffff
}

/// Oracle: every pinned bit set; VMXE (bit 13) exactly when in VMX operation.
fn cr4_oracle(v: u64, pinned: u64, vmx_on: bool) -> bool {
    v & pinned == pinned && ((v >> 13) & 1 == 1) == vmx_on
}

/// Oracle for the controls, from the SDM bit numbers.
fn control_oracle(control: ControlField, kind: VmcsKind, v: u64, link: bool) -> bool {
    let bit = |n: u32| (v >> n) & 1 == 1;
    match control {
        ControlField::Pin => bit(0) && bit(3),
        ControlField::Primary => bit(24) && bit(31) && !bit(25),
        ControlField::Secondary => {
            let base = bit(1) && !bit(22);
            match kind {
                VmcsKind::Vmcs02 => base && !bit(17) && !bit(14),
                _ => base && !bit(13) && (!bit(14) || link),
            }
        }
        ControlField::Tertiary => v & !0x10 == 0,
        ControlField::Exit => bit(9),
        ControlField::Entry => !bit(10) && !bit(11),
    }
}

fn control_field() -> impl Strategy<Value = ControlField> {
    prop_oneof![
        Just(ControlField::Pin),
        Just(ControlField::Primary),
        Just(ControlField::Secondary),
        Just(ControlField::Tertiary),
        Just(ControlField::Exit),
        Just(ControlField::Entry),
    ]
}

fn vmcs_kind() -> impl Strategy<Value = VmcsKind> {
    prop_oneof![Just(VmcsKind::Vmcs01), Just(VmcsKind::Vmcs02)]
}

/// Values biased towards the interesting bits: random words with the required bits mostly set.
fn control_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u32>().prop_map(u64::from),
        any::<u32>().prop_map(|v| u64::from(v | 0x8100_020b) & !(1 << 25) & !(1 << 22)),
        any::<u64>(),
        (0u32..64).prop_map(|b| 1u64 << b),
    ]
}

fn cr_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        any::<u32>().prop_map(u64::from),
        any::<u32>().prop_map(|v| u64::from(v | 0x8001_0001))
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn cr0_matches_oracle(v in cr_value()) {
        prop_assert_eq!(cr0_verdict(Cr0(v)).is_ok(), cr0_oracle(v));
    }

    #[test]
    fn cr4_matches_oracle(v in any::<u64>(), pinned_sel in any::<u8>(), vmx_on in any::<bool>()) {
        // Any subset of SMEP, SMAP, UMIP, FSGSBASE, CET may be pinned.
        let pinnable = [1u64 << 20, 1 << 21, 1 << 11, 1 << 16, 1 << 23];
        let pinned = pinnable.iter().enumerate().filter(|(i, _)| pinned_sel >> i & 1 == 1).fold(0, |a, (_, b)| a | b);
        let v = if pinned_sel & 0x80 != 0 { v | pinned } else { v };
        prop_assert_eq!(cr4_verdict(Cr4(v), pinned, vmx_on).is_ok(), cr4_oracle(v, pinned, vmx_on));
    }

    #[test]
    fn controls_match_oracle(c in control_field(), kind in vmcs_kind(), v in control_value(), link in any::<bool>()) {
        prop_assert_eq!(control_verdict(c, kind, v, link).is_ok(), control_oracle(c, kind, v, link));
    }

    #[test]
    fn cr3_pcid_matches_oracle(root in 0u64..(1 << 34), pcid in 0u64..4096, noflush in any::<bool>(), pcide in any::<bool>()) {
        let v = (root << 12) | pcid | if noflush { 1 << 63 } else { 0 };
        let cr4 = Cr4(if pcide { 1 << 17 } else { 0 });
        let got = cr3_decode(Cr3(v), cr4, PHYS_BITS, 6, 0x7fe);
        let asid = pcid & 0x7ff;
        let oracle = if !pcide {
            !noflush
        } else {
            asid != 0x7fe && (pcid == 0 || (1..=6).contains(&asid))
        };
        prop_assert_eq!(got.is_ok(), oracle, "cr3 {:#x} pcide {}", v, pcide);
        if let Ok((r, _)) = got {
            prop_assert_eq!(r, Pfn(root));
        }
    }
}

#[test]
fn cr_rules_on_the_verifier() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    let cpu = CpuId(0);
    let cr0 = Cr0(0x8005_0033);
    assert_eq!(
        v.check_cr0(cpu, cr0, Cr0(cr0.0 | 0x6000_0000)),
        Err(Denial::Cr0CacheDisable)
    );
    assert_eq!(
        v.check_cr0(cpu, cr0, Cr0(cr0.0 & !(1 << 16))),
        Err(Denial::Cr0Pinned)
    );
    assert_eq!(
        v.check_cr0(cpu, cr0, Cr0(cr0.0 & !1)),
        Err(Denial::Cr0Pinned)
    );
    assert_eq!(v.check_cr0(CpuId(9), cr0, cr0), Err(Denial::UnknownCpu));

    let cr4 = Cr4(PINNED | (1 << 17) | (1 << 7) | (1 << 5));
    assert_eq!(v.check_cr4(cpu, cr4, Cr4(cr4.0 & !(1 << 7))), Ok(()));
    assert_eq!(
        v.check_cr4(cpu, cr4, Cr4(cr4.0 & !(1 << 20))),
        Err(Denial::Cr4Pinned)
    );
    assert_eq!(
        v.check_cr4(cpu, cr4, Cr4(cr4.0 | (1 << 13))),
        Err(Denial::Cr4Vmxe)
    );
    v.register_vmxon(cpu, Pfn(50)).unwrap();
    v.vmxon(cpu, Hpa(50 << 12)).unwrap();
    assert_eq!(v.check_cr4(cpu, cr4, Cr4(cr4.0 | (1 << 13))), Ok(()));
    assert_eq!(v.check_cr4(cpu, cr4, cr4), Err(Denial::Cr4Vmxe));
    v.vmxoff(cpu).unwrap();
    assert_eq!(v.check_cr4(cpu, cr4, cr4), Ok(()));

    // CR3: registered roots (both halves of a PTI PGD), kernel PCIDs, never HyperPS.
    v.register_host_pgd(Pfn(60), 2).unwrap();
    v.register_hyperps_root(Pfn(62)).unwrap();
    assert_eq!(v.check_cr3(cpu, cr4, Cr3((60 << 12) | 1)), Ok(()));
    assert_eq!(
        v.check_cr3(cpu, cr4, Cr3((61 << 12) | 0x801 | (1 << 63))),
        Ok(())
    );
    assert_eq!(
        v.check_cr3(cpu, cr4, Cr3((60 << 12) | 7)),
        Err(Denial::Cr3BadPcid)
    );
    assert_eq!(
        v.check_cr3(cpu, cr4, Cr3((60 << 12) | 0x7fe)),
        Err(Denial::Cr3BadPcid)
    );
    assert_eq!(
        v.check_cr3(cpu, cr4, Cr3((62 << 12) | 1)),
        Err(Denial::Cr3HyperPsRoot)
    );
    assert_eq!(
        v.check_cr3(cpu, cr4, Cr3((63 << 12) | 1)),
        Err(Denial::Cr3UnknownRoot)
    );
    assert_eq!(
        v.check_cr3(cpu, cr4, Cr3((1 << 50) | 1)),
        Err(Denial::Cr3ReservedBits)
    );
    assert_eq!(
        v.check_cr3(cpu, Cr4(0), Cr3((60 << 12) | (1 << 63))),
        Err(Denial::Cr3ReservedBits)
    );
    assert_eq!(v.check_cr3(cpu, Cr4(0), Cr3(60 << 12)), Ok(()));
    v.unregister_host_pgd(Pfn(60), 2).unwrap();
    assert_eq!(
        v.check_cr3(cpu, cr4, Cr3((60 << 12) | 1)),
        Err(Denial::Cr3UnknownRoot)
    );

    assert_eq!(v.counters(CheckClass::Cr0).refused, 4);
    assert_eq!(v.counters(CheckClass::Cr4).verified, 3);
    assert_eq!(v.counters(CheckClass::Cr3).verified, 3);
    // Refusals are in the ring, oldest first, with the old and new values.
    let first = v.audit_mut().pop().unwrap();
    assert_eq!(first.class, CheckClass::Cr0);
    assert_eq!(first.reason, Denial::Cr0CacheDisable);
    assert_eq!(first.old, cr0.0);
    assert_eq!(first.new, cr0.0 | 0x6000_0000);
    let second = v.audit_mut().pop().unwrap();
    assert_eq!(second.reason, Denial::Cr0Pinned);
    assert_eq!(second.new, cr0.0 & !(1 << 16));
}

#[test]
fn audit_ring_overwrites_oldest_and_counts_losses() {
    let mut st = Storage::new(FRAMES);
    let mut v = st.verifier();
    for i in 0..40u64 {
        let _ = v.check_cr0(CpuId(0), Cr0(0), Cr0(i));
    }
    assert_eq!(v.audit().total_refused(), 40);
    assert_eq!(v.audit().lost(), 24);
    let first = v.audit_mut().pop().unwrap();
    assert_eq!(first.seq, 25);
    assert_eq!(first.new, 24);
    let mut n = 1;
    while v.audit_mut().pop().is_some() {
        n += 1;
    }
    assert_eq!(n, 16);
    assert_eq!(v.audit().lost(), 24);
    assert_eq!(v.audit().last().unwrap().seq, 40);
}
