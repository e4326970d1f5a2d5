// SPDX-License-Identifier: GPL-2.0

//! Fuzz driver shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and by the
//! arbitrary-driven loops of `tests/fuzz_loops.rs`.
//!
//! It decodes bytes into a sequence of API calls on a small verifier, shadows every EPT entry
//! it writes so that it can pass the value really replaced, and after the run checks that the
//! verifier never panicked (implicitly) and never accepted a malformed entry.
//!
//! Each input also says whether the host may lie about the value an entry held before a write
//! (`Action::SpteRaw`'s `old`). In the kernel the hook's own atomic exchange reads that value
//! from the EPT page, so a lie means the host wrote the EPT page directly, which L1 does not stop
//! (`Documentation/hyperps/hooks.rst`, "mapping counts"): the verifier's counts are then off and
//! a frame may change state under a leaf it forgot. Such runs check only that nothing panics.
//! Honest runs also check that the verifier saw no internal anomaly and that the security
//! invariants hold: no leaf reaches a frame of another VM, a HyperPS page or a host frame, and no
//! shared or zero-page frame is mapped writable.

#![allow(dead_code, unreachable_pub, missing_docs)]

use arbitrary::{Arbitrary, Unstructured};
use hyperps_verifier::policy::ept::classify_spte;
use hyperps_verifier::*;
use std::collections::HashMap;

/// Frames of the driver's frame table (4 regions); frame numbers are drawn a bit beyond it.
pub const FRAMES: u64 = 2048;
const PFN_SPACE: u16 = 2100;

#[derive(Arbitrary, Debug, Clone)]
pub enum Action {
    CreateVm,
    DestroyVm(u8),
    CreateVcpu(u8),
    DestroyVcpu(u8),
    Donate(u8, u16, u8),
    Reclaim(u16),
    KsmMerge(u16, u16),
    KsmUnmerge(u16),
    UnshareToVm(u16, u8),
    Protect(u16),
    Unprotect(u16),
    RegisterZero(u16, bool),
    ReleaseZero(u16, bool),
    RegisterPgd(u16),
    UnregisterPgd(u16),
    RegisterHyperPsRoot(u16),
    AssignMmio(u8, u16, u16),
    ReleaseMmio(u8, u16),
    RegisterEpt(u8, u16, u8),
    UnregisterEpt(u16),
    /// A raw entry value; `Some(old)` passes a bogus "actual old value" when the run lets the
    /// host lie (otherwise it is ignored).
    SpteRaw {
        table: u16,
        index: u16,
        value: u64,
        old: Option<u64>,
        commit: bool,
    },
    /// A KVM-shaped entry (likely to be accepted).
    SpteKvm {
        table: u16,
        index: u16,
        target: u16,
        shape: u8,
    },
    RegisterVmcs(u8, u16, u8),
    UnregisterVmcs(u16),
    RegisterAux(u8, u8, u16, u8),
    UnregisterAux(u16),
    RegisterVmxon(u8, u16),
    UnregisterVmxon(u8),
    Vmxon(u8, u16),
    Vmxoff(u8),
    Vmptrld(u8, u16),
    Vmclear(u8, u16),
    VmcsWrite {
        cpu: u8,
        field: u16,
        raw_field: Option<u32>,
        value: u64,
    },
    WriteCr0(u8, u64),
    WriteCr3(u8, u64, u64),
    WriteCr4(u8, u64, u64),
    AssignVpid(u8, u16),
    ReleaseVpid(u8, u16),
    InveptGlobal,
    InvvpidGlobal,
}

/// A restricted action set for the per-entry-point targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    All,
    Ept,
    Vmcs,
    Ownership,
    Cr,
}

