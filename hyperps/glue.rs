// SPDX-License-Identifier: GPL-2.0

//! The hook ops: thin `extern "C"` entry points over the backend (`policy::backend`).
//!
//! Every decision is the backend's, in the `no_std` crate that `cargo test` exercises with a
//! mock kernel; this file only takes the lock, provides the kernel [`Platform`], performs the
//! SPTE atomics KVM asked for, and does what must happen outside the lock (INVEPT/INVVPID on
//! all CPUs, freeing pages, dropping an `mm`).
//!
//! Locking. Callers may hold KVM's `mmu_lock` (rwlock), be in an RCU read section, hold the KSM
//! page-table lock or the page allocator's zone state; `hps_lock` (a raw spinlock taken with
//! IRQs off) nests inside all of those and nothing is called with it held that takes any of
//! them. It is never taken in NMI: the NMI paths (VMCLEAR and VMXOFF of an emergency reboot,
//! the control registers) use only atomics. The control-register hooks never take it, so the
//! context-switch path stays lock-free; neither does the page allocator's free path for a frame
//! HyperPS does not track (one bit test).

use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use kernel::bindings;
use kernel::ffi::{c_int, c_uint, c_ulong, c_void};
use kernel::prelude::*;

use crate::policy::backend::{
    Backend, Census, FrameKind, Handle, HostValue, NestedInfo, Platform, PtFree, Report,
    SpteOutcome, UserMapping, VcpuInfo, MAX_FREE_ORDER,
};
use crate::policy::cr::{cr0_verdict, cr3_decode, cr4_write_verdict};
use crate::policy::vmcs_fields::HostField;
use crate::policy::*;

/// VM slots of the verifier and of the backend.
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
/// Paging-structure pages waiting for a global INVEPT.
pub(crate) const DEFER_MAX: usize = 4096;
/// Memslots of all VMs (KVM allows 32764 per address space and VM).
pub(crate) const MAX_MEMSLOTS: usize = 65536;
/// CPUs the lock-free per-CPU VMX state covers.
const MAX_CPUS: usize = 8192;

/// The C half of the module (`hps_glue.c`).
pub(crate) mod c {
    use kernel::ffi::{c_int, c_uint, c_void};

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
        pub(crate) leaf_writes: [u64; 3],
    }

    /// One frame a VM owns, for debugfs; layout shared with C.
    #[repr(C)]
    pub(crate) struct VmFrame {
        pub(crate) pfn: u64,
        pub(crate) maps: u64,
        pub(crate) owner: u32,
        pub(crate) live: u32,
    }

    extern "C" {
        pub(crate) fn hps_c_lock() -> core::ffi::c_ulong;
        pub(crate) fn hps_c_unlock(flags: core::ffi::c_ulong);
        pub(crate) fn hps_c_in_nmi() -> bool;
        pub(crate) fn hps_c_enforce() -> bool;
        pub(crate) fn hps_c_vzalloc(size: usize) -> *mut c_void;
        pub(crate) fn hps_c_free_tables();
        pub(crate) fn hps_c_table_pfn(index: c_uint, offset: usize) -> u64;
        pub(crate) fn hps_c_table_size(index: c_uint) -> usize;
        pub(crate) fn hps_c_table_count() -> c_uint;
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
        pub(crate) fn hps_c_current_mm() -> usize;
        pub(crate) fn hps_c_mm_grab(mm: usize);
        pub(crate) fn hps_c_mm_drop(mm: usize);
        pub(crate) fn hps_c_user_mapping(
            hva: u64,
            pfn: *mut u64,
            writable: *mut bool,
            level: *mut u32,
        ) -> bool;
        pub(crate) fn hps_c_frame_kind(pfn: u64) -> u32;
        pub(crate) fn hps_c_frames_equal(a: u64, b: u64) -> bool;
        pub(crate) fn hps_c_scrub(pfn: u64);
        pub(crate) fn hps_c_pgd_is_new(pa: u64, nr_pages: c_uint) -> bool;
        pub(crate) fn hps_c_read_phys(pa: u64, val: *mut u64) -> bool;
        pub(crate) fn hps_c_frame_va(pfn: u64) -> *mut c_void;
        pub(crate) fn hps_c_frame_unreferenced(pfn: u64) -> bool;
        pub(crate) fn hps_c_rdmsr(msr: u32, val: *mut u64) -> bool;
        pub(crate) fn hps_c_vmread(field: u32, val: *mut u64) -> bool;
        pub(crate) fn hps_c_host_value(which: u32) -> u64;
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
        pub(crate) fn hps_c_root_set(pfn: u64, nr_pages: c_uint, known: bool);
        pub(crate) fn hps_c_cr3_root_known(pfn: u64) -> bool;
        pub(crate) fn hps_c_register() -> c_int;
        pub(crate) fn hps_c_init() -> c_int;
        pub(crate) fn hps_c_exit();
    }
}

/// `hps_c_frame_kind()` results; keep in sync with `hps_glue.h`.
const HPS_FRAME_USER: u32 = 1;
const HPS_FRAME_KERNEL: u32 = 2;
const HPS_FRAME_HUGE_ZERO: u32 = 3;

/// `hps_c_host_value()` selectors; keep in sync with `hps_glue.h`.
mod host_sel {
    pub(super) const CR0: u32 = 0;
    pub(super) const CR3: u32 = 1;
    pub(super) const CR4: u32 = 2;
    pub(super) const FS_SEL: u32 = 3;
    pub(super) const GS_SEL: u32 = 4;
    pub(super) const FS_BASE: u32 = 5;
    pub(super) const GS_BASE: u32 = 6;
    pub(super) const TR_BASE: u32 = 7;
    pub(super) const GDTR_BASE: u32 = 8;
    pub(super) const IDTR_BASE: u32 = 9;
    pub(super) const SYSENTER_CS: u32 = 10;
    pub(super) const SYSENTER_ESP: u32 = 11;
    pub(super) const SYSENTER_EIP: u32 = 12;
    pub(super) const PAT: u32 = 13;
    pub(super) const EFER: u32 = 14;
    pub(super) const PERF_GLOBAL_CTRL: u32 = 15;
    pub(super) const PI_DEST: u32 = 16;
    pub(super) const RIP: u32 = 17;
}

/// The kernel as the backend sees it. Every method is called with `hps_lock` held, IRQs off.
pub(crate) struct KernelPlatform;

