// SPDX-License-Identifier: GPL-2.0

//! VMs, vCPUs and their VMX pages; VMX instructions; VMCS writes; the MSR lists at VM entry.
//!
//! Lifecycle ops are checked against the backend's own records, never taken at their word:
//!
//! * a VM is created by its VMM, whose address space is recorded as the VM's; a vCPU, a
//!   memslot or nested VMX state is added only from that address space;
//! * a VM is destroyed only once it has no vCPU left;
//! * a VMCS page is given back only when it is the vmcs01 of a vCPU that KVM is freeing, or
//!   not (or no longer) a VMCS of a live vCPU; auxiliary pages likewise;
//! * a VMCS is made current only by the VM's VMM, or on a teardown path (a task without an
//!   address space, or a vCPU being freed), so that no other process writes a VM's state;
//! * pages become HyperPS pages only if the kernel allocated them for itself, never pages of
//!   a process.

use core::sync::atomic::{AtomicU64, Ordering};

use super::super::denial::{CheckClass, Denial};
use super::super::records::{AuxKind, AuxOwner, FrameState, Protected, VmcsKind};
use super::super::types::{CpuId, Hpa, PageSize, Pfn, VcpuId, VmId, VmcsField, Vpid, PAGE_SIZE};
use super::super::vmcs::{
    HostState, PIN_POSTED_INTR, POSTED_INTR_VECTOR, POSTED_INTR_WAKEUP_VECTOR,
    PRIMARY_ACTIVATE_SECONDARY, PRIMARY_ACTIVATE_TERTIARY, TERTIARY_IPI_VIRT,
};
use super::super::vmcs_fields::{field_policy, FieldPolicy, HostField};
use super::{Backend, FrameKind, Ghost, Handle, HostValue, Platform, Refusal};

/// A VM the backend knows, in the slot of its verifier id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmSlot {
    pub(super) id: Option<VmId>,
    pub(super) kvm: Handle,
    /// The address space of the VMM that created the VM.
    pub(super) mm: Handle,
    /// First entry of the VM's memslot list.
    pub(super) memslots: Option<u32>,
}

impl VmSlot {
    /// A free slot.
    pub const FREE: VmSlot = VmSlot {
        id: None,
        kvm: Handle::NONE,
        mm: Handle::NONE,
        memslots: None,
    };
}

/// The pages a vCPU registers when it is created, besides vmcs01.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct VcpuPages {
    msr_bitmap: Option<Pfn>,
    pml: Option<Pfn>,
    ve_info: Option<Pfn>,
    msr_lists: [Option<Pfn>; 2],
    virtual_apic: Option<Pfn>,
    /// The posted-interrupt descriptor, registered when a VMCS first names it.
    pi_desc: Option<Pfn>,
}

impl VcpuPages {
    const NONE: VcpuPages = VcpuPages {
        msr_bitmap: None,
        pml: None,
        ve_info: None,
        msr_lists: [None; 2],
        virtual_apic: None,
        pi_desc: None,
    };

    /// Every page, with its kind.
    fn all(&self) -> [(Option<Pfn>, AuxKind); 7] {
        [
            (self.msr_bitmap, AuxKind::MsrBitmap),
            (self.pml, AuxKind::Pml),
            (self.ve_info, AuxKind::VeInfo),
            (self.msr_lists[0], AuxKind::MsrList),
            (self.msr_lists[1], AuxKind::MsrList),
            (self.virtual_apic, AuxKind::VirtualApic),
            (self.pi_desc, AuxKind::PiDesc),
        ]
    }
}

/// A vCPU the backend knows, in the slot of its verifier id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VcpuSlot {
    pub(super) id: Option<VcpuId>,
    pub(super) vcpu: Handle,
    pub(super) kvm: Handle,
    pub(super) vm: Option<VmId>,
    vmcs01: Option<Pfn>,
    vmcs02: Option<Pfn>,
    shadow: Option<Pfn>,
    msr_bitmap02: Option<Pfn>,
    pages: VcpuPages,
    /// Address of the posted-interrupt descriptor, as reported at creation.
    pi_desc_pa: u64,
    vpid: Option<Vpid>,
    vpid02: Option<Vpid>,
    /// KVM is freeing the vCPU: its records go when vmcs01 is freed.
    dying: bool,
}

impl VcpuSlot {
    /// A free slot.
    pub const FREE: VcpuSlot = VcpuSlot {
        id: None,
        vcpu: Handle::NONE,
        kvm: Handle::NONE,
        vm: None,
        vmcs01: None,
        vmcs02: None,
        shadow: None,
        msr_bitmap02: None,
        pages: VcpuPages::NONE,
        pi_desc_pa: 0,
        vpid: None,
        vpid02: None,
        dying: false,
    };
}

/// A new vCPU, as `vcpu_create` reports it (physical addresses, 0 for none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VcpuInfo {
    /// The VM.
    pub kvm: Handle,
    /// The vCPU.
    pub vcpu: Handle,
    /// VPID of vmcs01, 0 if none.
    pub vpid: u16,
    /// vmcs01.
    pub vmcs01_pa: u64,
    /// vmcs01's MSR bitmap.
    pub msr_bitmap_pa: u64,
    /// PML buffer.
    pub pml_pa: u64,
    /// #VE information page.
    pub ve_info_pa: u64,
    /// Posted-interrupt descriptor.
    pub pi_desc_pa: u64,
    /// VM-entry MSR-load list.
    pub msr_autoload_guest_pa: u64,
    /// VM-exit MSR-load list.
    pub msr_autoload_host_pa: u64,
    /// The local APIC page (virtual-APIC page).
    pub virtual_apic_pa: u64,
}

/// Nested VMX state, as `nested_enter` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NestedInfo {
    /// The VM.
    pub kvm: Handle,
    /// The vCPU.
    pub vcpu: Handle,
    /// VPID for L2, 0 if none.
    pub vpid02: u16,
    /// vmcs02.
    pub vmcs02_pa: u64,
    /// vmcs02's MSR bitmap.
    pub vmcs02_msr_bitmap_pa: u64,
    /// vmcs01's shadow VMCS.
    pub shadow_vmcs_pa: u64,
}

/// The MSR lists of the current VMCS, read with VMREAD right before VM entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct MsrLists {
    /// `VM_ENTRY_MSR_LOAD_ADDR`.
    entry_load_addr: u64,
    /// `VM_EXIT_MSR_LOAD_ADDR`.
    exit_load_addr: u64,
    /// `VM_EXIT_MSR_STORE_ADDR`.
    exit_store_addr: u64,
    /// `VM_ENTRY_MSR_LOAD_COUNT`.
    entry_load_count: u32,
    /// `VM_EXIT_MSR_LOAD_COUNT`.
    exit_load_count: u32,
    /// `VM_EXIT_MSR_STORE_COUNT`.
    exit_store_count: u32,
    /// What a refused entry check is about, if not the VM-exit load list: the MSR that the
    /// bitmap passes through, the descriptor's address.
    subject: Option<u64>,
}

/// MSRs that KVM 6.12 switches through the MSR-load lists (`add_atomic_switch_msr()`): EFER
/// without the VMCS load controls, and the PMU MSRs of `perf_guest_get_msrs()`.
pub(super) const SWITCHED_MSRS: [u32; 5] = [
    0xc000_0080, // MSR_EFER
    0x0000_038f, // MSR_CORE_PERF_GLOBAL_CTRL
    0x0000_03f1, // MSR_IA32_PEBS_ENABLE
    0x0000_03f2, // MSR_PEBS_DATA_CFG
    0x0000_0600, // MSR_IA32_DS_AREA
];

/// The MSRs KVM 6.12 may let a guest access directly (`vmx_possible_passthrough_msrs` and the
/// x2APIC range), each only as far as nothing of the guest's reaches the host:
///
/// * FS/GS base, kernel GS base, SYSENTER: host values restored by the VMCS or by KVM;
/// * `SPEC_CTRL`: KVM restores the host's right after the exit; `PRED_CMD`, `FLUSH_CMD`:
///   write-only commands; `XFD`, `XFD_ERR`: switched with the FPU state;
/// * TSC and the C-state residency counters: read only;
/// * x2APIC: only with "virtualise x2APIC mode": TPR, other reads with APIC-register
///   virtualisation, and writes of EOI and self-IPI with virtual-interrupt delivery (the CPU
///   handles them in the virtual APIC; any other write would reach the host's APIC).
const fn msr_pass_through_allowed(msr: u32, write: bool, secondary: u32) -> bool {
    match msr {
        0xc000_0100..=0xc000_0102 | 0x174..=0x176 | 0x48 | 0x49 | 0x10b | 0x1c4 | 0x1c5 => true,
        0x10 | 0x660 | 0x3fc..=0x3fe => !write,
        0x800..=0x8ff if secondary & SECONDARY_VIRT_X2APIC != 0 => {
            if !write {
                // TPR reads come from the virtual APIC with x2APIC virtualisation alone.
                msr == 0x808 || secondary & SECONDARY_APIC_REGISTER_VIRT != 0
            } else {
                msr == 0x808
                    || (matches!(msr, 0x80b | 0x83f)
                        && secondary & SECONDARY_VIRTUAL_INTR_DELIVERY != 0)
            }
        }
        _ => false,
    }
}

