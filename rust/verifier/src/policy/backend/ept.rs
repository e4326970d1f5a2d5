// SPDX-License-Identifier: GPL-2.0

//! EPT entries and paging-structure pages.
//!
//! A paging-structure page is allocated through [`Backend::pt_alloc`] for one VM and becomes
//! a HyperPS page at once; its level becomes known when it is first used (as a root, as the
//! child of a non-leaf entry, or as the table an entry is written to) and it is registered then.
//! [`Backend::pt_free`] takes back only such pages, and only through a global INVEPT.
//!
//! An entry write ([`Backend::spte_write`]) is decided in full before anything changes: the
//! table and a child page are registered, and host frames donated to the VM, only if the write
//! is then allowed.

use super::super::denial::{CheckClass, Denial};
use super::super::ept::{classify_spte, EptClass};
use super::super::records::{FrameState, Protected};
use super::super::types::{
    EptEntry, EptLevel, PageSize, Pfn, VmId, VmcsField, EPT_ENTRIES_PER_PAGE,
};
use super::frames::{Granted, LeafGrant};
use super::{Backend, FrameKind, Handle, Platform, Refusal};

/// A paging-structure page allocated for a VM whose level is not known yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PendingPt(Option<VmId>);

impl PendingPt {
    /// Not a pending page.
    pub const NONE: PendingPt = PendingPt(None);
}

/// A paging-structure page KVM freed, waiting for a global INVEPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeferredFree {
    pfn: Pfn,
    /// The page was in the pool before the current INVEPT started.
    ready: bool,
}

/// What [`Backend::spte_write`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpteOutcome {
    /// The write was checked and performed.
    Written,
    /// The write was allowed but `perform` did not write (a cmpxchg lost a race).
    NotWritten,
    /// The write was refused and not performed (the VM is stopped).
    Refused,
    /// The write was refused, logged, and performed anyway (audit mode).
    Audited,
}

/// What an entry write needs done before the verifier can check it.
#[derive(Clone, Copy, Debug)]
struct SptePrep {
    vm: VmId,
    /// The table is a pending page of the VM: register it at this level.
    table_level: Option<EptLevel>,
    /// The child of a non-leaf entry is a pending page of the VM: register it.
    child: Option<(Pfn, EptLevel)>,
    /// What a leaf gives the VM.
    grant: LeafGrant,
    /// The size of the leaf written, if the entry is a leaf.
    leaf: Option<PageSize>,
}

impl<'a> Backend<'a> {
    pub(super) fn pending_vm(&self, pfn: Pfn) -> Option<VmId> {
        let i = usize::try_from(pfn.0).ok()?;
        self.pending.get(i).and_then(|p| p.0)
    }

    fn set_pending(&mut self, pfn: Pfn, vm: Option<VmId>) {
        if let Some(slot) = usize::try_from(pfn.0)
            .ok()
            .and_then(|i| self.pending.get_mut(i))
        {
            *slot = PendingPt(vm);
        }
    }

    /// The VM whose EPT `table` belongs to (registered or pending).
    fn table_vm(&self, table: Pfn) -> Option<VmId> {
        match self.v.frame_state(table) {
            Some(FrameState::Protected(Protected::Ept(p))) => Some(p.vm),
            _ => self.pending_vm(table),
        }
    }

    /// Writes `new` into entry `index` of the EPT table `table` if it is allowed, by calling
    /// `perform`, which does the (atomic) operation and returns the value it replaced, or
    /// `None` if it did not write. `level` is KVM's word for the table's level and `gfn` for
    /// the guest frame the entry maps; both are only used to decide what to look at.
    #[allow(clippy::too_many_arguments)]
    pub fn spte_write(
        &mut self,
        p: &mut impl Platform,
        table: Pfn,
        index: u16,
        level: Option<EptLevel>,
        new: EptEntry,
        gfn: Option<u64>,
        perform: impl FnOnce() -> Option<u64>,
    ) -> SpteOutcome {
        let subject = table
            .0
            .wrapping_mul(4096)
            .wrapping_add(u64::from(index).wrapping_mul(8));
        let prep = match self.spte_prep(p, table, index, level, new, gfn) {
            Ok(prep) => prep,
            Err(d) => {
                let d = self.deny(CheckClass::Ept, d, subject, 0, new.0);
                return self.refuse_spte(p, table, subject, d, new, perform);
            }
        };
        let done = self.apply_prep(p, table, &prep);
        match self.v.check_spte(table, index, new) {
            Ok(plan) => match perform() {
                Some(old) => {
                    self.v.commit_spte(plan, EptEntry(old));
                    if let Some(n) = prep.leaf.and_then(|s| self.leaf_writes.get_mut(s as usize)) {
                        *n = n.saturating_add(1);
                    }
                    SpteOutcome::Written
                }
                None => SpteOutcome::NotWritten,
            },
            Err(d) => {
                // The checks above cover every rule, so only a counter limit gets here.
                self.undo_prep(table, &prep, &done);
                self.refuse_spte(p, table, subject, d, new, perform)
            }
        }
    }