impl Scrubber for KernelPlatform {
    fn scrub(&mut self, pfn: Pfn) {
        // SAFETY: the backend scrubs only frames of the frame table, which are RAM in the
        // direct map, and only frames the page allocator is freeing.
        unsafe { c::hps_c_scrub(pfn.0) }
    }
}

impl Platform for KernelPlatform {
    fn enforcing(&self) -> bool {
        // SAFETY: reads a module variable.
        unsafe { c::hps_c_enforce() }
    }

    fn cpu(&self) -> CpuId {
        // SAFETY: IRQs are off, so the CPU cannot change under us.
        CpuId(unsafe { c::hps_c_cpu() })
    }

    fn current_mm(&self) -> Handle {
        // SAFETY: reads `current->mm`.
        Handle(unsafe { c::hps_c_current_mm() })
    }

    fn user_mapping(&self, hva: u64) -> Option<UserMapping> {
        let (mut pfn, mut writable, mut level) = (0u64, false, 0u32);
        // SAFETY: the out pointers are valid; IRQs are off, as the lockless walk requires.
        let found = unsafe { c::hps_c_user_mapping(hva, &mut pfn, &mut writable, &mut level) };
        let size = match level {
            1 => PageSize::Size4K,
            2 => PageSize::Size2M,
            3 => PageSize::Size1G,
            _ => return None,
        };
        found.then_some(UserMapping {
            pfn: Pfn(pfn),
            writable,
            size,
        })
    }

    fn frame_kind(&self, pfn: Pfn) -> FrameKind {
        // SAFETY: any frame number is accepted; invalid ones are reported as unusable.
        match unsafe { c::hps_c_frame_kind(pfn.0) } {
            HPS_FRAME_USER => FrameKind::User,
            HPS_FRAME_KERNEL => FrameKind::Kernel,
            HPS_FRAME_HUGE_ZERO => FrameKind::HugeZero,
            _ => FrameKind::Unusable,
        }
    }

    fn frame_unreferenced(&self, pfn: Pfn) -> bool {
        // SAFETY: any frame number is accepted; an invalid one is reported as referenced.
        unsafe { c::hps_c_frame_unreferenced(pfn.0) }
    }

    fn frames_equal(&self, a: Pfn, b: Pfn) -> bool {
        // SAFETY: any frame numbers are accepted; invalid ones compare unequal.
        unsafe { c::hps_c_frames_equal(a.0, b.0) }
    }

    fn pgd_is_new(&self, root: Pfn, pages: u32) -> bool {
        // SAFETY: any address is accepted; the registry checks it is RAM.
        unsafe { c::hps_c_pgd_is_new(root.0 << 12, pages) }
    }

    fn read_phys(&self, pa: u64) -> Option<u64> {
        let mut v = 0;
        // SAFETY: `v` is valid for writes; the C side reads only RAM of the direct map.
        unsafe { c::hps_c_read_phys(pa, &mut v) }.then_some(v)
    }

    fn with_frame_words<R>(&self, pfn: Pfn, f: impl FnOnce(&[AtomicU64]) -> R) -> Option<R> {
        // SAFETY: any frame number is accepted; the address is null unless the frame is RAM.
        let va = unsafe { c::hps_c_frame_va(pfn.0) };
        if va.is_null() {
            return None;
        }
        // SAFETY: `va` is the direct-map address of a RAM frame: 4 KiB, 8-byte aligned and
        // mapped for as long as the kernel runs. Other CPUs may write it concurrently, which
        // is why it is read through atomics (plain loads on x86).
        let words = unsafe { core::slice::from_raw_parts(va.cast::<AtomicU64>(), 512) };
        Some(f(words))
    }

    fn host_msr(&self, msr: u32) -> Option<u64> {
        let mut v = 0;
        // SAFETY: `v` is valid for writes; a missing MSR is caught (rdmsr_safe).
        unsafe { c::hps_c_rdmsr(msr, &mut v) }.then_some(v)
    }

    fn vmread(&self, field: u32) -> Option<u64> {
        let mut v = 0;
        // SAFETY: `v` is valid for writes; VMREAD failures and faults are caught.
        unsafe { c::hps_c_vmread(field, &mut v) }.then_some(v)
    }

    fn host_value(&self, value: HostValue) -> u64 {
        use host_sel::*;
        let which = match value {
            HostValue::Cr0 => CR0,
            HostValue::Cr3 => CR3,
            HostValue::Cr4 => CR4,
            HostValue::Field(f) => match f {
                HostField::FsSelector => FS_SEL,
                HostField::GsSelector => GS_SEL,
                HostField::FsBase => FS_BASE,
                HostField::GsBase => GS_BASE,
                HostField::TrBase => TR_BASE,
                HostField::GdtrBase => GDTR_BASE,
                HostField::IdtrBase => IDTR_BASE,
                HostField::SysenterCs => SYSENTER_CS,
                HostField::SysenterEsp => SYSENTER_ESP,
                HostField::SysenterEip => SYSENTER_EIP,
                HostField::Pat => PAT,
                HostField::Efer => EFER,
                HostField::PerfGlobalCtrl => PERF_GLOBAL_CTRL,
                HostField::Rip => RIP,
            },
            HostValue::PiDestination => PI_DEST,
        };
        // SAFETY: reads registers of this CPU.
        unsafe { c::hps_c_host_value(which) }
    }

    fn report(&mut self, r: &Report) {
        report(r);
    }

