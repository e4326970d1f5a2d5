// SPDX-License-Identifier: GPL-2.0

//! The small world of the exhaustive explorer (`tests/explore.rs`) and of the `backend` fuzz
//! target: the backend over a verifier, a mock kernel around it, every op a hook can be called
//! with, and the invariants that define isolation, checked independently of the backend.

#![allow(dead_code, unreachable_pub)]

#[path = "../common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;

use common::{leaf, nonleaf, NONPRESENT, PHYS_BITS, PINNED};
use hyperps_verifier::policy::backend::*;
use hyperps_verifier::policy::vmcs_fields::HostField;
use hyperps_verifier::*;

// --- The world ---------------------------------------------------------------------------------

/// Frames of the frame table: two 2 MiB regions, the second one the huge block.
pub(crate) const FRAMES: usize = 1024;
pub(crate) const VMXON: u64 = 8;
/// Root, level 3 and level 2 of each VM's EPT.
pub(crate) const ROOT: [u64; 2] = [16, 20];
pub(crate) const L3: [u64; 2] = [17, 21];
pub(crate) const L2: [u64; 2] = [18, 22];
/// The two level-1 tables, allocated and linked in turn by either VM.
pub(crate) const TABLE: [u64; 2] = [24, 25];
/// vmcs01 of vCPU 0 and 1.
pub(crate) const VMCS: [u64; 2] = [28, 29];
/// A page the kernel uses for itself (slab), never HyperPS's.
pub(crate) const SLAB: u64 = 40;
/// The two host frames of process memory.
pub(crate) const HOST: [u64; 2] = [100, 101];
/// The 2 MiB block of process memory, mapped by one 2 MiB leaf at guest frame 512.
pub(crate) const BLOCK: u64 = 512;
pub(crate) const BLOCK_GFN: u64 = 512;

pub(crate) const KERNEL_PAGES: [u64; 12] = [
    VMXON, ROOT[0], L3[0], L2[0], ROOT[1], L3[1], L2[1], TABLE[0], TABLE[1], VMCS[0], VMCS[1], SLAB,
];

/// The frames an op can name: the kernel pages and the host frames.
const NAMED: [bool; FRAMES] = {
    let mut named = [false; FRAMES];
    let mut i = 0;
    while i < KERNEL_PAGES.len() {
        named[KERNEL_PAGES[i] as usize] = true;
        i += 1;
    }
    named[HOST[0] as usize] = true;
    named[HOST[1] as usize] = true;
    named
};

/// The VMMs' address spaces and where each maps its VM's memslot.
pub(crate) const MM: [usize; 2] = [0xa000, 0xb000];
pub(crate) const HVA: [u64; 2] = [0x7f00_0000_0000, 0x7e00_0000_0000];
/// `struct kvm` of each VM slot (a VMM's next VM reuses it).
pub(crate) const KVM: [usize; 2] = [0xa1, 0xb1];
/// Frames of each VM's memslot (guest frames 0..SLOT_PAGES).
pub(crate) const SLOT_PAGES: u64 = 1024;
/// The VMCS field encoding of the EPT pointer.
pub(crate) const VMCS_EPT_POINTER: u32 = 0x201a;

/// The host's page-table root (`HOST_CR3` and the live CR3), registered as `pgd_alloc()` does.
pub(crate) const HOST_PGD: u64 = 2;
/// The live control registers of the mock CPU.
pub(crate) const HOST_CR0: u64 = 0x8005_0033;
/// kvm_intel's `vmx_vmexit`, as the platform reads it from kvm_intel's export table.
pub(crate) const VMX_VMEXIT: u64 = 0xffff_ffff_c0de_1000;
pub(crate) const HOST_CR4: u64 = 0x372ef0; // with the pinned bits (UMIP, FSGSBASE, SMEP, SMAP)

/// A security-critical VMCS field: the value KVM writes, which the world's VMCS holds until
/// a write changes it (KVM's vCPU setup), the values an attacker tries, and the rule a VMCS
/// must meet to be entered, stated here independently of the verifier.
pub(crate) struct CriticalField {
    pub(crate) field: VmcsField,
    pub(crate) kvm: u64,
    pub(crate) attacks: &'static [u64],
    pub(crate) rule: fn(u64) -> Result<(), &'static str>,
}

const fn has(v: u64, bits: u64) -> bool {
    v & bits == bits
}

const CR0_PE: u64 = 1;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_VMXE: u64 = 1 << 13;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;
const PIN_KVM: u64 = 0x29; // external-interrupt and NMI exiting, virtual NMIs
const PRIMARY_KVM: u64 = (1 << 31) | (1 << 24) | (1 << 7); // secondary, I/O exiting, HLT
const SECONDARY_KVM: u64 = 0xa2; // EPT, VPID, unrestricted guest
const EXIT_KVM: u64 = 0x3c_8200; // 64-bit host, ack interrupt, PAT and EFER saved and loaded
const ENTRY_KVM: u64 = 0x200; // IA-32e mode guest

pub(crate) const CRITICAL_FIELDS: [CriticalField; 10] = [
    CriticalField {
        field: VmcsField::HOST_RIP,
        kvm: VMX_VMEXIT,
        attacks: &[VMX_VMEXIT + 0x40, 0xffff_ffff_8100_0000],
        rule: |v| match v == VMX_VMEXIT {
            true => Ok(()),
            false => Err("VM exits do not go to kvm_intel's vmx_vmexit"),
        },
    },
    CriticalField {
        field: VmcsField::HOST_CR0,
        kvm: HOST_CR0,
        attacks: &[HOST_CR0 & !CR0_WP],
        rule: |v| match v == HOST_CR0 && has(v, CR0_PE | CR0_PG | CR0_WP) {
            true => Ok(()),
            false => Err("HOST_CR0 is not the host's CR0 with WP, PE and PG"),
        },
    },
    CriticalField {
        field: VmcsField::HOST_CR3,
        kvm: HOST_PGD << 12,
        attacks: &[HOST[0] << 12, SLAB << 12],
        rule: |v| match v == HOST_PGD << 12 {
            true => Ok(()),
            false => Err("HOST_CR3 is not the host's page-table root"),
        },
    },
    CriticalField {
        field: VmcsField::HOST_CR4,
        kvm: HOST_CR4,
        attacks: &[HOST_CR4 & !CR4_SMEP, HOST_CR4 & !CR4_VMXE],
        rule: |v| match v == HOST_CR4 && has(v, CR4_SMEP | CR4_SMAP | CR4_VMXE) {
            true => Ok(()),
            false => Err("HOST_CR4 is not the host's CR4 with SMEP, SMAP and VMXE"),
        },
    },
    CriticalField {
        field: VmcsField::VMCS_LINK_POINTER,
        kvm: u64::MAX,
        attacks: &[VMCS[1] << 12, HOST[0] << 12],
        rule: |v| match v == u64::MAX {
            true => Ok(()),
            false => Err("VMCS_LINK_POINTER names a page, and no vCPU has a shadow VMCS"),
        },
    },
    CriticalField {
        field: VmcsField::PIN_BASED_VM_EXEC_CONTROL,
        kvm: PIN_KVM,
        attacks: &[PIN_KVM & !1, PIN_KVM & !8],
        rule: |v| match has(v, 1 | 8) {
            true => Ok(()),
            false => Err("external interrupts or NMIs do not exit"),
        },
    },
    CriticalField {
        field: VmcsField::CPU_BASED_VM_EXEC_CONTROL,
        kvm: PRIMARY_KVM,
        attacks: &[PRIMARY_KVM | (1 << 25), PRIMARY_KVM & !(1 << 24)],
        rule: |v| match has(v, (1 << 31) | (1 << 24)) && v & (1 << 25) == 0 {
            true => Ok(()),
            false => Err("port I/O does not always exit"),
        },
    },
    CriticalField {
        field: VmcsField::SECONDARY_VM_EXEC_CONTROL,
        kvm: SECONDARY_KVM,
        attacks: &[
            SECONDARY_KVM & !2,
            SECONDARY_KVM | (1 << 13),
            SECONDARY_KVM | (1 << 14),
        ],
        rule: |v| match has(v, 2) && v & ((1 << 13) | (1 << 14) | (1 << 22)) == 0 {
            true => Ok(()),
            false => Err("EPT off, or VMFUNC, shadow VMCS or mode-based execute on"),
        },
    },
    CriticalField {
        field: VmcsField::VM_EXIT_CONTROLS,
        kvm: EXIT_KVM,
        attacks: &[EXIT_KVM & !(1 << 9), EXIT_KVM & !(1 << 19)],
        rule: |v| match has(v, (1 << 9) | (1 << 19)) {
            true => Ok(()),
            false => Err("the exit does not return to a 64-bit host with its PAT"),
        },
    },
    CriticalField {
        field: VmcsField::VM_ENTRY_CONTROLS,
        kvm: ENTRY_KVM,
        attacks: &[ENTRY_KVM | (1 << 10), ENTRY_KVM | (1 << 11)],
        rule: |v| match v & ((1 << 10) | (1 << 11)) == 0 {
            true => Ok(()),
            false => Err("the entry is to SMM or deactivates dual-monitor treatment"),
        },
    },
];

