// SPDX-License-Identifier: GPL-2.0

//! Page-ownership state machine, in the style of pKVM's `mem_protect.c`.
//!
//! Every frame of the frame table is in exactly one [`FrameState`]:
//!
//! | state | meaning | may be mapped by an EPT leaf of VM X |
//! |---|---|---|
//! | `Host` | owned by the host kernel | never |
//! | `HostPgd` | a host page-table root (`CR3`, `HOST_CR3`) | never |
//! | `Zero` | the shared zero page or a frame of the huge zero page | read-only, any VM |
//! | `Vm(X)` | owned by VM X alone | by X only, any permission |
//! | `Vm(X)`, X destroyed | *orphaned*: awaits scrub | never; reclaim or adoption |
//! | `Shared(S)` | KSM-merged, reference-counted | read-only, any VM |
//! | `Protected(..)` | HyperPS: pool, EPT pages, VMCS, VMXON, bitmaps | never |
//!
//! Transitions, each a pure `check_*` returning a plan followed by a `commit_*` that cannot
//! fail (plus a convenience wrapper doing both where nothing happens in between):
//!
//! | transition | from | to | condition |
//! |---|---|---|---|
//! | donate | `Host` | `Vm(X)` | X live |
//! | adopt | `Vm(X)`, X destroyed | `Vm(Y)` | Y live, unmapped; the backend checks the VMM |
//! | reclaim | `Vm(_)`, `Shared(_)` | `Host` | unmapped; scrubbed between check and commit |
//! | KSM merge | `Vm(X)`, `Host` | `Shared(S)` | no writable mapping; `S` allocated |
//! | KSM merge | `Shared(S)`, `Zero` | same | one more user |
//! | KSM unmerge | `Shared(S)` | same | users ≥ 2; one user fewer |
//! | unshare to VM | `Shared(S)` | `Vm(X)` | one user left, unmapped |
//! | protect | `Host` | `Protected(Pool)` | |
//! | unprotect | `Protected(Pool)` | `Host` | no INVEPT pending |
//! | zero page | `Host` ⇄ `Zero` | | release only when unmapped |
//! | host root | `Host` ⇄ `HostPgd` | | |
//!
//! Ownership is released only when the kernel frees the frame (reclaim) or when the VM is
//! destroyed (its frames become orphaned and can then only be reclaimed, with a scrub). It is
//! never released because the last EPT mapping of a frame went away: a frame that is unmapped
//! and remapped (swap, compaction, migration) keeps its owner, so the host can never move it to
//! another VM behind the owner's back.

use super::denial::{CheckClass, Denial};
use super::records::{FrameState, MmioRange, Protected, ShareRecord};
use super::types::{Pfn, SharedId, VmId};
use super::{Verifier, MAX_MMIO_RANGES};

/// Plan to donate host frames to a VM, from [`Verifier::check_donate`].
#[derive(Debug)]
#[must_use]
pub struct DonatePlan {
    vm: VmId,
    first: Pfn,
    frames: u64,
    epoch: u64,
}

/// Plan to return a VM-owned, orphaned or shared frame to the host, from
/// [`Verifier::check_reclaim`]. Must be scrubbed before it can be committed.
#[derive(Debug)]
#[must_use]
pub struct ReclaimPlan {
    pfn: Pfn,
    from: FrameState,
    epoch: u64,
}

/// Overwrites the contents of frames. The kernel's implementation zeroes a frame through the
/// kernel's mapping of it; only [`ReclaimPlan::scrub`] calls it.
pub trait Scrubber {
    /// Overwrites the 4 KiB frame `pfn` with zeroes.
    fn scrub(&mut self, pfn: Pfn);
}

impl ReclaimPlan {
    /// The frame the plan returns to the host.
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }

    /// Scrubs the frame with `scrubber`, after the check, and returns the proof that
    /// [`Verifier::commit_reclaim`] requires. The proof is made here and nowhere else, so a
    /// reclaim cannot be committed without a scrub.
    pub fn scrub(self, scrubber: &mut impl Scrubber) -> Scrubbed<ReclaimPlan> {
        scrubber.scrub(self.pfn);
        Scrubbed(self)
    }
}