fn keep(focus: Focus, a: &Action) -> bool {
    use Action::*;
    match focus {
        Focus::All => true,
        Focus::Ept => matches!(
            a,
            CreateVm
                | Donate(..)
                | Reclaim(..)
                | RegisterEpt(..)
                | UnregisterEpt(..)
                | SpteRaw { .. }
                | SpteKvm { .. }
                | RegisterZero(..)
                | KsmMerge(..)
                | AssignMmio(..)
                | InveptGlobal
                | DestroyVm(..)
        ),
        Focus::Vmcs => !matches!(
            a,
            WriteCr0(..) | WriteCr3(..) | WriteCr4(..) | SpteRaw { .. }
        ),
        Focus::Ownership => !matches!(
            a,
            VmcsWrite { .. } | WriteCr0(..) | WriteCr3(..) | WriteCr4(..)
        ),
        Focus::Cr => matches!(
            a,
            WriteCr0(..)
                | WriteCr3(..)
                | WriteCr4(..)
                | RegisterPgd(..)
                | UnregisterPgd(..)
                | RegisterHyperPsRoot(..)
                | RegisterVmxon(..)
                | Vmxon(..)
                | Vmxoff(..)
        ),
    }
}

/// Owned storage for one run.
pub struct Storage {
    frames: Vec<FrameRecord>,
    regions: Vec<RegionRecord>,
    vms: Vec<VmRecord>,
    vcpus: Vec<VcpuRecord>,
    vmcs: Vec<VmcsRecord>,
    shares: Vec<ShareRecord>,
    vpids: Vec<VpidRecord>,
    cpus: Vec<CpuRecord>,
    audit: Vec<AuditRecord>,
}

impl Storage {
    pub fn new() -> Storage {
        Storage {
            frames: vec![FrameRecord::default(); FRAMES as usize],
            regions: vec![RegionRecord::default(); Tables::regions_needed(FRAMES as usize)],
            vms: vec![VmRecord::default(); 4],
            vcpus: vec![VcpuRecord::default(); 8],
            vmcs: vec![VmcsRecord::default(); 16],
            shares: vec![ShareRecord::default(); 8],
            vpids: vec![VpidRecord::default(); 64],
            cpus: vec![CpuRecord::default(); 2],
            audit: vec![AuditRecord::default(); 8],
        }
    }

    pub fn verifier(&mut self, config: Config) -> Option<Verifier<'_>> {
        Verifier::new(
            config,
            Tables {
                frames: &mut self.frames,
                regions: &mut self.regions,
                vms: &mut self.vms,
                vcpus: &mut self.vcpus,
                vmcs: &mut self.vmcs,
                shares: &mut self.shares,
                vpids: &mut self.vpids,
                cpus: &mut self.cpus,
                audit: &mut self.audit,
            },
        )
        .ok()
    }
}

fn pick<T: Copy>(v: &[T], i: u8) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        v.get(usize::from(i) % v.len()).copied()
    }
}

fn pfn(p: u16) -> Pfn {
    Pfn(u64::from(p % PFN_SPACE))
}

/// The frames an input named, directly or through an entry it wrote. Only their records can
/// have changed, so the final census walks them instead of all `FRAMES`; one input in
/// `FULL_SCAN_EVERY` still walks every frame, to catch a write to a record nobody named.
struct Touched {
    bits: Vec<u64>,
}

impl Touched {
    fn new() -> Touched {
        Touched {
            bits: vec![0; (FRAMES / 64) as usize],
        }
    }

    fn range(&mut self, first: u64, n: u64) {
        let end = first.saturating_add(n).min(FRAMES);
        for f in first.min(end)..end {
            self.bits[(f / 64) as usize] |= 1 << (f % 64);
        }
    }

    /// Marks the frame `p` names and returns it.
    fn pfn(&mut self, p: u16) -> Pfn {
        let f = pfn(p);
        self.range(f.0, 1);
        f
    }

    fn frames(&self) -> impl Iterator<Item = u64> + '_ {
        // Word by word: the coverage instrumentation makes a per-frame test cost as much as
        // the census itself.
        self.bits.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            core::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = u64::from(rest.trailing_zeros());
                    rest &= rest - 1;
                    i as u64 * 64 + bit
                })
            })
        })
    }
}

const FULL_SCAN_EVERY: u32 = 16;