/// What the world's VMCS holds in `field` until it is written.
pub(crate) fn field_default(field: u32) -> u64 {
    CRITICAL_FIELDS
        .iter()
        .find(|f| f.field.0 == field)
        .map_or(0, |f| f.kvm)
}

/// The EPT pointer KVM writes for `root`: write-back, 4-level walk, A/D bits on.
pub(crate) fn eptp(root: u64) -> u64 {
    6 | (3 << 3) | (1 << 6) | (root << 12)
}

/// Who calls a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    /// The VMM of VM 0 or 1.
    Vmm(u8),
    /// A kernel thread (no address space).
    Kernel,
}

impl Caller {
    pub(crate) fn mm(self) -> Handle {
        match self {
            Caller::Vmm(i) => Handle(MM[usize::from(i)]),
            Caller::Kernel => Handle::NONE,
        }
    }
}

/// One hook call (or, where marked, a sequence KVM always makes as one step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// A 4 KiB leaf for guest frame `index` in level-1 table `table` naming `frame`.
    Map {
        table: u8,
        index: u16,
        frame: u64,
        writable: bool,
        by: Caller,
    },
    /// Zap of that leaf.
    Zap {
        table: u8,
        index: u16,
    },
    /// A 2 MiB leaf for the block in VM `vm`'s level-2 table.
    Map2M {
        vm: u8,
        writable: bool,
        by: Caller,
    },
    Zap2M {
        vm: u8,
    },
    /// Level-1 table `table` linked into VM `vm`'s level-2 table (guest frames 0..512).
    Link {
        table: u8,
        vm: u8,
    },
    Unlink {
        vm: u8,
    },
    PtAlloc {
        table: u8,
        vm: u8,
    },
    PtFree {
        frame: u64,
    },
    /// KVM's deferred free: pass 1, a global INVEPT, pass 2 (one step).
    Invept,
    /// The page allocator frees `frame` (order 0), or the block (order 9).
    FreePages {
        frame: u64,
        order: u32,
    },
    /// KSM replaces `frame` by `kframe` in every process that maps it (one step: the hook,
    /// then, if allowed, the host's page tables).
    KsmMerge {
        frame: u64,
        kframe: u64,
    },
    /// The host writes to a host frame (the VMM, or anything with a mapping).
    HostWrite {
        frame: u64,
    },
    /// The host changes VMM `mm`'s page table at guest frame `gfn` of its memslot.
    Remap {
        mm: u8,
        gfn: u64,
        frame: Option<u64>,
    },
    /// The host maps the block with one 2 MiB mapping in VMM `mm`, at the block's guest frame.
    Remap2M {
        mm: u8,
    },
    MemslotAdd {
        vm: u8,
        by: Caller,
    },
    MemslotRemove {
        vm: u8,
        by: Caller,
    },
    VmCreate {
        vm: u8,
        by: Caller,
    },
    VmDestroy {
        vm: u8,
        by: Caller,
    },
    VcpuCreate {
        vm: u8,
        vcpu: u8,
        by: Caller,
    },
    VcpuFree {
        vm: u8,
        vcpu: u8,
        by: Caller,
    },
    /// KVM frees vCPU `vcpu`'s vmcs01 page.
    PageFree {
        vcpu: u8,
    },
    /// `guest_page`: guest frame 0 of VM `vm` is `frame`, about to be named in a VMCS.
    GuestPage {
        vm: u8,
        frame: u64,
        by: Caller,
    },
    Vmptrld {
        vcpu: u8,
        by: Caller,
    },
    Vmclear {
        vcpu: u8,
    },
    /// VMWRITE of an EPT pointer to `root` into the current VMCS.
    WriteEptp {
        root: u64,
    },
    /// VMWRITE of `CRITICAL_FIELDS[field]`: KVM's value (0) or attack `value - 1`.
    WriteField {
        field: u8,
        value: u8,
    },
    /// VM entry of the current VMCS.
    Enter,
    /// Fuzzing only: an entry write of any value, anywhere, with any level and guest frame.
    RawSpte {
        table: u64,
        index: u16,
        level: u8,
        value: u64,
        gfn: u64,
        by: Caller,
    },
    /// Fuzzing only: the page allocator frees any block.
    RawFree {
        frame: u64,
        order: u32,
    },
    /// Fuzzing only: `pt_free` of any frame.
    RawPtFree {
        frame: u64,
    },
    /// Fuzzing only: a KSM merge of any two frames.
    RawKsm {
        frame: u64,
        kframe: u64,
    },
    /// Fuzzing only: any EPT pointer.
    RawEptp {
        value: u64,
    },
    /// Fuzzing only: `ept_load` with any VM, vCPU (2 is none), root and EPT pointer.
    RawEptLoad {
        vm: u8,
        vcpu: u8,
        root: u64,
        value: u64,
    },
}

impl Op {
    /// Ops that make more than one hook call: a refusal in them may follow a change.
    pub(crate) fn is_sequence(self) -> bool {
        matches!(self, Op::Invept | Op::KsmMerge { .. } | Op::RawKsm { .. })
    }
}

/// Which ops the explorer tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alphabet {
    /// Every op.
    Full,
    /// What moves frames: EPT entries and tables, the page allocator, KSM, the host's page
    /// tables, memslots and the VM lifecycle.
    Memory,
    /// What a VMCS names and when it runs: vCPUs, VMPTRLD/VMCLEAR, the EPT pointer, VM
    /// entry, and the lifecycle of the EPT roots and VMs it depends on.
    Vmx,
}

impl Alphabet {
    pub(crate) fn from_env() -> Option<Alphabet> {
        match std::env::var("HYPERPS_EXPLORE_OPS").ok()?.as_str() {
            "full" => Some(Alphabet::Full),
            "memory" => Some(Alphabet::Memory),
            "vmx" => Some(Alphabet::Vmx),
            other => panic!("HYPERPS_EXPLORE_OPS={other}: use full, memory or vmx"),
        }
    }

    pub(crate) fn has(self, op: Op) -> bool {
        let memory = !matches!(
            op,
            Op::VcpuCreate { .. }
                | Op::VcpuFree { .. }
                | Op::PageFree { .. }
                | Op::Vmptrld { .. }
                | Op::Vmclear { .. }
                | Op::WriteEptp { .. }
                | Op::WriteField { .. }
                | Op::Enter
        );
        let vmx = !matches!(
            op,
            Op::Map { .. }
                | Op::Zap { .. }
                | Op::Map2M { .. }
                | Op::Zap2M { .. }
                | Op::FreePages { .. }
                | Op::KsmMerge { .. }
                | Op::HostWrite { .. }
                | Op::Remap { .. }
                | Op::Remap2M { .. }
                | Op::GuestPage { .. }
                | Op::MemslotAdd { .. }
                | Op::MemslotRemove { .. }
        );
        match self {
            Alphabet::Full => true,
            Alphabet::Memory => memory,
            Alphabet::Vmx => vmx,
        }
    }

    pub(crate) fn ops(self) -> Vec<Op> {
        all_ops().into_iter().filter(|op| self.has(*op)).collect()
    }
}

