// SPDX-License-Identifier: GPL-2.0

//! EPT entry and EPT pointer rules.
//!
//! An entry written into a registered EPT page of VM X at level L is first decoded by
//! [`classify_spte`], which knows every encoding KVM 6.12 uses (`arch/x86/kvm/mmu/spte.h`):
//!
//! | encoding | value | verdict |
//! |---|---|---|
//! | non-present | `SHADOW_NONPRESENT_VALUE` (bit 63) or 0 | allowed |
//! | frozen | `FROZEN_SPTE` = bit 63 \| 0x5a0 | allowed |
//! | MMIO | bits 2:0 = 110b (misconfig), bit 63 = 0, bit 11 = 0 | allowed (never translates) |
//! | access-tracked leaf | RWX = 0, bit 11 set, A/D type "disabled", R/X saved in 54/56 | ownership rules, as a leaf |
//! | present leaf | bit 11 set, RWX ≠ 0, level 1 or bit 7 at level 2/3 | format + ownership rules |
//! | present non-leaf | bit 11 set, RWX ≠ 0, bit 7 clear at level 2..5 | child rule |
//!
//! Anything else is refused. Format rules mirror KVM's own `shadow_zero_check` for EPT: bits
//! 51:MAXPHYADDR reserved; non-leaf bits 7:3 reserved; bit 7 reserved at levels 4 and 5; huge
//! page address bits below the page size reserved; memory types 2, 3 and 7 and the permission
//! combinations 010b, 110b (and 100b without execute-only support) are misconfigurations. On
//! top of that, bits KVM never sets on a present entry (10, 54–56, 59–62 and bit 7 at level 1)
//! are refused, and KVM's writable invariant (W ⇒ MMU-writable ⇒ host-writable) is enforced.
//!
//! Ownership rules (the verifier's own records, never KVM's): a leaf maps only frames owned by
//! X, or a shared (KSM) frame or the zero page without write permission, or device frames of
//! an MMIO range assigned to X; a 2 MiB or 1 GiB leaf needs every covered frame to qualify. A
//! non-leaf entry points only to a registered EPT page of X at level L − 1. No HyperPS page is
//! ever a leaf target.
//!
//! Verification is value-based: hardware sets the A/D bits concurrently, so the caller does
//! the atomic operation after [`Verifier::check_spte`] and reports the value it replaced to
//! [`Verifier::commit_spte`], which keeps the mapping counts exact. A and D never change a
//! verdict.

use super::denial::{CheckClass, Denial};
use super::records::{FrameState, OwnerKey, Protected, VmcsKind};
use super::types::{EptEntry, EptLevel, PageSize, Pfn, VmId, EPT_ENTRIES_PER_PAGE, FRAMES_PER_2M};
use super::{Config, Verifier};

