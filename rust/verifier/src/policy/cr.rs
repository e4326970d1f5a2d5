// SPDX-License-Identifier: GPL-2.0

//! Host control-register rules.
//!
//! * `CR0`: PE, PG and WP stay set, CD and NW stay clear; bits 63:32 are reserved.
//! * `CR4`: the bits pinned at initialisation (SMEP, SMAP, UMIP, FSGSBASE, CET where the host
//!   had them) stay set; VMXE equals "this CPU is in VMX operation", so it changes only
//!   through [`Verifier::vmxon`] and [`Verifier::vmxoff`]; PCIDE keeps its value.
//! * `CR3`: the root must be a registered host page-table root (never the HyperPS root);
//!   with `CR4.PCIDE` the PCID must be 0 or a kernel ASID (1 to `max_kernel_asid`, optionally
//!   with the PTI user bit 11), never the HyperPS PCID; bit 63 (no-flush) and the LAM bits
//!   61/62 are allowed, bits 60:52 and 51:MAXPHYADDR are reserved.

use super::denial::{CheckClass, Denial};
use super::records::{FrameState, Protected};
use super::types::{CpuId, Cr0, Cr3, Cr4, Pfn};
use super::Verifier;

/// `CR0.PE`.
pub const CR0_PE: u64 = 1 << 0;
/// `CR0.WP`.
pub const CR0_WP: u64 = 1 << 16;
/// `CR0.NW`.
pub const CR0_NW: u64 = 1 << 29;
/// `CR0.CD`.
pub const CR0_CD: u64 = 1 << 30;
/// `CR0.PG`.
pub const CR0_PG: u64 = 1 << 31;
/// `CR4.VMXE`.
pub const CR4_VMXE: u64 = 1 << 13;
/// `CR4.PCIDE`.
pub const CR4_PCIDE: u64 = 1 << 17;
/// `CR4.SMEP`.
pub const CR4_SMEP: u64 = 1 << 20;
/// `CR4.SMAP`.
pub const CR4_SMAP: u64 = 1 << 21;
/// `CR4.UMIP`.
pub const CR4_UMIP: u64 = 1 << 11;
/// `CR4.FSGSBASE`.
pub const CR4_FSGSBASE: u64 = 1 << 16;
/// `CR4.CET`.
pub const CR4_CET: u64 = 1 << 23;
/// The bits the kernel may pin (`cr4_pinned_mask`).
pub const CR4_PINNABLE: u64 = CR4_SMEP | CR4_SMAP | CR4_UMIP | CR4_FSGSBASE | CR4_CET;
/// `CR3` no-flush bit.
pub const CR3_NOFLUSH: u64 = 1 << 63;
/// `CR3` LAM bits (U57, U48).
pub const CR3_LAM: u64 = (1 << 61) | (1 << 62);
/// `CR3` PTI user-PCID bit.
pub const CR3_PTI_USER_PCID: u16 = 1 << 11;

/// The `CR0` rule alone.
pub fn cr0_verdict(new: Cr0) -> Result<(), Denial> {
    let required = CR0_PE | CR0_PG | CR0_WP;
    if new.0 & required != required || new.0 >> 32 != 0 {
        Err(Denial::Cr0Pinned)
    } else if new.0 & (CR0_CD | CR0_NW) != 0 {
        Err(Denial::Cr0CacheDisable)
    } else {
        Ok(())
    }
}

/// The pinned-bits part of the `CR4` rule.
pub fn cr4_pinned_verdict(new: Cr4, pinned: u64) -> Result<(), Denial> {
    if new.0 & pinned != pinned {
        Err(Denial::Cr4Pinned)
    } else {
        Ok(())
    }
}

/// The rule for a write of the live host `CR4` (`native_write_cr4()`): the pinned bits stay
/// set, PCIDE keeps its value `pcide`, and VMXE is cleared only on a CPU that has left VMX
/// operation (`vmx_on` false); it may be set ahead of `VMXON`.
pub fn cr4_write_verdict(new: Cr4, pinned: u64, pcide: bool, vmx_on: bool) -> Result<(), Denial> {
    cr4_pinned_verdict(new, pinned)?;
    if (new.0 & CR4_PCIDE != 0) != pcide {
        return Err(Denial::Cr4Pcide);
    }
    if vmx_on && new.0 & CR4_VMXE == 0 {
        return Err(Denial::Cr4Vmxe);
    }
    Ok(())
}

/// The whole `CR4` rule for a CPU whose VMX state is `vmx_on`.
pub fn cr4_verdict(new: Cr4, pinned: u64, vmx_on: bool) -> Result<(), Denial> {
    cr4_pinned_verdict(new, pinned)?;
    if (new.0 & CR4_VMXE != 0) != vmx_on {
        return Err(Denial::Cr4Vmxe);
    }
    Ok(())
}

/// Decodes the root frame and PCID of a `CR3` value and checks the format rules.
pub fn cr3_decode(
    new: Cr3,
    cr4: Cr4,
    phys_addr_bits: u8,
    max_kernel_asid: u16,
    hyperps_pcid: u16,
) -> Result<(Pfn, u16), Denial> {
    let pcide = cr4.0 & CR4_PCIDE != 0;
    let pa_top = 1u64.checked_shl(u32::from(phys_addr_bits)).unwrap_or(0);
    let pa_mask = pa_top.wrapping_sub(1) & !0xfffu64;
    let mut allowed = pa_mask | 0xfff | CR3_LAM;
    if pcide {
        allowed |= CR3_NOFLUSH;
    }
    if new.0 & !allowed != 0 {
        return Err(Denial::Cr3ReservedBits);
    }
    let root = Pfn((new.0 & pa_mask) >> 12);
    if !pcide {
        return Ok((root, 0));
    }
    let pcid = (new.0 & 0xfff) as u16;
    let asid = pcid & !CR3_PTI_USER_PCID;
    if asid == hyperps_pcid & !CR3_PTI_USER_PCID {
        return Err(Denial::Cr3BadPcid);
    }
    if pcid == 0 || (asid >= 1 && asid <= max_kernel_asid) {
        Ok((root, pcid))
    } else {
        Err(Denial::Cr3BadPcid)
    }
}

