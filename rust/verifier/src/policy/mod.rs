// SPDX-License-Identifier: GPL-2.0

//! HyperPS verifier core.
//!
//! This module is the whole policy of HyperPS: the page-ownership state machine, the rules for
//! EPT entries and the EPT pointer, the VMCS field policy table, the control-register rules and
//! the audit records. It is plain `core` Rust with no `unsafe`, no heap and no panics, so the
//! same source is compiled into `hyperps.ko` (through a `#[path]` module) and unit-tested,
//! property-tested and fuzzed in userspace.
//!
//! Rules for this directory, because it is compiled as part of two different crates:
//!
//! * refer to siblings with `super::`/`self::`, never `crate::`;
//! * use only `core::`;
//! * no indexing, no unchecked arithmetic, no `unwrap`: every input may be hostile.
//!
//! The entry point is [`Verifier`]. The caller (the kernel glue inside the HyperPS Space)
//! serialises calls with one lock, so every method takes `&mut self`. Checks that precede a
//! hardware write come in pairs: a pure `check_*` that returns a plan or a [`Denial`], and a
//! `commit_*` that consumes the plan and cannot fail. Writes that need no follow-up (VMCS fields,
//! control registers) are checked and recorded in one call.

pub mod audit;
pub mod backend;
pub mod cr;
pub mod denial;
pub mod ept;
pub mod ownership;
pub mod records;
pub mod registry;
#[cfg(feature = "explore")]
pub mod snapshot;
pub mod types;
pub mod vmcs;
pub mod vmcs_fields;

use core::sync::atomic::{AtomicU64, Ordering};

use self::records::{MmioRange, OwnerKey};
use self::types::FRAMES_PER_2M;

pub use self::audit::{AuditLog, AuditRecord, ClassCounters};
pub use self::denial::{CheckClass, Denial};
pub use self::ept::{classify_spte, EptClass, SptePlan};
pub use self::ownership::{DonatePlan, KsmMergePlan, ReclaimPlan, Scrubbed, Scrubber, UnsharePlan};
pub use self::records::{
    AuxKind, AuxOwner, CpuRecord, EptPage, FrameRecord, FrameState, Protected, RegionRecord,
    ShareRecord, Tables, VcpuRecord, VmRecord, VmcsKind, VmcsRecord, VpidRecord,
};
pub use self::types::{
    CpuId, Cr0, Cr3, Cr4, EptEntry, EptLevel, Hpa, PageSize, Pfn, SharedId, VcpuId, VmId,
    VmcsField, Vpid,
};
pub use self::vmcs::HostState;

/// Maximum number of MMIO ranges (device memory beyond the frame table) assigned at once.
pub const MAX_MMIO_RANGES: usize = 32;

/// Host facts the policy depends on, fixed at initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Raw MAXPHYADDR from CPUID 0x80000008 (what KVM calls `kvm_host.maxphyaddr`); physical
    /// address bits at and above it are reserved in EPT entries and pointers.
    pub phys_addr_bits: u8,
    /// KVM's `enable_ept_ad_bits`: the EPTP A/D enable bit of vmcs01 must equal it.
    pub ept_ad_bits: bool,
    /// Deepest EPT walk the host uses (4, or 5 with 5-level EPT).
    pub ept_max_level: EptLevel,
    /// The CPU supports 1 GiB EPT pages.
    pub ept_1g_pages: bool,
    /// The CPU supports execute-only EPT entries (KVM then builds them for nested EPT).
    pub ept_exec_only: bool,
    /// `CR4` bits pinned on the host at initialisation (`cr4_pinned_bits`: SMEP, SMAP, UMIP,
    /// FSGSBASE, CET where present). They may never be cleared afterwards.
    pub cr4_pinned: u64,
    /// Highest kernel ASID (`TLB_NR_DYN_ASIDS`, 6 in 6.12): kernel PCIDs are 1 to this value,
    /// user PCIDs (PTI) the same with bit 11 set.
    pub max_kernel_asid: u16,
    /// The PCID of the HyperPS Space; host `CR3` writes may never use it.
    pub hyperps_pcid: u16,
    /// Maximum entries of a VM-entry/VM-exit MSR list (`MAX_NR_LOADSTORE_MSRS`, 8 in 6.12).
    pub msr_list_max: u32,
    /// `CR4.PCIDE` at initialisation; it may not change afterwards.
    pub cr4_pcide: bool,
    /// VM-exit controls that load host state the host relies on and that every VMCS must
    /// keep: `VM_EXIT_LOAD_IA32_PAT` where the CPU has it (KVM then always sets it).
    pub exit_controls_required: u32,
}