/// Permission bits (read, write, execute).
pub const EPT_RWX: u64 = 0x7;
/// Read permission.
pub const EPT_READ: u64 = 0x1;
/// Write permission.
pub const EPT_WRITE: u64 = 0x2;
/// Execute permission.
pub const EPT_EXEC: u64 = 0x4;
/// Memory type, bits 5:3.
pub const EPT_MEMTYPE: u64 = 0x38;
/// Ignore-PAT bit.
pub const EPT_IPAT: u64 = 1 << 6;
/// Page-size bit (huge leaf at levels 2 and 3).
pub const EPT_PAGE_SIZE: u64 = 1 << 7;
/// Accessed bit.
pub const EPT_ACCESSED: u64 = 1 << 8;
/// Dirty bit.
pub const EPT_DIRTY: u64 = 1 << 9;
/// User-execute bit (mode-based execute control, which HyperPS keeps off).
pub const EPT_USER_EXEC: u64 = 1 << 10;
/// KVM's `SPTE_MMU_PRESENT_MASK`.
pub const SPTE_MMU_PRESENT: u64 = 1 << 11;
/// KVM's A/D tracking type field (`SPTE_TDP_AD_MASK`, bits 53:52).
pub const SPTE_TDP_AD_MASK: u64 = 3 << 52;
/// A/D tracking disabled for this SPTE (`SPTE_TDP_AD_DISABLED`).
pub const SPTE_TDP_AD_DISABLED: u64 = 1 << 52;
/// A/D tracking by write protection only (`SPTE_TDP_AD_WRPROT_ONLY`).
pub const SPTE_TDP_AD_WRPROT_ONLY: u64 = 2 << 52;
/// Saved R and X bits of an access-tracked SPTE (bits 54 and 56).
pub const SPTE_ACC_TRACK_SAVED: u64 = (1 << 54) | (1 << 56);
/// KVM's `EPT_SPTE_HOST_WRITABLE`.
pub const EPT_SPTE_HOST_WRITABLE: u64 = 1 << 57;
/// KVM's `EPT_SPTE_MMU_WRITABLE`.
pub const EPT_SPTE_MMU_WRITABLE: u64 = 1 << 58;
/// Suppress-#VE bit.
pub const EPT_SUPPRESS_VE: u64 = 1 << 63;
/// KVM's `SHADOW_NONPRESENT_VALUE` on x86-64.
pub const SHADOW_NONPRESENT_VALUE: u64 = 1 << 63;
/// KVM's `FROZEN_SPTE`.
pub const FROZEN_SPTE: u64 = SHADOW_NONPRESENT_VALUE | 0x5a0;
/// The RWX value KVM uses for MMIO SPTEs (`VMX_EPT_MISCONFIG_WX_VALUE`).
pub const EPT_MISCONFIG_WX: u64 = 0x6;

/// Bits 62:59 and 55, which KVM never sets in any SPTE except MMIO ones.
const SPTE_UNUSED_HIGH: u64 = (0xf << 59) | (1 << 55);

/// Memory type write-back.
pub const MEMTYPE_WB: u64 = 6;

/// What an EPT entry value means at a given level, independent of who owns what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptClass {
    /// Not present: `SHADOW_NONPRESENT_VALUE` or zero.
    NonPresent,
    /// KVM's `FROZEN_SPTE`, a placeholder while an entry is being changed.
    Frozen,
    /// An MMIO SPTE: a deliberate EPT misconfiguration that never translates.
    Mmio,
    /// A leaf mapping `size` starting at `pfn`.
    Leaf {
        /// First frame mapped.
        pfn: Pfn,
        /// Size of the mapping.
        size: PageSize,
        /// Write permission.
        writable: bool,
        /// KVM's access-tracking encoding: no permission now, restored by a later write.
        access_tracked: bool,
    },
    /// A pointer to the paging-structure page `child`.
    NonLeaf {
        /// The child page.
        child: Pfn,
    },
}

/// Decodes an EPT entry value at `level` and checks its format (not its target).
pub fn classify_spte(
    entry: EptEntry,
    level: EptLevel,
    config: &Config,
) -> Result<EptClass, Denial> {
    let v = entry.0;
    if v == SHADOW_NONPRESENT_VALUE || v == 0 {
        return Ok(EptClass::NonPresent);
    }
    if v == FROZEN_SPTE {
        return Ok(EptClass::Frozen);
    }
    let rwx = v & EPT_RWX;
    if rwx == 0 {
        return classify_access_tracked(v, level, config);
    }
    if rwx & (EPT_READ | EPT_WRITE) == EPT_WRITE {
        // Write without read: an EPT misconfiguration. KVM uses exactly WX with bit 63 and bit
        // 11 clear for MMIO SPTEs; the generation and GPA bits around it are free.
        if rwx == EPT_MISCONFIG_WX && v & (EPT_SUPPRESS_VE | SPTE_MMU_PRESENT) == 0 {
            return Ok(EptClass::Mmio);
        }
        return Err(Denial::EptBadPermissions);
    }
    if rwx == EPT_EXEC && !config.ept_exec_only {
        return Err(Denial::EptBadPermissions);
    }
    if v & SPTE_MMU_PRESENT == 0 {
        return Err(Denial::EptUnknownEncoding);
    }
    if v & config.pa_reserved_mask() != 0 {
        return Err(Denial::EptReservedBits);
    }
    if v & (EPT_USER_EXEC | SPTE_ACC_TRACK_SAVED | SPTE_UNUSED_HIGH) != 0 {
        return Err(Denial::EptUnexpectedBits);
    }
    if v & SPTE_TDP_AD_MASK == SPTE_TDP_AD_MASK {
        return Err(Denial::EptUnexpectedBits);
    }
    if is_leaf(v, level)? {
        classify_leaf(v, level, config, false)
    } else {
        if v & 0xf8 != 0 {
            return Err(Denial::EptReservedBits);
        }
        // make_nonleaf_spte() sets neither D, the writable software bits nor WRPROT_ONLY.
        if v & (EPT_DIRTY | EPT_SPTE_HOST_WRITABLE | EPT_SPTE_MMU_WRITABLE) != 0
            || v & SPTE_TDP_AD_MASK == SPTE_TDP_AD_WRPROT_ONLY
        {
            return Err(Denial::EptUnexpectedBits);
        }
        Ok(EptClass::NonLeaf {
            child: Pfn((v & config.pa_mask()) >> 12),
        })
    }
}

