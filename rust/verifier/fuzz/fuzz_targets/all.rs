// SPDX-License-Identifier: GPL-2.0

//! Fuzz target: a sequence of verifier API calls restricted to the `All` entry points, then
//! the security invariants (see `fuzz/driver.rs`).

#![no_main]

#[path = "../driver.rs"]
mod driver;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    driver::run(data, driver::Focus::All);
});
