// SPDX-License-Identifier: GPL-2.0

//! Fuzz target: sequences of hook calls on the backend, in the explorer's world
//! (`tests/world/`), with the explorer's invariants checked after every call. Most steps are
//! the explorer's own ops, with their small-world arguments; the others write any EPT entry
//! value anywhere, free or merge any frames, or load any EPT pointer (by VMWRITE or through
//! `ept_load`, with any VM, vCPU and root).

#![no_main]

#[path = "../../tests/world/mod.rs"]
mod world;

use arbitrary::{Arbitrary, Unstructured};
use world::{all_ops, records_hash, step, Caller, Op, World};

/// Calls per input at most.
const MAX_STEPS: usize = 48;

fn raw_frame(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    // The frame table has 1024 frames; a few beyond it are out of range.
    Ok(u64::from(u16::arbitrary(u)? % 1100))
}

fn next_op(u: &mut Unstructured<'_>, ops: &[Op]) -> arbitrary::Result<Op> {
    let kind = u8::arbitrary(u)?;
    Ok(match kind {
        0..=223 => ops[usize::from(u16::arbitrary(u)?) % ops.len()],
        224..=235 => Op::RawSpte {
            table: raw_frame(u)?,
            index: u16::arbitrary(u)? % 520,
            level: u8::arbitrary(u)? % 6,
            value: u64::arbitrary(u)?,
            gfn: u64::arbitrary(u)? % 2048,
            by: match u8::arbitrary(u)? % 3 {
                0 => Caller::Vmm(0),
                1 => Caller::Vmm(1),
                _ => Caller::Kernel,
            },
        },
        236..=241 => Op::RawFree {
            frame: raw_frame(u)?,
            order: u32::from(u8::arbitrary(u)? % 20),
        },
        242..=246 => Op::RawPtFree {
            frame: raw_frame(u)?,
        },
        247..=250 => Op::RawKsm {
            frame: raw_frame(u)?,
            kframe: raw_frame(u)?,
        },
        251..=253 => Op::RawEptLoad {
            vm: u8::arbitrary(u)?,
            vcpu: u8::arbitrary(u)?,
            root: raw_frame(u)?,
            value: u64::arbitrary(u)?,
        },
        _ => Op::RawEptp {
            value: u64::arbitrary(u)?,
        },
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    thread_local! {
        static START: (World, Vec<Op>) = (World::initial(), all_ops());
    }
    START.with(|(initial, ops)| {
        let mut u = Unstructured::new(data);
        let mut w = initial.clone();
        let mut seq = Vec::new();
        while seq.len() < MAX_STEPS && !u.is_empty() {
            let Ok(op) = next_op(&mut u, ops) else {
                break;
            };
            seq.push(op);
            let before = records_hash(&w);
            let (next, s) = step(&w, (before, 0), op, |_| true);
            assert!(
                s.violations.is_empty(),
                "after {seq:#?}:\n{}",
                s.violations.join("\n")
            );
            w = next;
        }
    });
});