pub(crate) fn all_ops() -> Vec<Op> {
    let callers = [Caller::Vmm(0), Caller::Vmm(1)];
    let all_callers = [Caller::Vmm(0), Caller::Vmm(1), Caller::Kernel];
    let mut ops = Vec::new();
    for table in 0..2u8 {
        for index in 0..2u16 {
            for frame in [
                HOST[0],
                HOST[1],
                SLAB,
                TABLE[1 - usize::from(table)],
                VMCS[0],
            ] {
                for writable in [false, true] {
                    for by in callers {
                        ops.push(Op::Map {
                            table,
                            index,
                            frame,
                            writable,
                            by,
                        });
                    }
                }
            }
            ops.push(Op::Zap { table, index });
        }
    }
    for vm in 0..2u8 {
        for writable in [false, true] {
            for by in callers {
                ops.push(Op::Map2M { vm, writable, by });
            }
        }
        ops.push(Op::Zap2M { vm });
        ops.push(Op::Unlink { vm });
        for table in 0..2u8 {
            ops.push(Op::Link { table, vm });
            ops.push(Op::PtAlloc { table, vm });
        }
        for by in all_callers {
            ops.push(Op::MemslotAdd { vm, by });
            ops.push(Op::MemslotRemove { vm, by });
            ops.push(Op::VmDestroy { vm, by });
        }
        for by in callers {
            ops.push(Op::VmCreate { vm, by });
            for frame in HOST {
                ops.push(Op::GuestPage { vm, frame, by });
            }
        }
        for vcpu in 0..2u8 {
            for by in callers {
                ops.push(Op::VcpuCreate { vm, vcpu, by });
            }
            for by in all_callers {
                ops.push(Op::VcpuFree { vm, vcpu, by });
            }
        }
    }
    for frame in [TABLE[0], TABLE[1], ROOT[0]] {
        ops.push(Op::PtFree { frame });
    }
    ops.push(Op::Invept);
    for frame in HOST.into_iter().chain(KERNEL_PAGES) {
        ops.push(Op::FreePages { frame, order: 0 });
    }
    ops.push(Op::FreePages {
        frame: BLOCK,
        order: 9,
    });
    ops.push(Op::KsmMerge {
        frame: HOST[0],
        kframe: HOST[1],
    });
    ops.push(Op::KsmMerge {
        frame: HOST[1],
        kframe: HOST[0],
    });
    for frame in HOST {
        ops.push(Op::HostWrite { frame });
    }
    for mm in 0..2u8 {
        for gfn in 0..2u64 {
            for frame in [Some(HOST[0]), Some(HOST[1]), None] {
                ops.push(Op::Remap { mm, gfn, frame });
            }
        }
        ops.push(Op::Remap2M { mm });
    }
    for vcpu in 0..2u8 {
        ops.push(Op::PageFree { vcpu });
        ops.push(Op::Vmclear { vcpu });
        for by in all_callers {
            ops.push(Op::Vmptrld { vcpu, by });
        }
    }
    for root in [ROOT[0], ROOT[1], TABLE[0]] {
        ops.push(Op::WriteEptp { root });
    }
    for (field, f) in CRITICAL_FIELDS.iter().enumerate() {
        for value in 0..=f.attacks.len() {
            ops.push(Op::WriteField {
                field: field as u8,
                value: value as u8,
            });
        }
    }
    ops.push(Op::Enter);
    ops
}

/// A VMM's mapping of one 4 KiB page of its memslot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HostMap {
    pub(crate) pfn: u64,
    pub(crate) writable: bool,
    pub(crate) huge: bool,
}

/// A VM slot as the explorer knows it, independently of the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ShadowVm {
    /// The verifier's id of the live instance.
    pub(crate) id: Option<VmId>,
    /// Its VMM.
    pub(crate) mm: u8,
    /// The instance is the first one, whose EPT is rooted at `ROOT[slot]`.
    pub(crate) first: bool,
}

/// A vCPU as the explorer knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ShadowVcpu {
    pub(crate) vm: VmId,
    pub(crate) slot: u8,
}

/// The kernel around the backend, and the explorer's own records of what happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    /// (VMM, guest frame of its memslot) → mapping.
    pub(crate) maps: BTreeMap<(u8, u64), HostMap>,
    /// Contents of host frames (absent: zero).
    pub(crate) contents: BTreeMap<u64, u8>,
    /// EPT memory: (table, index) → (entry, level of the table).
    pub(crate) ept: BTreeMap<(u64, u16), (u64, u8)>,
    /// VMCS fields written: (VMCS page, field) → value.
    pub(crate) fields: BTreeMap<(u64, u32), u64>,
    /// The VMCS the CPU has current (what VMPTRLD really loaded).
    pub(crate) current: Option<u64>,
    pub(crate) vms: [Option<ShadowVm>; 2],
    pub(crate) vcpus: [Option<ShadowVcpu>; 2],
    /// Frames each VM instance could write since the frame was last scrubbed.
    pub(crate) dirty: BTreeMap<u64, BTreeSet<u32>>,
    /// VMMs of destroyed VM instances.
    pub(crate) dead: BTreeMap<u32, u8>,
    /// Kernel pages given back to the page allocator.
    pub(crate) freed: BTreeSet<u64>,
    /// Tables unlinked since the last global INVEPT.
    pub(crate) unflushed: BTreeSet<u64>,
    /// A raw op (fuzzing) named a frame of the block on its own, or a frame no op names.
    pub(crate) raw: bool,
}

/// The platform one call sees: the kernel, who calls, and what the call reported.
pub(crate) struct Call<'k> {
    pub(crate) k: &'k mut Kernel,
    pub(crate) mm: Handle,
    pub(crate) refusals: usize,
    pub(crate) violations: Vec<String>,
}

impl Scrubber for Call<'_> {
    fn scrub(&mut self, pfn: Pfn) {
        self.k.contents.remove(&pfn.0);
        self.k.dirty.remove(&pfn.0);
        self.k.ept.retain(|(t, _), _| *t != pfn.0);
    }
}

pub(crate) fn vmm_of_hva(hva: u64) -> Option<(u8, u64)> {
    (0..2u8).find_map(|i| {
        let off = hva.checked_sub(HVA[usize::from(i)])?;
        (off < SLOT_PAGES * 4096).then_some((i, off / 4096))
    })
}

impl Platform for Call<'_> {
    fn enforcing(&self) -> bool {
        true
    }
    fn cpu(&self) -> CpuId {
        CpuId(0)
    }
    fn current_mm(&self) -> Handle {
        self.mm
    }
    fn user_mapping(&self, hva: u64) -> Option<UserMapping> {
        let (vmm, gfn) = vmm_of_hva(hva)?;
        if Handle(MM[usize::from(vmm)]) != self.mm {
            return None;
        }
        let m = self.k.maps.get(&(vmm, gfn))?;
        Some(UserMapping {
            pfn: Pfn(m.pfn),
            writable: m.writable,
            size: if m.huge {
                PageSize::Size2M
            } else {
                PageSize::Size4K
            },
        })
    }
    fn frame_kind(&self, pfn: Pfn) -> FrameKind {
        if KERNEL_PAGES.contains(&pfn.0) {
            FrameKind::Kernel
        } else if pfn.0 >= HOST[0] {
            FrameKind::User
        } else {
            FrameKind::Unusable
        }
    }
    fn frame_unreferenced(&self, pfn: Pfn) -> bool {
        !self
            .k
            .maps
            .values()
            .any(|m| m.pfn == pfn.0 || (m.huge && (m.pfn..m.pfn + 512).contains(&pfn.0)))
    }
    fn frames_equal(&self, a: Pfn, b: Pfn) -> bool {
        self.k.contents.get(&a.0) == self.k.contents.get(&b.0)
    }
    fn pgd_is_new(&self, root: Pfn, pages: u32) -> bool {
        root == Pfn(HOST_PGD) && pages == 1
    }
    fn read_phys(&self, _pa: u64) -> Option<u64> {
        Some(0)
    }
    fn with_frame_words<R>(&self, _pfn: Pfn, f: impl FnOnce(&[AtomicU64]) -> R) -> Option<R> {
        let words: Vec<AtomicU64> = (0..512).map(|_| AtomicU64::new(0)).collect();
        Some(f(&words))
    }
    fn host_msr(&self, msr: u32) -> Option<u64> {
        (msr == 0xc000_0080).then_some(0xd01)
    }
    fn host_value(&self, value: HostValue) -> u64 {
        match value {
            HostValue::Cr0 => HOST_CR0,
            HostValue::Cr3 => HOST_PGD << 12,
            HostValue::Cr4 => HOST_CR4,
            HostValue::Field(HostField::Rip) => VMX_VMEXIT,
            HostValue::Field(_) => 0x1000,
            HostValue::PiDestination => 0,
        }
    }
    fn vmread(&self, field: u32) -> Option<u64> {
        let cur = self.k.current?;
        Some(
            self.k
                .fields
                .get(&(cur, field))
                .copied()
                .unwrap_or_else(|| field_default(field)),
        )
    }
    fn report(&mut self, report: &Report) {
        if report.enforced {
            self.refusals += 1;
        }
        if report.class == CheckClass::Registration && !report.enforced {
            // The backend's own bookkeeping failed after its checks passed.
            self.violations
                .push(format!("anomaly reported: {:?}", report.denial));
        }
    }
    fn kill_vm(&mut self, _kvm: Handle) {
        // KVM stops the VM; the attacker may go on calling hooks for it all the same, so the
        // explorer keeps the VM in play.
    }
}