/// `IA32_EFER`.
const MSR_EFER: u32 = 0xc000_0080;
/// VM-entry: load `IA32_EFER`.
const ENTRY_LOAD_EFER: u32 = 1 << 15;
/// VM-entry: load CET state.
const ENTRY_LOAD_CET: u32 = 1 << 20;
/// VM-exit: load `IA32_EFER`.
const EXIT_LOAD_EFER: u32 = 1 << 21;
/// VM-exit: load CET state.
const EXIT_LOAD_CET: u32 = 1 << 28;

/// The first MSR that word `n` of an MSR bitmap covers (its bit `b` is this MSR plus `b`): four
/// quarters of 128 words, reads of the low MSRs (0 on), reads of the high ones (0xc0000000
/// on), then the same for writes.
const fn word_first_msr(n: u64) -> u32 {
    let base = if (n / 128) % 2 == 1 {
        0xc000_0000u32
    } else {
        0
    };
    // n % 128 < 128, so the product fits in 13 bits.
    base | (((n % 128) as u32) << 6)
}

/// The bits of word `n` that may be clear (pass-through) with the secondary controls
/// `secondary`.
const fn allowed_word(n: u64, secondary: u32) -> u64 {
    let first = word_first_msr(n);
    let write = n >= 256;
    let mut mask = 0u64;
    let mut b = 0u32;
    while b < 64 {
        if msr_pass_through_allowed(first | b, write, secondary) {
            mask |= 1 << b;
        }
        b = b.wrapping_add(1);
    }
    mask
}

/// The AND of `words`, eight at a time (this runs over a whole MSR bitmap at every entry).
fn and_all(words: &[AtomicU64]) -> u64 {
    let load = |w: &AtomicU64| w.load(Ordering::Relaxed);
    let mut all = u64::MAX;
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        if let [a, b, c, d, e, f, g, h] = c {
            all &= load(a) & load(b) & load(c) & load(d) & load(e) & load(f) & load(g) & load(h);
        }
    }
    for w in chunks.remainder() {
        all &= load(w);
    }
    all
}

/// The secondary controls that change which MSRs may pass through; each combination of them
/// has its own row of [`ALLOWLIST_MASKS`].
const SECONDARY_MSR_CONTROLS: [u32; 3] = [
    SECONDARY_VIRT_X2APIC,
    SECONDARY_APIC_REGISTER_VIRT,
    SECONDARY_VIRTUAL_INTR_DELIVERY,
];

/// Number of combinations of [`SECONDARY_MSR_CONTROLS`].
const SECONDARY_MSR_COMBINATIONS: usize = 1 << SECONDARY_MSR_CONTROLS.len();

/// The secondary controls of combination `c` (bit `i` of `c` stands for
/// `SECONDARY_MSR_CONTROLS[i]`).
// Evaluated by the compiler, or with `i` below the array's length.
#[allow(clippy::indexing_slicing)]
const fn secondary_of_combination(c: usize) -> u32 {
    let mut secondary = 0u32;
    let mut i = 0usize;
    while i < SECONDARY_MSR_CONTROLS.len() {
        if c & (1 << i) != 0 {
            secondary |= SECONDARY_MSR_CONTROLS[i];
        }
        i = i.wrapping_add(1);
    }
    secondary
}

/// The row of [`ALLOWLIST_MASKS`] for the secondary controls `secondary` (the inverse of
/// [`secondary_of_combination`], spelled out: it runs at every VM entry).
fn combination_of(secondary: u32) -> usize {
    usize::from(secondary & SECONDARY_VIRT_X2APIC != 0)
        | usize::from(secondary & SECONDARY_APIC_REGISTER_VIRT != 0) << 1
        | usize::from(secondary & SECONDARY_VIRTUAL_INTR_DELIVERY != 0) << 2
}

/// Number of MSR-bitmap words in which some secondary controls allow a clear bit (allowing is
/// monotone in the controls, so all of them set gives every such word).
const ALLOWLIST_LEN: usize = {
    let all = secondary_of_combination(SECONDARY_MSR_COMBINATIONS - 1);
    let mut count = 0usize;
    let mut n = 0u64;
    while n < 512 {
        if allowed_word(n, all) != 0 {
            count = count.wrapping_add(1);
        }
        n = n.wrapping_add(1);
    }
    count
};

/// Those words, in order, built at compile time: every other word must be all ones, which the
/// entry check tests with one AND per word.
// Evaluated by the compiler: an index out of range would fail the build, never panic.
#[allow(clippy::indexing_slicing)]
const ALLOWLIST_WORDS: [u16; ALLOWLIST_LEN] = {
    let all = secondary_of_combination(SECONDARY_MSR_COMBINATIONS - 1);
    let mut t = [0u16; ALLOWLIST_LEN];
    let mut i = 0usize;
    let mut n = 0u16;
    while n < 512 {
        if allowed_word(n as u64, all) != 0 {
            t[i] = n;
            i = i.wrapping_add(1);
        }
        n = n.wrapping_add(1);
    }
    t
};

/// The allowed bits of each of [`ALLOWLIST_WORDS`], one row per combination of the secondary
/// controls: the entry check reads the whole bitmap at every entry, so it must not work out a
/// word's mask from the MSR list there.
// Evaluated by the compiler: an index out of range would fail the build, never panic.
#[allow(clippy::indexing_slicing)]
const ALLOWLIST_MASKS: [[u64; ALLOWLIST_LEN]; SECONDARY_MSR_COMBINATIONS] = {
    let mut t = [[0u64; ALLOWLIST_LEN]; SECONDARY_MSR_COMBINATIONS];
    let mut c = 0usize;
    while c < SECONDARY_MSR_COMBINATIONS {
        let mut i = 0usize;
        while i < ALLOWLIST_LEN {
            t[c][i] = allowed_word(ALLOWLIST_WORDS[i] as u64, secondary_of_combination(c));
            i = i.wrapping_add(1);
        }
        c = c.wrapping_add(1);
    }
    t
};

/// Primary: use MSR bitmaps.
const PRIMARY_USE_MSR_BITMAPS: u32 = 1 << 28;
/// Secondary: virtualise x2APIC mode.
const SECONDARY_VIRT_X2APIC: u32 = 1 << 4;
/// Secondary: APIC-register virtualisation.
const SECONDARY_APIC_REGISTER_VIRT: u32 = 1 << 8;
/// Secondary: virtual-interrupt delivery.
const SECONDARY_VIRTUAL_INTR_DELIVERY: u32 = 1 << 9;

/// Posted-interrupt descriptor control word: suppress notification.
const PI_CONTROL_SN: u64 = 1 << 1;
/// PID-pointer table entry: valid.
const PID_ENTRY_VALID: u64 = 1;
/// PID-pointer table entry: descriptor address (bits 51:6).
const PID_ENTRY_ADDR: u64 = 0x000f_ffff_ffff_ffc0;
/// Highest PID-table index KVM uses (`KVM_MAX_VCPU_IDS` - 1).
const PID_TABLE_MAX_INDEX: u64 = 4095;

/// Bytes of one MSR-list entry.
const MSR_ENTRY_BYTES: u64 = 16;

/// A page to register for a new vCPU or nested state.
#[derive(Clone, Copy)]
enum NewPage {
    Vmcs(Pfn, VmcsKind),
    Aux(Pfn, AuxKind),
}

impl<'a> Backend<'a> {
    // --- VMs --------------------------------------------------------------------------------

    /// `vm_create`: the current task creates the VM `kvm`. Its address space becomes the VM's
    /// VMM.
    pub fn vm_create(&mut self, p: &mut impl Platform, kvm: Handle) -> Result<(), Denial> {
        let mm = p.current_mm();
        let verdict = if kvm.is_none() {
            Err(Denial::UnknownVm)
        } else if self.vm_of(kvm).is_some() {
            Err(Denial::DuplicateHandle)
        } else if mm.is_none() {
            Err(Denial::WrongContext)
        } else if !self.v.vm_slot_free() {
            Err(Denial::TableFull)
        } else {
            Ok(())
        };
        if let Err(d) = verdict {
            return Err(self.refuse_registration(p, d, kvm.0 as u64, Handle::NONE));
        }
        let id = match self.v.create_vm() {
            Ok(id) => id,
            Err(d) => return Err(self.refuse_registration(p, d, kvm.0 as u64, Handle::NONE)),
        };
        match self.vms.get_mut(usize::from(id.slot())) {
            Some(s) => {
                *s = VmSlot {
                    id: Some(id),
                    kvm,
                    mm,
                    memslots: None,
                }
            }
            None => Self::anomaly(p, Denial::TableFull, kvm.0 as u64),
        }
        Ok(())
    }

