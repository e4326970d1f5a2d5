// SPDX-License-Identifier: GPL-2.0

//! The verifier's own records, and the caller-supplied tables that hold them.
//!
//! The verifier never trusts KVM's metadata (`struct kvm_mmu_page`, `loaded_vmcs` caches). It keeps
//! its own record of every frame, every 2 MiB region, every VM, vCPU, VMCS, KSM share and VPID.
//! All of it lives in slices that the caller allocates once (the kernel uses `vmalloc`), so the
//! verifier never allocates and every lookup is an index into a slice: O(1), no trees.
//!
//! Sizes on x86-64 (checked by a unit test): a [`FrameRecord`] is 20 bytes per 4 KiB frame
//! (about 0.5% of RAM); a [`RegionRecord`] is 20 bytes per 2 MiB.

use super::audit::AuditRecord;
use super::types::{CpuId, EptLevel, Pfn, SharedId, VcpuId, VmId, Vpid};

/// Which component owns a frame, and in what role. See the state table in the module
/// documentation of [`super::ownership`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameState {
    /// Owned by the host kernel. Never mapped by any EPT leaf.
    Host,
    /// A host page-table root that `CR3` and `HOST_CR3` may name. Never donated or mapped.
    HostPgd,
    /// A frame of the shared zero page or of the huge zero page: mapped read-only by any VM.
    Zero,
    /// Owned by one VM. If the VM has been destroyed the frame is *orphaned*: it behaves as a
    /// frame awaiting scrub, and can only be reclaimed.
    Vm(VmId),
    /// A KSM-merged frame, mapped read-only into any number of VMs.
    Shared(SharedId),
    /// Owned by HyperPS: the protected pool and everything allocated from it.
    Protected(Protected),
}

/// The role of a HyperPS-protected page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protected {
    /// A free page of the protected pool. `invept_pending` holds the INVEPT generation at the
    /// time the page stopped being an EPT page; the page may be reused or returned to the host
    /// only after a later global INVEPT.
    Pool {
        /// INVEPT generation the page is waiting to see pass, if it was an EPT page.
        invept_pending: Option<u32>,
    },
    /// An EPT paging-structure page of a VM.
    Ept(EptPage),
    /// A VMCS region, described by the VMCS table entry `slot`.
    Vmcs {
        /// Index into the VMCS table.
        slot: u16,
    },
    /// The VMXON region of a CPU.
    Vmxon {
        /// The CPU this region belongs to.
        cpu: CpuId,
    },
    /// A page the CPU reads or writes on behalf of a vCPU or VM (MSR bitmap, MSR lists, PML
    /// buffer, #VE information, posted-interrupt descriptor, virtual-APIC page, PID table,
    /// VMREAD/VMWRITE bitmaps).
    Aux {
        /// Who the page belongs to.
        owner: AuxOwner,
        /// What the page is for.
        kind: AuxKind,
        /// Number of VMCS address fields that currently name this page.
        refs: u16,
    },
    /// The root page table of the HyperPS Space. `CR3` may never name it from outside.
    HyperPsRoot,
    /// A page of HyperPS's own records (the frame table and the other tables): never a
    /// VM's, never another role, never freed.
    Own,
}

/// Record of an EPT paging-structure page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EptPage {
    /// The VM whose EPT this page belongs to.
    pub vm: VmId,
    /// Level of the page: 1 holds 4 KiB leaves, 4 or 5 may be a root.
    pub level: EptLevel,
    /// Number of entries that reference a frame, an MMIO page or a child page.
    pub entries: u16,
    /// Number of non-leaf entries and VMCS EPT pointers that point to this page.
    pub refs: u16,
}

/// Owner of an auxiliary page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuxOwner {
    /// Per-vCPU page.
    Vcpu(VcpuId),
    /// Per-VM page.
    Vm(VmId),
    /// Shared by all VMs (the VMREAD/VMWRITE bitmaps).
    Global,
}