impl Config {
    /// The values KVM 6.12 uses on a typical 4-level-EPT host, with the given MAXPHYADDR and
    /// pinned `CR4` bits.
    pub fn kvm_6_12(phys_addr_bits: u8, cr4_pinned: u64) -> Config {
        Config {
            phys_addr_bits,
            ept_ad_bits: true,
            ept_max_level: EptLevel::L4,
            ept_1g_pages: true,
            ept_exec_only: true,
            cr4_pinned,
            max_kernel_asid: 6,
            hyperps_pcid: 0x7fe,
            msr_list_max: 8,
            cr4_pcide: true,
            exit_controls_required: vmcs::EXIT_LOAD_PAT,
        }
    }

    fn validate(&self) -> Result<(), Denial> {
        let level_ok = self.ept_max_level == EptLevel::L4 || self.ept_max_level == EptLevel::L5;
        let bits_ok = (36..=52).contains(&self.phys_addr_bits);
        let pcid_ok = self.hyperps_pcid <= 0xfff
            && !self.pcid_is_kernel(self.hyperps_pcid)
            && self.max_kernel_asid < 0x7ff;
        if level_ok && bits_ok && pcid_ok {
            Ok(())
        } else {
            Err(Denial::BadConfig)
        }
    }

    pub(crate) fn pcid_is_kernel(&self, pcid: u16) -> bool {
        let asid = pcid & 0x7ff;
        asid >= 1 && asid <= self.max_kernel_asid
    }

    /// Mask of the physical-address bits 51:12 that are below MAXPHYADDR.
    pub(crate) fn pa_mask(&self) -> u64 {
        let top = 1u64
            .checked_shl(u32::from(self.phys_addr_bits))
            .unwrap_or(0);
        top.wrapping_sub(1) & !0xfffu64
    }

    /// Mask of bits 51:MAXPHYADDR, reserved in EPT entries and pointers.
    pub(crate) fn pa_reserved_mask(&self) -> u64 {
        0x000f_ffff_ffff_f000u64 & !self.pa_mask()
    }
}

/// The verifier: the HyperPS Space's view of every frame, VM, vCPU, VMCS and CPU.
pub struct Verifier<'a> {
    pub(crate) config: Config,
    pub(crate) frames: &'a mut [FrameRecord],
    pub(crate) regions: &'a mut [RegionRecord],
    pub(crate) vms: &'a mut [VmRecord],
    pub(crate) vcpus: &'a mut [VcpuRecord],
    pub(crate) vmcs: &'a mut [VmcsRecord],
    pub(crate) shares: &'a mut [ShareRecord],
    pub(crate) vpids: &'a mut [VpidRecord],
    pub(crate) cpus: &'a mut [CpuRecord],
    pub(crate) audit: AuditLog<'a>,
    pub(crate) mmio: [Option<MmioRange>; MAX_MMIO_RANGES],
    pub(crate) share_free_head: Option<u32>,
    /// Incremented by every global INVEPT the glue reports.
    pub(crate) invept_gen: u32,
    /// Incremented by every global INVVPID the glue reports.
    pub(crate) invvpid_gen: u32,
    /// Incremented by every state change; plans carry it so a stale plan is never applied.
    pub(crate) epoch: u64,
    /// One bit per frame, set while the frame is not `Host`, readable without the lock (see
    /// [`Verifier::attach_tracked`]).
    pub(crate) tracked: &'a [AtomicU64],
}