    /// `vm_destroy`: KVM has freed the VM's vCPUs and is done with it. Refused while any vCPU
    /// of the VM is still recorded. The frames the VM owns stay its (orphaned) until the
    /// kernel frees them or the same VMM maps them into its next VM; its paging-structure
    /// pages go as KVM frees them. The VMM is remembered for that, with the reference to its
    /// address space that `vm_create` took; returns the address space of the oldest VMM
    /// forgotten to make room, whose reference the kernel side may drop now.
    pub fn vm_destroy(&mut self, p: &mut impl Platform, kvm: Handle) -> Option<Handle> {
        let vm = self.vm_of(kvm)?;
        if self
            .vcpus
            .iter()
            .any(|s| s.id.is_some() && s.vm == Some(vm))
        {
            let d = self.deny(CheckClass::Registration, Denial::VmBusy, kvm.0 as u64, 0, 0);
            self.refuse_registration(p, d, kvm.0 as u64, Handle::NONE);
            return None;
        }
        self.drop_memslots(vm);
        self.deferred_pass1();
        let mm = self.vm_slot(vm).map(|s| s.mm);
        if let Some(s) = self.vm_slot_mut(vm) {
            *s = VmSlot::FREE;
        }
        if self.v.vm_ept_pages(vm).unwrap_or(0) != 0 {
            // KVM frees the last roots after an RCU grace period: destroy the record then.
            match self.zombies.iter_mut().find(|z| z.is_none()) {
                Some(z) => *z = Some(vm),
                None => Self::anomaly(p, Denial::TableFull, kvm.0 as u64),
            }
        } else if let Err(d) = self.v.destroy_vm(vm) {
            Self::anomaly(p, d, kvm.0 as u64);
        }
        let mm = mm?;
        let slot = self.ghosts.get_mut(self.ghost_next)?;
        let forgotten = slot.replace(Ghost { vm, mm }).map(|g| g.mm);
        let next = self.ghost_next.saturating_add(1);
        self.ghost_next = if next < self.ghosts.len() { next } else { 0 };
        forgotten
    }

    /// Destroys the VM records of destroyed VMs whose EPT pages are all gone.
    pub fn reap_zombies(&mut self, p: &mut impl Platform) {
        for i in 0..self.zombies.len() {
            let Some(Some(vm)) = self.zombies.get(i).copied() else {
                continue;
            };
            if self.v.vm_ept_pages(vm).unwrap_or(0) != 0 {
                continue;
            }
            if let Err(d) = self.v.destroy_vm(vm) {
                if d != Denial::UnknownVm {
                    Self::anomaly(p, d, u64::from(vm.to_raw()));
                }
            }
            if let Some(z) = self.zombies.get_mut(i) {
                *z = None;
            }
        }
    }

    fn refuse_registration(
        &mut self,
        p: &mut impl Platform,
        d: Denial,
        subject: u64,
        kvm: Handle,
    ) -> Denial {
        self.refuse(
            p,
            Refusal {
                class: CheckClass::Registration,
                denial: d,
                subject,
                old: 0,
                new: 0,
                kvm,
                value_write: false,
            },
        );
        d
    }

    // --- Pages of VMX -----------------------------------------------------------------------

    /// Whether `pfn` may become a HyperPS page: a page the kernel allocated for itself (or a
    /// clean pool page), or already the auxiliary page of `owner` it is to be.
    fn page_verdict(&self, p: &impl Platform, new: NewPage, owner: AuxOwner) -> Result<(), Denial> {
        let pfn = match new {
            NewPage::Vmcs(pfn, _) | NewPage::Aux(pfn, _) => pfn,
        };
        if let NewPage::Aux(_, kind) = new {
            if let Some(FrameState::Protected(Protected::Aux {
                owner: o, kind: k, ..
            })) = self.v.frame_state(pfn)
            {
                return if o == owner && k == kind {
                    Ok(())
                } else {
                    Err(Denial::WrongState)
                };
            }
        }
        self.fresh_page_verdict(p, pfn)
    }

    /// Whether `pfn` may become a new HyperPS page: a clean pool page, or a host page that the
    /// kernel allocated for itself and maps into no process.
    fn fresh_page_verdict(&self, p: &impl Platform, pfn: Pfn) -> Result<(), Denial> {
        match self.v.frame_state(pfn) {
            None => Err(Denial::FrameOutOfRange),
            Some(FrameState::Host) if p.frame_kind(pfn) != FrameKind::Kernel => {
                Err(Denial::UserFrame)
            }
            Some(_) if self.v.can_protect(pfn) => Ok(()),
            Some(_) => Err(Denial::WrongState),
        }
    }

    /// Registers a page whose [`Backend::page_verdict`] passed.
    fn register_page(&mut self, new: NewPage, vcpu: VcpuId, owner: AuxOwner) -> Result<(), Denial> {
        match new {
            NewPage::Vmcs(pfn, kind) => {
                if self.v.frame_state(pfn) == Some(FrameState::Host) {
                    self.v.protect(pfn)?;
                }
                self.v.register_vmcs(vcpu, pfn, kind)
            }
            NewPage::Aux(pfn, kind) => {
                if let Some(FrameState::Protected(Protected::Aux { .. })) = self.v.frame_state(pfn)
                {
                    return Ok(());
                }
                if self.v.frame_state(pfn) == Some(FrameState::Host) {
                    self.v.protect(pfn)?;
                }
                self.v.register_aux_page(owner, pfn, kind)
            }
        }
    }

    /// `page_alloc`: KVM allocated a VMCS, VMXON region or MSR bitmap page. Only a page the
    /// kernel allocated for itself becomes a HyperPS page.
    pub fn page_alloc(&mut self, p: &mut impl Platform, pa: u64) -> Result<(), Denial> {
        let pfn = Hpa(pa).pfn();
        match self.v.frame_state(pfn) {
            Some(FrameState::Protected(Protected::Pool { .. })) if self.v.can_protect(pfn) => {
                return Ok(())
            }
            Some(FrameState::Host) if p.frame_kind(pfn) == FrameKind::Kernel => {}
            Some(FrameState::Host) => {
                let d = self.deny(CheckClass::Registration, Denial::UserFrame, pa, 0, 0);
                return Err(self.refuse_registration(p, d, pa, Handle::NONE));
            }
            _ => {
                let d = self.deny(CheckClass::Registration, Denial::WrongState, pa, 0, 0);
                return Err(self.refuse_registration(p, d, pa, Handle::NONE));
            }
        }
        self.v
            .protect(pfn)
            .map_err(|d| self.refuse_registration(p, d, pa, Handle::NONE))
    }

    /// `page_free`: KVM is about to free a VMX page. Returns true if the page must stay
    /// allocated: a VMCS that is active, linked or the vmcs01 of a vCPU that is not being
    /// freed; an auxiliary page still named or of a live vCPU; anything that is not a VMX
    /// page of HyperPS's (a VM's frame, an EPT page).
    pub fn page_free(&mut self, p: &mut impl Platform, pa: u64) -> bool {
        let pfn = Hpa(pa).pfn();
        let verdict = self.page_free_verdict(pfn);
        if let Err(d) = verdict {
            let d = self.deny(CheckClass::Registration, d, pa, 0, 0);
            self.refuse_registration(p, d, pa, Handle::NONE);
            return true;
        }
        match self.v.frame_state(pfn) {
            Some(FrameState::Protected(Protected::Vmcs { .. })) => {
                let owner = self.v.vmcs_owner(pfn);
                if let Err(d) = self.v.unregister_vmcs(pfn) {
                    Self::anomaly(p, d, pa);
                    return true;
                }
                if let Some((vcpu, _, kind)) = owner {
                    self.forget_vmcs(p, vcpu, pfn, kind);
                }
            }
            Some(FrameState::Protected(Protected::Vmxon { cpu })) => {
                if let Err(d) = self.v.unregister_vmxon(cpu) {
                    Self::anomaly(p, d, pa);
                    return true;
                }
            }
            Some(FrameState::Protected(Protected::Aux { .. })) => {
                if let Err(d) = self.v.unregister_aux_page(pfn) {
                    Self::anomaly(p, d, pa);
                    return true;
                }
            }
            _ => {}
        }
        self.give_back(p, pfn, true);
        false
    }

    fn page_free_verdict(&self, pfn: Pfn) -> Result<(), Denial> {
        match self.v.frame_state(pfn) {
            None | Some(FrameState::Host) => Ok(()),
            Some(FrameState::Protected(Protected::Pool { .. })) => Ok(()),
            Some(FrameState::Protected(Protected::Vmcs { .. })) => {
                if self.v.vmcs_active_cpu(pfn).is_some() {
                    return Err(Denial::VmcsInUse);
                }
                let Some((vcpu, _, kind)) = self.v.vmcs_owner(pfn) else {
                    return Err(Denial::UnknownVmcs);
                };
                match self.vcpu_slot(vcpu) {
                    // vmcs01 goes last, once KVM frees the vCPU.
                    Some(s) if kind == VmcsKind::Vmcs01 && !s.dying => Err(Denial::VcpuBusy),
                    // vmcs02 and the shadow VMCS go after nested_leave().
                    Some(s) if s.vmcs02 == Some(pfn) || s.shadow == Some(pfn) => {
                        Err(Denial::VcpuBusy)
                    }
                    _ => Ok(()),
                }
            }
            Some(FrameState::Protected(Protected::Vmxon { cpu })) => {
                if self.v.vmx_on(cpu) {
                    Err(Denial::BadVmxon)
                } else {
                    Ok(())
                }
            }
            Some(FrameState::Protected(Protected::Aux { owner, refs, .. })) => {
                if refs != 0 {
                    return Err(Denial::PageInUse);
                }
                match owner {
                    AuxOwner::Vcpu(v) => match self.vcpu_slot(v) {
                        Some(s) if !s.dying && s.pages.msr_bitmap == Some(pfn) => {
                            Err(Denial::VcpuBusy)
                        }
                        Some(s) if s.msr_bitmap02 == Some(pfn) => Err(Denial::VcpuBusy),
                        _ => Ok(()),
                    },
                    _ => Ok(()),
                }
            }
            Some(_) => Err(Denial::ProtectedFree),
        }
    }

