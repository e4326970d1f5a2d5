// SPDX-License-Identifier: GPL-2.0

//! The hook ops: every `struct hyperps_ops` entry point, routed to the verifier.
//!
//! Design (the full list is in README.md):
//!
//! * **Locking.** All verifier state lives in [`State`] behind one raw spinlock taken with IRQs
//!   off (`hps_c_lock`). Hooks that may run in NMI (VMCLEAR, emergency VMXOFF) never take it:
//!   in NMI they allow without touching the state. The CR0/CR3/CR4 hooks never take it either:
//!   they apply the stateless rules only and count with atomics, so the context-switch path is
//!   O(1) and lock-free.
//! * **Ownership.** A frame becomes owned by a VM when it is first mapped by a leaf of that VM
//!   (donation from `Host`). A frame that its VM no longer maps (the VM was destroyed, or KVM
//!   zapped the mapping and the host reused the page) is reclaimed and re-donated when the
//!   next VM maps it; a frame another VM still maps is refused (`EptForeignFrame`). Pages that enter HyperPS protection (paging structures, VMCS, aux pages)
//!   are reclaimed from their previous owner first.
//! * **Scrubbing.** Paging-structure pages are scrubbed for real (filled before they are
//!   registered). Guest frames are not: in KVM guest memory is VMM (host) memory that the
//!   host could read all along, and when a frame is reclaimed lazily it already holds the
//!   next owner's data, so scrubbing it would corrupt live memory. The glue attests the scrub
//!   in that case; a real scrub needs a page-free hook, which the kernel does not have.
//! * **Paging-structure pages** are protected at `pt_alloc` and registered with their level
//!   on first use (as a table written to, as the child of a non-leaf entry, or as a root).
//!   Freed pages wait for a global INVEPT, done from a work item, before they go back.

use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use kernel::bindings;
use kernel::ffi::{c_int, c_uint, c_ulong, c_void};
use kernel::prelude::*;

use crate::policy::cr::{cr0_verdict, cr3_decode, cr4_pinned_verdict};
use crate::policy::*;

/// VM slots of the verifier and of the glue.
pub(crate) const MAX_VMS: usize = 512;
/// vCPU slots (`KVM_MAX_VCPUS` is 4096 on x86).
pub(crate) const MAX_VCPUS: usize = 8192;
/// VMCS slots: vmcs01 of every vCPU plus vmcs02 and shadow VMCSs of nested vCPUs.
pub(crate) const MAX_VMCS: usize = 16384;
/// One record per VPID value.
pub(crate) const NR_VPIDS: usize = 65536;
/// Concurrently KSM-merged frames tracked.
pub(crate) const MAX_SHARES: usize = 4096;
/// Refusal ring of the verifier.
pub(crate) const AUDIT_RING: usize = 64;
/// Paging-structure pages waiting for a global INVEPT (or for their last reference).
pub(crate) const DEFER_MAX: usize = 4096;

/// Bit of a deferred entry: the page was in the pool before the current INVEPT started.
const DEFER_READY: u64 = 1 << 63;

/// The C half of the module (`hps_glue.c`).
pub(crate) mod c {
    use kernel::ffi::{c_int, c_uint, c_void};

    /// Host state as `hps_c_host_state()` fills it; layout shared with C.
    #[repr(C)]
    #[derive(Default)]
    pub(crate) struct HostStateC {
        pub(crate) cr0: u64,
        pub(crate) cr3: u64,
        pub(crate) cr4: u64,
        pub(crate) fs_base: u64,
        pub(crate) gs_base: u64,
        pub(crate) tr_base: u64,
        pub(crate) gdtr_base: u64,
        pub(crate) idtr_base: u64,
        pub(crate) sysenter_esp: u64,
        pub(crate) sysenter_eip: u64,
        pub(crate) pat: u64,
        pub(crate) efer: u64,
        pub(crate) perf_global_ctrl: u64,
        pub(crate) sysenter_cs: u32,
        pub(crate) fs_selector: u16,
        pub(crate) gs_selector: u16,
    }

    /// Counters for debugfs; layout shared with C.
    #[repr(C)]
    pub(crate) struct Stats {
        pub(crate) verified: [u64; 9],
        pub(crate) refused: [u64; 9],
        pub(crate) anomalies: u64,
        pub(crate) lost: u64,
        pub(crate) deferred: u64,
        pub(crate) leaked: u64,
        pub(crate) vms: u64,
        pub(crate) vcpus: u64,
        pub(crate) frames_host: u64,
        pub(crate) frames_vm: u64,
        pub(crate) frames_shared: u64,
        pub(crate) frames_protected: u64,
    }

    extern "C" {
        pub(crate) fn hps_c_lock() -> core::ffi::c_ulong;
        pub(crate) fn hps_c_unlock(flags: core::ffi::c_ulong);
        pub(crate) fn hps_c_in_nmi() -> bool;
        pub(crate) fn hps_c_enforce() -> bool;
        pub(crate) fn hps_c_vzalloc(size: usize) -> *mut c_void;
        pub(crate) fn hps_c_free_tables();
        pub(crate) fn hps_c_pa(p: *const c_void) -> u64;
        pub(crate) fn hps_c_pt_page(gfp: c_uint, init_value: u64) -> *mut c_void;
        pub(crate) fn hps_c_free_page(p: *mut c_void);
        pub(crate) fn hps_c_va(pa: u64) -> *mut c_void;
        pub(crate) fn hps_c_cpu() -> c_uint;
        pub(crate) fn hps_c_nr_cpus() -> c_uint;
        pub(crate) fn hps_c_max_pfn() -> u64;
        pub(crate) fn hps_c_phys_bits() -> u8;
        pub(crate) fn hps_c_cr4() -> u64;
        pub(crate) fn hps_c_zero_pfn() -> u64;
        pub(crate) fn hps_c_host_state(hs: *mut HostStateC);
        pub(crate) fn hps_c_module_addr(addr: u64) -> bool;
        pub(crate) fn hps_c_report(
            class: u32,
            reason: *const u8,
            len: usize,
            subject: u64,
            old: u64,
            new: u64,
            enforced: bool,
        );
        pub(crate) fn hps_c_kill_vm(kvm: *mut c_void);
        pub(crate) fn hps_c_invvpid_all();
        pub(crate) fn hps_c_invept_all();
        pub(crate) fn hps_c_kick_work();
        pub(crate) fn hps_c_read(p: *mut u64) -> u64;
        pub(crate) fn hps_c_write(p: *mut u64, v: u64);
        pub(crate) fn hps_c_xchg(p: *mut u64, v: u64) -> u64;
        pub(crate) fn hps_c_cmpxchg(p: *mut u64, old: *mut u64, v: u64) -> bool;
        pub(crate) fn hps_c_fetch_and(p: *mut u64, mask: u64) -> u64;
        pub(crate) fn hps_c_root_set(pfn: u64, nr_pages: c_uint, known: bool);
        pub(crate) fn hps_c_cr3_root_known(pfn: u64) -> bool;
        pub(crate) fn hps_c_register() -> c_int;
        pub(crate) fn hps_c_init() -> c_int;
        pub(crate) fn hps_c_exit();
    }
}

/// A VM the glue knows: KVM's handle and the verifier's identifier.
#[derive(Clone, Copy)]
pub(crate) struct VmSlot {
    kvm: usize,
    id: u32,
    /// The APIC-access page, donated when a VMCS names it (0: none). The guest may never map
    /// it, so no leaf zap returns it; the VM's destruction does.
    apic_access: u64,
}

impl VmSlot {
    pub(crate) const FREE: VmSlot = VmSlot {
        kvm: 0,
        id: 0,
        apic_access: 0,
    };
}

/// A vCPU the glue knows, with the frames registered for it (0: none).
#[derive(Clone, Copy)]
pub(crate) struct VcpuSlot {
    vcpu: usize,
    id: u32,
    vm: u32,
    vmcs01: u64,
    vmcs02: u64,
    shadow: u64,
    msr01: u64,
    msr02: u64,
    aux: [u64; 6],
    vpid: u16,
    vpid02: u16,
    /// vcpu_free() was called; the records go when KVM frees vmcs01.
    dying: bool,
}