impl<'a> Verifier<'a> {
    /// Builds a verifier over caller-supplied tables, resetting every record: all frames
    /// host-owned and unmapped, no VM, vCPU, VMCS, share or VPID, every CPU outside VMX
    /// operation. This is O(size of the tables) and is done once.
    pub fn new(config: Config, tables: Tables<'a>) -> Result<Verifier<'a>, Denial> {
        config.validate()?;
        let Tables {
            frames,
            regions,
            vms,
            vcpus,
            vmcs,
            shares,
            vpids,
            cpus,
            audit,
        } = tables;
        if regions.len() < Tables::regions_needed(frames.len())
            || vms.len() > usize::from(u16::MAX)
            || vcpus.len() > usize::from(u16::MAX)
            || vmcs.len() > usize::from(u16::MAX)
            || u32::try_from(shares.len()).is_err()
            || u32::try_from(cpus.len()).is_err()
            || u64::try_from(frames.len()).is_err()
        {
            return Err(Denial::BadConfig);
        }
        for f in frames.iter_mut() {
            *f = FrameRecord::HOST;
        }
        let mut remaining = frames.len();
        for r in regions.iter_mut() {
            let here = remaining.min(512);
            remaining = remaining.saturating_sub(here);
            *r = RegionRecord {
                tag: OwnerKey::Host,
                tag_count: u16::try_from(here).unwrap_or(0),
                maps: 0,
                wmaps: 0,
            };
        }
        for v in vms.iter_mut() {
            *v = VmRecord::FREE;
        }
        for v in vcpus.iter_mut() {
            *v = VcpuRecord::FREE;
        }
        for v in vmcs.iter_mut() {
            *v = VmcsRecord::FREE;
        }
        for v in vpids.iter_mut() {
            *v = VpidRecord::FREE;
        }
        for c in cpus.iter_mut() {
            *c = CpuRecord::OFF;
        }
        // Thread every share slot onto the free list: slot i points at slot i + 1.
        let nshares = shares.len();
        for (i, s) in shares.iter_mut().enumerate() {
            let next = i
                .checked_add(1)
                .filter(|n| *n < nshares)
                .and_then(|n| u32::try_from(n).ok());
            *s = ShareRecord {
                pfn: None,
                users: 0,
                next_free: next,
            };
        }
        let share_free_head = if nshares > 0 { Some(0) } else { None };
        Ok(Verifier {
            config,
            frames,
            regions,
            vms,
            vcpus,
            vmcs,
            shares,
            vpids,
            cpus,
            audit: AuditLog::new(audit),
            mmio: [None; MAX_MMIO_RANGES],
            share_free_head,
            invept_gen: 0,
            invvpid_gen: 0,
            epoch: 0,
            tracked: &[],
        })
    }

    /// Attaches a bitmap with one bit per frame that the verifier keeps equal to "the frame is
    /// not `Host`", so that the page allocator's free path can skip untracked frames without
    /// taking the lock. Must be attached while every frame is `Host` and every bit clear (right
    /// after [`Verifier::new`]); a bitmap shorter than the frame table is refused.
    pub fn attach_tracked(&mut self, bitmap: &'a [AtomicU64]) -> Result<(), Denial> {
        let needed = self.frames.len().div_ceil(64);
        if bitmap.len() < needed || self.frames.iter().any(|f| f.state != FrameState::Host) {
            return Err(Denial::BadConfig);
        }
        self.tracked = bitmap;
        Ok(())
    }

    /// The configuration given at initialisation.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters and the refusal ring.
    pub fn audit(&self) -> &AuditLog<'a> {
        &self.audit
    }