/// A plan whose frame has been scrubbed. The type exists so that a reclaim cannot be committed
/// without passing through [`ReclaimPlan::scrub`].
#[derive(Debug)]
#[must_use]
pub struct Scrubbed<T>(T);

/// Plan to merge a frame into a KSM page, from [`Verifier::check_ksm_merge`].
#[derive(Debug)]
#[must_use]
pub struct KsmMergePlan {
    kpfn: Pfn,
    action: MergeAction,
    epoch: u64,
}

#[derive(Debug, Clone, Copy)]
enum MergeAction {
    /// The KSM page becomes shared now; it was in `from`, and gets slot `id`.
    NewShare { from: FrameState, id: SharedId },
    /// One more user of an existing share.
    Join(SharedId),
    /// Merge into the zero page: nothing to record.
    ZeroPage,
}

/// Plan to hand the last user's share back to a single VM, from
/// [`Verifier::check_unshare_to_vm`].
#[derive(Debug)]
#[must_use]
pub struct UnsharePlan {
    pfn: Pfn,
    id: SharedId,
    vm: VmId,
    epoch: u64,
}

impl<'a> Verifier<'a> {
    /// Checks a donation of `frames` frames starting at `first` from the host to `vm`.
    ///
    /// ```text
    /// Initiator: Host  OWNED  => NOPAGE
    /// Completer: VM X  NOPAGE => OWNED
    /// ```
    ///
    /// Every frame must be `Host` (an orphaned frame must be reclaimed, and so scrubbed, first).
    /// Host frames are never mapped, so no mapping check is needed. O(`frames`).
    pub fn check_donate(
        &mut self,
        vm: VmId,
        first: Pfn,
        frames: u64,
    ) -> Result<DonatePlan, Denial> {
        let verdict = self.donate_verdict(vm, first, frames);
        self.record(
            CheckClass::Ownership,
            first.0,
            0,
            u64::from(vm.to_raw()),
            verdict,
        )
    }

    fn donate_verdict(&self, vm: VmId, first: Pfn, frames: u64) -> Result<DonatePlan, Denial> {
        let owned = self.vm_record(vm)?.owned_frames;
        self.check_range(first, frames)?;
        owned.checked_add(frames).ok_or(Denial::CounterOverflow)?;
        for i in 0..frames {
            let pfn = first.checked_add(i).ok_or(Denial::BadRange)?;
            if self.frame(pfn)?.state != FrameState::Host {
                return Err(Denial::WrongState);
            }
        }
        Ok(DonatePlan {
            vm,
            first,
            frames,
            epoch: self.epoch,
        })
    }

    /// Applies a checked donation.
    pub fn commit_donate(&mut self, plan: DonatePlan) {
        if !self.plan_is_current(plan.epoch) {
            return;
        }
        for i in 0..plan.frames {
            if let Some(pfn) = plan.first.checked_add(i) {
                self.set_state(pfn, FrameState::Vm(plan.vm));
            }
        }
        if let Ok(r) = self.vm_record_mut(plan.vm) {
            r.owned_frames = r.owned_frames.saturating_add(plan.frames);
        }
        self.bump_epoch();
    }

    /// Checks and applies a donation (see [`Verifier::check_donate`]).
    pub fn donate_to_vm(&mut self, vm: VmId, first: Pfn, frames: u64) -> Result<(), Denial> {
        let plan = self.check_donate(vm, first, frames)?;
        self.commit_donate(plan);
        Ok(())
    }

    /// Takes back a donation that the backend made earlier in the same call, before anything
    /// mapped the frame, because a later step of the call was refused: `Vm(vm)` => `Host`, as
    /// the frame was. Anything else is an anomaly and changes nothing.
    pub(super) fn undo_donation(&mut self, vm: VmId, pfn: Pfn) {
        self.give_back_unmapped(vm, pfn, FrameState::Host);
    }