impl VcpuSlot {
    pub(crate) const FREE: VcpuSlot = VcpuSlot {
        vcpu: 0,
        id: 0,
        vm: 0,
        vmcs01: 0,
        vmcs02: 0,
        shadow: 0,
        msr01: 0,
        msr02: 0,
        aux: [0; 6],
        vpid: 0,
        vpid02: 0,
        dying: false,
    };
}

/// Index of the posted-interrupt descriptor in [`VcpuSlot::aux`].
const AUX_PI: usize = 2;
/// Index of the virtual-APIC page in [`VcpuSlot::aux`].
const AUX_VAPIC: usize = 5;

/// Everything behind the lock.
pub(crate) struct State {
    pub(crate) v: Verifier<'static>,
    /// Per frame: raw `VmId` + 1 of a paging-structure page allocated for that VM and not
    /// registered yet, 0 otherwise.
    pub(crate) pending: &'static mut [u32],
    pub(crate) vms: &'static mut [VmSlot],
    pub(crate) vcpus: &'static mut [VcpuSlot],
    pub(crate) deferred: &'static mut [u64],
    pub(crate) ndeferred: usize,
    pub(crate) leaked: u64,
    /// Destroyed VMs whose last paging-structure pages KVM frees after vm_destroy() (RCU):
    /// raw `VmId`s, 0 for a free slot.
    pub(crate) zombies: [u32; MAX_ZOMBIES],
}

/// Destroyed VMs waiting for their last paging-structure pages.
pub(crate) const MAX_ZOMBIES: usize = 64;

/// The global state.
///
/// # Invariants
///
/// The inner value is only accessed through [`locked`] (with `hps_lock` held and IRQs off) or
/// by module init before the ops are registered. Nothing called with the lock held re-enters
/// [`locked`] on the same CPU: NMI-context hooks and the CR hooks never take the lock.
struct Global(UnsafeCell<Option<State>>);

// SAFETY: see the invariants of `Global`: every access is serialised by `hps_lock`.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(None));

/// Installs the state. Called once by module init, before the ops are registered.
pub(crate) fn install(state: State) {
    // SAFETY: `hps_c_lock` has no precondition.
    let flags = unsafe { c::hps_c_lock() };
    // SAFETY: the lock is held, so no other reference to the state exists.
    unsafe { *STATE.0.get() = Some(state) };
    // SAFETY: `flags` comes from the matching `hps_c_lock`.
    unsafe { c::hps_c_unlock(flags) };
}

/// Drops the state again, so that module init can free the tables when registration failed.
/// No hook uses the state then: the ops were never registered.
pub(crate) fn uninstall() {
    // SAFETY: `hps_c_lock` has no precondition.
    let flags = unsafe { c::hps_c_lock() };
    // SAFETY: the lock is held, so no other reference to the state exists.
    unsafe { *STATE.0.get() = None };
    // SAFETY: `flags` comes from the matching `hps_c_lock`.
    unsafe { c::hps_c_unlock(flags) };
}

/// Runs `f` on the state with the lock held and IRQs off; `None` before init.
fn locked<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    // SAFETY: `hps_c_lock` has no precondition.
    let flags = unsafe { c::hps_c_lock() };
    // SAFETY: the lock is held and, by the invariants of `Global`, not re-entered, so this is
    // the only reference to the state.
    let state = unsafe { &mut *STATE.0.get() };
    let r = state.as_mut().map(f);
    // SAFETY: `flags` comes from the matching `hps_c_lock`.
    unsafe { c::hps_c_unlock(flags) };
    r
}

/// CR classes are checked outside the lock; their counters live here.
static CR_VERIFIED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static CR_REFUSED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
/// `Config` facts the CR hooks need without the lock.
static CR4_PINNED: AtomicU64 = AtomicU64::new(0);
static PHYS_BITS: AtomicU8 = AtomicU8::new(52);

pub(crate) fn set_cr_config(cfg: &Config) {
    CR4_PINNED.store(cfg.cr4_pinned, Ordering::Relaxed);
    PHYS_BITS.store(cfg.phys_addr_bits, Ordering::Relaxed);
}

fn enforce() -> bool {
    // SAFETY: no precondition.
    unsafe { c::hps_c_enforce() }
}

fn in_nmi() -> bool {
    // SAFETY: no precondition.
    unsafe { c::hps_c_in_nmi() }
}

fn this_cpu() -> CpuId {
    // SAFETY: no precondition.
    CpuId(unsafe { c::hps_c_cpu() })
}

fn pa_of(p: *const c_void) -> u64 {
    // SAFETY: KVM passes pointers into the kernel direct map (SPTE tables, pt pages).
    unsafe { c::hps_c_pa(p) }
}

/// A fixed buffer for the name of a denial.
struct NameBuf {
    buf: [u8; 40],
    len: usize,
}

impl Write for NameBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Logs, traces and records a refusal (NMI-safe).
fn report(class: CheckClass, d: Denial, subject: u64, old: u64, new: u64, enforced: bool) {
    let mut name = NameBuf {
        buf: [0; 40],
        len: 0,
    };
    let _ = write!(name, "{:?}", d);
    // SAFETY: `name.buf` is valid for `name.len` bytes; the C side copies them.
    unsafe {
        c::hps_c_report(
            class as u32,
            name.buf.as_ptr(),
            name.len,
            subject,
            old,
            new,
            enforced,
        )
    };
}

/// A refusal found under the lock, reported after it is dropped.
struct Refusal {
    class: CheckClass,
    d: Denial,
    subject: u64,
    old: u64,
    new: u64,
    kvm: usize,
}

/// Reports `r` and, in enforce mode, stops its VM. Returns true if the write must not happen.
fn refuse(r: Refusal) -> bool {
    let enforced = enforce();
    report(r.class, r.d, r.subject, r.old, r.new, enforced);
    if enforced && r.kvm != 0 {
        // SAFETY: `r.kvm` is a VM handle between its vm_create() and vm_destroy().
        unsafe { c::hps_c_kill_vm(r.kvm as *mut c_void) };
    }
    enforced
}

fn is_host_field(f: u32) -> bool {
    (0x0c00..=0x0c0d).contains(&f)
        || (0x2c00..=0x2c05).contains(&f)
        || f == 0x4c00
        || (0x6c00..=0x6c17).contains(&f)
}

fn pfn_usize(pfn: Pfn) -> Option<usize> {
    usize::try_from(pfn.0).ok()
}

impl State {
    fn vm_of(&self, kvm: usize) -> Option<VmId> {
        self.vms
            .iter()
            .find(|s| s.kvm == kvm && kvm != 0)
            .map(|s| VmId::from_raw(s.id))
    }

    fn kvm_of(&self, vm: VmId) -> usize {
        self.vms
            .iter()
            .find(|s| s.kvm != 0 && s.id == vm.to_raw())
            .map_or(0, |s| s.kvm)
    }

    fn kvm_of_table(&self, table: Pfn) -> usize {
        match self.v.frame_state(table) {
            Some(FrameState::Protected(Protected::Ept(p))) => self.kvm_of(p.vm),
            _ => self.pending_vm(table).map_or(0, |vm| self.kvm_of(vm)),
        }
    }

    fn pending_vm(&self, pfn: Pfn) -> Option<VmId> {
        let raw = *self.pending.get(pfn_usize(pfn)?)?;
        raw.checked_sub(1).map(VmId::from_raw)
    }

    fn set_pending(&mut self, pfn: Pfn, vm: Option<VmId>) {
        if let Some(slot) = pfn_usize(pfn).and_then(|i| self.pending.get_mut(i)) {
            *slot = vm.map_or(0, |vm| vm.to_raw().saturating_add(1));
        }
    }

    fn vcpu_index(&self, vcpu: usize) -> Option<usize> {
        if vcpu == 0 {
            return None;
        }
        self.vcpus.iter().position(|s| s.vcpu == vcpu)
    }

    fn vcpu_by_vmcs(&self, pfn: u64) -> Option<VcpuSlot> {
        self.vcpus
            .iter()
            .find(|s| s.vcpu != 0 && (s.vmcs01 == pfn || s.vmcs02 == pfn || s.shadow == pfn))
            .copied()
    }

