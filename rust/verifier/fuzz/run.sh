#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Run every cargo-fuzz target of the verifier for a fixed number of executions each.
#
#   fuzz/run.sh [runs]        default 200000 executions per target
#
# Needs cargo-fuzz (cargo install cargo-fuzz). Only a stable toolchain exists on the project
# machines, so RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only sanitizer flags.
set -eu
runs=${1:-200000}
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
for t in $targets; do
	mkdir -p "corpus/$t"
	log="target/fuzz-$t.log"
	mkdir -p target
	echo "== $t: $runs runs"
	cargo fuzz run "$t" "corpus/$t" -- -runs="$runs" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || {
		echo "FAILED: $t (see fuzz/$log)"
		tail -n 40 "$log"
		exit 1
	}
	grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$log" | tail -n 2
done
echo "all fuzz targets: OK"