    /// Takes back an adoption ([`Verifier::adopt_orphan`]) made earlier in the same call:
    /// `Vm(vm)` => `Vm(from)`, orphaned again. Anything else is an anomaly.
    pub(super) fn undo_adoption(&mut self, vm: VmId, pfn: Pfn, from: VmId) {
        if self.vm_is_live(from) {
            self.audit.anomaly();
            return;
        }
        self.give_back_unmapped(vm, pfn, FrameState::Vm(from));
    }

    fn give_back_unmapped(&mut self, vm: VmId, pfn: Pfn, to: FrameState) {
        let unmapped = !self.is_mapped(pfn).unwrap_or(true);
        if self.frame_state(pfn) != Some(FrameState::Vm(vm)) || !unmapped {
            self.audit.anomaly();
            return;
        }
        if let Ok(r) = self.vm_record_mut(vm) {
            r.owned_frames = r.owned_frames.saturating_sub(1);
        }
        self.set_state(pfn, to);
        self.bump_epoch();
    }

    /// Gives an orphaned frame to the live VM `vm`. The backend decides when this is right:
    /// the destroyed owner's VMM, which still maps the frame, hands it to its next VM (a VM
    /// restart or a snapshot restore keeps the guest memory).
    ///
    /// ```text
    /// VM X (destroyed) OWNED => VM Y OWNED, when unmapped and Y is live
    /// ```
    pub fn adopt_orphan(&mut self, vm: VmId, pfn: Pfn) -> Result<(), Denial> {
        let verdict = self.adopt_verdict(vm, pfn);
        self.record(
            CheckClass::Ownership,
            pfn.0,
            0,
            u64::from(vm.to_raw()),
            verdict,
        )?;
        self.set_state(pfn, FrameState::Vm(vm));
        if let Ok(r) = self.vm_record_mut(vm) {
            r.owned_frames = r.owned_frames.saturating_add(1);
        }
        self.bump_epoch();
        Ok(())
    }

    fn adopt_verdict(&self, vm: VmId, pfn: Pfn) -> Result<(), Denial> {
        let owned = self.vm_record(vm)?.owned_frames;
        owned.checked_add(1).ok_or(Denial::CounterOverflow)?;
        match self.frame(pfn)?.state {
            FrameState::Vm(o) if o != vm && !self.vm_is_live(o) => {}
            _ => return Err(Denial::WrongState),
        }
        if self.is_mapped(pfn)? {
            return Err(Denial::FrameMapped);
        }
        Ok(())
    }

    /// Checks that a frame may return to the host: the kernel is freeing it, or its VM was
    /// destroyed.
    ///
    /// ```text
    /// Initiator: VM X (live or destroyed) OWNED => NOPAGE     or   Share S  SHARED => NOPAGE
    /// Completer: Host                     NOPAGE => OWNED
    /// ```
    ///
    /// The frame must not be mapped by any EPT leaf. The kernel must scrub the frame between
    /// this check and [`Verifier::commit_reclaim`], which only accepts a [`Scrubbed`] plan.
    pub fn check_reclaim(&mut self, pfn: Pfn) -> Result<ReclaimPlan, Denial> {
        let verdict = self.reclaim_verdict(pfn);
        self.record(CheckClass::Ownership, pfn.0, 0, 0, verdict)
    }

    fn reclaim_verdict(&self, pfn: Pfn) -> Result<ReclaimPlan, Denial> {
        let state = self.frame(pfn)?.state;
        match state {
            FrameState::Vm(_) | FrameState::Shared(_) => {}
            _ => return Err(Denial::WrongState),
        }
        if self.is_mapped(pfn)? {
            return Err(Denial::FrameMapped);
        }
        Ok(ReclaimPlan {
            pfn,
            from: state,
            epoch: self.epoch,
        })
    }

    /// Applies a checked and scrubbed reclaim.
    pub fn commit_reclaim(&mut self, plan: Scrubbed<ReclaimPlan>) {
        let plan = plan.0;
        if !self.plan_is_current(plan.epoch) {
            return;
        }
        match plan.from {
            FrameState::Vm(vm) => {
                // A destroyed VM's counters went with it; only a live owner is debited.
                if let Ok(r) = self.vm_record_mut(vm) {
                    r.owned_frames = r.owned_frames.saturating_sub(1);
                }
            }
            FrameState::Shared(id) => self.free_share(id),
            _ => self.audit.anomaly(),
        }
        self.set_state(plan.pfn, FrameState::Host);
        self.bump_epoch();
    }