    /// Returns a frame of a VM or a KSM share to the host, if nothing maps it.
    fn reclaim(&mut self, pfn: Pfn) -> bool {
        if self.v.frame_mappings(pfn) != Some((0, 0)) {
            return false;
        }
        match self.v.check_reclaim(pfn) {
            Ok(plan) => {
                // No scrub here: see "Scrubbing" in the module documentation.
                self.v.commit_reclaim(plan.scrubbed());
                true
            }
            Err(_) => false,
        }
    }

    /// Makes an unmapped VM-owned or shared frame host-owned again.
    fn make_host(&mut self, pfn: Pfn) {
        if matches!(
            self.v.frame_state(pfn),
            Some(FrameState::Vm(_)) | Some(FrameState::Shared(_))
        ) {
            self.reclaim(pfn);
        }
    }

    /// Moves a page into the HyperPS pool.
    fn take(&mut self, pfn: Pfn) -> Result<(), Denial> {
        self.make_host(pfn);
        match self.v.frame_state(pfn) {
            Some(FrameState::Protected(Protected::Pool {
                invept_pending: None,
            })) => Ok(()),
            _ => self.v.protect(pfn),
        }
    }

    /// Gives a pool page back to the host.
    fn give_back(&mut self, pfn: Pfn) {
        if matches!(
            self.v.frame_state(pfn),
            Some(FrameState::Protected(Protected::Pool {
                invept_pending: None
            }))
        ) {
            chk(self.v.unprotect(pfn), pfn.0);
        }
    }

    /// Donates a host frame, or re-donates a frame that another VM no longer maps, to `vm`.
    /// A frame KVM has unmapped is back in the host's hands (a memslot went away, the VMM
    /// freed the memory) and the page allocator may hand it to anyone; only a frame that
    /// another VM still maps stays that VM's, so the leaf is refused as a foreign frame.
    fn own(&mut self, vm: VmId, pfn: Pfn) {
        match self.v.frame_state(pfn) {
            Some(FrameState::Host) => {
                chk(self.v.donate_to_vm(vm, pfn, 1), pfn.0);
            }
            Some(FrameState::Vm(o)) if o != vm => {
                if self.reclaim(pfn) {
                    chk(self.v.donate_to_vm(vm, pfn, 1), pfn.0);
                }
            }
            _ => {}
        }
    }

    /// Gives the frames of the replaced leaf `old` back to the host if no leaf maps them any
    /// more, so a VM owns a frame only while it maps it and a destroyed VM leaves nothing
    /// behind. KSM shares stay: the KSM page lives on in host page tables.
    fn release_unmapped(&mut self, old: u64, level: EptLevel) {
        let cfg = *self.v.config();
        let Ok(EptClass::Leaf { pfn, size, .. }) = classify_spte(EptEntry(old), level, &cfg) else {
            return;
        };
        if pfn.0 >= self.v.frame_count() {
            return;
        }
        for i in 0..size.frames() {
            if let Some(p) = pfn.checked_add(i) {
                if matches!(self.v.frame_state(p), Some(FrameState::Vm(_))) {
                    self.reclaim(p);
                }
            }
        }
    }

    /// Registers a pending paging-structure page of `vm` at `level`.
    fn register_pending(&mut self, vm: VmId, pfn: Pfn, level: EptLevel) {
        if self.pending_vm(pfn) != Some(vm) {
            return;
        }
        match self.v.register_ept_page(vm, pfn, level) {
            Ok(()) => self.set_pending(pfn, None),
            Err(d) => chk(Err(d), pfn.0),
        }
    }

    /// Brings the records up to date before `new` is checked for `table` at `level`: the
    /// table itself, a child page named by a non-leaf entry, and the frames of a leaf.
    fn prepare_spte(&mut self, table: Pfn, level: EptLevel, new: u64) {
        let vm = match self.v.frame_state(table) {
            Some(FrameState::Protected(Protected::Ept(p))) => p.vm,
            _ => match self.pending_vm(table) {
                Some(vm) => {
                    self.register_pending(vm, table, level);
                    vm
                }
                None => return,
            },
        };
        let cfg = *self.v.config();
        match classify_spte(EptEntry(new), level, &cfg) {
            Ok(EptClass::Leaf { pfn, size, .. }) if pfn.0 < self.v.frame_count() => {
                for i in 0..size.frames() {
                    if let Some(p) = pfn.checked_add(i) {
                        self.own(vm, p);
                    }
                }
            }
            Ok(EptClass::NonLeaf { child }) => {
                if let Some(cl) = level.child() {
                    self.register_pending(vm, child, cl);
                }
            }
            _ => {}
        }
    }

    /// Registers an auxiliary page unless it already is one of this owner and kind.
    fn reg_aux(&mut self, owner: AuxOwner, pfn: Pfn, kind: AuxKind) -> Result<(), Denial> {
        if let Some(FrameState::Protected(Protected::Aux {
            owner: o, kind: k, ..
        })) = self.v.frame_state(pfn)
        {
            if o == owner && k == kind {
                return Ok(());
            }
        }
        self.make_host(pfn);
        self.v.register_aux_page(owner, pfn, kind)
    }

    /// Withdraws an auxiliary page and gives it back to the host.
    fn drop_aux(&mut self, pfn: u64) {
        let pfn = Pfn(pfn);
        if matches!(
            self.v.frame_state(pfn),
            Some(FrameState::Protected(Protected::Aux { refs: 0, .. }))
        ) && self.v.unregister_aux_page(pfn).is_ok()
        {
            self.give_back(pfn);
        }
    }

    /// Destroys the VM records of destroyed VMs whose EPT pages are all gone.
    fn reap_zombies(&mut self) {
        for i in 0..MAX_ZOMBIES {
            let raw = self.zombies.get(i).copied().unwrap_or(0);
            if raw == 0 {
                continue;
            }
            let vm = VmId::from_raw(raw);
            if self.v.vm_ept_pages(vm).unwrap_or(0) != 0 {
                continue;
            }
            if let Err(d) = self.v.destroy_vm(vm) {
                if d != Denial::UnknownVm {
                    report(CheckClass::Registration, d, u64::from(raw), 0, 0, false);
                }
            }
            if let Some(z) = self.zombies.get_mut(i) {
                *z = 0;
            }
        }
    }

    fn defer(&mut self, pfn: Pfn) {
        match self.deferred.get_mut(self.ndeferred) {
            Some(slot) => {
                *slot = pfn.0;
                self.ndeferred += 1;
            }
            // The page stays protected and allocated for good.
            None => self.leaked = self.leaked.saturating_add(1),
        }
    }

    /// Unregisters deferred EPT pages whose last entry and reference are gone, and marks the
    /// pool pages that the next INVEPT will cover. Returns how many are ready.
    fn deferred_pass1(&mut self) -> usize {
        let mut ready = 0;
        for i in 0..self.ndeferred {
            let Some(raw) = self.deferred.get(i).copied() else {
                break;
            };
            let pfn = Pfn(raw & !DEFER_READY);
            if let Some(FrameState::Protected(Protected::Ept(p))) = self.v.frame_state(pfn) {
                if p.entries == 0 && p.refs == 0 {
                    chk(self.v.unregister_ept_page(pfn), pfn.0);
                }
            }
            if let Some(FrameState::Protected(Protected::Pool { .. })) = self.v.frame_state(pfn) {
                if let Some(slot) = self.deferred.get_mut(i) {
                    *slot = pfn.0 | DEFER_READY;
                }
                ready += 1;
            }
        }
        ready
    }

    /// After a global INVEPT: gives back up to `out.len()` ready pages, returned in `out`.
    fn deferred_pass2(&mut self, out: &mut [u64]) -> usize {
        self.v.note_invept_global();
        let mut n = 0;
        let mut i = 0;
        while i < self.ndeferred && n < out.len() {
            let raw = self.deferred.get(i).copied().unwrap_or(0);
            let pfn = Pfn(raw & !DEFER_READY);
            if raw & DEFER_READY != 0 && self.v.unprotect(pfn).is_ok() {
                if let Some(o) = out.get_mut(n) {
                    *o = pfn.0;
                    n += 1;
                }
                // Swap-remove entry i.
                self.ndeferred -= 1;
                let last = self.deferred.get(self.ndeferred).copied().unwrap_or(0);
                if let Some(slot) = self.deferred.get_mut(i) {
                    *slot = last;
                }
            } else {
                i += 1;
            }
        }
        n
    }
}

