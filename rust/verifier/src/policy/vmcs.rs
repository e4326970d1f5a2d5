// SPDX-License-Identifier: GPL-2.0

//! VMCS write policy, current-VMCS tracking and VMX instructions.
//!
//! The verifier tracks the current VMCS of every CPU itself, from `VMPTRLD` and `VMCLEAR`
//! (the nested paths load the shadow VMCS without updating KVM's `current_vmcs`). A `vmwrite`
//! is checked against the current VMCS's record:
//!
//! * a **shadow VMCS** takes only the fields of `vmcs_shadow_fields.h`, with any value (it
//!   holds L1's view and is never used to run a guest);
//! * a **vmcs01** or **vmcs02** takes every known field according to [`field_policy`]:
//!   guest state is free; host state must equal the live host values the kernel passes in
//!   ([`HostState`]); pinned fields must equal their constant; controls keep their required
//!   bits; addresses must name pages of this vCPU (or, for L1-provided pages in a vmcs02, of
//!   this VM); the EPT pointer must name a root of this VM; the VPID must belong to this vCPU.
//!
//! Required bits of the controls (the security-relevant subset of the hook map, §6a):
//!
//! | control | required 1 | required 0 |
//! |---|---|---|
//! | pin-based | external-interrupt exiting, NMI exiting | |
//! | primary | unconditional I/O exiting, activate secondary controls | use I/O bitmaps |
//! | secondary | enable EPT; shadow VMCS only with a registered link pointer | mode-based EPT execute; VMFUNC (vmcs01); PML and shadow VMCS (vmcs02) |
//! | tertiary | | everything except IPI virtualisation |
//! | VM-exit | host address-space size; load `IA32_PAT` where the CPU has it | |
//! | VM-entry | | entry to SMM, deactivate dual-monitor treatment |
//!
//! VMFUNC in a vmcs02 is allowed because `VM_FUNCTION_CONTROL` is pinned to 0, so every VMFUNC
//! exits (KVM emulates EPTP switching for L2 this way).

use super::cr::{cr0_verdict, cr3_root_verdict, cr4_pinned_verdict, CR4_VMXE};
use super::denial::{CheckClass, Denial};
use super::records::{AddrRef, AuxKind, AuxOwner, FrameState, Protected, VmcsKind, VmcsRecord};
use super::types::{
    CpuId, Cr0, Cr3, Cr4, EptLevel, Hpa, Pfn, VcpuId, VmId, VmcsField, Vpid, PAGE_SIZE,
};
use super::vmcs_fields::{
    address_slot, field_policy, is_shadow_field, AddressField, ControlField, FieldPolicy, HostField,
};
use super::Verifier;

/// Pin-based: external-interrupt exiting.
pub const PIN_EXT_INTR: u32 = 1 << 0;
/// Pin-based: NMI exiting.
pub const PIN_NMI_EXITING: u32 = 1 << 3;
/// Pin-based: process posted interrupts (the CPU writes the posted-interrupt descriptor).
pub const PIN_POSTED_INTR: u32 = 1 << 7;
/// Primary: use TPR shadow (the CPU reads and writes the virtual-APIC page).
pub const PRIMARY_TPR_SHADOW: u32 = 1 << 21;
/// Primary: unconditional I/O exiting.
pub const PRIMARY_UNCOND_IO_EXITING: u32 = 1 << 24;
/// Primary: use I/O bitmaps.
pub const PRIMARY_USE_IO_BITMAPS: u32 = 1 << 25;
/// Primary: activate secondary controls.
pub const PRIMARY_ACTIVATE_SECONDARY: u32 = 1 << 31;
/// Secondary: enable EPT.
pub const SECONDARY_ENABLE_EPT: u32 = 1 << 1;
/// Secondary: enable VM functions.
pub const SECONDARY_ENABLE_VMFUNC: u32 = 1 << 13;
/// Secondary: VMCS shadowing.
pub const SECONDARY_SHADOW_VMCS: u32 = 1 << 14;
/// Secondary: page-modification logging.
pub const SECONDARY_ENABLE_PML: u32 = 1 << 17;
/// Secondary: mode-based execute control for EPT.
pub const SECONDARY_MODE_BASED_EPT_EXEC: u32 = 1 << 22;
/// Tertiary: IPI virtualisation.
pub const TERTIARY_IPI_VIRT: u64 = 1 << 4;
/// VM-exit: host address-space size (64-bit host).
pub const EXIT_HOST_ADDR_SPACE_SIZE: u32 = 1 << 9;
/// VM-exit: load the host's `IA32_PAT`.
pub const EXIT_LOAD_PAT: u32 = 1 << 19;
/// VM-entry: entry to SMM.
pub const ENTRY_SMM: u32 = 1 << 10;
/// VM-entry: deactivate dual-monitor treatment.
pub const ENTRY_DEACT_DUAL_MONITOR: u32 = 1 << 11;

