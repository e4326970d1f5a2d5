// SPDX-License-Identifier: GPL-2.0

//! Fuzz target: the pure decoders on raw values: EPT entry classification at every level and
//! configuration, VMCS field policy and width, control verdicts, CR0/CR3/CR4 rules. Checks a
//! few algebraic properties on the way (A/D bits never change a verdict).

#![no_main]

use hyperps_verifier::policy::cr::{cr0_verdict, cr3_decode, cr4_verdict};
use hyperps_verifier::policy::ept::{classify_spte, EPT_ACCESSED, EPT_DIRTY};
use hyperps_verifier::policy::vmcs::control_verdict;
use hyperps_verifier::policy::vmcs_fields::{field_policy, is_shadow_field, ControlField};
use hyperps_verifier::*;

libfuzzer_sys::fuzz_target!(|input: (u64, u8, u8, u32, u64, u64)| {
    let (value, level, flags, field, a, b) = input;
    let mut config = Config::kvm_6_12(36 + (flags % 17), a & 0x0030_0800 | (1 << 20));
    config.ept_exec_only = flags & 0x20 != 0;
    config.ept_1g_pages = flags & 0x40 != 0;
    if let Some(level) = EptLevel::new(level % 6) {
        let verdict = classify_spte(EptEntry(value), level, &config);
        // Hardware sets A and D concurrently; they must never change a present entry's verdict
        // (non-present special values such as 0 and FROZEN_SPTE are exact encodings).
        if value & 0x7 != 0 && value & (1 << 11) != 0 {
            let flipped =
                classify_spte(EptEntry(value ^ (EPT_ACCESSED | EPT_DIRTY)), level, &config);
            if verdict.is_ok() && level.get() == 1 {
                assert!(flipped.is_ok(), "A/D changed the verdict of {value:#x}");
            }
        }
    }
    let f = VmcsField(field);
    let _ = (
        field_policy(f),
        is_shadow_field(f),
        f.width_bits(),
        f.max_value(),
    );
    let controls = [
        ControlField::Pin,
        ControlField::Primary,
        ControlField::Secondary,
        ControlField::Tertiary,
        ControlField::Exit,
        ControlField::Entry,
    ];
    let kinds = [VmcsKind::Vmcs01, VmcsKind::Vmcs02, VmcsKind::Shadow];
    let _ = control_verdict(
        controls[usize::from(flags % 6)],
        kinds[usize::from(flags / 6 % 3)],
        value,
        flags & 1 != 0,
    );
    let _ = cr0_verdict(Cr0(a));
    let _ = cr4_verdict(Cr4(b), a, flags & 2 != 0);
    let _ = cr3_decode(
        Cr3(value),
        Cr4(b),
        36 + (flags % 17),
        u16::from(level),
        (field & 0xfff) as u16,
    );
});