/// True if an entry with page-size bit as in `v` is a leaf at `level`.
fn is_leaf(v: u64, level: EptLevel) -> Result<bool, Denial> {
    let ps = v & EPT_PAGE_SIZE != 0;
    match level.get() {
        1 if ps => Err(Denial::EptUnexpectedBits),
        1 => Ok(true),
        2 | 3 => Ok(ps),
        _ if ps => Err(Denial::EptReservedBits),
        _ => Ok(false),
    }
}

/// Access-tracked SPTE (`mark_spte_for_access_track()` with A/D disabled): RWX cleared, R and
/// X saved in bits 54 and 56, still MMU-present. Only leaves are access-tracked.
fn classify_access_tracked(v: u64, level: EptLevel, config: &Config) -> Result<EptClass, Denial> {
    if v & SPTE_MMU_PRESENT == 0 || v & SPTE_TDP_AD_MASK != SPTE_TDP_AD_DISABLED {
        return Err(Denial::EptUnknownEncoding);
    }
    if v & config.pa_reserved_mask() != 0 {
        return Err(Denial::EptReservedBits);
    }
    if v & (EPT_USER_EXEC | SPTE_UNUSED_HIGH) != 0 {
        return Err(Denial::EptUnexpectedBits);
    }
    if !is_leaf(v, level)? {
        return Err(Denial::EptUnknownEncoding);
    }
    classify_leaf(v, level, config, true)
}

fn classify_leaf(
    v: u64,
    level: EptLevel,
    config: &Config,
    access_tracked: bool,
) -> Result<EptClass, Denial> {
    let size = match level.get() {
        1 => PageSize::Size4K,
        2 => PageSize::Size2M,
        _ if config.ept_1g_pages => PageSize::Size1G,
        _ => return Err(Denial::EptHugePageNotAllowed),
    };
    let align_mask = size.frames().wrapping_sub(1) << 12;
    if v & align_mask != 0 {
        return Err(Denial::EptReservedBits);
    }
    let memtype = (v & EPT_MEMTYPE) >> 3;
    if matches!(memtype, 2 | 3 | 7) {
        return Err(Denial::EptBadMemoryType);
    }
    let writable = v & EPT_WRITE != 0;
    let mmu_writable = v & EPT_SPTE_MMU_WRITABLE != 0;
    let host_writable = v & EPT_SPTE_HOST_WRITABLE != 0;
    if (writable && !mmu_writable) || (mmu_writable && !host_writable) {
        return Err(Denial::EptWritableInvariant);
    }
    Ok(EptClass::Leaf {
        pfn: Pfn((v & config.pa_mask()) >> 12),
        size,
        writable,
        access_tracked,
    })
}

/// The bookkeeping effect of one entry value: what it references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    None,
    Frame { pfn: Pfn, writable: bool },
    Region2M { pfn: Pfn, writable: bool },
    Region1G { pfn: Pfn, writable: bool },
    Mmio { slot: usize },
    Child { pfn: Pfn },
}

impl Effect {
    fn is_reference(self) -> bool {
        self != Effect::None
    }
}

