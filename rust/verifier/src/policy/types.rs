// SPDX-License-Identifier: GPL-2.0

//! Plain-value newtypes that cross the verifier boundary.
//!
//! Everything the kernel hands to the verifier is a copied value wrapped in one of these types,
//! so that a guest-physical address cannot be passed where a host frame number is expected, a
//! VMCS field encoding cannot be confused with its value, and so on. None of them carries a
//! pointer.

/// Size of a 4 KiB page, the unit of the frame table.
pub const PAGE_SIZE: u64 = 4096;
/// Bits of an address below the frame number.
pub const PAGE_SHIFT: u32 = 12;
/// Number of 4 KiB frames covered by a 2 MiB page (and by one region record).
pub const FRAMES_PER_2M: u64 = 512;
/// Number of 4 KiB frames covered by a 1 GiB page.
pub const FRAMES_PER_1G: u64 = 512 * 512;
/// Number of 64-bit entries in one EPT paging-structure page.
pub const EPT_ENTRIES_PER_PAGE: u16 = 512;

/// Host physical frame number (host physical address >> 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The host physical address of the first byte of this frame, if it fits in 64 bits.
    pub fn to_hpa(self) -> Option<Hpa> {
        self.0.checked_mul(PAGE_SIZE).map(Hpa)
    }

    /// The frame `n` frames after this one, if it does not overflow.
    pub fn checked_add(self, n: u64) -> Option<Pfn> {
        self.0.checked_add(n).map(Pfn)
    }
}

/// Host physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hpa(pub u64);

impl Hpa {
    /// The frame that contains this address.
    pub fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }

    /// The byte offset of this address inside its 4 KiB frame.
    pub fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }

    /// True if the address is 4 KiB aligned.
    pub fn is_page_aligned(self) -> bool {
        self.page_offset() == 0
    }
}

/// Identifies a VM known to the verifier: a slot in the VM table plus the slot's generation.
///
/// The generation changes when the VM is destroyed, so a stale `VmId` held by the kernel (or
/// recorded in a frame that the VM once owned) never names the next VM that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmId {
    slot: u16,
    gen: u16,
}

impl VmId {
    /// Rebuilds an identifier from the value returned by [`VmId::to_raw`].
    pub fn from_raw(raw: u32) -> VmId {
        VmId {
            slot: (raw >> 16) as u16,
            gen: (raw & 0xffff) as u16,
        }
    }

    /// Packs the identifier into one `u32` that the kernel can keep in `struct kvm`.
    pub fn to_raw(self) -> u32 {
        (u32::from(self.slot) << 16) | u32::from(self.gen)
    }

    /// Index of the VM table slot.
    pub fn slot(self) -> u16 {
        self.slot
    }

    /// Generation of the VM table slot when this VM was created.
    pub fn gen(self) -> u16 {
        self.gen
    }

    pub(crate) const fn new(slot: u16, gen: u16) -> VmId {
        VmId { slot, gen }
    }
}

/// Identifies a vCPU known to the verifier: a slot in the vCPU table plus its generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuId {
    slot: u16,
    gen: u16,
}

impl VcpuId {
    /// Rebuilds an identifier from the value returned by [`VcpuId::to_raw`].
    pub fn from_raw(raw: u32) -> VcpuId {
        VcpuId {
            slot: (raw >> 16) as u16,
            gen: (raw & 0xffff) as u16,
        }
    }

    /// Packs the identifier into one `u32`.
    pub fn to_raw(self) -> u32 {
        (u32::from(self.slot) << 16) | u32::from(self.gen)
    }

    /// Index of the vCPU table slot.
    pub fn slot(self) -> u16 {
        self.slot
    }

    pub(crate) const fn new(slot: u16, gen: u16) -> VcpuId {
        VcpuId { slot, gen }
    }

    pub(crate) fn gen(self) -> u16 {
        self.gen
    }
}

/// Logical CPU number, an index into the per-CPU table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuId(pub u32);

/// Identifies a KSM-merged frame that is mapped read-only into several VMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharedId(pub u32);

/// Virtual-processor identifier as written to the VMCS (`VIRTUAL_PROCESSOR_ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vpid(pub u16);

/// Level of an EPT paging-structure page: 1 holds 4 KiB leaves, 4 or 5 is a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EptLevel(u8);

impl EptLevel {
    /// Level 1: the page holds 4 KiB leaves.
    pub const L1: EptLevel = EptLevel(1);
    /// Level 2: 2 MiB leaves or pointers to level-1 pages.
    pub const L2: EptLevel = EptLevel(2);
    /// Level 3: 1 GiB leaves or pointers to level-2 pages.
    pub const L3: EptLevel = EptLevel(3);
    /// Level 4: root of a 4-level walk.
    pub const L4: EptLevel = EptLevel(4);
    /// Level 5: root of a 5-level walk.
    pub const L5: EptLevel = EptLevel(5);

    /// Validates a raw level; only 1 to 5 exist.
    pub fn new(level: u8) -> Option<EptLevel> {
        if (1..=5).contains(&level) {
            Some(EptLevel(level))
        } else {
            None
        }
    }

    /// The raw level number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The level of the pages that entries of this level point to.
    pub fn child(self) -> Option<EptLevel> {
        EptLevel::new(self.0.wrapping_sub(1))
    }
}

/// A 64-bit EPT paging-structure entry value (an "SPTE" in KVM's words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EptEntry(pub u64);

/// A VMCS field encoding as passed to `vmwrite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmcsField(pub u32);

/// Value for `CR0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cr0(pub u64);

/// Value for `CR3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cr3(pub u64);

/// Value for `CR4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cr4(pub u64);

/// Size of a mapping or of a block of frames moved in one transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB, one frame.
    Size4K,
    /// 2 MiB, 512 frames (one region).
    Size2M,
    /// 1 GiB, 262144 frames (512 regions).
    Size1G,
}

impl PageSize {
    /// Number of 4 KiB frames covered.
    pub fn frames(self) -> u64 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => FRAMES_PER_2M,
            PageSize::Size1G => FRAMES_PER_1G,
        }
    }
}