// ---------------------------------------------------------------------------------------------
// VMX instructions.

#[no_mangle]
extern "C" fn hps_rs_vmcs_write(field: c_ulong, value: c_ulong) -> c_int {
    let (field, value) = (field as u64, value as u64);
    let Ok(field) = u32::try_from(field) else {
        let r = Refusal {
            class: CheckClass::Vmcs,
            d: Denial::UnknownField,
            subject: field,
            old: 0,
            new: value,
            kvm: 0,
        };
        return c_int::from(refuse(r));
    };
    let f = VmcsField(field);
    let mut host = HostState::default();
    if is_host_field(field) {
        let mut hs = c::HostStateC::default();
        // SAFETY: `hs` is valid for writes.
        unsafe { c::hps_c_host_state(&mut hs) };
        host = HostState {
            cr0: hs.cr0,
            cr3: hs.cr3,
            cr4: hs.cr4,
            rip: 0,
            stack_low: 0,
            stack_high: 0,
            fs_selector: hs.fs_selector,
            gs_selector: hs.gs_selector,
            fs_base: hs.fs_base,
            gs_base: hs.gs_base,
            tr_base: hs.tr_base,
            gdtr_base: hs.gdtr_base,
            idtr_base: hs.idtr_base,
            sysenter_cs: hs.sysenter_cs,
            sysenter_esp: hs.sysenter_esp,
            sysenter_eip: hs.sysenter_eip,
            pat: hs.pat,
            efer: hs.efer,
            perf_global_ctrl: hs.perf_global_ctrl,
        };
        if f == VmcsField::HOST_RIP {
            host.rip = host_rip(value);
        }
        // vmx_set_constant_host_state() first writes 0 to these; the live values follow
        // before every VM entry (vmx_prepare_switch_to_guest(), vmx_vcpu_load_vmcs()).
        if value == 0 {
            if f == VmcsField::HOST_FS_BASE {
                host.fs_base = 0;
            } else if f == VmcsField::HOST_GS_BASE {
                host.gs_base = 0;
            } else if f == VmcsField::HOST_IA32_SYSENTER_ESP {
                host.sysenter_esp = 0;
            }
        }
    }
    let cpu = this_cpu();
    let verdict = locked(|st| {
        st.prepare_vmcs_write(cpu, f, value);
        let tmp_root = if f == VmcsField::HOST_CR3 {
            let root = Pfn((value & 0x000f_ffff_ffff_f000) >> 12);
            st.make_host(root);
            (st.v.frame_state(root) == Some(FrameState::Host)
                && st.v.register_host_pgd(root, 1).is_ok())
            .then_some(root)
        } else {
            None
        };
        let r = st.v.check_vmcs_write(cpu, f, value, &host);
        if let Some(root) = tmp_root {
            chk(st.v.unregister_host_pgd(root, 1), root.0);
        }
        r
    });
    match verdict {
        Some(Err(d)) => {
            let class = if f == VmcsField::EPT_POINTER {
                CheckClass::Eptp
            } else {
                CheckClass::Vmcs
            };
            // KVM stops the running VM itself (vmx_hyperps_stop_running_vm()).
            let r = Refusal {
                class,
                d,
                subject: u64::from(field),
                old: 0,
                new: value,
                kvm: 0,
            };
            c_int::from(refuse(r))
        }
        _ => 0,
    }
}

/// `HOST_RIP` pinned by its first write (0: not yet), until kvm_intel goes away.
static HOST_RIP_PIN: AtomicU64 = AtomicU64::new(0);

/// The expected `HOST_RIP`. kvm_intel loads after us, so its `vmx_vmexit` cannot be looked
/// up at init (and module text lookups are not exported): the first value, which must lie in
/// module space, is pinned until the VMXON regions are freed (kvm_intel unload).
fn host_rip(value: u64) -> u64 {
    // SAFETY: no precondition.
    if !unsafe { c::hps_c_module_addr(value) } {
        return !value;
    }
    match HOST_RIP_PIN.compare_exchange(0, value, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => value,
        Err(pinned) => pinned,
    }
}

impl State {
    /// Pages first named by a VMCS address field that no hook reports: the virtual-APIC page
    /// (KVM's lapic regs page), the APIC-access page, L1 pages in a vmcs02 and the global
    /// VMREAD/VMWRITE bitmaps. They are registered on first use.
    fn prepare_vmcs_write(&mut self, cpu: CpuId, f: VmcsField, value: u64) {
        let lazy = [
            VmcsField::VIRTUAL_APIC_PAGE_ADDR,
            VmcsField::APIC_ACCESS_ADDR,
            VmcsField::POSTED_INTR_DESC_ADDR,
            VmcsField::VMREAD_BITMAP,
            VmcsField::VMWRITE_BITMAP,
        ];
        // 0 (and INVALID_GPA in a vmcs02) name no page.
        if !lazy.contains(&f) || value == 0 || value == u64::MAX {
            return;
        }
        let Some(cur) = self.v.current_vmcs(cpu) else {
            return;
        };
        let kind = self.v.vmcs_kind(cur);
        let Some(slot) = self.vcpu_by_vmcs(cur.0) else {
            return;
        };
        let vm = VmId::from_raw(slot.vm);
        let vcpu = VcpuId::from_raw(slot.id);
        let pfn = Pfn((value & 0x000f_ffff_ffff_f000) >> 12);
        if f == VmcsField::VMREAD_BITMAP {
            chk(
                self.reg_aux(AuxOwner::Global, pfn, AuxKind::VmreadBitmap),
                pfn.0,
            );
        } else if f == VmcsField::VMWRITE_BITMAP {
            chk(
                self.reg_aux(AuxOwner::Global, pfn, AuxKind::VmwriteBitmap),
                pfn.0,
            );
        } else if f == VmcsField::APIC_ACCESS_ADDR || kind == Some(VmcsKind::Vmcs02) {
            self.own(vm, pfn);
            if f == VmcsField::APIC_ACCESS_ADDR && kind == Some(VmcsKind::Vmcs01) {
                if let Some(s) = self.vms.iter_mut().find(|s| s.kvm != 0 && s.id == slot.vm) {
                    s.apic_access = pfn.0;
                }
            }
        } else {
            // vmcs01: the vCPU's lapic page or its posted-interrupt descriptor (inside the
            // vCPU structure; registered on use because it may share a frame with the MSR
            // lists, and a frame has one kind).
            let (kind, index) = if f == VmcsField::VIRTUAL_APIC_PAGE_ADDR {
                (AuxKind::VirtualApic, AUX_VAPIC)
            } else {
                (AuxKind::PiDesc, AUX_PI)
            };
            if self.reg_aux(AuxOwner::Vcpu(vcpu), pfn, kind).is_ok() {
                if let Some(i) = self.vcpu_index(slot.vcpu) {
                    if let Some(s) = self.vcpus.get_mut(i) {
                        if let Some(a) = s.aux.get_mut(index) {
                            *a = pfn.0;
                        }
                    }
                }
            }
        }
    }
}

/// Reports a refusal of a VMX instruction and returns the verdict for KVM.
fn vmx_verdict(r: Option<Result<(), Denial>>, subject: u64) -> c_int {
    match r {
        Some(Err(d)) => c_int::from(refuse(Refusal {
            class: CheckClass::VmxInstruction,
            d,
            subject,
            old: 0,
            new: 0,
            kvm: 0,
        })),
        _ => 0,
    }
}

#[no_mangle]
extern "C" fn hps_rs_vmcs_load(pa: u64) -> c_int {
    let cpu = this_cpu();
    vmx_verdict(locked(|st| st.v.vmptrld(cpu, Hpa(pa))), pa)
}

