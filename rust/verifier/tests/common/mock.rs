// SPDX-License-Identifier: GPL-2.0

//! A mock kernel for the backend: address spaces with their user mappings, frame kinds and
//! contents, host MSRs and registers, and a record of what the backend reported and stopped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;

use hyperps_verifier::policy::backend::*;
use hyperps_verifier::policy::vmcs_fields::HostField;
use hyperps_verifier::*;

use super::Storage;

/// Kernel pages (paging structures, VMCSs, auxiliary pages) are handed out from here.
pub const KERNEL_FIRST: u64 = 16;
/// Process memory starts here (the mock's user pages).
pub const USER_FIRST: u64 = 1024;

/// The mock kernel.
/// Where the mock kvm_intel's `vmx_vmexit` is, in module text.
pub const VMX_VMEXIT: u64 = 0xffff_ffff_c0de_1000;

pub struct Mock {
    pub enforcing: bool,
    pub cpu: u32,
    pub mm: Handle,
    /// (address space, page-aligned user address) → what it maps.
    pub maps: HashMap<(Handle, u64), UserMapping>,
    /// Frames that are kernel pages; frames at or above `USER_FIRST` are process memory.
    pub kernel: HashSet<u64>,
    /// Frame contents, one word per frame (absent = zero).
    pub contents: HashMap<u64, u64>,
    pub new_pgds: HashSet<u64>,
    pub phys: HashMap<u64, u64>,
    pub msrs: HashMap<u32, u64>,
    pub cr3: u64,
    /// kvm_intel's `vmx_vmexit` as its export table gives it (0: kvm_intel not loaded).
    pub vmx_vmexit: u64,
    /// Fields of the current VMCS as VMREAD returns them (absent = zero).
    pub vmcs: HashMap<u32, u64>,
    /// Frames of the huge zero page.
    pub huge_zero: HashSet<u64>,
    /// Frames whose page the kernel still holds a reference to (not being freed).
    pub referenced: HashSet<u64>,
    pub scrubbed: Vec<Pfn>,
    pub reports: Vec<Report>,
    pub killed: Vec<Handle>,
    next_kernel: u64,
}

impl Default for Mock {
    fn default() -> Self {
        Mock::new()
    }
}

impl Mock {
    pub fn new() -> Mock {
        Mock {
            enforcing: true,
            cpu: 0,
            mm: Handle::NONE,
            maps: HashMap::new(),
            kernel: HashSet::new(),
            contents: HashMap::new(),
            new_pgds: HashSet::new(),
            phys: HashMap::new(),
            msrs: HashMap::from([(0xc000_0080, 0xd01)]),
            cr3: 0x2000,
            vmx_vmexit: VMX_VMEXIT,
            vmcs: HashMap::new(),
            huge_zero: HashSet::new(),
            referenced: HashSet::new(),
            scrubbed: Vec::new(),
            reports: Vec::new(),
            killed: Vec::new(),
            next_kernel: KERNEL_FIRST,
        }
    }

    /// A fresh kernel page.
    pub fn kernel_page(&mut self) -> Pfn {
        let pfn = self.next_kernel;
        assert!(pfn < USER_FIRST, "the mock ran out of kernel pages");
        self.next_kernel += 1;
        self.kernel.insert(pfn);
        Pfn(pfn)
    }

    /// `mm` maps `pfn` at `hva` (4 KiB).
    pub fn map(&mut self, mm: Handle, hva: u64, pfn: u64, writable: bool) {
        self.maps.insert(
            (mm, hva),
            UserMapping {
                pfn: Pfn(pfn),
                writable,
                size: PageSize::Size4K,
            },
        );
    }

    /// `mm` maps the 2 MiB page from `pfn` on at `hva` (2 MiB aligned) with one huge mapping.
    pub fn map_2m(&mut self, mm: Handle, hva: u64, pfn: u64, writable: bool) {
        for i in 0..512u64 {
            self.maps.insert(
                (mm, hva + i * 4096),
                UserMapping {
                    pfn: Pfn(pfn + i),
                    writable,
                    size: PageSize::Size2M,
                },
            );
        }
    }

    /// Refusals reported so far.
    pub fn refusals(&self) -> usize {
        self.reports.iter().filter(|r| r.enforced).count()
    }

    /// Sets the MSR lists of the current VMCS: (address, count) for the VM-entry load list
    /// and the VM-exit load list.
    pub fn set_msr_lists(&mut self, entry: (u64, u32), exit: (u64, u32)) {
        self.vmcs.insert(0x200a, entry.0);
        self.vmcs.insert(0x4014, u64::from(entry.1));
        self.vmcs.insert(0x2008, exit.0);
        self.vmcs.insert(0x4010, u64::from(exit.1));
    }

