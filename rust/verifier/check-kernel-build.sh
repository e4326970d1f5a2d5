#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Compile src/policy/ the way kbuild compiles a Rust object in hyperps.ko: as part of a crate
# that has only `core`, with `-Zcrate-attr=no_std`, edition 2021, panic=abort, overflow checks
# and the kernel's warning flags, and fail on any warning. Optionally also run clippy with the
# kernel's clippy lints if clippy-driver is available.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/root.rs" <<ROOT
//! Stand-in for the hyperps.ko crate root.
#[path = "$here/src/policy/mod.rs"]
#[deny(unsafe_code)]
pub mod policy;
ROOT

flags="--edition=2021 --crate-type=lib --crate-name=hyperps -Zcrate-attr=no_std --emit=obj
 -Cpanic=abort -Coverflow-checks -Copt-level=2
 -Dunsafe_op_in_unsafe_fn -Dnon_ascii_idents -Wmissing_docs -Wunreachable_pub
 -Wrust_2018_idioms -Dwarnings"

# shellcheck disable=SC2086
RUSTC_BOOTSTRAP=1 rustc $flags -o "$tmp/policy.o" "$tmp/root.rs"
echo "kernel-style rustc build of src/policy: OK ($(wc -c < "$tmp/policy.o") bytes of object)"

if command -v clippy-driver >/dev/null 2>&1; then
	# shellcheck disable=SC2086
	RUSTC_BOOTSTRAP=1 clippy-driver $flags -o "$tmp/policy-clippy.o" \
		-Wclippy::all -Wclippy::float_arithmetic -Wclippy::mut_mut \
		-Wclippy::needless_bitwise_bool -Wclippy::ignored_unit_patterns \
		-Dclippy::unwrap_used -Dclippy::expect_used -Dclippy::indexing_slicing \
		-Dclippy::arithmetic_side_effects -Dclippy::panic -Dclippy::unreachable \
		-Dclippy::todo "$tmp/root.rs"
	echo "kernel-style clippy of src/policy: OK"
fi