    /// Checks a KSM merge: `replace_page()` is about to replace `old_pfn` by the KSM page
    /// `kpfn` in some host page table.
    ///
    /// ```text
    /// First merge into kpfn:
    ///   Initiator: VM X (or Host) OWNED  => NOPAGE
    ///   Completer: Share S        NOPAGE => SHARED (2 users)
    /// Later merges:
    ///   Share S: SHARED (n users) => SHARED (n + 1 users)
    /// ```
    ///
    /// The KSM page may have read-only mappings (KVM refaults it read-only after KSM
    /// write-protected it) but no writable one. `old_pfn` must be a frame of a live VM or of
    /// the host; it keeps its state until the kernel frees it (and reclaims it, with a scrub).
    /// Merging into the zero page (`use_zero_pages`) records nothing.
    pub fn check_ksm_merge(&mut self, kpfn: Pfn, old_pfn: Pfn) -> Result<KsmMergePlan, Denial> {
        let verdict = self.ksm_merge_verdict(kpfn, old_pfn);
        self.record(CheckClass::Ownership, kpfn.0, old_pfn.0, kpfn.0, verdict)
    }

    fn ksm_merge_verdict(&self, kpfn: Pfn, old_pfn: Pfn) -> Result<KsmMergePlan, Denial> {
        if kpfn == old_pfn {
            return Err(Denial::BadRange);
        }
        match self.frame(old_pfn)?.state {
            FrameState::Host => {}
            FrameState::Vm(vm) if self.vm_is_live(vm) => {}
            _ => return Err(Denial::WrongState),
        }
        let from = self.frame(kpfn)?.state;
        let action = match from {
            FrameState::Zero => MergeAction::ZeroPage,
            FrameState::Shared(id) => {
                let users = self.share(id)?.users;
                users.checked_add(1).ok_or(Denial::CounterOverflow)?;
                MergeAction::Join(id)
            }
            FrameState::Host => MergeAction::NewShare {
                from,
                id: self.free_share_slot()?,
            },
            FrameState::Vm(vm) if self.vm_is_live(vm) => {
                if self.is_writably_mapped(kpfn)? {
                    return Err(Denial::FrameMapped);
                }
                MergeAction::NewShare {
                    from,
                    id: self.free_share_slot()?,
                }
            }
            _ => return Err(Denial::WrongState),
        };
        Ok(KsmMergePlan {
            kpfn,
            action,
            epoch: self.epoch,
        })
    }

    /// Applies a checked KSM merge and returns the share, if one is recorded.
    pub fn commit_ksm_merge(&mut self, plan: KsmMergePlan) -> Option<SharedId> {
        if !self.plan_is_current(plan.epoch) {
            return None;
        }
        let result = match plan.action {
            MergeAction::ZeroPage => None,
            MergeAction::Join(id) => {
                if let Ok(s) = self.share_mut(id) {
                    s.users = s.users.saturating_add(1);
                }
                Some(id)
            }
            MergeAction::NewShare { from, id } => {
                if self.share_free_head != Some(id.0) {
                    self.audit.anomaly();
                    return None;
                }
                let next = self
                    .shares
                    .get(usize::try_from(id.0).unwrap_or(usize::MAX))
                    .and_then(|s| s.next_free);
                self.share_free_head = next;
                if let Ok(s) = self.share_slot_mut(id) {
                    *s = ShareRecord {
                        pfn: Some(plan.kpfn),
                        users: 2,
                        next_free: None,
                    };
                }
                if let FrameState::Vm(vm) = from {
                    if let Ok(r) = self.vm_record_mut(vm) {
                        r.owned_frames = r.owned_frames.saturating_sub(1);
                    }
                }
                self.set_state(plan.kpfn, FrameState::Shared(id));
                Some(id)
            }
        };
        self.bump_epoch();
        result
    }