    /// Gives a clean pool page back to the host, scrubbed first if it is a whole page of
    /// HyperPS's (a VMCS holds a guest's registers, an EPT page its host frames, the
    /// virtual-APIC page its APIC): the host, and through it another VM, may get it next.
    /// Pages that hold only part of a kernel object (the MSR lists inside `vcpu_vmx`) are
    /// left alone.
    pub(super) fn give_back(&mut self, p: &mut impl Platform, pfn: Pfn, scrub: bool) {
        if let Some(FrameState::Protected(Protected::Pool { .. })) = self.v.frame_state(pfn) {
            if scrub {
                p.scrub(pfn);
            }
            if let Err(d) = self.v.unprotect(pfn) {
                Self::anomaly(p, d, pfn.0);
            }
        }
    }

    /// Records that a VMCS of `vcpu` was freed; vmcs01 of a vCPU being freed takes the vCPU
    /// with it.
    fn forget_vmcs(&mut self, p: &mut impl Platform, vcpu: VcpuId, pfn: Pfn, kind: VmcsKind) {
        let Some(s) = self.vcpu_slot_mut(vcpu) else {
            return;
        };
        match kind {
            VmcsKind::Vmcs01 => {
                if s.dying {
                    self.vcpu_gone(p, vcpu);
                }
            }
            VmcsKind::Vmcs02 => {
                if s.vmcs02 == Some(pfn) {
                    s.vmcs02 = None;
                }
            }
            VmcsKind::Shadow => {
                if s.shadow == Some(pfn) {
                    s.shadow = None;
                }
            }
        }
    }

    // --- vCPUs ------------------------------------------------------------------------------

    /// `vcpu_create`: a vCPU of `info.kvm` was created with these pages. Every page must be a
    /// page the kernel allocated for itself; the VPID must be free (the caller did a global
    /// INVVPID just before if `invvpid_done`). Nothing is registered unless all of it is
    /// accepted.
    pub fn vcpu_create(
        &mut self,
        p: &mut impl Platform,
        info: &VcpuInfo,
        invvpid_done: bool,
    ) -> Result<(), Denial> {
        let pages = Self::vcpu_pages(info);
        if let Err(d) = self.vcpu_create_verdict(p, info, &pages, invvpid_done) {
            // KVM fails the creation; the VM itself may live on.
            let d = self.deny(CheckClass::Registration, d, info.vmcs01_pa, 0, 0);
            return Err(self.refuse_registration(p, d, info.vmcs01_pa, Handle::NONE));
        }
        let Some(vm) = self.vm_of(info.kvm) else {
            return Err(Denial::UnknownVm);
        };
        let id = match self.v.create_vcpu(vm) {
            Ok(id) => id,
            Err(d) => return Err(self.refuse_registration(p, d, info.vmcs01_pa, info.kvm)),
        };
        let mut slot = VcpuSlot {
            id: Some(id),
            vcpu: info.vcpu,
            kvm: info.kvm,
            vm: Some(vm),
            pi_desc_pa: info.pi_desc_pa,
            ..VcpuSlot::FREE
        };
        let mut failed = None;
        if info.vpid != 0 {
            if invvpid_done {
                self.v.note_invvpid_global();
            }
            match self.v.assign_vpid(id, Vpid(info.vpid)) {
                Ok(()) => slot.vpid = Some(Vpid(info.vpid)),
                Err(d) => failed = Some(d),
            }
        }
        let owner = AuxOwner::Vcpu(id);
        for (new, _) in pages.iter().flatten() {
            if failed.is_some() {
                break;
            }
            match self.register_page(*new, id, owner) {
                Ok(()) => Self::note_page(&mut slot, *new),
                Err(d) => failed = Some(d),
            }
        }
        if let Some(s) = self.vcpus.get_mut(usize::from(id.slot())) {
            *s = slot;
        }
        if let Some(d) = failed {
            // The checks above passed, so this is a bug; undo what was done.
            Self::anomaly(p, d, info.vmcs01_pa);
            if let Some(s) = self.vcpu_slot_mut(id) {
                s.dying = true;
            }
            self.vcpu_gone(p, id);
            return Err(d);
        }
        Ok(())
    }

    /// The pages of a new vCPU, vmcs01 first. Entries that name no page are `None`.
    fn vcpu_pages(info: &VcpuInfo) -> [Option<(NewPage, u64)>; 7] {
        let page =
            |pa: u64, kind: AuxKind| (pa != 0).then(|| (NewPage::Aux(Hpa(pa).pfn(), kind), pa));
        [
            Some((
                NewPage::Vmcs(Hpa(info.vmcs01_pa).pfn(), VmcsKind::Vmcs01),
                info.vmcs01_pa,
            )),
            page(info.msr_bitmap_pa, AuxKind::MsrBitmap),
            page(info.pml_pa, AuxKind::Pml),
            page(info.ve_info_pa, AuxKind::VeInfo),
            page(info.msr_autoload_guest_pa, AuxKind::MsrList),
            page(info.msr_autoload_host_pa, AuxKind::MsrList),
            page(info.virtual_apic_pa, AuxKind::VirtualApic),
        ]
    }

    fn note_page(slot: &mut VcpuSlot, new: NewPage) {
        match new {
            NewPage::Vmcs(pfn, VmcsKind::Vmcs01) => slot.vmcs01 = Some(pfn),
            NewPage::Vmcs(pfn, VmcsKind::Vmcs02) => slot.vmcs02 = Some(pfn),
            NewPage::Vmcs(pfn, VmcsKind::Shadow) => slot.shadow = Some(pfn),
            NewPage::Aux(pfn, kind) => {
                let p = &mut slot.pages;
                match kind {
                    AuxKind::MsrBitmap => p.msr_bitmap = Some(pfn),
                    AuxKind::Pml => p.pml = Some(pfn),
                    AuxKind::VeInfo => p.ve_info = Some(pfn),
                    AuxKind::MsrList => {
                        if p.msr_lists[0].is_none() {
                            p.msr_lists[0] = Some(pfn);
                        } else if p.msr_lists[0] != Some(pfn) {
                            p.msr_lists[1] = Some(pfn);
                        }
                    }
                    AuxKind::VirtualApic => p.virtual_apic = Some(pfn),
                    AuxKind::PiDesc => p.pi_desc = Some(pfn),
                    _ => {}
                }
            }
        }
    }

    fn vcpu_create_verdict(
        &self,
        p: &impl Platform,
        info: &VcpuInfo,
        pages: &[Option<(NewPage, u64)>; 7],
        invvpid_done: bool,
    ) -> Result<(), Denial> {
        let vm = self.vm_of(info.kvm).ok_or(Denial::UnknownVm)?;
        if !self.in_vmm_of(p, vm) {
            return Err(Denial::WrongContext);
        }
        if info.vcpu.is_none() || self.vcpu_index(info.vcpu).is_some() {
            return Err(Denial::DuplicateHandle);
        }
        if !self.v.vcpu_slot_free() || !self.v.vmcs_slots_free(1) {
            return Err(Denial::TableFull);
        }
        if info.vpid != 0 {
            // A VPID released since the last global INVVPID is assignable right after one.
            let free = self.v.vpid_assignable(Vpid(info.vpid))
                || (invvpid_done && self.v.vpid_owner(Vpid(info.vpid)).is_none() && info.vpid != 0);
            if !free {
                return Err(Denial::BadVpid);
            }
        }
        if info.vmcs01_pa.checked_rem(PAGE_SIZE) != Some(0) {
            return Err(Denial::BadAddress);
        }
        // A new vCPU has no pages yet: each must be fresh, and two may share a frame only if
        // they are of one kind (the two MSR-load lists live in one structure).
        let mut seen: [Option<(Pfn, Option<AuxKind>)>; 7] = [None; 7];
        for (i, (new, _)) in pages.iter().flatten().enumerate() {
            let (pfn, kind) = match *new {
                NewPage::Vmcs(pfn, _) => (pfn, None),
                NewPage::Aux(pfn, kind) => (pfn, Some(kind)),
            };
            match seen.iter().flatten().find(|(s, _)| *s == pfn) {
                Some((_, k)) if kind.is_some() && kind == *k => {}
                Some(_) => return Err(Denial::WrongState),
                None => self.fresh_page_verdict(p, pfn)?,
            }
            if let Some(s) = seen.get_mut(i) {
                *s = Some((pfn, kind));
            }
        }
        Ok(())
    }