/// KVM's posted-interrupt notification vector (`POSTED_INTR_VECTOR`).
pub const POSTED_INTR_VECTOR: u8 = 0xf2;
/// The vector that wakes a blocked vCPU (`POSTED_INTR_WAKEUP_VECTOR`).
pub const POSTED_INTR_WAKEUP_VECTOR: u8 = 0xf1;
/// The notification vector of a vmcs02 (`POSTED_INTR_NESTED_VECTOR`).
pub const POSTED_INTR_NESTED_VECTOR: u8 = 0xf0;
/// Primary: activate tertiary controls.
pub const PRIMARY_ACTIVATE_TERTIARY: u32 = 1 << 17;

/// Address-reference slot of `PID_POINTER_TABLE`.
const PID_TABLE_SLOT: usize = 9;
/// Address-reference slot of `POSTED_INTR_DESC_ADDR`.
const PI_DESC_SLOT: usize = 6;
/// Address-reference slot of `VIRTUAL_APIC_PAGE_ADDR`.
const VIRTUAL_APIC_SLOT: usize = 7;
/// Address-reference slot of `APIC_ACCESS_ADDR`.
const APIC_ACCESS_SLOT: usize = 8;

/// The VMCS link pointer value meaning "no shadow VMCS" (`INVALID_GPA`).
pub const INVALID_LINK: u64 = u64::MAX;

/// Live host state, read by the kernel glue inside the gate and passed with each VMCS write.
/// Host-state fields must equal these values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// Current `CR0`.
    pub cr0: u64,
    /// Current `CR3` (`__get_current_cr3_fast()`).
    pub cr3: u64,
    /// Current `CR4` (`cr4_read_shadow()`).
    pub cr4: u64,
    /// Address of `vmx_vmexit`.
    pub rip: u64,
    /// Lowest address of the current task stack.
    pub stack_low: u64,
    /// One past the highest address of the current task stack.
    pub stack_high: u64,
    /// Current FS selector.
    pub fs_selector: u16,
    /// Current GS selector.
    pub gs_selector: u16,
    /// Current FS base.
    pub fs_base: u64,
    /// Kernel GS base of this CPU (`cpu_kernelmode_gs_base()`).
    pub gs_base: u64,
    /// TSS base of this CPU (`&get_cpu_entry_area(cpu)->tss.x86_tss`).
    pub tr_base: u64,
    /// GDT base of this CPU (`get_current_gdt_ro()`).
    pub gdtr_base: u64,
    /// IDT base (`host_idt_base`).
    pub idtr_base: u64,
    /// `MSR_IA32_SYSENTER_CS`.
    pub sysenter_cs: u32,
    /// Expected `HOST_IA32_SYSENTER_ESP` (the CPU entry stack, or 0 without 32-bit syscalls).
    pub sysenter_esp: u64,
    /// `MSR_IA32_SYSENTER_EIP`.
    pub sysenter_eip: u64,
    /// Host `IA32_PAT`.
    pub pat: u64,
    /// Host `EFER` (`kvm_host.efer`).
    pub efer: u64,
    /// Host `IA32_PERF_GLOBAL_CTRL`.
    pub perf_global_ctrl: u64,
}

impl HostState {
    fn value_of(&self, field: HostField) -> u64 {
        match field {
            HostField::FsSelector => u64::from(self.fs_selector),
            HostField::GsSelector => u64::from(self.gs_selector),
            HostField::FsBase => self.fs_base,
            HostField::GsBase => self.gs_base,
            HostField::TrBase => self.tr_base,
            HostField::GdtrBase => self.gdtr_base,
            HostField::IdtrBase => self.idtr_base,
            HostField::SysenterCs => u64::from(self.sysenter_cs),
            HostField::SysenterEsp => self.sysenter_esp,
            HostField::SysenterEip => self.sysenter_eip,
            HostField::Pat => self.pat,
            HostField::Efer => self.efer,
            HostField::PerfGlobalCtrl => self.perf_global_ctrl,
            HostField::Rip => self.rip,
        }
    }
}

/// Checks a control field value against its required bits.
///
/// `link_registered` tells whether the VMCS names, or may name, a registered shadow VMCS of
/// its vCPU (only relevant to the secondary controls of a vmcs01).
pub fn control_verdict(
    control: ControlField,
    kind: VmcsKind,
    value: u64,
    link_registered: bool,
) -> Result<(), Denial> {
    let (required1, required0): (u64, u64) = match control {
        ControlField::Pin => (u64::from(PIN_EXT_INTR | PIN_NMI_EXITING), 0),
        ControlField::Primary => (
            u64::from(PRIMARY_UNCOND_IO_EXITING | PRIMARY_ACTIVATE_SECONDARY),
            u64::from(PRIMARY_USE_IO_BITMAPS),
        ),
        ControlField::Secondary => {
            let mut zero = SECONDARY_MODE_BASED_EPT_EXEC;
            match kind {
                VmcsKind::Vmcs02 => zero |= SECONDARY_ENABLE_PML | SECONDARY_SHADOW_VMCS,
                _ => {
                    zero |= SECONDARY_ENABLE_VMFUNC;
                    if !link_registered {
                        zero |= SECONDARY_SHADOW_VMCS;
                    }
                }
            }
            if value & u64::from(SECONDARY_SHADOW_VMCS) != 0
                && kind != VmcsKind::Vmcs02
                && !link_registered
            {
                return Err(Denial::BadLinkPointer);
            }
            (u64::from(SECONDARY_ENABLE_EPT), u64::from(zero))
        }
        ControlField::Tertiary => (0, !TERTIARY_IPI_VIRT),
        ControlField::Exit => (u64::from(EXIT_HOST_ADDR_SPACE_SIZE), 0),
        ControlField::Entry => (0, u64::from(ENTRY_SMM | ENTRY_DEACT_DUAL_MONITOR)),
    };
    if value & required1 != required1 || value & required0 != 0 {
        Err(Denial::ControlViolation)
    } else {
        Ok(())
    }
}

