// SPDX-License-Identifier: GPL-2.0

//! Why the verifier refused a write or a transition, and which class of check refused it.
//!
//! A [`Denial`] is returned by every `check_*` function and recorded in the audit ring. The
//! kernel glue maps every denial to `-EPERM` (or `-EINVAL` for malformed arguments, see
//! [`Denial::is_malformed`]) and never performs the refused write.

/// The family of check that produced a verdict; one pair of counters is kept per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CheckClass {
    /// A `vmwrite` to the current VMCS.
    Vmcs = 0,
    /// A write of an EPT paging-structure entry.
    Ept = 1,
    /// A write of the `EPT_POINTER` VMCS field.
    Eptp = 2,
    /// A write of the host `CR0`.
    Cr0 = 3,
    /// A write of the host `CR3`.
    Cr3 = 4,
    /// A write of the host `CR4`.
    Cr4 = 5,
    /// A page-ownership transition (donate, reclaim, share, protect, ...).
    Ownership = 6,
    /// `VMXON`, `VMXOFF`, `VMPTRLD` or `VMCLEAR`.
    VmxInstruction = 7,
    /// Registration of VMs, vCPUs, VMCSs, EPT pages, VPIDs and other records.
    Registration = 8,
}

impl CheckClass {
    /// Number of classes, the length of the counter array.
    pub const COUNT: usize = 9;

    /// All classes, in counter order.
    pub const ALL: [CheckClass; CheckClass::COUNT] = [
        CheckClass::Vmcs,
        CheckClass::Ept,
        CheckClass::Eptp,
        CheckClass::Cr0,
        CheckClass::Cr3,
        CheckClass::Cr4,
        CheckClass::Ownership,
        CheckClass::VmxInstruction,
        CheckClass::Registration,
    ];