    /// `vcpu_free`: KVM starts freeing the vCPU. Its records stay until its vmcs01 is freed
    /// (KVM still loads it to leave nested operation); its VPIDs are released then too. Only
    /// the VM's VMM or its teardown may start that.
    pub fn vcpu_free(&mut self, p: &mut impl Platform, kvm: Handle, vcpu: Handle) {
        let Some(i) = self.vcpu_index(vcpu) else {
            return;
        };
        let Some(s) = self.vcpus.get(i).copied() else {
            return;
        };
        let Some(vm) = s.vm else {
            return;
        };
        if s.kvm != kvm || !self.in_teardown_of(p, vm) {
            let d = self.deny(
                CheckClass::Registration,
                Denial::WrongContext,
                vcpu.0 as u64,
                0,
                0,
            );
            self.refuse_registration(p, d, vcpu.0 as u64, Handle::NONE);
            return;
        }
        if let Some(s) = self.vcpus.get_mut(i) {
            s.dying = true;
        }
    }

    /// The vmcs01 of a vCPU being freed is gone: withdraw the vCPU's pages, VPIDs and record.
    /// Its other VMCSs were freed before vmcs01, so nothing names the pages any more.
    fn vcpu_gone(&mut self, p: &mut impl Platform, id: VcpuId) {
        let Some(s) = self.vcpu_slot(id).copied() else {
            return;
        };
        for (pfn, kind) in s.pages.all() {
            let Some(pfn) = pfn else {
                continue;
            };
            let whole_page = !matches!(kind, AuxKind::MsrList | AuxKind::PiDesc);
            if let Some(FrameState::Protected(Protected::Aux {
                owner: AuxOwner::Vcpu(o),
                ..
            })) = self.v.frame_state(pfn)
            {
                if o == id {
                    match self.v.unregister_aux_page(pfn) {
                        Ok(()) => self.give_back(p, pfn, whole_page),
                        Err(d) => Self::anomaly(p, d, pfn.0),
                    }
                }
            }
        }
        if let Some(pfn) = s.msr_bitmap02 {
            if self.v.unregister_aux_page(pfn).is_ok() {
                self.give_back(p, pfn, true);
            }
        }
        for vpid in [s.vpid, s.vpid02].into_iter().flatten() {
            if let Err(d) = self.v.release_vpid(id, vpid) {
                Self::anomaly(p, d, u64::from(vpid.0));
            }
        }
        // vmcs01's own page goes back to the pool in page_free(); the MSR bitmap and the
        // other pages were given back above.
        if let Err(d) = self.v.destroy_vcpu(id) {
            Self::anomaly(p, d, u64::from(id.to_raw()));
        }
        if let Some(slot) = self.vcpus.get_mut(usize::from(id.slot())) {
            *slot = VcpuSlot::FREE;
        }
        self.reap_zombies(p);
    }

    /// `nested_enter`: L1 of the vCPU entered VMX operation; register vmcs02, its MSR bitmap,
    /// the shadow VMCS and vpid02. Only from the VM's VMM, and all or nothing.
    pub fn nested_enter(
        &mut self,
        p: &mut impl Platform,
        info: &NestedInfo,
        invvpid_done: bool,
    ) -> Result<(), Denial> {
        let verdict = self.nested_verdict(p, info, invvpid_done);
        let (id, pages) = match verdict {
            Ok(v) => v,
            Err(d) => {
                let d = self.deny(CheckClass::Registration, d, info.vmcs02_pa, 0, 0);
                return Err(self.refuse_registration(p, d, info.vmcs02_pa, info.kvm));
            }
        };
        let owner = AuxOwner::Vcpu(id);
        let Some(mut slot) = self.vcpu_slot(id).copied() else {
            return Err(Denial::UnknownVcpu);
        };
        if info.vpid02 != 0 && slot.vpid02 != Some(Vpid(info.vpid02)) {
            if invvpid_done {
                self.v.note_invvpid_global();
            }
            if let Some(old) = slot.vpid02 {
                if let Err(d) = self.v.release_vpid(id, old) {
                    Self::anomaly(p, d, u64::from(old.0));
                }
            }
            match self.v.assign_vpid(id, Vpid(info.vpid02)) {
                Ok(()) => slot.vpid02 = Some(Vpid(info.vpid02)),
                Err(d) => Self::anomaly(p, d, u64::from(info.vpid02)),
            }
        }
        for new in pages.into_iter().flatten() {
            match new {
                NewPage::Vmcs(pfn, kind) if self.v.vmcs_kind(pfn) == Some(kind) => {}
                _ => match self.register_page(new, id, owner) {
                    Ok(()) => {}
                    Err(d) => {
                        Self::anomaly(p, d, info.vmcs02_pa);
                        continue;
                    }
                },
            }
            match new {
                NewPage::Aux(pfn, AuxKind::MsrBitmap) => slot.msr_bitmap02 = Some(pfn),
                other => Self::note_page(&mut slot, other),
            }
        }
        if let Some(s) = self.vcpu_slot_mut(id) {
            *s = slot;
        }
        Ok(())
    }

    fn nested_verdict(
        &self,
        p: &impl Platform,
        info: &NestedInfo,
        invvpid_done: bool,
    ) -> Result<(VcpuId, [Option<NewPage>; 3]), Denial> {
        let i = self.vcpu_index(info.vcpu).ok_or(Denial::UnknownVcpu)?;
        let s = *self.vcpus.get(i).ok_or(Denial::UnknownVcpu)?;
        let id = s.id.ok_or(Denial::UnknownVcpu)?;
        let vm = s.vm.ok_or(Denial::UnknownVm)?;
        if s.kvm != info.kvm || s.dying {
            return Err(Denial::UnknownVcpu);
        }
        if !self.in_vmm_of(p, vm) {
            return Err(Denial::WrongContext);
        }
        if info.vpid02 != 0
            && s.vpid02 != Some(Vpid(info.vpid02))
            && !(self.v.vpid_assignable(Vpid(info.vpid02))
                || (invvpid_done && self.v.vpid_owner(Vpid(info.vpid02)).is_none()))
        {
            return Err(Denial::BadVpid);
        }
        let vmcs = |pa: u64, kind: VmcsKind| (pa != 0).then(|| NewPage::Vmcs(Hpa(pa).pfn(), kind));
        let pages = [
            vmcs(info.vmcs02_pa, VmcsKind::Vmcs02),
            vmcs(info.shadow_vmcs_pa, VmcsKind::Shadow),
            (info.vmcs02_msr_bitmap_pa != 0)
                .then(|| NewPage::Aux(Hpa(info.vmcs02_msr_bitmap_pa).pfn(), AuxKind::MsrBitmap)),
        ];
        let mut new_vmcs: usize = 0;
        for new in pages.iter().flatten() {
            match *new {
                NewPage::Vmcs(pfn, kind) => {
                    if self.v.vmcs_kind(pfn) == Some(kind)
                        && self.v.vmcs_owner(pfn).map(|o| o.0) == Some(id)
                    {
                        continue;
                    }
                    new_vmcs = new_vmcs.saturating_add(1);
                    self.page_verdict(p, *new, AuxOwner::Vcpu(id))?;
                }
                NewPage::Aux(..) => self.page_verdict(p, *new, AuxOwner::Vcpu(id))?,
            }
        }
        if !self.v.vmcs_slots_free(new_vmcs) {
            return Err(Denial::TableFull);
        }
        Ok((id, pages))
    }

    /// `nested_leave`: L1 left VMX operation; vmcs02, the shadow VMCS and vmcs02's MSR bitmap
    /// are freed next (and withdrawn then), vpid02 is released now.
    pub fn nested_leave(&mut self, p: &mut impl Platform, kvm: Handle, vcpu: Handle) {
        let Some(i) = self.vcpu_index(vcpu) else {
            return;
        };
        let Some(mut s) = self.vcpus.get(i).copied() else {
            return;
        };
        let (Some(id), Some(vm)) = (s.id, s.vm) else {
            return;
        };
        if s.kvm != kvm || !self.in_teardown_of(p, vm) {
            return;
        }
        if let Some(vpid) = s.vpid02 {
            if let Err(d) = self.v.release_vpid(id, vpid) {
                Self::anomaly(p, d, u64::from(vpid.0));
            }
        }
        s.vpid02 = None;
        s.vmcs02 = None;
        s.shadow = None;
        s.msr_bitmap02 = None;
        if let Some(slot) = self.vcpus.get_mut(i) {
            *slot = s;
        }
    }

    // --- VMX instructions -------------------------------------------------------------------

    /// `vmcs_load` (VMPTRLD). The VMCS must be registered and, besides the verifier's rules,
    /// made current only by its VM's VMM or on a teardown path. A refused VMPTRLD is not
    /// executed, so the CPU keeps its previous VMCS: VMWRITEs on this CPU are refused until the
    /// next VMPTRLD that is allowed, whatever the caller does next.
    pub fn vmcs_load(&mut self, p: &mut impl Platform, pa: u64) -> bool {
        let cpu = p.cpu();
        let pfn = Hpa(pa).pfn();
        let mut verdict = Ok(());
        if let Some((vcpu, vm, _)) = self.v.vmcs_owner(pfn) {
            let teardown =
                p.current_mm().is_none() || self.vcpu_slot(vcpu).is_some_and(|s| s.dying);
            if !teardown && !self.in_vmm_of(p, vm) {
                verdict =
                    Err(self.deny(CheckClass::VmxInstruction, Denial::WrongContext, pa, 0, 0));
            }
        }
        let verdict = verdict.and_then(|()| self.v.vmptrld(cpu, Hpa(pa)));
        let Err(d) = verdict else {
            return false;
        };
        // Whether or not the VMPTRLD goes ahead (audit mode), the records no longer know which
        // VMCS is current on this CPU.
        self.v.vmptrld_refused(cpu);
        self.refuse(
            p,
            Refusal {
                class: CheckClass::VmxInstruction,
                denial: d,
                subject: pa,
                old: 0,
                new: 0,
                kvm: Handle::NONE,
                // Another process's VMPTRLD concerns the records: enforced in audit mode too.
                value_write: d != Denial::WrongContext,
            },
        )
    }