/// What a verified VMCS write changes in the VMCS record.
enum RecordUpdate {
    None,
    EptRoot(Option<Pfn>),
    Vpid(Vpid),
    Link(Option<u16>),
    Secondary(u32),
    Address {
        slot: usize,
        target: Option<AddrRef>,
    },
}

impl<'a> Verifier<'a> {
    /// Checks a `vmwrite` of `value` to `field` of the VMCS current on `cpu`, and records its
    /// effect (EPT root, VPID, link pointer, secondary controls) if it is allowed.
    ///
    /// `host` carries the live host state the host-state fields must equal.
    pub fn check_vmcs_write(
        &mut self,
        cpu: CpuId,
        field: VmcsField,
        value: u64,
        host: &HostState,
    ) -> Result<(), Denial> {
        let verdict = self.vmcs_write_verdict(cpu, field, value, host);
        let class = if field == VmcsField::EPT_POINTER {
            CheckClass::Eptp
        } else {
            CheckClass::Vmcs
        };
        let (slot, update) = self.record(class, u64::from(field.0), 0, value, verdict)?;
        self.apply_vmcs_update(slot, update);
        Ok(())
    }

    /// Checks an EPT pointer where KVM builds it (`vmx_load_mmu_pgd()`), before its
    /// `vmwrite`: the VMCS current on `cpu` must be one of `vcpu`'s, `vcpu` one of `vm`'s,
    /// the pointer must name `root`, the root KVM says it loads, and it must pass the
    /// `EPT_POINTER` rules for that VMCS. Records only the verdict; the `vmwrite` that follows
    /// is checked again and records the root.
    pub fn check_ept_load(
        &mut self,
        cpu: CpuId,
        (vm, vcpu): (VmId, VcpuId),
        root: Pfn,
        eptp: u64,
    ) -> Result<(), Denial> {
        let verdict = self.ept_load_verdict(cpu, (vm, vcpu), root, eptp);
        let subject = u64::from(VmcsField::EPT_POINTER.0);
        let old = root.0.saturating_mul(4096);
        self.record(CheckClass::Eptp, subject, old, eptp, verdict)
    }

    fn ept_load_verdict(
        &self,
        cpu: CpuId,
        (vm, vcpu): (VmId, VcpuId),
        root: Pfn,
        eptp: u64,
    ) -> Result<(), Denial> {
        self.ept_load_context_verdict(cpu, (vm, vcpu), root, eptp)?;
        let (_, rec) = self.current_record(cpu)?;
        // None is KVM's dummy root, which it never loads through this path.
        match self.eptp_verdict(rec.vm, rec.kind, eptp)? {
            Some(named) if named == root => Ok(()),
            _ => Err(Denial::EptpBadRoot),
        }
    }

    /// The rules of [`Verifier::check_ept_load`] that do not depend on the root being
    /// registered, so that a caller can check them before it registers a pending root: the
    /// current VMCS is `vcpu`'s, the pointer names `root` and is well formed. Returns the walk
    /// length the pointer gives.
    pub(crate) fn ept_load_context_verdict(
        &self,
        cpu: CpuId,
        (vm, vcpu): (VmId, VcpuId),
        root: Pfn,
        eptp: u64,
    ) -> Result<EptLevel, Denial> {
        let (_, rec) = self.current_record(cpu)?;
        if rec.vm != vm || rec.vcpu != vcpu {
            return Err(Denial::WrongContext);
        }
        if rec.kind == VmcsKind::Shadow {
            return Err(Denial::NotShadowField);
        }
        match self.eptp_format(rec.kind, eptp)? {
            (named, walk) if named == root => Ok(walk),
            _ => Err(Denial::EptpBadRoot),
        }
    }

    /// The slot and record of the VMCS current on `cpu`.
    fn current_record(&self, cpu: CpuId) -> Result<(u16, VmcsRecord), Denial> {
        let c = self.cpu_record(cpu)?;
        if !c.vmx_on {
            return Err(Denial::NoCurrentVmcs);
        }
        let slot = c.current.ok_or(Denial::NoCurrentVmcs)?;
        let rec = *self
            .vmcs
            .get(usize::from(slot))
            .ok_or(Denial::NoCurrentVmcs)?;
        if !rec.live {
            return Err(Denial::NoCurrentVmcs);
        }
        Ok((slot, rec))
    }

