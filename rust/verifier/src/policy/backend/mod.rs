// SPDX-License-Identifier: GPL-2.0

//! The backend: what every hook op does, in terms of the verifier's rules.
//!
//! The kernel module keeps only thin `extern "C"` entry points that take the lock, build a
//! [`Platform`] and call one method of [`Backend`]. Everything that decides — which frame a VM
//! may map, when ownership ends, which page may be freed, what a VMCS may name, who may call
//! an op — is here, in the same `no_std`, unsafe-free source that `cargo test` exercises with
//! a mock platform.
//!
//! Rules that hold for every op (the attacker chooses every argument and the order):
//!
//! * **Check, then do.** Every op first decides, without changing any record, whether it is
//!   allowed; only then does it register, donate or release anything. A refused op leaves the
//!   records as they were (the refusal is counted and logged).
//! * **Ownership outlives mappings.** A frame becomes a VM's when a leaf of that VM first maps
//!   it, and only if the VM's VMM maps that very frame at the host address that one of the
//!   VM's memslots gives for the leaf's guest frame. It stays the VM's when the leaf is zapped,
//!   and returns to the host only when the page allocator frees it (scrubbed then), see
//!   [`Backend::free_pages`]. A destroyed VM's frames are orphaned until that free.
//! * **Nothing is taken on trust.** Handles are looked up in the backend's own tables; the
//!   VMM process of a VM is the one that created it; reference values (host state, the live
//!   MSRs) come from the hardware through the platform.
//!
//! Audit mode lets a refused *value* through (a VMCS field, an EPT entry, a control register,
//! an MSR list) after logging it. Bookkeeping refusals (frees, registrations, lifecycle ops)
//! are enforced in both modes: letting them through would corrupt the records that every
//! later check relies on.

mod ept;
mod frames;
mod memslots;
mod roots;
#[cfg(feature = "explore")]
mod snapshot;
mod vmx;

pub use self::ept::{DeferredFree, PendingPt, PtFree, SpteOutcome};
pub use self::frames::{Census, MAX_FREE_ORDER};
pub use self::memslots::{Memslot, MemslotRecord};
#[cfg(feature = "explore")]
pub use self::snapshot::BackendScalars;
pub use self::vmx::{NestedInfo, VcpuInfo, VcpuSlot, VmSlot};

use core::sync::atomic::AtomicU64;

use super::denial::{CheckClass, Denial};
use super::ownership::Scrubber;
use super::types::{CpuId, PageSize, Pfn, VcpuId, VmId};
use super::vmcs_fields::HostField;
use super::Verifier;

/// Destroyed VMs whose last paging-structure pages KVM frees after `vm_destroy` (RCU): the
/// suggested length of [`BackendTables::zombies`].
pub const MAX_ZOMBIES: usize = 64;

/// Destroyed VMs whose VMM is remembered, so that the VMM's next VM may take over the frames
/// it still maps (a VM restart or snapshot restore that keeps guest memory): the suggested
/// length of [`BackendTables::ghosts`].
pub const MAX_GHOSTS: usize = 16;

/// A destroyed VM and the address space of its VMM, whose reference the backend holds while
/// the ghost is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ghost {
    /// The destroyed VM.
    pub vm: VmId,
    /// Its VMM's address space.
    pub mm: Handle,
}

/// An opaque handle of a kernel object (`struct kvm`, `struct kvm_vcpu`, `struct mm_struct`):
/// its address, compared but never dereferenced. [`Handle::NONE`] names no object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Handle(pub usize);

impl Handle {
    /// No object.
    pub const NONE: Handle = Handle(0);

    /// True for [`Handle::NONE`].
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// What the current task's address space maps at a user address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserMapping {
    /// The 4 KiB frame mapped at the address.
    pub pfn: Pfn,
    /// The mapping allows writes.
    pub writable: bool,
    /// Size of the host mapping (a 2 MiB or 1 GiB mapping covers whole huge pages).
    pub size: PageSize,
}

/// What the kernel uses a frame for, as far as HyperPS cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Memory of a process: anonymous, page cache, shmem or hugetlb.
    User,
    /// Memory the kernel allocated for itself and maps into no process.
    Kernel,
    /// A free page, or one the kernel never hands out (reserved, the kernel image).
    Unusable,
    /// A frame of the huge zero page, which the kernel maps read-only into processes.
    HugeZero,
}

/// A host value that a host-state VMCS field must equal, read from the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostValue {
    /// `CR0`.
    Cr0,
    /// `CR3`, as the CPU holds it (without the no-flush bit).
    Cr3,
    /// `CR4`.
    Cr4,
    /// One of the other host-state fields. For `HostField::Rip`, kvm_intel's `vmx_vmexit`
    /// as its export table gives it, or 0 if kvm_intel is not loaded: `HOST_RIP` is neither
    /// a register nor known when HyperPS loads, and first-come pinning would let whoever
    /// writes it first choose it.
    Field(HostField),
    /// This CPU's APIC ID as a posted-interrupt descriptor's NDST holds it (x2APIC: the ID;
    /// xAPIC: the ID in bits 15:8), read from the local APIC.
    PiDestination,
}

