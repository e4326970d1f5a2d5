// SPDX-License-Identifier: GPL-2.0

//! Property tests of the backend: random sequences of hook calls, chosen as an attacker
//! chooses them, on two VMs of two VMMs.
//!
//! * **Refused means unchanged**: after every call that was refused, every frame's state and
//!   mapping counts, the VMs, vCPUs, memslots and deferred frees are exactly as before.
//! * **Isolation**: every leaf of a VM maps a frame the VM owns (or a share read-only), and a
//!   frame that goes from one VM to another was scrubbed on the way, unless the first VM was
//!   destroyed and the second is its own VMM's next VM (a restart keeps the guest memory).

mod common;

use std::collections::{HashMap, HashSet};

use common::mock::*;
use common::*;
use hyperps_verifier::policy::backend::*;
use hyperps_verifier::*;
use proptest::prelude::*;

const HVA: [u64; 2] = [0x7f00_0000_0000, 0x7e00_0000_0000];
const MM: [usize; 2] = [0xa000, 0xb000];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

#[derive(Clone, Debug)]
enum Op {
    /// Leaf of VM `vm` for guest frame `GFN_BASE + gfn` naming frame `frame`, from VMM `mm`.
    Map {
        vm: usize,
        gfn: u64,
        frame: usize,
        writable: bool,
        mm: usize,
    },
    Zap {
        vm: usize,
        gfn: u64,
    },
    Free {
        frame: usize,
        order: u32,
    },
    Ksm {
        frame: usize,
        kframe: usize,
    },
    PtFree {
        frame: usize,
    },
    PageFree {
        frame: usize,
    },
    GuestPage {
        vm: usize,
        gfn: u64,
        frame: usize,
        mm: usize,
    },
    Memslot {
        vm: usize,
        gfn: u64,
        mm: usize,
    },
    Pgd {
        frame: usize,
    },
    Vcpu {
        vm: usize,
        vmcs: usize,
        apic: usize,
    },
    Remap {
        mm: usize,
        gfn: u64,
        frame: usize,
    },
    /// The VMM of VM `vm` destroys it and creates its next VM over the same memory.
    Restart {
        vm: usize,
    },
}

/// Frames an op may name: each VM's memory, shared and kernel pages, EPT tables.
fn frames(vms: &[TestVm; 2]) -> Vec<u64> {
    let mut f: Vec<u64> = (2000..2006).chain(3000..3006).collect();
    f.extend([0, 5, USER_FIRST - 1, 4095]);
    for vm in vms {
        f.extend([vm.root.0, vm.l1.0]);
    }
    f
}

fn op() -> impl Strategy<Value = Op> {
    let vm = 0usize..2;
    let mm = 0usize..3;
    let gfn = 0u64..6;
    let frame = 0usize..20;
    prop_oneof![
        (
            vm.clone(),
            gfn.clone(),
            frame.clone(),
            any::<bool>(),
            mm.clone()
        )
            .prop_map(|(vm, gfn, frame, writable, mm)| Op::Map {
                vm,
                gfn,
                frame,
                writable,
                mm
            }),
        (vm.clone(), gfn.clone()).prop_map(|(vm, gfn)| Op::Zap { vm, gfn }),
        (frame.clone(), 0u32..3).prop_map(|(frame, order)| Op::Free { frame, order }),
        (frame.clone(), frame.clone()).prop_map(|(frame, kframe)| Op::Ksm { frame, kframe }),
        frame.clone().prop_map(|frame| Op::PtFree { frame }),
        frame.clone().prop_map(|frame| Op::PageFree { frame }),
        (vm.clone(), gfn.clone(), frame.clone(), mm.clone())
            .prop_map(|(vm, gfn, frame, mm)| Op::GuestPage { vm, gfn, frame, mm }),
        (vm.clone(), 0u64..4096, mm.clone()).prop_map(|(vm, gfn, mm)| Op::Memslot { vm, gfn, mm }),
        frame.clone().prop_map(|frame| Op::Pgd { frame }),
        (vm.clone(), frame.clone(), frame.clone()).prop_map(|(vm, vmcs, apic)| Op::Vcpu {
            vm,
            vmcs,
            apic
        }),
        (0usize..2, gfn, frame).prop_map(|(mm, gfn, frame)| Op::Remap { mm, gfn, frame }),
        vm.prop_map(|vm| Op::Restart { vm }),
    ]
}

/// A frame's state and its `(all, writable)` mapping counts.
type FrameSnapshot = (Option<FrameState>, Option<(u64, u64)>);

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    frames: Vec<FrameSnapshot>,
    vms: usize,
    vcpus: usize,
    memslots: [usize; 2],
    deferred: usize,
}

fn snapshot(b: &Backend<'_>, vms: &[TestVm; 2]) -> Snapshot {
    let v = b.verifier();
    Snapshot {
        frames: (0..v.frame_count())
            .map(|f| (v.frame_state(Pfn(f)), v.frame_mappings(Pfn(f))))
            .collect(),
        vms: b.live_vms(),
        vcpus: b.live_vcpus(),
        memslots: [b.memslot_count(vms[0].kvm), b.memslot_count(vms[1].kvm)],
        deferred: b.deferred_count(),
    }
}