    fn vmcs_write_verdict(
        &self,
        cpu: CpuId,
        field: VmcsField,
        value: u64,
        host: &HostState,
    ) -> Result<(u16, RecordUpdate), Denial> {
        let (slot, rec) = self.current_record(cpu)?;
        if value > field.max_value() {
            return Err(Denial::ValueTooWide);
        }
        if rec.kind == VmcsKind::Shadow {
            return if is_shadow_field(field) {
                Ok((slot, RecordUpdate::None))
            } else {
                Err(Denial::NotShadowField)
            };
        }
        let policy = field_policy(field).ok_or(Denial::UnknownField)?;
        let update = self.field_verdict(&rec, field, policy, value, host)?;
        Ok((slot, update))
    }

    fn field_verdict(
        &self,
        rec: &VmcsRecord,
        field: VmcsField,
        policy: FieldPolicy,
        value: u64,
        host: &HostState,
    ) -> Result<RecordUpdate, Denial> {
        match policy {
            FieldPolicy::Free => Ok(RecordUpdate::None),
            FieldPolicy::ReadOnly | FieldPolicy::NeverWritten => Err(Denial::FieldNotWritable),
            FieldPolicy::PiVector => {
                // Any other vector would make the CPU swallow that host interrupt in the guest.
                let want = if rec.kind == VmcsKind::Vmcs02 {
                    POSTED_INTR_NESTED_VECTOR
                } else {
                    POSTED_INTR_VECTOR
                };
                if value == u64::from(want) {
                    Ok(RecordUpdate::None)
                } else {
                    Err(Denial::PinnedMismatch)
                }
            }
            FieldPolicy::Pinned(want) => {
                if value == want {
                    Ok(RecordUpdate::None)
                } else {
                    Err(Denial::PinnedMismatch)
                }
            }
            FieldPolicy::Host(field) => {
                if value == host.value_of(field) {
                    Ok(RecordUpdate::None)
                } else {
                    Err(Denial::HostStateMismatch)
                }
            }
            FieldPolicy::HostCr0 => {
                if value != host.cr0 {
                    return Err(Denial::HostStateMismatch);
                }
                cr0_verdict(Cr0(value))?;
                Ok(RecordUpdate::None)
            }
            FieldPolicy::HostCr3 => {
                if value != host.cr3 {
                    return Err(Denial::HostStateMismatch);
                }
                cr3_root_verdict(self, Cr3(value), Cr4(host.cr4))?;
                Ok(RecordUpdate::None)
            }
            FieldPolicy::HostCr4 => {
                if value != host.cr4 {
                    return Err(Denial::HostStateMismatch);
                }
                cr4_pinned_verdict(Cr4(value), self.config.cr4_pinned)?;
                if value & CR4_VMXE == 0 {
                    return Err(Denial::Cr4Vmxe);
                }
                Ok(RecordUpdate::None)
            }
            FieldPolicy::HostRsp => {
                if value >= host.stack_low && value < host.stack_high {
                    Ok(RecordUpdate::None)
                } else {
                    Err(Denial::HostStateMismatch)
                }
            }
            FieldPolicy::Control(control) => {
                // set_current_vmptr() enables shadowing before it writes the link pointer, so
                // a registered shadow VMCS of this vCPU is enough: the link pointer itself can
                // only be INVALID or that shadow VMCS (see `link_verdict`).
                let shadow_ok = rec.link.is_some()
                    || (control == ControlField::Secondary && self.vcpu_has_shadow(rec.vcpu));
                control_verdict(control, rec.kind, value, shadow_ok)?;
                let keep = u64::from(self.config.exit_controls_required);
                if control == ControlField::Exit && value & keep != keep {
                    return Err(Denial::ControlViolation);
                }
                match control {
                    ControlField::Secondary => Ok(RecordUpdate::Secondary(
                        u32::try_from(value).map_err(|_| Denial::ValueTooWide)?,
                    )),
                    _ => Ok(RecordUpdate::None),
                }
            }
            FieldPolicy::Address(addr) => {
                let target = self.address_verdict(rec, addr, value)?;
                let slot = address_slot(field).ok_or(Denial::UnknownField)?;
                Ok(RecordUpdate::Address { slot, target })
            }
            FieldPolicy::Eptp => Ok(RecordUpdate::EptRoot(
                self.eptp_verdict(rec.vm, rec.kind, value)?,
            )),
            FieldPolicy::Vpid => {
                let vpid = Vpid(u16::try_from(value).map_err(|_| Denial::ValueTooWide)?);
                if vpid.0 == 0 || self.vpid_owner(vpid) != Some(rec.vcpu) {
                    return Err(Denial::BadVpid);
                }
                Ok(RecordUpdate::Vpid(vpid))
            }
            FieldPolicy::LinkPointer => self.link_verdict(rec, value),
            FieldPolicy::MsrCount => {
                if value <= u64::from(self.config.msr_list_max) {
                    Ok(RecordUpdate::None)
                } else {
                    Err(Denial::MsrCountTooLarge)
                }
            }
            FieldPolicy::PidIndex => {
                // Every 8-byte entry up to the index must lie in PID-table pages of this VM,
                // contiguous from the page PID_POINTER_TABLE names (written first by KVM).
                let Some(Some(AddrRef::Aux(base))) = rec.addr_refs.get(PID_TABLE_SLOT) else {
                    return Err(Denial::BadAddress);
                };
                let pages = (value >> 9).saturating_add(1);
                for i in 0..pages {
                    let pfn = base.checked_add(i).ok_or(Denial::BadAddress)?;
                    if self
                        .aux_target(pfn, AuxOwner::Vm(rec.vm), AuxKind::PidTable)
                        .is_none()
                    {
                        return Err(Denial::BadAddress);
                    }
                }
                Ok(RecordUpdate::None)
            }
        }
    }