    /// Short lower-case name, for sysfs and log lines.
    pub fn name(self) -> &'static str {
        match self {
            CheckClass::Vmcs => "vmcs",
            CheckClass::Ept => "ept",
            CheckClass::Eptp => "eptp",
            CheckClass::Cr0 => "cr0",
            CheckClass::Cr3 => "cr3",
            CheckClass::Cr4 => "cr4",
            CheckClass::Ownership => "ownership",
            CheckClass::VmxInstruction => "vmx",
            CheckClass::Registration => "registration",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Reason for refusing a write or a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Denial {
    // --- Malformed arguments and exhausted tables -------------------------------------------
    /// A frame number lies outside the frame table and outside every MMIO range.
    FrameOutOfRange,
    /// A range of frames is empty, overflows, or is not aligned as required.
    BadRange,
    /// The `VmId` does not name a live VM (never created, or destroyed since).
    UnknownVm,
    /// The `VcpuId` does not name a live vCPU.
    UnknownVcpu,
    /// The CPU number is outside the per-CPU table.
    UnknownCpu,
    /// A table supplied by the caller is full (VMs, vCPUs, VMCSs, shares, MMIO ranges).
    TableFull,
    /// A counter would overflow; the operation is refused instead of wrapping.
    CounterOverflow,
    /// The configuration given at initialisation is inconsistent.
    BadConfig,

    // --- Ownership --------------------------------------------------------------------------
    /// The frame is not in the state this transition starts from.
    WrongState,
    /// The frame is still mapped by an EPT leaf; it must be unmapped first.
    FrameMapped,
    /// The frame is shared and still has users other than the one leaving.
    SharedInUse,
    /// The protected page was freed as an EPT page and no global `INVEPT` has been done since.
    NeedsInvept,
    /// The VPID was released and no global `INVVPID` has been done since.
    NeedsInvvpid,
    /// The VM still has vCPUs, EPT pages, auxiliary pages or MMIO ranges.
    VmBusy,
    /// The vCPU still has VMCSs, auxiliary pages or VPIDs.
    VcpuBusy,
    /// The page is still named by a VMCS address field.
    PageInUse,
    /// The MMIO range overlaps the frame table or another MMIO range.
    MmioOverlap,
    /// The frame is not what the VM's VMM maps at the host address the VM's memslot gives for
    /// the guest frame, so it is not the VM's memory.
    NotVmMemory,
    /// No memslot of the VM covers the guest frame (or the leaf straddles a slot's end).
    NoMemslot,
    /// The memslot is malformed: empty, overflowing, or not at a user address.
    BadMemslot,
    /// The call names a VM but does not come from that VM's VMM process (nor from its
    /// teardown), so it cannot be checked against the VMM's memory; or it names a vCPU whose
    /// VMCS is not the one current on this CPU.
    WrongContext,
    /// The frame is memory the kernel keeps for itself (slab, page tables, kernel image,
    /// reserved or free pages); it is never given to a VM.
    KernelFrame,
    /// The frame is user memory (mapped into a process); it is never made a HyperPS page.
    UserFrame,
    /// A writable mapping of memory the VMM maps read-only, or of a read-only memslot.
    ReadOnlyMapping,
    /// A frame was reported freed while the kernel still holds a reference to its page: the
    /// free op was called without a free.
    FrameInUse,
    /// A HyperPS-protected page (or the zero page, or a host page-table root) was handed to
    /// the page allocator; it is kept allocated instead.
    ProtectedFree,
    /// A KSM merge of two frames whose contents differ.
    ContentMismatch,
    /// A paging-structure page HyperPS did not allocate, or one of another VM.
    NotPtPage,
    /// A report that is only accepted while the backend registers (existing page-table roots).
    RegistrationClosed,
    /// A new page-table root that is not what `pgd_alloc()` makes: user half not empty or
    /// kernel half not the kernel's.
    PgdNotNew,
    /// The handle names a kernel object HyperPS already knows.
    DuplicateHandle,

    // --- EPT entries ------------------------------------------------------------------------
    /// The table written to is not a registered EPT page.
    NotEptPage,
    /// The entry index is not below 512.
    BadEptIndex,
    /// Reserved bits are set (physical-address bits above MAXPHYADDR, bits 7:3 of a
    /// non-leaf entry, bit 7 at level 4 or 5, misaligned huge-page address bits).
    EptReservedBits,
    /// Bits that KVM 6.12 never sets in an entry of this kind are set.
    EptUnexpectedBits,
    /// The memory type is 2, 3 or 7, which the CPU treats as a misconfiguration.
    EptBadMemoryType,
    /// The permission bits form a combination KVM never writes (write-only, or execute-only
    /// without execute-only support).
    EptBadPermissions,
    /// A non-present value that is none of the encodings KVM 6.12 uses.
    EptUnknownEncoding,
    /// The writable bit is set without KVM's MMU-writable and host-writable software bits.
    EptWritableInvariant,
    /// A huge page at a level where the configuration does not allow it.
    EptHugePageNotAllowed,
    /// A leaf maps a frame owned by another VM.
    EptForeignFrame,
    /// A leaf maps a frame owned by the host (or a host page-table root).
    EptHostFrame,
    /// A leaf maps a HyperPS-protected page.
    EptProtectedFrame,
    /// A leaf maps a shared (KSM) frame or the zero page with write permission.
    EptWritableShared,
    /// A leaf maps a frame whose owning VM was destroyed and which has not been reclaimed.
    EptOrphanedFrame,
    /// A huge leaf covers frames that are not all owned by the VM (or all zero-page frames).
    EptMixedHugePage,
    /// A non-leaf entry points to a page that is not a registered EPT page of this VM at the
    /// level below.
    EptBadChild,
    /// The EPT page still has present entries or is still referenced.
    EptPageInUse,

    // --- EPT pointer ------------------------------------------------------------------------
    /// The EPTP names a page that is not a registered root of the VM owning the VMCS.
    EptpBadRoot,
    /// The EPTP memory type is not write-back.
    EptpBadMemoryType,
    /// The EPTP page-walk length is neither 4 nor 5, or does not match the root's level.
    EptpBadWalkLength,
    /// The EPTP accessed/dirty enable bit does not match the configuration.
    EptpBadAccessDirty,
    /// Reserved EPTP bits are set.
    EptpReservedBits,

    // --- VMCS -------------------------------------------------------------------------------
    /// The field encoding is not one the verifier knows.
    UnknownField,
    /// The field is known but KVM never writes it, so a write is refused.
    FieldNotWritable,
    /// The value does not fit in the field's width.
    ValueTooWide,
    /// The value differs from a pinned constant.
    PinnedMismatch,
    /// The value differs from the live host state that the kernel passed in.
    HostStateMismatch,
    /// A control field value has a required-1 bit clear or a required-0 bit set.
    ControlViolation,
    /// An address field does not point to a page this VMCS may reference.
    BadAddress,
    /// The VPID is zero, not assigned, or assigned to another vCPU.
    BadVpid,
    /// No VMCS is current on this CPU (or the CPU is not in VMX operation).
    NoCurrentVmcs,
    /// The field may not be written while a shadow VMCS is current.
    NotShadowField,
    /// The VMCS is not registered.
    UnknownVmcs,
    /// The VMCS is active on another CPU and must be cleared there first.
    VmcsActiveElsewhere,
    /// The VMCS is active or referenced and cannot be unregistered.
    VmcsInUse,
    /// The VMCS link pointer is neither INVALID nor a registered shadow VMCS of this vCPU, or
    /// shadowing is enabled without one.
    BadLinkPointer,
    /// An MSR load/store count exceeds the configured maximum.
    MsrCountTooLarge,
    /// An MSR list the CPU will use lies outside the MSR-list pages of the VMCS's vCPU.
    MsrListAddress,
    /// An MSR-load list entry names an MSR KVM never switches, or a VM-entry entry whose MSR
    /// the VM-exit list does not restore.
    MsrListEntry,
    /// A VM-exit MSR-load entry would load a value other than the live host value.
    MsrListHostValue,
    /// The VMCS is about to be entered while an address field that the CPU uses at VM entry
    /// still names a page freed since it was written.
    StaleAddress,
    /// A posted-interrupt descriptor would have an interrupt sent with a vector other than
    /// KVM's, or to another CPU than the one about to run the vCPU.
    PiDescriptor,
    /// The MSR bitmap lets the guest read or write an MSR directly that neither the VMCS nor
    /// KVM switches between guest and host.
    MsrBitmapPassThrough,
    /// State that the VM-entry controls load (`EFER`, CET) would not be restored to the
    /// host's at the VM exit.
    HostStateNotRestored,

    // --- VMX instructions and control registers ---------------------------------------------
    /// `VMXON` with a region that is not the registered region of this CPU, or already on.
    BadVmxon,
    /// `VMXOFF` (or a VMX instruction) on a CPU that is not in VMX operation.
    VmxOff,
    /// `CR0.PE`, `CR0.PG` or `CR0.WP` would be cleared, or reserved bits set.
    Cr0Pinned,
    /// A pinned `CR4` bit would be cleared.
    Cr4Pinned,
    /// `CR4.VMXE` would change outside `VMXON`/`VMXOFF`.
    Cr4Vmxe,
    /// `CR0.CD` or `CR0.NW` would be set.
    Cr0CacheDisable,
    /// `CR4.PCIDE` would differ from its value at initialisation.
    Cr4Pcide,
    /// `CR3` names a page that is not a registered page-table root.
    Cr3UnknownRoot,
    /// `CR3` names the HyperPS Space's own root.
    Cr3HyperPsRoot,
    /// `CR3` carries a PCID that host code may not use.
    Cr3BadPcid,
    /// `CR3` has reserved bits set.
    Cr3ReservedBits,
}

impl Denial {
    /// True for denials caused by malformed arguments rather than by a policy rule.
    pub fn is_malformed(self) -> bool {
        matches!(
            self,
            Denial::FrameOutOfRange
                | Denial::BadRange
                | Denial::UnknownCpu
                | Denial::BadEptIndex
                | Denial::BadConfig
        )
    }
}