    /// Checks and applies a KSM merge (see [`Verifier::check_ksm_merge`]).
    pub fn ksm_merge(&mut self, kpfn: Pfn, old_pfn: Pfn) -> Result<Option<SharedId>, Denial> {
        let plan = self.check_ksm_merge(kpfn, old_pfn)?;
        Ok(self.commit_ksm_merge(plan))
    }

    /// One user of a KSM page went away (copy-on-write break or unmap in the host).
    ///
    /// ```text
    /// Share S: SHARED (n users) => SHARED (n - 1 users), n >= 2
    /// ```
    ///
    /// The last user leaves only through [`Verifier::check_unshare_to_vm`] or when the kernel
    /// frees the page ([`Verifier::check_reclaim`]).
    pub fn ksm_unmerge(&mut self, kpfn: Pfn) -> Result<(), Denial> {
        let verdict = self.ksm_unmerge_verdict(kpfn);
        let verdict = self.record(CheckClass::Ownership, kpfn.0, 0, 0, verdict);
        let id = verdict?;
        if let Ok(s) = self.share_mut(id) {
            s.users = s.users.saturating_sub(1);
        }
        self.bump_epoch();
        Ok(())
    }

    fn ksm_unmerge_verdict(&self, kpfn: Pfn) -> Result<SharedId, Denial> {
        let FrameState::Shared(id) = self.frame(kpfn)?.state else {
            return Err(Denial::WrongState);
        };
        if self.share(id)?.users < 2 {
            return Err(Denial::SharedInUse);
        }
        Ok(id)
    }

    /// Checks returning a share with one user left to a single VM.
    ///
    /// ```text
    /// Initiator: Share S  SHARED (1 user) => NOPAGE
    /// Completer: VM X     NOPAGE          => OWNED
    /// ```
    ///
    /// The frame must not be mapped anywhere: read-only mappings of other VMs would otherwise
    /// survive into X's exclusive ownership.
    pub fn check_unshare_to_vm(&mut self, kpfn: Pfn, vm: VmId) -> Result<UnsharePlan, Denial> {
        let verdict = self.unshare_verdict(kpfn, vm);
        self.record(
            CheckClass::Ownership,
            kpfn.0,
            0,
            u64::from(vm.to_raw()),
            verdict,
        )
    }

    fn unshare_verdict(&self, kpfn: Pfn, vm: VmId) -> Result<UnsharePlan, Denial> {
        let owned = self.vm_record(vm)?.owned_frames;
        owned.checked_add(1).ok_or(Denial::CounterOverflow)?;
        let FrameState::Shared(id) = self.frame(kpfn)?.state else {
            return Err(Denial::WrongState);
        };
        if self.share(id)?.users > 1 {
            return Err(Denial::SharedInUse);
        }
        if self.is_mapped(kpfn)? {
            return Err(Denial::FrameMapped);
        }
        Ok(UnsharePlan {
            pfn: kpfn,
            id,
            vm,
            epoch: self.epoch,
        })
    }

    /// Applies a checked unshare.
    pub fn commit_unshare_to_vm(&mut self, plan: UnsharePlan) {
        if !self.plan_is_current(plan.epoch) {
            return;
        }
        self.free_share(plan.id);
        self.set_state(plan.pfn, FrameState::Vm(plan.vm));
        if let Ok(r) = self.vm_record_mut(plan.vm) {
            r.owned_frames = r.owned_frames.saturating_add(1);
        }
        self.bump_epoch();
    }

    /// Marks frames of HyperPS's own tables, at initialisation.
    ///
    /// ```text
    /// Host: OWNED => Protected(Own), for good
    /// ```
    pub fn protect_own(&mut self, pfn: Pfn) -> Result<(), Denial> {
        let verdict = match self.frame(pfn).map(|f| f.state) {
            Ok(FrameState::Host) | Ok(FrameState::Protected(Protected::Own)) => Ok(()),
            Ok(_) => Err(Denial::WrongState),
            Err(e) => Err(e),
        };
        self.record(CheckClass::Ownership, pfn.0, 0, 0, verdict)?;
        self.set_state(pfn, FrameState::Protected(Protected::Own));
        self.bump_epoch();
        Ok(())
    }