/// Purpose of an auxiliary page; address fields of the VMCS must point at the right kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuxKind {
    /// MSR bitmap (`MSR_BITMAP`).
    MsrBitmap,
    /// VM-entry/VM-exit MSR load and store lists.
    MsrList,
    /// Page-modification log (`PML_ADDRESS`).
    Pml,
    /// #VE information area (`VE_INFORMATION_ADDRESS`).
    VeInfo,
    /// Posted-interrupt descriptor (`POSTED_INTR_DESC_ADDR`).
    PiDesc,
    /// Virtual-APIC page (`VIRTUAL_APIC_PAGE_ADDR`).
    VirtualApic,
    /// PID-pointer table for IPI virtualisation (`PID_POINTER_TABLE`).
    PidTable,
    /// VMREAD bitmap.
    VmreadBitmap,
    /// VMWRITE bitmap.
    VmwriteBitmap,
}

/// Per-frame record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameRecord {
    pub(crate) state: FrameState,
    /// EPT 4 KiB leaves that reference this frame.
    pub(crate) maps: u32,
    /// The subset of `maps` with write permission.
    pub(crate) wmaps: u32,
}

impl FrameRecord {
    /// A host-owned, unmapped frame: the state every frame starts in.
    pub const HOST: FrameRecord = FrameRecord {
        state: FrameState::Host,
        maps: 0,
        wmaps: 0,
    };

    /// Ownership state of the frame.
    pub fn state(&self) -> FrameState {
        self.state
    }
}

impl Default for FrameRecord {
    fn default() -> Self {
        FrameRecord::HOST
    }
}

/// Owner identity used for the 2 MiB region summaries (the role inside HyperPS does not matter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OwnerKey {
    Host,
    HostPgd,
    Zero,
    Vm(VmId),
    Shared(SharedId),
    Protected,
}

impl OwnerKey {
    pub(crate) fn of(state: FrameState) -> OwnerKey {
        match state {
            FrameState::Host => OwnerKey::Host,
            FrameState::HostPgd => OwnerKey::HostPgd,
            FrameState::Zero => OwnerKey::Zero,
            FrameState::Vm(vm) => OwnerKey::Vm(vm),
            FrameState::Shared(id) => OwnerKey::Shared(id),
            FrameState::Protected(_) => OwnerKey::Protected,
        }
    }
}

/// Per-2 MiB-region record: who owns the region's frames, and 2 MiB mappings of the region.
///
/// `tag_count` is exactly the number of frames of the region whose owner is `tag`. The region
/// is uniformly owned by X if and only if `tag == X` and `tag_count` equals the region size,
/// which makes a 2 MiB leaf check O(1). When `tag_count` drops to zero the tag moves to the
/// next frame's owner and the region is recounted (at most 512 steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionRecord {
    pub(crate) tag: OwnerKey,
    pub(crate) tag_count: u16,
    /// EPT 2 MiB leaves (and 1 GiB leaves, counted once per region) that map this region.
    pub(crate) maps: u32,
    /// The subset of `maps` with write permission.
    pub(crate) wmaps: u32,
}

impl RegionRecord {
    /// An empty region record; [`super::Verifier::new`] initialises every region.
    pub const EMPTY: RegionRecord = RegionRecord {
        tag: OwnerKey::Host,
        tag_count: 0,
        maps: 0,
        wmaps: 0,
    };
}

impl Default for RegionRecord {
    fn default() -> Self {
        RegionRecord::EMPTY
    }
}

/// Per-VM record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmRecord {
    pub(crate) gen: u16,
    pub(crate) live: bool,
    /// Slot retired because its generation would wrap.
    pub(crate) retired: bool,
    pub(crate) owned_frames: u64,
    pub(crate) ept_pages: u32,
    pub(crate) vcpus: u32,
    pub(crate) aux_pages: u32,
    pub(crate) mmio_ranges: u32,
}

impl VmRecord {
    /// A free VM slot.
    pub const FREE: VmRecord = VmRecord {
        gen: 0,
        live: false,
        retired: false,
        owned_frames: 0,
        ept_pages: 0,
        vcpus: 0,
        aux_pages: 0,
        mmio_ranges: 0,
    };
}

