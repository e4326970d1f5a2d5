// SPDX-License-Identifier: GPL-2.0

//! Model-based property tests: random sequences of donate, share (KSM merge and unmerge),
//! map, unmap, zap, free, protect and VM destruction are applied both to the verifier and to a
//! trivial `HashMap` reference model with an explicit transition table. After every step the
//! two must agree on the verdict and on every frame's state, and the global invariants must
//! hold on the verifier:
//!
//! * a frame has exactly one owner unless it is shared (no frame of VM A is reachable from VM
//!   B's EPT);
//! * no shared or zero-page frame has a writable mapping;
//! * no HyperPS page is the target of any EPT leaf;
//! * the verifier's mapping counts and per-VM frame counts equal what is really written.
//!
//! The number of cases is `PROPTEST_CASES` (default 512).

mod common;

use common::*;
use hyperps_verifier::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// Frames the sequences play with: 16 frames starting at `BASE`, and the zero page.
const BASE: u64 = 1000;
const NFRAMES: u64 = 16;
const ZERO: u64 = BASE + NFRAMES;
/// Up to three VMs, each with one level-1 EPT page of 8 used slots.
const NVMS: usize = 3;
const SLOTS: u16 = 8;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

#[derive(Clone, Debug)]
enum Op {
    CreateVm,
    Donate {
        vm: usize,
        frame: u64,
    },
    Map {
        vm: usize,
        slot: u16,
        frame: u64,
        writable: bool,
    },
    MapZero {
        vm: usize,
        slot: u16,
        writable: bool,
    },
    Unmap {
        vm: usize,
        slot: u16,
    },
    Zap {
        vm: usize,
    },
    Free {
        frame: u64,
    },
    DestroyVm {
        vm: usize,
    },
    KsmMerge {
        kframe: u64,
        old: u64,
    },
    KsmUnmerge {
        kframe: u64,
    },
    Protect {
        frame: u64,
    },
    Unprotect {
        frame: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let vm = 0..NVMS;
    let frame = 0..NFRAMES;
    let slot = 0..SLOTS;
    prop_oneof![
        2 => Just(Op::CreateVm),
        4 => (vm.clone(), frame.clone()).prop_map(|(vm, frame)| Op::Donate { vm, frame }),
        6 => (vm.clone(), slot.clone(), frame.clone(), any::<bool>())
            .prop_map(|(vm, slot, frame, writable)| Op::Map { vm, slot, frame, writable }),
        1 => (vm.clone(), slot.clone(), any::<bool>()).prop_map(|(vm, slot, writable)| Op::MapZero { vm, slot, writable }),
        3 => (vm.clone(), slot).prop_map(|(vm, slot)| Op::Unmap { vm, slot }),
        1 => vm.clone().prop_map(|vm| Op::Zap { vm }),
        3 => frame.clone().prop_map(|frame| Op::Free { frame }),
        1 => vm.prop_map(|vm| Op::DestroyVm { vm }),
        3 => (frame.clone(), frame.clone()).prop_map(|(kframe, old)| Op::KsmMerge { kframe, old }),
        1 => frame.clone().prop_map(|kframe| Op::KsmUnmerge { kframe }),
        1 => frame.clone().prop_map(|frame| Op::Protect { frame }),
        1 => frame.prop_map(|frame| Op::Unprotect { frame }),
    ]
}

/// Reference model of a frame's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Host,
    Vm(VmId),
    Shared { users: u32 },
    Zero,
    Protected,
}

#[derive(Default)]
struct Model {
    owner: HashMap<u64, Owner>,
    /// VM slot of the test -> (VmId, EPT table frame), for live VMs.
    vms: [Option<(VmId, u64)>; NVMS],
    /// (VmId, slot) -> (frame, writable): every leaf currently written.
    leaves: HashMap<(VmId, u16), (u64, bool)>,
    live: Vec<VmId>,
}

impl Model {
    fn owner(&self, f: u64) -> Owner {
        *self.owner.get(&f).unwrap_or(&Owner::Host)
    }
    fn is_live(&self, vm: VmId) -> bool {
        self.live.contains(&vm)
    }
    fn mapped(&self, f: u64) -> bool {
        self.leaves.values().any(|(p, _)| *p == f)
    }
    fn writably_mapped(&self, f: u64) -> bool {
        self.leaves.values().any(|(p, w)| *p == f && *w)
    }
    /// The transition table for a leaf: may VM `vm` map frame `f` with `writable`?
    fn may_map(&self, vm: VmId, f: u64, writable: bool) -> bool {
        match self.owner(f) {
            Owner::Vm(o) => o == vm,
            Owner::Shared { .. } | Owner::Zero => !writable,
            Owner::Host | Owner::Protected => false,
        }
    }
}

struct Harness<'a> {
    v: Verifier<'a>,
    m: Model,
    next_table: u64,
}