fn kvm_entry(target: u64, shape: u8) -> EptEntry {
    let base = (1u64 << 11) | (1 << 63) | 0x5 | (6 << 3) | (1 << 6) | (1 << 8) | (1 << 57);
    let writable = 0x2 | (1 << 58) | (1 << 9);
    let v = match shape % 8 {
        0 => base | (target << 12),
        1 => base | writable | (target << 12),
        2 => base | (1 << 7) | ((target & !511) << 12),
        3 => base | writable | (1 << 7) | ((target & !511) << 12),
        4 => (1u64 << 11) | (1 << 63) | 0x7 | (1 << 8) | (target << 12),
        5 => 0x6 | (target << 12),
        6 => 1 << 63,
        _ => ((base & !0x7 & !(1 << 8)) | (1 << 52) | (1 << 54) | (1 << 56)) | (target << 12),
    };
    EptEntry(v)
}

const KNOWN_FIELDS: &[u32] = &[
    0x0000, 0x0002, 0x0008, 0x0800, 0x0810, 0x0812, 0x0c00, 0x0c02, 0x0c04, 0x0c08, 0x0c0c, 0x2000,
    0x2004, 0x2006, 0x2008, 0x200a, 0x200e, 0x2010, 0x2012, 0x2014, 0x2016, 0x2018, 0x201a, 0x2024,
    0x2026, 0x2028, 0x202a, 0x2034, 0x2042, 0x2400, 0x2401, 0x2800, 0x2802, 0x2c00, 0x2c02, 0x2c04,
    0x4000, 0x4002, 0x4004, 0x400c, 0x400e, 0x4010, 0x4012, 0x4014, 0x401e, 0x4402, 0x4826, 0x4c00,
    0x6000, 0x6400, 0x6800, 0x681e, 0x6c00, 0x6c02, 0x6c04, 0x6c06, 0x6c08, 0x6c0a, 0x6c14, 0x6c16,
];

pub struct Driver<'a> {
    pub v: Verifier<'a>,
    vms: Vec<VmId>,
    vcpus: Vec<VcpuId>,
    /// Entry values written, keyed by (table, index).
    shadow: HashMap<(u64, u16), u64>,
    /// The input lets the host lie about old entry values.
    host_may_lie: bool,
    bogus_old: bool,
    host: HostState,
    touched: Touched,
}

