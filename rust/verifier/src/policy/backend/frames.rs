// SPDX-License-Identifier: GPL-2.0

//! Which host frames a VM may have, and when it stops having them.
//!
//! * A frame becomes VM X's ([`Backend::check_vm_memory`]) only if, from X's VMM process, the
//!   VMM maps that very frame at the host address that one of X's memslots gives for the
//!   guest frame, with write permission if the mapping is writable, and the frame is process
//!   memory (never slab, page tables, the kernel image or a HyperPS page). A KSM page, shared
//!   between VMs, is mapped read-only under the same condition.
//! * A frame stays X's until the page allocator frees it ([`Backend::free_pages`]), where it is
//!   scrubbed and returned to the host; a frame still mapped, or a HyperPS page, is kept
//!   allocated instead of being freed.
//! * A KSM merge ([`Backend::ksm_merge`]) is accepted only for pages with equal contents that
//!   no EPT maps writable.

use super::super::denial::{CheckClass, Denial};
use super::super::records::FrameState;
use super::super::types::{PageSize, Pfn, VmId, PAGE_SIZE};
use super::{Backend, FrameKind, Handle, Platform, Refusal};

/// Frames of RAM by owner, as [`Backend::census`] counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Host frames, page-table roots included.
    pub host: u64,
    /// Frames of VMs (orphaned ones included).
    pub vm: u64,
    /// KSM shares and the zero page.
    pub shared: u64,
    /// HyperPS pages.
    pub protected: u64,
}

/// The largest block the page allocator frees at once (order 18: 1 GiB).
pub const MAX_FREE_ORDER: u32 = 18;

/// Frames of the huge zero page (2 MiB).
const HUGE_ZERO_FRAMES: u64 = 512;

/// What a new EPT leaf gives its VM, as [`Backend::leaf_verdict`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LeafGrant {
    /// Nothing: the frames are the VM's, shares, zero-page frames or device memory.
    None,
    /// The block's host frames become the VM's, as do frames of it that the destroyed VM
    /// `orphans_of`, of the same VMM, left behind.
    Take {
        first: Pfn,
        frames: u64,
        orphans_of: Option<VmId>,
    },
    /// The huge zero page at `first` becomes zero-page frames.
    HugeZero(Pfn),
}

/// What [`Backend::grant`] changed (frames up to 512 of a block; a 1 GiB block is only undone
/// for its first 512 frames, and only a counter limit ever makes an undo necessary).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Granted {
    donated: [u64; 8],
    adopted: [u64; 8],
    zero: bool,
}

fn bit_of(map: &mut [u64; 8], i: u64) -> Option<(&mut u64, u64)> {
    let w = usize::try_from(i >> 6).ok()?;
    map.get_mut(w).map(|w| (w, 1u64 << (i & 63)))
}

fn test_bit(map: &[u64; 8], i: u64) -> bool {
    usize::try_from(i >> 6)
        .ok()
        .and_then(|w| map.get(w))
        .is_some_and(|w| w & (1 << (i & 63)) != 0)
}

impl<'a> Backend<'a> {
    /// Checks that the `size` block of frames from `pfn` on is VM `vm`'s memory at guest frame
    /// `gfn`: the current task is the VM's VMM, a memslot of the VM holds `gfn`, and the VMM
    /// maps `pfn` at that slot's host address with a mapping at least `size` large (and
    /// writable if `writable`), and the frames are process memory.
    pub(super) fn check_vm_memory(
        &self,
        p: &impl Platform,
        vm: VmId,
        gfn: u64,
        pfn: Pfn,
        size: PageSize,
        writable: bool,
    ) -> Result<(), Denial> {
        if !self.in_vmm_of(p, vm) {
            return Err(Denial::WrongContext);
        }
        let frames = size.frames();
        if gfn.checked_rem(frames) != Some(0) {
            return Err(Denial::BadRange);
        }
        let slot = self.memslot_for(vm, gfn, frames).ok_or(Denial::NoMemslot)?;
        if writable && slot.read_only() {
            return Err(Denial::ReadOnlyMapping);
        }
        let hva = slot.hva_of(gfn, frames).ok_or(Denial::NoMemslot)?;
        let bytes = frames.saturating_mul(PAGE_SIZE);
        let m = p.user_mapping(hva).ok_or(Denial::NotVmMemory)?;
        if m.pfn != pfn || m.size.frames() < frames || hva.checked_rem(bytes) != Some(0) {
            return Err(Denial::NotVmMemory);
        }
        if writable && !m.writable {
            return Err(Denial::ReadOnlyMapping);
        }
        // A huge mapping maps one huge page: its first frame tells the kind of all. The huge
        // zero page may only be mapped read-only (see `huge_zero_verdict`).
        let kind = p.frame_kind(pfn);
        let allowed = match kind {
            FrameKind::User => true,
            FrameKind::HugeZero => !writable,
            _ => false,
        };
        if !allowed {
            return Err(Denial::KernelFrame);
        }
        Ok(())
    }