#[no_mangle]
extern "C" fn hps_rs_vmcs_clear(pa: u64) -> c_int {
    // NMI (emergency reboot): never spin on the lock; the CPU is going down anyway.
    if in_nmi() {
        return 0;
    }
    let cpu = this_cpu();
    let r = locked(|st| match st.v.frame_state(Hpa(pa).pfn()) {
        // A VMCS page that is not bound to a vCPU (just allocated, or retired by
        // vcpu_free()): clearing it cannot affect any VM.
        Some(FrameState::Protected(Protected::Pool { .. })) => Ok(()),
        _ => st.v.vmclear(cpu, Hpa(pa)),
    });
    vmx_verdict(r, pa)
}

#[no_mangle]
extern "C" fn hps_rs_vmxon(pa: u64) -> c_int {
    let cpu = this_cpu();
    let r = locked(|st| {
        let pfn = Hpa(pa).pfn();
        if !matches!(
            st.v.frame_state(pfn),
            Some(FrameState::Protected(Protected::Vmxon { .. }))
        ) {
            st.v.register_vmxon(cpu, pfn)?;
        }
        st.v.vmxon(cpu, Hpa(pa))
    });
    vmx_verdict(r, pa)
}

#[no_mangle]
extern "C" fn hps_rs_vmxoff(emergency: bool) -> c_int {
    if in_nmi() {
        return 0;
    }
    let cpu = this_cpu();
    let r = vmx_verdict(locked(|st| st.v.vmxoff(cpu)), u64::from(cpu.0));
    if emergency {
        0
    } else {
        r
    }
}

// ---------------------------------------------------------------------------------------------
// VMX bookkeeping.

#[no_mangle]
extern "C" fn hps_rs_ept_load(kvm: *mut c_void, _vcpu: *mut c_void, root: u64, eptp: u64) -> c_int {
    let kick = locked(|st| {
        if let Some(vm) = st.vm_of(kvm as usize) {
            let walk = u8::try_from(((eptp >> 3) & 7) + 1).unwrap_or(0);
            if let Some(level) = EptLevel::new(walk) {
                st.register_pending(vm, Hpa(root).pfn(), level);
            }
        }
        st.ndeferred != 0
    });
    if kick == Some(true) {
        // SAFETY: no precondition.
        unsafe { c::hps_c_kick_work() };
    }
    0
}

fn registration_verdict(r: Option<Result<(), Denial>>, subject: u64, kvm: usize) -> c_int {
    match r {
        Some(Err(d)) => {
            if refuse(Refusal {
                class: CheckClass::Registration,
                d,
                subject,
                old: 0,
                new: 0,
                kvm,
            }) {
                -(bindings::EPERM as c_int)
            } else {
                0
            }
        }
        _ => 0,
    }
}

#[no_mangle]
extern "C" fn hps_rs_page_alloc(_type: u32, pa: u64) -> c_int {
    registration_verdict(locked(|st| st.take(Hpa(pa).pfn())), pa, 0)
}

#[no_mangle]
extern "C" fn hps_rs_page_free(_type: u32, pa: u64) -> c_int {
    let keep = locked(|st| {
        let pfn = Hpa(pa).pfn();
        match st.v.frame_state(pfn) {
            Some(FrameState::Protected(Protected::Vmcs { .. })) => {
                if st.v.vmcs_active_cpu(pfn).is_some() || st.v.unregister_vmcs(pfn).is_err() {
                    // Possibly still in use by the CPU: keep it allocated for good.
                    report(CheckClass::Registration, Denial::VmcsInUse, pa, 0, 0, false);
                    return true;
                }
                if let Some(i) = st
                    .vcpus
                    .iter()
                    .position(|s| s.vcpu != 0 && s.dying && s.vmcs01 == pfn.0)
                {
                    st.vcpu_gone(i);
                }
            }
            Some(FrameState::Protected(Protected::Vmxon { cpu })) => {
                if st.v.unregister_vmxon(cpu).is_err() {
                    return true;
                }
                HOST_RIP_PIN.store(0, Ordering::Relaxed);
            }
            Some(FrameState::Protected(Protected::Aux { refs, .. })) => {
                if refs != 0 || st.v.unregister_aux_page(pfn).is_err() {
                    return true;
                }
            }
            _ => {}
        }
        st.give_back(pfn);
        false
    });
    c_int::from(keep == Some(true))
}

#[no_mangle]
extern "C" fn hps_rs_vcpu_create(info: *const bindings::hyperps_vcpu_info) -> c_int {
    // SAFETY: KVM passes a valid info structure for the duration of the call.
    let info = unsafe { &*info };
    if info.vpid != 0 {
        // A VPID may be reused only after a global INVVPID (process context, IRQs on).
        // SAFETY: no precondition.
        unsafe { c::hps_c_invvpid_all() };
    }
    let kvm = info.kvm as usize;
    let r = locked(|st| {
        let mut s = VcpuSlot::FREE;
        let r = st.vcpu_create(info, &mut s);
        if s.vcpu != 0 {
            match st.vcpus.iter_mut().find(|x| x.vcpu == 0) {
                Some(slot) => *slot = s,
                None => return Err(Denial::TableFull),
            }
        }
        r
    });
    registration_verdict(r, info.vmcs01_pa, kvm)
}

impl State {
    fn vcpu_create(
        &mut self,
        info: &bindings::hyperps_vcpu_info,
        s: &mut VcpuSlot,
    ) -> Result<(), Denial> {
        let vm = self.vm_of(info.kvm as usize).ok_or(Denial::UnknownVm)?;
        if !self.vcpus.iter().any(|x| x.vcpu == 0) {
            return Err(Denial::TableFull);
        }
        let id = self.v.create_vcpu(vm)?;
        *s = VcpuSlot {
            vcpu: info.vcpu as usize,
            id: id.to_raw(),
            vm: vm.to_raw(),
            ..VcpuSlot::FREE
        };
        if info.vpid != 0 {
            self.v.note_invvpid_global();
            self.v.assign_vpid(id, Vpid(info.vpid))?;
            s.vpid = info.vpid;
        }
        let vmcs01 = Hpa(info.vmcs01_pa).pfn();
        self.take(vmcs01)?;
        self.v.register_vmcs(id, vmcs01, VmcsKind::Vmcs01)?;
        s.vmcs01 = vmcs01.0;
        let me = AuxOwner::Vcpu(id);
        if info.msr_bitmap_pa != 0 {
            let pfn = Hpa(info.msr_bitmap_pa).pfn();
            self.reg_aux(me, pfn, AuxKind::MsrBitmap)?;
            s.msr01 = pfn.0;
        }
        let aux = [
            (info.pml_pa, AuxKind::Pml),
            (info.ve_info_pa, AuxKind::VeInfo),
            // The posted-interrupt descriptor is registered on first use.
            (0, AuxKind::PiDesc),
            (info.msr_autoload_guest_pa, AuxKind::MsrList),
            (info.msr_autoload_host_pa, AuxKind::MsrList),
        ];
        for (i, (pa, kind)) in aux.into_iter().enumerate() {
            if pa == 0 {
                continue;
            }
            let pfn = Hpa(pa).pfn();
            self.reg_aux(me, pfn, kind)?;
            if !s.aux.contains(&pfn.0) {
                if let Some(a) = s.aux.get_mut(i) {
                    *a = pfn.0;
                }
            }
        }
        Ok(())
    }
}

#[no_mangle]
extern "C" fn hps_rs_vcpu_free(_kvm: *mut c_void, vcpu: *mut c_void) {
    locked(|st| {
        let Some(i) = st.vcpu_index(vcpu as usize) else {
            return;
        };
        let Some(mut s) = st.vcpus.get(i).copied() else {
            return;
        };
        // KVM still loads vmcs01 to leave nested operation, then clears and frees the VMCSs
        // (page_free() withdraws them) and frees vmcs01 last: the vCPU's records go then, see
        // `State::vcpu_gone`. The VPID is released right after this hook.
        let id = VcpuId::from_raw(s.id);
        if s.vpid != 0 {
            chk(st.v.release_vpid(id, Vpid(s.vpid)), u64::from(s.vpid));
            s.vpid = 0;
        }
        s.dying = true;
        if let Some(slot) = st.vcpus.get_mut(i) {
            *slot = s;
        }
    });
}