impl Harness<'_> {
    fn table_of(&self, vm: usize) -> Option<(VmId, u64)> {
        self.m.vms.get(vm).copied().flatten()
    }

    fn entry(&self, vm: VmId, slot: u16) -> EptEntry {
        match self.m.leaves.get(&(vm, slot)) {
            Some((f, true)) => leaf(*f, 1, true),
            Some((f, false)) => leaf_ro_not_host_writable(*f, 1),
            None => NONPRESENT,
        }
    }

    /// Writes `new` at `slot`, passing the value it replaces, and mirrors it in the model.
    fn write(
        &mut self,
        vm: VmId,
        table: u64,
        slot: u16,
        new: Option<(u64, bool)>,
    ) -> Result<(), Denial> {
        let old = self.entry(vm, slot);
        let value = match new {
            Some((f, true)) => leaf(f, 1, true),
            Some((f, false)) => leaf_ro_not_host_writable(f, 1),
            None => NONPRESENT,
        };
        let plan = self.v.check_spte(Pfn(table), slot, value)?;
        self.v.commit_spte(plan, old);
        match new {
            Some(n) => self.m.leaves.insert((vm, slot), n),
            None => self.m.leaves.remove(&(vm, slot)),
        };
        Ok(())
    }

    fn zap(&mut self, vm: VmId, table: u64) {
        for slot in 0..SLOTS {
            if self.m.leaves.contains_key(&(vm, slot)) {
                self.write(vm, table, slot, None).unwrap();
            }
        }
    }

    /// Applies one operation to both sides and returns (verifier ok, model ok).
    fn step(&mut self, op: &Op) -> (bool, bool) {
        match *op {
            Op::CreateVm => {
                let free = self.m.vms.iter().position(|s| s.is_none());
                let Some(i) = free else { return (true, true) };
                let vm = self.v.create_vm().unwrap();
                let table = self.next_table;
                self.next_table += 1;
                self.v
                    .register_ept_page(vm, Pfn(table), EptLevel::L1)
                    .unwrap();
                self.m.vms[i] = Some((vm, table));
                self.m.live.push(vm);
                (true, true)
            }
            Op::Donate { vm, frame } => {
                let f = BASE + frame;
                let Some((id, _)) = self.table_of(vm) else {
                    return (true, true);
                };
                let expect = self.m.owner(f) == Owner::Host;
                let got = self.v.donate_to_vm(id, Pfn(f), 1).is_ok();
                if expect {
                    self.m.owner.insert(f, Owner::Vm(id));
                }
                (got, expect)
            }
            Op::Map {
                vm,
                slot,
                frame,
                writable,
            } => self.map(vm, slot, BASE + frame, writable),
            Op::MapZero { vm, slot, writable } => self.map(vm, slot, ZERO, writable),
            Op::Unmap { vm, slot } => {
                let Some((id, table)) = self.table_of(vm) else {
                    return (true, true);
                };
                (self.write(id, table, slot, None).is_ok(), true)
            }
            Op::Zap { vm } => {
                if let Some((id, table)) = self.table_of(vm) {
                    self.zap(id, table);
                }
                (true, true)
            }
            Op::Free { frame } => {
                let f = BASE + frame;
                let expect = matches!(self.m.owner(f), Owner::Vm(_) | Owner::Shared { .. })
                    && !self.m.mapped(f);
                let got = reclaim(&mut self.v, f).is_ok();
                if expect {
                    self.m.owner.insert(f, Owner::Host);
                }
                (got, expect)
            }
            Op::DestroyVm { vm } => {
                let Some((id, table)) = self.table_of(vm) else {
                    return (true, true);
                };
                // KVM zaps and frees the EPT before destroying the VM.
                self.zap(id, table);
                self.v.unregister_ept_page(Pfn(table)).unwrap();
                self.v.destroy_vm(id).unwrap();
                self.m.vms[vm] = None;
                self.m.live.retain(|v| *v != id);
                (true, true)
            }
            Op::KsmMerge { kframe, old } => {
                let (k, o) = (BASE + kframe, BASE + old);
                let old_ok = match self.m.owner(o) {
                    Owner::Host => true,
                    Owner::Vm(vm) => self.m.is_live(vm),
                    _ => false,
                };
                let (expect, next) = match self.m.owner(k) {
                    _ if k == o || !old_ok => (false, None),
                    Owner::Zero => (true, None),
                    Owner::Shared { users } => (true, Some(Owner::Shared { users: users + 1 })),
                    Owner::Host => (true, Some(Owner::Shared { users: 2 })),
                    Owner::Vm(vm) if self.m.is_live(vm) && !self.m.writably_mapped(k) => {
                        (true, Some(Owner::Shared { users: 2 }))
                    }
                    _ => (false, None),
                };
                let got = self.v.ksm_merge(Pfn(k), Pfn(o)).is_ok();
                if let Some(n) = next {
                    self.m.owner.insert(k, n);
                }
                (got, expect)
            }
            Op::KsmUnmerge { kframe } => {
                let k = BASE + kframe;
                let expect = matches!(self.m.owner(k), Owner::Shared { users } if users >= 2);
                let got = self.v.ksm_unmerge(Pfn(k)).is_ok();
                if let (true, Owner::Shared { users }) = (expect, self.m.owner(k)) {
                    self.m.owner.insert(k, Owner::Shared { users: users - 1 });
                }
                (got, expect)
            }
            Op::Protect { frame } => {
                let f = BASE + frame;
                let expect = self.m.owner(f) == Owner::Host;
                let got = self.v.protect(Pfn(f)).is_ok();
                if expect {
                    self.m.owner.insert(f, Owner::Protected);
                }
                (got, expect)
            }
            Op::Unprotect { frame } => {
                let f = BASE + frame;
                let expect = self.m.owner(f) == Owner::Protected;
                let got = self.v.unprotect(Pfn(f)).is_ok();
                if expect {
                    self.m.owner.insert(f, Owner::Host);
                }
                (got, expect)
            }
        }
    }

    fn map(&mut self, vm: usize, slot: u16, f: u64, writable: bool) -> (bool, bool) {
        let Some((id, table)) = self.table_of(vm) else {
            return (true, true);
        };
        let expect = self.m.may_map(id, f, writable);
        let got = self.write(id, table, slot, Some((f, writable))).is_ok();
        (got, expect)
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let v = &self.v;
        prop_assert_eq!(v.audit().anomalies(), 0);
        for f in BASE..=ZERO {
            let state = v.frame_state(Pfn(f)).unwrap();
            // Same state as the model.
            let expected = match self.m.owner(f) {
                Owner::Host => matches!(state, FrameState::Host),
                Owner::Vm(vm) => state == FrameState::Vm(vm),
                Owner::Shared { users } => {
                    matches!(state, FrameState::Shared(id) if v.share_users(id) == Some(users))
                }
                Owner::Zero => state == FrameState::Zero,
                Owner::Protected => matches!(state, FrameState::Protected(_)),
            };
            prop_assert!(
                expected,
                "frame {} is {:?}, model says {:?}",
                f,
                state,
                self.m.owner(f)
            );
            // Mapping counts equal the leaves really written.
            let all = self.m.leaves.values().filter(|(p, _)| *p == f).count() as u64;
            let writable = self
                .m
                .leaves
                .values()
                .filter(|(p, w)| *p == f && *w)
                .count() as u64;
            prop_assert_eq!(
                v.frame_mappings(Pfn(f)),
                Some((all, writable)),
                "counts of frame {}",
                f
            );
            if matches!(state, FrameState::Shared(_) | FrameState::Zero) {
                prop_assert_eq!(writable, 0, "writable shared frame {}", f);
            }
        }
        for (&(vm, _slot), &(f, _)) in &self.m.leaves {
            match v.frame_state(Pfn(f)).unwrap() {
                // Exactly one owner: a VM-owned frame is reachable only from its owner's EPT.
                FrameState::Vm(owner) => {
                    prop_assert_eq!(owner, vm, "frame {} of another VM mapped", f)
                }
                FrameState::Shared(_) | FrameState::Zero => {}
                other => prop_assert!(false, "leaf maps frame {} in state {:?}", f, other),
            }
        }
        for (id, _) in self.m.vms.iter().flatten() {
            let owned = (BASE..ZERO)
                .filter(|f| self.m.owner(*f) == Owner::Vm(*id))
                .count() as u64;
            prop_assert_eq!(v.vm_owned_frames(*id), Some(owned));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn verifier_matches_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut st = Storage::new(FRAMES);
        let mut v = st.verifier();
        v.register_zero_pages(Pfn(ZERO), 1).unwrap();
        let mut h = Harness { v, m: Model::default(), next_table: 10 };
        h.m.owner.insert(ZERO, Owner::Zero);
        for op in &ops {
            let (got, expect) = h.step(op);
            prop_assert_eq!(got, expect, "verdict differs for {:?}", op);
            h.check_invariants()?;
        }
    }

    /// The O(1) 2 MiB-region summary agrees with a brute-force scan of the 512 frames after
    /// random transitions concentrated on two regions.
    #[test]
    fn region_summary_matches_brute_force(
        ops in proptest::collection::vec((0u8..4, 0u64..1024, 0usize..2), 1..300)
    ) {
        let mut st = Storage::new(FRAMES);
        let mut v = st.verifier();
        let a = vm_with_ept(&mut v, 10);
        let b = v.create_vm().unwrap();
        let vms = [a, b];
        // Start with region 2 almost all A's so that uniform states are actually reached.
        v.donate_to_vm(a, Pfn(1024), 510).unwrap();
        for (kind, off, which) in ops {
            let pfn = Pfn(1024 + off);
            let _ = match kind {
                0 => v.donate_to_vm(vms[which], pfn, 1),
                1 => reclaim(&mut v, pfn.0),
                2 => v.protect(pfn),
                _ => v.unprotect(pfn),
            };
            for region in [1024u64, 1536] {
                let brute = (region..region + 512).all(|p| v.frame_state(Pfn(p)) == Some(FrameState::Vm(a)));
                let got = v.check_spte(Pfn(12), 2, leaf(region, 2, true)).is_ok();
                prop_assert_eq!(got, brute, "region {} uniform for A", region);
            }
        }
    }
}