    /// The frames a new leaf of `vm` maps must be the VM's already, the zero page read-only,
    /// or the VM's memory at `gfn` (checked by [`Backend::check_vm_memory`]): host frames then
    /// become the VM's, KSM shares are mapped read-only, and frames that a destroyed VM of the
    /// same VMM left behind are taken over. Returns what the write grants.
    pub(super) fn leaf_verdict(
        &self,
        p: &impl Platform,
        vm: VmId,
        pfn: Pfn,
        size: PageSize,
        writable: bool,
        gfn: Option<u64>,
    ) -> Result<LeafGrant, Denial> {
        let frames = size.frames();
        if pfn.0 >= self.v.frame_count() {
            // Device memory beyond RAM: the verifier's MMIO ranges decide.
            return Ok(LeafGrant::None);
        }
        self.v
            .check_range(pfn, frames)
            .map_err(|_| Denial::FrameOutOfRange)?;
        let (mut host, mut shared, mut zero, mut orphans) = (0u64, 0u64, 0u64, 0u64);
        let mut orphans_of = None;
        for i in 0..frames {
            let f = pfn.checked_add(i).ok_or(Denial::FrameOutOfRange)?;
            match self.v.frame_state(f) {
                Some(FrameState::Vm(o)) if o == vm => {}
                Some(FrameState::Host) => host = host.saturating_add(1),
                Some(FrameState::Shared(_)) => shared = shared.saturating_add(1),
                Some(FrameState::Zero) => zero = zero.saturating_add(1),
                Some(FrameState::Vm(o)) if self.v.vm_is_live(o) => {
                    return Err(Denial::EptForeignFrame)
                }
                Some(FrameState::Vm(o))
                    if self.same_vmm_ghost(o, vm)
                        && orphans_of.unwrap_or(o) == o
                        && self.v.frame_mappings(f) == Some((0, 0)) =>
                {
                    orphans = orphans.saturating_add(1);
                    orphans_of = Some(o);
                }
                Some(FrameState::Vm(_)) => return Err(Denial::EptOrphanedFrame),
                Some(FrameState::HostPgd) => return Err(Denial::EptHostFrame),
                Some(FrameState::Protected(_)) => return Err(Denial::EptProtectedFrame),
                None => return Err(Denial::FrameOutOfRange),
            }
        }
        if writable && (shared != 0 || zero != 0) {
            return Err(Denial::EptWritableShared);
        }
        if frames > 1 && zero != frames && (shared != 0 || zero != 0) {
            return Err(Denial::EptMixedHugePage);
        }
        if host == 0 && shared == 0 && orphans == 0 {
            return Ok(LeafGrant::None);
        }
        let gfn = gfn.ok_or(Denial::NoMemslot)?;
        if host != 0 && p.frame_kind(pfn) == FrameKind::HugeZero {
            return self.huge_zero_verdict(p, vm, gfn, pfn, size, writable);
        }
        self.check_vm_memory(p, vm, gfn, pfn, size, writable)?;
        Ok(LeafGrant::Take {
            first: pfn,
            frames,
            orphans_of,
        })
    }