    fn refuse_spte(
        &mut self,
        p: &mut impl Platform,
        table: Pfn,
        subject: u64,
        d: Denial,
        new: EptEntry,
        perform: impl FnOnce() -> Option<u64>,
    ) -> SpteOutcome {
        let kvm = self
            .table_vm(table)
            .map_or(Handle::NONE, |vm| self.kvm_of(vm));
        let enforced = self.refuse(
            p,
            Refusal {
                class: CheckClass::Ept,
                denial: d,
                subject,
                old: 0,
                new: new.0,
                kvm,
                value_write: true,
            },
        );
        if enforced {
            SpteOutcome::Refused
        } else {
            let _ = perform();
            SpteOutcome::Audited
        }
    }

    /// Decides an entry write without changing anything.
    fn spte_prep(
        &self,
        p: &impl Platform,
        table: Pfn,
        index: u16,
        level: Option<EptLevel>,
        new: EptEntry,
        gfn: Option<u64>,
    ) -> Result<SptePrep, Denial> {
        if index >= EPT_ENTRIES_PER_PAGE {
            return Err(Denial::BadEptIndex);
        }
        let (vm, level, table_level) = match self.v.frame_state(table) {
            Some(FrameState::Protected(Protected::Ept(page))) => (page.vm, page.level, None),
            _ => match (self.pending_vm(table), level) {
                (Some(vm), Some(l))
                    if l <= self.v.config().ept_max_level && self.pending_is_pool(table) =>
                {
                    (vm, l, Some(l))
                }
                _ => return Err(Denial::NotEptPage),
            },
        };
        if !self.v.vm_is_live(vm) {
            return Err(Denial::UnknownVm);
        }
        let mut prep = SptePrep {
            vm,
            table_level,
            child: None,
            grant: LeafGrant::None,
            leaf: None,
        };
        match classify_spte(new, level, self.v.config())? {
            EptClass::Leaf {
                pfn,
                size,
                writable,
                ..
            } => {
                prep.grant = self.leaf_verdict(p, vm, pfn, size, writable, gfn)?;
                prep.leaf = Some(size);
            }
            EptClass::NonLeaf { child } => {
                let want = level.child().ok_or(Denial::EptBadChild)?;
                match self.v.frame_state(child) {
                    Some(FrameState::Protected(Protected::Ept(c)))
                        if c.vm == vm && c.level == want => {}
                    _ if child != table
                        && self.pending_vm(child) == Some(vm)
                        && self.pending_is_pool(child) =>
                    {
                        prep.child = Some((child, want))
                    }
                    _ => return Err(Denial::EptBadChild),
                }
            }
            EptClass::NonPresent | EptClass::Frozen | EptClass::Mmio => {}
        }
        Ok(prep)
    }

    /// True if a pending page is still the clean pool page `pt_alloc` made it.
    fn pending_is_pool(&self, pfn: Pfn) -> bool {
        self.v.frame_state(pfn)
            == Some(FrameState::Protected(Protected::Pool {
                invept_pending: None,
            }))
    }

    /// Applies a prep; returns what it granted, to undo it if the verifier refuses.
    fn apply_prep(&mut self, p: &mut impl Platform, table: Pfn, prep: &SptePrep) -> Granted {
        if let Some(level) = prep.table_level {
            match self.v.register_ept_page(prep.vm, table, level) {
                Ok(()) => self.set_pending(table, None),
                Err(d) => Self::anomaly(p, d, table.0),
            }
        }
        if let Some((child, level)) = prep.child {
            match self.v.register_ept_page(prep.vm, child, level) {
                Ok(()) => self.set_pending(child, None),
                Err(d) => Self::anomaly(p, d, child.0),
            }
        }
        self.grant(p, prep.vm, prep.grant)
    }