fn mm_of(i: usize) -> Handle {
    MM.get(i).map_or(Handle::NONE, |m| Handle(*m))
}

/// Tears `v` down as KVM does (its leaves, its tables, then the VM) and, if KVM could destroy
/// it (no vCPU left), creates the VMM's next VM over the same memory slot. Returns the new VM.
fn restart(
    b: &mut Backend<'_>,
    p: &mut Mock,
    t: &mut EptMem,
    v: &TestVm,
    kvm: usize,
) -> Option<TestVm> {
    p.mm = v.mm;
    for g in 0..6u64 {
        let _ = v.zap(b, p, t, GFN_BASE + g);
    }
    let unlink = [
        (v.l2, (GFN_BASE / 512) as u16, 2u8),
        (v.l3, 0, 3),
        (v.root, 0, 4),
    ];
    for (table, index, level) in unlink {
        let _ = write(b, p, t, table, index, level, NONPRESENT, 0);
    }
    let live = b.live_vms();
    for pt in [v.l1, v.l2, v.l3, v.root] {
        let _ = b.pt_free(p, pt);
    }
    let _ = b.vm_destroy(p, v.kvm);
    b.deferred_pass1();
    let mut out = [Pfn(0); 8];
    b.deferred_pass2(p, &mut out);
    b.reap_zombies(p);
    if b.live_vms() == live {
        return None;
    }
    Some(make_vm(b, p, t, kvm, v.mm.0, v.hva))
}

fn run(
    b: &mut Backend<'_>,
    p: &mut Mock,
    t: &mut EptMem,
    vms: &mut [TestVm; 2],
    f: &[u64],
    op: &Op,
) {
    let frame = |i: usize| f[i % f.len()];
    match *op {
        Op::Map {
            vm,
            gfn,
            frame: fr,
            writable,
            mm,
        } => {
            p.mm = mm_of(mm);
            let g = GFN_BASE + gfn;
            let leaf = leaf(frame(fr), 1, writable);
            let _ = write(b, p, t, vms[vm].l1, (g % 512) as u16, 1, leaf, g);
        }
        Op::Zap { vm, gfn } => {
            let _ = vms[vm].zap(b, p, t, GFN_BASE + gfn);
        }
        Op::Free { frame: fr, order } => {
            let _ = b.free_pages(p, Pfn(frame(fr) & !((1 << order) - 1)), order);
        }
        Op::Ksm { frame: a, kframe } => {
            let _ = b.ksm_merge(p, 0, Pfn(frame(a)), Pfn(frame(kframe)));
        }
        Op::PtFree { frame: fr } => {
            let _ = b.pt_free(p, Pfn(frame(fr)));
        }
        Op::PageFree { frame: fr } => {
            let _ = b.page_free(p, frame(fr) << 12);
        }
        Op::GuestPage {
            vm,
            gfn,
            frame: fr,
            mm,
        } => {
            p.mm = mm_of(mm);
            let _ = b.guest_page(p, vms[vm].kvm, GFN_BASE + gfn, frame(fr));
        }
        Op::Memslot { vm, gfn, mm } => {
            p.mm = mm_of(mm);
            let slot = Memslot {
                id: 1,
                base_gfn: gfn << 12,
                npages: 4,
                hva: HVA[vm] + (1 << 30),
                ..Memslot::default()
            };
            let _ = b.memslot_add(p, vms[vm].kvm, &slot);
        }
        Op::Pgd { frame: fr } => {
            let _ = b.pgd_add(p, Pfn(frame(fr)), 1);
        }
        Op::Vcpu { vm, vmcs, apic } => {
            p.mm = vms[vm].mm;
            let info = VcpuInfo {
                kvm: vms[vm].kvm,
                vcpu: Handle(0x100 + vmcs),
                vpid: 1,
                vmcs01_pa: frame(vmcs) << 12,
                virtual_apic_pa: frame(apic) << 12,
                ..VcpuInfo::default()
            };
            let _ = b.vcpu_create(p, &info, true);
        }
        Op::Remap { mm, gfn, frame: fr } => {
            // The host changes a VMM's page tables (any frame, any time).
            let hva = vms[mm].hva_of(GFN_BASE + gfn);
            p.map(vms[mm].mm, hva, frame(fr), true);
        }
        Op::Restart { vm } => {
            let kvm = vms[vm].kvm.0 + 0x1000;
            if let Some(next) = restart(b, p, t, &vms[vm], kvm) {
                vms[vm] = next;
            }
        }
    }
}