/// Everything: the verifier's and the backend's tables, their scalars, and the kernel.
pub(crate) struct World {
    pub(crate) frames: Vec<FrameRecord>,
    pub(crate) regions: Vec<RegionRecord>,
    pub(crate) vms: Vec<VmRecord>,
    pub(crate) vcpus: Vec<VcpuRecord>,
    pub(crate) vmcs: Vec<VmcsRecord>,
    pub(crate) shares: Vec<ShareRecord>,
    pub(crate) vpids: Vec<VpidRecord>,
    pub(crate) cpus: Vec<CpuRecord>,
    pub(crate) audit: Vec<AuditRecord>,
    pub(crate) pending: Vec<PendingPt>,
    pub(crate) bvms: Vec<VmSlot>,
    pub(crate) bvcpus: Vec<VcpuSlot>,
    pub(crate) memslots: Vec<MemslotRecord>,
    pub(crate) deferred: Vec<Option<DeferredFree>>,
    pub(crate) zombies: Vec<Option<VmId>>,
    pub(crate) ghosts: Vec<Option<Ghost>>,
    pub(crate) scalars: Option<BackendScalars>,
    pub(crate) k: Kernel,
}

// Cloning is most of a step's cost: `clone_from` reuses the tables' allocations.
impl Clone for World {
    fn clone(&self) -> World {
        World {
            frames: self.frames.clone(),
            regions: self.regions.clone(),
            vms: self.vms.clone(),
            vcpus: self.vcpus.clone(),
            vmcs: self.vmcs.clone(),
            shares: self.shares.clone(),
            vpids: self.vpids.clone(),
            cpus: self.cpus.clone(),
            audit: self.audit.clone(),
            pending: self.pending.clone(),
            bvms: self.bvms.clone(),
            bvcpus: self.bvcpus.clone(),
            memslots: self.memslots.clone(),
            deferred: self.deferred.clone(),
            zombies: self.zombies.clone(),
            ghosts: self.ghosts.clone(),
            scalars: self.scalars,
            k: self.k.clone(),
        }
    }

    fn clone_from(&mut self, source: &World) {
        self.frames.clone_from(&source.frames);
        self.regions.clone_from(&source.regions);
        self.vms.clone_from(&source.vms);
        self.vcpus.clone_from(&source.vcpus);
        self.vmcs.clone_from(&source.vmcs);
        self.shares.clone_from(&source.shares);
        self.vpids.clone_from(&source.vpids);
        self.cpus.clone_from(&source.cpus);
        self.audit.clone_from(&source.audit);
        self.pending.clone_from(&source.pending);
        self.bvms.clone_from(&source.bvms);
        self.bvcpus.clone_from(&source.bvcpus);
        self.memslots.clone_from(&source.memslots);
        self.deferred.clone_from(&source.deferred);
        self.zombies.clone_from(&source.zombies);
        self.ghosts.clone_from(&source.ghosts);
        self.scalars = source.scalars;
        self.k.clone_from(&source.k);
    }
}

/// What one call did.
pub(crate) struct Outcome {
    pub(crate) refused: bool,
    pub(crate) violations: Vec<String>,
}

impl World {
    fn empty() -> World {
        World {
            frames: vec![FrameRecord::default(); FRAMES],
            regions: vec![RegionRecord::default(); Tables::regions_needed(FRAMES)],
            vms: vec![VmRecord::default(); 3],
            vcpus: vec![VcpuRecord::default(); 2],
            vmcs: vec![VmcsRecord::default(); 4],
            shares: vec![ShareRecord::default(); 2],
            vpids: vec![VpidRecord::default(); 4],
            cpus: vec![CpuRecord::default(); 1],
            audit: vec![AuditRecord::default(); 1],
            pending: vec![PendingPt::NONE; FRAMES],
            bvms: vec![VmSlot::FREE; 3],
            bvcpus: vec![VcpuSlot::FREE; 2],
            memslots: vec![MemslotRecord::FREE; 4],
            deferred: vec![None; 4],
            zombies: vec![None; 3],
            ghosts: vec![None; 2],
            scalars: None,
            k: Kernel::default(),
        }
    }

    /// Runs `f` on a backend over this world's tables, as `mm`.
    fn with<R>(
        &mut self,
        mm: Handle,
        f: impl FnOnce(&mut Backend<'_>, &mut Call<'_>) -> R,
    ) -> (R, Outcome) {
        let World {
            frames,
            regions,
            vms,
            vcpus,
            vmcs,
            shares,
            vpids,
            cpus,
            audit,
            pending,
            bvms,
            bvcpus,
            memslots,
            deferred,
            zombies,
            ghosts,
            scalars,
            k,
        } = self;
        let tables = Tables {
            frames,
            regions,
            vms,
            vcpus,
            vmcs,
            shares,
            vpids,
            cpus,
            audit,
        };
        let bt = BackendTables {
            pending,
            vms: bvms,
            vcpus: bvcpus,
            memslots,
            deferred,
            zombies,
            ghosts,
        };
        let mut b = match scalars {
            Some(s) => Backend::resume(tables, bt, s).expect("resume"),
            None => Backend::new(
                Verifier::new(Config::kvm_6_12(PHYS_BITS, PINNED), tables).expect("verifier"),
                bt,
            )
            .expect("backend"),
        };
        let mut call = Call {
            k,
            mm,
            refusals: 0,
            violations: Vec::new(),
        };
        let r = f(&mut b, &mut call);
        *scalars = Some(b.scalars());
        let o = Outcome {
            refused: call.refusals > 0,
            violations: call.violations,
        };
        (r, o)
    }

    /// The world every sequence starts from: VMXON on the CPU; two VMs, each created by its
    /// VMM, with its memslot, a 4-level EPT whose level-1 table maps guest frames 0..512, and
    /// the VMM mapping one host frame at guest frame 0; nothing mapped in the EPTs yet.
    pub(crate) fn initial() -> World {
        let mut w = World::empty();
        let ((), c) = w.with(Handle(MM[0]), |b, p| {
            assert!(!b.vmxon(p, VMXON << 12));
            b.pgd_add(p, Pfn(HOST_PGD), 1).expect("pgd_add");
            for i in 0..2 {
                p.mm = Handle(MM[i]);
                b.vm_create(p, Handle(KVM[i])).expect("vm_create");
                b.memslot_add(p, Handle(KVM[i]), &memslot(i))
                    .expect("memslot_add");
                for pt in [ROOT[i], L3[i], L2[i], TABLE[i]] {
                    b.pt_alloc(p, Handle(KVM[i]), Pfn(pt)).expect("pt_alloc");
                }
                b.pt_root(p, Handle(KVM[i]), Pfn(ROOT[i]), EptLevel::L4);
                let id = b.vm_id(Handle(KVM[i]));
                p.k.vms[i] = Some(ShadowVm {
                    id,
                    mm: i as u8,
                    first: true,
                });
                p.k.maps.insert(
                    (i as u8, 0),
                    HostMap {
                        pfn: HOST[i],
                        writable: true,
                        huge: false,
                    },
                );
            }
        });
        assert!(!c.refused);
        for i in 0..2 {
            for (table, child, level) in [(ROOT[i], L3[i], 4u8), (L3[i], L2[i], 3)] {
                let o = w.spte(Handle(MM[i]), table, 0, level, nonleaf(child), 0);
                assert!(!o.refused, "initial link");
            }
            let o = w.spte(Handle(MM[i]), L2[i], 0, 2, nonleaf(TABLE[i]), 0);
            assert!(!o.refused, "initial link");
        }
        w.k.contents.insert(HOST[0], 1);
        w.k.contents.insert(HOST[1], 2);
        w
    }