/// Plan for one EPT entry write, from [`Verifier::check_spte`].
#[derive(Debug)]
#[must_use]
pub struct SptePlan {
    table: Pfn,
    level: EptLevel,
    new: Effect,
    epoch: u64,
}

impl<'a> Verifier<'a> {
    /// Checks writing `new` into entry `index` of the EPT page `table`.
    ///
    /// On success the caller performs the write (plain store, xchg, cmpxchg or fetch-and, as
    /// KVM does) and then calls [`Verifier::commit_spte`] with the value actually replaced. If
    /// a cmpxchg fails, the plan is simply dropped. The verdict does not depend on the A and D
    /// bits, so a fetch-and that clears them may be checked on a snapshot.
    pub fn check_spte(
        &mut self,
        table: Pfn,
        index: u16,
        new: EptEntry,
    ) -> Result<SptePlan, Denial> {
        let verdict = self.spte_verdict(table, index, new);
        let subject = table
            .0
            .wrapping_mul(4096)
            .wrapping_add(u64::from(index).wrapping_mul(8));
        self.record(CheckClass::Ept, subject, 0, new.0, verdict)
    }

    fn spte_verdict(&self, table: Pfn, index: u16, new: EptEntry) -> Result<SptePlan, Denial> {
        let page = self.ept_page(table).ok_or(Denial::NotEptPage)?;
        if index >= EPT_ENTRIES_PER_PAGE {
            return Err(Denial::BadEptIndex);
        }
        self.vm_record(page.vm)?;
        let class = classify_spte(new, page.level, &self.config)?;
        let effect = match class {
            EptClass::NonPresent | EptClass::Frozen | EptClass::Mmio => Effect::None,
            EptClass::Leaf {
                pfn,
                size,
                writable,
                ..
            } => self.leaf_target_allowed(page.vm, pfn, size, writable)?,
            EptClass::NonLeaf { child } => {
                let want = page.level.child().ok_or(Denial::EptBadChild)?;
                match self.ept_page(child) {
                    Some(c) if c.vm == page.vm && c.level == want => {
                        c.refs.checked_add(1).ok_or(Denial::CounterOverflow)?;
                        Effect::Child { pfn: child }
                    }
                    _ => return Err(Denial::EptBadChild),
                }
            }
        };
        if effect.is_reference() {
            page.entries.checked_add(1).ok_or(Denial::CounterOverflow)?;
        }
        Ok(SptePlan {
            table,
            level: page.level,
            new: effect,
            epoch: self.epoch,
        })
    }

    /// The ownership rule for a leaf of `vm` mapping `size` at `pfn`.
    fn leaf_target_allowed(
        &self,
        vm: VmId,
        pfn: Pfn,
        size: PageSize,
        writable: bool,
    ) -> Result<Effect, Denial> {
        let frames = size.frames();
        let in_table = pfn.0 < self.frame_count();
        if !in_table {
            let slot = self
                .mmio_range_for(pfn, frames)
                .ok_or(Denial::FrameOutOfRange)?;
            let range = self.mmio_slot(slot).ok_or(Denial::FrameOutOfRange)?;
            if range.vm != vm {
                return Err(Denial::EptForeignFrame);
            }
            range.maps.checked_add(1).ok_or(Denial::CounterOverflow)?;
            return Ok(Effect::Mmio { slot });
        }
        // A huge page must not straddle the end of the frame table.
        self.check_range(pfn, frames)
            .map_err(|_| Denial::FrameOutOfRange)?;
        match size {
            PageSize::Size4K => {
                let f = self.frame(pfn)?;
                self.frame_target_allowed(vm, f.state, writable)?;
                f.maps.checked_add(1).ok_or(Denial::CounterOverflow)?;
                Ok(Effect::Frame { pfn, writable })
            }
            PageSize::Size2M => {
                self.region_target_allowed(vm, pfn, writable)?;
                self.region_of(pfn)?
                    .maps
                    .checked_add(1)
                    .ok_or(Denial::CounterOverflow)?;
                Ok(Effect::Region2M { pfn, writable })
            }
            PageSize::Size1G => {
                for i in 0..512u64 {
                    let first = pfn
                        .checked_add(i.wrapping_mul(FRAMES_PER_2M))
                        .ok_or(Denial::FrameOutOfRange)?;
                    self.region_target_allowed(vm, first, writable)?;
                    self.region_of(first)?
                        .maps
                        .checked_add(1)
                        .ok_or(Denial::CounterOverflow)?;
                }
                Ok(Effect::Region1G { pfn, writable })
            }
        }
    }

