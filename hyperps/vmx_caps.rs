// SPDX-License-Identifier: GPL-2.0

//! VMX capabilities, read from the VMX capability MSRs of the boot CPU.
//!
//! `/proc/cpuinfo` reflects what the kernel chose to enable; HyperPS needs what the hardware
//! offers, so it reads the MSRs itself.

use kernel::prelude::*;

mod msr {
    pub(super) const IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub(super) const IA32_VMX_BASIC: u32 = 0x480;
    pub(super) const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    pub(super) const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    pub(super) const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    pub(super) const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
    pub(super) const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
}

/// `IA32_VMX_PROCBASED_CTLS` allowed-1 bit that makes the secondary controls available.
const PRIMARY_ACTIVATE_SECONDARY: u32 = 1 << 31;

/// Secondary processor-based controls, as `(bit, name)`; the names follow Linux's vmxfeatures.
const SECONDARY_FEATURES: [(u32, &str); 9] = [
    (1, "ept"),
    (5, "vpid"),
    (7, "unrestricted_guest"),
    (13, "vmfunc"),
    (14, "shadow_vmcs"),
    (17, "pml"),
    (18, "ept_violation_ve"),
    (20, "xsaves"),
    (25, "tsc_scaling"),
];

/// Pin-based controls, as `(bit, name)`.
const PIN_FEATURES: [(u32, &str); 3] = [(5, "vnmi"), (6, "preemption_timer"), (7, "posted_intr")];

/// `IA32_VMX_EPT_VPID_CAP` bits, as `(bit, name)`.
const EPT_VPID_FEATURES: [(u32, &str); 10] = [
    (0, "ept_x_only"),
    (6, "ept_4level"),
    (7, "ept_5level"),
    (14, "ept_wb"),
    (16, "ept_2m"),
    (17, "ept_1g"),
    (20, "invept"),
    (21, "ept_ad"),
    (32, "invvpid"),
    (41, "invvpid_single"),
];

const SECONDARY_ENABLE_EPT: u32 = 1 << 1;
const SECONDARY_ENABLE_VPID: u32 = 1 << 5;
const EPT_CAP_4LEVEL: u64 = 1 << 6;
const EPT_CAP_WB: u64 = 1 << 14;
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMXON_OUTSIDE_SMX: u64 = 1 << 2;

mod ffi {
    use kernel::ffi::{c_int, c_uint};

    extern "C" {
        /// Reads an MSR on `cpu`, returning non-zero instead of faulting when it does not exist.
        pub(super) fn rdmsr_safe_on_cpu(
            cpu: c_uint,
            msr: u32,
            low: *mut u32,
            high: *mut u32,
        ) -> c_int;
    }
}

/// Reads `msr` on the boot CPU, failing with `EIO` when the MSR does not exist.
fn read_msr(msr: u32) -> Result<u64> {
    let mut low = 0u32;
    let mut high = 0u32;
    // SAFETY: `low` and `high` are valid for writes for the duration of the call, and
    // `rdmsr_safe_on_cpu` catches the #GP of a missing MSR. CPU 0 is always online.
    let ret = unsafe { ffi::rdmsr_safe_on_cpu(0, msr, &mut low, &mut high) };
    if ret != 0 {
        return Err(EIO);
    }
    Ok((u64::from(high) << 32) | u64::from(low))
}

/// The VMX capability MSRs of the boot CPU.
pub(crate) struct VmxCaps {
    feature_control: u64,
    basic: u64,
    pin: u64,
    primary: u64,
    secondary: u64,
    exit: u64,
    ept_vpid: u64,
}

impl VmxCaps {
    /// Reads the capability MSRs. Fails if the CPU has no VMX at all.
    pub(crate) fn read_boot_cpu() -> Result<Self> {
        let basic = read_msr(msr::IA32_VMX_BASIC)?;
        let primary = read_msr(msr::IA32_VMX_PROCBASED_CTLS)?;
        let allowed1 = |ctls: u64| (ctls >> 32) as u32;
        let has_secondary = allowed1(primary) & PRIMARY_ACTIVATE_SECONDARY != 0;
        let secondary = if has_secondary {
            read_msr(msr::IA32_VMX_PROCBASED_CTLS2)?
        } else {
            0
        };
        let has_ept_or_vpid =
            allowed1(secondary) & (SECONDARY_ENABLE_EPT | SECONDARY_ENABLE_VPID) != 0;
        let ept_vpid = if has_ept_or_vpid {
            read_msr(msr::IA32_VMX_EPT_VPID_CAP)?
        } else {
            0
        };
        Ok(Self {
            feature_control: read_msr(msr::IA32_FEATURE_CONTROL).unwrap_or(0),
            basic,
            pin: read_msr(msr::IA32_VMX_PINBASED_CTLS)?,
            primary,
            secondary,
            exit: read_msr(msr::IA32_VMX_EXIT_CTLS)?,
            ept_vpid,
        })
    }

    /// The raw `IA32_VMX_EPT_VPID_CAP` value (0 without EPT and VPID).
    pub(crate) fn ept_vpid(&self) -> u64 {
        self.ept_vpid
    }

    /// True if the CPU allows VM-exit control `bit` to be 1.
    pub(crate) fn exit_allowed(&self, bit: u32) -> bool {
        (self.exit >> 32) & (1u64 << bit) != 0
    }

    fn secondary_allowed(&self, bit: u32) -> bool {
        (self.secondary >> 32) & (1u64 << bit) != 0
    }

    /// Prints what was read, one line per MSR group, in the names Linux uses.
    pub(crate) fn report(&self) {
        let revision = self.basic & 0x7fff_ffff;
        let vmcs_size = (self.basic >> 32) & 0x1fff;
        pr_info!(
            "VMX: basic {:#018x} (VMCS revision {:#x}, {} bytes), feature control {:#x}\n",
            self.basic,
            revision,
            vmcs_size,
            self.feature_control
        );
        pr_info!(
            "VMX: pin {:#018x} primary {:#018x} secondary {:#018x} ept_vpid {:#018x}\n",
            self.pin,
            self.primary,
            self.secondary,
            self.ept_vpid
        );

        pr_info!("VMX features:");
        let groups = [
            (&PIN_FEATURES[..], self.pin >> 32),
            (&SECONDARY_FEATURES[..], self.secondary >> 32),
            (&EPT_VPID_FEATURES[..], self.ept_vpid),
        ];
        for (features, bits) in groups {
            for (bit, name) in features {
                if bits & (1u64 << bit) != 0 {
                    kernel::pr_cont!(" {}", name);
                }
            }
        }
        kernel::pr_cont!("\n");
    }

    /// Names the first capability HyperPS needs that the CPU does not offer, if any.
    pub(crate) fn missing_requirement(&self) -> Option<&'static str> {
        let fc = self.feature_control;
        if fc & FEATURE_CONTROL_LOCKED != 0 && fc & FEATURE_CONTROL_VMXON_OUTSIDE_SMX == 0 {
            return Some("VMXON outside SMX (disabled by firmware)");
        }
        if !self.secondary_allowed(1) {
            return Some("EPT");
        }
        if !self.secondary_allowed(5) {
            return Some("VPID");
        }
        if self.ept_vpid & EPT_CAP_4LEVEL == 0 || self.ept_vpid & EPT_CAP_WB == 0 {
            return Some("4-level write-back EPT");
        }
        None
    }
}
