// SPDX-License-Identifier: GPL-2.0

//! The backend's own record of every VM's memslots.
//!
//! A leaf of VM X may map a frame only if X's VMM maps that frame at the host address that one
//! of X's memslots gives for the leaf's guest frame. KVM's `struct kvm_memslots` is host
//! memory, so the memslots reach the backend through hooks of their own
//! ([`Backend::memslot_add`], [`Backend::memslot_remove`]) and are kept here. A memslot record
//! says nothing by itself: the frame is always looked up in the VMM's page tables, from the
//! VMM's own context, so a forged record can only name memory the VMM maps anyway.

use super::super::denial::{CheckClass, Denial};
use super::super::types::{VmId, PAGE_SIZE};
use super::{Backend, Handle, Platform};

/// `KVM_MEM_READONLY`.
pub(super) const KVM_MEM_READONLY: u32 = 1 << 1;
/// Highest user address plus one on x86-64 with 5-level paging; host addresses of memslots
/// lie below it.
pub(super) const USER_ADDR_END: u64 = 1 << 56;

/// A memslot as the kernel reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Memslot {
    /// Address space (1 is SMM).
    pub as_id: u16,
    /// Slot id within the address space.
    pub id: u16,
    /// `KVM_MEM_*` flags.
    pub flags: u32,
    /// First guest frame.
    pub base_gfn: u64,
    /// Number of guest frames.
    pub npages: u64,
    /// Host virtual address of `base_gfn` in the VMM.
    pub hva: u64,
}

impl Memslot {
    /// The host address of `gfn`, if the `frames` frames from `gfn` on lie in this slot.
    pub(super) fn hva_of(&self, gfn: u64, frames: u64) -> Option<u64> {
        let offset = gfn.checked_sub(self.base_gfn)?;
        let end = offset.checked_add(frames)?;
        if end > self.npages {
            return None;
        }
        offset
            .checked_mul(PAGE_SIZE)
            .and_then(|o| self.hva.checked_add(o))
    }

    /// True if guest writes are not allowed.
    pub(super) fn read_only(&self) -> bool {
        self.flags & KVM_MEM_READONLY != 0
    }

    fn valid(&self) -> bool {
        let bytes = self.npages.checked_mul(PAGE_SIZE);
        let end = bytes.and_then(|b| self.hva.checked_add(b));
        self.npages != 0
            && self.hva.checked_rem(PAGE_SIZE) == Some(0)
            && self.base_gfn.checked_add(self.npages).is_some()
            && end.is_some_and(|e| e <= USER_ADDR_END)
    }
}

/// One entry of the memslot table: a memslot of a VM, linked into that VM's list, or a free
/// entry linked into the free list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemslotRecord {
    pub(super) vm: Option<VmId>,
    pub(super) slot: Memslot,
    pub(super) next: Option<u32>,
}

impl MemslotRecord {
    /// A free entry.
    pub const FREE: MemslotRecord = MemslotRecord {
        vm: None,
        slot: Memslot {
            as_id: 0,
            id: 0,
            flags: 0,
            base_gfn: 0,
            npages: 0,
            hva: 0,
        },
        next: None,
    };
}

impl<'a> Backend<'a> {
    /// Threads every entry of the memslot table onto the free list.
    pub(super) fn init_memslots(&mut self) {
        let n = self.memslots.len();
        for (i, r) in self.memslots.iter_mut().enumerate() {
            *r = MemslotRecord {
                next: i
                    .checked_add(1)
                    .filter(|n1| *n1 < n)
                    .and_then(|n1| u32::try_from(n1).ok()),
                ..MemslotRecord::FREE
            };
        }
        self.memslot_free = if n > 0 { Some(0) } else { None };
    }

    fn memslot_entry(&self, i: u32) -> Option<&MemslotRecord> {
        self.memslots.get(usize::try_from(i).ok()?)
    }

    fn memslot_entry_mut(&mut self, i: u32) -> Option<&mut MemslotRecord> {
        self.memslots.get_mut(usize::try_from(i).ok()?)
    }