    /// A leaf maps host frames of the huge zero page: it must be read-only and the VM's memory
    /// at `gfn`, and the whole 2 MiB page must be unowned and hold zeroes; it then becomes
    /// zero-page frames, which any VM may map read-only.
    fn huge_zero_verdict(
        &self,
        p: &impl Platform,
        vm: VmId,
        gfn: u64,
        pfn: Pfn,
        size: PageSize,
        writable: bool,
    ) -> Result<LeafGrant, Denial> {
        if writable {
            return Err(Denial::EptWritableShared);
        }
        let first = Pfn(pfn.0 & !(HUGE_ZERO_FRAMES - 1));
        let zero = self.zero_page.ok_or(Denial::KernelFrame)?;
        self.check_vm_memory(p, vm, gfn, pfn, size, false)?;
        for i in 0..HUGE_ZERO_FRAMES {
            let f = first.checked_add(i).ok_or(Denial::FrameOutOfRange)?;
            if self.v.frame_state(f) != Some(FrameState::Host)
                || p.frame_kind(f) != FrameKind::HugeZero
            {
                return Err(Denial::EptMixedHugePage);
            }
            if !p.frames_equal(f, zero) {
                return Err(Denial::ContentMismatch);
            }
        }
        Ok(LeafGrant::HugeZero(first))
    }

    /// Applies what [`Backend::leaf_verdict`] granted. Returns the frames whose owner changed,
    /// to undo the grant if the write is refused after all.
    pub(super) fn grant(&mut self, p: &mut impl Platform, vm: VmId, g: LeafGrant) -> Granted {
        let mut done = Granted::default();
        match g {
            LeafGrant::None => {}
            LeafGrant::HugeZero(first) => {
                done.zero = self.v.register_zero_pages(first, HUGE_ZERO_FRAMES).is_ok();
                if !done.zero {
                    Self::anomaly(p, Denial::WrongState, first.0);
                }
            }
            LeafGrant::Take { first, frames, .. } => {
                for i in 0..frames {
                    let Some(f) = first.checked_add(i) else {
                        break;
                    };
                    let bit = match self.v.frame_state(f) {
                        Some(FrameState::Host) if self.v.donate_to_vm(vm, f, 1).is_ok() => {
                            bit_of(&mut done.donated, i)
                        }
                        Some(FrameState::Vm(o))
                            if o != vm && self.v.adopt_orphan(vm, f).is_ok() =>
                        {
                            bit_of(&mut done.adopted, i)
                        }
                        _ => None,
                    };
                    if let Some((w, b)) = bit {
                        *w |= b;
                    }
                }
            }
        }
        done
    }

    /// Takes back a grant, for a write refused after it: frames go back to their previous
    /// owner.
    pub(super) fn ungrant(&mut self, vm: VmId, g: LeafGrant, done: &Granted) {
        match g {
            LeafGrant::None => {}
            LeafGrant::HugeZero(first) => {
                if done.zero {
                    let _ = self.v.release_zero_pages(first, HUGE_ZERO_FRAMES);
                }
            }
            LeafGrant::Take {
                first,
                frames,
                orphans_of,
            } => {
                for i in 0..frames.min(512) {
                    let Some(f) = first.checked_add(i) else {
                        break;
                    };
                    if test_bit(&done.donated, i) {
                        self.v.undo_donation(vm, f);
                    }
                    if let (true, Some(o)) = (test_bit(&done.adopted, i), orphans_of) {
                        self.v.undo_adoption(vm, f, o);
                    }
                }
            }
        }
    }