    /// An entry write through the backend; the entry changes in `self.k.ept` only if the
    /// backend performs it.
    fn spte(
        &mut self,
        mm: Handle,
        table: u64,
        index: u16,
        level: u8,
        new: EptEntry,
        gfn: u64,
    ) -> Outcome {
        let (_, c) = self.with(mm, |b, p| {
            // `perform` cannot borrow the EPT memory while the backend holds the platform:
            // it records the write, which is applied afterwards.
            let old = p.k.ept.get(&(table, index)).map_or(NONPRESENT.0, |e| e.0);
            let mut done = None;
            let outcome = b.spte_write(
                p,
                Pfn(table),
                index,
                EptLevel::new(level),
                new,
                Some(gfn),
                || {
                    done = Some(new.0);
                    Some(old)
                },
            );
            if let Some(v) = done {
                // The entry means what the table's level, as the CPU walks it, makes it mean:
                // record the level the backend registered the table at, not the caller's word.
                let level = match b.verifier().frame_state(Pfn(table)) {
                    Some(FrameState::Protected(Protected::Ept(pt))) => pt.level.get(),
                    _ => level,
                };
                note_unlink(p.k, old, level);
                if v == NONPRESENT.0 {
                    p.k.ept.remove(&(table, index));
                } else {
                    p.k.ept.insert((table, index), (v, level));
                }
            }
            outcome
        });
        c
    }
}

pub(crate) fn memslot(i: usize) -> Memslot {
    Memslot {
        as_id: 0,
        id: 0,
        flags: 0,
        base_gfn: 0,
        npages: SLOT_PAGES,
        hva: HVA[i],
    }
}

/// An entry that named a child table no longer does: the CPU may cache the link until the
/// next global INVEPT.
pub(crate) fn note_unlink(k: &mut Kernel, old: u64, level: u8) {
    if let Some(Decoded::Table(child)) = decode(old, level) {
        k.unflushed.insert(child);
    }
}

/// An EPT entry as the CPU reads it (decoded here independently of the verifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Table(u64),
    Leaf {
        pfn: u64,
        frames: u64,
        writable: bool,
    },
}

///
/// Not present (no access): R, W and X all clear. EPT misconfiguration (no access either, a
/// VM exit): write without read, an address bit at or above MAXPHYADDR, or a leaf whose memory
/// type is reserved (2, 3 or 7).
pub(crate) fn decode(v: u64, level: u8) -> Option<Decoded> {
    let (read, write) = (v & 1 != 0, v & 2 != 0);
    let reserved_address = (v & ((1 << 52) - 1)) >> PHYS_BITS != 0;
    if v & 7 == 0 || (write && !read) || reserved_address {
        return None;
    }
    let pfn = (v >> 12) & ((1 << 40) - 1);
    if level == 1 || v & (1 << 7) != 0 {
        if matches!((v >> 3) & 7, 2 | 3 | 7) {
            return None;
        }
        let frames = 512u64.pow(u32::from(level.clamp(1, 4)) - 1);
        Some(Decoded::Leaf {
            pfn,
            frames,
            writable: v & 2 != 0,
        })
    } else {
        Some(Decoded::Table(pfn))
    }
}