    /// `vmcs_clear` (VMCLEAR), not in NMI.
    pub fn vmcs_clear(&mut self, p: &mut impl Platform, pa: u64) -> bool {
        let cpu = p.cpu();
        // A VMCS page not bound to a vCPU (just allocated, or retired): clearing it cannot
        // affect any VM.
        if let Some(FrameState::Protected(Protected::Pool { .. })) =
            self.v.frame_state(Hpa(pa).pfn())
        {
            return false;
        }
        match self.v.vmclear(cpu, Hpa(pa)) {
            Ok(()) => false,
            Err(d) => self.refuse_vmx(p, d, pa),
        }
    }

    /// `vmxon`: registers the region of this CPU on first use (a kernel page) and checks it.
    pub fn vmxon(&mut self, p: &mut impl Platform, pa: u64) -> bool {
        let cpu = p.cpu();
        let pfn = Hpa(pa).pfn();
        if !matches!(
            self.v.frame_state(pfn),
            Some(FrameState::Protected(Protected::Vmxon { .. }))
        ) {
            let verdict = if self.v.frame_state(pfn) == Some(FrameState::Host)
                && p.frame_kind(pfn) != FrameKind::Kernel
            {
                Err(self.deny(CheckClass::VmxInstruction, Denial::UserFrame, pa, 0, 0))
            } else {
                self.v.register_vmxon(cpu, pfn)
            };
            if let Err(d) = verdict {
                return self.refuse_vmx(p, d, pa);
            }
        }
        match self.v.vmxon(cpu, Hpa(pa)) {
            Ok(()) => false,
            Err(d) => self.refuse_vmx(p, d, pa),
        }
    }

    /// `vmxoff`, not in NMI. The verdict of an emergency VMXOFF is ignored by the caller.
    pub fn vmxoff(&mut self, p: &mut impl Platform) -> bool {
        let cpu = p.cpu();
        match self.v.vmxoff(cpu) {
            Ok(()) => false,
            Err(d) => self.refuse_vmx(p, d, u64::from(cpu.0)),
        }
    }

    fn refuse_vmx(&mut self, p: &mut impl Platform, d: Denial, subject: u64) -> bool {
        self.refuse(
            p,
            Refusal {
                class: CheckClass::VmxInstruction,
                denial: d,
                subject,
                old: 0,
                new: 0,
                kvm: Handle::NONE,
                value_write: true,
            },
        )
    }

    /// True if `cpu` is in VMX operation, as the records say.
    pub fn vmx_on(&self, cpu: CpuId) -> bool {
        self.v.vmx_on(cpu)
    }

    // --- Guest pages named by a VMCS ----------------------------------------------------------

    /// `guest_page`: KVM is about to name `pfn`, the host frame behind guest frame `gfn` of
    /// `kvm`, in an address field of the current VMCS. The frame must be the VM's already, or
    /// the VM's memory at `gfn` (it becomes the VM's then), checked from the VMM's context.
    pub fn guest_page(
        &mut self,
        p: &mut impl Platform,
        kvm: Handle,
        gfn: u64,
        pfn: u64,
    ) -> Result<(), Denial> {
        let pfn = Pfn(pfn);
        let verdict =
            self.vm_of(kvm)
                .ok_or(Denial::UnknownVm)
                .and_then(|vm| match self.v.frame_state(pfn) {
                    Some(FrameState::Vm(o)) if o == vm => Ok((vm, false)),
                    Some(FrameState::Host) => {
                        self.check_vm_memory(p, vm, gfn, pfn, PageSize::Size4K, true)?;
                        Ok((vm, true))
                    }
                    Some(FrameState::Vm(o)) if self.v.vm_is_live(o) => Err(Denial::EptForeignFrame),
                    Some(FrameState::Vm(o))
                        if self.same_vmm_ghost(o, vm)
                            && self.v.frame_mappings(pfn) == Some((0, 0)) =>
                    {
                        self.check_vm_memory(p, vm, gfn, pfn, PageSize::Size4K, true)?;
                        Ok((vm, true))
                    }
                    Some(FrameState::Vm(_)) => Err(Denial::EptOrphanedFrame),
                    Some(FrameState::Protected(_)) => Err(Denial::EptProtectedFrame),
                    Some(_) => Err(Denial::WrongState),
                    None => Err(Denial::FrameOutOfRange),
                });
        match verdict {
            Ok((vm, true)) => {
                let taken = if self.v.frame_state(pfn) == Some(FrameState::Host) {
                    self.v.donate_to_vm(vm, pfn, 1)
                } else {
                    self.v.adopt_orphan(vm, pfn)
                };
                taken.inspect_err(|d| Self::anomaly(p, *d, pfn.0))
            }
            Ok((_, false)) => Ok(()),
            Err(d) => {
                let d = self.refuse_op(p, CheckClass::Ownership, d, (pfn.0, 0, gfn), kvm);
                Err(d)
            }
        }
    }

    // --- VMCS writes --------------------------------------------------------------------------

    /// `vmcs_write` (VMWRITE of `value` to `field` of the current VMCS). Returns true if the
    /// write must not be performed (KVM then stops the VM that runs the VMCS).
    pub fn vmcs_write(&mut self, p: &mut impl Platform, field: u64, value: u64) -> bool {
        let cpu = p.cpu();
        let Ok(field32) = u32::try_from(field) else {
            let d = self.deny(CheckClass::Vmcs, Denial::UnknownField, field, 0, value);
            return self.refuse_vmcs(p, CheckClass::Vmcs, d, field, value);
        };
        let f = VmcsField(field32);
        let class = if f == VmcsField::EPT_POINTER {
            CheckClass::Eptp
        } else {
            CheckClass::Vmcs
        };
        if let Err(d) = self.prepare_vmcs_write(p, cpu, f, value) {
            let d = self.deny(class, d, field, 0, value);
            return self.refuse_vmcs(p, class, d, field, value);
        }
        let host = self.host_state_for(p, f, value);
        match self.v.check_vmcs_write(cpu, f, value, &host) {
            Ok(()) => false,
            Err(d) => self.refuse_vmcs(p, class, d, field, value),
        }
    }

    fn refuse_vmcs(
        &mut self,
        p: &mut impl Platform,
        class: CheckClass,
        d: Denial,
        field: u64,
        value: u64,
    ) -> bool {
        self.refuse(
            p,
            Refusal {
                class,
                denial: d,
                subject: field,
                old: 0,
                new: value,
                // KVM stops the VM that runs the VMCS itself.
                kvm: Handle::NONE,
                value_write: true,
            },
        )
    }

    /// The reference values for a host-state field, read from the CPU; only what `field`
    /// needs is read.
    fn host_state_for(&self, p: &impl Platform, f: VmcsField, value: u64) -> HostState {
        let mut host = HostState::default();
        match field_policy(f) {
            Some(FieldPolicy::HostCr0) => host.cr0 = p.host_value(HostValue::Cr0),
            Some(FieldPolicy::HostCr3) => {
                host.cr3 = p.host_value(HostValue::Cr3);
                host.cr4 = p.host_value(HostValue::Cr4);
            }
            Some(FieldPolicy::HostCr4) => host.cr4 = p.host_value(HostValue::Cr4),
            Some(FieldPolicy::Host(hf)) => {
                let live = p.host_value(HostValue::Field(hf));
                // vmx_set_constant_host_state() writes 0 to these first; the live values
                // follow before every VM entry.
                let zero_first = matches!(
                    hf,
                    HostField::FsBase | HostField::GsBase | HostField::SysenterEsp
                );
                let v = if zero_first && value == 0 { 0 } else { live };
                match hf {
                    HostField::FsSelector => host.fs_selector = v as u16,
                    HostField::GsSelector => host.gs_selector = v as u16,
                    HostField::FsBase => host.fs_base = v,
                    HostField::GsBase => host.gs_base = v,
                    HostField::TrBase => host.tr_base = v,
                    HostField::GdtrBase => host.gdtr_base = v,
                    HostField::IdtrBase => host.idtr_base = v,
                    HostField::SysenterCs => host.sysenter_cs = v as u32,
                    HostField::SysenterEsp => host.sysenter_esp = v,
                    HostField::SysenterEip => host.sysenter_eip = v,
                    HostField::Pat => host.pat = v,
                    HostField::Efer => host.efer = v,
                    HostField::PerfGlobalCtrl => host.perf_global_ctrl = v,
                    // 0: kvm_intel is not loaded, and no value can be right.
                    HostField::Rip => host.rip = if v == 0 { !value } else { v },
                }
            }
            _ => {}
        }
        host
    }

