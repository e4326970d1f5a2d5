// SPDX-License-Identifier: GPL-2.0

//! Shared fixture for the integration tests: owned storage for the verifier's tables, and
//! builders for the EPT entry values KVM 6.12 writes.

#![allow(dead_code, unreachable_pub)]

use hyperps_verifier::policy::ept::{
    EPT_ACCESSED, EPT_DIRTY, EPT_EXEC, EPT_IPAT, EPT_PAGE_SIZE, EPT_READ, EPT_SPTE_HOST_WRITABLE,
    EPT_SPTE_MMU_WRITABLE, EPT_SUPPRESS_VE, EPT_WRITE, SPTE_MMU_PRESENT, SPTE_TDP_AD_DISABLED,
};
use hyperps_verifier::*;

pub mod mock;

/// Frames in the default test frame table: 8 regions of 2 MiB.
pub const FRAMES: usize = 4096;
/// MAXPHYADDR used by the tests.
pub const PHYS_BITS: u8 = 46;
/// Pinned CR4 bits used by the tests: SMEP | SMAP | UMIP | FSGSBASE.
pub const PINNED: u64 = (1 << 20) | (1 << 21) | (1 << 11) | (1 << 16);

pub struct Storage {
    pub frames: Vec<FrameRecord>,
    pub regions: Vec<RegionRecord>,
    pub vms: Vec<VmRecord>,
    pub vcpus: Vec<VcpuRecord>,
    pub vmcs: Vec<VmcsRecord>,
    pub shares: Vec<ShareRecord>,
    pub vpids: Vec<VpidRecord>,
    pub cpus: Vec<CpuRecord>,
    pub audit: Vec<AuditRecord>,
}

impl Storage {
    pub fn new(frames: usize) -> Storage {
        Storage::with_limits(frames, 8, 16, 32, 16)
    }

    pub fn with_limits(
        frames: usize,
        vms: usize,
        vcpus: usize,
        vmcs: usize,
        shares: usize,
    ) -> Storage {
        Storage {
            frames: vec![FrameRecord::default(); frames],
            regions: vec![RegionRecord::default(); Tables::regions_needed(frames)],
            vms: vec![VmRecord::default(); vms],
            vcpus: vec![VcpuRecord::default(); vcpus],
            vmcs: vec![VmcsRecord::default(); vmcs],
            shares: vec![ShareRecord::default(); shares],
            vpids: vec![VpidRecord::default(); 65536],
            cpus: vec![CpuRecord::default(); 4],
            audit: vec![AuditRecord::default(); 16],
        }
    }

    pub fn verifier(&mut self) -> Verifier<'_> {
        self.verifier_with(config())
    }

    pub fn verifier_with(&mut self, config: Config) -> Verifier<'_> {
        let tables = Tables {
            frames: &mut self.frames,
            regions: &mut self.regions,
            vms: &mut self.vms,
            vcpus: &mut self.vcpus,
            vmcs: &mut self.vmcs,
            shares: &mut self.shares,
            vpids: &mut self.vpids,
            cpus: &mut self.cpus,
            audit: &mut self.audit,
        };
        Verifier::new(config, tables).expect("valid test configuration")
    }
}

pub fn config() -> Config {
    Config::kvm_6_12(PHYS_BITS, PINNED)
}

/// `make_spte()` for an EPT leaf with A/D enabled (not prefetched): present mask with the
/// suppress-#VE bit, R (user mask), X, memory type WB + IPAT, host-writable, and if writable W,
/// MMU-writable and D. The page-size bit is set above level 1.
pub fn leaf(pfn: u64, level: u8, writable: bool) -> EptEntry {
    let mut v = SPTE_MMU_PRESENT | EPT_SUPPRESS_VE | EPT_READ | EPT_EXEC | EPT_ACCESSED;
    v |= (6 << 3) | EPT_IPAT | EPT_SPTE_HOST_WRITABLE;
    if level > 1 {
        v |= EPT_PAGE_SIZE;
    }
    if writable {
        v |= EPT_WRITE | EPT_SPTE_MMU_WRITABLE | EPT_DIRTY;
    }
    EptEntry(v | (pfn << 12))
}

/// A leaf KVM maps without host write permission (KSM page, zero page, read-only memslot).
pub fn leaf_ro_not_host_writable(pfn: u64, level: u8) -> EptEntry {
    EptEntry(leaf(pfn, level, false).0 & !EPT_SPTE_HOST_WRITABLE)
}

/// `mark_spte_for_access_track()` applied to a leaf built with A/D disabled.
pub fn access_tracked(pfn: u64, level: u8) -> EptEntry {
    let base = (leaf(pfn, level, false).0 & !EPT_ACCESSED) | SPTE_TDP_AD_DISABLED;
    let saved = (base & (EPT_READ | EPT_EXEC)) << 54;
    EptEntry((base | saved) & !0x7)
}

/// `make_nonleaf_spte()` with A/D enabled.
pub fn nonleaf(child: u64) -> EptEntry {
    EptEntry(
        SPTE_MMU_PRESENT
            | EPT_SUPPRESS_VE
            | EPT_READ
            | EPT_WRITE
            | EPT_EXEC
            | EPT_ACCESSED
            | (child << 12),
    )
}

/// `make_mmio_spte()` with EPT masks: WX misconfiguration, generation bits and the GPA.
pub fn mmio(gfn: u64, gen: u64) -> EptEntry {
    let low = (gen & 0xff) << 3;
    let high = ((gen >> 8) & 0x7ff) << 52;
    EptEntry(0x6 | low | high | (gfn << 12))
}

pub const NONPRESENT: EptEntry = EptEntry(1 << 63);
pub const FROZEN: EptEntry = EptEntry((1 << 63) | 0x5a0);

/// A VM with a 4-level EPT: root (pool page) at `root`, level-3 at root+1, level-2 at root+2,
/// level-1 at root+3, linked together. Returns the VM.
pub fn vm_with_ept(v: &mut Verifier<'_>, root: u64) -> VmId {
    let vm = v.create_vm().unwrap();
    v.register_ept_page(vm, Pfn(root), EptLevel::L4).unwrap();
    v.register_ept_page(vm, Pfn(root + 1), EptLevel::L3)
        .unwrap();
    v.register_ept_page(vm, Pfn(root + 2), EptLevel::L2)
        .unwrap();
    v.register_ept_page(vm, Pfn(root + 3), EptLevel::L1)
        .unwrap();
    v.write_spte(Pfn(root), 0, NONPRESENT, nonleaf(root + 1))
        .unwrap();
    v.write_spte(Pfn(root + 1), 0, NONPRESENT, nonleaf(root + 2))
        .unwrap();
    v.write_spte(Pfn(root + 2), 0, NONPRESENT, nonleaf(root + 3))
        .unwrap();
    vm
}

/// Counts the frames it is asked to scrub (the kernel zeroes them).
#[derive(Default)]
pub struct CountingScrubber {
    pub scrubbed: Vec<Pfn>,
}

impl Scrubber for CountingScrubber {
    fn scrub(&mut self, pfn: Pfn) {
        self.scrubbed.push(pfn);
    }
}

pub fn reclaim(v: &mut Verifier<'_>, pfn: u64) -> Result<(), Denial> {
    let plan = v.check_reclaim(Pfn(pfn))?;
    let mut s = CountingScrubber::default();
    v.commit_reclaim(plan.scrub(&mut s));
    assert_eq!(
        s.scrubbed,
        vec![Pfn(pfn)],
        "a reclaim scrubs exactly its frame"
    );
    Ok(())
}