    fn link_verdict(&self, rec: &VmcsRecord, value: u64) -> Result<RecordUpdate, Denial> {
        if value == INVALID_LINK {
            // vmx_disable_shadow_vmcs() clears the control before the pointer.
            if rec.secondary & SECONDARY_SHADOW_VMCS != 0 {
                return Err(Denial::BadLinkPointer);
            }
            return Ok(RecordUpdate::Link(None));
        }
        if rec.kind != VmcsKind::Vmcs01 {
            return Err(Denial::BadLinkPointer);
        }
        let hpa = Hpa(value);
        if !hpa.is_page_aligned() {
            return Err(Denial::BadLinkPointer);
        }
        let slot = self
            .vmcs_slot_of(hpa.pfn())
            .map_err(|_| Denial::BadLinkPointer)?;
        match self.vmcs.get(usize::from(slot)) {
            Some(s) if s.live && s.kind == VmcsKind::Shadow && s.vcpu == rec.vcpu => {
                s.link_refs.checked_add(1).ok_or(Denial::CounterOverflow)?;
                Ok(RecordUpdate::Link(Some(slot)))
            }
            _ => Err(Denial::BadLinkPointer),
        }
    }

    /// Checks an address field: which page it must name and how it must be aligned. Returns
    /// the page to pin (none for the "no page" values KVM uses in a vmcs02).
    fn address_verdict(
        &self,
        rec: &VmcsRecord,
        addr: AddressField,
        value: u64,
    ) -> Result<Option<AddrRef>, Denial> {
        let hpa = Hpa(value);
        let pfn = hpa.pfn();
        let nested = rec.kind == VmcsKind::Vmcs02;
        let vcpu = AuxOwner::Vcpu(rec.vcpu);
        let target = match addr {
            AddressField::MsrBitmap if hpa.is_page_aligned() => {
                self.aux_target(pfn, vcpu, AuxKind::MsrBitmap)
            }
            AddressField::MsrList => {
                let list_bytes = u64::from(self.config.msr_list_max).saturating_mul(16);
                if value & 0xf == 0 && hpa.page_offset().saturating_add(list_bytes) <= PAGE_SIZE {
                    self.aux_target(pfn, vcpu, AuxKind::MsrList)
                } else {
                    None
                }
            }
            // PML is never enabled in a vmcs02, whose PML address KVM sets to 0.
            AddressField::Pml if nested && value == 0 => return Ok(None),
            AddressField::Pml if hpa.is_page_aligned() => self.aux_target(pfn, vcpu, AuxKind::Pml),
            AddressField::VeInfo if hpa.is_page_aligned() => {
                self.aux_target(pfn, vcpu, AuxKind::VeInfo)
            }
            AddressField::PiDesc if value & 0x3f == 0 => {
                if nested {
                    self.vm_target(rec, pfn)
                } else {
                    self.aux_target(pfn, vcpu, AuxKind::PiDesc)
                }
            }
            // KVM writes INVALID_GPA to make VM entry fail when L1's page is unusable.
            AddressField::VirtualApic if nested && value == INVALID_LINK => return Ok(None),
            // init_vmcs() writes 0 before the lapic page (or leaves 0 without TPR shadow);
            // page 0 is reserved by the kernel and never handed out.
            AddressField::VirtualApic if !nested && value == 0 => return Ok(None),
            AddressField::VirtualApic if hpa.is_page_aligned() => {
                if nested {
                    self.vm_target(rec, pfn)
                } else {
                    self.aux_target(pfn, vcpu, AuxKind::VirtualApic)
                }
            }
            AddressField::ApicAccess if hpa.is_page_aligned() => self.vm_target(rec, pfn),
            AddressField::VmreadBitmap if hpa.is_page_aligned() => {
                self.aux_target(pfn, AuxOwner::Global, AuxKind::VmreadBitmap)
            }
            AddressField::VmwriteBitmap if hpa.is_page_aligned() => {
                self.aux_target(pfn, AuxOwner::Global, AuxKind::VmwriteBitmap)
            }
            AddressField::PidTable if hpa.is_page_aligned() => {
                self.aux_target(pfn, AuxOwner::Vm(rec.vm), AuxKind::PidTable)
            }
            _ => None,
        };
        let target = target.ok_or(Denial::BadAddress)?;
        // The CPU never reads or writes the APIC-access page itself (accesses to its guest
        // address are virtualised or exit), so it must be the VM's but is not pinned.
        if matches!(addr, AddressField::ApicAccess) {
            return Ok(None);
        }
        if !self.addr_ref_has_room(target) {
            return Err(Denial::CounterOverflow);
        }
        Ok(Some(target))
    }