/// A refusal, or an anomaly worth a log line, as the platform reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Class of the check.
    pub class: CheckClass,
    /// Why.
    pub denial: Denial,
    /// The field, address or frame concerned.
    pub subject: u64,
    /// Old value, where there is one.
    pub old: u64,
    /// The value that was refused.
    pub new: u64,
    /// False if the write went through anyway (audit mode).
    pub enforced: bool,
}

/// What the backend needs from the kernel. Every method is called with the backend's lock held
/// and IRQs off, so none may sleep, allocate or take a lock that a hook can take.
pub trait Platform: Scrubber {
    /// True in enforce mode, false in audit mode. Chosen at load; it may only move to enforce.
    fn enforcing(&self) -> bool;
    /// The CPU the call runs on.
    fn cpu(&self) -> CpuId;
    /// The address space of the current task; [`Handle::NONE`] for a kernel thread or a task
    /// that is exiting.
    fn current_mm(&self) -> Handle;
    /// What the current task's address space maps at `hva`, if anything.
    fn user_mapping(&self, hva: u64) -> Option<UserMapping>;
    /// What the kernel uses `pfn` for.
    fn frame_kind(&self, pfn: Pfn) -> FrameKind;
    /// True if the kernel holds no reference to the page of `pfn` (its folio's reference
    /// count is 0): the page allocator is really freeing it.
    fn frame_unreferenced(&self, pfn: Pfn) -> bool;
    /// True if the two frames hold the same bytes.
    fn frames_equal(&self, a: Pfn, b: Pfn) -> bool;
    /// True if the `pages` frames from `root` on are a page-table root as `pgd_alloc()` makes
    /// them: no user mapping, the kernel half of the kernel's root.
    fn pgd_is_new(&self, root: Pfn, pages: u32) -> bool;
    /// Reads 8 bytes of kernel memory at physical address `pa` (8-byte aligned).
    fn read_phys(&self, pa: u64) -> Option<u64>;
    /// Calls `f` with the 512 words of the 4 KiB frame `pfn`, read in place (another CPU may
    /// write them meanwhile, hence atomics). `None` if `pfn` is not RAM.
    fn with_frame_words<R>(&self, pfn: Pfn, f: impl FnOnce(&[AtomicU64]) -> R) -> Option<R>;
    /// The value of a host MSR on this CPU, read with `rdmsr`.
    fn host_msr(&self, msr: u32) -> Option<u64>;
    /// A host value read from this CPU.
    fn host_value(&self, value: HostValue) -> u64;
    /// Reads `field` of this CPU's current VMCS with VMREAD; `None` if the CPU refuses.
    fn vmread(&self, field: u32) -> Option<u64>;
    /// Counts, logs (rate-limited) and traces a refusal.
    fn report(&mut self, report: &Report);
    /// Stops the VM `kvm` (`hyperps_kill_vm()`): it is never entered again.
    fn kill_vm(&mut self, kvm: Handle);
}

/// The backend's tables, supplied by the caller like the verifier's.
///
/// * `pending`: one entry per frame of the frame table.
/// * `vms`, `vcpus`: one slot per slot of the verifier's VM and vCPU tables (indexed alike).
/// * `memslots`: one record per memslot HyperPS can track at once, shared by all VMs.
/// * `deferred`: paging-structure pages waiting for a global INVEPT.
/// * `zombies`, `ghosts`: destroyed VMs (see [`MAX_ZOMBIES`], [`MAX_GHOSTS`]); at least one
///   entry each.
pub struct BackendTables<'a> {
    /// Per frame: the VM a paging-structure page was allocated for, until its level is known.
    pub pending: &'a mut [PendingPt],
    /// Per VM slot.
    pub vms: &'a mut [VmSlot],
    /// Per vCPU slot.
    pub vcpus: &'a mut [VcpuSlot],
    /// Memslots of all VMs.
    pub memslots: &'a mut [MemslotRecord],
    /// Deferred frees of paging-structure pages.
    pub deferred: &'a mut [Option<DeferredFree>],
    /// Destroyed VMs whose EPT pages are not all freed yet.
    pub zombies: &'a mut [Option<VmId>],
    /// Destroyed VMs and their VMMs.
    pub ghosts: &'a mut [Option<Ghost>],
}