    /// `free_pages`: the page allocator frees the `1 << order` frames from `pfn` on. Frames of
    /// VMs and KSM shares are scrubbed and returned to the host; VMCS address fields that still
    /// name a VM frame (an L1 page in a vmcs02 after a nested VM exit) are marked stale, so the
    /// VMCS is not entered with them. The huge zero page returns to the host when unmapped.
    /// Returns true if the block must be kept allocated instead: a frame of it is still mapped
    /// by an EPT leaf, or is a HyperPS page, the shared zero page or a page-table root.
    /// Always enforced.
    pub fn free_pages(&mut self, p: &mut impl Platform, pfn: Pfn, order: u32) -> bool {
        if pfn.0 >= self.v.frame_count() {
            return false;
        }
        if order > MAX_FREE_ORDER {
            // The page allocator never frees such a block: only a forged call gets here, and
            // it must not be told that it may free whatever lies there.
            let at = (pfn.0, 0, u64::from(order));
            self.refuse_op(p, CheckClass::Ownership, Denial::BadRange, at, Handle::NONE);
            return true;
        }
        let frames = 1u64 << order;
        let zero_block = match self.free_verdict(p, pfn, frames) {
            Ok(z) => z,
            Err((d, at)) => {
                self.refuse_op(
                    p,
                    CheckClass::Ownership,
                    d,
                    (at.0, 0, u64::from(order)),
                    Handle::NONE,
                );
                return true;
            }
        };
        if zero_block {
            if let Err(d) = self.v.release_zero_pages(pfn, frames) {
                Self::anomaly(p, d, pfn.0);
            }
            return false;
        }
        for i in 0..frames {
            let Some(f) = pfn.checked_add(i) else {
                break;
            };
            match self.v.frame_state(f) {
                Some(FrameState::Vm(_)) => {
                    if self.v.frame_mappings(f) != Some((0, 0)) {
                        if let Err(d) = self.v.unpin_freed_frame(f) {
                            Self::anomaly(p, d, f.0);
                        }
                    }
                }
                Some(FrameState::Shared(_)) => {}
                _ => continue,
            }
            match self.v.check_reclaim(f) {
                Ok(plan) => {
                    let proof = plan.scrub(p);
                    self.v.commit_reclaim(proof);
                }
                Err(d) => Self::anomaly(p, d, f.0),
            }
        }
        false
    }

    /// Ok(true) if the block is the huge zero page, unmapped; Ok(false) if it may be freed.
    /// A frame HyperPS tracks must really be on its way to the page allocator (no reference
    /// left): otherwise a caller could have a VM's frame scrubbed and handed back while its
    /// VMM still uses it.
    fn free_verdict(
        &self,
        p: &impl Platform,
        pfn: Pfn,
        frames: u64,
    ) -> Result<bool, (Denial, Pfn)> {
        if self.v.frame_state(pfn) == Some(FrameState::Zero) {
            if !p.frame_unreferenced(pfn) {
                return Err((Denial::FrameInUse, pfn));
            }
            let each = |want: Option<(u64, u64)>, zero: bool| {
                (0..frames).all(|i| {
                    pfn.checked_add(i).is_some_and(|f| {
                        (!zero || self.v.frame_state(f) == Some(FrameState::Zero))
                            && (want.is_none() || self.v.frame_mappings(f) == want)
                    })
                })
            };
            // Only the huge zero page, as one block, ever goes back.
            if frames != HUGE_ZERO_FRAMES || Some(pfn) == self.zero_page || !each(None, true) {
                return Err((Denial::ProtectedFree, pfn));
            }
            if !each(Some((0, 0)), false) {
                return Err((Denial::FrameMapped, pfn));
            }
            return Ok(true);
        }
        for i in 0..frames {
            let Some(f) = pfn.checked_add(i) else {
                break;
            };
            let state = self.v.frame_state(f);
            if matches!(state, Some(FrameState::Vm(_) | FrameState::Shared(_)))
                && !p.frame_unreferenced(f)
            {
                return Err((Denial::FrameInUse, f));
            }
            match state {
                None | Some(FrameState::Host) => {}
                Some(FrameState::Vm(_)) => match self.v.frame_mappings(f) {
                    Some((0, 0)) => {}
                    // Only VMCS fields may still name it: they are made stale.
                    _ => self.v.unpin_verdict(f).map_err(|d| (d, f))?,
                },
                Some(FrameState::Shared(_)) => {
                    if self.v.frame_mappings(f).is_some_and(|(all, _)| all != 0) {
                        return Err((Denial::FrameMapped, f));
                    }
                }
                Some(_) => return Err((Denial::ProtectedFree, f)),
            }
        }
        Ok(false)
    }