    /// Moves a host frame into the HyperPS protected pool.
    ///
    /// ```text
    /// Initiator: Host    OWNED  => NOPAGE
    /// Completer: HyperPS NOPAGE => OWNED (pool)
    /// ```
    pub fn protect(&mut self, pfn: Pfn) -> Result<(), Denial> {
        let verdict = match self.frame(pfn).map(|f| f.state) {
            Ok(FrameState::Host) => Ok(()),
            Ok(_) => Err(Denial::WrongState),
            Err(e) => Err(e),
        };
        self.record(CheckClass::Ownership, pfn.0, 0, 0, verdict)?;
        self.set_state(
            pfn,
            FrameState::Protected(Protected::Pool {
                invept_pending: None,
            }),
        );
        self.bump_epoch();
        Ok(())
    }

    /// Returns a free pool page to the host.
    ///
    /// ```text
    /// Initiator: HyperPS OWNED (pool) => NOPAGE
    /// Completer: Host    NOPAGE       => OWNED
    /// ```
    ///
    /// A page that was an EPT page needs a global INVEPT (reported with
    /// [`Verifier::note_invept_global`]) after it was unregistered: stale paging-structure
    /// caches could otherwise still translate through it once the host reuses it.
    pub fn unprotect(&mut self, pfn: Pfn) -> Result<(), Denial> {
        let verdict = self.pool_page_is_clean(pfn);
        self.record(CheckClass::Ownership, pfn.0, 0, 0, verdict)?;
        self.set_state(pfn, FrameState::Host);
        self.bump_epoch();
        Ok(())
    }

    /// Succeeds if `pfn` is a pool page with no INVEPT pending.
    pub(crate) fn pool_page_is_clean(&self, pfn: Pfn) -> Result<(), Denial> {
        match self.frame(pfn)?.state {
            FrameState::Protected(Protected::Pool {
                invept_pending: None,
            }) => Ok(()),
            FrameState::Protected(Protected::Pool {
                invept_pending: Some(gen),
            }) => {
                if gen != self.invept_gen {
                    Ok(())
                } else {
                    Err(Denial::NeedsInvept)
                }
            }
            _ => Err(Denial::WrongState),
        }
    }

    /// Declares frames of the shared zero page or of the huge zero page.
    ///
    /// ```text
    /// Host: OWNED => ZERO (mapped read-only by any VM)
    /// ```
    ///
    /// The huge zero page must be passed as one aligned block of 512 frames so that 2 MiB
    /// leaves can map it.
    pub fn register_zero_pages(&mut self, first: Pfn, frames: u64) -> Result<(), Denial> {
        let verdict = self.all_in_state(first, frames, FrameState::Host);
        self.record(CheckClass::Ownership, first.0, 0, frames, verdict)?;
        self.set_range(first, frames, FrameState::Zero);
        Ok(())
    }

    /// Returns zero-page frames to the host (the huge zero page was freed by its shrinker).
    ///
    /// ```text
    /// Host: ZERO => OWNED, only when no EPT leaf maps any of the frames
    /// ```
    pub fn release_zero_pages(&mut self, first: Pfn, frames: u64) -> Result<(), Denial> {
        let verdict = self
            .all_in_state(first, frames, FrameState::Zero)
            .and_then(|()| self.none_mapped(first, frames));
        self.record(CheckClass::Ownership, first.0, 0, frames, verdict)?;
        self.set_range(first, frames, FrameState::Host);
        Ok(())
    }

    /// Declares a host page-table root (`pgd_alloc`, `init_mm`, `poking_mm`, `efi_mm`); with
    /// PTI, pass both frames of the 8 KiB PGD.
    ///
    /// ```text
    /// Host: OWNED => PGD (may be named by CR3 and HOST_CR3; never donated)
    /// ```
    pub fn register_host_pgd(&mut self, first: Pfn, frames: u64) -> Result<(), Denial> {
        let verdict = self.all_in_state(first, frames, FrameState::Host);
        self.record(CheckClass::Ownership, first.0, 0, frames, verdict)?;
        self.set_range(first, frames, FrameState::HostPgd);
        Ok(())
    }