    /// The rule for one frame in state `state` as a leaf target of `vm`.
    fn frame_target_allowed(
        &self,
        vm: VmId,
        state: FrameState,
        writable: bool,
    ) -> Result<(), Denial> {
        match state {
            FrameState::Vm(owner) if owner == vm => Ok(()),
            FrameState::Vm(owner) if self.vm_is_live(owner) => Err(Denial::EptForeignFrame),
            FrameState::Vm(_) => Err(Denial::EptOrphanedFrame),
            FrameState::Shared(_) | FrameState::Zero if writable => Err(Denial::EptWritableShared),
            FrameState::Shared(_) | FrameState::Zero => Ok(()),
            FrameState::Host | FrameState::HostPgd => Err(Denial::EptHostFrame),
            FrameState::Protected(_) => Err(Denial::EptProtectedFrame),
        }
    }

    /// The rule for the 512 frames of the region starting at `first`.
    fn region_target_allowed(&self, vm: VmId, first: Pfn, writable: bool) -> Result<(), Denial> {
        if self.region_uniform(first, OwnerKey::Vm(vm)) {
            return Ok(());
        }
        if self.region_uniform(first, OwnerKey::Zero) {
            return if writable {
                Err(Denial::EptWritableShared)
            } else {
                Ok(())
            };
        }
        // Not uniformly acceptable: report the reason of the first frame that fails.
        for i in 0..FRAMES_PER_2M {
            let pfn = first.checked_add(i).ok_or(Denial::FrameOutOfRange)?;
            let state = self.frame(pfn)?.state;
            match state {
                FrameState::Vm(owner) if owner == vm => {}
                FrameState::Zero if !writable => {}
                _ => {
                    self.frame_target_allowed(vm, state, writable)?;
                }
            }
        }
        Err(Denial::EptMixedHugePage)
    }

    /// Applies a checked entry write. `actual_old` is the value the write replaced, as returned
    /// by the atomic operation (or read under the lock for a plain store).
    pub fn commit_spte(&mut self, plan: SptePlan, actual_old: EptEntry) {
        if !self.plan_is_current(plan.epoch) {
            return;
        }
        let old = self.effect_of(actual_old, plan.level);
        self.apply_effect(old, false);
        self.apply_effect(plan.new, true);
        #[cfg(feature = "release-on-unmap")]
        self.release_on_unmap(old);
        let delta_old = old.is_reference();
        let delta_new = plan.new.is_reference();
        let mut anomaly = false;
        match self.ept_page_mut(plan.table) {
            Some(p) => {
                if delta_old {
                    anomaly |= p.entries == 0;
                    p.entries = p.entries.saturating_sub(1);
                }
                if delta_new {
                    p.entries = p.entries.saturating_add(1);
                }
            }
            None => anomaly = true,
        }
        if anomaly {
            self.audit.anomaly();
        }
        self.bump_epoch();
    }

    /// The rule HyperPS had before ownership outlived mappings: a VM's frame went back to
    /// the host, unscrubbed, when its last EPT leaf was zapped. Test only, so that the
    /// explorer can be seen to find the break it allowed (zap, then map into another VM).
    #[cfg(feature = "release-on-unmap")]
    fn release_on_unmap(&mut self, old: Effect) {
        if let Effect::Frame { pfn, .. } = old {
            if matches!(self.frame_state(pfn), Some(FrameState::Vm(_)))
                && self.frame_mappings(pfn) == Some((0, 0))
            {
                self.set_range(pfn, 1, FrameState::Host);
            }
        }
    }

