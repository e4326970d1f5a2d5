// SPDX-License-Identifier: GPL-2.0

//! HyperPS: privilege separation for KVM hosts.
//!
//! The module checks that the CPU offers what HyperPS relies on (VMX with EPT and VPID),
//! builds the verifier over tables sized from the host, and registers the HyperPS hook ops
//! (`glue.rs`, with a small C half in `hps_glue.c`) as the last step of init. From then on
//! every VMCS write, EPT entry write, VMX instruction, paging-structure page and host control
//! register write that KVM and the kernel report is checked by the verifier core.

use kernel::prelude::*;

// `pub` so that the kernel's unreachable_pub lint sees the policy's API as reachable.
mod glue;
#[path = "../rust/verifier/src/policy/mod.rs"]
#[deny(unsafe_code)]
pub mod policy;
mod vmx_caps;

use core::sync::atomic::AtomicU64;
use glue::c;

use policy::backend::{
    Backend, BackendTables, MemslotRecord, PendingPt, VcpuSlot, VmSlot, MAX_GHOSTS, MAX_ZOMBIES,
};
use policy::{
    AuditRecord, Config, CpuRecord, EptLevel, FrameRecord, Pfn, RegionRecord, ShareRecord, Tables,
    VcpuRecord, Verifier, VmRecord, VmcsRecord, VpidRecord,
};

/// Version of hyperps.ko; reported at load time.
const HYPERPS_VERSION: &str = "0.2.0";

/// Highest kernel ASID (`TLB_NR_DYN_ASIDS` in 6.12).
pub(crate) const MAX_KERNEL_ASID: u16 = 6;
/// PCID reserved for the HyperPS Space; host `CR3` writes may never use it.
pub(crate) const HYPERPS_PCID: u16 = 0x7fe;

/// `IA32_VMX_EPT_VPID_CAP` bits used for the configuration.
const EPT_CAP_X_ONLY: u64 = 1 << 0;
const EPT_CAP_5LEVEL: u64 = 1 << 7;
const EPT_CAP_1G: u64 = 1 << 17;
const EPT_CAP_AD: u64 = 1 << 21;

module! {
    type: HyperPs,
    name: "hyperps",
    author: "The HyperPS developers",
    description: "HyperPS: verify VMCS, EPT and control-register writes of a KVM host",
    license: "GPL",
}

struct HyperPs;

/// Allocates a table of `n` records with vzalloc and initialises every record to `init`.
///
/// The memory is never freed: once the ops are registered the module is pinned.
fn alloc_table<T: Copy>(n: usize, init: T) -> Result<&'static mut [T]> {
    let size = n.checked_mul(core::mem::size_of::<T>()).ok_or(ENOMEM)?;
    if size == 0 {
        return Ok(&mut []);
    }
    // SAFETY: no precondition; vmalloc memory is page aligned, enough for any `T` here.
    let p = unsafe { c::hps_c_vzalloc(size) }.cast::<T>();
    if p.is_null() {
        return Err(ENOMEM);
    }
    for i in 0..n {
        // SAFETY: `p` points to `n` records of `T`; `i < n`.
        unsafe { p.add(i).write(init) };
    }
    // SAFETY: `p` points to `n` initialised records that nothing else references. The
    // allocation is freed only by `hps_c_free_tables()`, which init calls on failure after
    // every slice made here has been dropped; otherwise it lives as long as the (pinned) module.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, n) })
}

/// Allocates a zeroed bitmap of at least `bits` bits, as atomic words.
fn alloc_bitmap(bits: usize) -> Result<&'static [AtomicU64]> {
    let words = bits.div_ceil(64);
    let size = words
        .checked_mul(core::mem::size_of::<AtomicU64>())
        .ok_or(ENOMEM)?;
    // SAFETY: no precondition; vzalloc returns zeroed, page-aligned memory.
    let p = unsafe { c::hps_c_vzalloc(size) }.cast::<AtomicU64>();
    if p.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: `AtomicU64` has the size, alignment and bit validity of `u64`, and the memory is
    // `words` zeroed words that live as long as the module (see `alloc_table`).
    Ok(unsafe { core::slice::from_raw_parts(p, words) })
}

/// The verifier's configuration, read from the running host.
fn host_config(caps: &vmx_caps::VmxCaps) -> Config {
    let ept = caps.ept_vpid();
    // SAFETY: no precondition.
    let phys_addr_bits = unsafe { c::hps_c_phys_bits() };
    // SAFETY: no precondition (reads CR4 of this CPU).
    let cr4 = unsafe { c::hps_c_cr4() };
    Config {
        phys_addr_bits,
        ept_ad_bits: ept & EPT_CAP_AD != 0,
        ept_max_level: if ept & EPT_CAP_5LEVEL != 0 {
            EptLevel::L5
        } else {
            EptLevel::L4
        },
        ept_1g_pages: ept & EPT_CAP_1G != 0,
        ept_exec_only: ept & EPT_CAP_X_ONLY != 0,
        cr4_pinned: cr4 & policy::cr::CR4_PINNABLE,
        max_kernel_asid: MAX_KERNEL_ASID,
        hyperps_pcid: HYPERPS_PCID,
        msr_list_max: 8,
        cr4_pcide: cr4 & policy::cr::CR4_PCIDE != 0,
        exit_controls_required: if caps.exit_allowed(19) {
            policy::vmcs::EXIT_LOAD_PAT
        } else {
            0
        },
    }
}