    /// Counters and the refusal ring, for draining with [`AuditLog::pop`].
    pub fn audit_mut(&mut self) -> &mut AuditLog<'a> {
        &mut self.audit
    }

    /// Counters of one class of check.
    pub fn counters(&self, class: CheckClass) -> ClassCounters {
        self.audit.counters(class)
    }

    /// Number of frames in the frame table.
    pub fn frame_count(&self) -> u64 {
        self.frames.len() as u64
    }

    /// The recorded state of a frame, as the verifier sees it.
    pub fn frame_state(&self, pfn: Pfn) -> Option<FrameState> {
        self.frame(pfn).ok().map(|f| f.state)
    }

    /// EPT leaf mappings of a frame: `(all, writable)`, counting 4 KiB leaves on the frame and
    /// 2 MiB/1 GiB leaves on its region.
    pub fn frame_mappings(&self, pfn: Pfn) -> Option<(u64, u64)> {
        let f = self.frame(pfn).ok()?;
        let r = self.region_of(pfn).ok()?;
        Some((
            u64::from(f.maps).saturating_add(u64::from(r.maps)),
            u64::from(f.wmaps).saturating_add(u64::from(r.wmaps)),
        ))
    }

    /// True if `vm` names a live VM.
    pub fn vm_is_live(&self, vm: VmId) -> bool {
        self.vm_record(vm).is_ok()
    }

    /// Number of frames currently owned by a live VM.
    pub fn vm_owned_frames(&self, vm: VmId) -> Option<u64> {
        self.vm_record(vm).ok().map(|r| r.owned_frames)
    }

    /// Number of EPT pages currently registered to a live VM.
    pub fn vm_ept_pages(&self, vm: VmId) -> Option<u32> {
        self.vm_record(vm).ok().map(|r| r.ept_pages)
    }

    /// Number of users of a KSM share.
    pub fn share_users(&self, id: SharedId) -> Option<u32> {
        let s = self.shares.get(usize::try_from(id.0).ok()?)?;
        s.pfn.map(|_| s.users)
    }

    // --- Internal helpers shared by the sibling modules -------------------------------------

    pub(crate) fn frame_index(&self, pfn: Pfn) -> Result<usize, Denial> {
        let idx = usize::try_from(pfn.0).map_err(|_| Denial::FrameOutOfRange)?;
        if idx < self.frames.len() {
            Ok(idx)
        } else {
            Err(Denial::FrameOutOfRange)
        }
    }

    pub(crate) fn frame(&self, pfn: Pfn) -> Result<&FrameRecord, Denial> {
        let idx = self.frame_index(pfn)?;
        self.frames.get(idx).ok_or(Denial::FrameOutOfRange)
    }

    pub(crate) fn frame_mut(&mut self, pfn: Pfn) -> Result<&mut FrameRecord, Denial> {
        let idx = self.frame_index(pfn)?;
        self.frames.get_mut(idx).ok_or(Denial::FrameOutOfRange)
    }

    pub(crate) fn region_index_of(pfn: Pfn) -> Result<usize, Denial> {
        usize::try_from(pfn.0 >> 9).map_err(|_| Denial::FrameOutOfRange)
    }

    pub(crate) fn region_of(&self, pfn: Pfn) -> Result<&RegionRecord, Denial> {
        let idx = Self::region_index_of(pfn)?;
        self.regions.get(idx).ok_or(Denial::FrameOutOfRange)
    }

    pub(crate) fn region_of_mut(&mut self, pfn: Pfn) -> Result<&mut RegionRecord, Denial> {
        let idx = Self::region_index_of(pfn)?;
        self.regions.get_mut(idx).ok_or(Denial::FrameOutOfRange)
    }

    /// Checks that `[first, first + count)` lies inside the frame table.
    pub(crate) fn check_range(&self, first: Pfn, count: u64) -> Result<(), Denial> {
        if count == 0 {
            return Err(Denial::BadRange);
        }
        let last = first
            .checked_add(count.wrapping_sub(1))
            .ok_or(Denial::BadRange)?;
        self.frame_index(first)?;
        self.frame_index(last)?;
        Ok(())
    }

    /// True if some EPT leaf maps the frame (directly or through a huge leaf on its region).
    pub(crate) fn is_mapped(&self, pfn: Pfn) -> Result<bool, Denial> {
        let f = self.frame(pfn)?;
        let r = self.region_of(pfn)?;
        Ok(f.maps != 0 || r.maps != 0)
    }

    /// True if some EPT leaf maps the frame with write permission.
    pub(crate) fn is_writably_mapped(&self, pfn: Pfn) -> Result<bool, Denial> {
        let f = self.frame(pfn)?;
        let r = self.region_of(pfn)?;
        Ok(f.wmaps != 0 || r.wmaps != 0)
    }

    /// Changes a frame's state and keeps the region summary exact. The only writer of
    /// `FrameRecord::state`.
    pub(crate) fn set_state(&mut self, pfn: Pfn, new: FrameState) {
        let Ok(frame) = self.frame_mut(pfn) else {
            self.audit.anomaly();
            return;
        };
        let old_key = OwnerKey::of(frame.state);
        let new_key = OwnerKey::of(new);
        frame.state = new;
        if let Some(word) = usize::try_from(pfn.0 >> 6)
            .ok()
            .and_then(|i| self.tracked.get(i))
        {
            let bit = 1u64 << (pfn.0 & 63);
            if new == FrameState::Host {
                word.fetch_and(!bit, Ordering::Release);
            } else {
                word.fetch_or(bit, Ordering::Release);
            }
        }
        if old_key == new_key {
            return;
        }
        let Ok(region) = self.region_of_mut(pfn) else {
            self.audit.anomaly();
            return;
        };
        if region.tag == old_key {
            region.tag_count = region.tag_count.saturating_sub(1);
        }
        if region.tag == new_key {
            region.tag_count = region.tag_count.saturating_add(1);
        } else if region.tag_count == 0 {
            region.tag = new_key;
            let count = self.count_region_owner(pfn, new_key);
            if let Ok(region) = self.region_of_mut(pfn) {
                region.tag_count = count;
            }
        }
    }

    /// Counts frames of `pfn`'s region owned by `key` (at most 512 steps).
    fn count_region_owner(&self, pfn: Pfn, key: OwnerKey) -> u16 {
        let start = pfn.0 & !(FRAMES_PER_2M - 1);
        let mut count: u16 = 0;
        for i in 0..FRAMES_PER_2M {
            let Ok(f) = self.frame(Pfn(start | i)) else {
                break;
            };
            if OwnerKey::of(f.state) == key {
                count = count.saturating_add(1);
            }
        }
        count
    }

    /// True if every one of the 512 frames of the region starting at `first` is owned by `key`.
    pub(crate) fn region_uniform(&self, first: Pfn, key: OwnerKey) -> bool {
        match self.region_of(first) {
            Ok(r) => r.tag == key && u64::from(r.tag_count) == FRAMES_PER_2M,
            Err(_) => false,
        }
    }

    pub(crate) fn vm_record(&self, vm: VmId) -> Result<&VmRecord, Denial> {
        match self.vms.get(usize::from(vm.slot())) {
            Some(r) if r.live && r.gen == vm.gen() => Ok(r),
            _ => Err(Denial::UnknownVm),
        }
    }

    pub(crate) fn vm_record_mut(&mut self, vm: VmId) -> Result<&mut VmRecord, Denial> {
        match self.vms.get_mut(usize::from(vm.slot())) {
            Some(r) if r.live && r.gen == vm.gen() => Ok(r),
            _ => Err(Denial::UnknownVm),
        }
    }

    pub(crate) fn vcpu_record(&self, vcpu: VcpuId) -> Result<&VcpuRecord, Denial> {
        match self.vcpus.get(usize::from(vcpu.slot())) {
            Some(r) if r.live && r.gen == vcpu.gen() => Ok(r),
            _ => Err(Denial::UnknownVcpu),
        }
    }

    pub(crate) fn vcpu_record_mut(&mut self, vcpu: VcpuId) -> Result<&mut VcpuRecord, Denial> {
        match self.vcpus.get_mut(usize::from(vcpu.slot())) {
            Some(r) if r.live && r.gen == vcpu.gen() => Ok(r),
            _ => Err(Denial::UnknownVcpu),
        }
    }

    pub(crate) fn cpu_record(&self, cpu: CpuId) -> Result<&CpuRecord, Denial> {
        usize::try_from(cpu.0)
            .ok()
            .and_then(|i| self.cpus.get(i))
            .ok_or(Denial::UnknownCpu)
    }

    pub(crate) fn cpu_record_mut(&mut self, cpu: CpuId) -> Result<&mut CpuRecord, Denial> {
        usize::try_from(cpu.0)
            .ok()
            .and_then(|i| self.cpus.get_mut(i))
            .ok_or(Denial::UnknownCpu)
    }

    /// Records the verdict of one check in the counters and, if refused, in the ring.
    pub(crate) fn record<T>(
        &mut self,
        class: CheckClass,
        subject: u64,
        old: u64,
        new: u64,
        verdict: Result<T, Denial>,
    ) -> Result<T, Denial> {
        match &verdict {
            Ok(_) => self.audit.verified(class),
            Err(reason) => self.audit.refused(class, *reason, subject, old, new),
        }
        verdict
    }

    /// Marks a state change, invalidating outstanding plans.
    pub(crate) fn bump_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// True if a plan made at `epoch` may still be applied; otherwise counts an anomaly.
    pub(crate) fn plan_is_current(&mut self, epoch: u64) -> bool {
        if epoch == self.epoch {
            true
        } else {
            self.audit.anomaly();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert_eq!(Config::kvm_6_12(46, 0).validate(), Ok(()));
        assert_eq!(Config::kvm_6_12(30, 0).validate(), Err(Denial::BadConfig));
        assert_eq!(Config::kvm_6_12(53, 0).validate(), Err(Denial::BadConfig));
        let mut c = Config::kvm_6_12(46, 0);
        c.hyperps_pcid = 3;
        assert_eq!(c.validate(), Err(Denial::BadConfig));
        c.hyperps_pcid = 0x803;
        assert_eq!(c.validate(), Err(Denial::BadConfig));
        c = Config::kvm_6_12(46, 0);
        c.ept_max_level = EptLevel::L3;
        assert_eq!(c.validate(), Err(Denial::BadConfig));
    }

    #[test]
    fn physical_address_masks() {
        let c = Config::kvm_6_12(46, 0);
        assert_eq!(c.pa_mask(), 0x0000_3fff_ffff_f000);
        assert_eq!(c.pa_reserved_mask(), 0x000f_c000_0000_0000);
        let c = Config::kvm_6_12(52, 0);
        assert_eq!(c.pa_reserved_mask(), 0);
    }

    #[test]
    fn short_region_table_is_refused() {
        let mut frames = [FrameRecord::HOST; 1024];
        let mut regions = [RegionRecord::EMPTY; 1];
        let tables = Tables {
            frames: &mut frames,
            regions: &mut regions,
            vms: &mut [],
            vcpus: &mut [],
            vmcs: &mut [],
            shares: &mut [],
            vpids: &mut [],
            cpus: &mut [],
            audit: &mut [],
        };
        assert!(matches!(
            Verifier::new(Config::kvm_6_12(46, 0), tables),
            Err(Denial::BadConfig)
        ));
    }

    /// A verifier with empty tables refuses everything without panicking.
    #[test]
    fn empty_tables_refuse_everything() {
        let tables = Tables {
            frames: &mut [],
            regions: &mut [],
            vms: &mut [],
            vcpus: &mut [],
            vmcs: &mut [],
            shares: &mut [],
            vpids: &mut [],
            cpus: &mut [],
            audit: &mut [],
        };
        let mut v = match Verifier::new(Config::kvm_6_12(46, 0), tables) {
            Ok(v) => v,
            Err(e) => {
                assert_eq!(Some(e), None, "empty tables are a valid configuration");
                return;
            }
        };
        assert_eq!(v.create_vm(), Err(Denial::TableFull));
        assert_eq!(v.protect(Pfn(0)), Err(Denial::FrameOutOfRange));
        assert_eq!(
            v.check_cr0(CpuId(0), Cr0(0), Cr0(0)),
            Err(Denial::UnknownCpu)
        );
        assert_eq!(
            v.check_spte(Pfn(0), 0, EptEntry(0)).map(|_| ()),
            Err(Denial::NotEptPage)
        );
        assert_eq!(v.audit().total_refused(), 4);
        assert_eq!(v.audit_mut().pop(), None);
    }
}