impl State {
    /// KVM freed vmcs01 of a vCPU after vcpu_free(): withdraw the vCPU's remaining pages
    /// (PML, #VE, lapic, the MSR lists and PI descriptor inside the vCPU structure, the MSR
    /// bitmap) and the vCPU record. KVM frees the PML page a little earlier, without a hook;
    /// no VM can use it in between.
    fn vcpu_gone(&mut self, i: usize) {
        let Some(s) = self.vcpus.get(i).copied() else {
            return;
        };
        let id = VcpuId::from_raw(s.id);
        for pfn in s.aux {
            if pfn != 0 {
                self.drop_aux(pfn);
            }
        }
        // The MSR bitmap goes back to the pool; its page_free() follows.
        for pfn in [s.msr01, s.msr02] {
            if pfn != 0 {
                chk(self.v.unregister_aux_page(Pfn(pfn)), pfn);
            }
        }
        if s.vpid02 != 0 {
            chk(self.v.release_vpid(id, Vpid(s.vpid02)), u64::from(s.vpid02));
        }
        if let Err(d) = self.v.destroy_vcpu(id) {
            chk(Err(d), u64::from(s.id));
            pr_warn!(
                "vcpu {:#x} not destroyed: vmcs01 {:?} vmcs02 {:#x} {:?} shadow {:#x} {:?} msr01 {:?} msr02 {:#x} {:?} aux {:?} vpid02 {}\n",
                s.id,
                self.v.frame_state(Pfn(s.vmcs01)),
                s.vmcs02,
                self.v.frame_state(Pfn(s.vmcs02)),
                s.shadow,
                self.v.frame_state(Pfn(s.shadow)),
                self.v.frame_state(Pfn(s.msr01)),
                s.msr02,
                self.v.frame_state(Pfn(s.msr02)),
                s.aux.map(|p| self.v.frame_state(Pfn(p))),
                s.vpid02
            );
        }
        if let Some(slot) = self.vcpus.get_mut(i) {
            *slot = VcpuSlot::FREE;
        }
        self.reap_zombies();
    }
}

/// Reports a failed bookkeeping step (a glue or verifier bug, never a hostile value).
fn chk(r: Result<(), Denial>, subject: u64) {
    if let Err(d) = r {
        report(CheckClass::Registration, d, subject, 0, 0, false);
    }
}

#[no_mangle]
extern "C" fn hps_rs_nested_enter(info: *const bindings::hyperps_nested_info) {
    // SAFETY: KVM passes a valid info structure for the duration of the call.
    let info = unsafe { &*info };
    if info.vpid02 != 0 {
        // SAFETY: no precondition.
        unsafe { c::hps_c_invvpid_all() };
    }
    let r = locked(|st| st.nested_enter(info));
    // A refusal here shows up as refused VMPTRLD/VMWRITEs, which stop the VM.
    let _ = registration_verdict(r, info.vmcs02_pa, info.kvm as usize);
}

impl State {
    fn nested_enter(&mut self, info: &bindings::hyperps_nested_info) -> Result<(), Denial> {
        let i = self
            .vcpu_index(info.vcpu as usize)
            .ok_or(Denial::UnknownVcpu)?;
        let mut s = self.vcpus.get(i).copied().ok_or(Denial::UnknownVcpu)?;
        let id = VcpuId::from_raw(s.id);
        let r = (|| {
            if info.vpid02 != 0 && s.vpid02 != info.vpid02 {
                self.v.note_invvpid_global();
                self.v.assign_vpid(id, Vpid(info.vpid02))?;
                s.vpid02 = info.vpid02;
            }
            for (pa, kind) in [
                (info.vmcs02_pa, VmcsKind::Vmcs02),
                (info.shadow_vmcs_pa, VmcsKind::Shadow),
            ] {
                let pfn = Hpa(pa).pfn();
                if pa == 0 || self.v.vmcs_kind(pfn) == Some(kind) {
                    continue;
                }
                self.take(pfn)?;
                self.v.register_vmcs(id, pfn, kind)?;
                match kind {
                    VmcsKind::Shadow => s.shadow = pfn.0,
                    _ => s.vmcs02 = pfn.0,
                }
            }
            if info.vmcs02_msr_bitmap_pa != 0 {
                let pfn = Hpa(info.vmcs02_msr_bitmap_pa).pfn();
                self.reg_aux(AuxOwner::Vcpu(id), pfn, AuxKind::MsrBitmap)?;
                s.msr02 = pfn.0;
            }
            Ok(())
        })();
        if let Some(slot) = self.vcpus.get_mut(i) {
            *slot = s;
        }
        r
    }
}

#[no_mangle]
extern "C" fn hps_rs_nested_leave(_kvm: *mut c_void, vcpu: *mut c_void) {
    locked(|st| {
        let Some(i) = st.vcpu_index(vcpu as usize) else {
            return;
        };
        let Some(mut s) = st.vcpus.get(i).copied() else {
            return;
        };
        if s.vpid02 != 0 {
            chk(
                st.v.release_vpid(VcpuId::from_raw(s.id), Vpid(s.vpid02)),
                u64::from(s.vpid02),
            );
        }
        // vmcs02, the shadow VMCS and vmcs02's MSR bitmap are cleared and freed by KVM right
        // after; page_free() withdraws them.
        s.vpid02 = 0;
        s.vmcs02 = 0;
        s.shadow = 0;
        s.msr02 = 0;
        if let Some(slot) = st.vcpus.get_mut(i) {
            *slot = s;
        }
    });
}

// ---------------------------------------------------------------------------------------------
// SPTE writes.

/// Checks `new` for the entry at `sptep`, then lets `perform` do the write (returning the
/// replaced value, or `None` if it did not write). Returns false if the write was refused and
/// not performed.
fn spte_write(
    sptep: *mut u64,
    new: u64,
    level: c_int,
    mut perform: impl FnMut() -> Option<u64>,
) -> bool {
    let enforced = enforce();
    let pa = pa_of(sptep as *const c_void);
    let table = Pfn(pa >> 12);
    let index = ((pa & 0xfff) >> 3) as u16;
    let level = u8::try_from(level).ok().and_then(EptLevel::new);
    let mut ran = false;
    let refusal = locked(|st| {
        if let Some(level) = level {
            st.prepare_spte(table, level, new);
        }
        match st.v.check_spte(table, index, EptEntry(new)) {
            Ok(plan) => {
                ran = true;
                match perform() {
                    Some(old) => {
                        st.v.commit_spte(plan, EptEntry(old));
                        if let Some(level) = level {
                            st.release_unmapped(old, level);
                        }
                    }
                    None => drop(plan),
                }
                None
            }
            Err(d) => {
                let kvm = st.kvm_of_table(table);
                if !enforced {
                    ran = true;
                    let _ = perform();
                }
                Some((d, kvm))
            }
        }
    });
    if refusal.is_none() && !ran {
        // Not initialised yet (cannot happen once registered): behave natively.
        let _ = perform();
        return true;
    }
    if let Some(Some((d, kvm))) = refusal {
        // SAFETY: `sptep` is a valid SPTE pointer passed by KVM.
        let cur = unsafe { c::hps_c_read(sptep) };
        refuse(Refusal {
            class: CheckClass::Ept,
            d,
            subject: pa,
            old: cur,
            new,
            kvm,
        });
    }
    ran
}

#[no_mangle]
extern "C" fn hps_rs_spte_xchg(sptep: *mut u64, new_spte: u64, level: c_int) -> u64 {
    let mut old = 0;
    let done = spte_write(sptep, new_spte, level, || {
        // SAFETY: `sptep` is a valid SPTE pointer passed by KVM.
        old = unsafe { c::hps_c_xchg(sptep, new_spte) };
        Some(old)
    });
    if done {
        old
    } else {
        // SAFETY: as above.
        unsafe { c::hps_c_read(sptep) }
    }
}

#[no_mangle]
extern "C" fn hps_rs_spte_store(sptep: *mut u64, new_spte: u64, level: c_int) {
    spte_write(sptep, new_spte, level, || {
        // SAFETY: `sptep` is a valid SPTE pointer passed by KVM.
        let old = unsafe { c::hps_c_read(sptep) };
        // SAFETY: as above.
        unsafe { c::hps_c_write(sptep, new_spte) };
        Some(old)
    });
}