    /// Checks and applies a plain store of `new` over `old` (see [`Verifier::check_spte`]).
    pub fn write_spte(
        &mut self,
        table: Pfn,
        index: u16,
        old: EptEntry,
        new: EptEntry,
    ) -> Result<(), Denial> {
        let plan = self.check_spte(table, index, new)?;
        self.commit_spte(plan, old);
        Ok(())
    }

    /// What an old entry value referenced. Old values were verified when written; an old value
    /// that no longer decodes counts as an anomaly and references nothing.
    fn effect_of(&mut self, old: EptEntry, level: EptLevel) -> Effect {
        let effect = match classify_spte(old, level, &self.config) {
            Ok(EptClass::NonPresent | EptClass::Frozen | EptClass::Mmio) => return Effect::None,
            Ok(EptClass::NonLeaf { child }) => Some(Effect::Child { pfn: child }),
            Ok(EptClass::Leaf {
                pfn,
                size,
                writable,
                ..
            }) => {
                if pfn.0 < self.frame_count() {
                    Some(match size {
                        PageSize::Size4K => Effect::Frame { pfn, writable },
                        PageSize::Size2M => Effect::Region2M { pfn, writable },
                        PageSize::Size1G => Effect::Region1G { pfn, writable },
                    })
                } else {
                    self.mmio_range_for(pfn, size.frames())
                        .map(|slot| Effect::Mmio { slot })
                }
            }
            Err(_) => None,
        };
        match effect {
            Some(e) => e,
            None => {
                self.audit.anomaly();
                Effect::None
            }
        }
    }

    fn apply_effect(&mut self, effect: Effect, add: bool) {
        let bump = |c: &mut u32, anomaly: &mut bool| {
            if add {
                *c = c.saturating_add(1);
            } else {
                *anomaly |= *c == 0;
                *c = c.saturating_sub(1);
            }
        };
        let mut anomaly = false;
        match effect {
            Effect::None => {}
            Effect::Frame { pfn, writable } => match self.frame_mut(pfn) {
                Ok(f) => {
                    bump(&mut f.maps, &mut anomaly);
                    if writable {
                        bump(&mut f.wmaps, &mut anomaly);
                    }
                }
                Err(_) => anomaly = true,
            },
            Effect::Region2M { pfn, writable } => match self.region_of_mut(pfn) {
                Ok(r) => {
                    bump(&mut r.maps, &mut anomaly);
                    if writable {
                        bump(&mut r.wmaps, &mut anomaly);
                    }
                }
                Err(_) => anomaly = true,
            },
            Effect::Region1G { pfn, writable } => {
                for i in 0..512u64 {
                    let first = pfn.checked_add(i.wrapping_mul(FRAMES_PER_2M));
                    match first.map(|p| self.region_of_mut(p)) {
                        Some(Ok(r)) => {
                            bump(&mut r.maps, &mut anomaly);
                            if writable {
                                bump(&mut r.wmaps, &mut anomaly);
                            }
                        }
                        _ => anomaly = true,
                    }
                }
            }
            Effect::Mmio { slot } => match self.mmio_slot_mut(slot) {
                Some(r) => bump(&mut r.maps, &mut anomaly),
                None => anomaly = true,
            },
            Effect::Child { pfn } => match self.ept_page_mut(pfn) {
                Some(p) => {
                    if add {
                        p.refs = p.refs.saturating_add(1);
                    } else {
                        anomaly |= p.refs == 0;
                        p.refs = p.refs.saturating_sub(1);
                    }
                }
                None => anomaly = true,
            },
        }
        if anomaly {
            self.audit.anomaly();
        }
    }

    /// Number of referencing entries and references of an EPT page: `(entries, refs)`.
    pub fn ept_page_counts(&self, pfn: Pfn) -> Option<(u16, u16)> {
        self.ept_page(pfn).map(|p| (p.entries, p.refs))
    }