    fn kill_vm(&mut self, kvm: Handle) {
        // SAFETY: the backend only names VMs between their vm_create() and vm_destroy().
        unsafe { c::hps_c_kill_vm(kvm.0 as *mut c_void) }
    }
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

/// Logs (rate-limited), traces and records a refusal; NMI-safe.
fn report(r: &Report) {
    let mut name = NameBuf {
        buf: [0; 40],
        len: 0,
    };
    let _ = write!(name, "{:?}", r.denial);
    // SAFETY: `name.buf` is valid for `name.len` bytes; the C side copies them.
    unsafe {
        c::hps_c_report(
            r.class as u32,
            name.buf.as_ptr(),
            name.len,
            r.subject,
            r.old,
            r.new,
            r.enforced,
        )
    };
}

/// The backend, behind `hps_lock`.
///
/// # Invariants
///
/// The inner value is only accessed through [`locked`] (with `hps_lock` held and IRQs off) or
/// by module init before the ops are registered. Nothing called with the lock held re-enters
/// [`locked`] on the same CPU: NMI-context hooks and the control-register hooks never take
/// the lock, and the backend frees no page while it holds it.
struct Global(UnsafeCell<Option<Backend<'static>>>);

// SAFETY: see the invariants of `Global`: every access is serialised by `hps_lock`.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(None));

/// `hps_lock` held with IRQs off, released on drop.
///
/// # Invariants
///
/// `flags` is what the `hps_c_lock()` that took the lock returned.
struct LockGuard {
    flags: core::ffi::c_ulong,
}

impl LockGuard {
    fn lock() -> LockGuard {
        // SAFETY: `hps_c_lock()` has no precondition; it is never called in NMI (see the top of
        // the file) and the lock is never taken twice by one CPU.
        let flags = unsafe { c::hps_c_lock() };
        LockGuard { flags }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `flags` comes from the matching `hps_c_lock()`.
        unsafe { c::hps_c_unlock(self.flags) };
    }
}

/// Installs the backend. Called once by module init, before the ops are registered.
pub(crate) fn install(backend: Backend<'static>, tracked: &'static [AtomicU64]) {
    TRACKED_LEN.store(tracked.len(), Ordering::Relaxed);
    TRACKED.store(tracked.as_ptr().cast_mut(), Ordering::Release);
    let _guard = LockGuard::lock();
    // SAFETY: the lock is held, so no other reference to the state exists.
    unsafe { *STATE.0.get() = Some(backend) };
}

/// Drops the backend again, so that module init can free the tables when registration failed.
/// No hook uses the state then: the ops were never registered.
pub(crate) fn uninstall() {
    TRACKED.store(core::ptr::null_mut(), Ordering::Release);
    let _guard = LockGuard::lock();
    // SAFETY: the lock is held, so no other reference to the state exists.
    unsafe { *STATE.0.get() = None };
}

/// Runs `f` on the backend with the lock held and IRQs off; `None` before init.
fn locked<R>(f: impl FnOnce(&mut Backend<'static>, &mut KernelPlatform) -> R) -> Option<R> {
    let _guard = LockGuard::lock();
    // SAFETY: the lock is held and, by the invariants of `Global`, not re-entered, so this is
    // the only reference to the state.
    let state = unsafe { &mut *STATE.0.get() };
    state.as_mut().map(|b| f(b, &mut KernelPlatform))
}

/// One bit per frame, set while the frame is not `Host` (kept by the verifier).
static TRACKED: AtomicPtr<AtomicU64> = AtomicPtr::new(core::ptr::null_mut());
static TRACKED_LEN: AtomicUsize = AtomicUsize::new(0);

/// True if any of the `count` frames from `pfn` on is tracked.
fn any_tracked(pfn: u64, count: u64) -> bool {
    let p = TRACKED.load(Ordering::Acquire);
    if p.is_null() {
        return false;
    }
    // SAFETY: `install` stored a table of `TRACKED_LEN` words that lives as long as the
    // (pinned) module; it is only read here.
    let words = unsafe { core::slice::from_raw_parts(p, TRACKED_LEN.load(Ordering::Relaxed)) };
    let end = pfn.saturating_add(count);
    let mut f = pfn;
    while f < end {
        let Some(w) = usize::try_from(f >> 6).ok().and_then(|i| words.get(i)) else {
            return false;
        };
        let bits = w.load(Ordering::Acquire);
        if f & 63 == 0 && end - f >= 64 {
            if bits != 0 {
                return true;
            }
            f += 64;
        } else {
            if bits & (1 << (f & 63)) != 0 {
                return true;
            }
            f += 1;
        }
    }
    false
}

/// Control-register checks run outside the lock; their counters live here.
static CR_VERIFIED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static CR_REFUSED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
/// `Config` facts the CR hooks need without the lock.
static CR4_PINNED: AtomicU64 = AtomicU64::new(0);
static CR4_PCIDE: AtomicBool = AtomicBool::new(false);
static PHYS_BITS: AtomicU8 = AtomicU8::new(52);
/// Per CPU: in VMX operation, as the backend last accepted (set before VMXON, cleared at
/// VMXOFF); read by the `CR4` hook, which may run in NMI.
static VMX_ON: [AtomicU64; MAX_CPUS / 64] = [const { AtomicU64::new(0) }; MAX_CPUS / 64];

fn set_vmx_on(cpu: u32, on: bool) {
    let Some(w) = usize::try_from(cpu / 64).ok().and_then(|i| VMX_ON.get(i)) else {
        return;
    };
    let bit = 1u64 << (cpu % 64);
    if on {
        w.fetch_or(bit, Ordering::Relaxed);
    } else {
        w.fetch_and(!bit, Ordering::Relaxed);
    }
}

fn vmx_on(cpu: u32) -> bool {
    usize::try_from(cpu / 64)
        .ok()
        .and_then(|i| VMX_ON.get(i))
        .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (cpu % 64)) != 0)
}

pub(crate) fn set_cr_config(cfg: &Config) {
    CR4_PINNED.store(cfg.cr4_pinned, Ordering::Relaxed);
    CR4_PCIDE.store(cfg.cr4_pcide, Ordering::Relaxed);
    PHYS_BITS.store(cfg.phys_addr_bits, Ordering::Relaxed);
}

// Safe wrappers of the C helpers that have no precondition.

fn in_nmi() -> bool {
    // SAFETY: `hps_c_in_nmi()` reads this CPU's preempt count; no precondition.
    unsafe { c::hps_c_in_nmi() }
}

fn this_cpu() -> u32 {
    // SAFETY: `hps_c_cpu()` reads this CPU's number; no precondition.
    unsafe { c::hps_c_cpu() }
}

/// The live CR4 of this CPU.
fn live_cr4() -> u64 {
    // SAFETY: `hps_c_cr4()` reads CR4 of this CPU; no precondition.
    unsafe { c::hps_c_cr4() }
}

/// INVVPID of every VPID on every CPU (an IPI to all CPUs; IRQs must be on).
fn invvpid_all() {
    // SAFETY: `hps_c_invvpid_all()` has no precondition beyond IRQs on, which its callers
    // (process context, outside `hps_lock`) guarantee.
    unsafe { c::hps_c_invvpid_all() };
}

/// Whether `pfn` is a page-table root CR3 may hold (a lock-free bitmap test).
fn cr3_root_known(pfn: u64) -> bool {
    // SAFETY: `hps_c_cr3_root_known()` bounds-checks `pfn`; no precondition.
    unsafe { c::hps_c_cr3_root_known(pfn) }
}

/// Marks `nr_pages` frames from `first` as page-table roots CR3 may hold, or not.
fn set_cr3_roots(first: u64, nr_pages: c_uint, known: bool) {
    // SAFETY: `hps_c_root_set()` bounds-checks the range; no precondition.
    unsafe { c::hps_c_root_set(first, nr_pages, known) };
}

fn pa_of(p: *const c_void) -> u64 {
    // SAFETY: KVM passes pointers into the kernel direct map (SPTE tables, pt pages).
    unsafe { c::hps_c_pa(p) }
}

fn kick_work() {
    // SAFETY: `hps_c_kick_work()` queues a static work item; no precondition.
    unsafe { c::hps_c_kick_work() };
}

fn errno(refused: bool) -> c_int {
    if refused {
        -(bindings::EPERM as c_int)
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------------
// Module init.

/// Marks the registration window: the kernel reports existing page-table roots during it.
pub(crate) fn set_registering(on: bool) {
    locked(|b, _| b.set_registering(on));
}

/// Marks every frame of the module's tables as HyperPS's own.
pub(crate) fn protect_tables(count: u32) -> Result {
    let r = locked(|b, _| -> Result {
        for i in 0..count {
            // SAFETY: `i` is below the number of tables.
            let size = unsafe { c::hps_c_table_size(i) };
            let mut off = 0usize;
            while off < size {
                // SAFETY: `off` lies inside table `i`.
                let pfn = unsafe { c::hps_c_table_pfn(i, off) };
                b.verifier_mut().protect_own(Pfn(pfn)).map_err(|_| EINVAL)?;
                off += 4096;
            }
        }
        Ok(())
    });
    r.unwrap_or(Err(EINVAL))
}

// ---------------------------------------------------------------------------------------------
// The ops table.

/// The table `hps_c_register()` hands to `hyperps_register_ops()`.
///
/// It is built here, with the registry's own `struct hyperps_ops` from bindgen, so that rustc
/// checks every entry point against the prototype in `<linux/hyperps.h>`.
///
/// # Invariants
///
/// Never written: it lives in an immutable static, and the registry only reads it.
#[repr(transparent)]
pub(crate) struct OpsTable(bindings::hyperps_ops);

// SAFETY: by the type invariant the table is never written; it holds only function pointers
// and the module pointer, which any CPU may read at any time.
unsafe impl Sync for OpsTable {}

// Only the address of the module structure is taken, so its layout does not cross the FFI.
#[allow(improper_ctypes)]
extern "C" {
    /// This module, built by the kernel at load time.
    static __this_module: kernel::types::Opaque<bindings::module>;
}

#[export_name = "hps_rs_ops"]
static HPS_OPS: OpsTable = OpsTable(bindings::hyperps_ops {
    abi_version: bindings::HYPERPS_ABI_VERSION,
    // SAFETY: only the address of `__this_module` is taken; the kernel keeps the module
    // structure until the (pinned) module is unloaded.
    owner: unsafe { __this_module.get() },
    vmcs_write: Some(hps_rs_vmcs_write),
    vmcs_load: Some(hps_rs_vmcs_load),
    vmcs_clear: Some(hps_rs_vmcs_clear),
    vmxon: Some(hps_rs_vmxon),
    vmxoff: Some(hps_rs_vmxoff),
    vm_entry: Some(hps_rs_vm_entry),
    ept_load: Some(hps_rs_ept_load),
    page_alloc: Some(hps_rs_page_alloc),
    page_free: Some(hps_rs_page_free),
    vcpu_create: Some(hps_rs_vcpu_create),
    vcpu_free: Some(hps_rs_vcpu_free),
    nested_enter: Some(hps_rs_nested_enter),
    nested_leave: Some(hps_rs_nested_leave),
    guest_page: Some(hps_rs_guest_page),
    spte_xchg: Some(hps_rs_spte_xchg),
    spte_store: Some(hps_rs_spte_store),
    spte_cmpxchg: Some(hps_rs_spte_cmpxchg),
    spte_and: Some(hps_rs_spte_and),
    spte_xchg_batch: Some(hps_rs_spte_xchg_batch),
    spte_fill: Some(hps_rs_spte_fill),
    pt_alloc: Some(hps_rs_pt_alloc),
    pt_free: Some(hps_rs_pt_free),
    pt_root: Some(hps_rs_pt_root),
    memslot_add: Some(hps_rs_memslot_add),
    memslot_remove: Some(hps_rs_memslot_remove),
    vm_create: Some(hps_rs_vm_create),
    vm_destroy: Some(hps_rs_vm_destroy),
    cr0_write: Some(hps_rs_cr0_write),
    cr3_write: Some(hps_rs_cr3_write),
    cr4_write: Some(hps_rs_cr4_write),
    ksm_merge: Some(hps_rs_ksm_merge),
    pgd_add: Some(hps_rs_pgd_add),
    pgd_remove: Some(hps_rs_pgd_remove),
    free_pages: Some(hps_rs_free_pages),
});

// ---------------------------------------------------------------------------------------------
// VMX instructions.

/// # Safety
///
/// Called by the registry as `hyperps_ops.vmcs_write`, in KVM's context.
unsafe extern "C" fn hps_rs_vmcs_write(field: c_ulong, value: c_ulong) -> c_int {
    let refused = locked(|b, p| b.vmcs_write(p, field as u64, value as u64));
    c_int::from(refused == Some(true))
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vmcs_load`.
unsafe extern "C" fn hps_rs_vmcs_load(pa: u64) -> c_int {
    c_int::from(locked(|b, p| b.vmcs_load(p, pa)) == Some(true))
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vmcs_clear`, possibly in NMI.
unsafe extern "C" fn hps_rs_vmcs_clear(pa: u64) -> c_int {
    // NMI (emergency reboot): never spin on the lock; the CPU is going down anyway.
    if in_nmi() {
        return 0;
    }
    c_int::from(locked(|b, p| b.vmcs_clear(p, pa)) == Some(true))
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vmxon`, on the CPU that executes VMXON.
unsafe extern "C" fn hps_rs_vmxon(pa: u64) -> c_int {
    let refused = locked(|b, p| b.vmxon(p, pa)) == Some(true);
    if !refused {
        set_vmx_on(this_cpu(), true);
    }
    c_int::from(refused)
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vmxoff`, in NMI when `emergency`.
unsafe extern "C" fn hps_rs_vmxoff(emergency: bool) -> c_int {
    if in_nmi() {
        // The CPU leaves VMX operation no matter what; CR4.VMXE may be cleared after it.
        set_vmx_on(this_cpu(), false);
        return 0;
    }
    let refused = locked(|b, p| b.vmxoff(p)) == Some(true);
    if !refused || emergency {
        set_vmx_on(this_cpu(), false);
    }
    if emergency {
        0
    } else {
        c_int::from(refused)
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vm_entry`, with IRQs off.
unsafe extern "C" fn hps_rs_vm_entry(
    _kvm: *mut bindings::kvm,
    _vcpu: *mut bindings::kvm_vcpu,
) -> c_int {
    c_int::from(locked(|b, p| b.vm_entry(p)) == Some(true))
}

// ---------------------------------------------------------------------------------------------
// VMX bookkeeping.

/// # Safety
///
/// Called by the registry as `hyperps_ops.ept_load`, with the vCPU whose VMCS is current.
unsafe extern "C" fn hps_rs_ept_load(
    kvm: *mut bindings::kvm,
    vcpu: *mut bindings::kvm_vcpu,
    root: u64,
    eptp: u64,
) -> c_int {
    let outcome = locked(|b, p| {
        let refused = b.ept_load(
            p,
            (Handle(kvm as usize), Handle(vcpu as usize)),
            Hpa(root).pfn(),
            eptp,
        );
        (refused, b.deferred_count() != 0)
    });
    let Some((refused, deferred)) = outcome else {
        return 0;
    };
    if deferred {
        kick_work();
    }
    c_int::from(refused)
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.page_alloc`, process context.
unsafe extern "C" fn hps_rs_page_alloc(_type: u32, pa: u64) -> c_int {
    errno(locked(|b, p| b.page_alloc(p, pa)).is_some_and(|r| r.is_err()))
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.page_free`, process context.
unsafe extern "C" fn hps_rs_page_free(_type: u32, pa: u64) -> c_int {
    c_int::from(locked(|b, p| b.page_free(p, pa)) == Some(true))
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vcpu_create`; `info` is valid for the call.
unsafe extern "C" fn hps_rs_vcpu_create(info: *const bindings::hyperps_vcpu_info) -> c_int {
    // SAFETY: KVM passes a valid info structure for the duration of the call.
    let i = unsafe { &*info };
    let info = VcpuInfo {
        kvm: Handle(i.kvm as usize),
        vcpu: Handle(i.vcpu as usize),
        vpid: i.vpid,
        vmcs01_pa: i.vmcs01_pa,
        msr_bitmap_pa: i.msr_bitmap_pa,
        pml_pa: i.pml_pa,
        ve_info_pa: i.ve_info_pa,
        pi_desc_pa: i.pi_desc_pa,
        msr_autoload_guest_pa: i.msr_autoload_guest_pa,
        msr_autoload_host_pa: i.msr_autoload_host_pa,
        virtual_apic_pa: i.virtual_apic_pa,
    };
    if info.vpid != 0 {
        // A VPID may be reused only after a global INVVPID (process context, IRQs on).
        invvpid_all();
    }
    errno(locked(|b, p| b.vcpu_create(p, &info, info.vpid != 0)).is_some_and(|r| r.is_err()))
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vcpu_free`.
unsafe extern "C" fn hps_rs_vcpu_free(kvm: *mut bindings::kvm, vcpu: *mut bindings::kvm_vcpu) {
    locked(|b, p| b.vcpu_free(p, Handle(kvm as usize), Handle(vcpu as usize)));
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.nested_enter`; `info` is valid for the call.
unsafe extern "C" fn hps_rs_nested_enter(info: *const bindings::hyperps_nested_info) {
    // SAFETY: KVM passes a valid info structure for the duration of the call.
    let i = unsafe { &*info };
    let info = NestedInfo {
        kvm: Handle(i.kvm as usize),
        vcpu: Handle(i.vcpu as usize),
        vpid02: i.vpid02,
        vmcs02_pa: i.vmcs02_pa,
        vmcs02_msr_bitmap_pa: i.vmcs02_msr_bitmap_pa,
        shadow_vmcs_pa: i.shadow_vmcs_pa,
    };
    if info.vpid02 != 0 {
        invvpid_all();
    }
    // A refusal shows up as refused VMPTRLD/VMWRITEs, which stop the VM.
    let _ = locked(|b, p| b.nested_enter(p, &info, info.vpid02 != 0));
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.nested_leave`.
unsafe extern "C" fn hps_rs_nested_leave(kvm: *mut bindings::kvm, vcpu: *mut bindings::kvm_vcpu) {
    locked(|b, p| b.nested_leave(p, Handle(kvm as usize), Handle(vcpu as usize)));
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.guest_page`.
unsafe extern "C" fn hps_rs_guest_page(kvm: *mut bindings::kvm, gfn: u64, pfn: u64) -> c_int {
    errno(
        locked(|b, p| b.guest_page(p, Handle(kvm as usize), gfn, pfn)).is_some_and(|r| r.is_err()),
    )
}

// ---------------------------------------------------------------------------------------------
// SPTE writes.

/// Checks and performs one SPTE write through `perform`; returns what the backend did.
fn spte_write(
    sptep: *mut u64,
    new: u64,
    level: c_int,
    gfn: Option<u64>,
    perform: impl FnOnce() -> Option<u64>,
) -> SpteOutcome {
    let pa = pa_of(sptep as *const c_void);
    let table = Pfn(pa >> 12);
    let index = ((pa & 0xfff) >> 3) as u16;
    let level = u8::try_from(level).ok().and_then(EptLevel::new);
    let mut perform = Some(perform);
    let outcome = locked(|b, p| {
        b.spte_write(p, table, index, level, EptEntry(new), gfn, || {
            perform.take().and_then(|f| f())
        })
    });
    match outcome {
        Some(o) => o,
        // Not initialised (cannot happen once registered): behave natively.
        None => match perform.take().and_then(|f| f()) {
            Some(_) => SpteOutcome::Written,
            None => SpteOutcome::NotWritten,
        },
    }
}

/// An SPTE that KVM handed to an op, accessed with the atomicity of KVM's own code: `READ_ONCE`
/// and `WRITE_ONCE` are relaxed loads and stores; `xchg()`, `try_cmpxchg64()` and
/// `atomic64_fetch_and()` are fully ordered read-modify-writes.
///
/// # Invariants
///
/// The reference is to a live SPTE that every other user (KVM, the CPU's page walker) accesses
/// only with single-copy-atomic 8-byte accesses.
struct Spte<'a>(&'a AtomicU64);

impl Spte<'_> {
    /// # Safety
    ///
    /// `p` is an 8-byte aligned SPTE of a KVM paging-structure page that stays allocated for
    /// `'a`, and KVM accesses it only atomically or with `READ_ONCE`/`WRITE_ONCE`.
    unsafe fn from_ptr<'a>(p: *mut u64) -> Spte<'a> {
        // SAFETY: the caller's guarantee is exactly what `AtomicU64::from_ptr` requires.
        Spte(unsafe { AtomicU64::from_ptr(p) })
    }

    fn read(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn write(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed)
    }

    fn xchg(&self, v: u64) -> u64 {
        self.0.swap(v, Ordering::SeqCst)
    }

    /// `try_cmpxchg64()`: on failure `old` becomes the current value.
    fn try_cmpxchg(&self, old: &mut u64, v: u64) -> bool {
        match self
            .0
            .compare_exchange(*old, v, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(current) => {
                *old = current;
                false
            }
        }
    }

    fn fetch_and(&self, mask: u64) -> u64 {
        self.0.fetch_and(mask, Ordering::SeqCst)
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.spte_xchg`; `sptep` is an SPTE of a KVM table.
unsafe extern "C" fn hps_rs_spte_xchg(
    sptep: *mut u64,
    new_spte: u64,
    level: c_int,
    gfn: u64,
) -> u64 {
    // SAFETY: KVM passes an SPTE of one of its tables, accessed as `Spte::from_ptr` requires.
    let spte = unsafe { Spte::from_ptr(sptep) };
    let mut old = 0;
    let outcome = spte_write(sptep, new_spte, level, Some(gfn), || {
        old = spte.xchg(new_spte);
        Some(old)
    });
    match outcome {
        SpteOutcome::Written | SpteOutcome::Audited => old,
        _ => spte.read(),
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.spte_store`; `sptep` is an SPTE of a KVM table.
unsafe extern "C" fn hps_rs_spte_store(sptep: *mut u64, new_spte: u64, level: c_int, gfn: u64) {
    // SAFETY: KVM passes an SPTE of one of its tables, accessed as `Spte::from_ptr` requires.
    let spte = unsafe { Spte::from_ptr(sptep) };
    spte_write(sptep, new_spte, level, Some(gfn), || {
        let old = spte.read();
        spte.write(new_spte);
        Some(old)
    });
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.spte_cmpxchg`; `sptep` is an SPTE of a KVM table
/// and `old_spte` is valid for reads and writes.
unsafe extern "C" fn hps_rs_spte_cmpxchg(
    sptep: *mut u64,
    old_spte: *mut u64,
    new_spte: u64,
    level: c_int,
    gfn: u64,
) -> bool {
    // SAFETY: KVM passes an SPTE of one of its tables, accessed as `Spte::from_ptr` requires.
    let spte = unsafe { Spte::from_ptr(sptep) };
    // SAFETY: `old_spte` is valid for reads and writes for the call (KVM's expected value).
    let old_spte = unsafe { &mut *old_spte };
    let outcome = spte_write(sptep, new_spte, level, Some(gfn), || {
        let expected = *old_spte;
        spte.try_cmpxchg(old_spte, new_spte).then_some(expected)
    });
    match outcome {
        SpteOutcome::Written | SpteOutcome::Audited => true,
        SpteOutcome::NotWritten => false,
        SpteOutcome::Refused => {
            // Refused: report the current value, as a concurrent change would.
            *old_spte = spte.read();
            false
        }
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.spte_and`; `sptep` is an SPTE of a KVM table.
unsafe extern "C" fn hps_rs_spte_and(sptep: *mut u64, mask: u64, level: c_int) -> u64 {
    // The verdict ignores A/D, so a snapshot is enough to check the result. An AND can only
    // name a frame the VM has already: no guest frame is given.
    // SAFETY: KVM passes an SPTE of one of its tables, accessed as `Spte::from_ptr` requires.
    let spte = unsafe { Spte::from_ptr(sptep) };
    let snap = spte.read();
    let mut old = 0;
    let outcome = spte_write(sptep, snap & mask, level, None, || {
        old = spte.fetch_and(mask);
        Some(old)
    });
    match outcome {
        SpteOutcome::Written | SpteOutcome::Audited => old,
        _ => spte.read(),
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.spte_xchg_batch`: `nr` consecutive SPTEs of one
/// table at `sptep`, `nr` slots at `old_sptes`.
unsafe extern "C" fn hps_rs_spte_xchg_batch(
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
        // SAFETY: `p` is an SPTE of KVM's table, accessed as `Spte::from_ptr` requires.
        let spte = unsafe { Spte::from_ptr(p) };
        let mut old = 0;
        let outcome = spte_write(p, new_spte, level, None, || {
            old = spte.xchg(new_spte);
            Some(old)
        });
        let v = match outcome {
            SpteOutcome::Written | SpteOutcome::Audited => old,
            _ => spte.read(),
        };
        // SAFETY: `o` is valid for writes, see above.
        unsafe { *o = v };
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.spte_fill`: `pt` is a whole table, not yet linked.
unsafe extern "C" fn hps_rs_spte_fill(pt: *mut u64, first_spte: u64, step: u64, level: c_int) {
    for i in 0..bindings::HYPERPS_SPTES_PER_TABLE as usize {
        let v = first_spte.wrapping_add((i as u64).wrapping_mul(step));
        // SAFETY: `pt` is a whole table of HYPERPS_SPTES_PER_TABLE entries.
        let p = unsafe { pt.add(i) };
        // SAFETY: `p` is an entry of the new table, which KVM does not touch until it is
        // linked.
        let spte = unsafe { Spte::from_ptr(p) };
        // The split's frames are those of the huge leaf, which the VM has: no guest frame.
        spte_write(p, v, level, None, || {
            let old = spte.read();
            spte.write(v);
            Some(old)
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Paging-structure pages and VMs.

/// # Safety
///
/// Called by the registry as `hyperps_ops.pt_alloc`.
unsafe extern "C" fn hps_rs_pt_alloc(
    kvm: *mut bindings::kvm,
    init_value: u64,
    gfp: bindings::gfp_t,
) -> *mut c_void {
    // Filling the page is also its scrub.
    // SAFETY: `hps_c_pt_page()` allocates and fills a new page; no precondition.
    let pt = unsafe { c::hps_c_pt_page(gfp, init_value) };
    if pt.is_null() {
        return pt;
    }
    let pfn = Pfn(pa_of(pt) >> 12);
    let accepted = locked(|b, p| b.pt_alloc(p, Handle(kvm as usize), pfn).is_ok());
    if accepted != Some(true) {
        // SAFETY: `pt` was allocated above and is not used.
        unsafe { c::hps_c_free_page(pt) };
        return core::ptr::null_mut();
    }
    pt
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.pt_free`, possibly from an RCU callback.
unsafe extern "C" fn hps_rs_pt_free(pt: *mut c_void) {
    let pfn = Pfn(pa_of(pt) >> 12);
    match locked(|b, p| b.pt_free(p, pfn)) {
        // SAFETY: the backend gave the page back: it came from `hps_rs_pt_alloc` and KVM is
        // done with it.
        Some(PtFree::Now) => unsafe { c::hps_c_free_page(pt) },
        Some(PtFree::Deferred) => kick_work(),
        _ => {}
    }
}

/// # Safety
///
/// Called from the module's work item, process context.
#[no_mangle]
unsafe extern "C" fn hps_rs_deferred_work() {
    let ready = locked(|b, p| {
        let ready = b.deferred_pass1();
        b.reap_zombies(p);
        ready
    })
    .unwrap_or(0);
    if ready == 0 {
        return;
    }
    // SAFETY: process context (work item), IRQs on.
    unsafe { c::hps_c_invept_all() };
    loop {
        let mut out = [Pfn(0); 64];
        let n = locked(|b, p| b.deferred_pass2(p, &mut out)).unwrap_or(0);
        for pfn in out.iter().take(n) {
            // SAFETY: the page was allocated by `hps_rs_pt_alloc`, freed by KVM, given back
            // by the backend and is no longer cached by any CPU (global INVEPT above).
            unsafe { c::hps_c_free_page(c::hps_c_va(pfn.0 << 12)) };
        }
        if n < out.len() {
            break;
        }
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.pt_root`.
unsafe extern "C" fn hps_rs_pt_root(kvm: *mut bindings::kvm, pt: *mut c_void, level: c_int) {
    let pfn = Pfn(pa_of(pt) >> 12);
    if let Some(level) = u8::try_from(level).ok().and_then(EptLevel::new) {
        locked(|b, p| b.pt_root(p, Handle(kvm as usize), pfn, level));
    }
}

fn memslot_of(s: &bindings::hyperps_memslot) -> crate::policy::backend::Memslot {
    crate::policy::backend::Memslot {
        as_id: s.as_id,
        id: s.id,
        flags: s.flags,
        base_gfn: s.base_gfn,
        npages: s.npages,
        hva: s.userspace_addr,
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.memslot_add`; `slot` is valid for the call.
unsafe extern "C" fn hps_rs_memslot_add(
    kvm: *mut bindings::kvm,
    slot: *const bindings::hyperps_memslot,
) -> c_int {
    // SAFETY: KVM passes a valid structure for the duration of the call.
    let slot = memslot_of(unsafe { &*slot });
    match locked(|b, p| b.memslot_add(p, Handle(kvm as usize), &slot)) {
        Some(Err(Denial::TableFull)) => -(bindings::ENOSPC as c_int),
        Some(Err(_)) => -(bindings::EPERM as c_int),
        _ => 0,
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.memslot_remove`; `slot` is valid for the call.
unsafe extern "C" fn hps_rs_memslot_remove(
    kvm: *mut bindings::kvm,
    slot: *const bindings::hyperps_memslot,
) {
    // SAFETY: KVM passes a valid structure for the duration of the call.
    let slot = memslot_of(unsafe { &*slot });
    locked(|b, p| b.memslot_remove(p, Handle(kvm as usize), &slot));
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vm_create`, in the VMM's context.
unsafe extern "C" fn hps_rs_vm_create(
    kvm: *mut bindings::kvm,
    _mm: *mut bindings::mm_struct,
) -> c_int {
    let r = locked(|b, p| b.vm_create(p, Handle(kvm as usize)));
    match r {
        Some(Ok(())) => {
            // The VMM's address space stays valid (not reused) while HyperPS names it.
            // SAFETY: the backend recorded `current->mm`, which is live in its own task.
            unsafe { c::hps_c_mm_grab(c::hps_c_current_mm()) };
            0
        }
        _ => -(bindings::EPERM as c_int),
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.vm_destroy`, process context.
unsafe extern "C" fn hps_rs_vm_destroy(kvm: *mut bindings::kvm) {
    let mm = locked(|b, p| b.vm_destroy(p, Handle(kvm as usize))).flatten();
    if let Some(mm) = mm {
        // SAFETY: grabbed by `hps_rs_vm_create` for a destroyed VM that the backend no longer
        // remembers; the backend hands each address space back once.
        unsafe { c::hps_c_mm_drop(mm.0) };
    }
    kick_work();
}

// ---------------------------------------------------------------------------------------------
// Host control registers: lock-free, any context.

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
            // SAFETY: reads a module variable.
            let enforced = unsafe { c::hps_c_enforce() };
            report(&Report {
                class,
                denial: d,
                subject: i as u64,
                old: 0,
                new: val,
                enforced,
            });
            c_int::from(enforced)
        }
    }
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.cr0_write`, any context.
unsafe extern "C" fn hps_rs_cr0_write(val: c_ulong) -> c_int {
    let val = val as u64;
    cr_verdict(0, CheckClass::Cr0, val, cr0_verdict(Cr0(val)))
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.cr3_write`, any context.
unsafe extern "C" fn hps_rs_cr3_write(val: c_ulong) -> c_int {
    let val = val as u64;
    let cr4 = live_cr4();
    let r = cr3_decode(
        Cr3(val),
        Cr4(cr4),
        PHYS_BITS.load(Ordering::Relaxed),
        crate::MAX_KERNEL_ASID,
        crate::HYPERPS_PCID,
    )
    .and_then(|(root, _)| {
        if cr3_root_known(root.0) {
            Ok(())
        } else {
            Err(Denial::Cr3UnknownRoot)
        }
    });
    cr_verdict(1, CheckClass::Cr3, val, r)
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.cr4_write`, any context.
unsafe extern "C" fn hps_rs_cr4_write(val: c_ulong) -> c_int {
    let val = val as u64;
    let r = cr4_write_verdict(
        Cr4(val),
        CR4_PINNED.load(Ordering::Relaxed),
        CR4_PCIDE.load(Ordering::Relaxed),
        vmx_on(this_cpu()),
    );
    cr_verdict(2, CheckClass::Cr4, val, r)
}

// ---------------------------------------------------------------------------------------------
// Host page-table roots.

/// # Safety
///
/// Called by the registry as `hyperps_ops.pgd_add`.
unsafe extern "C" fn hps_rs_pgd_add(pa: u64, nr_pages: c_uint) -> c_int {
    let first = Hpa(pa).pfn();
    let ok = locked(|b, p| b.pgd_add(p, first, nr_pages).is_ok()) == Some(true);
    if ok {
        set_cr3_roots(first.0, nr_pages, true);
    }
    errno(!ok)
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.pgd_remove`.
unsafe extern "C" fn hps_rs_pgd_remove(pa: u64, nr_pages: c_uint) {
    let first = Hpa(pa).pfn();
    set_cr3_roots(first.0, nr_pages, false);
    locked(|b, p| b.pgd_remove(p, first, nr_pages));
}

// ---------------------------------------------------------------------------------------------
// KSM and the page allocator.

/// # Safety
///
/// Called by the registry as `hyperps_ops.ksm_merge`, with the page-table lock held.
unsafe extern "C" fn hps_rs_ksm_merge(
    _mm: *mut bindings::mm_struct,
    addr: c_ulong,
    pfn: c_ulong,
    kpfn: c_ulong,
) -> c_int {
    let (addr, pfn, kpfn) = (addr as u64, Pfn(pfn as u64), Pfn(kpfn as u64));
    c_int::from(locked(|b, p| b.ksm_merge(p, addr, pfn, kpfn)) == Some(true))
}

/// # Safety
///
/// Called by the registry as `hyperps_ops.free_pages`, from the page allocator's free path
/// (any context but NMI).
unsafe extern "C" fn hps_rs_free_pages(pfn: c_ulong, order: c_uint) -> c_int {
    let pfn = pfn as u64;
    if order > MAX_FREE_ORDER {
        // Only a forged call gets here: the backend refuses it.
        return c_int::from(locked(|b, p| b.free_pages(p, Pfn(pfn), order)) != Some(false));
    }
    let count = 1u64 << order;
    if !any_tracked(pfn, count) {
        return 0;
    }
    c_int::from(locked(|b, p| b.free_pages(p, Pfn(pfn), order)) == Some(true))
}

// ---------------------------------------------------------------------------------------------
// debugfs.

/// Frames visited per lock hold by the census, so IRQs stay off only briefly.
const SCAN_CHUNK: u64 = 4096;

/// Counts the frames of RAM by owner, in chunks (a near snapshot, not an atomic one).
fn frame_census(out: &mut c::Stats) {
    let mut census = Census::default();
    let mut pfn = 0u64;
    loop {
        let next = locked(|b, _| {
            let end = b.census(pfn, SCAN_CHUNK, &mut census);
            (end, end < b.verifier().frame_count())
        });
        match next {
            Some((end, true)) => pfn = end,
            _ => break,
        }
    }
    out.frames_host = census.host;
    out.frames_vm = census.vm;
    out.frames_shared = census.shared;
    out.frames_protected = census.protected;
}

/// # Safety
///
/// Called by `hps_glue.c` (debugfs `vm_frames`) with `out` valid for `max` entries.
#[no_mangle]
unsafe extern "C" fn hps_rs_vm_frames(out: *mut c::VmFrame, max: u32) -> u32 {
    let Ok(max) = usize::try_from(max) else {
        return 0;
    };
    // SAFETY: the C caller passes an array valid for `max` entries.
    let out = unsafe { core::slice::from_raw_parts_mut(out, max) };
    let mut found = 0usize;
    let mut pfn = 0u64;
    let mut chunk = [(Pfn(0), VmId::from_raw(0), false, 0u64); 16];
    while found < out.len() {
        let r = locked(|b, _| {
            let (end, n) = b.vm_frames(pfn, SCAN_CHUNK, &mut chunk);
            (end, n, end < b.verifier().frame_count())
        });
        let Some((end, n, more)) = r else {
            break;
        };
        for (f, vm, live, maps) in chunk.iter().take(n) {
            if let Some(slot) = out.get_mut(found) {
                *slot = c::VmFrame {
                    pfn: f.0,
                    maps: *maps,
                    owner: vm.to_raw(),
                    live: u32::from(*live),
                };
                found = found.saturating_add(1);
            }
        }
        if !more {
            break;
        }
        pfn = end;
    }
    u32::try_from(found).unwrap_or(0)
}

/// # Safety
///
/// Called by `hps_glue.c` with a valid, writable `struct hps_stats`.
#[no_mangle]
unsafe extern "C" fn hps_rs_stats(out: *mut c::Stats) {
    // SAFETY: the C caller passes a valid, writable `struct hps_stats`.
    let out = unsafe { &mut *out };
    locked(|b, _| {
        for (i, class) in CheckClass::ALL.iter().enumerate() {
            let c = b.verifier().counters(*class);
            if let Some(v) = out.verified.get_mut(i) {
                *v = c.verified;
            }
            if let Some(r) = out.refused.get_mut(i) {
                *r = c.refused;
            }
        }
        out.anomalies = b.verifier().audit().anomalies();
        out.lost = b.verifier().audit().lost();
        out.deferred = b.deferred_count() as u64;
        out.leaked = b.leaked();
        out.leaf_writes = b.leaf_writes();
        out.vms = b.live_vms() as u64;
        out.vcpus = b.live_vcpus() as u64;
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