    pub fn last(&self) -> Option<Denial> {
        self.reports.last().map(|r| r.denial)
    }
}

impl Scrubber for Mock {
    fn scrub(&mut self, pfn: Pfn) {
        self.contents.remove(&pfn.0);
        self.scrubbed.push(pfn);
    }
}

impl Platform for Mock {
    fn enforcing(&self) -> bool {
        self.enforcing
    }

    fn cpu(&self) -> CpuId {
        CpuId(self.cpu)
    }

    fn current_mm(&self) -> Handle {
        self.mm
    }

    fn user_mapping(&self, hva: u64) -> Option<UserMapping> {
        self.maps.get(&(self.mm, hva & !0xfff)).copied()
    }

    fn frame_kind(&self, pfn: Pfn) -> FrameKind {
        if self.kernel.contains(&pfn.0) {
            FrameKind::Kernel
        } else if self.huge_zero.contains(&pfn.0) {
            FrameKind::HugeZero
        } else if pfn.0 >= USER_FIRST {
            FrameKind::User
        } else {
            FrameKind::Unusable
        }
    }

    fn frame_unreferenced(&self, pfn: Pfn) -> bool {
        !self.referenced.contains(&pfn.0)
    }

    fn frames_equal(&self, a: Pfn, b: Pfn) -> bool {
        self.contents.get(&a.0).copied().unwrap_or(0)
            == self.contents.get(&b.0).copied().unwrap_or(0)
    }

    fn pgd_is_new(&self, root: Pfn, _pages: u32) -> bool {
        self.new_pgds.contains(&root.0)
    }

    fn with_frame_words<R>(&self, pfn: Pfn, f: impl FnOnce(&[AtomicU64]) -> R) -> Option<R> {
        let words: Vec<AtomicU64> = (0..512)
            .map(|i| {
                AtomicU64::new(
                    self.phys
                        .get(&((pfn.0 << 12) + i * 8))
                        .copied()
                        .unwrap_or(0),
                )
            })
            .collect();
        Some(f(&words))
    }

    fn read_phys(&self, pa: u64) -> Option<u64> {
        Some(self.phys.get(&pa).copied().unwrap_or(0))
    }

    fn host_msr(&self, msr: u32) -> Option<u64> {
        self.msrs.get(&msr).copied()
    }

    fn host_value(&self, value: HostValue) -> u64 {
        match value {
            HostValue::Cr0 => 0x8005_0033,
            HostValue::Cr3 => self.cr3,
            HostValue::Cr4 => 0x3726f0,
            HostValue::Field(HostField::Rip) => self.vmx_vmexit,
            HostValue::Field(_) => 0x1000,
            HostValue::PiDestination => u64::from(self.cpu) << 8,
        }
    }

    fn vmread(&self, field: u32) -> Option<u64> {
        Some(self.vmcs.get(&field).copied().unwrap_or(0))
    }

    fn report(&mut self, report: &Report) {
        self.reports.push(*report);
    }

    fn kill_vm(&mut self, kvm: Handle) {
        self.killed.push(kvm);
    }
}

/// Owned storage for the backend's tables.
pub struct BackendStorage {
    pub pending: Vec<PendingPt>,
    pub vms: Vec<VmSlot>,
    pub vcpus: Vec<VcpuSlot>,
    pub memslots: Vec<MemslotRecord>,
    pub deferred: Vec<Option<DeferredFree>>,
    pub zombies: Vec<Option<VmId>>,
    pub ghosts: Vec<Option<Ghost>>,
}

impl BackendStorage {
    pub fn new(st: &Storage) -> BackendStorage {
        BackendStorage {
            pending: vec![PendingPt::NONE; st.frames.len()],
            vms: vec![VmSlot::FREE; st.vms.len()],
            vcpus: vec![VcpuSlot::FREE; st.vcpus.len()],
            memslots: vec![MemslotRecord::FREE; 16],
            deferred: vec![None; 64],
            zombies: vec![None; MAX_ZOMBIES],
            ghosts: vec![None; MAX_GHOSTS],
        }
    }
}

/// Verifier and backend storage together.
pub struct Env {
    pub st: Storage,
    pub bt: BackendStorage,
}

impl Env {
    pub fn new() -> Env {
        let st = Storage::new(super::FRAMES);
        let bt = BackendStorage::new(&st);
        Env { st, bt }
    }

    pub fn backend(&mut self) -> Backend<'_> {
        let Env { st, bt } = self;
        let tables = BackendTables {
            pending: &mut bt.pending,
            vms: &mut bt.vms,
            vcpus: &mut bt.vcpus,
            memslots: &mut bt.memslots,
            deferred: &mut bt.deferred,
            zombies: &mut bt.zombies,
            ghosts: &mut bt.ghosts,
        };
        Backend::new(st.verifier(), tables).expect("backend tables fit the verifier's")
    }
}

