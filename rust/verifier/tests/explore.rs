// SPDX-License-Identifier: GPL-2.0

//! A bounded exhaustive check of the backend and the verifier together: every sequence of hook
//! calls up to a depth, in a small world, against the invariants that define isolation.
//!
//! The world: two VMs of two VMMs (each with a 4-level EPT whose level-1 table can be taken
//! apart and rebuilt), two vCPUs, four guest frames (two per VM), two host frames that either
//! VMM may map anywhere, two EPT tables, one 2 MiB block, a kernel page and a VMXON region.
//! Every operation a hook can be called with is tried with every argument from that world, by
//! the caller the attacker chooses (either VMM, or a kernel thread). The explorer walks the
//! reachable states breadth-first, deduplicated by a hash of everything a later decision can
//! depend on, and at every new state checks the invariants of `check_invariants` (in
//! `tests/world/`). A refused call must leave the records exactly as they were.
//!
//! A violation prints the shortest sequence of calls that reaches it (breadth-first order).
//!
//! Three alphabets (see [`Alphabet`]) keep the long runs within reach; each test explores one.
//!
//! * `cargo test --test explore` explores each alphabet to depth 3 (seconds).
//! * `HYPERPS_EXPLORE_DEPTH=8 HYPERPS_EXPLORE_OPS=vmx cargo test --release --test explore --
//!   --nocapture` is a long run of one alphabet; `HYPERPS_EXPLORE_THREADS` sets the threads
//!   (default: all CPUs).
//! * `HYPERPS_EXPLORE_DEPTH=4 cargo test --release --features release-on-unmap --test explore`
//!   brings back the old rule that a zap gave the frame back to the host: the memory tests then
//!   expect the counterexample, and fail without one (see `Documentation/hyperps/verifier.rst`).

mod world;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use world::*;

/// An identity hasher for the set of state hashes.
#[derive(Default)]
struct Id(u64);