    fn undo_prep(&mut self, table: Pfn, prep: &SptePrep, done: &Granted) {
        self.ungrant(prep.vm, prep.grant, done);
        if let Some((child, _)) = prep.child {
            self.v.undo_ept_registration(child);
            self.set_pending(child, Some(prep.vm));
        }
        if prep.table_level.is_some() {
            self.v.undo_ept_registration(table);
            self.set_pending(table, Some(prep.vm));
        }
    }

    /// `pt_alloc`: a new paging-structure page `pfn` for `kvm`, already filled by the caller.
    /// It becomes a HyperPS page of the VM (pending until its level is known). Refused for an
    /// unknown VM or a page that is not a fresh kernel page; the caller then frees it.
    pub fn pt_alloc(&mut self, p: &mut impl Platform, kvm: Handle, pfn: Pfn) -> Result<(), Denial> {
        let verdict = match self.vm_of(kvm) {
            None => Err(Denial::UnknownVm),
            Some(vm) => match self.v.frame_state(pfn) {
                Some(FrameState::Host) if p.frame_kind(pfn) == FrameKind::Kernel => Ok(vm),
                Some(FrameState::Host) => Err(Denial::UserFrame),
                _ => Err(Denial::WrongState),
            },
        };
        let vm = match verdict {
            Ok(vm) => vm,
            Err(d) => {
                let d = self.refuse_op(p, CheckClass::Registration, d, (pfn.0, 0, 0), Handle::NONE);
                return Err(d);
            }
        };
        if let Err(d) = self.v.protect(pfn) {
            Self::anomaly(p, d, pfn.0);
            return Err(d);
        }
        self.set_pending(pfn, Some(vm));
        Ok(())
    }

    /// `pt_free`: KVM frees a paging-structure page. Only pages from [`Backend::pt_alloc`] are
    /// taken: a registered EPT page is unregistered once nothing references it, and given back
    /// only after a global INVEPT (see [`Backend::deferred_pass1`]). Returns what to do with
    /// the page now.
    pub fn pt_free(&mut self, p: &mut impl Platform, pfn: Pfn) -> PtFree {
        match self.v.frame_state(pfn) {
            Some(FrameState::Protected(Protected::Ept(page))) => {
                if page.entries == 0 && page.refs == 0 {
                    if let Err(d) = self.v.unregister_ept_page(pfn) {
                        Self::anomaly(p, d, pfn.0);
                    }
                    self.reap_zombies(p);
                }
                self.defer(pfn)
            }
            Some(FrameState::Protected(Protected::Pool { .. }))
                if self.pending_vm(pfn).is_some() =>
            {
                self.set_pending(pfn, None);
                if self.v.unprotect(pfn).is_ok() {
                    PtFree::Now
                } else {
                    self.defer(pfn)
                }
            }
            _ => {
                self.refuse_op(
                    p,
                    CheckClass::Registration,
                    Denial::NotPtPage,
                    (pfn.0, 0, 0),
                    Handle::NONE,
                );
                PtFree::Keep
            }
        }
    }

    fn defer(&mut self, pfn: Pfn) -> PtFree {
        match self.deferred.iter_mut().find(|d| d.is_none()) {
            Some(slot) => {
                *slot = Some(DeferredFree { pfn, ready: false });
                PtFree::Deferred
            }
            None => {
                // The page stays protected and allocated for good.
                self.leaked = self.leaked.saturating_add(1);
                PtFree::Keep
            }
        }
    }

    /// Deferred frees waiting.
    pub fn deferred_count(&self) -> usize {
        self.deferred.iter().filter(|d| d.is_some()).count()
    }

    /// Unregisters deferred EPT pages whose last entry and reference are gone, and marks the
    /// pool pages that the next global INVEPT will cover. Returns how many are ready.
    pub fn deferred_pass1(&mut self) -> usize {
        let mut ready = 0usize;
        for i in 0..self.deferred.len() {
            let Some(Some(d)) = self.deferred.get(i).copied() else {
                continue;
            };
            if let Some(FrameState::Protected(Protected::Ept(page))) = self.v.frame_state(d.pfn) {
                if page.entries == 0 && page.refs == 0 && self.v.unregister_ept_page(d.pfn).is_err()
                {
                    continue;
                }
            }
            if let Some(FrameState::Protected(Protected::Pool { .. })) = self.v.frame_state(d.pfn) {
                if let Some(Some(slot)) = self.deferred.get_mut(i) {
                    slot.ready = true;
                }
                ready = ready.saturating_add(1);
            }
        }
        ready
    }

