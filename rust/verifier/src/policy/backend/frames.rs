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
const MAX_FREE_ORDER: u32 = 18;

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
        // A huge mapping maps one huge page: its first frame tells the kind of all.
        if p.frame_kind(pfn) != FrameKind::User {
            return Err(Denial::KernelFrame);
        }
        Ok(())
    }

    /// The frames a new leaf of `vm` maps must be the VM's already, the zero page read-only,
    /// or the VM's memory at `gfn` (checked by [`Backend::check_vm_memory`]): host frames then
    /// become the VM's, KSM shares are mapped read-only. Returns the block to donate, if any.
    pub(super) fn leaf_verdict(
        &self,
        p: &impl Platform,
        vm: VmId,
        pfn: Pfn,
        size: PageSize,
        writable: bool,
        gfn: Option<u64>,
    ) -> Result<Option<(Pfn, u64)>, Denial> {
        let frames = size.frames();
        if pfn.0 >= self.v.frame_count() {
            // Device memory beyond RAM: the verifier's MMIO ranges decide.
            return Ok(None);
        }
        self.v
            .check_range(pfn, frames)
            .map_err(|_| Denial::FrameOutOfRange)?;
        let (mut host, mut shared, mut zero) = (0u64, 0u64, 0u64);
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
        if host == 0 && shared == 0 {
            return Ok(None);
        }
        let gfn = gfn.ok_or(Denial::NoMemslot)?;
        self.check_vm_memory(p, vm, gfn, pfn, size, writable)?;
        Ok((host != 0).then_some((pfn, frames)))
    }

    /// Donates the host frames of a block whose [`Backend::leaf_verdict`] passed. Returns how
    /// many frames were donated, and a bitmap of them for blocks up to 2 MiB.
    pub(super) fn donate_block(&mut self, vm: VmId, first: Pfn, frames: u64) -> [u64; 8] {
        let mut done = [0u64; 8];
        for i in 0..frames {
            let Some(f) = first.checked_add(i) else {
                break;
            };
            if self.v.frame_state(f) != Some(FrameState::Host) {
                continue;
            }
            if self.v.donate_to_vm(vm, f, 1).is_ok() {
                if let Some(w) = usize::try_from(i >> 6).ok().and_then(|w| done.get_mut(w)) {
                    *w |= 1 << (i & 63);
                }
            }
        }
        done
    }

    /// Takes back the donations of [`Backend::donate_block`], for a write refused after them.
    pub(super) fn undonate_block(&mut self, vm: VmId, first: Pfn, frames: u64, done: &[u64; 8]) {
        for i in 0..frames.min(512) {
            let bit = usize::try_from(i >> 6)
                .ok()
                .and_then(|w| done.get(w))
                .is_some_and(|w| w & (1 << (i & 63)) != 0);
            if let (true, Some(f)) = (bit, first.checked_add(i)) {
                self.v.undo_donation(vm, f);
            }
        }
    }

    /// `free_pages`: the page allocator frees the `1 << order` frames from `pfn` on. Frames of
    /// VMs and KSM shares are scrubbed and returned to the host. Returns true if the block must
    /// be kept allocated instead: a frame of it is still mapped by an EPT leaf or named by a
    /// VMCS, or is a HyperPS page, the zero page or a page-table root. Always enforced.
    pub fn free_pages(&mut self, p: &mut impl Platform, pfn: Pfn, order: u32) -> bool {
        if order > MAX_FREE_ORDER || pfn.0 >= self.v.frame_count() {
            return false;
        }
        let frames = 1u64 << order;
        let verdict = self.free_verdict(pfn, frames);
        if let Err((d, at)) = verdict {
            let d = self.deny(CheckClass::Ownership, d, at.0, 0, u64::from(order));
            self.refuse(
                p,
                Refusal {
                    class: CheckClass::Ownership,
                    denial: d,
                    subject: at.0,
                    old: 0,
                    new: u64::from(order),
                    kvm: Handle::NONE,
                    value_write: false,
                },
            );
            return true;
        }
        for i in 0..frames {
            let Some(f) = pfn.checked_add(i) else {
                break;
            };
            if !matches!(
                self.v.frame_state(f),
                Some(FrameState::Vm(_) | FrameState::Shared(_))
            ) {
                continue;
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

    fn free_verdict(&self, pfn: Pfn, frames: u64) -> Result<(), (Denial, Pfn)> {
        for i in 0..frames {
            let Some(f) = pfn.checked_add(i) else {
                break;
            };
            match self.v.frame_state(f) {
                None | Some(FrameState::Host) => {}
                Some(FrameState::Vm(_) | FrameState::Shared(_)) => {
                    if self.v.frame_mappings(f).is_some_and(|(all, _)| all != 0) {
                        return Err((Denial::FrameMapped, f));
                    }
                }
                Some(_) => return Err((Denial::ProtectedFree, f)),
            }
        }
        Ok(())
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