/// Owner of every frame a leaf of `vm` maps must be `vm` (or the frame is shared/zero).
fn isolation_holds(b: &Backend<'_>, t: &EptMem, vms: &[TestVm; 2]) -> Result<(), String> {
    for (i, vm) in vms.iter().enumerate() {
        for index in 0..512u16 {
            let v = t.get(vm.l1, index);
            if v & (1 << 11) == 0 {
                continue;
            }
            let pfn = Pfn((v >> 12) & 0xff_ffff_ffff);
            match b.verifier().frame_state(pfn) {
                // Slot i is always vms[i]'s: a restart frees the slot and takes it again.
                Some(FrameState::Vm(o))
                    if usize::from(o.slot()) == i && b.verifier().vm_is_live(o) => {}
                Some(FrameState::Shared(_) | FrameState::Zero) if v & 2 == 0 => {}
                other => {
                    return Err(format!(
                        "VM {i} maps frame {:#x} in state {other:?} (entry {v:#x})",
                        pfn.0
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Runs `ops` on two VMs of two VMMs and checks the properties after every call.
fn check_sequence(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut env = Env::new();
    let mut b = env.backend();
    let mut p = Mock::new();
    let mut t = EptMem::default();
    let a = make_vm(&mut b, &mut p, &mut t, 0xa1, MM[0], HVA[0]);
    let x = make_vm(&mut b, &mut p, &mut t, 0xb1, MM[1], HVA[1]);
    let mut vms = [a, x];
    for (i, vm) in vms.iter().enumerate() {
        for g in 0..6u64 {
            let base = if i == 0 { 2000 } else { 3000 };
            p.map(vm.mm, vm.hva_of(GFN_BASE + g), base + g, true);
            p.contents.insert(base + g, base + g);
        }
    }
    let f = frames(&vms);
    let mut last_owner: HashMap<u64, VmId> = HashMap::new();
    let mut scrubbed_before = 0;
    for op in ops {
        let before = snapshot(&b, &vms);
        let refusals = p.refusals();
        run(&mut b, &mut p, &mut t, &mut vms, &f, op);
        // A restart is many calls; each of the others is one.
        if p.refusals() > refusals && !matches!(op, Op::Restart { .. }) {
            let after = snapshot(&b, &vms);
            prop_assert_eq!(&before, &after, "refused {:?} changed the records", op);
        }
        if let Err(e) = isolation_holds(&b, &t, &vms) {
            prop_assert!(false, "after {:?}: {}", op, e);
        }
        // A frame becomes a VM's only if that VM's VMM maps it at the VM's memslot.
        for pfn in 0..FRAMES as u64 {
            let was = before.frames[pfn as usize].0;
            let now = b.verifier().frame_state(Pfn(pfn));
            if now == was {
                continue;
            }
            if let Some(FrameState::Vm(o)) = now {
                let i = usize::from(o.slot());
                let vm = &vms[i];
                let mapped = (0..SLOT_PAGES).any(|g| {
                    p.maps
                        .get(&(vm.mm, vm.hva_of(GFN_BASE + g)))
                        .is_some_and(|m| m.pfn == Pfn(pfn))
                });
                prop_assert!(
                    mapped,
                    "frame {} became VM {}'s after {:?}, but its VMM does not map it",
                    pfn,
                    i,
                    op
                );
            }
        }
        // A frame goes from one VM to another only through a scrub, or from a destroyed VM
        // to the next VM of the same VMM (the same slot here).
        let scrubbed_now: HashSet<u64> =
            p.scrubbed[scrubbed_before..].iter().map(|p| p.0).collect();
        scrubbed_before = p.scrubbed.len();
        for pfn in 0..FRAMES as u64 {
            if scrubbed_now.contains(&pfn) {
                last_owner.remove(&pfn);
            }
            if let Some(FrameState::Vm(o)) = b.verifier().frame_state(Pfn(pfn)) {
                if let Some(prev) = last_owner.insert(pfn, o) {
                    let restarted = prev.slot() == o.slot() && !b.verifier().vm_is_live(prev);
                    prop_assert!(
                        prev == o || restarted,
                        "frame {} went from {:?} to {:?} without a scrub after {:?}",
                        pfn,
                        prev,
                        o,
                        op
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn refused_means_unchanged_and_vms_stay_isolated(ops in prop::collection::vec(op(), 1..40)) {
        check_sequence(&ops)?;
    }
}

/// The sequences that matter most, always run: a destroyed VM's memory must not reach another
/// VMM's VM, through either entry point.
#[test]
fn a_destroyed_vms_memory_reaches_no_other_vmm() {
    // Frames 2000.. are VM 0's memory (index 0 of `frames()`).
    for second in [
        Op::Map {
            vm: 1,
            gfn: 0,
            frame: 0,
            writable: true,
            mm: 1,
        },
        Op::GuestPage {
            vm: 1,
            gfn: 0,
            frame: 0,
            mm: 1,
        },
    ] {
        let ops = [
            Op::Map {
                vm: 0,
                gfn: 0,
                frame: 0,
                writable: true,
                mm: 0,
            },
            Op::Restart { vm: 0 },
            Op::Remap {
                mm: 1,
                gfn: 0,
                frame: 0,
            },
            second,
            Op::Map {
                vm: 0,
                gfn: 0,
                frame: 0,
                writable: true,
                mm: 0,
            },
        ];
        if let Err(e) = check_sequence(&ops) {
            panic!("{e}");
        }
    }
}