    /// Withdraws a host page-table root (`pgd_free`).
    ///
    /// ```text
    /// Host: PGD => OWNED
    /// ```
    pub fn unregister_host_pgd(&mut self, first: Pfn, frames: u64) -> Result<(), Denial> {
        let verdict = self.all_in_state(first, frames, FrameState::HostPgd);
        self.record(CheckClass::Ownership, first.0, 0, frames, verdict)?;
        self.set_range(first, frames, FrameState::Host);
        Ok(())
    }

    /// Declares the root page table of the HyperPS Space. One way: it is never released.
    ///
    /// ```text
    /// Initiator: Host (or HyperPS pool) OWNED => NOPAGE
    /// Completer: HyperPS                NOPAGE => OWNED (root)
    /// ```
    pub fn register_hyperps_root(&mut self, pfn: Pfn) -> Result<(), Denial> {
        let verdict = self.take_for_protection(pfn);
        self.record(CheckClass::Ownership, pfn.0, 0, 0, verdict)?;
        self.set_state(pfn, FrameState::Protected(Protected::HyperPsRoot));
        self.bump_epoch();
        Ok(())
    }

    /// Assigns device frames beyond the frame table (a VFIO BAR, a PFNMAP range) to a VM.
    ///
    /// ```text
    /// Device range: NOPAGE => OWNED by VM X
    /// ```
    ///
    /// The range must lie entirely beyond the frame table and overlap no other range. Device
    /// memory inside the frame table is handled as ordinary frames (donate and reclaim).
    pub fn assign_mmio(&mut self, vm: VmId, first: Pfn, frames: u64) -> Result<(), Denial> {
        let verdict = self.assign_mmio_verdict(vm, first, frames);
        let slot = self.record(CheckClass::Ownership, first.0, 0, frames, verdict)?;
        if let Some(entry) = self.mmio.get_mut(slot) {
            *entry = Some(MmioRange {
                first,
                frames,
                vm,
                maps: 0,
            });
        }
        if let Ok(r) = self.vm_record_mut(vm) {
            r.mmio_ranges = r.mmio_ranges.saturating_add(1);
        }
        self.bump_epoch();
        Ok(())
    }

    fn assign_mmio_verdict(&self, vm: VmId, first: Pfn, frames: u64) -> Result<usize, Denial> {
        self.vm_record(vm)?;
        let end = first.0.checked_add(frames).ok_or(Denial::BadRange)?;
        if frames == 0 {
            return Err(Denial::BadRange);
        }
        if first.0 < self.frame_count() {
            return Err(Denial::MmioOverlap);
        }
        let mut free = None;
        for (i, r) in self.mmio.iter().enumerate() {
            match r {
                Some(r) => {
                    let r_end = r.first.0.saturating_add(r.frames);
                    if first.0 < r_end && r.first.0 < end {
                        return Err(Denial::MmioOverlap);
                    }
                }
                None => {
                    if free.is_none() {
                        free = Some(i);
                    }
                }
            }
        }
        free.ok_or(Denial::TableFull)
    }

    /// Withdraws a device range from its VM. No EPT leaf may still map it.
    ///
    /// ```text
    /// Device range: OWNED by VM X => NOPAGE
    /// ```
    pub fn release_mmio(&mut self, vm: VmId, first: Pfn) -> Result<(), Denial> {
        let verdict = self.release_mmio_verdict(vm, first);
        let slot = self.record(CheckClass::Ownership, first.0, 0, 0, verdict)?;
        if let Some(entry) = self.mmio.get_mut(slot) {
            *entry = None;
        }
        if let Ok(r) = self.vm_record_mut(vm) {
            r.mmio_ranges = r.mmio_ranges.saturating_sub(1);
        }
        self.bump_epoch();
        Ok(())
    }

    fn release_mmio_verdict(&self, vm: VmId, first: Pfn) -> Result<usize, Denial> {
        self.vm_record(vm)?;
        for (i, r) in self.mmio.iter().enumerate() {
            if let Some(r) = r {
                if r.first == first {
                    if r.vm != vm {
                        return Err(Denial::WrongState);
                    }
                    if r.maps != 0 {
                        return Err(Denial::FrameMapped);
                    }
                    return Ok(i);
                }
            }
        }
        Err(Denial::WrongState)
    }