/// The whole `CR3` rule, including the root registry; shared with the `HOST_CR3` field.
pub(crate) fn cr3_root_verdict(v: &Verifier<'_>, new: Cr3, cr4: Cr4) -> Result<(), Denial> {
    let c = &v.config;
    let (root, _) = cr3_decode(
        new,
        cr4,
        c.phys_addr_bits,
        c.max_kernel_asid,
        c.hyperps_pcid,
    )?;
    match v.frame(root).map(|f| f.state) {
        Ok(FrameState::HostPgd) => Ok(()),
        Ok(FrameState::Protected(Protected::HyperPsRoot)) => Err(Denial::Cr3HyperPsRoot),
        _ => Err(Denial::Cr3UnknownRoot),
    }
}

impl<'a> Verifier<'a> {
    /// Checks a write of `new` to `CR0` on `cpu` (`old` is recorded in the audit ring only).
    pub fn check_cr0(&mut self, cpu: CpuId, old: Cr0, new: Cr0) -> Result<(), Denial> {
        let verdict = self.cpu_record(cpu).and_then(|_| cr0_verdict(new));
        self.record(CheckClass::Cr0, 0, old.0, new.0, verdict)
    }

    /// Checks a write of `new` to `CR4` on `cpu`.
    pub fn check_cr4(&mut self, cpu: CpuId, old: Cr4, new: Cr4) -> Result<(), Denial> {
        let pinned = self.config.cr4_pinned;
        let verdict = self
            .cpu_record(cpu)
            .and_then(|c| cr4_verdict(new, pinned, c.vmx_on));
        self.record(CheckClass::Cr4, 4, old.0, new.0, verdict)
    }

    /// Checks a write of `new` to `CR3` on `cpu`, whose current `CR4` is `cr4`.
    pub fn check_cr3(&mut self, cpu: CpuId, cr4: Cr4, new: Cr3) -> Result<(), Denial> {
        let verdict = self
            .cpu_record(cpu)
            .and_then(|_| cr3_root_verdict(self, new, cr4));
        self.record(CheckClass::Cr3, 3, cr4.0, new.0, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinnable_mask_matches_the_kernel() {
        // cr4_pinned_mask in arch/x86/kernel/cpu/common.c.
        assert_eq!(CR4_PINNABLE, 0x0030_0000 | 0x0800 | 0x1_0000 | 0x80_0000);
    }

    #[test]
    fn cr0_and_cr4_rules() {
        assert_eq!(cr0_verdict(Cr0(0x8005_0033)), Ok(()));
        assert_eq!(cr0_verdict(Cr0(0x8004_0033)), Err(Denial::Cr0Pinned));
        assert_eq!(cr0_verdict(Cr0(0x1_8005_0033)), Err(Denial::Cr0Pinned));
        assert_eq!(
            cr4_verdict(Cr4(CR4_SMEP | CR4_VMXE), CR4_SMEP, true),
            Ok(())
        );
        assert_eq!(
            cr4_verdict(Cr4(CR4_VMXE), CR4_SMEP, true),
            Err(Denial::Cr4Pinned)
        );
        assert_eq!(
            cr4_verdict(Cr4(CR4_SMEP), CR4_SMEP, true),
            Err(Denial::Cr4Vmxe)
        );
    }

    #[test]
    fn cache_disable_is_refused() {
        assert_eq!(
            cr0_verdict(Cr0(0x8005_0033 | CR0_CD)),
            Err(Denial::Cr0CacheDisable)
        );
        assert_eq!(
            cr0_verdict(Cr0(0x8005_0033 | CR0_NW)),
            Err(Denial::Cr0CacheDisable)
        );
    }

    #[test]
    fn live_cr4_rule() {
        let base = CR4_SMEP | CR4_PCIDE;
        assert_eq!(cr4_write_verdict(Cr4(base), CR4_SMEP, true, false), Ok(()));
        assert_eq!(
            cr4_write_verdict(Cr4(base | CR4_VMXE), CR4_SMEP, true, false),
            Ok(())
        );
        assert_eq!(
            cr4_write_verdict(Cr4(base), CR4_SMEP, true, true),
            Err(Denial::Cr4Vmxe)
        );
        assert_eq!(
            cr4_write_verdict(Cr4(base | CR4_VMXE), CR4_SMEP, true, true),
            Ok(())
        );
        assert_eq!(
            cr4_write_verdict(Cr4(CR4_SMEP), CR4_SMEP, true, false),
            Err(Denial::Cr4Pcide)
        );
        assert_eq!(
            cr4_write_verdict(Cr4(base), CR4_SMEP, false, false),
            Err(Denial::Cr4Pcide)
        );
        assert_eq!(
            cr4_write_verdict(Cr4(CR4_PCIDE), CR4_SMEP, true, false),
            Err(Denial::Cr4Pinned)
        );
    }
}