/// Builds the verifier and the backend over freshly allocated tables and installs them. Kept
/// out of line so that the (large) records are never copied through `init`'s stack frame.
#[inline(never)]
fn build_backend(config: Config) -> Result {
    // SAFETY: no precondition.
    let frames = usize::try_from(unsafe { c::hps_c_max_pfn() }).map_err(|_| EINVAL)?;
    // SAFETY: no precondition.
    let cpus = unsafe { c::hps_c_nr_cpus() } as usize;
    let tables = Tables {
        frames: alloc_table(frames, FrameRecord::HOST)?,
        regions: alloc_table(Tables::regions_needed(frames), RegionRecord::EMPTY)?,
        vms: alloc_table(glue::MAX_VMS, VmRecord::FREE)?,
        vcpus: alloc_table(glue::MAX_VCPUS, VcpuRecord::FREE)?,
        vmcs: alloc_table(glue::MAX_VMCS, VmcsRecord::FREE)?,
        shares: alloc_table(glue::MAX_SHARES, ShareRecord::FREE)?,
        vpids: alloc_table(glue::NR_VPIDS, VpidRecord::FREE)?,
        cpus: alloc_table(cpus, CpuRecord::OFF)?,
        audit: alloc_table(glue::AUDIT_RING, AuditRecord::EMPTY)?,
    };
    let mut v = Verifier::new(config, tables).map_err(|d| {
        pr_err!("verifier rejected the host configuration: {:?}\n", d);
        EINVAL
    })?;
    let tracked = alloc_bitmap(frames)?;
    v.attach_tracked(tracked).map_err(|_| EINVAL)?;
    pr_info!(
        "{} frames ({} KiB of frame records), {} CPUs\n",
        frames,
        frames.saturating_mul(core::mem::size_of::<FrameRecord>()) / 1024,
        cpus
    );
    let backend_tables = BackendTables {
        pending: alloc_table(frames, PendingPt::NONE)?,
        vms: alloc_table(glue::MAX_VMS, VmSlot::FREE)?,
        vcpus: alloc_table(glue::MAX_VCPUS, VcpuSlot::FREE)?,
        memslots: alloc_table(glue::MAX_MEMSLOTS, MemslotRecord::FREE)?,
        deferred: alloc_table(glue::DEFER_MAX, None)?,
        zombies: alloc_table(MAX_ZOMBIES, None)?,
        ghosts: alloc_table(MAX_GHOSTS, None)?,
    };
    let mut backend = Backend::new(v, backend_tables).map_err(|_| EINVAL)?;
    // SAFETY: no precondition.
    let zero = unsafe { c::hps_c_zero_pfn() };
    if backend.set_zero_page(Pfn(zero)).is_err() {
        pr_warn!("cannot register the zero page {:#x}\n", zero);
    }
    glue::install(backend, tracked);
    Ok(())
}

impl kernel::Module for HyperPs {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("version {}\n", HYPERPS_VERSION);
        let caps = vmx_caps::VmxCaps::read_boot_cpu().inspect_err(|_| {
            pr_err!("cannot read the VMX capability MSRs: this CPU has no usable VMX\n");
        })?;
        caps.report();
        if let Some(missing) = caps.missing_requirement() {
            pr_err!("this CPU lacks {}, which HyperPS requires\n", missing);
            return Err(ENODEV);
        }
        let config = host_config(&caps);
        pr_info!("config {:?}\n", config);
        glue::set_cr_config(&config);
        build_backend(config).inspect_err(|_| {
            pr_err!("cannot allocate the verifier's tables\n");
            // SAFETY: `build_backend` failed, so no slice of the tables survives.
            unsafe { c::hps_c_free_tables() };
        })?;
        // Nothing may make HyperPS's own records anything else.
        // SAFETY: no precondition.
        let tables = unsafe { c::hps_c_table_count() };
        if let Err(e) = glue::protect_tables(tables) {
            pr_err!("cannot mark the verifier's tables as HyperPS pages\n");
            glue::uninstall();
            // SAFETY: the state that referenced the tables was dropped by `uninstall`.
            unsafe { c::hps_c_free_tables() };
            return Err(e);
        }
        // SAFETY: no precondition.
        unsafe { c::hps_c_init() };
        // Last step: from here on the module is pinned and every hook is live. The roots that
        // exist are reported during registration, the only time they are taken unchecked.
        glue::set_registering(true);
        // SAFETY: process context; the backend is installed.
        let ret = unsafe { c::hps_c_register() };
        glue::set_registering(false);
        if ret != 0 {
            if ret == EBUSY.to_errno() {
                pr_err!("kvm_intel is loaded or another backend is registered: load hyperps before kvm_intel\n");
            } else {
                pr_err!("hyperps_register_ops() failed: {}\n", ret);
            }
            // SAFETY: debugfs was set up above.
            unsafe { c::hps_c_exit() };
            glue::uninstall();
            // SAFETY: the state that referenced the tables was dropped by `uninstall`.
            unsafe { c::hps_c_free_tables() };
            return Err(Error::from_errno(ret));
        }
        Ok(HyperPs)
    }
}

impl Drop for HyperPs {
    fn drop(&mut self) {
        // Only reached if init failed after module!'s own setup; registered backends are
        // pinned.
        pr_info!("unloaded\n");
    }
}
