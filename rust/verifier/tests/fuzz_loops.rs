// SPDX-License-Identifier: GPL-2.0

//! The fuzz driver run as an ordinary test on deterministic pseudo-random inputs, so that
//! `cargo test` exercises every entry point with arbitrary data even where cargo-fuzz is not
//! available. `HYPERPS_FUZZ_LOOPS` sets the number of inputs per target (default 300).

#[path = "../fuzz/driver.rs"]
mod driver;
mod world;

use driver::{run, Focus};

fn loops() -> u64 {
    std::env::var("HYPERPS_FUZZ_LOOPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

/// xorshift64*: a fixed, dependency-free byte source.
fn fill(seed: u64, buf: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in buf.iter_mut() {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *b = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
    }
}

fn drive(focus: Focus, salt: u64) {
    let mut buf = vec![0u8; 4096];
    for i in 0..loops() {
        let len = 64 + (i as usize * 37) % 4000;
        fill(i ^ salt, &mut buf[..len]);
        run(&buf[..len], focus);
    }
}

#[test]
fn fuzz_loop_all() {
    drive(Focus::All, 0x1111);
}

#[test]
fn fuzz_loop_ept() {
    drive(Focus::Ept, 0x2222);
}

#[test]
fn fuzz_loop_vmcs() {
    drive(Focus::Vmcs, 0x3333);
}

#[test]
fn fuzz_loop_ownership() {
    drive(Focus::Ownership, 0x4444);
}

#[test]
fn fuzz_loop_cr() {
    drive(Focus::Cr, 0x5555);
}

/// The `backend` fuzz target's loop: sequences of the explorer's ops, with the explorer's
/// invariants after every call (`HYPERPS_FUZZ_LOOPS` sequences of up to 48 calls).
#[test]
fn fuzz_loop_backend() {
    let ops = world::all_ops();
    let initial = world::World::initial();
    let mut buf = [0u8; 96];
    for i in 0..loops() {
        fill(i ^ 0x6666, &mut buf);
        let mut w = initial.clone();
        let mut seq = Vec::new();
        for pair in buf.chunks(2) {
            let op = ops[usize::from(u16::from_le_bytes([pair[0], pair[1]])) % ops.len()];
            seq.push(op);
            let before = world::records_hash(&w);
            let (next, s) = world::step(&w, (before, 0), op, |_| true);
            assert!(
                s.violations.is_empty(),
                "after {seq:?}: {}",
                s.violations.join("; ")
            );
            w = next;
        }
    }
}