impl Hasher for Id {
    fn write(&mut self, _: &[u8]) {}
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A new state found by a thread: parent node, op, state hash, violations.
type Found = (u32, u16, u64, Vec<String>);

struct Node {
    parent: u32,
    op: u16,
}

fn path_of(nodes: &[Node], mut n: u32) -> Vec<u16> {
    let mut p = Vec::new();
    while n != 0 {
        let node = &nodes[n as usize];
        p.push(node.op);
        n = node.parent;
    }
    p.reverse();
    p
}

/// What the explorer found.
struct Exploration {
    states: usize,
    transitions: u64,
    depth: usize,
    counterexample: Option<String>,
}

fn explore(alphabet: Alphabet, max_depth: usize, threads: usize) -> Exploration {
    let ops = alphabet.ops();
    let initial = World::initial();
    let mut seen: HashSet<u64, BuildHasherDefault<Id>> = HashSet::default();
    let init_records = records_hash(&initial);
    seen.insert(state_hash(&initial, init_records));
    let mut nodes = vec![Node {
        parent: 0,
        op: u16::MAX,
    }];
    let mut frontier: Vec<u32> = vec![0];
    let mut transitions = 0u64;
    let mut depth = 0;
    {
        let mut w = initial.clone();
        let leaves = reached(&w);
        let bad = check_invariants(&mut w, &leaves);
        assert!(
            bad.is_empty(),
            "the initial world breaks an invariant: {bad:?}"
        );
    }
    while depth < max_depth && !frontier.is_empty() {
        let chunk = frontier.len().div_ceil(threads).max(1);
        let seen_ref = &seen;
        let nodes_ref = &nodes;
        let ops_ref = &ops;
        let initial_ref = &initial;
        let results: Vec<Vec<Found>> = std::thread::scope(|s| {
            let handles: Vec<_> = frontier
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        let mut local: HashSet<u64, BuildHasherDefault<Id>> = HashSet::default();
                        let mut scratch = initial_ref.clone();
                        for &n in part {
                            let w = replay(initial_ref, ops_ref, &path_of(nodes_ref, n));
                            let before = records_hash(&w);
                            let parent = state_hash(&w, before);
                            for (i, &op) in ops_ref.iter().enumerate() {
                                let st = step_into(&mut scratch, &w, (before, parent), op, |h| {
                                    !seen_ref.contains(&h) && !local.contains(&h)
                                });
                                if seen_ref.contains(&st.hash) {
                                    continue;
                                }
                                if local.insert(st.hash) || !st.violations.is_empty() {
                                    out.push((n, i as u16, st.hash, st.violations));
                                }
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("explorer thread"))
                .collect()
        });
        depth += 1;
        let mut next = Vec::new();
        let mut first_bad: Option<(u32, u16, Vec<String>)> = None;
        for r in results {
            for (parent, op, hash, violations) in r {
                if !violations.is_empty() {
                    if first_bad.is_none() {
                        first_bad = Some((parent, op, violations));
                    }
                    continue;
                }
                if seen.insert(hash) {
                    nodes.push(Node { parent, op });
                    next.push((nodes.len() - 1) as u32);
                }
            }
        }
        transitions += (frontier.len() * ops.len()) as u64;
        if let Some((parent, op, violations)) = first_bad {
            let mut path = path_of(&nodes, parent);
            path.push(op);
            let mut text = String::new();
            for (k, i) in path.iter().enumerate() {
                let _ = writeln!(text, "  {}. {:?}", k + 1, ops[usize::from(*i)]);
            }
            let _ = writeln!(text, "breaks: {}", violations.join("\n        "));
            return Exploration {
                states: seen.len(),
                transitions,
                depth,
                counterexample: Some(text),
            };
        }
        eprintln!(
            "explore: depth {depth}: {} new states, {} in all",
            next.len(),
            seen.len()
        );
        frontier = next;
    }
    Exploration {
        states: seen.len(),
        transitions,
        depth,
        counterexample: None,
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn threads() -> usize {
    env_usize(
        "HYPERPS_EXPLORE_THREADS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )
}

/// Explores `alphabet` to `depth` (or `HYPERPS_EXPLORE_DEPTH`, for the alphabet that
/// `HYPERPS_EXPLORE_OPS` names, or all of them if it names none).
fn check_alphabet(alphabet: Alphabet, depth: usize) {
    if Alphabet::from_env().is_some_and(|a| a != alphabet) {
        return;
    }
    let depth = env_usize("HYPERPS_EXPLORE_DEPTH", depth);
    let start = Instant::now();
    let e = explore(alphabet, depth, threads());
    eprintln!(
        "explore {alphabet:?}: {} ops, depth {} of {depth}, {} states, {} calls, {:.1} s",
        alphabet.ops().len(),
        e.depth,
        e.states,
        e.transitions,
        start.elapsed().as_secs_f64()
    );
    if let Some(c) = e.counterexample {
        panic!("shortest sequence that breaks isolation:\n{c}");
    }
}

#[test]
#[cfg_attr(
    feature = "release-on-unmap",
    should_panic(expected = "shortest sequence that breaks isolation")
)]
fn every_sequence_of_every_op_keeps_vms_isolated() {
    check_alphabet(Alphabet::Full, 3);
}

#[test]
#[cfg_attr(
    feature = "release-on-unmap",
    should_panic(expected = "shortest sequence that breaks isolation")
)]
fn every_sequence_of_memory_ops_keeps_vms_isolated() {
    check_alphabet(Alphabet::Memory, 3);
}

#[test]
fn every_sequence_of_vmx_ops_keeps_vms_isolated() {
    check_alphabet(Alphabet::Vmx, 3);
}

/// What the explorer finds at depth 4 when a zap gives the frame back to the host (feature
/// `release-on-unmap`): VM 0 writes a frame, KVM zaps it, a KSM merge that concerns only host
/// pages puts it into VM 1's VMM, and VM 1 maps it. With ownership outliving mappings the
/// frame stays VM 0's and the last write is refused.
#[test]
fn zap_then_ksm_merge_then_map_into_another_vm() {
    let seq = [
        Op::Map {
            table: 0,
            index: 0,
            frame: HOST[0],
            writable: true,
            by: Caller::Vmm(0),
        },
        Op::Zap { table: 0, index: 0 },
        Op::KsmMerge {
            frame: HOST[1],
            kframe: HOST[0],
        },
        Op::Map {
            table: 1,
            index: 0,
            frame: HOST[0],
            writable: false,
            by: Caller::Vmm(1),
        },
    ];
    let r = run_sequence(&seq);
    if cfg!(feature = "release-on-unmap") {
        let e = r.expect_err("the old rule lets VM 1 map VM 0's frame");
        assert!(e.contains("with no scrub between"), "{e}");
    } else {
        assert_eq!(r, Ok(vec![false, false, true, true]));
    }
}

/// The same through the host's page tables: VMM 1 maps VM 0's frame and gives it to VM 1,
/// as a leaf and as a page a VMCS names.
#[test]
fn zap_then_remap_then_map_into_another_vm() {
    for last in [
        Op::Map {
            table: 1,
            index: 0,
            frame: HOST[0],
            writable: true,
            by: Caller::Vmm(1),
        },
        Op::GuestPage {
            vm: 1,
            frame: HOST[0],
            by: Caller::Vmm(1),
        },
    ] {
        let seq = [
            Op::Map {
                table: 0,
                index: 0,
                frame: HOST[0],
                writable: true,
                by: Caller::Vmm(0),
            },
            Op::Zap { table: 0, index: 0 },
            Op::Remap {
                mm: 1,
                gfn: 0,
                frame: Some(HOST[0]),
            },
            last,
            Op::Map {
                table: 1,
                index: 1,
                frame: HOST[0],
                writable: true,
                by: Caller::Vmm(1),
            },
        ];
        let r = run_sequence(&seq);
        if cfg!(feature = "release-on-unmap") {
            assert!(r.is_err(), "the old rule lets VM 1 have VM 0's frame");
        } else {
            assert_eq!(r, Ok(vec![false, false, false, true, true]));
        }
    }
}

/// A refused VMPTRLD leaves the CPU with its previous VMCS: the backend forgets which VMCS is
/// current, so the VMWRITE and the entry that follow are refused too.
#[test]
fn refused_vmptrld_locks_out_the_writes_after_it() {
    let mut seq = VCPU0_LOADED.to_vec();
    seq.extend([
        Op::Vmptrld {
            vcpu: 0,
            by: Caller::Vmm(1),
        },
        Op::WriteEptp { root: ROOT[0] },
        Op::Enter,
    ]);
    assert_eq!(run_sequence(&seq), Ok(vec![false, false, true, true, true]));
}

/// VM 0's VMM creates vCPU 0 and loads its VMCS.
const VCPU0_LOADED: [Op; 2] = [
    Op::VcpuCreate {
        vm: 0,
        vcpu: 0,
        by: Caller::Vmm(0),
    },
    Op::Vmptrld {
        vcpu: 0,
        by: Caller::Vmm(0),
    },
];

/// Every critical field the explorer writes takes KVM's value and refuses each attack, so the
/// explorer's VMWRITEs reach both sides of every rule.
#[test]
fn critical_fields_take_kvms_values_and_refuse_the_attacks() {
    let mut seq = VCPU0_LOADED.to_vec();
    seq.push(Op::WriteEptp { root: ROOT[0] });
    let mut want = vec![false, false, false];
    for (field, f) in CRITICAL_FIELDS.iter().enumerate() {
        for value in 0..=f.attacks.len() {
            seq.push(Op::WriteField {
                field: field as u8,
                value: value as u8,
            });
            want.push(value != 0);
        }
    }
    seq.push(Op::Enter);
    want.push(false);
    assert_eq!(run_sequence(&seq), Ok(want));
}

/// The entry rule of each critical field catches its attacks: with the value forced into the
/// VMCS behind the backend's back, the entry the backend allows is a violation.
#[test]
fn an_entry_with_an_attack_value_breaks_the_field_rules() {
    let mut w = World::initial();
    for op in VCPU0_LOADED {
        let before = records_hash(&w);
        w = step(&w, (before, 0), op, |_| true).0;
    }
    for f in &CRITICAL_FIELDS {
        for &attack in f.attacks {
            let mut forced = w.clone();
            forced.k.fields.insert((VMCS[0], f.field.0), attack);
            let before = records_hash(&forced);
            let (_, s) = step(&forced, (before, 0), Op::Enter, |_| true);
            assert!(
                s.violations
                    .iter()
                    .any(|v| v.contains("VM entry allowed with field")),
                "field {:#x} = {attack:#x}: {:?}",
                f.field.0,
                s.violations
            );
        }
    }
}