/// Runs one op on `w`. Returns what it did.
pub(crate) fn apply(w: &mut World, op: Op) -> Outcome {
    if matches!(
        op,
        Op::RawSpte { .. } | Op::RawFree { .. } | Op::RawPtFree { .. } | Op::RawKsm { .. }
    ) {
        w.k.raw = true;
    }
    let vm_kvm = |vm: u8| Handle(KVM[usize::from(vm)]);
    match op {
        Op::Map {
            table,
            index,
            frame,
            writable,
            by,
        } => {
            let t = TABLE[usize::from(table)];
            w.spte(
                by.mm(),
                t,
                index,
                1,
                leaf(frame, 1, writable),
                u64::from(index),
            )
        }
        Op::Zap { table, index } => {
            let t = TABLE[usize::from(table)];
            let mm = owner_mm(w, t);
            w.spte(mm, t, index, 1, NONPRESENT, u64::from(index))
        }
        Op::Map2M { vm, writable, by } => {
            let t = L2[usize::from(vm)];
            w.spte(by.mm(), t, 1, 2, leaf(BLOCK, 2, writable), BLOCK_GFN)
        }
        Op::Zap2M { vm } => {
            let t = L2[usize::from(vm)];
            let mm = owner_mm(w, t);
            w.spte(mm, t, 1, 2, NONPRESENT, BLOCK_GFN)
        }
        Op::Link { table, vm } => {
            let t = L2[usize::from(vm)];
            let mm = owner_mm(w, t);
            w.spte(mm, t, 0, 2, nonleaf(TABLE[usize::from(table)]), 0)
        }
        Op::Unlink { vm } => {
            let t = L2[usize::from(vm)];
            let mm = owner_mm(w, t);
            w.spte(mm, t, 0, 2, NONPRESENT, 0)
        }
        Op::PtAlloc { table, vm } => {
            let pt = TABLE[usize::from(table)];
            let (r, c) = w.with(Handle(MM[usize::from(vm)]), |b, p| {
                b.pt_alloc(p, vm_kvm(vm), Pfn(pt))
            });
            let mut o = c;
            if r.is_ok() {
                w.k.freed.remove(&pt);
                // KVM fills a new table with non-present entries.
                w.k.ept.retain(|(t, _), _| *t != pt);
            } else {
                o.refused = true;
            }
            o
        }
        Op::PtFree { frame } => {
            let (r, c) = w.with(Handle::NONE, |b, p| b.pt_free(p, Pfn(frame)));
            let mut o = c;
            if r == PtFree::Now {
                given_back(w, frame, &mut o);
            }
            o
        }
        Op::Invept => {
            let (out, c) = w.with(Handle::NONE, |b, p| {
                b.deferred_pass1();
                p.k.unflushed.clear();
                let mut out = [Pfn(0); 4];
                let n = b.deferred_pass2(p, &mut out);
                out[..n].to_vec()
            });
            let mut o = c;
            for pfn in out {
                given_back(w, pfn.0, &mut o);
            }
            o
        }
        Op::FreePages { frame, order } => {
            let (keep, c) = w.with(Handle::NONE, |b, p| b.free_pages(p, Pfn(frame), order));
            let mut o = c;
            if !keep && KERNEL_PAGES.contains(&frame) {
                given_back(w, frame, &mut o);
            }
            o
        }
        Op::KsmMerge { frame, kframe } => {
            let (stop, c) = w.with(Handle::NONE, |b, p| {
                b.ksm_merge(p, 0, Pfn(frame), Pfn(kframe))
            });
            let o = c;
            if !stop {
                for m in w.k.maps.values_mut() {
                    if m.pfn == frame && !m.huge {
                        *m = HostMap {
                            pfn: kframe,
                            writable: false,
                            huge: false,
                        };
                    }
                }
            }
            o
        }
        Op::HostWrite { frame } => {
            let v = w.k.contents.get(&frame).copied().unwrap_or(0);
            w.k.contents.insert(frame, v ^ 4);
            quiet()
        }
        Op::Remap { mm, gfn, frame } => {
            match frame {
                Some(pfn) => {
                    w.k.maps.insert(
                        (mm, gfn),
                        HostMap {
                            pfn,
                            writable: true,
                            huge: false,
                        },
                    );
                }
                None => {
                    w.k.maps.remove(&(mm, gfn));
                }
            }
            quiet()
        }
        Op::Remap2M { mm } => {
            w.k.maps.insert(
                (mm, BLOCK_GFN),
                HostMap {
                    pfn: BLOCK,
                    writable: true,
                    huge: true,
                },
            );
            quiet()
        }
        Op::MemslotAdd { vm, by } => {
            let (r, c) = w.with(by.mm(), |b, p| {
                b.memslot_add(p, vm_kvm(vm), &memslot(usize::from(vm)))
            });
            let mut o = c;
            o.refused |= r.is_err() && o.refused;
            o
        }
        Op::MemslotRemove { vm, by } => {
            let ((), c) = w.with(by.mm(), |b, p| {
                b.memslot_remove(p, vm_kvm(vm), &memslot(usize::from(vm)))
            });
            c
        }
        Op::VmCreate { vm, by } => {
            let (id, c) = w.with(by.mm(), |b, p| {
                b.vm_create(p, vm_kvm(vm)).ok().and(b.vm_id(vm_kvm(vm)))
            });
            let o = c;
            if let (Some(id), Caller::Vmm(mm)) = (id, by) {
                w.k.vms[usize::from(vm)] = Some(ShadowVm {
                    id: Some(id),
                    mm,
                    first: false,
                });
            }
            o
        }
        Op::VmDestroy { vm, by } => {
            let (gone, c) = w.with(by.mm(), |b, p| {
                let was = b.vm_id(vm_kvm(vm));
                b.vm_destroy(p, vm_kvm(vm));
                was.filter(|_| b.vm_id(vm_kvm(vm)).is_none())
            });
            let o = c;
            if let Some(id) = gone {
                if let Some(s) = w.k.vms[usize::from(vm)].take() {
                    w.k.dead.insert(id.to_raw(), s.mm);
                }
            }
            o
        }
        Op::VcpuCreate { vm, vcpu, by } => {
            let info = VcpuInfo {
                kvm: vm_kvm(vm),
                vcpu: Handle(0x100 + usize::from(vcpu)),
                vpid: u16::from(vcpu) + 1,
                vmcs01_pa: VMCS[usize::from(vcpu)] << 12,
                ..VcpuInfo::default()
            };
            let (r, c) = w.with(by.mm(), |b, p| {
                b.vcpu_create(p, &info, true).map(|()| b.vm_id(vm_kvm(vm)))
            });
            let o = c;
            if let Ok(Some(id)) = r {
                w.k.vcpus[usize::from(vcpu)] = Some(ShadowVcpu { vm: id, slot: vm });
                w.k.freed.remove(&VMCS[usize::from(vcpu)]);
            }
            o
        }
        Op::VcpuFree { vm, vcpu, by } => {
            let ((), c) = w.with(by.mm(), |b, p| {
                b.vcpu_free(p, vm_kvm(vm), Handle(0x100 + usize::from(vcpu)))
            });
            c
        }
        Op::PageFree { vcpu } => {
            let page = VMCS[usize::from(vcpu)];
            let (keep, c) = w.with(Handle::NONE, |b, p| b.page_free(p, page << 12));
            let mut o = c;
            if !keep {
                given_back(w, page, &mut o);
                w.k.vcpus[usize::from(vcpu)] = None;
                w.k.fields.retain(|(v, _), _| *v != page);
                if w.k.current == Some(page) {
                    o.violations
                        .push(format!("VMCS {page} given back while current on the CPU"));
                }
            }
            o
        }
        Op::GuestPage { vm, frame, by } => {
            let (_, c) = w.with(by.mm(), |b, p| b.guest_page(p, vm_kvm(vm), 0, frame));
            c
        }
        Op::Vmptrld { vcpu, by } => {
            let page = VMCS[usize::from(vcpu)];
            let (stop, c) = w.with(by.mm(), |b, p| b.vmcs_load(p, page << 12));
            if !stop {
                w.k.current = Some(page);
            }
            c
        }
        Op::Vmclear { vcpu } => {
            let page = VMCS[usize::from(vcpu)];
            let (stop, c) = w.with(Handle::NONE, |b, p| b.vmcs_clear(p, page << 12));
            if !stop && w.k.current == Some(page) {
                w.k.current = None;
            }
            c
        }
        Op::WriteEptp { root } => {
            // vmx_load_mmu_pgd(): ept_load with the current VMCS's vCPU, then the VMWRITE.
            let owner = VMCS
                .iter()
                .position(|&v| Some(v) == w.k.current)
                .and_then(|i| {
                    let vm = w.k.vcpus.get(i).copied().flatten()?.slot;
                    Some((vm_kvm(vm), Handle(0x100 + i)))
                });
            let (stop, c) = w.with(Handle::NONE, |b, p| {
                let owner = owner.unwrap_or((Handle::NONE, Handle::NONE));
                b.ept_load(p, owner, Pfn(root), eptp(root))
                    || b.vmcs_write(p, u64::from(VMCS_EPT_POINTER), eptp(root))
            });
            if let (false, Some(cur)) = (stop, w.k.current) {
                w.k.fields.insert((cur, VMCS_EPT_POINTER), eptp(root));
            }
            c
        }
        Op::WriteField { field, value } => {
            let f = &CRITICAL_FIELDS[usize::from(field)];
            let v = match value {
                0 => f.kvm,
                n => f.attacks[usize::from(n) - 1],
            };
            let (stop, c) = w.with(Handle::NONE, |b, p| {
                b.vmcs_write(p, u64::from(f.field.0), v)
            });
            if let (false, Some(cur)) = (stop, w.k.current) {
                // Only values that differ from KVM's are kept, so that rewriting KVM's value
                // is the state it came from.
                if v == f.kvm {
                    w.k.fields.remove(&(cur, f.field.0));
                } else {
                    w.k.fields.insert((cur, f.field.0), v);
                }
            }
            c
        }
        Op::Enter => {
            let (stop, c) = w.with(Handle::NONE, |b, p| b.vm_entry(p));
            let mut o = c;
            if !stop {
                entered(w, &mut o);
            }
            o
        }
        Op::RawSpte {
            table,
            index,
            level,
            value,
            gfn,
            by,
        } => w.spte(by.mm(), table, index, level, EptEntry(value), gfn),
        Op::RawFree { frame, order } => apply(w, Op::FreePages { frame, order }),
        Op::RawPtFree { frame } => apply(w, Op::PtFree { frame }),
        Op::RawKsm { frame, kframe } => apply(w, Op::KsmMerge { frame, kframe }),
        Op::RawEptLoad {
            vm,
            vcpu,
            root,
            value,
        } => {
            let ids = (vm_kvm(vm % 2), Handle(0x100 + usize::from(vcpu % 3)));
            let (_, c) = w.with(Handle::NONE, |b, p| b.ept_load(p, ids, Pfn(root), value));
            c
        }
        Op::RawEptp { value } => {
            let (stop, c) = w.with(Handle::NONE, |b, p| {
                b.vmcs_write(p, u64::from(VMCS_EPT_POINTER), value)
            });
            if let (false, Some(cur)) = (stop, w.k.current) {
                w.k.fields.insert((cur, VMCS_EPT_POINTER), value);
            }
            c
        }
    }
}

pub(crate) fn quiet() -> Outcome {
    Outcome {
        refused: false,
        violations: Vec::new(),
    }
}

/// The VMM of the VM whose table `t` is (KVM zaps from the VMM's ioctl or MMU notifier).
pub(crate) fn owner_mm(w: &World, t: u64) -> Handle {
    let i = if L2[1] == t || TABLE[1] == t { 1 } else { 0 };
    w.k.vms[i].map_or(Handle(MM[i]), |s| Handle(MM[usize::from(s.mm)]))
}