    /// `ksm_merge`: KSM is about to replace the mapping of `pfn` at `addr` by the KSM page
    /// `kpfn` (possibly the zero page). Merges that concern only host pages are not tracked.
    /// Otherwise both frames must hold the same bytes and no EPT may map either writable; the
    /// KSM page then becomes (or stays) a share, which VMs map read-only. Returns true if the
    /// merge must not happen.
    pub fn ksm_merge(&mut self, p: &mut impl Platform, addr: u64, pfn: Pfn, kpfn: Pfn) -> bool {
        let verdict = self.ksm_verdict(p, pfn, kpfn);
        let verdict = match verdict {
            Ok(false) => return false,
            Ok(true) => self.v.ksm_merge(kpfn, pfn).map(|_| ()),
            Err(d) => Err(self.deny(CheckClass::Ownership, d, addr, pfn.0, kpfn.0)),
        };
        match verdict {
            Ok(()) => false,
            Err(d) => self.refuse(
                p,
                Refusal {
                    class: CheckClass::Ownership,
                    denial: d,
                    subject: addr,
                    old: pfn.0,
                    new: kpfn.0,
                    kvm: Handle::NONE,
                    value_write: false,
                },
            ),
        }
    }

    /// Ok(false): a host-only merge, not tracked; Ok(true): track it.
    fn ksm_verdict(&self, p: &impl Platform, pfn: Pfn, kpfn: Pfn) -> Result<bool, Denial> {
        let state = |f: Pfn| self.v.frame_state(f).unwrap_or(FrameState::Host);
        let (old, k) = (state(pfn), state(kpfn));
        if old == FrameState::Host && k == FrameState::Host {
            return Ok(false);
        }
        if pfn == kpfn {
            return Err(Denial::BadRange);
        }
        if !p.frames_equal(pfn, kpfn) {
            return Err(Denial::ContentMismatch);
        }
        for f in [pfn, kpfn] {
            if self.v.frame_mappings(f).is_some_and(|(_, w)| w != 0) {
                return Err(Denial::FrameMapped);
            }
        }
        Ok(true)
    }

    /// Lists the frames from `start` on, up to `count` of them, that a VM owns (live or
    /// destroyed), into `out` as (frame, owner, owner is live, EPT and VMCS mappings).
    /// Returns where the scan stopped and how many were listed.
    pub fn vm_frames(
        &self,
        start: u64,
        count: u64,
        out: &mut [(Pfn, VmId, bool, u64)],
    ) -> (u64, usize) {
        let end = start.saturating_add(count).min(self.v.frame_count());
        let mut n = 0usize;
        let mut pfn = start;
        while pfn < end && n < out.len() {
            if let Some(FrameState::Vm(o)) = self.v.frame_state(Pfn(pfn)) {
                let maps = self.v.frame_mappings(Pfn(pfn)).map_or(0, |(all, _)| all);
                if let Some(slot) = out.get_mut(n) {
                    *slot = (Pfn(pfn), o, self.v.vm_is_live(o), maps);
                    n = n.saturating_add(1);
                }
            }
            pfn = pfn.saturating_add(1);
        }
        (pfn, n)
    }

    /// Counts the frames from `start` on, up to `count` of them, by owner.
    pub fn census(&self, start: u64, count: u64, out: &mut Census) -> u64 {
        let end = start.saturating_add(count).min(self.v.frame_count());
        let mut pfn = start;
        while pfn < end {
            match self.v.frame_state(Pfn(pfn)) {
                Some(FrameState::Host | FrameState::HostPgd) => {
                    out.host = out.host.saturating_add(1)
                }
                Some(FrameState::Vm(_)) => out.vm = out.vm.saturating_add(1),
                Some(FrameState::Shared(_) | FrameState::Zero) => {
                    out.shared = out.shared.saturating_add(1)
                }
                Some(FrameState::Protected(_)) => out.protected = out.protected.saturating_add(1),
                None => {}
            }
            pfn = pfn.saturating_add(1);
        }
        end
    }
}