    /// `memslot_add`: `slot` of `kvm` is about to become visible to its vCPUs.
    ///
    /// Only the VM's own VMM may add a memslot, and only a well-formed one. Refused when the
    /// table is full, so that the ioctl fails instead of leaving a slot whose memory could
    /// never be mapped.
    pub fn memslot_add(
        &mut self,
        p: &mut impl Platform,
        kvm: Handle,
        slot: &Memslot,
    ) -> Result<(), Denial> {
        let (vm, entry) = match self.memslot_add_verdict(p, kvm, slot) {
            Ok(v) => v,
            Err(d) => {
                let d = self.refuse_op(
                    p,
                    CheckClass::Registration,
                    d,
                    (slot.base_gfn, 0, slot.hva),
                    Handle::NONE,
                );
                return Err(d);
            }
        };
        let head = self.vm_slot(vm).and_then(|s| s.memslots);
        let next_free = self.memslot_entry(entry).and_then(|r| r.next);
        self.memslot_free = next_free;
        if let Some(r) = self.memslot_entry_mut(entry) {
            *r = MemslotRecord {
                vm: Some(vm),
                slot: *slot,
                next: head,
            };
        }
        if let Some(s) = self.vm_slot_mut(vm) {
            s.memslots = Some(entry);
        }
        let _ = self
            .v
            .record(CheckClass::Registration, slot.base_gfn, 0, slot.hva, Ok(()));
        Ok(())
    }

    fn memslot_add_verdict(
        &self,
        p: &impl Platform,
        kvm: Handle,
        slot: &Memslot,
    ) -> Result<(VmId, u32), Denial> {
        let vm = self.vm_of(kvm).ok_or(Denial::UnknownVm)?;
        if !self.in_vmm_of(p, vm) {
            return Err(Denial::WrongContext);
        }
        if !slot.valid() {
            return Err(Denial::BadMemslot);
        }
        let entry = self.memslot_free.ok_or(Denial::TableFull)?;
        Ok((vm, entry))
    }

    /// `memslot_remove`: `slot` of `kvm` is gone. Removes the record that matches it exactly;
    /// frames mapped through the slot stay the VM's until they are freed. Ignored unless it
    /// comes from the VM's VMM or its teardown.
    pub fn memslot_remove(&mut self, p: &mut impl Platform, kvm: Handle, slot: &Memslot) {
        let Some(vm) = self.vm_of(kvm) else {
            return;
        };
        if !self.in_teardown_of(p, vm) {
            self.refuse_op(
                p,
                CheckClass::Registration,
                Denial::WrongContext,
                (slot.base_gfn, 0, slot.hva),
                Handle::NONE,
            );
            return;
        }
        let mut prev: Option<u32> = None;
        let mut cur = self.vm_slot(vm).and_then(|s| s.memslots);
        while let Some(i) = cur {
            let Some(r) = self.memslot_entry(i).copied() else {
                return;
            };
            if r.slot == *slot {
                match prev {
                    Some(pi) => {
                        if let Some(pr) = self.memslot_entry_mut(pi) {
                            pr.next = r.next;
                        }
                    }
                    None => {
                        if let Some(s) = self.vm_slot_mut(vm) {
                            s.memslots = r.next;
                        }
                    }
                }
                self.free_memslot_entry(i);
                return;
            }
            prev = cur;
            cur = r.next;
        }
    }

    fn free_memslot_entry(&mut self, i: u32) {
        let head = self.memslot_free;
        if let Some(r) = self.memslot_entry_mut(i) {
            *r = MemslotRecord {
                next: head,
                ..MemslotRecord::FREE
            };
        }
        self.memslot_free = Some(i);
    }

    /// Forgets every memslot of a VM that is going away.
    pub(super) fn drop_memslots(&mut self, vm: VmId) {
        let mut cur = self.vm_slot(vm).and_then(|s| s.memslots);
        if let Some(s) = self.vm_slot_mut(vm) {
            s.memslots = None;
        }
        // Bounded by the table size even if a link were ever corrupted into a cycle.
        for _ in 0..self.memslots.len() {
            let Some(i) = cur else {
                break;
            };
            cur = self.memslot_entry(i).and_then(|r| r.next);
            self.free_memslot_entry(i);
        }
    }

    /// The memslot of `vm` that holds the `frames` guest frames from `gfn` on, in any address
    /// space.
    pub(super) fn memslot_for(&self, vm: VmId, gfn: u64, frames: u64) -> Option<Memslot> {
        let mut cur = self.vm_slot(vm).and_then(|s| s.memslots);
        for _ in 0..self.memslots.len() {
            let r = self.memslot_entry(cur?)?;
            if r.slot.hva_of(gfn, frames).is_some() {
                return Some(r.slot);
            }
            cur = r.next;
        }
        None
    }

    /// Memslots recorded for a VM.
    pub fn memslot_count(&self, kvm: Handle) -> usize {
        let mut n: usize = 0;
        let mut cur = self
            .vm_of(kvm)
            .and_then(|vm| self.vm_slot(vm))
            .and_then(|s| s.memslots);
        while let Some(r) = cur.and_then(|i| self.memslot_entry(i)) {
            n = n.saturating_add(1);
            if n > self.memslots.len() {
                break;
            }
            cur = r.next;
        }
        n
    }
}