impl<'a> Driver<'a> {
    pub fn new(v: Verifier<'a>, host_may_lie: bool) -> Driver<'a> {
        let host = HostState {
            cr0: 0x8005_0033,
            cr3: 1,
            cr4: 0x37_06f0,
            stack_high: u64::MAX,
            ..HostState::default()
        };
        Driver {
            v,
            vms: Vec::new(),
            vcpus: Vec::new(),
            shadow: HashMap::new(),
            host_may_lie,
            bogus_old: false,
            host,
            touched: Touched::new(),
        }
    }

    fn spte(&mut self, table: Pfn, index: u16, new: EptEntry, old: Option<u64>, commit: bool) {
        let Ok(plan) = self.v.check_spte(table, index, new) else {
            return;
        };
        if !commit {
            return; // A failed cmpxchg: the plan is dropped.
        }
        let tracked = self
            .shadow
            .get(&(table.0, index))
            .copied()
            .unwrap_or(1 << 63);
        let old = match old {
            Some(o) if self.host_may_lie && o != tracked => {
                self.bogus_old = true;
                o
            }
            _ => tracked,
        };
        let level = match self.v.frame_state(table) {
            Some(FrameState::Protected(Protected::Ept(page))) => page.level,
            _ => EptLevel::L1,
        };
        for value in [old, new.0] {
            self.touch_target(value, level);
        }
        self.v.commit_spte(plan, EptEntry(old));
        self.shadow.insert((table.0, index), new.0);
    }

    /// Marks every frame an entry of a table at `level` can reach: a table, a page or a block.
    fn touch_target(&mut self, value: u64, level: EptLevel) {
        let target = (value >> 12) & ((1 << 40) - 1);
        let frames = match (value & (1 << 7) != 0, level) {
            (true, EptLevel::L2) => 1 << 9,
            (true, EptLevel::L3) => 1 << 18,
            _ => 1,
        };
        self.touched.range(target & !(frames - 1), frames);
    }

    pub fn apply(&mut self, a: &Action) {
        use Action::*;
        let v = &mut self.v;
        let t = &mut self.touched;
        match *a {
            CreateVm => {
                if let Ok(vm) = v.create_vm() {
                    self.vms.push(vm);
                }
            }
            DestroyVm(i) => {
                if let Some(vm) = pick(&self.vms, i) {
                    let _ = v.destroy_vm(vm);
                }
            }
            CreateVcpu(i) => {
                if let Some(vm) = pick(&self.vms, i) {
                    if let Ok(c) = v.create_vcpu(vm) {
                        self.vcpus.push(c);
                    }
                }
            }
            DestroyVcpu(i) => {
                if let Some(c) = pick(&self.vcpus, i) {
                    let _ = v.destroy_vcpu(c);
                }
            }
            Donate(i, p, n) => {
                if let Some(vm) = pick(&self.vms, i) {
                    let first = t.pfn(p);
                    t.range(first.0, u64::from(n % 4));
                    let _ = v.donate_to_vm(vm, first, u64::from(n % 4));
                }
            }
            Reclaim(p) => {
                if let Ok(plan) = v.check_reclaim(t.pfn(p)) {
                    v.commit_reclaim(plan.scrub(&mut NoScrub));
                }
            }
            KsmMerge(k, o) => {
                let _ = v.ksm_merge(t.pfn(k), t.pfn(o));
            }
            KsmUnmerge(k) => {
                let _ = v.ksm_unmerge(t.pfn(k));
            }
            UnshareToVm(k, i) => {
                if let Some(vm) = pick(&self.vms, i) {
                    if let Ok(plan) = v.check_unshare_to_vm(t.pfn(k), vm) {
                        v.commit_unshare_to_vm(plan);
                    }
                }
            }
            Protect(p) => {
                let _ = v.protect(t.pfn(p));
            }
            Unprotect(p) => {
                let _ = v.unprotect(t.pfn(p));
            }
            RegisterZero(p, huge) => {
                let (first, n) = if huge {
                    (Pfn(pfn(p).0 & !511), 512)
                } else {
                    (pfn(p), 1)
                };
                t.range(first.0, n);
                let _ = v.register_zero_pages(first, n);
            }
            ReleaseZero(p, huge) => {
                let (first, n) = if huge {
                    (Pfn(pfn(p).0 & !511), 512)
                } else {
                    (pfn(p), 1)
                };
                t.range(first.0, n);
                let _ = v.release_zero_pages(first, n);
            }
            RegisterPgd(p) => {
                let first = t.pfn(p);
                t.range(first.0, 2);
                let _ = v.register_host_pgd(first, 2);
            }
            UnregisterPgd(p) => {
                let first = t.pfn(p);
                t.range(first.0, 2);
                let _ = v.unregister_host_pgd(first, 2);
            }
            RegisterHyperPsRoot(p) => {
                let _ = v.register_hyperps_root(t.pfn(p));
            }
            AssignMmio(i, off, n) => {
                if let Some(vm) = pick(&self.vms, i) {
                    let _ =
                        v.assign_mmio(vm, Pfn(FRAMES + u64::from(off % 4096)), u64::from(n % 1024));
                }
            }
            ReleaseMmio(i, off) => {
                if let Some(vm) = pick(&self.vms, i) {
                    let _ = v.release_mmio(vm, Pfn(FRAMES + u64::from(off % 4096)));
                }
            }
            RegisterEpt(i, p, level) => {
                if let (Some(vm), Some(level)) = (pick(&self.vms, i), EptLevel::new(level % 6)) {
                    let page = t.pfn(p);
                    if v.register_ept_page(vm, page, level).is_ok() {
                        // A fresh page holds only non-present entries.
                        self.shadow.retain(|(table, _), _| *table != page.0);
                    }
                }
            }
            UnregisterEpt(p) => {
                let _ = v.unregister_ept_page(t.pfn(p));
            }
            SpteRaw {
                table,
                index,
                value,
                old,
                commit,
            } => {
                let table = t.pfn(table);
                self.spte(table, index % 520, EptEntry(value), old, commit);
            }
            SpteKvm {
                table,
                index,
                target,
                shape,
            } => {
                let e = kvm_entry(u64::from(target % PFN_SPACE), shape);
                let table = t.pfn(table);
                self.spte(table, index % 512, e, None, true);
            }
            RegisterVmcs(i, p, kind) => {
                if let Some(c) = pick(&self.vcpus, i) {
                    let kind = [VmcsKind::Vmcs01, VmcsKind::Vmcs02, VmcsKind::Shadow]
                        [usize::from(kind % 3)];
                    let _ = v.register_vmcs(c, t.pfn(p), kind);
                }
            }
            UnregisterVmcs(p) => {
                let _ = v.unregister_vmcs(t.pfn(p));
            }
            RegisterAux(owner, i, p, kind) => {
                let owner = match owner % 3 {
                    0 => pick(&self.vcpus, i).map(AuxOwner::Vcpu),
                    1 => pick(&self.vms, i).map(AuxOwner::Vm),
                    _ => Some(AuxOwner::Global),
                };
                let kinds = [
                    AuxKind::MsrBitmap,
                    AuxKind::MsrList,
                    AuxKind::Pml,
                    AuxKind::VeInfo,
                    AuxKind::PiDesc,
                    AuxKind::VirtualApic,
                    AuxKind::PidTable,
                    AuxKind::VmreadBitmap,
                    AuxKind::VmwriteBitmap,
                ];
                if let Some(owner) = owner {
                    let _ = v.register_aux_page(
                        owner,
                        t.pfn(p),
                        kinds[usize::from(kind) % kinds.len()],
                    );
                }
            }
            UnregisterAux(p) => {
                let _ = v.unregister_aux_page(t.pfn(p));
            }
            RegisterVmxon(c, p) => {
                let _ = v.register_vmxon(CpuId(u32::from(c % 3)), t.pfn(p));
            }
            UnregisterVmxon(c) => {
                let _ = v.unregister_vmxon(CpuId(u32::from(c % 3)));
            }
            Vmxon(c, p) => {
                let _ = v.vmxon(CpuId(u32::from(c % 3)), Hpa(t.pfn(p).0 << 12));
            }
            Vmxoff(c) => {
                let _ = v.vmxoff(CpuId(u32::from(c % 3)));
            }
            Vmptrld(c, p) => {
                let _ = v.vmptrld(CpuId(u32::from(c % 3)), Hpa(t.pfn(p).0 << 12));
            }
            Vmclear(c, p) => {
                let _ = v.vmclear(CpuId(u32::from(c % 3)), Hpa(t.pfn(p).0 << 12));
            }
            VmcsWrite {
                cpu,
                field,
                raw_field,
                value,
            } => {
                let f = raw_field.unwrap_or(KNOWN_FIELDS[usize::from(field) % KNOWN_FIELDS.len()]);
                let host = self.host;
                let _ = v.check_vmcs_write(CpuId(u32::from(cpu % 3)), VmcsField(f), value, &host);
            }
            WriteCr0(c, new) => {
                let _ = v.check_cr0(CpuId(u32::from(c % 3)), Cr0(0), Cr0(new));
            }
            WriteCr3(c, cr4, new) => {
                let _ = v.check_cr3(CpuId(u32::from(c % 3)), Cr4(cr4), Cr3(new));
            }
            WriteCr4(c, old, new) => {
                let _ = v.check_cr4(CpuId(u32::from(c % 3)), Cr4(old), Cr4(new));
            }
            AssignVpid(i, vpid) => {
                if let Some(c) = pick(&self.vcpus, i) {
                    let _ = v.assign_vpid(c, Vpid(vpid % 70));
                }
            }
            ReleaseVpid(i, vpid) => {
                if let Some(c) = pick(&self.vcpus, i) {
                    let _ = v.release_vpid(c, Vpid(vpid % 70));
                }
            }
            InveptGlobal => v.note_invept_global(),
            InvvpidGlobal => v.note_invvpid_global(),
        }
    }

    /// Checks the security invariants and internal consistency; panics (fails the fuzz run)
    /// on a violation.
    pub fn check_invariants(&self, full_scan: bool) {
        let v = &self.v;
        if !self.bogus_old {
            assert_eq!(
                v.audit().anomalies(),
                0,
                "internal anomaly without bogus input"
            );
        }
        for (&(table, _), &value) in &self.shadow {
            let Some(FrameState::Protected(Protected::Ept(page))) = v.frame_state(Pfn(table))
            else {
                continue;
            };
            if !v.vm_is_live(page.vm) {
                continue;
            }
            let Ok(class) = classify_spte(EptEntry(value), page.level, v.config()) else {
                panic!("a refused value was written: {value:#x}");
            };
            if self.bogus_old {
                // The counts that guard state changes were fed a lie (see the top of the file).
                continue;
            }
            if let EptClass::Leaf {
                pfn,
                size,
                writable,
                ..
            } = class
            {
                let n = size.frames();
                if pfn.0 >= v.frame_count() {
                    continue; // MMIO range, checked by the verifier against its owner.
                }
                for f in pfn.0..pfn.0 + n {
                    match v.frame_state(Pfn(f)) {
                        Some(FrameState::Vm(owner)) => assert_eq!(owner, page.vm, "cross-VM leaf"),
                        Some(FrameState::Shared(_) | FrameState::Zero) => {
                            assert!(!writable, "writable shared leaf")
                        }
                        other => panic!("leaf {value:#x} reaches frame {f} in state {other:?}"),
                    }
                }
            }
        }
        if !self.bogus_old {
            let frames: Box<dyn Iterator<Item = u64>> = if full_scan {
                Box::new(0..v.frame_count())
            } else {
                Box::new(self.touched.frames())
            };
            for f in frames {
                let state = v.frame_state(Pfn(f)).unwrap();
                let (maps, wmaps) = v.frame_mappings(Pfn(f)).unwrap();
                match state {
                    FrameState::Shared(_) | FrameState::Zero => assert_eq!(wmaps, 0),
                    FrameState::Vm(_) => {}
                    _ => assert_eq!(maps, 0, "frame {f} in state {state:?} is mapped"),
                }
            }
        }
    }
}

/// Runs one fuzz input: decodes a configuration tweak and a sequence of actions.
pub fn run(data: &[u8], focus: Focus) {
    let mut u = Unstructured::new(data);
    let mut config = Config::kvm_6_12(46, (1 << 20) | (1 << 21));
    config.ept_ad_bits = u.arbitrary().unwrap_or(true);
    config.ept_exec_only = u.arbitrary().unwrap_or(true);
    config.ept_1g_pages = u.arbitrary().unwrap_or(true);
    if u.arbitrary().unwrap_or(false) {
        config.ept_max_level = EptLevel::L5;
    }
    let host_may_lie = u.arbitrary().unwrap_or(false);
    let mut st = Storage::new();
    let Some(v) = st.verifier(config) else { return };
    let mut d = Driver::new(v, host_may_lie);
    // Seed a little structure so that short inputs reach the interesting paths.
    d.apply(&Action::CreateVm);
    d.apply(&Action::CreateVcpu(0));
    while let Ok(a) = u.arbitrary::<Action>() {
        if keep(focus, &a) {
            d.apply(&a);
        }
        if u.is_empty() {
            break;
        }
    }
    // Which inputs walk every frame depends only on the input, so a failure replays.
    let digest = data
        .iter()
        .fold(0u32, |h, &b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    d.check_invariants(digest % FULL_SCAN_EVERY == 0);
}

/// Fuzzing drives the verifier's records; page contents are not modelled.
struct NoScrub;

impl Scrubber for NoScrub {
    fn scrub(&mut self, _pfn: Pfn) {}
}