#[no_mangle]
extern "C" fn hps_rs_spte_cmpxchg(
    sptep: *mut u64,
    old_spte: *mut u64,
    new_spte: u64,
    level: c_int,
) -> bool {
    let mut ok = false;
    let done = spte_write(sptep, new_spte, level, || {
        // SAFETY: `old_spte` is valid for reads and writes (KVM's expected value).
        let expected = unsafe { *old_spte };
        // SAFETY: `sptep` is a valid SPTE pointer, `old_spte` as above.
        ok = unsafe { c::hps_c_cmpxchg(sptep, old_spte, new_spte) };
        ok.then_some(expected)
    });
    if !done {
        // Refused: report the current value, as a concurrent change would.
        // SAFETY: as above.
        unsafe { *old_spte = c::hps_c_read(sptep) };
        return false;
    }
    ok
}

#[no_mangle]
extern "C" fn hps_rs_spte_and(sptep: *mut u64, mask: u64, level: c_int) -> u64 {
    // The verdict ignores A/D, so a snapshot is enough to check the result.
    // SAFETY: `sptep` is a valid SPTE pointer passed by KVM.
    let snap = unsafe { c::hps_c_read(sptep) };
    let mut old = 0;
    let done = spte_write(sptep, snap & mask, level, || {
        // SAFETY: as above.
        old = unsafe { c::hps_c_fetch_and(sptep, mask) };
        Some(old)
    });
    if done {
        old
    } else {
        // SAFETY: as above.
        unsafe { c::hps_c_read(sptep) }
    }
}

#[no_mangle]
extern "C" fn hps_rs_spte_xchg_batch(
    sptep: *mut u64,
    nr: c_uint,
    new_spte: u64,
    old_sptes: *mut u64,
    level: c_int,
) {
    let nr = (nr as usize).min(bindings::HYPERPS_SPTE_BATCH as usize);
    for i in 0..nr {
        // SAFETY: KVM passes `nr` consecutive entries of one table and `nr` old slots.
        let (p, o) = unsafe { (sptep.add(i), old_sptes.add(i)) };
        let v = hps_rs_spte_xchg(p, new_spte, level);
        // SAFETY: `o` is valid for writes, see above.
        unsafe { *o = v };
    }
}

#[no_mangle]
extern "C" fn hps_rs_spte_fill(pt: *mut u64, first_spte: u64, step: u64, level: c_int) {
    for i in 0..bindings::HYPERPS_SPTES_PER_TABLE as usize {
        let v = first_spte.wrapping_add((i as u64).wrapping_mul(step));
        // SAFETY: `pt` is a whole, not yet linked table of HYPERPS_SPTES_PER_TABLE entries.
        let p = unsafe { pt.add(i) };
        hps_rs_spte_store(p, v, level);
    }
}

// ---------------------------------------------------------------------------------------------
// Paging-structure pages and VMs.

#[no_mangle]
extern "C" fn hps_rs_pt_alloc(kvm: *mut c_void, init_value: u64, gfp: c_uint) -> *mut c_void {
    // Filling the page is also its scrub.
    // SAFETY: no precondition; the page comes from the page allocator.
    let pt = unsafe { c::hps_c_pt_page(gfp, init_value) };
    if pt.is_null() {
        return pt;
    }
    let pfn = Pfn(pa_of(pt) >> 12);
    let r = locked(|st| {
        let vm = st.vm_of(kvm as usize);
        st.take(pfn)?;
        st.set_pending(pfn, vm);
        Ok(())
    });
    if registration_verdict(r, pfn.0 << 12, 0) != 0 {
        // SAFETY: `pt` was allocated above and is not used.
        unsafe { c::hps_c_free_page(pt) };
        return core::ptr::null_mut();
    }
    pt
}

#[no_mangle]
extern "C" fn hps_rs_pt_free(pt: *mut c_void) {
    let pfn = Pfn(pa_of(pt) >> 12);
    let free_now = locked(|st| {
        st.set_pending(pfn, None);
        match st.v.frame_state(pfn) {
            Some(FrameState::Protected(Protected::Ept(p))) => {
                if p.entries == 0 && p.refs == 0 {
                    chk(st.v.unregister_ept_page(pfn), pfn.0);
                    st.reap_zombies();
                }
                st.defer(pfn);
                false
            }
            Some(FrameState::Protected(Protected::Pool {
                invept_pending: Some(_),
            })) => {
                st.defer(pfn);
                false
            }
            _ => {
                st.give_back(pfn);
                true
            }
        }
    });
    match free_now {
        Some(false) => {
            // SAFETY: no precondition.
            unsafe { c::hps_c_kick_work() };
        }
        _ => {
            // SAFETY: `pt` came from `hps_rs_pt_alloc` and KVM is done with it.
            unsafe { c::hps_c_free_page(pt) };
        }
    }
}

#[no_mangle]
extern "C" fn hps_rs_deferred_work() {
    let ready = locked(|st| {
        let ready = st.deferred_pass1();
        st.reap_zombies();
        ready
    })
    .unwrap_or(0);
    if ready == 0 {
        return;
    }
    // SAFETY: process context (work item), IRQs on.
    unsafe { c::hps_c_invept_all() };
    loop {
        let mut out = [0u64; 64];
        let n = locked(|st| st.deferred_pass2(&mut out)).unwrap_or(0);
        for pfn in out.iter().take(n) {
            // SAFETY: the page was allocated by `hps_rs_pt_alloc`, freed by KVM, and is no
            // longer cached by any CPU (global INVEPT above).
            unsafe { c::hps_c_free_page(c::hps_c_va(*pfn << 12)) };
        }
        if n < out.len() {
            break;
        }
    }
}

#[no_mangle]
extern "C" fn hps_rs_pt_root(kvm: *mut c_void, pt: *mut c_void, level: c_int) {
    let pfn = Pfn(pa_of(pt) >> 12);
    locked(|st| {
        if let (Some(vm), Some(level)) = (
            st.vm_of(kvm as usize),
            u8::try_from(level).ok().and_then(EptLevel::new),
        ) {
            st.register_pending(vm, pfn, level);
        }
    });
}

#[no_mangle]
extern "C" fn hps_rs_vm_create(kvm: *mut c_void, _mm: *mut c_void) -> c_int {
    let r = locked(|st| {
        if !st.vms.iter().any(|s| s.kvm == 0) {
            return Err(Denial::TableFull);
        }
        let id = st.v.create_vm()?;
        if let Some(s) = st.vms.iter_mut().find(|s| s.kvm == 0) {
            *s = VmSlot {
                kvm: kvm as usize,
                id: id.to_raw(),
                apic_access: 0,
            };
        }
        Ok(())
    });
    registration_verdict(r, kvm as u64, 0)
}

/// Frames visited per lock hold by [`scan_frames`], so IRQs stay off only briefly.
const SCAN_CHUNK: u64 = 4096;

/// Visits every frame of RAM in chunks, dropping the lock between them, for as long as
/// `wanted` holds before a chunk. Under load the visit is a near snapshot, not an atomic one.
fn scan_frames(mut wanted: impl FnMut(&State) -> bool, mut visit: impl FnMut(&mut State, Pfn)) {
    let mut pfn: u64 = 0;
    loop {
        let more = locked(|st| {
            if !wanted(st) {
                return false;
            }
            let end = pfn.saturating_add(SCAN_CHUNK).min(st.v.frame_count());
            while pfn < end {
                visit(st, Pfn(pfn));
                pfn += 1;
            }
            pfn < st.v.frame_count()
        });
        if more != Some(true) {
            break;
        }
    }
}

/// Returns to the host the frames `vm` still owns but no leaf maps: pages that only a VMCS
/// named (an L1 page in a vmcs02). Mapped ones go back when their leaf is zapped. Scans only
/// while the VM owns any frame.
fn reclaim_unmapped_frames(vm: VmId) {
    scan_frames(
        |st| st.v.vm_owned_frames(vm).unwrap_or(0) != 0,
        |st, pfn| {
            if st.v.frame_state(pfn) == Some(FrameState::Vm(vm)) {
                st.reclaim(pfn);
            }
        },
    );
}