    /// Checks an `EPT_POINTER` value for a VMCS of `vm` and returns the root it names (`None`
    /// for KVM's dummy root, the zero page, allowed in a vmcs02 only).
    ///
    /// Rules: memory type WB; page-walk length 4 or 5 (5 only if configured) and equal to the
    /// root's registered level; A/D enable equal to the configuration (a vmcs02 may clear it,
    /// as L1 may run L2 without A/D); bits 11:7 and 63:MAXPHYADDR zero; the root a registered
    /// EPT page of `vm`.
    pub(crate) fn eptp_verdict(
        &self,
        vm: VmId,
        kind: VmcsKind,
        value: u64,
    ) -> Result<Option<Pfn>, Denial> {
        let (root, walk) = self.eptp_format(kind, value)?;
        match self.frame(root).map(|f| f.state) {
            Ok(FrameState::Protected(Protected::Ept(p))) if p.vm == vm => {
                if p.level != walk {
                    return Err(Denial::EptpBadWalkLength);
                }
                p.refs.checked_add(1).ok_or(Denial::CounterOverflow)?;
                Ok(Some(root))
            }
            Ok(FrameState::Zero) if kind == VmcsKind::Vmcs02 => Ok(None),
            _ => Err(Denial::EptpBadRoot),
        }
    }

    /// The rules of [`Verifier::eptp_verdict`] that do not depend on the root: the root the
    /// pointer names and its walk length, if they hold.
    pub(crate) fn eptp_format(
        &self,
        kind: VmcsKind,
        value: u64,
    ) -> Result<(Pfn, EptLevel), Denial> {
        if value & 0x7 != MEMTYPE_WB {
            return Err(Denial::EptpBadMemoryType);
        }
        let walk = match (value >> 3) & 0x7 {
            3 => EptLevel::L4,
            4 if self.config.ept_max_level == EptLevel::L5 => EptLevel::L5,
            _ => return Err(Denial::EptpBadWalkLength),
        };
        let ad = value & (1 << 6) != 0;
        let ad_ok = match kind {
            VmcsKind::Vmcs01 | VmcsKind::Shadow => ad == self.config.ept_ad_bits,
            VmcsKind::Vmcs02 => !ad || self.config.ept_ad_bits,
        };
        if !ad_ok {
            return Err(Denial::EptpBadAccessDirty);
        }
        let reserved = 0xf80 | !(self.config.pa_mask() | 0xfff);
        if value & reserved != 0 {
            return Err(Denial::EptpReservedBits);
        }
        Ok((Pfn((value & self.config.pa_mask()) >> 12), walk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::kvm_6_12(46, 0)
    }

    #[test]
    fn kvm_special_values() {
        assert_eq!(FROZEN_SPTE, 0x8000_0000_0000_05a0);
        assert_eq!(
            classify_spte(EptEntry(FROZEN_SPTE), EptLevel::L1, &cfg()),
            Ok(EptClass::Frozen)
        );
        assert_eq!(
            classify_spte(EptEntry(SHADOW_NONPRESENT_VALUE), EptLevel::L5, &cfg()),
            Ok(EptClass::NonPresent)
        );
        // FROZEN_SPTE with any other bit is not an encoding KVM uses.
        assert_eq!(
            classify_spte(EptEntry(FROZEN_SPTE | 0x800), EptLevel::L1, &cfg()),
            Err(Denial::EptUnknownEncoding)
        );
    }

    #[test]
    fn huge_page_alignment_masks() {
        let base = SPTE_MMU_PRESENT | EPT_READ | EPT_PAGE_SIZE | (MEMTYPE_WB << 3);
        let ok_2m = EptEntry(base | (0x200 << 12));
        let bad_2m = EptEntry(base | (0x201 << 12));
        assert!(matches!(
            classify_spte(ok_2m, EptLevel::L2, &cfg()),
            Ok(EptClass::Leaf { .. })
        ));
        assert_eq!(
            classify_spte(bad_2m, EptLevel::L2, &cfg()),
            Err(Denial::EptReservedBits)
        );
        let ok_1g = EptEntry(base | (0x4_0000 << 12));
        let bad_1g = EptEntry(base | (0x4_0200 << 12));
        assert!(matches!(
            classify_spte(ok_1g, EptLevel::L3, &cfg()),
            Ok(EptClass::Leaf { .. })
        ));
        assert_eq!(
            classify_spte(bad_1g, EptLevel::L3, &cfg()),
            Err(Denial::EptReservedBits)
        );
    }
}