    /// True if a shadow VMCS of `vcpu` is registered.
    fn vcpu_has_shadow(&self, vcpu: VcpuId) -> bool {
        self.vcpu_record(vcpu).is_ok_and(|r| r.shadows != 0)
    }

    /// `pfn` as a pinned target if it is an auxiliary page of `owner` and `kind`.
    fn aux_target(&self, pfn: Pfn, owner: AuxOwner, kind: AuxKind) -> Option<AddrRef> {
        match self.frame(pfn).map(|f| f.state) {
            Ok(FrameState::Protected(Protected::Aux {
                owner: o, kind: k, ..
            })) if o == owner && k == kind => Some(AddrRef::Aux(pfn)),
            _ => None,
        }
    }

    /// `pfn` as a pinned target if the VMCS's VM owns it (an L1 page named in a vmcs02, or the
    /// APIC-access page) or it lies in an MMIO range assigned to the VM.
    fn vm_target(&self, rec: &VmcsRecord, pfn: Pfn) -> Option<AddrRef> {
        match self.frame(pfn) {
            Ok(f) if f.state == FrameState::Vm(rec.vm) => Some(AddrRef::Frame(pfn)),
            Ok(_) => None,
            Err(_) => {
                let slot = self.mmio_range_for(pfn, 1)?;
                match self.mmio_slot(slot) {
                    Some(r) if r.vm == rec.vm => Some(AddrRef::Mmio(slot)),
                    _ => None,
                }
            }
        }
    }

    fn addr_ref_has_room(&self, target: AddrRef) -> bool {
        match target {
            AddrRef::Aux(pfn) => matches!(self.frame(pfn).map(|f| f.state),
                Ok(FrameState::Protected(Protected::Aux { refs, .. })) if refs < u16::MAX),
            AddrRef::Frame(pfn) => self
                .frame(pfn)
                .is_ok_and(|f| f.maps < u32::MAX && f.wmaps < u32::MAX),
            AddrRef::Mmio(slot) => self.mmio_slot(slot).is_some_and(|r| r.maps < u32::MAX),
        }
    }