impl BackendTables<'_> {
    /// True if the tables are as long as the verifier's (see [`BackendTables`]).
    pub(super) fn fit(&self, v: &Verifier<'_>) -> bool {
        self.vms.len() >= v.vms.len()
            && self.vcpus.len() >= v.vcpus.len()
            && self.pending.len() as u64 >= v.frame_count()
            && !self.zombies.is_empty()
            && !self.ghosts.is_empty()
    }
}

/// The backend: the verifier plus the glue's own records.
pub struct Backend<'a> {
    /// The verifier core.
    pub(crate) v: Verifier<'a>,
    pending: &'a mut [PendingPt],
    vms: &'a mut [VmSlot],
    vcpus: &'a mut [VcpuSlot],
    memslots: &'a mut [MemslotRecord],
    deferred: &'a mut [Option<DeferredFree>],
    zombies: &'a mut [Option<VmId>],
    ghosts: &'a mut [Option<Ghost>],
    /// Next ghost slot to fill (the oldest ghost is forgotten first).
    ghost_next: usize,
    /// The shared zero page, the reference for the huge zero page's contents.
    zero_page: Option<Pfn>,
    /// Paging-structure pages that could not be deferred and stay allocated for good.
    leaked: u64,
    /// EPT leaves written, by size (4 KiB, 2 MiB, 1 GiB).
    leaf_writes: [u64; 3],
    /// True while the module registers with the kernel, the only time existing page-table
    /// roots are accepted unchecked.
    registering: bool,
    /// First free entry of the memslot table.
    memslot_free: Option<u32>,
}