impl Default for VmRecord {
    fn default() -> Self {
        VmRecord::FREE
    }
}

/// Per-vCPU record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuRecord {
    pub(crate) gen: u16,
    pub(crate) live: bool,
    pub(crate) retired: bool,
    pub(crate) vm: VmId,
    pub(crate) vmcs: u32,
    /// The shadow VMCSs among `vmcs`, so that a write of the secondary controls needs no
    /// scan of the VMCS table.
    pub(crate) shadows: u32,
    pub(crate) aux_pages: u32,
    pub(crate) vpids: u32,
}

impl VcpuRecord {
    /// A free vCPU slot.
    pub const FREE: VcpuRecord = VcpuRecord {
        gen: 0,
        live: false,
        retired: false,
        vm: VmId::new(0, 0),
        vmcs: 0,
        shadows: 0,
        aux_pages: 0,
        vpids: 0,
    };
}

impl Default for VcpuRecord {
    fn default() -> Self {
        VcpuRecord::FREE
    }
}

/// What a VMCS is used for; the field policy depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmcsKind {
    /// The VMCS KVM uses to run L1 (the VM itself).
    Vmcs01,
    /// The VMCS KVM uses to run an L2 guest on behalf of L1.
    Vmcs02,
    /// A shadow VMCS that L1 reads and writes without exits; never used to run a guest.
    Shadow,
}

/// Per-VMCS record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmcsRecord {
    pub(crate) live: bool,
    pub(crate) pfn: Pfn,
    pub(crate) vcpu: VcpuId,
    pub(crate) vm: VmId,
    pub(crate) kind: VmcsKind,
    /// CPU on which the VMCS is active (loaded by VMPTRLD and not yet cleared).
    pub(crate) active_cpu: Option<CpuId>,
    /// EPT root named by the last verified `EPT_POINTER` write.
    pub(crate) ept_root: Option<Pfn>,
    /// VPID of the last verified `VIRTUAL_PROCESSOR_ID` write.
    pub(crate) vpid: Option<Vpid>,
    /// Last verified secondary execution controls.
    pub(crate) secondary: u32,
    /// Shadow VMCS slot named by the last verified `VMCS_LINK_POINTER` write.
    pub(crate) link: Option<u16>,
    /// Number of VMCSs whose link pointer names this (shadow) VMCS.
    pub(crate) link_refs: u16,
    /// Pages named by the last verified value of each address field (see
    /// [`super::vmcs_fields::address_slot`]); they are pinned while named.
    pub(crate) addr_refs: [Option<AddrRef>; ADDRESS_SLOTS],
    /// Address slots (bit per slot) whose page was freed while named: the VMCS may not be
    /// entered while the CPU would use one, until a verified write names a page again.
    pub(crate) stale: u16,
}

/// Number of VMCS address fields whose targets are pinned.
pub const ADDRESS_SLOTS: usize = 12;

/// A page named by a VMCS address field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrRef {
    /// A HyperPS auxiliary page (its `refs` counts the reference).
    Aux(Pfn),
    /// A frame owned by the VM (its mapping counts, writable, count the reference: the CPU may
    /// write it, so it can be neither reclaimed nor shared while named).
    Frame(Pfn),
    /// A page of an MMIO range of the VM.
    Mmio(usize),
}

impl VmcsRecord {
    /// A free VMCS slot.
    pub const FREE: VmcsRecord = VmcsRecord {
        live: false,
        pfn: Pfn(0),
        vcpu: VcpuId::new(0, 0),
        vm: VmId::new(0, 0),
        kind: VmcsKind::Vmcs01,
        active_cpu: None,
        ept_root: None,
        vpid: None,
        secondary: 0,
        link: None,
        link_refs: 0,
        addr_refs: [None; ADDRESS_SLOTS],
        stale: 0,
    };
}

impl Default for VmcsRecord {
    fn default() -> Self {
        VmcsRecord::FREE
    }
}