/// A kernel page goes back to the page allocator: nothing may link to it, and no CPU may
/// still cache a link to it.
pub(crate) fn given_back(w: &mut World, page: u64, o: &mut Outcome) {
    if w.k.unflushed.contains(&page) {
        o.violations.push(format!(
            "table {page} given back before a global INVEPT flushed its link"
        ));
    }
    for (&(t, i), &(v, level)) in &w.k.ept {
        if w.k.freed.contains(&t) || t == page {
            continue;
        }
        if decode(v, level) == Some(Decoded::Table(page)) {
            o.violations.push(format!(
                "table {page} given back while entry {i} of table {t} links it"
            ));
        }
    }
    for (&(vmcs, _), &v) in &w.k.fields {
        if v >> 12 == page && !w.k.freed.contains(&vmcs) {
            o.violations
                .push(format!("page {page} given back while VMCS {vmcs} names it"));
        }
    }
    w.k.freed.insert(page);
}

/// An entry was allowed: the current VMCS must be one of a live vCPU, never given back, and its
/// EPT pointer must name a live root of the vCPU's own VM.
pub(crate) fn entered(w: &World, o: &mut Outcome) {
    let Some(cur) = w.k.current else {
        o.violations
            .push("VM entry allowed with no current VMCS".into());
        return;
    };
    if w.k.freed.contains(&cur) {
        o.violations.push(format!(
            "VM entry allowed into VMCS {cur}, which was given back"
        ));
    }
    let Some(vcpu) = (0..2).find_map(|i| w.k.vcpus[i].filter(|_| VMCS[i] == cur)) else {
        o.violations
            .push(format!("VM entry allowed into VMCS {cur} of no vCPU"));
        return;
    };
    for f in &CRITICAL_FIELDS {
        let value = w.k.fields.get(&(cur, f.field.0)).copied().unwrap_or(f.kvm);
        if let Err(why) = (f.rule)(value) {
            o.violations.push(format!(
                "VM entry allowed with field {:#x} = {value:#x}: {why}",
                f.field.0
            ));
        }
    }
    if let Some(&e) = w.k.fields.get(&(cur, VMCS_EPT_POINTER)) {
        let root = e >> 12;
        let ok = !w.k.freed.contains(&root)
            && matches!(
                frame_state(w, root),
                Some(FrameState::Protected(Protected::Ept(p))) if p.vm == vcpu.vm && p.level == EptLevel::L4
            );
        if !ok {
            o.violations.push(format!(
                "VM entry allowed with an EPT pointer to {root} ({:?}), not a root of {:?}",
                frame_state(w, root),
                vcpu.vm
            ));
        }
    }
}

pub(crate) fn frame_state(w: &World, pfn: u64) -> Option<FrameState> {
    w.frames.get(pfn as usize).map(|f| f.state())
}

// --- Invariants ----------------------------------------------------------------------------------

/// A leaf the CPU can reach from a VM's roots.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reached {
    pub(crate) vm: VmId,
    pub(crate) pfn: u64,
    pub(crate) frames: u64,
    pub(crate) writable: bool,
}

/// The roots the CPU may use for each live VM: the first instance's root, and the EPT pointer
/// of every VMCS of the VM's vCPUs.
pub(crate) fn roots(w: &World) -> Vec<(VmId, u64)> {
    let mut r = Vec::new();
    for (i, s) in w.k.vms.iter().enumerate() {
        let Some(ShadowVm {
            id: Some(id),
            first,
            ..
        }) = *s
        else {
            continue;
        };
        if first {
            r.push((id, ROOT[i]));
        }
        for (j, v) in w.k.vcpus.iter().enumerate() {
            if v.is_some_and(|v| v.vm == id) {
                if let Some(e) = w.k.fields.get(&(VMCS[j], VMCS_EPT_POINTER)) {
                    r.push((id, e >> 12));
                }
            }
        }
    }
    r
}

pub(crate) fn walk(w: &World, vm: VmId, table: u64, level: u8, out: &mut Vec<Reached>) {
    for (&(_, _), &(v, _)) in w.k.ept.range((table, 0)..=(table, u16::MAX)) {
        match decode(v, level) {
            Some(Decoded::Table(child)) if level > 1 => walk(w, vm, child, level - 1, out),
            Some(Decoded::Leaf {
                pfn,
                frames,
                writable,
            }) => out.push(Reached {
                vm,
                pfn,
                frames,
                writable,
            }),
            _ => {}
        }
    }
}

pub(crate) fn reached(w: &World) -> Vec<Reached> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (vm, root) in roots(w) {
        if seen.insert((vm.to_raw(), root)) {
            walk(w, vm, root, 4, &mut out);
        }
    }
    out
}

/// The VMM of a VM instance, live or dead.
pub(crate) fn vmm_of(w: &World, vm: VmId) -> Option<u8> {
    w.k.vms
        .iter()
        .flatten()
        .find(|s| s.id == Some(vm))
        .map(|s| s.mm)
        .or_else(|| w.k.dead.get(&vm.to_raw()).copied())
}

/// Frames each VM can write become dirty from it (until a scrub).
pub(crate) fn note_dirty(w: &mut World, leaves: &[Reached]) {
    // A block changes hands as a whole: its first frame stands for it.
    for l in leaves.iter().filter(|l| l.writable) {
        w.k.dirty.entry(l.pfn).or_default().insert(l.vm.to_raw());
    }
}

/// The state hash covers only the frames an op names and the block's first frame: every other
/// frame must still be an untouched host frame, and every frame of the block must be in the
/// state of the first (the block only ever changes as a whole). If that ever failed, the hash
/// would merge states that differ.
pub(crate) fn untouched_frames_unchanged(w: &World) -> Result<(), String> {
    for f in 0..FRAMES as u64 {
        let i = f as usize;
        let (want, pending) = if NAMED[i] || f == BLOCK {
            continue;
        } else if f == HOST_PGD {
            // No op names it, and a leaf to it is refused before any count moves.
            if w.frames[i].state() != FrameState::HostPgd || w.pending[i] != PendingPt::NONE {
                return Err(format!("the host's root changed: {:?}", w.frames[i]));
            }
            continue;
        } else if (BLOCK..BLOCK + 512).contains(&f) {
            (w.frames[BLOCK as usize], w.pending[BLOCK as usize])
        } else {
            (FrameRecord::default(), PendingPt::NONE)
        };
        if w.frames[i] != want || w.pending[i] != pending {
            return Err(format!("frame {f} changed on its own: {:?}", w.frames[i]));
        }
    }
    Ok(())
}