    /// The MMIO range that wholly contains `[first, first + frames)`, if any.
    pub(crate) fn mmio_range_for(&self, first: Pfn, frames: u64) -> Option<usize> {
        let end = first.0.checked_add(frames)?;
        self.mmio.iter().position(|r| match r {
            Some(r) => r.first.0 <= first.0 && end <= r.first.0.saturating_add(r.frames),
            None => false,
        })
    }

    pub(crate) fn mmio_slot_mut(&mut self, slot: usize) -> Option<&mut MmioRange> {
        self.mmio.get_mut(slot).and_then(|r| r.as_mut())
    }

    pub(crate) fn mmio_slot(&self, slot: usize) -> Option<&MmioRange> {
        self.mmio.get(slot).and_then(|r| r.as_ref())
    }

    // --- Helpers --------------------------------------------------------------------------

    /// Succeeds if a frame may become a HyperPS page: `Host`, or a clean pool page.
    pub(crate) fn take_for_protection(&self, pfn: Pfn) -> Result<(), Denial> {
        match self.frame(pfn)?.state {
            FrameState::Host => Ok(()),
            FrameState::Protected(Protected::Pool { .. }) => self.pool_page_is_clean(pfn),
            _ => Err(Denial::WrongState),
        }
    }

    fn all_in_state(&self, first: Pfn, frames: u64, want: FrameState) -> Result<(), Denial> {
        self.check_range(first, frames)?;
        for i in 0..frames {
            let pfn = first.checked_add(i).ok_or(Denial::BadRange)?;
            if self.frame(pfn)?.state != want {
                return Err(Denial::WrongState);
            }
        }
        Ok(())
    }

    fn none_mapped(&self, first: Pfn, frames: u64) -> Result<(), Denial> {
        for i in 0..frames {
            let pfn = first.checked_add(i).ok_or(Denial::BadRange)?;
            if self.is_mapped(pfn)? {
                return Err(Denial::FrameMapped);
            }
        }
        Ok(())
    }

    pub(super) fn set_range(&mut self, first: Pfn, frames: u64, state: FrameState) {
        for i in 0..frames {
            if let Some(pfn) = first.checked_add(i) {
                self.set_state(pfn, state);
            }
        }
        self.bump_epoch();
    }

    fn share(&self, id: SharedId) -> Result<&ShareRecord, Denial> {
        let s = usize::try_from(id.0)
            .ok()
            .and_then(|i| self.shares.get(i))
            .ok_or(Denial::WrongState)?;
        if s.pfn.is_some() {
            Ok(s)
        } else {
            Err(Denial::WrongState)
        }
    }

    fn share_mut(&mut self, id: SharedId) -> Result<&mut ShareRecord, Denial> {
        let s = usize::try_from(id.0)
            .ok()
            .and_then(|i| self.shares.get_mut(i))
            .ok_or(Denial::WrongState)?;
        if s.pfn.is_some() {
            Ok(s)
        } else {
            Err(Denial::WrongState)
        }
    }

    fn share_slot_mut(&mut self, id: SharedId) -> Result<&mut ShareRecord, Denial> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.shares.get_mut(i))
            .ok_or(Denial::WrongState)
    }

    fn free_share_slot(&self) -> Result<SharedId, Denial> {
        self.share_free_head.map(SharedId).ok_or(Denial::TableFull)
    }

    fn free_share(&mut self, id: SharedId) {
        let head = self.share_free_head;
        match self.share_slot_mut(id) {
            Ok(s) => {
                *s = ShareRecord {
                    pfn: None,
                    users: 0,
                    next_free: head,
                };
                self.share_free_head = Some(id.0);
            }
            Err(_) => self.audit.anomaly(),
        }
    }

    /// Number of MMIO ranges in use.
    pub fn mmio_ranges_in_use(&self) -> usize {
        self.mmio.iter().filter(|r| r.is_some()).count()
    }

    /// Maximum number of MMIO ranges.
    pub fn mmio_ranges_max(&self) -> usize {
        MAX_MMIO_RANGES
    }
}