    /// Takes or drops the pin a VMCS address field holds on its target.
    pub(crate) fn adjust_addr_ref(&mut self, target: AddrRef, add: bool) {
        let step = |c: &mut u32| {
            *c = if add {
                c.saturating_add(1)
            } else {
                c.saturating_sub(1)
            }
        };
        let ok = match target {
            AddrRef::Aux(pfn) => match self.frame_mut(pfn) {
                Ok(f) => match &mut f.state {
                    FrameState::Protected(Protected::Aux { refs, .. }) => {
                        *refs = if add {
                            refs.saturating_add(1)
                        } else {
                            refs.saturating_sub(1)
                        };
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            },
            AddrRef::Frame(pfn) => match self.frame_mut(pfn) {
                Ok(f) => {
                    step(&mut f.maps);
                    step(&mut f.wmaps);
                    true
                }
                Err(_) => false,
            },
            AddrRef::Mmio(slot) => match self.mmio_slot_mut(slot) {
                Some(r) => {
                    step(&mut r.maps);
                    true
                }
                None => false,
            },
        };
        if !ok {
            self.audit.anomaly();
        }
    }

    fn apply_vmcs_update(&mut self, slot: u16, update: RecordUpdate) {
        let Some(rec) = self.vmcs.get(usize::from(slot)).copied() else {
            self.audit.anomaly();
            return;
        };
        match update {
            RecordUpdate::None => return,
            RecordUpdate::EptRoot(root) => {
                if let Some(new) = root {
                    match self.ept_page_mut(new) {
                        Some(p) => p.refs = p.refs.saturating_add(1),
                        None => self.audit.anomaly(),
                    }
                }
                if let Some(old) = rec.ept_root {
                    self.drop_ept_ref(old);
                }
                if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
                    r.ept_root = root;
                }
            }
            RecordUpdate::Vpid(vpid) => {
                if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
                    r.vpid = Some(vpid);
                }
            }
            RecordUpdate::Link(link) => {
                if let Some(new) = link {
                    if let Some(s) = self.vmcs.get_mut(usize::from(new)) {
                        s.link_refs = s.link_refs.saturating_add(1);
                    }
                }
                if let Some(old) = rec.link {
                    if let Some(s) = self.vmcs.get_mut(usize::from(old)) {
                        s.link_refs = s.link_refs.saturating_sub(1);
                    }
                }
                if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
                    r.link = link;
                }
            }
            RecordUpdate::Secondary(value) => {
                if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
                    r.secondary = value;
                }
            }
            RecordUpdate::Address {
                slot: index,
                target,
            } => {
                if let Some(new) = target {
                    self.adjust_addr_ref(new, true);
                }
                if let Some(old) = rec.addr_refs.get(index).copied().flatten() {
                    self.adjust_addr_ref(old, false);
                }
                if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
                    if let Some(entry) = r.addr_refs.get_mut(index) {
                        *entry = target;
                    }
                    r.stale &= !(1u16 << index);
                }
            }
        }
        self.bump_epoch();
    }

    /// Number of VMCS address fields that name `pfn` (each holds one of its mappings).
    pub fn frame_vmcs_pins(&self, pfn: Pfn) -> u32 {
        let mut pins = 0u32;
        for r in self.vmcs.iter().filter(|r| r.live) {
            for a in r.addr_refs.iter() {
                if *a == Some(AddrRef::Frame(pfn)) {
                    pins = pins.saturating_add(1);
                }
            }
        }
        pins
    }

    /// The page allocator frees `pfn`, a VM frame that no EPT leaf maps but that VMCS address
    /// fields still name: L1 pages in a vmcs02 after a nested VM exit, which KVM unmaps without
    /// rewriting the fields.
    ///
    /// ```text
    /// VMCS field: NAMES pfn => STALE (the VMCS is not entered while the CPU would use it)
    /// ```
    ///
    /// Refused, changing nothing, if anything but those fields maps the frame, or if a VMCS
    /// that names it is current on a CPU (it may be running: the CPU may write the page now).
    pub fn unpin_freed_frame(&mut self, pfn: Pfn) -> Result<(), Denial> {
        let pins = self.frame_vmcs_pins(pfn);
        let verdict = self.unpin_verdict(pfn);
        self.record(CheckClass::Ownership, pfn.0, 0, u64::from(pins), verdict)?;
        if pins == 0 {
            return Ok(());
        }
        for i in 0..self.vmcs.len() {
            let Some(r) = self.vmcs.get_mut(i) else {
                break;
            };
            if !r.live {
                continue;
            }
            let mut dropped = 0u32;
            for (index, a) in r.addr_refs.iter_mut().enumerate() {
                if *a == Some(AddrRef::Frame(pfn)) {
                    *a = None;
                    r.stale |= 1u16 << index;
                    dropped = dropped.saturating_add(1);
                }
            }
            for _ in 0..dropped {
                self.adjust_addr_ref(AddrRef::Frame(pfn), false);
            }
        }
        self.bump_epoch();
        Ok(())
    }

    /// Checks [`Verifier::unpin_freed_frame`] without changing anything.
    pub fn unpin_verdict(&self, pfn: Pfn) -> Result<(), Denial> {
        let pins = self.frame_vmcs_pins(pfn);
        let f = self.frame(pfn)?;
        let region_maps = self.region_of(pfn).map_or(0, |r| r.maps);
        if !matches!(f.state, FrameState::Vm(_)) {
            return Err(Denial::WrongState);
        }
        if f.maps != pins || f.wmaps != pins || region_maps != 0 {
            return Err(Denial::FrameMapped);
        }
        let current = |slot: usize| {
            self.cpus
                .iter()
                .any(|c| c.current.is_some_and(|s| usize::from(s) == slot))
        };
        for (slot, r) in self.vmcs.iter().enumerate() {
            if r.live && r.addr_refs.contains(&Some(AddrRef::Frame(pfn))) && current(slot) {
                return Err(Denial::FrameMapped);
            }
        }
        Ok(())
    }

    /// Checks that the current VMCS of `cpu` may be entered with the pin-based and primary
    /// controls `pin` and `primary` (read from the VMCS): no address field that the CPU uses
    /// with these controls names a freed page.
    pub fn entry_verdict(&self, cpu: CpuId, pin: u32, primary: u32) -> Result<(), Denial> {
        let slot = self.cpu_record(cpu)?.current.ok_or(Denial::NoCurrentVmcs)?;
        let rec = self
            .vmcs
            .get(usize::from(slot))
            .ok_or(Denial::NoCurrentVmcs)?;
        if rec.stale == 0 {
            return Ok(());
        }
        let mut unused = 0u16;
        if pin & PIN_POSTED_INTR == 0 {
            unused |= 1 << PI_DESC_SLOT;
        }
        if primary & PRIMARY_TPR_SHADOW == 0 {
            unused |= 1 << VIRTUAL_APIC_SLOT;
        }
        unused |= 1 << APIC_ACCESS_SLOT;
        if rec.stale & !unused != 0 {
            return Err(Denial::StaleAddress);
        }
        Ok(())
    }

    /// Records that a VMPTRLD on `cpu` was refused and not executed. The CPU still has its
    /// previous VMCS current, which the caller may believe it replaced: no VMWRITE is accepted
    /// on `cpu` until a VMPTRLD succeeds, so such writes never reach another vCPU's VMCS.
    pub fn vmptrld_refused(&mut self, cpu: CpuId) {
        if let Ok(c) = self.cpu_record_mut(cpu) {
            c.current = None;
        }
        self.bump_epoch();
    }

    /// Checks and records `VMPTRLD` of the VMCS at `pa` on `cpu`.
    ///
    /// The VMCS must be registered, its vCPU and VM live, and it must not be active on another
    /// CPU (KVM clears it there first, with an IPI).
    pub fn vmptrld(&mut self, cpu: CpuId, pa: Hpa) -> Result<(), Denial> {
        let verdict = self.vmptrld_verdict(cpu, pa);
        let slot = self.record(
            CheckClass::VmxInstruction,
            pa.0,
            0,
            u64::from(cpu.0),
            verdict,
        )?;
        if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
            r.active_cpu = Some(cpu);
        }
        if let Ok(c) = self.cpu_record_mut(cpu) {
            c.current = Some(slot);
        }
        self.bump_epoch();
        Ok(())
    }

    fn vmptrld_verdict(&self, cpu: CpuId, pa: Hpa) -> Result<u16, Denial> {
        if !self.cpu_record(cpu)?.vmx_on {
            return Err(Denial::VmxOff);
        }
        if !pa.is_page_aligned() {
            return Err(Denial::UnknownVmcs);
        }
        let slot = self.vmcs_slot_of(pa.pfn())?;
        let rec = self
            .vmcs
            .get(usize::from(slot))
            .ok_or(Denial::UnknownVmcs)?;
        self.vcpu_record(rec.vcpu)?;
        self.vm_record(rec.vm)?;
        match rec.active_cpu {
            Some(other) if other != cpu => Err(Denial::VmcsActiveElsewhere),
            _ => Ok(slot),
        }
    }

    /// Checks and records `VMCLEAR` of the VMCS at `pa` on `cpu`.
    pub fn vmclear(&mut self, cpu: CpuId, pa: Hpa) -> Result<(), Denial> {
        let verdict = self.vmclear_verdict(cpu, pa);
        let slot = self.record(
            CheckClass::VmxInstruction,
            pa.0,
            0,
            u64::from(cpu.0),
            verdict,
        )?;
        if let Some(r) = self.vmcs.get_mut(usize::from(slot)) {
            r.active_cpu = None;
        }
        if let Ok(c) = self.cpu_record_mut(cpu) {
            if c.current == Some(slot) {
                c.current = None;
            }
        }
        self.bump_epoch();
        Ok(())
    }

    fn vmclear_verdict(&self, cpu: CpuId, pa: Hpa) -> Result<u16, Denial> {
        if !self.cpu_record(cpu)?.vmx_on {
            return Err(Denial::VmxOff);
        }
        if !pa.is_page_aligned() {
            return Err(Denial::UnknownVmcs);
        }
        let slot = self.vmcs_slot_of(pa.pfn())?;
        let rec = self
            .vmcs
            .get(usize::from(slot))
            .ok_or(Denial::UnknownVmcs)?;
        match rec.active_cpu {
            Some(other) if other != cpu => Err(Denial::VmcsActiveElsewhere),
            _ => Ok(slot),
        }
    }

    /// Checks and records `VMXON` on `cpu` with the region at `pa`.
    ///
    /// The region must be the one registered for this CPU. After this call `CR4.VMXE` must
    /// be set (and may not be cleared) on this CPU until [`Verifier::vmxoff`].
    pub fn vmxon(&mut self, cpu: CpuId, pa: Hpa) -> Result<(), Denial> {
        let verdict = self.cpu_record(cpu).and_then(|c| {
            if !c.vmx_on && pa.is_page_aligned() && c.vmxon_region == Some(pa.pfn()) {
                Ok(())
            } else {
                Err(Denial::BadVmxon)
            }
        });
        self.record(
            CheckClass::VmxInstruction,
            pa.0,
            0,
            u64::from(cpu.0),
            verdict,
        )?;
        if let Ok(c) = self.cpu_record_mut(cpu) {
            c.vmx_on = true;
            c.current = None;
        }
        self.bump_epoch();
        Ok(())
    }

    /// Records `VMXOFF` on `cpu` (also the emergency path). Every VMCS active on this CPU is
    /// considered cleared, as KVM clears them all first. After this call `CR4.VMXE` must be
    /// clear on this CPU.
    pub fn vmxoff(&mut self, cpu: CpuId) -> Result<(), Denial> {
        let verdict = self.cpu_record(cpu).and_then(|c| {
            if c.vmx_on {
                Ok(())
            } else {
                Err(Denial::VmxOff)
            }
        });
        self.record(CheckClass::VmxInstruction, u64::from(cpu.0), 0, 0, verdict)?;
        for r in self.vmcs.iter_mut() {
            if r.live && r.active_cpu == Some(cpu) {
                r.active_cpu = None;
            }
        }
        if let Ok(c) = self.cpu_record_mut(cpu) {
            c.vmx_on = false;
            c.current = None;
        }
        self.bump_epoch();
        Ok(())
    }

    /// True if `cpu` is in VMX operation.
    pub fn vmx_on(&self, cpu: CpuId) -> bool {
        self.cpu_record(cpu).is_ok_and(|c| c.vmx_on)
    }

    /// The VPID named by a VMCS's last verified `VIRTUAL_PROCESSOR_ID`.
    pub fn vmcs_vpid(&self, pfn: Pfn) -> Option<Vpid> {
        let slot = self.vmcs_slot_of(pfn).ok()?;
        self.vmcs.get(usize::from(slot)).and_then(|r| r.vpid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_table_slot_matches_the_field_table() {
        assert_eq!(
            address_slot(VmcsField::PID_POINTER_TABLE),
            Some(PID_TABLE_SLOT)
        );
    }
}