/// Record of a KSM share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShareRecord {
    pub(crate) pfn: Option<Pfn>,
    pub(crate) users: u32,
    /// Next free slot while this one is free (intrusive free list).
    pub(crate) next_free: Option<u32>,
}

impl ShareRecord {
    /// A free share slot.
    pub const FREE: ShareRecord = ShareRecord {
        pfn: None,
        users: 0,
        next_free: None,
    };
}

impl Default for ShareRecord {
    fn default() -> Self {
        ShareRecord::FREE
    }
}

/// Record of one VPID value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VpidRecord {
    pub(crate) owner: Option<VcpuId>,
    /// INVVPID generation at release; the VPID may be reassigned after a later global INVVPID.
    pub(crate) invvpid_pending: Option<u32>,
}

impl VpidRecord {
    /// An unassigned VPID.
    pub const FREE: VpidRecord = VpidRecord {
        owner: None,
        invvpid_pending: None,
    };
}

impl Default for VpidRecord {
    fn default() -> Self {
        VpidRecord::FREE
    }
}

/// Per-CPU record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuRecord {
    pub(crate) vmxon_region: Option<Pfn>,
    pub(crate) vmx_on: bool,
    /// VMCS slot that is current on this CPU.
    pub(crate) current: Option<u16>,
}

impl CpuRecord {
    /// A CPU outside VMX operation with no VMXON region.
    pub const OFF: CpuRecord = CpuRecord {
        vmxon_region: None,
        vmx_on: false,
        current: None,
    };
}

impl Default for CpuRecord {
    fn default() -> Self {
        CpuRecord::OFF
    }
}

/// A range of device frames beyond the frame table, assigned to one VM (VFIO BARs, PFNMAP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MmioRange {
    pub(crate) first: Pfn,
    pub(crate) frames: u64,
    pub(crate) vm: VmId,
    pub(crate) maps: u32,
}

/// The storage the caller supplies. Every slice is reset by [`super::Verifier::new`].
///
/// * `frames`: one record per 4 KiB frame of host RAM, indexed by frame number.
/// * `regions`: one record per 2 MiB of `frames`, rounded up
///   ([`Tables::regions_needed`]).
/// * `vms`, `vcpus`, `vmcs`: at most `u16::MAX` slots each.
/// * `shares`: one slot per concurrently KSM-merged frame.
/// * `vpids`: one record per VPID value, normally 65536.
/// * `cpus`: one record per possible CPU.
/// * `audit`: the refusal ring; may be empty.
pub struct Tables<'a> {
    /// Per-frame records.
    pub frames: &'a mut [FrameRecord],
    /// Per-2 MiB-region records.
    pub regions: &'a mut [RegionRecord],
    /// VM table.
    pub vms: &'a mut [VmRecord],
    /// vCPU table.
    pub vcpus: &'a mut [VcpuRecord],
    /// VMCS table.
    pub vmcs: &'a mut [VmcsRecord],
    /// KSM share table.
    pub shares: &'a mut [ShareRecord],
    /// VPID table.
    pub vpids: &'a mut [VpidRecord],
    /// Per-CPU table.
    pub cpus: &'a mut [CpuRecord],
    /// Refusal ring.
    pub audit: &'a mut [AuditRecord],
}

impl Tables<'_> {
    /// Number of region records needed for `frames` frame records.
    pub fn regions_needed(frames: usize) -> usize {
        frames.div_ceil(512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-frame and per-region costs documented at the top of this file.
    #[test]
    fn record_sizes() {
        assert_eq!(core::mem::size_of::<FrameRecord>(), 20);
        assert_eq!(core::mem::size_of::<RegionRecord>(), 20);
    }

    #[test]
    fn regions_needed_rounds_up() {
        assert_eq!(Tables::regions_needed(0), 0);
        assert_eq!(Tables::regions_needed(1), 1);
        assert_eq!(Tables::regions_needed(512), 1);
        assert_eq!(Tables::regions_needed(513), 2);
    }
}