    /// After a global INVEPT: gives back up to `out.len()` ready pages, scrubbed (they held a
    /// VM's host frame numbers), returned in `out` for the caller to free. Returns how many.
    pub fn deferred_pass2(&mut self, p: &mut impl Platform, out: &mut [Pfn]) -> usize {
        self.v.note_invept_global();
        let mut n = 0usize;
        for i in 0..self.deferred.len() {
            if n >= out.len() {
                break;
            }
            let Some(Some(d)) = self.deferred.get(i).copied() else {
                continue;
            };
            if d.ready && self.v.pool_page_is_clean(d.pfn).is_ok() {
                p.scrub(d.pfn);
            }
            if d.ready && self.v.unprotect(d.pfn).is_ok() {
                if let Some(o) = out.get_mut(n) {
                    *o = d.pfn;
                    n = n.saturating_add(1);
                }
                if let Some(slot) = self.deferred.get_mut(i) {
                    *slot = None;
                }
            }
        }
        n
    }

    /// `pt_root`: `pfn` of level `level` is (again) a root of `kvm`.
    pub fn pt_root(&mut self, p: &mut impl Platform, kvm: Handle, pfn: Pfn, level: EptLevel) {
        if let Some(vm) = self.vm_of(kvm) {
            self.register_pending(p, vm, pfn, level);
        }
    }

    /// `ept_load`: KVM built `eptp` for `vcpu` of `kvm` from the root `pfn` and is about to
    /// write it (`vmx_load_mmu_pgd()`). Checks that this CPU's current VMCS is the vCPU's and
    /// that the pointer names `pfn` and is well formed, then registers the root if it is still
    /// pending (nothing is registered on the way to a refusal), then checks the `EPT_POINTER`
    /// rules (see [`Verifier::check_ept_load`]). Returns true if the write must not happen;
    /// KVM then stops the VM, as after a refused `vmwrite`.
    pub fn ept_load(
        &mut self,
        p: &mut impl Platform,
        (kvm, vcpu): (Handle, Handle),
        pfn: Pfn,
        eptp: u64,
    ) -> bool {
        let vm = self.vm_of(kvm);
        let vcpu = self
            .vcpu_index(vcpu)
            .and_then(|i| self.vcpus.get(i))
            .and_then(|s| s.id);
        let cpu = p.cpu();
        let subject = u64::from(VmcsField::EPT_POINTER.0);
        let root_pa = pfn.0.saturating_mul(4096);
        let context = match (vm, vcpu) {
            (Some(vm), Some(vcpu)) => self
                .v
                .ept_load_context_verdict(cpu, (vm, vcpu), pfn, eptp)
                .map(|walk| (vm, vcpu, walk)),
            (None, _) => Err(Denial::UnknownVm),
            (_, None) => Err(Denial::UnknownVcpu),
        };
        let verdict = match context {
            Ok((vm, vcpu, walk)) => {
                self.register_pending(p, vm, pfn, walk);
                self.v.check_ept_load(cpu, (vm, vcpu), pfn, eptp)
            }
            Err(d) => Err(self.deny(CheckClass::Eptp, d, subject, root_pa, eptp)),
        };
        match verdict {
            Ok(()) => false,
            Err(d) => self.refuse(
                p,
                Refusal {
                    class: CheckClass::Eptp,
                    denial: d,
                    subject,
                    old: root_pa,
                    new: eptp,
                    kvm: Handle::NONE,
                    value_write: true,
                },
            ),
        }
    }

    fn register_pending(&mut self, p: &mut impl Platform, vm: VmId, pfn: Pfn, level: EptLevel) {
        if self.pending_vm(pfn) != Some(vm) || !self.pending_is_pool(pfn) {
            return;
        }
        match self.v.register_ept_page(vm, pfn, level) {
            Ok(()) => self.set_pending(pfn, None),
            Err(d) => Self::anomaly(p, d, pfn.0),
        }
    }
}

/// What the caller does with a page given to [`Backend::pt_free`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PtFree {
    /// Free it now.
    Now,
    /// The backend keeps it until a global INVEPT; schedule the deferred work.
    Deferred,
    /// Never free it (not a page of HyperPS's, or no room to defer it).
    Keep,
}