impl<'a> Backend<'a> {
    /// Builds the backend over a fresh verifier and caller-supplied tables, resetting them.
    /// The VM and vCPU tables must be at least as long as the verifier's.
    pub fn new(v: Verifier<'a>, t: BackendTables<'a>) -> Result<Backend<'a>, Denial> {
        if !t.fit(&v) {
            return Err(Denial::BadConfig);
        }
        for p in t.pending.iter_mut() {
            *p = PendingPt::NONE;
        }
        for s in t.vms.iter_mut() {
            *s = VmSlot::FREE;
        }
        for s in t.vcpus.iter_mut() {
            *s = VcpuSlot::FREE;
        }
        for d in t.deferred.iter_mut() {
            *d = None;
        }
        for z in t.zombies.iter_mut() {
            *z = None;
        }
        for g in t.ghosts.iter_mut() {
            *g = None;
        }
        let mut b = Backend {
            v,
            pending: t.pending,
            vms: t.vms,
            vcpus: t.vcpus,
            memslots: t.memslots,
            deferred: t.deferred,
            zombies: t.zombies,
            ghosts: t.ghosts,
            ghost_next: 0,
            zero_page: None,
            leaked: 0,
            leaf_writes: [0; 3],
            registering: false,
            memslot_free: None,
        };
        b.init_memslots();
        Ok(b)
    }

    /// Declares the shared zero page, which any VM may map read-only.
    pub fn set_zero_page(&mut self, pfn: Pfn) -> Result<(), Denial> {
        self.v.register_zero_pages(pfn, 1)?;
        self.zero_page = Some(pfn);
        Ok(())
    }

    /// The verifier, for counters and states.
    pub fn verifier(&self) -> &Verifier<'a> {
        &self.v
    }

    /// The verifier, for setup before the ops are registered.
    pub fn verifier_mut(&mut self) -> &mut Verifier<'a> {
        &mut self.v
    }

    /// Paging-structure pages kept allocated for good because the deferred list was full.
    pub fn leaked(&self) -> u64 {
        self.leaked
    }

    /// EPT leaves written since load, by size: 4 KiB, 2 MiB, 1 GiB.
    pub fn leaf_writes(&self) -> [u64; 3] {
        self.leaf_writes
    }

    /// The verifier's id of the live VM `kvm`.
    pub fn vm_id(&self, kvm: Handle) -> Option<VmId> {
        self.vm_of(kvm)
    }

    /// Live VMs.
    pub fn live_vms(&self) -> usize {
        self.vms.iter().filter(|s| s.id.is_some()).count()
    }

    /// Live vCPUs.
    pub fn live_vcpus(&self) -> usize {
        self.vcpus.iter().filter(|s| s.id.is_some()).count()
    }

    /// Marks the start and the end of the module's registration with the kernel, during which
    /// the kernel reports the page-table roots that already exist.
    pub fn set_registering(&mut self, on: bool) {
        self.registering = on;
    }

    /// Counts a refusal that the backend found itself (the verifier counts its own).
    fn deny(&mut self, class: CheckClass, d: Denial, subject: u64, old: u64, new: u64) -> Denial {
        let _ = self.v.record::<()>(class, subject, old, new, Err(d));
        d
    }

    /// Counts and reports a refused bookkeeping op (a free, a registration, a lifecycle op),
    /// which is enforced in both modes, and stops `kvm` if there is one. `what` is the subject,
    /// old and new value of the refusal record.
    fn refuse_op(
        &mut self,
        p: &mut impl Platform,
        class: CheckClass,
        d: Denial,
        (subject, old, new): (u64, u64, u64),
        kvm: Handle,
    ) -> Denial {
        let d = self.deny(class, d, subject, old, new);
        self.refuse(
            p,
            Refusal {
                class,
                denial: d,
                subject,
                old,
                new,
                kvm,
                value_write: false,
            },
        );
        d
    }

    /// Reports a refusal and, if it is enforced, stops `kvm`. A refused *value* write is
    /// enforced only in enforce mode; everything else always is. Returns whether the refused
    /// operation must not happen.
    fn refuse(&mut self, p: &mut impl Platform, r: Refusal) -> bool {
        let enforced = !r.value_write || p.enforcing();
        p.report(&Report {
            class: r.class,
            denial: r.denial,
            subject: r.subject,
            old: r.old,
            new: r.new,
            enforced,
        });
        if enforced && !r.kvm.is_none() {
            p.kill_vm(r.kvm);
        }
        enforced
    }

    /// Reports a bookkeeping step that failed although its checks passed: a bug, never a
    /// hostile value, but worth a log line.
    fn anomaly(p: &mut impl Platform, d: Denial, subject: u64) {
        p.report(&Report {
            class: CheckClass::Registration,
            denial: d,
            subject,
            old: 0,
            new: 0,
            enforced: false,
        });
    }

    // --- Handle tables ---------------------------------------------------------------------

    /// The verifier's VM for a `struct kvm` handle.
    fn vm_of(&self, kvm: Handle) -> Option<VmId> {
        if kvm.is_none() {
            return None;
        }
        self.vms.iter().find(|s| s.kvm == kvm).and_then(|s| s.id)
    }

    fn vm_slot(&self, vm: VmId) -> Option<&VmSlot> {
        self.vms
            .get(usize::from(vm.slot()))
            .filter(|s| s.id == Some(vm))
    }

    fn vm_slot_mut(&mut self, vm: VmId) -> Option<&mut VmSlot> {
        self.vms
            .get_mut(usize::from(vm.slot()))
            .filter(|s| s.id == Some(vm))
    }

    /// The `struct kvm` handle of a VM (none if it is gone).
    fn kvm_of(&self, vm: VmId) -> Handle {
        self.vm_slot(vm).map_or(Handle::NONE, |s| s.kvm)
    }

    /// The vCPU slot index of a `struct kvm_vcpu` handle.
    fn vcpu_index(&self, vcpu: Handle) -> Option<usize> {
        if vcpu.is_none() {
            return None;
        }
        self.vcpus
            .iter()
            .position(|s| s.vcpu == vcpu && s.id.is_some())
    }

    fn vcpu_slot(&self, id: VcpuId) -> Option<&VcpuSlot> {
        self.vcpus
            .get(usize::from(id.slot()))
            .filter(|s| s.id == Some(id))
    }

    fn vcpu_slot_mut(&mut self, id: VcpuId) -> Option<&mut VcpuSlot> {
        self.vcpus
            .get_mut(usize::from(id.slot()))
            .filter(|s| s.id == Some(id))
    }

    /// True if the current task is the VMM that created `vm`.
    fn in_vmm_of(&self, p: &impl Platform, vm: VmId) -> bool {
        let mm = p.current_mm();
        !mm.is_none() && self.vm_slot(vm).is_some_and(|s| s.mm == mm)
    }

    /// True if `dead`, a destroyed VM, had the same VMM as the live VM `vm`.
    fn same_vmm_ghost(&self, dead: VmId, vm: VmId) -> bool {
        let Some(mm) = self.vm_slot(vm).map(|s| s.mm) else {
            return false;
        };
        !self.v.vm_is_live(dead)
            && self
                .ghosts
                .iter()
                .flatten()
                .any(|g| g.vm == dead && g.mm == mm)
    }

    /// True if the current task may take `vm` apart: its VMM, or a task without an address
    /// space (a VMM that is exiting, a kernel thread doing the last `fput()`).
    fn in_teardown_of(&self, p: &impl Platform, vm: VmId) -> bool {
        p.current_mm().is_none() || self.in_vmm_of(p, vm)
    }
}

/// A refusal found by an op, before it is reported.
#[derive(Clone, Copy, Debug)]
struct Refusal {
    class: CheckClass,
    denial: Denial,
    subject: u64,
    old: u64,
    new: u64,
    /// The VM to stop, if the refusal belongs to one.
    kvm: Handle,
    /// A value write (VMCS field, EPT entry, control register, MSR list), which audit mode lets
    /// through; everything else is enforced in both modes.
    value_write: bool,
}