    /// Pages first named by a VMCS field that no hook reports: the global VMREAD/VMWRITE
    /// bitmaps and the vCPU's posted-interrupt descriptor. Registered on first use, if they
    /// are kernel pages (and the descriptor is the one KVM reported at vCPU creation).
    fn prepare_vmcs_write(
        &mut self,
        p: &mut impl Platform,
        cpu: CpuId,
        f: VmcsField,
        value: u64,
    ) -> Result<(), Denial> {
        let global = [VmcsField::VMREAD_BITMAP, VmcsField::VMWRITE_BITMAP];
        if !global.contains(&f) && f != VmcsField::POSTED_INTR_DESC_ADDR {
            return Ok(());
        }
        if value == 0 || value == u64::MAX {
            return Ok(());
        }
        let Some(cur) = self.v.current_vmcs(cpu) else {
            return Ok(());
        };
        let Some((vcpu, _, kind)) = self.v.vmcs_owner(cur) else {
            return Ok(());
        };
        let pfn = Hpa(value).pfn();
        if global.contains(&f) {
            let kind = if f == VmcsField::VMREAD_BITMAP {
                AuxKind::VmreadBitmap
            } else {
                AuxKind::VmwriteBitmap
            };
            let new = NewPage::Aux(pfn, kind);
            self.page_verdict(p, new, AuxOwner::Global)?;
            return self.register_page(new, vcpu, AuxOwner::Global);
        }
        // POSTED_INTR_DESC_ADDR of a vmcs02 names an L1 page (guest_page() made it the VM's).
        if kind != VmcsKind::Vmcs01 {
            return Ok(());
        }
        let slot = self.vcpu_slot(vcpu).copied().ok_or(Denial::UnknownVcpu)?;
        if value != slot.pi_desc_pa {
            return Err(Denial::BadAddress);
        }
        let new = NewPage::Aux(pfn, AuxKind::PiDesc);
        self.page_verdict(p, new, AuxOwner::Vcpu(vcpu))?;
        self.register_page(new, vcpu, AuxOwner::Vcpu(vcpu))?;
        if let Some(s) = self.vcpu_slot_mut(vcpu) {
            s.pages.pi_desc = Some(pfn);
        }
        Ok(())
    }

    // --- VM entry -----------------------------------------------------------------------------

    /// `vm_entry`: the current VMCS is about to be entered (IRQs off, no VMCS write left
    /// before the entry). What the CPU will use is read from the VMCS itself: no address field
    /// it uses may name a page freed since it was written, every MSR list in use must lie in
    /// an MSR-list page of the VMCS's vCPU, the VM-exit load list may only restore MSRs KVM
    /// switches, to their live host values, and the VM-entry load list may only load MSRs that
    /// the VM-exit list restores. Returns true if the VM must not be entered (it is stopped).
    pub fn vm_entry(&mut self, p: &mut impl Platform) -> bool {
        let cpu = p.cpu();
        let owner = self
            .v
            .current_vmcs(cpu)
            .and_then(|pfn| self.v.vmcs_owner(pfn));
        let mut lists = MsrLists::default();
        let verdict = match owner {
            Some((vcpu, vm, kind)) => self.entry_verdict(p, cpu, (vcpu, vm, kind), &mut lists),
            None => Err(Denial::NoCurrentVmcs),
        };
        let subject = lists.subject.unwrap_or(lists.exit_load_addr);
        let verdict = self.v.record(
            CheckClass::Vmcs,
            subject,
            u64::from(lists.entry_load_count),
            u64::from(lists.exit_load_count),
            verdict,
        );
        match verdict {
            Ok(()) => false,
            Err(d) => {
                let kvm = owner.map_or(Handle::NONE, |(_, vm, _)| self.kvm_of(vm));
                self.refuse(
                    p,
                    Refusal {
                        class: CheckClass::Vmcs,
                        denial: d,
                        subject,
                        old: u64::from(lists.entry_load_count),
                        new: u64::from(lists.exit_load_count),
                        kvm,
                        value_write: true,
                    },
                )
            }
        }
    }

    fn entry_verdict(
        &self,
        p: &impl Platform,
        cpu: CpuId,
        (vcpu, vm, kind): (VcpuId, VmId, VmcsKind),
        lists: &mut MsrLists,
    ) -> Result<(), Denial> {
        let read = |f: VmcsField| p.vmread(f.0).ok_or(Denial::NoCurrentVmcs);
        let read32 = |f: VmcsField| read(f).map(|v| v as u32);
        let pin = read32(VmcsField::PIN_BASED_VM_EXEC_CONTROL)?;
        let primary = read32(VmcsField::CPU_BASED_VM_EXEC_CONTROL)?;
        self.v.entry_verdict(cpu, pin, primary)?;
        let secondary = if primary & PRIMARY_ACTIVATE_SECONDARY != 0 {
            read32(VmcsField::SECONDARY_VM_EXEC_CONTROL)?
        } else {
            0
        };
        if primary & PRIMARY_USE_MSR_BITMAPS != 0 {
            let bitmap = read(VmcsField::MSR_BITMAP)?;
            self.msr_bitmap_verdict(p, vcpu, bitmap, secondary)
                .map_err(|(d, msr)| {
                    lists.subject = Some(msr);
                    d
                })?;
        }
        // A vmcs02's descriptor is L1's; no notification is sent by its NV/NDST (KVM offers
        // L1 neither IPI virtualisation nor device posted interrupts).
        if kind == VmcsKind::Vmcs01 && pin & PIN_POSTED_INTR != 0 {
            let desc = read(VmcsField::POSTED_INTR_DESC_ADDR)?;
            lists.subject = Some(desc);
            self.pi_desc_verdict(p, AuxOwner::Vcpu(vcpu), desc, true)?;
            lists.subject = None;
            let tertiary = if primary & PRIMARY_ACTIVATE_TERTIARY != 0 {
                read(VmcsField::TERTIARY_VM_EXEC_CONTROL)?
            } else {
                0
            };
            if tertiary & TERTIARY_IPI_VIRT != 0 {
                let table = read(VmcsField::PID_POINTER_TABLE)?;
                let last = read(VmcsField::LAST_PID_POINTER_INDEX)?;
                self.pid_table_verdict(p, vm, table, last)?;
            }
        }
        lists.entry_load_count = read32(VmcsField::VM_ENTRY_MSR_LOAD_COUNT)?;
        lists.exit_load_count = read32(VmcsField::VM_EXIT_MSR_LOAD_COUNT)?;
        lists.exit_store_count = read32(VmcsField::VM_EXIT_MSR_STORE_COUNT)?;
        if lists.entry_load_count | lists.exit_load_count | lists.exit_store_count != 0 {
            lists.entry_load_addr = read(VmcsField::VM_ENTRY_MSR_LOAD_ADDR)?;
            lists.exit_load_addr = read(VmcsField::VM_EXIT_MSR_LOAD_ADDR)?;
            lists.exit_store_addr = read(VmcsField::VM_EXIT_MSR_STORE_ADDR)?;
            self.msr_lists_verdict(p, vcpu, lists)?;
        }
        let entry = read32(VmcsField::VM_ENTRY_CONTROLS)?;
        if entry & (ENTRY_LOAD_EFER | ENTRY_LOAD_CET) != 0 {
            let exit = read32(VmcsField::VM_EXIT_CONTROLS)?;
            self.host_state_restored_verdict(p, lists, entry, exit, read)?;
        }
        Ok(())
    }

    /// State the VM-entry controls load into the CPU must go back to the host's at the exit:
    /// a guest `EFER` (NX off, say) is replaced by the host's through the VM-exit controls
    /// (`HOST_IA32_EFER` is the live value) or the VM-exit MSR-load list (checked above), unless
    /// it is the host's value anyway; guest CET state only through the VM-exit controls. KVM
    /// sets the entry and exit controls together; which one it uses changes at run time, so
    /// this is checked at entry, not at the write of either control.
    fn host_state_restored_verdict(
        &self,
        p: &impl Platform,
        lists: &MsrLists,
        entry: u32,
        exit: u32,
        read: impl Fn(VmcsField) -> Result<u64, Denial>,
    ) -> Result<(), Denial> {
        if entry & ENTRY_LOAD_CET != 0 && exit & EXIT_LOAD_CET == 0 {
            return Err(Denial::HostStateNotRestored);
        }
        if entry & ENTRY_LOAD_EFER == 0 {
            return Ok(());
        }
        let live = p.host_msr(MSR_EFER).ok_or(Denial::HostStateNotRestored)?;
        if exit & EXIT_LOAD_EFER != 0 {
            return if read(VmcsField::HOST_IA32_EFER)? == live {
                Ok(())
            } else {
                Err(Denial::HostStateNotRestored)
            };
        }
        if read(VmcsField::GUEST_IA32_EFER)? == live {
            return Ok(());
        }
        let mut restored = false;
        for i in 0..lists.exit_load_count {
            let at = lists
                .exit_load_addr
                .saturating_add(u64::from(i).saturating_mul(MSR_ENTRY_BYTES));
            if p.read_phys(at).map(|index| index as u32) == Some(MSR_EFER) {
                restored = true;
            }
        }
        if restored {
            Ok(())
        } else {
            Err(Denial::HostStateNotRestored)
        }
    }

