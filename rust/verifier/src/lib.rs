// SPDX-License-Identifier: GPL-2.0

//! Userspace crate root of the HyperPS verifier core.
//!
//! The policy itself lives in [`policy`] (`src/policy/`), which the kernel module includes
//! unchanged with `#[path = "../rust/verifier/src/policy/mod.rs"] pub mod policy;`. This root
//! only exists so that the same source can be built, tested, fuzzed and benchmarked with cargo.

#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::float_arithmetic
)]

#[cfg(test)]
extern crate std;

pub mod policy;

pub use policy::*;