#[no_mangle]
extern "C" fn hps_rs_vm_destroy(kvm: *mut c_void) {
    // While the VM is still live: the frames it owns without a leaf go back first.
    let vm = locked(|st| {
        let vm = st.vm_of(kvm as usize)?;
        let apic_access = st.vms.iter().find(|s| s.kvm == kvm as usize)?.apic_access;
        if apic_access != 0 {
            st.make_host(Pfn(apic_access));
        }
        Some(vm)
    });
    if let Some(Some(vm)) = vm {
        reclaim_unmapped_frames(vm);
    }
    let r = locked(|st| {
        let vm = st.vm_of(kvm as usize)?;
        st.deferred_pass1();
        if let Some(s) = st.vms.iter_mut().find(|s| s.kvm == kvm as usize) {
            *s = VmSlot::FREE;
        }
        if st.v.vm_ept_pages(vm).unwrap_or(0) != 0 {
            // KVM frees the last roots after an RCU grace period: destroy the record then.
            if let Some(z) = st.zombies.iter_mut().find(|z| **z == 0) {
                *z = vm.to_raw();
                return None;
            }
        }
        Some(st.v.destroy_vm(vm))
    });
    // SAFETY: no precondition.
    unsafe { c::hps_c_kick_work() };
    if let Some(Some(Err(d))) = r {
        // The VM is gone either way; a refusal here is a bookkeeping bug worth seeing.
        report(CheckClass::Registration, d, kvm as u64, 0, 0, false);
    }
}

// ---------------------------------------------------------------------------------------------
// Host control registers: stateless rules, lock-free, any context.

fn cr_verdict(i: usize, class: CheckClass, val: u64, r: Result<(), Denial>) -> c_int {
    match r {
        Ok(()) => {
            if let Some(c) = CR_VERIFIED.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            0
        }
        Err(d) => {
            if let Some(c) = CR_REFUSED.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            let enforced = enforce();
            report(class, d, i as u64, 0, val, enforced);
            c_int::from(enforced)
        }
    }
}

#[no_mangle]
extern "C" fn hps_rs_cr0_write(val: c_ulong) -> c_int {
    let val = val as u64;
    cr_verdict(0, CheckClass::Cr0, val, cr0_verdict(Cr0(val)))
}

#[no_mangle]
extern "C" fn hps_rs_cr3_write(val: c_ulong) -> c_int {
    let val = val as u64;
    // SAFETY: no precondition (a per-CPU read).
    let cr4 = unsafe { c::hps_c_cr4() };
    let r = cr3_decode(
        Cr3(val),
        Cr4(cr4),
        PHYS_BITS.load(Ordering::Relaxed),
        crate::MAX_KERNEL_ASID,
        crate::HYPERPS_PCID,
    )
    .and_then(|(root, _)| {
        // SAFETY: no precondition (a lock-free bitmap test).
        if unsafe { c::hps_c_cr3_root_known(root.0) } {
            Ok(())
        } else {
            Err(Denial::Cr3UnknownRoot)
        }
    });
    cr_verdict(1, CheckClass::Cr3, val, r)
}

// ---------------------------------------------------------------------------------------------
// Host page-table roots.

#[no_mangle]
extern "C" fn hps_rs_pgd_add(pa: u64, nr_pages: c_uint) -> c_int {
    let first = Hpa(pa).pfn();
    let r = locked(|st| {
        for i in 0..u64::from(nr_pages) {
            let p = first.checked_add(i).ok_or(Denial::BadRange)?;
            // Registration reports roots that pgd_alloc() may have reported already.
            if st.v.frame_state(p) == Some(FrameState::HostPgd) {
                continue;
            }
            st.make_host(p);
            st.v.register_host_pgd(p, 1)?;
        }
        Ok(())
    });
    let ret = registration_verdict(r, pa, 0);
    if ret == 0 {
        // SAFETY: no precondition.
        unsafe { c::hps_c_root_set(first.0, nr_pages, true) };
    }
    ret
}

#[no_mangle]
extern "C" fn hps_rs_pgd_remove(pa: u64, nr_pages: c_uint) {
    let first = Hpa(pa).pfn();
    // SAFETY: no precondition.
    unsafe { c::hps_c_root_set(first.0, nr_pages, false) };
    locked(|st| {
        for i in 0..u64::from(nr_pages) {
            if let Some(p) = first.checked_add(i) {
                if st.v.frame_state(p) == Some(FrameState::HostPgd) {
                    chk(st.v.unregister_host_pgd(p, 1), p.0);
                }
            }
        }
    });
}

#[no_mangle]
extern "C" fn hps_rs_cr4_write(val: c_ulong) -> c_int {
    let val = val as u64;
    let r = cr4_pinned_verdict(Cr4(val), CR4_PINNED.load(Ordering::Relaxed));
    cr_verdict(2, CheckClass::Cr4, val, r)
}

// ---------------------------------------------------------------------------------------------
// KSM.

#[no_mangle]
extern "C" fn hps_rs_ksm_merge(
    _mm: *mut c_void,
    addr: c_ulong,
    pfn: c_ulong,
    kpfn: c_ulong,
) -> c_int {
    let (addr, pfn, kpfn) = (addr as u64, pfn as u64, kpfn as u64);
    let r = locked(|st| {
        // Frames no VM maps any more that the host reuses (KSM also scans plain host
        // processes) go back to the host first; reclaim() leaves mapped frames alone.
        for p in [Pfn(pfn), Pfn(kpfn)] {
            if matches!(st.v.frame_state(p), Some(FrameState::Vm(_))) {
                st.reclaim(p);
            }
        }
        st.v.ksm_merge(Pfn(kpfn), Pfn(pfn)).map(|_| ())
    });
    match r {
        Some(Err(d)) => c_int::from(refuse(Refusal {
            class: CheckClass::Ownership,
            d,
            subject: addr,
            old: pfn,
            new: kpfn,
            kvm: 0,
        })),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// debugfs.

/// Counts the frames of RAM by owner (a near snapshot, see [`scan_frames`]).
fn frame_census(out: &mut c::Stats) {
    scan_frames(
        |_| true,
        |st, pfn| match st.v.frame_state(pfn) {
            Some(FrameState::Host | FrameState::HostPgd) => out.frames_host += 1,
            Some(FrameState::Vm(_)) => out.frames_vm += 1,
            Some(FrameState::Shared(_) | FrameState::Zero) => out.frames_shared += 1,
            Some(FrameState::Protected(_)) => out.frames_protected += 1,
            None => {}
        },
    );
}

#[no_mangle]
extern "C" fn hps_rs_stats(out: *mut c::Stats) {
    // SAFETY: the C caller passes a valid, writable `struct hps_stats`.
    let out = unsafe { &mut *out };
    locked(|st| {
        for (i, class) in CheckClass::ALL.iter().enumerate() {
            let c = st.v.counters(*class);
            if let Some(v) = out.verified.get_mut(i) {
                *v = c.verified;
            }
            if let Some(r) = out.refused.get_mut(i) {
                *r = c.refused;
            }
        }
        out.anomalies = st.v.audit().anomalies();
        out.lost = st.v.audit().lost();
        out.deferred = st.ndeferred as u64;
        out.leaked = st.leaked;
        out.vms = st.vms.iter().filter(|s| s.kvm != 0).count() as u64;
        out.vcpus = st.vcpus.iter().filter(|s| s.vcpu != 0).count() as u64;
    });
    frame_census(out);
    for (k, class) in [CheckClass::Cr0, CheckClass::Cr3, CheckClass::Cr4]
        .iter()
        .enumerate()
    {
        let i = *class as usize;
        if let (Some(v), Some(c)) = (out.verified.get_mut(i), CR_VERIFIED.get(k)) {
            *v = v.saturating_add(c.load(Ordering::Relaxed));
        }
        if let (Some(r), Some(c)) = (out.refused.get_mut(i), CR_REFUSED.get(k)) {
            *r = r.saturating_add(c.load(Ordering::Relaxed));
        }
    }
}