    /// The MSR bitmap at `pa` must be an MSR-bitmap page of `vcpu` that passes through (a clear
    /// bit) only MSRs that KVM switches itself or that cannot reach the host
    /// ([`msr_pass_through_allowed`]): any other MSR the guest could write directly would stay
    /// in the host after the VM exit, and reading one would show the guest a host value.
    fn msr_bitmap_verdict(
        &self,
        p: &impl Platform,
        vcpu: VcpuId,
        pa: u64,
        secondary: u32,
    ) -> Result<(), (Denial, u64)> {
        let hpa = Hpa(pa);
        let owned = hpa.is_page_aligned()
            && matches!(self.v.frame_state(hpa.pfn()), Some(FrameState::Protected(Protected::Aux {
                owner: AuxOwner::Vcpu(o),
                kind: AuxKind::MsrBitmap,
                ..
            })) if o == vcpu);
        if !owned {
            return Err((Denial::BadAddress, pa));
        }
        // A clear bit passes the MSR through. Every entry reads the whole page: one pass ANDs
        // each word with the bits the controls allow, from tables built at compile time. Only
        // a bitmap that fails is read again, to name the first MSR it passes through.
        let masks = ALLOWLIST_MASKS
            .get(combination_of(secondary))
            .ok_or((Denial::BadAddress, pa))?;
        let verdict = p.with_frame_words(hpa.pfn(), |words| {
            let mut all = u64::MAX;
            let mut start = 0usize;
            for (&special, &allowed) in ALLOWLIST_WORDS.iter().zip(masks.iter()) {
                let special = usize::from(special);
                all &= and_all(words.get(start..special).unwrap_or(&[]));
                if let Some(w) = words.get(special) {
                    all &= w.load(Ordering::Relaxed) | allowed;
                }
                start = special.saturating_add(1);
            }
            all &= and_all(words.get(start..).unwrap_or(&[]));
            if all == u64::MAX {
                return Ok(());
            }
            // Not all ones: some MSR passes through, and this finds the first. (If the bitmap
            // changed meanwhile and none is found, it still failed: the subject is then 0.)
            for (n, w) in (0u64..).zip(words.iter()) {
                let bad = !w.load(Ordering::Relaxed) & !allowed_word(n, secondary);
                if bad != 0 {
                    let msr = word_first_msr(n) | bad.trailing_zeros();
                    return Err((Denial::MsrBitmapPassThrough, u64::from(msr)));
                }
            }
            Err((Denial::MsrBitmapPassThrough, 0))
        });
        verdict.unwrap_or(Err((Denial::BadAddress, pa)))
    }

    /// The posted-interrupt descriptor at `pa` must be a descriptor page of `owner` (a vCPU,
    /// or any vCPU of a VM for a PID-table entry). Its NV and NDST tell an IOMMU, and CPUs
    /// doing IPI virtualisation, which interrupt to send where: unless notifications are
    /// suppressed (SN), NV must be KVM's posted-interrupt vector, or for a vCPU that is not
    /// about to run the wakeup vector, and NDST this CPU for the vCPU about to run.
    fn pi_desc_verdict(
        &self,
        p: &impl Platform,
        owner: AuxOwner,
        pa: u64,
        entering: bool,
    ) -> Result<(), Denial> {
        let hpa = Hpa(pa);
        if pa & 63 != 0 {
            return Err(Denial::BadAddress);
        }
        let owned = match self.v.frame_state(hpa.pfn()) {
            Some(FrameState::Protected(Protected::Aux {
                owner: o,
                kind: AuxKind::PiDesc,
                ..
            })) => match (owner, o) {
                (AuxOwner::Vm(vm), AuxOwner::Vcpu(v)) => self.v.vcpu_vm(v) == Some(vm),
                _ => o == owner,
            },
            _ => false,
        };
        if !owned {
            return Err(Denial::BadAddress);
        }
        let control = p
            .read_phys(pa.saturating_add(32))
            .ok_or(Denial::BadAddress)?;
        let suppressed = control & PI_CONTROL_SN != 0;
        let nv = ((control >> 16) & 0xff) as u8;
        let ndst = control >> 32;
        if suppressed {
            return Ok(());
        }
        let vector_ok = nv == POSTED_INTR_VECTOR || (!entering && nv == POSTED_INTR_WAKEUP_VECTOR);
        let dest_ok = !entering || ndst == p.host_value(HostValue::PiDestination);
        if vector_ok && dest_ok {
            Ok(())
        } else {
            Err(Denial::PiDescriptor)
        }
    }

    /// With IPI virtualisation the CPU sends, for the guest, the notification that the
    /// descriptor of the target names: every valid entry of the PID-pointer table up to
    /// `last` must name a descriptor of a vCPU of `vm` with a KVM vector.
    fn pid_table_verdict(
        &self,
        p: &impl Platform,
        vm: VmId,
        table: u64,
        last: u64,
    ) -> Result<(), Denial> {
        for i in 0..=last.min(PID_TABLE_MAX_INDEX) {
            let entry = p
                .read_phys(table.saturating_add(i.saturating_mul(8)))
                .ok_or(Denial::BadAddress)?;
            if entry & PID_ENTRY_VALID == 0 {
                continue;
            }
            self.pi_desc_verdict(p, AuxOwner::Vm(vm), entry & PID_ENTRY_ADDR, false)
                .map_err(|_| Denial::PiDescriptor)?;
        }
        if last > PID_TABLE_MAX_INDEX {
            return Err(Denial::PiDescriptor);
        }
        Ok(())
    }

    fn msr_lists_verdict(
        &self,
        p: &impl Platform,
        vcpu: VcpuId,
        l: &MsrLists,
    ) -> Result<(), Denial> {
        let max = self.v.config().msr_list_max;
        for (addr, count) in [
            (l.entry_load_addr, l.entry_load_count),
            (l.exit_load_addr, l.exit_load_count),
            (l.exit_store_addr, l.exit_store_count),
        ] {
            if count == 0 {
                continue;
            }
            if count > max {
                return Err(Denial::MsrCountTooLarge);
            }
            let bytes = u64::from(count).saturating_mul(MSR_ENTRY_BYTES);
            let hpa = Hpa(addr);
            if addr % MSR_ENTRY_BYTES != 0 || hpa.page_offset().saturating_add(bytes) > PAGE_SIZE {
                return Err(Denial::MsrListAddress);
            }
            match self.v.frame_state(hpa.pfn()) {
                Some(FrameState::Protected(Protected::Aux {
                    owner: AuxOwner::Vcpu(o),
                    kind: AuxKind::MsrList,
                    ..
                })) if o == vcpu => {}
                _ => return Err(Denial::MsrListAddress),
            }
        }
        let entry = |addr: u64, i: u32| -> Result<(u32, u64), Denial> {
            let at = addr.saturating_add(u64::from(i).saturating_mul(MSR_ENTRY_BYTES));
            let index = p.read_phys(at).ok_or(Denial::MsrListAddress)?;
            let value = p
                .read_phys(at.saturating_add(8))
                .ok_or(Denial::MsrListAddress)?;
            Ok((index as u32, value))
        };
        for i in 0..l.exit_load_count {
            let (msr, value) = entry(l.exit_load_addr, i)?;
            if !SWITCHED_MSRS.contains(&msr) {
                return Err(Denial::MsrListEntry);
            }
            if p.host_msr(msr) != Some(value) {
                return Err(Denial::MsrListHostValue);
            }
        }
        for i in 0..l.entry_load_count {
            let (msr, _) = entry(l.entry_load_addr, i)?;
            if !SWITCHED_MSRS.contains(&msr) {
                return Err(Denial::MsrListEntry);
            }
            let mut restored = false;
            for j in 0..l.exit_load_count {
                if entry(l.exit_load_addr, j)?.0 == msr {
                    restored = true;
                }
            }
            if !restored {
                return Err(Denial::MsrListEntry);
            }
        }
        Ok(())
    }

    /// The host `CR4` bits a hook expects to stay as they are: PCIDE as at initialisation.
    pub fn cr4_pcide(&self) -> bool {
        self.v.config().cr4_pcide
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry check's tables say, for every word and every secondary control value, what the
    /// MSR list says: other control bits change nothing.
    #[test]
    fn the_bitmap_tables_match_the_msr_list() {
        for noise in [0u32, !0, 0x5555_5555, 0xaaaa_aaaa, 1 << 1] {
            for c in 0..SECONDARY_MSR_COMBINATIONS {
                let secondary = secondary_of_combination(c) | noise;
                let row = ALLOWLIST_MASKS.get(combination_of(secondary));
                assert!(row.is_some(), "no row for {secondary:#x}");
                for n in 0..512u64 {
                    let table = ALLOWLIST_WORDS
                        .iter()
                        .zip(row.into_iter().flatten())
                        .find(|(&w, _)| u64::from(w) == n)
                        .map_or(0, |(_, &mask)| mask);
                    assert_eq!(table, allowed_word(n, secondary), "word {n} {secondary:#x}");
                }
            }
        }
    }
}