/// The contents of the EPT tables the tests write through the backend.
#[derive(Default)]
pub struct EptMem {
    pub mem: HashMap<(u64, u16), u64>,
}

impl EptMem {
    pub fn get(&self, table: Pfn, index: u16) -> u64 {
        self.mem.get(&(table.0, index)).copied().unwrap_or(1 << 63)
    }
}

/// A VM set up through the backend: its handle, VMM, one memslot and a 4-level EPT whose
/// level-1 table maps guest frames `GFN_BASE..GFN_BASE + 512` and whose level-2 table can
/// take 2 MiB leaves for `GFN_BASE + 512 * i`.
pub struct TestVm {
    pub kvm: Handle,
    pub mm: Handle,
    pub hva: u64,
    pub root: Pfn,
    pub l3: Pfn,
    pub l2: Pfn,
    pub l1: Pfn,
}

/// Guest frame of the memslot's first page, 2 MiB aligned.
pub const GFN_BASE: u64 = 0x200;
/// Pages in each test VM's memslot.
pub const SLOT_PAGES: u64 = 2048;

#[allow(clippy::too_many_arguments)]
pub fn write(
    b: &mut Backend<'_>,
    p: &mut Mock,
    t: &mut EptMem,
    table: Pfn,
    index: u16,
    level: u8,
    new: EptEntry,
    gfn: u64,
) -> SpteOutcome {
    let mem = &mut t.mem;
    b.spte_write(
        p,
        table,
        index,
        EptLevel::new(level),
        new,
        Some(gfn),
        || Some(mem.insert((table.0, index), new.0).unwrap_or(1 << 63)),
    )
}

/// Creates a VM from `mm` with a memslot at `hva` and a linked 4-level EPT.
pub fn make_vm(
    b: &mut Backend<'_>,
    p: &mut Mock,
    t: &mut EptMem,
    kvm: usize,
    mm: usize,
    hva: u64,
) -> TestVm {
    let kvm = Handle(kvm);
    let mm = Handle(mm);
    p.mm = mm;
    b.vm_create(p, kvm).expect("vm_create");
    let slot = Memslot {
        as_id: 0,
        id: 0,
        flags: 0,
        base_gfn: GFN_BASE,
        npages: SLOT_PAGES,
        hva,
    };
    b.memslot_add(p, kvm, &slot).expect("memslot_add");
    let mut page = || p.kernel_page();
    let (root, l3, l2, l1) = (page(), page(), page(), page());
    for pt in [root, l3, l2, l1] {
        b.pt_alloc(p, kvm, pt).expect("pt_alloc");
    }
    b.pt_root(p, kvm, root, EptLevel::L4);
    let nonleaf = super::nonleaf;
    assert_eq!(
        write(b, p, t, root, 0, 4, nonleaf(l3.0), 0),
        SpteOutcome::Written
    );
    assert_eq!(
        write(b, p, t, l3, 0, 3, nonleaf(l2.0), 0),
        SpteOutcome::Written
    );
    assert_eq!(
        write(
            b,
            p,
            t,
            l2,
            (GFN_BASE / 512) as u16,
            2,
            nonleaf(l1.0),
            GFN_BASE
        ),
        SpteOutcome::Written
    );
    TestVm {
        kvm,
        mm,
        hva,
        root,
        l3,
        l2,
        l1,
    }
}

impl TestVm {
    /// The host address of a guest frame of the memslot.
    pub fn hva_of(&self, gfn: u64) -> u64 {
        self.hva + (gfn - GFN_BASE) * 4096
    }

    /// Maps `gfn` (in the level-1 table's range) to `pfn` with a 4 KiB leaf, from the VMM.
    pub fn map(
        &self,
        b: &mut Backend<'_>,
        p: &mut Mock,
        t: &mut EptMem,
        gfn: u64,
        pfn: u64,
        writable: bool,
    ) -> SpteOutcome {
        p.mm = self.mm;
        let leaf = super::leaf(pfn, 1, writable);
        write(b, p, t, self.l1, (gfn % 512) as u16, 1, leaf, gfn)
    }

    /// Zaps the 4 KiB leaf of `gfn`.
    pub fn zap(&self, b: &mut Backend<'_>, p: &mut Mock, t: &mut EptMem, gfn: u64) -> SpteOutcome {
        write(
            b,
            p,
            t,
            self.l1,
            (gfn % 512) as u16,
            1,
            super::NONPRESENT,
            gfn,
        )
    }
}