/// Checks the isolation invariants at a state. Returns the violations.
pub(crate) fn check_invariants(w: &mut World, leaves: &[Reached]) -> Vec<String> {
    let mut bad = Vec::new();
    if !w.k.raw {
        if let Err(e) = untouched_frames_unchanged(w) {
            bad.push(e);
        }
    }
    let mut users: BTreeMap<u64, Vec<Reached>> = BTreeMap::new();
    for l in leaves {
        // Huge leaves are checked on their first frame and on every frame's state.
        users.entry(l.pfn).or_default().push(*l);
        for f in l.pfn..l.pfn + l.frames.min(FRAMES as u64 + 1) {
            let state = frame_state(w, f);
            if KERNEL_PAGES.contains(&f) {
                bad.push(format!("{:?} reaches kernel page {f} ({state:?})", l.vm));
            }
            match state {
                Some(FrameState::Vm(o)) if o == l.vm => {}
                Some(FrameState::Shared(_) | FrameState::Zero) if !l.writable => {}
                other => {
                    bad.push(format!(
                        "{:?} reaches frame {f} in state {other:?} (writable: {})",
                        l.vm, l.writable
                    ));
                    break;
                }
            }
        }
        let shared = matches!(
            frame_state(w, l.pfn),
            Some(FrameState::Shared(_) | FrameState::Zero)
        );
        if !shared {
            for &raw in w.k.dirty.get(&l.pfn).into_iter().flatten() {
                let from = VmId::from_raw(raw);
                let restart = from != l.vm
                    && w.k.dead.contains_key(&raw)
                    && vmm_of(w, from) == vmm_of(w, l.vm);
                if from != l.vm && !restart {
                    bad.push(format!(
                        "{:?} reaches frame {} that {from:?} wrote, with no scrub between",
                        l.vm, l.pfn
                    ));
                }
            }
        }
    }
    for (pfn, us) in &users {
        let vms: BTreeSet<u32> = us.iter().map(|u| u.vm.to_raw()).collect();
        if vms.len() > 1 {
            let shared = matches!(
                frame_state(w, *pfn),
                Some(FrameState::Shared(_) | FrameState::Zero)
            );
            if !shared || us.iter().any(|u| u.writable) {
                bad.push(format!("frame {pfn} reached by {vms:?} ({us:?})"));
            }
        }
    }
    // No link to a table that was given back, from a table that was not.
    for (&(t, i), &(v, level)) in &w.k.ept {
        if let Some(Decoded::Table(c)) = decode(v, level) {
            if w.k.freed.contains(&c) && !w.k.freed.contains(&t) {
                bad.push(format!(
                    "entry {i} of table {t} links table {c}, given back"
                ));
            }
        }
    }
    // The verifier's mapping counts are the leaves that exist; the census adds up; no
    // anomaly was tolerated.
    let mut small: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut huge: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (&(t, _), &(v, level)) in &w.k.ept {
        if w.k.freed.contains(&t) {
            continue;
        }
        if let Some(Decoded::Leaf {
            pfn,
            frames,
            writable,
        }) = decode(v, level)
        {
            let regions = if frames == 1 {
                let c = small.entry(pfn).or_default();
                c.0 += 1;
                c.1 += u64::from(writable);
                0..0
            } else {
                // A 1 GiB leaf counts on each of its 512 regions.
                pfn / 512..(pfn / 512 + frames / 512).min(FRAMES as u64 / 512 + 1)
            };
            for r in regions {
                let c = huge.entry(r).or_default();
                c.0 += 1;
                c.1 += u64::from(writable);
            }
        }
    }
    let watched: BTreeSet<u64> = [HOST[0], HOST[1], SLAB, TABLE[0], TABLE[1], VMCS[0], BLOCK]
        .into_iter()
        .chain(small.keys().copied())
        .collect();
    let ((), c) = w.with(Handle::NONE, |b, _| {
        let v = b.verifier();
        for &f in &watched {
            let s = small.get(&f).copied().unwrap_or_default();
            let h = huge.get(&(f / 512)).copied().unwrap_or_default();
            let want = (s.0 + h.0, s.1 + h.1);
            if v.frame_mappings(Pfn(f)) != Some(want) {
                bad.push(format!(
                    "frame {f}: the verifier counts {:?} mappings, the EPTs hold {want:?}",
                    v.frame_mappings(Pfn(f))
                ));
            }
        }
        let mut census = Census::default();
        b.census(0, FRAMES as u64, &mut census);
        let total = census.host + census.vm + census.shared + census.protected;
        if total != FRAMES as u64 {
            bad.push(format!(
                "census {census:?} counts {total} of {FRAMES} frames"
            ));
        }
        if v.audit().anomalies() != 0 {
            bad.push(format!("{} anomalies tolerated", v.audit().anomalies()));
        }
    });
    bad.extend(c.violations);
    bad
}

// --- Hashing -----------------------------------------------------------------------------------

/// A fast hasher for state deduplication (64 bits, with a final avalanche).
#[derive(Default)]
pub(crate) struct StateHasher(u64);

impl StateHasher {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for StateHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The records of the verifier and the backend (what a refused call must leave alone).
pub(crate) fn records_hash(w: &World) -> u64 {
    let mut h = StateHasher::default();
    h.write_u64(records_hash_but_cpus(w));
    w.cpus.hash(&mut h);
    h.finish()
}

/// The records without the per-CPU table. A refused VMPTRLD is not executed, so the CPU keeps
/// its previous VMCS while the caller believes it loaded another: the backend then forgets
/// which VMCS is current, so that no VMWRITE meant for one VM lands in another's VMCS. That
/// only takes rights away, and is the one change a refusal makes.
pub(crate) fn records_hash_but_cpus(w: &World) -> u64 {
    let mut h = StateHasher::default();
    // Only the frames an op can name; `untouched_frames_unchanged` checks the others.
    for f in KERNEL_PAGES.into_iter().chain(HOST).chain([BLOCK]) {
        w.frames[f as usize].hash(&mut h);
        w.pending[f as usize].hash(&mut h);
    }
    w.regions.hash(&mut h);
    w.vms.hash(&mut h);
    w.vcpus.hash(&mut h);
    w.vmcs.hash(&mut h);
    w.shares.hash(&mut h);
    w.vpids.hash(&mut h);
    w.bvms.hash(&mut h);
    w.bvcpus.hash(&mut h);
    w.memslots.hash(&mut h);
    w.deferred.hash(&mut h);
    w.zombies.hash(&mut h);
    w.ghosts.hash(&mut h);
    w.scalars.hash(&mut h);
    h.finish()
}

/// The whole state: the records, the kernel and the explorer's own records.
pub(crate) fn state_hash(w: &World, records: u64) -> u64 {
    let mut h = StateHasher::default();
    h.write_u64(records);
    w.k.hash(&mut h);
    h.finish()
}

// --- The explorer ------------------------------------------------------------------------------

/// One step from a state: the op, then what the state looks like.
pub(crate) struct Step {
    pub(crate) records: u64,
    pub(crate) hash: u64,
    pub(crate) refused: bool,
    pub(crate) violations: Vec<String>,
}

/// Applies `op` to a copy of `w` (whose records hash is `before`) and checks the result.
/// Invariants are checked only if `check` says the resulting state is new.
pub(crate) fn step(
    w: &World,
    hashes: (u64, u64),
    op: Op,
    check: impl Fn(u64) -> bool,
) -> (World, Step) {
    let mut c = w.clone();
    let s = step_into(&mut c, w, hashes, op, check);
    (c, s)
}

/// `step` into `c`, a world whose allocations are reused.
pub(crate) fn step_into(
    c: &mut World,
    w: &World,
    (before, parent): (u64, u64),
    op: Op,
    check: impl Fn(u64) -> bool,
) -> Step {
    c.clone_from(w);
    let o = apply(c, op);
    let mut violations = o.violations;
    let records = records_hash(c);
    if records == before && violations.is_empty() && c.k == w.k {
        // Nothing changed (a refusal, or a call with nothing to do): the parent's state.
        return Step {
            records,
            hash: parent,
            refused: o.refused,
            violations,
        };
    }
    if o.refused && !op.is_sequence() && records != before {
        let lockout = matches!(op, Op::Vmptrld { .. })
            && records_hash_but_cpus(c) == records_hash_but_cpus(w)
            && c.with(Handle::NONE, |b, _| b.verifier().current_vmcs(CpuId(0)))
                .0
                .is_none();
        if !lockout {
            violations.push(format!("{op:?} was refused but changed the records"));
        }
    }
    let leaves = reached(c);
    note_dirty(c, &leaves);
    let hash = state_hash(c, records);
    if !violations.is_empty() || check(hash) {
        violations.extend(check_invariants(c, &leaves));
    }
    Step {
        records,
        hash,
        refused: o.refused,
        violations,
    }
}

/// Replays `path` from the initial world, with the same bookkeeping as the explorer.
pub(crate) fn replay(initial: &World, ops: &[Op], path: &[u16]) -> World {
    let mut w = initial.clone();
    for &i in path {
        let before = records_hash(&w);
        w = step(&w, (before, 0), ops[usize::from(i)], |_| false).0;
    }
    w
}

/// Runs `seq` from the initial world, checking every state. Returns which calls were refused,
/// or the first violation.
pub(crate) fn run_sequence(seq: &[Op]) -> Result<Vec<bool>, String> {
    let mut w = World::initial();
    let mut refused = Vec::new();
    for (n, &op) in seq.iter().enumerate() {
        let before = records_hash(&w);
        let (next, s) = step(&w, (before, 0), op, |_| true);
        if !s.violations.is_empty() {
            return Err(format!(
                "after step {} ({op:?}): {}",
                n + 1,
                s.violations.join("; ")
            ));
        }
        refused.push(s.refused);
        w = next;
    }
    Ok(refused)
}
